"""The ingest pipeline, shared by C-STORE and STOW-RS.

For each instance: sender -> centre -> enrolment by keyed hash -> consent for
care? -> de-identify (in memory) -> write atomically -> index -> audit -> only
then return. Every refusal is an :class:`IngestRefused` with a named reason,
and nothing of a refused instance is kept. The original dataset never leaves
memory.

On one association everything is serial (the sender waits for each answer),
so what counts is the wall time of :meth:`IngestPipeline.ingest`. The
instances of one association share an :class:`IngestContext` (a held
database connection and per-association caches); the file's bytes start
their way to the disk before the instance is described for the index, and
are durable (fsync, rename, directory fsync) before its row commits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag
from pydicom.uid import UID
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from dicom_service import metrics
from dicom_service.care import audit
from dicom_service.care.enrolment import CareService, EnrolmentInfo
from dicom_service.db.models import utcnow
from dicom_service.db.session import Database
from dicom_service.deidentify import Profile
from dicom_service.deidentify.cache import DeidCache
from dicom_service.dicom.parse import SOP_CLASS_UID, SOP_INSTANCE_UID, peek_uid
from dicom_service.dicom.part10 import encode_instance
from dicom_service.dicom.uids import InvalidUID, validate_uid
from dicom_service.errors import IngestRefused, Refusal
from dicom_service.ingest.index import IndexStatements
from dicom_service.ingest.metadata import InstanceFacts, MetadataCache, describe_instance
from dicom_service.logsafe import describe
from dicom_service.storage.base import InstanceKey, InstanceStore

log = logging.getLogger(__name__)


_STUDY_INSTANCE_UID = 0x0020000D
_SERIES_INSTANCE_UID = 0x0020000E
_INSTANCE_NUMBER = 0x00200013
_REQUIRED_UIDS = (("SOPClassUID", SOP_CLASS_UID), ("SOPInstanceUID", SOP_INSTANCE_UID),
                  ("StudyInstanceUID", _STUDY_INSTANCE_UID),
                  ("SeriesInstanceUID", _SERIES_INSTANCE_UID))


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


class IngestContext:
    """What the instances of one association (or one STOW-RS request) share.

    * one database connection, taken from the pool on first use and held
      until :meth:`close`: no pool checkout per instance;
    * the de-identification caches (:class:`DeidCache`): the text cleaner and
      the pixel decision of the first instance of a series serve the next
      ones. They hold that association's identifiers, in memory only, under
      keyed digests, and are forgotten at :meth:`close`;
    * the JSON texts of the de-identified values a series repeats
      (:class:`MetadataCache`), also forgotten at :meth:`close`.

    Made by :meth:`IngestPipeline.context`; used by one thread at a time (as
    an association's instances arrive one after another); closed when the
    association ends (``with`` closes it too).
    """

    def __init__(self, db: Database, *, caches: bool = True) -> None:
        self._db = db
        self.deid = DeidCache() if caches else None
        self.metadata = MetadataCache() if caches else None
        self._conn: Connection | None = None
        self._closed = False

    def connection(self) -> Connection:
        if self._closed:  # a connection taken now would never be given back
            raise RuntimeError("this ingest context is closed")
        if self._conn is None:
            self._conn = self._db.engine.connect()
        return self._conn

    def discard_connection(self) -> None:
        """After a database error: give the connection back; the next
        instance takes a fresh one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except SQLAlchemyError as exc:  # it was broken already
                log.warning("ingest connection not closed cleanly (%s)", describe(exc))

    def close(self) -> None:
        """Forget the caches and give the connection back (idempotent)."""
        self._closed = True
        if self.deid is not None:
            self.deid.clear()
        if self.metadata is not None:
            self.metadata.clear()
        self.discard_connection()

    def __enter__(self) -> IngestContext:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError):  # OverflowError: IS "inf"
        return None


class IngestPipeline:
    def __init__(self, db: Database, store: InstanceStore, care: CareService,
                 active_profile: Callable[[], Profile]) -> None:
        self.db = db
        self.store = store
        self.care = care
        self.active_profile = active_profile
        self._statements = IndexStatements(db.dialect)
        self._audit = audit.chain_for(db)  # the CareService registered its key
        # series this process has indexed: their study and series rows exist
        self._known_series: set[str] = set()

    def context(self) -> IngestContext:
        """A context for the instances of one association or STOW-RS request:
        pass it to each :meth:`ingest`, close it at the end."""
        return IngestContext(self.db)

    def ingest(self, ds: Dataset, transfer_syntax: str, sender: Sender,
               context: IngestContext | None = None) -> IngestResult:
        """De-identify and store one instance; return only once it is durable and indexed.

        ``context`` (from :meth:`context`) carries what the instances of one
        association share; without one, the instance gets its own.

        Raises :class:`IngestRefused` with the reason on any refusal; then nothing
        of the instance is kept.
        """
        started = time.perf_counter()
        try:
            if context is None:  # one instance: nothing to share, nothing to cache
                with IngestContext(self.db, caches=False) as own:
                    result = self._ingest(ds, transfer_syntax, sender, own)
            else:
                result = self._ingest(ds, transfer_syntax, sender, context)
        except IngestRefused as exc:
            metrics.INSTANCES_REFUSED.labels(reason=exc.reason.value).inc()
            raise
        metrics.INSTANCES_STORED.inc()
        metrics.INGEST_SECONDS.observe(time.perf_counter() - started)
        return result

    def _enrolment(self, ds: Dataset, sender: Sender, ctx: IngestContext) -> EnrolmentInfo:
        """Steps 2 and 3: the sending centre's enrolment, with consent for care."""
        try:
            patient_id = ds.get("PatientID")
            issuer = ds.get("IssuerOfPatientID")
        except Exception as exc:
            log.info("unparsable data set refused (%s)", describe(exc))
            raise IngestRefused(Refusal.UNPARSABLE_DATASET,
                                "the data set could not be parsed") from None
        if not patient_id or not str(patient_id).strip():
            raise IngestRefused(Refusal.PATIENT_NOT_ENROLLED, "the instance has no PatientID")
        conn = ctx.connection()
        try:
            enrolment = self.care.find_enrolment_on(
                conn, sender.centre_id, str(issuer) if issuer else None, str(patient_id))
            if conn.in_transaction():
                conn.rollback()  # end the read; the index transaction checks consent again
        except SQLAlchemyError:
            ctx.discard_connection()
            raise
        if enrolment is None:
            raise IngestRefused(Refusal.PATIENT_NOT_ENROLLED,
                                "the patient is not enrolled at the sending centre")
        if not enrolment.consent_care:
            raise IngestRefused(Refusal.NO_CONSENT_FOR_CARE,
                                "consent for care is not active for this enrolment")
        return enrolment

    def _ingest(self, ds: Dataset, transfer_syntax: str, sender: Sender,
                ctx: IngestContext) -> IngestResult:
        # 1. required UIDs, validated before anything else looks at them (read
        # without converting them: the writer then copies what the walk maps)
        try:
            for name, tag in _REQUIRED_UIDS:
                value = peek_uid(ds, tag)
                if not value:
                    raise IngestRefused(Refusal.MISSING_REQUIRED_UIDS, f"{name} is missing")
                validate_uid(value, name)
        except InvalidUID as exc:
            raise IngestRefused(Refusal.INVALID_UID, str(exc)) from None
        except IngestRefused:
            raise
        except Exception as exc:
            log.info("unparsable data set refused (%s)", describe(exc))
            raise IngestRefused(Refusal.UNPARSABLE_DATASET,
                                "the data set could not be parsed") from None

        # 2. which enrolment? 3. consent for care?
        enrolment = self._enrolment(ds, sender, ctx)

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
            profile.apply(ds, pseudonymiser, ctx.deid)
            transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
            key = InstanceKey(_uid(ds, _STUDY_INSTANCE_UID), _uid(ds, _SERIES_INSTANCE_UID),
                              _uid(ds, SOP_INSTANCE_UID))
            data, pixel_data = encode_instance(ds, transfer_syntax)
        except Exception as exc:
            log.warning("de-identification failed (%s)", describe(exc))
            raise IngestRefused(Refusal.DEIDENTIFICATION_FAILED,
                                "the instance could not be de-identified") from None

        # 5. write atomically, then index and audit in one transaction. While
        # the bytes travel to the disk, describe the instance for the index.
        try:
            pending = self.store.start_put(key, data)
        except OSError as exc:
            log.error("store write failed (%s)", describe(exc))
            raise IngestRefused(Refusal.OUT_OF_RESOURCES,
                                "the instance could not be written") from None
        sop_class = _uid(ds, SOP_CLASS_UID)
        try:
            facts = describe_instance(ds, data, transfer_syntax, key, pixel_data, ctx.metadata)
            rows = self._rows(ds, key, enrolment.id, sop_class, transfer_syntax,
                              pending.location, len(data), profile, facts)
        except Exception as exc:
            pending.abort()
            log.warning("de-identification failed (%s)", describe(exc))
            raise IngestRefused(Refusal.DEIDENTIFICATION_FAILED,
                                "the instance could not be de-identified") from None
        except BaseException:
            pending.abort()
            raise
        try:
            stored = pending.finish()  # durable before its row commits
        except OSError as exc:
            log.error("store write failed (%s)", describe(exc))
            raise IngestRefused(Refusal.OUT_OF_RESOURCES,
                                "the instance could not be written") from None
        try:
            self._index(ctx, rows, key, sender)
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

    def _rows(self, ds: Dataset, key: InstanceKey, enrolment_id: int, sop_class: str,
              transfer_syntax: str, location: str, size: int, profile: Profile,
              facts: InstanceFacts) -> _Rows:
        """The index rows of the instance (study and series only for a series
        this process has not indexed yet)."""
        now = utcnow()
        study = series = None
        if key.series_uid not in self._known_series:
            study = {"study_uid": key.study_uid, "enrolment_id": enrolment_id,
                     "study_date": _text(ds.get("StudyDate")),
                     "study_time": _text(ds.get("StudyTime")), "created_at": now,
                     **_study_attributes(ds)}
            series = {"series_uid": key.series_uid, "study_uid": key.study_uid,
                      "modality": _text(ds.get("Modality")),
                      "series_number": _int_or_none(ds.get("SeriesNumber")),
                      **_series_attributes(ds)}
        instance = {
            "sop_uid": key.sop_uid, "series_uid": key.series_uid,
            "study_uid": key.study_uid, "enrolment_id": enrolment_id,
            "sop_class_uid": sop_class, "transfer_syntax_uid": transfer_syntax,
            "instance_number": _instance_number(ds), "path": location,
            "size": size, "profile_name": profile.name, "profile_version": profile.version,
            "profile_sha256": profile.sha256, "received_at": now,
            "metadata_json": facts.metadata_json, "image_json": facts.image_json,
            "number_of_frames": facts.number_of_frames,
            "pixel_data_offset": facts.pixel_data_offset,
            "pixel_data_length": facts.pixel_data_length}
        return _Rows(enrolment_id, now, study, series, instance)

    def _index(self, ctx: IngestContext, rows: _Rows, key: InstanceKey,
               sender: Sender) -> None:
        """Index and audit the instance in one transaction.

        The transaction first touches the enrolment row where consent for care is
        still active. That write orders it against a withdrawal (SQLite has one
        writer; PostgreSQL locks the row): either this instance commits first and
        the withdrawal removes it, or the withdrawal commits first and this
        instance is refused.
        """
        conn = ctx.connection()
        try:
            with self.db.write_lock(), conn.begin():
                new = self._statements.write(conn, rows.enrolment_id, rows.now, rows.study,
                                             rows.series, rows.instance)
                if new is None:
                    raise _ConsentGone
                # chained here, inside the write lock this transaction already holds
                self._audit.append(conn, [audit.Event(
                    rows.now, sender.actor, "instance.store" if new else "instance.resend",
                    "instance", key.sop_uid)])
        except SQLAlchemyError:
            ctx.discard_connection()
            raise
        if len(self._known_series) >= 100_000:
            self._known_series.clear()
        self._known_series.add(key.series_uid)


@dataclass(frozen=True)
class _Rows:
    """What the index transaction of one instance writes."""

    enrolment_id: int
    now: datetime
    study: dict[str, Any] | None
    series: dict[str, Any] | None
    instance: dict[str, Any]


def _instance_number(ds: Dataset) -> int | None:
    """InstanceNumber (IS) as pydicom reads it, without converting a raw element."""
    elem = ds._dict.get(BaseTag(_INSTANCE_NUMBER))
    if type(elem) is not RawDataElement or not isinstance(elem.value, bytes):
        return _int_or_none(ds.get("InstanceNumber"))
    text = elem.value.decode("latin-1").strip(" \x00")
    try:
        return int(text)
    except ValueError:
        try:
            return int(float(text))  # as int(IS("1.5")) does
        except (ValueError, OverflowError):
            return None


def _uid(ds: Dataset, tag: int) -> str:
    """A UID of the de-identified data set (present: checked on arrival)."""
    return peek_uid(ds, tag) or ""


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
