"""The ingest pipeline, shared by C-STORE and STOW-RS.

For each instance: sender -> centre -> enrolment by keyed hash -> consent for
care? -> de-identify (in memory) -> write atomically -> index -> audit -> only
then return. Every refusal is an :class:`IngestRefused` with a named reason,
and nothing of a refused instance is kept. The original dataset never leaves
memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID
from sqlalchemy import Executable, Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from dicom_service import metrics
from dicom_service.care import audit
from dicom_service.care.enrolment import CareService
from dicom_service.db.models import Enrolment, Instance, Series, Study, utcnow
from dicom_service.db.session import Database
from dicom_service.deidentify import Profile
from dicom_service.dicom.part10 import encode_part10
from dicom_service.dicom.uids import InvalidUID, validate_uid
from dicom_service.errors import IngestRefused, Refusal
from dicom_service.ingest.metadata import InstanceFacts, describe_instance
from dicom_service.logsafe import describe
from dicom_service.storage.base import InstanceKey, InstanceStore

log = logging.getLogger(__name__)


_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


@dataclass(frozen=True)
class Sender:
    """Who sent an instance: a registered peer or a logged-in user, bound to a centre."""

    centre_id: int
    actor: str  # "peer:AE_TITLE" or "user:NAME"; never identifying of a patient


@dataclass(frozen=True)
class IngestResult:
    pseudonym: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    replaced: bool


def _insert_ignore(dialect: str, table: Table) -> Executable:
    """INSERT ... ON CONFLICT DO NOTHING: a re-send changes nothing."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


class _Statements:
    """The index statements, built once so that SQLAlchemy compiles them once."""

    def __init__(self, dialect: str) -> None:
        study, series, instance, enrolment = (
            cast(Table, m.__table__) for m in (Study, Series, Instance, Enrolment))
        self.touch_enrolment = (
            update(enrolment)
            .where(enrolment.c.id == bindparam("b_id"), enrolment.c.consent_care.is_(True))
            .values(last_instance_at=bindparam("b_now")))
        self.insert_study = _insert_ignore(dialect, study)
        self.insert_series = _insert_ignore(dialect, series)
        self.insert_instance = _insert_ignore(dialect, instance)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


class IngestPipeline:
    def __init__(self, db: Database, store: InstanceStore, care: CareService,
                 active_profile: Callable[[], Profile]) -> None:
        self.db = db
        self.store = store
        self.care = care
        self.active_profile = active_profile
        self._statements = _Statements(db.dialect)
        self._audit = audit.chain_for(db)  # the CareService registered its key
        # series this process has indexed: their study and series rows exist
        self._known_series: set[str] = set()

    def ingest(self, ds: Dataset, transfer_syntax: str, sender: Sender) -> IngestResult:
        """De-identify and store one instance; return only once it is durable and indexed.

        Raises :class:`IngestRefused` with the reason on any refusal; then nothing
        of the instance is kept.
        """
        started = time.perf_counter()
        try:
            result = self._ingest(ds, transfer_syntax, sender)
        except IngestRefused as exc:
            metrics.INSTANCES_REFUSED.labels(reason=exc.reason.value).inc()
            raise
        metrics.INSTANCES_STORED.inc()
        metrics.INGEST_SECONDS.observe(time.perf_counter() - started)
        return result

    def _ingest(self, ds: Dataset, transfer_syntax: str, sender: Sender) -> IngestResult:
        # 1. required UIDs, validated before anything else looks at them
        try:
            for name in _REQUIRED_UIDS:
                value = ds.get(name)
                if value is None or str(value) == "":
                    raise IngestRefused(Refusal.MISSING_REQUIRED_UIDS, f"{name} is missing")
                validate_uid(str(value), name)
            patient_id = ds.get("PatientID")
            issuer = ds.get("IssuerOfPatientID")
        except InvalidUID as exc:
            raise IngestRefused(Refusal.INVALID_UID, str(exc)) from None
        except IngestRefused:
            raise
        except Exception as exc:
            log.info("unparsable data set refused (%s)", describe(exc))
            raise IngestRefused(Refusal.UNPARSABLE_DATASET,
                                "the data set could not be parsed") from None

        # 2. which enrolment? 3. consent for care?
        if not patient_id or not str(patient_id).strip():
            raise IngestRefused(Refusal.PATIENT_NOT_ENROLLED, "the instance has no PatientID")
        enrolment = self.care.find_enrolment(sender.centre_id, str(issuer) if issuer else None,
                                             str(patient_id))
        if enrolment is None:
            raise IngestRefused(Refusal.PATIENT_NOT_ENROLLED,
                                "the patient is not enrolled at the sending centre")
        if not enrolment.consent_care:
            raise IngestRefused(Refusal.NO_CONSENT_FOR_CARE,
                                "consent for care is not active for this enrolment")

        # 4. de-identify, in memory
        profile = self.active_profile()
        pseudonymiser = self.care.pseudonymiser(enrolment)
        try:
            # The dataset states its transfer syntax in its file meta: pixel
            # cleaning (Clean Pixel Data option) decodes by it and, when it
            # re-encodes the pixels in another syntax, updates it; the file
            # is written and indexed in the syntax it names afterwards.
            if getattr(ds, "file_meta", None) is None:
                ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
            profile.apply(ds, pseudonymiser)
            transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
            key = InstanceKey(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                              str(ds.SOPInstanceUID))
            data = encode_part10(ds, transfer_syntax)
            facts = describe_instance(ds, data, transfer_syntax, key)
        except Exception as exc:
            log.warning("de-identification failed (%s)", describe(exc))
            raise IngestRefused(Refusal.DEIDENTIFICATION_FAILED,
                                "the instance could not be de-identified") from None

        # 5. write atomically, then index and audit in one transaction
        try:
            stored = self.store.put(key, data)
        except OSError as exc:
            log.error("store write failed (%s)", describe(exc))
            raise IngestRefused(Refusal.OUT_OF_RESOURCES,
                                "the instance could not be written") from None
        sop_class = str(ds.SOPClassUID)
        try:
            self._index(ds, key, enrolment.id, sop_class, transfer_syntax, stored.location,
                        stored.size, profile, sender, facts)
        except _ConsentGone:
            if not stored.replaced:
                self.store.delete(key)
            raise IngestRefused(Refusal.NO_CONSENT_FOR_CARE,
                                "consent for care was withdrawn") from None
        except SQLAlchemyError as exc:
            log.error("index write failed (%s)", describe(exc))
            if not stored.replaced:
                self.store.delete(key)  # nothing half-visible: no file without its row
            raise IngestRefused(Refusal.OUT_OF_RESOURCES,
                                "the instance could not be indexed") from None
        # 6. only now is the caller told Success
        return IngestResult(pseudonym=enrolment.pseudonym, study_uid=key.study_uid,
                            series_uid=key.series_uid, sop_uid=key.sop_uid,
                            sop_class_uid=sop_class, replaced=stored.replaced)

    def _index(self, ds: Dataset, key: InstanceKey, enrolment_id: int, sop_class: str,
               transfer_syntax: str, location: str, size: int, profile: Profile,
               sender: Sender, facts: InstanceFacts) -> None:
        """Index and audit the instance in one transaction.

        The transaction first touches the enrolment row where consent for care is
        still active. That write orders it against a withdrawal (SQLite has one
        writer; PostgreSQL locks the row): either this instance commits first and
        the withdrawal removes it, or the withdrawal commits first and this
        instance is refused.
        """
        st = self._statements
        now = utcnow()
        with self.db.write_lock(), self.db.engine.begin() as conn:
            touched = conn.execute(st.touch_enrolment, {"b_id": enrolment_id, "b_now": now})
            if not touched.rowcount:
                raise _ConsentGone
            if key.series_uid not in self._known_series:
                conn.execute(st.insert_study, {
                    "study_uid": key.study_uid, "enrolment_id": enrolment_id,
                    "study_date": _text(ds.get("StudyDate")),
                    "study_time": _text(ds.get("StudyTime")), "created_at": now,
                    **_study_attributes(ds)})
                conn.execute(st.insert_series, {
                    "series_uid": key.series_uid, "study_uid": key.study_uid,
                    "modality": _text(ds.get("Modality")),
                    "series_number": _int_or_none(ds.get("SeriesNumber")),
                    **_series_attributes(ds)})
            new = conn.execute(st.insert_instance, {
                "sop_uid": key.sop_uid, "series_uid": key.series_uid,
                "study_uid": key.study_uid, "enrolment_id": enrolment_id,
                "sop_class_uid": sop_class, "transfer_syntax_uid": transfer_syntax,
                "instance_number": _int_or_none(ds.get("InstanceNumber")), "path": location,
                "size": size, "profile_name": profile.name, "profile_version": profile.version,
                "profile_sha256": profile.sha256, "received_at": now,
                "metadata_json": facts.metadata_json,
                "number_of_frames": facts.number_of_frames,
                "pixel_data_offset": facts.pixel_data_offset,
                "pixel_data_length": facts.pixel_data_length}).rowcount
            # chained here, inside the write lock this transaction already holds
            self._audit.append(conn, [audit.Event(
                now, sender.actor, "instance.store" if new else "instance.resend",
                "instance", key.sop_uid)])
        if len(self._known_series) >= 100_000:
            self._known_series.clear()
        self._known_series.add(key.series_uid)


class _ConsentGone(Exception):
    """Consent for care was withdrawn while the instance was being stored."""


def _text(value: Any, limit: int = 64) -> str | None:
    return str(value)[:limit] if value not in (None, "") else None


def _study_attributes(ds: Dataset) -> dict[str, str | None]:
    """Study-level attributes of the de-identified data set, for QIDO-RS."""
    return {
        "patient_name": _text(ds.get("PatientName")), "patient_id": _text(ds.get("PatientID")),
        "patient_birth_date": _text(ds.get("PatientBirthDate"), 8),
        "patient_sex": _text(ds.get("PatientSex"), 16),
        "accession_number": _text(ds.get("AccessionNumber")),
        "study_id": _text(ds.get("StudyID"), 16),
        "study_description": _text(ds.get("StudyDescription")),
        "referring_physician_name": _text(ds.get("ReferringPhysicianName")),
    }


def _series_attributes(ds: Dataset) -> dict[str, str | None]:
    """Series-level attributes of the de-identified data set, for QIDO-RS."""
    return {
        "series_description": _text(ds.get("SeriesDescription")),
        "series_date": _text(ds.get("SeriesDate"), 8),
        "series_time": _text(ds.get("SeriesTime"), 16),
        "pps_start_date": _text(ds.get("PerformedProcedureStepStartDate"), 8),
        "pps_start_time": _text(ds.get("PerformedProcedureStepStartTime"), 16),
    }
