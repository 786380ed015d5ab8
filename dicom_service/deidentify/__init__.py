"""De-identification on arrival: deid recipes compiled into a one-pass engine.

``load_profiles(directory)`` parses and compiles every profile in
``directory/profiles.toml`` (fail fast: :class:`ProfileError`,
:class:`RecipeError` with file and line); ``ProfileSet.active.apply(ds, p)``
de-identifies a dataset in place for the enrolment whose pseudonymisation
material is ``p`` (:class:`Pseudonymiser`).

Modules: ``recipe`` (parser of deid's recipe language), ``plan`` (rules ->
per-tag operations), ``engine`` (the one-pass walk), ``markers`` (pseudonym and
de-identification attributes), ``pseudonyms`` (keyed UIDs, date shifts),
``profiles`` (``profiles.toml``), ``functions`` (``func:`` names), ``clean_text``
(free text kept minus the instance's own identifiers: the Clean options).
"""

from dicom_service.deidentify.profiles import Profile, ProfileError, ProfileSet, load_profiles
from dicom_service.deidentify.pseudonyms import Pseudonymiser, derive_date_shift
from dicom_service.deidentify.recipe import RecipeError

__all__ = [
    "Profile",
    "ProfileError",
    "ProfileSet",
    "Pseudonymiser",
    "RecipeError",
    "derive_date_shift",
    "load_profiles",
]
