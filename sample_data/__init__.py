"""Seeded generator of synthetic DICOM studies with planted FAKE identifiers.

Everything in here is synthetic: all names, IDs, addresses, phone numbers and institutions are
invented (UK phone numbers are from Ofcom's drama ranges, US ones from the 555-01xx range).
See ``sample_data/README.md`` for the exact list of planted values and where they are.

Public API::

    from sample_data import generate, write_ct_series, Manifest

    manifest = generate(tmp_path)                     # full sample set + manifest.json
    paths = write_ct_series(tmp_path, n=300)          # fast CT series for benchmarks
    manifest = Manifest.load(tmp_path / "manifest.json")
"""

import sys

if sys.argv[:1] != ["-m"]:
    from sample_data.generate import (
        BENCH_PLANTED,
        DEFAULT_CT_SLICES,
        DEFAULT_SEED,
        MIN_CT_SLICES,
        UID_ROOT,
        BurnedInText,
        FileEntry,
        Manifest,
        PatientEntry,
        PlantedEntry,
        StudyEntry,
        generate,
        searchable_bytes,
        write_ct_series,
    )
else:  # pragma: no cover - only while `python -m sample_data.generate` imports this package
    # Importing sample_data.generate here would make runpy warn that the module it is about to
    # run as __main__ is already in sys.modules, so resolve the names lazily instead.
    def __getattr__(name: str) -> object:
        if name in __all__:
            import importlib

            return getattr(importlib.import_module("sample_data.generate"), name)
        raise AttributeError(name)


__all__ = [
    "BENCH_PLANTED",
    "DEFAULT_CT_SLICES",
    "DEFAULT_SEED",
    "MIN_CT_SLICES",
    "UID_ROOT",
    "BurnedInText",
    "FileEntry",
    "Manifest",
    "PatientEntry",
    "PlantedEntry",
    "StudyEntry",
    "generate",
    "searchable_bytes",
    "write_ct_series",
]
