"""QIDO-RS (PS3.18 10.6): search for studies, series and instances.

Candidates come from the index, restricted by the policy to the reader's
visible enrolments, and are built in the DICOM JSON model with the attributes
PS3.18 Table 10.6.3-3/4/5 requires; matching (:mod:`.matching`), ``offset`` and
``limit`` are then applied, and ``includefield`` adds attributes (for
instances: any attribute of the stored metadata).

Study searches count instances and collect modalities (one grouped query) only
for the studies of the answered page, unless a query key matches on one of
those figures. UID list keys (StudyInstanceUID at the study level; study,
series and SOP Instance UIDs at the instance level) narrow the index query
first. Each reader's statements are built once (:func:`_statements`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import Connection, Executable, Select, bindparam, func, select

from dicom_service.app import Services
from dicom_service.db.models import Instance, Series, Study
from dicom_service.web.deps import ServicesDep
from dicom_service.web.dicomweb import params
from dicom_service.web.dicomweb.index import note_study_search
from dicom_service.web.dicomweb.matching import (
    Attribute,
    Matcher,
    attribute,
    matcher,
    uid_values,
)
from dicom_service.web.dicomweb.urls import dicomweb_base
from dicom_service.web.dicomweb.wado import DICOM_JSON
from dicom_service.web.policy import Reader, ReaderDep

router = APIRouter()

MAX_LIMIT = 10_000
FUZZY_WARNING = ('299 dicom_service: "fuzzymatching parameter is not supported. '
                 'Only literal matching has been performed."')
_RESERVED = frozenset({"limit", "offset", "fuzzymatching", "includefield"})

# Attributes of each level's default answer (PS3.18 Table 10.6.3-3/4/5)
STUDY_TAGS = ("00080005", "00080020", "00080030", "00080050", "00080061", "00080090",
              "00081030", "00081190", "00100010", "00100020", "00100030", "00100040",
              "0020000D", "00200010", "00201206", "00201208")
SERIES_TAGS = ("00080005", "00080021", "00080031", "00080060", "0008103E", "00081190",
               "0020000E", "00200011", "00201209", "00400244", "00400245")
INSTANCE_TAGS = ("00080005", "00080016", "00080018", "00081190", "00200013", "00280008",
                 "00280010", "00280011", "00280100", "00080056")


@dataclass
class Query:
    matchers: list[tuple[Attribute, Matcher]] = field(default_factory=list)
    keys: list[Attribute] = field(default_factory=list)  # every query key (also universal)
    include: set[str] = field(default_factory=set)
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False
    # UID list matches by tag (several keys of one tag: the UIDs all of them allow),
    # so that the index is asked only for those
    uids: dict[str, frozenset[str]] = field(default_factory=dict)


def _int_param(value: str, name: str, low: int, high: int) -> int:
    if not value.isdigit() or len(value) > 9:
        raise ValueError(f'"{name}" must be a non-negative integer')
    number = int(value)
    if not low <= number <= high:
        raise ValueError(f'"{name}" must be between {low} and {high}')
    return number


def parse_query(request: Request) -> Query:
    """Validate the query string; 400 with the rule broken."""
    q = Query()
    for name, value in request.query_params.multi_items():
        lower = name.lower()
        if lower == "limit":
            q.limit = _int_param(value, "limit", 0, MAX_LIMIT)
        elif lower == "offset":
            q.offset = _int_param(value, "offset", 0, 10**9)
        elif lower == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise ValueError('"fuzzymatching" must be true or false')
            q.fuzzy = value.lower() == "true"
        elif lower == "includefield":
            for item in value.split(","):
                item = item.strip()
                if item.lower() == "all":
                    q.include_all = True
                elif item:
                    q.include.add(attribute(item).tag)
        else:
            attr = attribute(name)
            q.keys.append(attr)
            m = matcher(attr, value)
            if m is not None:
                q.matchers.append((attr, m))
                if attr.vr == "UI":
                    wanted = uid_values(value)
                    q.uids[attr.tag] = q.uids.get(attr.tag, wanted) & wanted
    return q


def _v(vr: str, value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(value)}]}
    return {"vr": vr, "Value": value if isinstance(value, list) else [value]}


def _base(request: Request) -> str:
    return dicomweb_base(request)


@dataclass
class _Stats:
    series: dict[str, int] = field(default_factory=dict)  # series UID -> instance count
    modalities: set[str] = field(default_factory=set)


_STUDY_COLUMNS = (Study.study_uid, Study.enrolment_id, Study.study_date, Study.study_time,
                  Study.accession_number, Study.referring_physician_name,
                  Study.study_description, Study.patient_name, Study.patient_id,
                  Study.patient_birth_date, Study.patient_sex, Study.study_id)
_SERIES_COLUMNS = (Series.study_uid, Series.series_uid, Series.series_date, Series.series_time,
                   Series.modality, Series.series_description, Series.series_number,
                   Series.pps_start_date, Series.pps_start_time)
# study attributes computed from the instances (PS3.18 Table 10.6.3-3)
_STUDY_STAT_TAGS = frozenset({"00080061", "00201206", "00201208"})
_SERIES_OF_STUDIES = (select(*_SERIES_COLUMNS)
                      .where(Series.study_uid.in_(bindparam("studies", expanding=True)))
                      .order_by(Series.study_uid, Series.series_number, Series.series_uid))
# a select of any columns (narrowed further by some requests)
_Select = Select[*tuple[Any, ...]]


@dataclass(frozen=True)
class _Statements:
    """One reader's search statements. Building a statement, and matching its
    result columns to the cached compilation of an equal one, costs several
    times what SQLite needs to run it; built once per reader and executed again
    and again, they cost nothing of the kind. Visibility is ``reader.where``."""

    studies: Executable
    study: Executable  # bind "study"
    studies_in: Executable  # bind "uids" (a list)
    stats: Executable
    stats_of: Executable  # bind "studies" (a list)
    instances: _Select
    instances_of_study: _Select  # bind "study"
    instances_of_series: _Select  # binds "study", "series"


@lru_cache(maxsize=256)
def _statements(reader: Reader) -> _Statements:
    studies = (select(*_STUDY_COLUMNS).where(reader.where(Study.enrolment_id, Study.study_uid))
               .order_by(Study.study_date.desc(), Study.study_time.desc(), Study.study_uid))
    stats = (select(Instance.study_uid, Instance.series_uid, Series.modality,
                    func.count(Instance.sop_uid))
             .join(Series, Series.series_uid == Instance.series_uid)
             .where(reader.where(Instance.enrolment_id, Instance.study_uid))
             .group_by(Instance.study_uid, Instance.series_uid, Series.modality))
    instances = (select(Instance.study_uid, Instance.series_uid, Instance.sop_uid,
                        Instance.enrolment_id, Instance.metadata_json)
                 .where(reader.where(Instance.enrolment_id, Instance.study_uid))
                 .order_by(Instance.study_uid, Instance.series_uid, Instance.instance_number,
                           Instance.sop_uid))
    of_study = instances.where(Instance.study_uid == bindparam("study"))
    return _Statements(
        studies=studies,
        study=studies.where(Study.study_uid == bindparam("study")),
        studies_in=studies.where(Study.study_uid.in_(bindparam("uids", expanding=True))),
        stats=stats,
        stats_of=stats.where(Instance.study_uid.in_(bindparam("studies", expanding=True))),
        instances=instances,
        instances_of_study=of_study,
        instances_of_series=of_study.where(Instance.series_uid == bindparam("series")),
    )


def _stats(conn: Connection, reader: Reader,
           study_uids: Collection[str] | None) -> dict[str, _Stats]:
    """Per visible study (of ``study_uids``, or all): instance count per series and
    the modalities, in one query."""
    statements = _statements(reader)
    if study_uids is None:
        result = conn.execute(statements.stats)
    else:
        result = conn.execute(statements.stats_of, {"studies": sorted(study_uids)})
    out: dict[str, _Stats] = defaultdict(_Stats)
    for st, se, modality, n in result:
        out[st].series[se] = n
        if modality:
            out[st].modalities.add(modality)
    return out


def _set_stats(item: dict[str, Any], stat: _Stats) -> None:
    item["00080061"] = _v("CS", sorted(stat.modalities) or None)
    item["00201206"] = _v("IS", len(stat.series))
    item["00201208"] = _v("IS", sum(stat.series.values()))


def _study_items(conn: Connection, reader: Reader, base: str, study_uid: str | None = None,
                 uids: frozenset[str] | None = None) -> dict[str, dict[str, Any]]:
    """The visible studies (newest first; only ``study_uid``, or only those of
    ``uids``, if given) without the attributes computed from their instances
    (:func:`_set_stats` adds those)."""
    statements = _statements(reader)
    if study_uid is not None:
        result = conn.execute(statements.study, {"study": study_uid})
    elif uids is not None:
        result = conn.execute(statements.studies_in, {"uids": sorted(uids)})
    else:
        result = conn.execute(statements.studies)
    items: dict[str, dict[str, Any]] = {}
    for st in result:
        if not reader.sees(st.enrolment_id, st.study_uid):
            continue
        items[st.study_uid] = {
            "00080005": _v("CS", "ISO_IR 192"),
            "00080020": _v("DA", st.study_date), "00080030": _v("TM", st.study_time),
            "00080050": _v("SH", st.accession_number),
            "00080090": _v("PN", st.referring_physician_name),
            "00081030": _v("LO", st.study_description),
            "00081190": _v("UR", f"{base}studies/{st.study_uid}"),
            "00100010": _v("PN", st.patient_name), "00100020": _v("LO", st.patient_id),
            "00100030": _v("DA", st.patient_birth_date),
            "00100040": _v("CS", st.patient_sex),
            "0020000D": _v("UI", st.study_uid), "00200010": _v("SH", st.study_id),
        }
    return items


def _series_items(conn: Connection, reader: Reader, base: str,
                  study_uid: str | None) -> list[dict[str, Any]]:
    studies = _study_items(conn, reader, base, study_uid)
    stats = _stats(conn, reader, [study_uid] if study_uid is not None else None)
    for uid, study in studies.items():
        _set_stats(study, stats.get(uid, _Stats()))
    items = []
    for se in conn.execute(_SERIES_OF_STUDIES, {"studies": list(studies)}):
        study = studies[se.study_uid]
        item = {k: v for k, v in study.items() if study_uid is None or k == "0020000D"}
        item.update({
            "00080005": _v("CS", "ISO_IR 192"),
            "00080021": _v("DA", se.series_date), "00080031": _v("TM", se.series_time),
            "00080060": _v("CS", se.modality),
            "0008103E": _v("LO", se.series_description),
            "00081190": _v("UR", f"{base}studies/{se.study_uid}/series/{se.series_uid}"),
            "0020000E": _v("UI", se.series_uid),
            "00200011": _v("IS", se.series_number),
            "00201209": _v("IS", stats.get(se.study_uid, _Stats()).series.get(
                se.series_uid, 0)),
            "00400244": _v("DA", se.pps_start_date),
            "00400245": _v("TM", se.pps_start_time),
        })
        items.append(item)
    return items


# the index columns of the UIDs an instance search may list
_INSTANCE_UID_COLUMNS = {"0020000D": Instance.study_uid, "0020000E": Instance.series_uid,
                         "00080018": Instance.sop_uid}


def _instance_items(conn: Connection, reader: Reader, base: str, study_uid: str | None,
                    series_uid: str | None,
                    uids: Mapping[str, frozenset[str]]) -> list[dict[str, Any]]:
    """The visible instances (of ``study_uid``, ``series_uid``), and of the UID
    lists in ``uids`` if any: the index narrows them before their DICOM JSON is
    parsed (the matchers still decide)."""
    statements = _statements(reader)
    params: dict[str, Any] = {"study": study_uid, "series": series_uid}
    if study_uid is None:
        query = statements.instances
    elif series_uid is None:
        query = statements.instances_of_study
    else:
        query = statements.instances_of_series
    for tag, column in _INSTANCE_UID_COLUMNS.items():
        if tag in uids:
            query = query.where(column.in_(sorted(uids[tag])))
    result = conn.execute(query, params)
    items = []
    for st, se, sop, enrolment_id, meta in result:
        if not reader.sees(enrolment_id, st):
            continue
        item: dict[str, Any] = json.loads(meta or "{}")
        item["00080005"] = _v("CS", "ISO_IR 192")
        item["00081190"] = _v("UR", f"{base}studies/{st}/series/{se}/instances/{sop}")
        items.append(item)
    return items


def _page(q: Query, items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The matching items, ``offset`` and ``limit`` applied."""
    matched = [i for i in items if all(m(i) for _, m in q.matchers)]
    end = None if q.limit is None or q.limit == 0 else q.offset + q.limit
    return matched[q.offset:end]


def _answer(q: Query, items: Iterable[dict[str, Any]], defaults: tuple[str, ...],
            extra: tuple[str, ...] = ()) -> Response:
    """Match, page and project ``items``; 200 with a JSON array (also when empty)."""
    return _respond(q, _page(q, items), defaults, extra)


def _respond(q: Query, page: list[dict[str, Any]], defaults: tuple[str, ...],
             extra: tuple[str, ...] = ()) -> Response:
    keep = set(defaults) | set(extra) | {a.tag for a in q.keys} | q.include
    out = []
    for item in page:
        if q.include_all:
            projected = {k: v for k, v in item.items() if "BulkDataURI" not in v
                         and "InlineBinary" not in v}
        else:
            projected = {k: item[k] for k in keep if k in item}
        out.append(dict(sorted(projected.items())))
    body = json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    headers = {}
    if q.fuzzy:
        headers["Warning"] = FUZZY_WARNING
    return Response(body, media_type=DICOM_JSON, headers=headers)


def _search_studies(services: Services, reader: Reader, base: str, q: Query) -> Response:
    uids = q.uids.get("0020000D")  # the matchers below still decide
    with services.db.engine.connect() as conn:
        items = _study_items(conn, reader, base, uids=uids)
        if any(attr.tag in _STUDY_STAT_TAGS for attr, _ in q.matchers):
            # matching needs every candidate's figures
            stats = _stats(conn, reader, None if uids is None else list(items))
            for uid, item in items.items():
                _set_stats(item, stats.get(uid, _Stats()))
            return _answer(q, items.values(), STUDY_TAGS)
        # else only the answered page needs them
        page = _page(q, items.values())
        stats = _stats(conn, reader, [_v_uid(item) for item in page])
    for item in page:
        _set_stats(item, stats.get(_v_uid(item), _Stats()))
    return _respond(q, page, STUDY_TAGS)


def _v_uid(item: dict[str, Any]) -> str:
    uid: str = item["0020000D"]["Value"][0]
    return uid


def _series_answer(services: Services, reader: Reader, base: str, q: Query,
                   study_uid: str | None, extra: tuple[str, ...] = ()) -> Response:
    with services.db.engine.connect() as conn:
        items = _series_items(conn, reader, base, study_uid)
    return _answer(q, items, SERIES_TAGS, extra)


def _instance_answer(services: Services, reader: Reader, base: str, q: Query,
                     study_uid: str | None, series_uid: str | None,
                     extra: tuple[str, ...] = ()) -> Response:
    with services.db.engine.connect() as conn:
        items = _instance_items(conn, reader, base, study_uid, series_uid, q.uids)
    return _answer(q, items, INSTANCE_TAGS, extra)


def _note_search(services: Services, reader: Reader, level: str) -> None:
    """Audit a search across studies (buffered; identical searches coalesce)."""
    services.reads.note(reader.principal.actor, "dicomweb.search", "level", level)


@router.get("/studies", summary="Search for studies (PS3.18 10.6)")
def search_studies(request: Request, services: ServicesDep, reader: ReaderDep) -> Response:
    _note_search(services, reader, "studies")
    return _search_studies(services, reader, _base(request), parse_query(request))


@router.get("/series", summary="Search for series (all studies)")
def search_all_series(request: Request, services: ServicesDep, reader: ReaderDep) -> Response:
    _note_search(services, reader, "series")
    q = parse_query(request)
    return _series_answer(services, reader, _base(request), q, None, ("0020000D",))


@router.get("/studies/{study}/series", summary="Search for series of a study")
def search_series(study: str, request: Request, services: ServicesDep,
                  reader: ReaderDep) -> Response:
    study_uid = params.uid(study, "StudyInstanceUID")
    note_study_search(services, reader, study_uid)
    q = parse_query(request)
    return _series_answer(services, reader, _base(request), q, study_uid)


@router.get("/instances", summary="Search for instances (all studies)")
def search_all_instances(request: Request, services: ServicesDep,
                         reader: ReaderDep) -> Response:
    _note_search(services, reader, "instances")
    q = parse_query(request)
    return _instance_answer(services, reader, _base(request), q, None, None,
                            ("0020000D", "0020000E"))


@router.get("/studies/{study}/instances", summary="Search for instances of a study")
def search_study_instances(study: str, request: Request, services: ServicesDep,
                           reader: ReaderDep) -> Response:
    study_uid = params.uid(study, "StudyInstanceUID")
    note_study_search(services, reader, study_uid)
    q = parse_query(request)
    return _instance_answer(services, reader, _base(request), q, study_uid, None,
                            ("0020000E",))


@router.get("/studies/{study}/series/{series}/instances",
            summary="Search for instances of a series")
def search_series_instances(study: str, series: str, request: Request, services: ServicesDep,
                            reader: ReaderDep) -> Response:
    study_uid = params.uid(study, "StudyInstanceUID")
    series_uid = params.uid(series, "SeriesInstanceUID")
    note_study_search(services, reader, study_uid)
    q = parse_query(request)
    return _instance_answer(services, reader, _base(request), q, study_uid, series_uid)
