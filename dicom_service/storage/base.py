"""The instance-store protocol. Back ends: the filesystem (embedded default);
Orthanc for scale-out comes later behind the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dicom_service.dicom.uids import validate_uid


@dataclass(frozen=True)
class InstanceKey:
    """Where an instance lives: its pseudonymous study, series and SOP instance UIDs.

    Built only from validated UIDs, so a key can safely become a path.
    """

    study_uid: str
    series_uid: str
    sop_uid: str

    def __post_init__(self) -> None:
        validate_uid(self.study_uid, "StudyInstanceUID")
        validate_uid(self.series_uid, "SeriesInstanceUID")
        validate_uid(self.sop_uid, "SOPInstanceUID")


@dataclass(frozen=True)
class StoredObject:
    key: InstanceKey
    location: str  # back-end specific (a path relative to the store root)
    size: int
    replaced: bool  # an object with this key existed before (an idempotent re-send)


class PendingPut(Protocol):
    """An object being stored: its bytes handed over, not yet durable or visible."""

    @property
    def location(self) -> str:
        """Where it will be (as :attr:`StoredObject.location`)."""

    def finish(self) -> StoredObject:
        """Make it durable and visible under its key; return only once it is durable."""

    def abort(self) -> None:
        """Give it up: nothing of it stays (idempotent)."""


class InstanceStore(Protocol):
    def put(self, key: InstanceKey, data: bytes) -> StoredObject:
        """Store ``data`` durably under ``key``; return only once it is durable."""

    def start_put(self, key: InstanceKey, data: bytes) -> PendingPut:
        """:meth:`put` in two steps, so that the caller can work while the bytes
        travel to the disk: ``start_put(key, data).finish()`` is ``put(key,
        data)``. Until ``finish`` returns, nothing is visible under ``key``."""

    def get(self, key: InstanceKey) -> bytes:
        """The stored bytes; raises ``FileNotFoundError`` if absent."""

    def exists(self, key: InstanceKey) -> bool: ...

    def delete(self, key: InstanceKey) -> None:
        """Remove the object if present (idempotent)."""

    def delete_study(self, study_uid: str) -> None:
        """Remove every object of a study (idempotent)."""
