"""Tools for administrators to tune and test de-identification profiles.

``activation`` (which profile version new instances get, with its history;
the per-process resolver every listener asks per instance), ``catalogue``
(profiles on disk as data: versions, hashes, options, recipe texts),
``validation`` (a recipe text -> its errors with line numbers), ``dryrun``
(a profile applied to one instance in memory: a before/after diff and a PNG
preview), ``leakcheck`` (the profile over the synthetic sample set: which
planted fake identifiers survive).

Nothing here writes a dry run or a leak check to disk or to the log: uploads
are handled in memory, and dry runs use a throwaway pseudonymiser (a random
key), never an enrolment's key.
"""
