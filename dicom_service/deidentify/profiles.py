"""Named, versioned de-identification profiles (``deid_profiles/profiles.toml``).

A profile is a base recipe list plus options, each option one more recipe
overlaying what came before (see ``plan.py`` for which rule wins), plus
parameters. Every profile in the file is parsed and compiled when the service
starts; a bad file, option, parameter or recipe line stops it with the file
and line (``house style: fail fast and loudly at start-up``).

``profiles.toml``::

    active = "basic"                     # the profile new instances get

    [profiles.basic]
    version = "1"                        # bump on any change
    description = "..."
    recipes = ["basic.dicom"]            # base, in order; paths under the directory
    options = []                         # names from [options.*], in order

    [profiles.basic.parameters]          # optional
    longitudinal_temporal_information_modified = "REMOVED"
    contributing_equipment = true
    remove_private = true                # private elements go unless named by a rule

    [options.retain_uids]
    recipe = "options/retain_uids.dicom"
    code = "113110"                      # CID 7050 code, scheme DCM
    meaning = "Retain UIDs Option"
    longitudinal_temporal_information_modified = "MODIFIED"   # optional
    excludes = ["retain_longitudinal_full_dates"]             # optional
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from dicom_service import __version__ as _package_version
from dicom_service.deidentify.cache import DeidCache
from dicom_service.deidentify.clean_text import TextCleaner
from dicom_service.deidentify.engine import apply_adds, walk
from dicom_service.deidentify.markers import Marks, mark
from dicom_service.deidentify.pixels import (
    CLEAN_PIXEL_DATA_CODE,
    PIXEL_ENGINE_REVISION,
    PixelReport,
    PixelRules,
    clean_pixels,
    compile_pixel_rules,
)
from dicom_service.deidentify.plan import Plan, compile_plan
from dicom_service.deidentify.pseudonyms import Pseudonymiser
from dicom_service.deidentify.recipe import Recipe, load_recipe

__all__ = ["ENGINE_REVISION", "Option", "Profile", "ProfileError", "ProfileSet", "load_profiles"]

PROFILES_FILE = "profiles.toml"

ENGINE_REVISION = "2"
"""Part of every profile hash: bump when the engine's own behaviour changes
(markers, fallbacks, which UIDs count as registered), so the recorded hash
identifies what was done, not only the recipe text. 2 (2026-11-26): code
meanings without a coding scheme are dummied; the text cleaner takes names
and identifiers by their tag whatever VR they arrive with, and removes UIDs;
standard tags unknown to the data dictionary, and sequences that did not
arrive as SQ or UN, are removed."""

BASIC_CODE = ("113100", "Basic Application Confidentiality Profile")
_PIXEL_DATA = 0x7FE00010
_LONGITUDINAL = ("REMOVED", "MODIFIED", "UNMODIFIED")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_VERSION_RE = re.compile(r"^[0-9A-Za-z.+-]{1,16}$")
_CODE_RE = re.compile(r"^1131(0[1-9]|1[0-2])$")  # CID 7050 options: 113101..113112
_PROFILE_KEYS = {"version", "description", "recipes", "options", "parameters"}
_OPTION_KEYS = {
    "recipe", "code", "meaning", "longitudinal_temporal_information_modified", "excludes",
    "implemented",
}
_PARAMETERS: dict[str, type] = {
    "longitudinal_temporal_information_modified": str,
    "contributing_equipment": bool,
    "remove_private": bool,
}


class ProfileError(Exception):
    """``profiles.toml`` is invalid. The message is ``"<file>:<line>: <reason>"``."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{source}:{line}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Option:
    """An Annex E option: a recipe overlaying the base, and its CID 7050 code."""

    name: str
    recipe: str
    code: str
    meaning: str
    longitudinal: str | None = None
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile:
    """A compiled profile.

    Attributes:
        name, version: as in ``profiles.toml``.
        sha256: hex SHA-256 over the engine revision, each recipe's file name
            and text, the options and the resolved parameters; recorded in
            every instance (DeidentificationMethod) and the index.
        description: free text.
        recipes: recipe file names (base, then options), as applied.
        options: the options, in order.
    """

    name: str
    version: str
    sha256: str
    description: str = ""
    recipes: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    _plan: Plan | None = field(default=None, repr=False, compare=False)
    _marks: Marks | None = field(default=None, repr=False, compare=False)
    _pixels: PixelRules | None = field(default=None, repr=False, compare=False)

    @property
    def marks(self) -> Marks:
        if self._marks is None:  # pragma: no cover - load_profiles always sets it
            raise RuntimeError("profile was not compiled")
        return self._marks

    def apply(self, ds: Dataset, p: Pseudonymiser,
              cache: DeidCache | None = None) -> PixelReport | None:
        """De-identify ``ds`` in place for the enrolment of ``p``.

        One pass over the dataset and, recursively, every sequence item, then
        over ``ds.file_meta`` if present; then the top-level ADD rules; then
        the markers (see :func:`dicom_service.deidentify.markers.mark`):
        pseudonym as PatientName/PatientID, PatientIdentityRemoved,
        DeidentificationMethod (+ code sequence), LongitudinalTemporal
        InformationModified, contributing equipment, and
        MediaStorageSOPInstanceUID = SOPInstanceUID.

        ``cache`` (one per association, see
        :mod:`dicom_service.deidentify.cache`) lets consecutive instances
        share the text cleaner and the pixel decision; the result is the same.

        With the Clean Pixel Data option (code 113101) the profile's
        ``%filter`` rules are evaluated on the header as received, and the
        burned-in text is blanked after the header rules
        (:func:`dicom_service.deidentify.pixels.clean_pixels`); the pixel
        report is returned (``None`` without the option). If the cleaned
        pixels had to change transfer syntax, ``ds.file_meta.
        TransferSyntaxUID`` names the new one: the caller must write the
        dataset in that syntax.

        Raises:
            Exception: what pydicom raises for a value it cannot decode. The
                dataset is then partly changed and must be discarded; messages
                may quote values, so report only the type.
            PixelCleaningError: the pixels need cleaning but cannot be cleaned.
        """
        plan = self._plan
        if plan is None:  # pragma: no cover - load_profiles always sets it
            raise RuntimeError("profile was not compiled")
        # Clean options keep text minus what the ORIGINAL says identifies:
        # collected before any rule changes the dataset.
        cleaner = TextCleaner.from_dataset(ds, cache) if plan.cleans else None
        pixels = self._pixels
        decision = None
        if pixels is not None and _PIXEL_DATA in ds:
            decision = pixels.decide(ds, cache)  # on the header as received
        walk(ds, plan, p, cleaner=cleaner)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            walk(meta, plan, p)
        apply_adds(ds, plan, p)
        report = None
        if pixels is not None:
            report = clean_pixels(ds, pixels, decision=decision)
        mark(ds, p, self.marks)
        return report


class ProfileSet:
    """All profiles of a directory; ``active`` is the one for new instances."""

    def __init__(self, profiles: dict[str, Profile], active: str, source: Path) -> None:
        self._profiles = dict(profiles)
        self._active = active
        self.source = source

    @property
    def active(self) -> Profile:
        return self._profiles[self._active]

    def get(self, name: str) -> Profile:
        """The profile called ``name``.

        Raises:
            KeyError: no such profile.
        """
        try:
            return self._profiles[name]
        except KeyError:
            raise KeyError(f"no profile named {name!r}") from None

    def names(self) -> list[str]:
        return sorted(self._profiles)

    def __len__(self) -> int:
        return len(self._profiles)


# ---------------------------------------------------------------------------


def _locate(text: str, table: str, key: str | None = None) -> int:
    """Best-effort line of ``[table]`` or of ``key`` inside it (1 if unknown)."""
    current = ""
    header_line = 0
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"^\[+\s*([^\]]+?)\s*\]+$", line)
        if m:
            current = re.sub(r'\s*\.\s*', ".", m.group(1)).replace('"', "")
            if current == table:
                header_line = n
            continue
        if current == table and key is not None and re.match(rf"^{re.escape(key)}\s*=", line):
            return n
    return header_line or 1


def _recipe_path(directory: Path, name: Any) -> Path | None:
    """Resolve a recipe name under ``directory``; None if it escapes or is not a str."""
    if not isinstance(name, str) or not name or name.startswith(("/", "\\")):
        return None
    root = directory.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        return None
    return path


def _hash(parts: dict[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


class _Loader:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / PROFILES_FILE
        self.source = PROFILES_FILE
        self.text = ""
        self.recipes: dict[Path, Recipe] = {}

    def error(self, reason: str, table: str = "", key: str | None = None) -> ProfileError:
        return ProfileError(self.source, _locate(self.text, table, key), reason)

    def read(self) -> dict[str, Any]:
        try:
            self.text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(self.source, 0, f"cannot read ({type(exc).__name__})") from None
        try:
            return tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            raise ProfileError(
                self.source, int(m.group(1)) if m else 0, f"invalid TOML: {exc}"
            ) from None

    def recipe(self, name: Any, table: str, key: str) -> tuple[str, Recipe]:
        path = _recipe_path(self.directory, name)
        if path is None:
            raise self.error(
                f"{key} must be a relative path inside the profiles directory", table, key
            )
        if not path.is_file():
            raise self.error(f"recipe {name!r} does not exist", table, key)
        if path not in self.recipes:
            self.recipes[path] = load_recipe(path, label=str(name))
        return str(name), self.recipes[path]

    def option(self, data: dict[str, Any], name: str, used_in: str) -> tuple[Option, Recipe]:
        table = f"options.{name}"
        spec = data.get("options", {}).get(name)
        if not isinstance(spec, dict):
            raise self.error(f"option {name!r} is not defined in [options]", used_in, "options")
        unknown = set(spec) - _OPTION_KEYS
        if unknown:
            key = sorted(unknown)[0]
            raise self.error(f"option {name!r}: unknown key {key!r}", table, key)
        for key in ("recipe", "code", "meaning"):
            if not isinstance(spec.get(key), str) or not spec[key]:
                raise self.error(f"option {name!r}: {key} must be a non-empty string", table, key)
        if not _CODE_RE.match(spec["code"]):
            raise self.error(
                f"option {name!r}: code must be a CID 7050 option code 113101..113112",
                table, "code",
            )
        longitudinal = spec.get("longitudinal_temporal_information_modified")
        if longitudinal is not None and longitudinal not in _LONGITUDINAL:
            raise self.error(
                f"option {name!r}: longitudinal_temporal_information_modified must be one of "
                f"{', '.join(_LONGITUDINAL)}", table, "longitudinal_temporal_information_modified",
            )
        excludes = spec.get("excludes", [])
        if not isinstance(excludes, list) or not all(isinstance(e, str) for e in excludes):
            raise self.error(
                f"option {name!r}: excludes must be a list of names", table, "excludes"
            )
        implemented = spec.get("implemented", True)
        if not isinstance(implemented, bool):
            raise self.error(
                f"option {name!r}: implemented must be true or false", table, "implemented"
            )
        if not implemented and used_in != table:
            # declared so that it is known, but its code would claim work
            # this software does not do (e.g. no face removal for 113102)
            raise self.error(
                f"option {name!r} is declared but not implemented: "
                "a profile cannot claim it", used_in, "options",
            )
        label, recipe = self.recipe(spec["recipe"], table, "recipe")
        option = Option(
            name, label, spec["code"], spec["meaning"], longitudinal, tuple(excludes)
        )
        return option, recipe

    def profile(self, data: dict[str, Any], name: str, spec: Any) -> Profile:
        table = f"profiles.{name}"
        if not _NAME_RE.match(name):
            raise self.error(
                f"profile name {name!r} must be 1-32 of a-z, 0-9, '_' or '-'", table
            )
        if not isinstance(spec, dict):
            raise self.error(f"profile {name!r} must be a table", table)
        unknown = set(spec) - _PROFILE_KEYS
        if unknown:
            key = sorted(unknown)[0]
            raise self.error(f"profile {name!r}: unknown key {key!r}", table, key)
        version = spec.get("version")
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            raise self.error(
                f"profile {name!r}: version must be a string of 1-16 of 0-9, A-Z, a-z, '.+-'",
                table, "version",
            )
        description = spec.get("description", "")
        if not isinstance(description, str):
            raise self.error(
                f"profile {name!r}: description must be a string", table, "description"
            )
        recipe_names = spec.get("recipes")
        if not isinstance(recipe_names, list) or not recipe_names:
            raise self.error(
                f"profile {name!r}: recipes must be a non-empty list", table, "recipes"
            )
        option_names = spec.get("options", [])
        if not isinstance(option_names, list) or not all(isinstance(o, str) for o in option_names):
            raise self.error(f"profile {name!r}: options must be a list of names", table, "options")
        if len(set(option_names)) != len(option_names):
            raise self.error(f"profile {name!r}: an option is listed twice", table, "options")
        parameters = spec.get("parameters", {})
        if not isinstance(parameters, dict):
            raise self.error(f"profile {name!r}: parameters must be a table", table, "parameters")
        ptable = f"{table}.parameters"
        for key, value in parameters.items():
            expected = _PARAMETERS.get(key)
            if expected is None:
                raise self.error(f"profile {name!r}: unknown parameter {key!r}", ptable, key)
            if not isinstance(value, expected):
                raise self.error(
                    f"profile {name!r}: parameter {key!r} must be a {expected.__name__}",
                    ptable, key,
                )

        layers: list[Recipe] = []
        labels: list[str] = []
        for recipe_name in recipe_names:
            label, recipe = self.recipe(recipe_name, table, "recipes")
            labels.append(label)
            layers.append(recipe)
        options: list[Option] = []
        for option_name in option_names:
            option, recipe = self.option(data, option_name, table)
            options.append(option)
            labels.append(option.recipe)
            layers.append(recipe)

        chosen = {o.name for o in options}
        for option in options:
            clash = sorted(chosen.intersection(option.excludes))
            if clash:
                raise self.error(
                    f"profile {name!r}: option {option.name!r} excludes {clash[0]!r}",
                    table, "options",
                )
        longitudinal = "REMOVED"
        for option in options:
            if option.longitudinal is not None:
                longitudinal = option.longitudinal
        longitudinal = parameters.get("longitudinal_temporal_information_modified", longitudinal)
        if longitudinal not in _LONGITUDINAL:
            raise self.error(
                f"profile {name!r}: longitudinal_temporal_information_modified must be one of "
                f"{', '.join(_LONGITUDINAL)}", ptable, "longitudinal_temporal_information_modified",
            )
        contributing = bool(parameters.get("contributing_equipment", True))
        remove_private = bool(parameters.get("remove_private", True))
        resolved = {
            "longitudinal_temporal_information_modified": longitudinal,
            "contributing_equipment": contributing,
            "remove_private": remove_private,
        }
        cleans_pixels = any(o.code == CLEAN_PIXEL_DATA_CODE[0] for o in options)
        hashed: dict[str, Any] = {
            "engine": ENGINE_REVISION,
            "recipes": [[label, r.text] for label, r in zip(labels, layers, strict=True)],
            "options": [[o.name, o.code, o.meaning] for o in options],
            "parameters": resolved,
        }
        if cleans_pixels:  # text detection thresholds are part of what was done
            hashed["pixels"] = PIXEL_ENGINE_REVISION
        digest = _hash(hashed)
        plan = compile_plan(layers, remove_private=remove_private)
        pixels = compile_pixel_rules(layers) if cleans_pixels else None
        codes = (BASIC_CODE, *((o.code, o.meaning) for o in options))
        marks = Marks(
            method=(f"dicom_service profile {name} v{version}", f"sha256 {digest[:16]}"),
            codes=codes,
            longitudinal=longitudinal,
            software_version=f"dicom_service {_package_version}",
            contributing_equipment=contributing,
        )
        return Profile(
            name=name, version=version, sha256=digest, description=description,
            recipes=tuple(labels), options=tuple(options), _plan=plan, _marks=marks,
            _pixels=pixels,
        )

    def load(self) -> ProfileSet:
        data = self.read()
        unknown = set(data) - {"active", "profiles", "options"}
        if unknown:
            key = sorted(unknown)[0]
            raise self.error(f"unknown top-level key {key!r}", "", key)
        profiles_data = data.get("profiles")
        if not isinstance(profiles_data, dict) or not profiles_data:
            raise self.error("no [profiles.<name>] table")
        options_data = data.get("options", {})
        if not isinstance(options_data, dict):
            raise self.error("options must be a table of [options.<name>]", "", "options")
        profiles = {name: self.profile(data, name, spec) for name, spec in profiles_data.items()}
        for name in options_data:  # unused options are checked too: fail at start-up
            _, recipe = self.option(data, name, f"options.{name}")
            compile_plan([recipe])
            if options_data[name].get("code") == CLEAN_PIXEL_DATA_CODE[0]:
                compile_pixel_rules([recipe])
        active = data.get("active")
        if not isinstance(active, str) or active not in profiles:
            raise self.error("active must name a profile defined in this file", "", "active")
        return ProfileSet(profiles, active, self.path)


def load_profiles(directory: Path) -> ProfileSet:
    """Load, validate and compile every profile in ``directory/profiles.toml``.

    Raises:
        ProfileError: the TOML is invalid or names something that does not
            exist ("profiles.toml:<line>: <reason>").
        RecipeError: a recipe line is invalid ("<recipe>:<line>: <reason>").
    """
    return _Loader(Path(directory)).load()
