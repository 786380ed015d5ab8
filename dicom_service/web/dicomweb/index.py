"""Index look-ups for DICOMweb, always restricted to what a reader may see.

A study the reader may not see is indistinguishable from one that does not
exist: both raise :class:`NotFound` (404).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from sqlalchemy import bindparam, case, select

from dicom_service.app import Services
from dicom_service.db.models import Instance
from dicom_service.db.prepared import prepared
from dicom_service.errors import NotFound
from dicom_service.web.policy import Reader

NOT_FOUND = "no such study, series or instance"


@dataclass(frozen=True)
class InstanceRow:
    """One visible stored instance, as the web layer needs it."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    path: str  # relative to the store root
    enrolment_id: int
    metadata_json: str | None
    number_of_frames: int | None
    pixel_data_offset: int | None
    pixel_data_length: int | None
    # the attributes rendering reads (instances.image_json), if the index has them
    image_json: str | None = None

    @property
    def header_json(self) -> str | None:
        """What rendering needs of the instance's DICOM JSON: the image
        attributes when kept apart, else the whole document (if read)."""
        return self.image_json or self.metadata_json


# in the order of InstanceRow's fields (a prepared read gives plain tuples)
_COLUMNS = (Instance.study_uid, Instance.series_uid, Instance.sop_uid, Instance.sop_class_uid,
            Instance.transfer_syntax_uid, Instance.path, Instance.enrolment_id,
            Instance.metadata_json, Instance.number_of_frames, Instance.pixel_data_offset,
            Instance.pixel_data_length, Instance.image_json)


def instances(services: Services, reader: Reader, study_uid: str,
              series_uid: str | None = None, sop_uid: str | None = None) -> list[InstanceRow]:
    """The visible instances of a study (series, instance), in one query.

    Raises :class:`NotFound` when there is none (absent or not visible).
    """
    query = (select(*_COLUMNS).where(reader.where(Instance.enrolment_id, Instance.study_uid))
             .where(Instance.study_uid == study_uid))
    if series_uid is not None:
        query = query.where(Instance.series_uid == series_uid)
    if sop_uid is not None:
        query = query.where(Instance.sop_uid == sop_uid)
    query = query.order_by(Instance.series_uid, Instance.instance_number, Instance.sop_uid)
    with services.db.engine.connect() as conn:
        rows = [InstanceRow(**r._mapping) for r in conn.execute(query)]
    # the policy, once more per row: a route never sees a row it may not read
    rows = [r for r in rows if reader.sees(r.enrolment_id, r.study_uid)]
    if not rows:
        _refused(services, reader, study_uid)
    note_read(services, reader, study_uid)
    return rows


# one instance by its primary key: built once and run as a prepared read, so
# that a frame request (the viewer's hot path) pays neither statement
# construction, nor SQLAlchemy's result machinery, nor a visibility clause
# that cannot narrow a single row further than ``reader.sees`` does
_KEY = (Instance.sop_uid == bindparam("sop"), Instance.series_uid == bindparam("series"),
        Instance.study_uid == bindparam("study"))
_BY_KEY = select(*_COLUMNS).where(*_KEY)
# the same for rendering: without the whole DICOM JSON (kilobytes, only read
# when the image attributes were not kept apart)
_BY_KEY_TO_RENDER = select(*(
    case((Instance.image_json.is_(None), Instance.metadata_json)).label("metadata_json")
    if column is Instance.metadata_json else column for column in _COLUMNS)).where(*_KEY)


def instance(services: Services, reader: Reader, study_uid: str, series_uid: str,
             sop_uid: str, *, to_render: bool = False) -> InstanceRow:
    """One visible instance; :class:`NotFound` otherwise. ``to_render``: the
    row's ``metadata_json`` is left out when ``image_json`` is there."""
    found = prepared(services.db.engine, _BY_KEY_TO_RENDER if to_render else _BY_KEY).first(
        {"sop": sop_uid, "series": series_uid, "study": study_uid})
    if found is None:
        _refused(services, reader, study_uid)
    row = InstanceRow(*found)
    if not reader.sees(row.enrolment_id, row.study_uid):
        _refused(services, reader, study_uid)
    note_read(services, reader, study_uid)
    return row


_ANY_OF_STUDY = select(Instance.sop_uid).where(Instance.study_uid == bindparam("study")).limit(1)
# what the audit names a study by when the index does not hold it: the caller's
# UID could be an original (e.g. copied from a hospital PACS) and is not kept
UNKNOWN_STUDY = "-"


def _indexed(services: Services, study_uid: str) -> bool:
    with services.db.engine.connect() as conn:
        return conn.execute(_ANY_OF_STUDY, {"study": study_uid}).first() is not None


def note_read(services: Services, reader: Reader, study_uid: str,
              action: str = "dicomweb.read") -> None:
    """Audit a read of a study the index holds (buffered; identical reads coalesce)."""
    services.reads.note(reader.principal.actor, action, "study", study_uid)


def note_study_search(services: Services, reader: Reader, study_uid: str) -> None:
    """Audit a search within one study; a study the index does not hold is
    named :data:`UNKNOWN_STUDY`."""
    known = _indexed(services, study_uid)
    services.reads.note(reader.principal.actor, "dicomweb.search", "study",
                        study_uid if known else UNKNOWN_STUDY, "ok" if known else "not-found")


def _refused(services: Services, reader: Reader, study_uid: str) -> NoReturn:
    """Audit a read that found nothing, telling a study the caller may not see
    ("refused") from one the index does not hold ("not-found", named
    :data:`UNKNOWN_STUDY`), then raise the same 404 for both: the caller learns
    nothing, the audit what it may keep."""
    if _indexed(services, study_uid):
        services.reads.note(reader.principal.actor, "dicomweb.read", "study", study_uid,
                            "refused")
    else:
        services.reads.note(reader.principal.actor, "dicomweb.read", "study", UNKNOWN_STUDY,
                            "not-found")
    raise NotFound(NOT_FOUND)
