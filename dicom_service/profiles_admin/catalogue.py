"""The profiles on disk as data, for the API and the command line.

Each profile has one version on disk (``profiles.toml``); earlier versions
live on in the activation history and in the instances they de-identified.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dicom_service.db.session import Database
from dicom_service.deidentify import Profile, ProfileSet
from dicom_service.profiles_admin.activation import (
    ActivationRecord,
    history,
    load_for_activation,
    newest,
)

__all__ = ["ActiveInfo", "Snapshot", "active_info", "profile_json", "recipe_texts", "snapshot"]


@dataclass(frozen=True)
class ActiveInfo:
    """What new instances get: the newest activation, else ``profiles.toml``."""

    name: str
    version: str
    sha256: str
    source: str  # "activation" or "profiles.toml"
    activation: ActivationRecord | None

    def matches(self, profile: Profile) -> bool:
        return (profile.name, profile.version, profile.sha256) == (
            self.name, self.version, self.sha256)

    def to_json(self, profiles: ProfileSet) -> dict[str, object]:
        try:
            on_disk = self.matches(profiles.get(self.name))
        except KeyError:
            on_disk = False
        return {"name": self.name, "version": self.version, "sha256": self.sha256,
                "source": self.source, "on_disk": on_disk,
                "activation": self.activation.to_json() if self.activation else None}


def active_info(db: Database, profiles: ProfileSet) -> ActiveInfo:
    record = newest(db)
    if record is not None:
        return ActiveInfo(record.name, record.version, record.sha256, "activation", record)
    p = profiles.active
    return ActiveInfo(p.name, p.version, p.sha256, "profiles.toml", None)


def profile_json(profile: Profile, active: ActiveInfo,
                 activations: list[ActivationRecord]) -> dict[str, object]:
    return {
        "name": profile.name,
        "version": profile.version,
        "sha256": profile.sha256,
        "description": profile.description,
        "recipes": list(profile.recipes),
        "options": [{"name": o.name, "code": o.code, "meaning": o.meaning, "recipe": o.recipe}
                    for o in profile.options],
        "method": list(profile.marks.method),
        "active": active.matches(profile),
        "history": [a.to_json() for a in activations if a.name == profile.name],
    }


def recipe_texts(profile: Profile, directory: Path) -> list[dict[str, str]]:
    """Each recipe file of ``profile`` (base, then options) and its text, as on disk.

    The names were checked to stay inside ``directory`` when the profiles
    loaded; checked again here because the files are read a second time.
    """
    root = directory.resolve()
    out: list[dict[str, str]] = []
    for label in profile.recipes:
        path = (root / label).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"recipe {label!r} is outside the profiles directory")
        out.append({"file": label, "text": path.read_text(encoding="utf-8")})
    return out


@dataclass(frozen=True)
class Snapshot:
    profiles: ProfileSet
    active: ActiveInfo
    history: list[ActivationRecord]

    def to_json(self) -> dict[str, object]:
        return {
            "active": self.active.to_json(self.profiles),
            "profiles": [profile_json(self.profiles.get(n), self.active, self.history)
                         for n in self.profiles.names()],
            "history": [a.to_json() for a in self.history],
        }


def snapshot(db: Database, directory: Path, *, limit: int = 100) -> Snapshot:
    """The profiles on disk, the active one and the activation history.

    Raises:
        Conflict: the profiles on disk do not load (``file:line: reason``).
    """
    profiles = load_for_activation(directory)
    return Snapshot(profiles, active_info(db, profiles), history(db, limit=limit))
