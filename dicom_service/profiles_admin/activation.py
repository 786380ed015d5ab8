"""Which de-identification profile version new instances get, and its history.

The active profile is the newest row of ``profile_activations`` (name, version,
SHA-256), or, before the first activation, ``active`` in ``profiles.toml``.
An activation is refused unless the profiles on disk load and the named
profile there has the version and hash asked for (an optimistic check: the
administrator activates what they looked at). Every activation is audited.

Every listener process (``serve`` and its ``dicom-worker`` processes) asks
:meth:`ActiveProfile.get` once per received instance. It answers from memory
and looks at the newest activation id at most once per ``interval`` seconds
(one indexed one-row query), so an activation reaches every process within
about a second, without a restart. When the newest activation names a
profile this process has not loaded (the files changed since it started), it
reloads the profiles from disk (about 10 ms) and, failing a match, keeps
applying the profile it had and logs an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from dicom_service.care import audit
from dicom_service.db.models import ProfileActivation
from dicom_service.db.session import Database
from dicom_service.deidentify import Profile, ProfileError, ProfileSet, RecipeError, load_profiles
from dicom_service.errors import ConfigError, Conflict, NotFound
from dicom_service.logsafe import describe

__all__ = [
    "ActivationRecord",
    "ActiveProfile",
    "activate",
    "history",
    "newest",
]

log = logging.getLogger(__name__)

_NEWEST = (
    select(ProfileActivation.id, ProfileActivation.profile_name,
           ProfileActivation.profile_version, ProfileActivation.profile_sha256)
    .order_by(ProfileActivation.id.desc())
    .limit(1)
)


@dataclass(frozen=True)
class ActivationRecord:
    """One row of the activation history."""

    id: int
    name: str
    version: str
    sha256: str
    actor: str
    activated_at: datetime

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "version": self.version,
                "sha256": self.sha256, "actor": self.actor,
                "activated_at": self.activated_at.isoformat()}


def _record(row: ProfileActivation) -> ActivationRecord:
    return ActivationRecord(row.id, row.profile_name, row.profile_version, row.profile_sha256,
                            row.actor, row.activated_at)


def history(db: Database, *, name: str | None = None, limit: int = 100) -> list[ActivationRecord]:
    """Activations, newest first (of profile ``name`` only, if given)."""
    if not 1 <= limit <= 10_000:
        raise ValueError('Argument "limit" must be between 1 and 10000.')
    query = select(ProfileActivation).order_by(ProfileActivation.id.desc()).limit(limit)
    if name is not None:
        query = query.where(ProfileActivation.profile_name == name)
    with db.session() as s:
        return [_record(row) for row in s.scalars(query)]


def newest(db: Database) -> ActivationRecord | None:
    """The activation in force, or None before the first one."""
    found = history(db, limit=1)
    return found[0] if found else None


def load_for_activation(profiles_dir: Path) -> ProfileSet:
    """The profiles on disk, as an activation sees them.

    Raises:
        Conflict: they do not load (the message is the parser's
            ``file:line: reason``, which names recipe lines, never data).
    """
    try:
        return load_profiles(profiles_dir)
    except (ProfileError, RecipeError) as exc:
        raise Conflict(f"the profiles on disk do not load: {exc}") from None


def activate(db: Database, profiles_dir: Path, name: str, *, version: str | None = None,
             sha256: str | None = None, actor: str) -> tuple[ActivationRecord, Profile]:
    """Make profile ``name`` the one new instances get; audited.

    The profiles are loaded from disk first, so a broken recipe cannot be
    activated. ``version`` and ``sha256``, when given, must equal the
    profile's on disk (the caller activates what it reviewed; a prefix of at
    least 16 hex digits of the hash is accepted).

    Raises:
        NotFound: no profile called ``name``.
        Conflict: the profiles do not load, or the version or hash differ.
    """
    profiles = load_for_activation(profiles_dir)
    try:
        profile = profiles.get(name)
    except KeyError:
        raise NotFound(f"no profile named {name!r} in {profiles_dir}") from None
    if version is not None and version != profile.version:
        raise Conflict(f"profile {name!r} on disk is version {profile.version}, not {version}")
    if sha256 is not None:
        wanted = sha256.strip().lower()
        if len(wanted) < 16 or not profile.sha256.startswith(wanted):
            raise Conflict(f"profile {name!r} v{profile.version} on disk has sha256 "
                           f"{profile.sha256}, not {sha256[:64]!r}")
    with db.session() as s:
        row = ProfileActivation(profile_name=profile.name, profile_version=profile.version,
                                profile_sha256=profile.sha256, actor=actor)
        s.add(row)
        s.flush()
        audit.record(s, actor=actor, action="profile.activate", object_type="profile",
                     object_id=f"{profile.name} v{profile.version}",
                     detail=f"sha256={profile.sha256} activation={row.id}")
        record = _record(row)
    log.info("profile %s v%s activated (activation %d)", profile.name, profile.version,
             record.id)
    return record, profile


@dataclass(frozen=True)
class _State:
    profile: Profile
    activation_id: int | None
    checked_at: float


def _matching(profiles: ProfileSet, name: str, version: str, sha256: str) -> Profile | None:
    try:
        profile = profiles.get(name)
    except KeyError:
        return None
    return profile if profile.version == version and profile.sha256 == sha256 else None


class ActiveProfile:
    """The profile new instances get, as one process sees it (thread-safe).

    Args:
        db: the index, holding ``profile_activations``.
        profiles_dir: where to reload profiles from when an activation names
            one this process has not loaded.
        profiles: the profiles loaded at start-up.
        interval: seconds between looks at the newest activation.
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(self, db: Database, profiles_dir: Path, profiles: ProfileSet, *,
                 interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._dir = profiles_dir
        self._profiles = profiles
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._state = _State(profiles.active, None, float("-inf"))

    @property
    def profiles(self) -> ProfileSet:
        """The profiles this process has loaded (reloaded after a new activation)."""
        return self._profiles

    def get(self) -> Profile:
        """The active profile; at most one small query per ``interval``, never raises.

        On a database error, or an activation that matches nothing on disk,
        the profile applied so far stays (logged, without identifiers).
        """
        state = self._state
        now = self._clock()
        if now - state.checked_at < self._interval:
            return state.profile
        with self._lock:
            state = self._state
            if now - state.checked_at < self._interval:
                return state.profile
            try:
                with self._db.engine.connect() as conn:
                    row = conn.execute(_NEWEST).first()
            except SQLAlchemyError as exc:
                log.warning("could not read the active profile (%s); still applying %s v%s",
                            describe(exc), state.profile.name, state.profile.version)
                self._state = _State(state.profile, state.activation_id, now)
                return state.profile
            activation_id = None if row is None else int(row[0])
            if activation_id == state.activation_id:
                self._state = _State(state.profile, activation_id, now)
                return state.profile
            if row is None:
                profile = self._profiles.active
            else:
                found = self._resolve(str(row[1]), str(row[2]), str(row[3]))
                if found is None:
                    log.error("activation %d (%s v%s) matches no profile in %s; still applying "
                              "%s v%s", activation_id, row[1], row[2], self._dir,
                              state.profile.name, state.profile.version)
                    profile = state.profile
                else:
                    profile = found
                if profile is not state.profile:
                    log.info("now applying profile %s v%s (activation %d)", profile.name,
                             profile.version, activation_id)
            self._state = _State(profile, activation_id, now)
            return profile

    def invalidate(self) -> None:
        """Look at the newest activation on the next :meth:`get`."""
        with self._lock:
            state = self._state
            self._state = _State(state.profile, state.activation_id, float("-inf"))

    def check(self) -> Profile:
        """The active profile, strictly: for start-up.

        Raises:
            ConfigError: the newest activation names a profile, version or
                hash that is not what is on disk (the files changed after it
                was activated); the service must not start applying something
                else than what was activated.
        """
        try:
            record = newest(self._db)
        except SQLAlchemyError as exc:
            raise ConfigError(f"cannot read the active profile ({describe(exc)})") from None
        if record is None:
            profile = self._profiles.active
        else:
            found = self._resolve(record.name, record.version, record.sha256)
            if found is None:
                raise ConfigError(
                    f"the active profile {record.name} v{record.version} (sha256 "
                    f"{record.sha256[:16]}, activation {record.id}) is not what {self._dir} "
                    f"holds now; review the change and activate a profile with "
                    f"'dicom-service profiles activate NAME'")
            profile = found
        with self._lock:
            self._state = _State(profile, None if record is None else record.id, self._clock())
        return profile

    def _resolve(self, name: str, version: str, sha256: str) -> Profile | None:
        found = _matching(self._profiles, name, version, sha256)
        if found is not None:
            return found
        try:
            reloaded = load_profiles(self._dir)
        except (ProfileError, RecipeError) as exc:
            log.error("profiles in %s do not load: %s", self._dir, exc)
            return None
        found = _matching(reloaded, name, version, sha256)
        if found is not None:
            self._profiles = reloaded
        return found
