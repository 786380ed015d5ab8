"""Composition root: builds the stores, the pipeline, the listener and the web app.

Everything is validated here at start-up: settings, secrets, the database
schema (migrated), the de-identification profiles (parsed; a broken active
profile stops the service).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pydicom

from dicom_service.care.audit import ReadAudit
from dicom_service.care.enrolment import CareService
from dicom_service.config import Settings
from dicom_service.db.session import Database
from dicom_service.deidentify import Profile, ProfileSet, load_profiles
from dicom_service.errors import ConfigError
from dicom_service.ingest.pipeline import IngestPipeline
from dicom_service.profiles_admin.activation import ActiveProfile
from dicom_service.storage.filesystem import FilesystemStore

log = logging.getLogger(__name__)


def _quiet_pydicom() -> None:
    """pydicom's validation warnings quote the offending value: never emit them."""
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE


@dataclass
class Services:
    settings: Settings
    db: Database
    store: FilesystemStore
    care: CareService
    profiles: ProfileSet
    pipeline: IngestPipeline
    active: ActiveProfile
    reads: ReadAudit  # audit of reads, buffered (care/audit.py)

    def active_profile(self) -> Profile:
        """The profile new instances get: the newest activation, else
        ``profiles.toml``'s ``active``; cheap (see ``profiles_admin.activation``)."""
        return self.active.get()

    def check_active_profile(self) -> Profile:
        """For start-up: raise ConfigError when the newest activation does not
        match the profiles on disk."""
        return self.active.check()

    def profile_label(self) -> str:
        p = self.active_profile()
        return f"{p.name} v{p.version}"

    def close(self) -> None:
        self.reads.close()  # writes the reads still buffered
        self.store.close()  # removes this process's spare files
        self.db.dispose()


def build_services(settings: Settings, *, recover: bool = False) -> Services:
    """Validate everything and wire the services of one process.

    ``recover`` removes temporary files left by a crash: only ``serve`` does it,
    before it listens, never a command that may run beside a live server.
    """
    _quiet_pydicom()
    settings = settings.with_secrets()
    settings.validate()
    if settings.server_secret is None:  # pragma: no cover - with_secrets fills it in
        raise ConfigError("no server secret")
    db = Database(settings.db_url, held=settings.max_associations)
    db.migrate()
    store = FilesystemStore(settings.data_dir / "store")
    leftovers = store.recover() if recover else 0
    if leftovers:
        log.warning("removed %d temporary files left by an interrupted write", leftovers)
    profiles = load_profiles(settings.profiles_dir)
    care = CareService(db, store, settings.server_secret)
    holder: list[Services] = []
    pipeline = IngestPipeline(db, store, care, lambda: holder[0].active_profile())
    services = Services(settings=settings, db=db, store=store, care=care, profiles=profiles,
                        pipeline=pipeline,
                        active=ActiveProfile(db, settings.profiles_dir, profiles),
                        reads=ReadAudit(db))
    holder.append(services)
    return services
