"""QIDO-RS (PS3.18 10.6): search for studies, series and instances.

Candidates come from the index, restricted by the policy to the reader's
visible enrolments, and are built in the DICOM JSON model with the attributes
PS3.18 Table 10.6.3-3/4/5 requires; matching (:mod:`.matching`), ``offset`` and
``limit`` are then applied, and ``includefield`` adds attributes (for
instances: any attribute of the stored metadata).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import func, select

from dicom_service.app import Services
from dicom_service.db.models import Instance, Series, Study
from dicom_service.web.deps import ServicesDep
from dicom_service.web.dicomweb import params
from dicom_service.web.dicomweb.matching import Attribute, Matcher, attribute, matcher
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


def _stats(services: Services, reader: Reader,
           study_uid: str | None) -> dict[str, _Stats]:
    """Per visible study: instance count per series and the modalities, in one query."""
    query = (select(Instance.study_uid, Instance.series_uid, Series.modality,
                    func.count(Instance.sop_uid))
             .join(Series, Series.series_uid == Instance.series_uid)
             .where(reader.where(Instance.enrolment_id, Instance.study_uid))
             .group_by(Instance.study_uid, Instance.series_uid, Series.modality))
    if study_uid is not None:
        query = query.where(Instance.study_uid == study_uid)
    out: dict[str, _Stats] = defaultdict(_Stats)
    with services.db.engine.connect() as conn:
        for st, se, modality, n in conn.execute(query):
            out[st].series[se] = n
            if modality:
                out[st].modalities.add(modality)
    return out


def _study_items(services: Services, reader: Reader, base: str,
                 study_uid: str | None = None) -> dict[str, dict[str, Any]]:
    stats = _stats(services, reader, study_uid)
    query = (select(Study).where(reader.where(Study.enrolment_id, Study.study_uid))
             .order_by(Study.study_date.desc(), Study.study_time.desc(), Study.study_uid))
    if study_uid is not None:
        query = query.where(Study.study_uid == study_uid)
    items: dict[str, dict[str, Any]] = {}
    with services.db.sessions() as s:
        for st in s.scalars(query):
            if not reader.sees(st.enrolment_id, st.study_uid):
                continue
            stat = stats.get(st.study_uid, _Stats())
            items[st.study_uid] = {
                "00080005": _v("CS", "ISO_IR 192"),
                "00080020": _v("DA", st.study_date), "00080030": _v("TM", st.study_time),
                "00080050": _v("SH", st.accession_number),
                "00080061": _v("CS", sorted(stat.modalities) or None),
                "00080090": _v("PN", st.referring_physician_name),
                "00081030": _v("LO", st.study_description),
                "00081190": _v("UR", f"{base}studies/{st.study_uid}"),
                "00100010": _v("PN", st.patient_name), "00100020": _v("LO", st.patient_id),
                "00100030": _v("DA", st.patient_birth_date),
                "00100040": _v("CS", st.patient_sex),
                "0020000D": _v("UI", st.study_uid), "00200010": _v("SH", st.study_id),
                "00201206": _v("IS", len(stat.series)),
                "00201208": _v("IS", sum(stat.series.values())),
            }
    return items


def _series_items(services: Services, reader: Reader, base: str,
                  study_uid: str | None) -> list[dict[str, Any]]:
    studies = _study_items(services, reader, base, study_uid)
    stats = _stats(services, reader, study_uid)
    query = (select(Series).where(Series.study_uid.in_(list(studies)))
             .order_by(Series.study_uid, Series.series_number, Series.series_uid))
    items = []
    with services.db.sessions() as s:
        for se in s.scalars(query):
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


def _instance_items(services: Services, reader: Reader, base: str, study_uid: str | None,
                    series_uid: str | None) -> list[dict[str, Any]]:
    query = (select(Instance.study_uid, Instance.series_uid, Instance.sop_uid,
                    Instance.enrolment_id, Instance.metadata_json)
             .where(reader.where(Instance.enrolment_id, Instance.study_uid))
             .order_by(Instance.study_uid, Instance.series_uid, Instance.instance_number,
                       Instance.sop_uid))
    if study_uid is not None:
        query = query.where(Instance.study_uid == study_uid)
    if series_uid is not None:
        query = query.where(Instance.series_uid == series_uid)
    items = []
    with services.db.engine.connect() as conn:
        for st, se, sop, enrolment_id, meta in conn.execute(query):
            if not reader.sees(enrolment_id, st):
                continue
            item: dict[str, Any] = json.loads(meta or "{}")
            item["00080005"] = _v("CS", "ISO_IR 192")
            item["00081190"] = _v("UR", f"{base}studies/{st}/series/{se}/instances/{sop}")
            items.append(item)
    return items


def _answer(request: Request, q: Query, items: Iterable[dict[str, Any]],
            defaults: tuple[str, ...], extra: tuple[str, ...] = ()) -> Response:
    """Match, page and project ``items``; 200 with a JSON array (also when empty)."""
    matched = [i for i in items if all(m(i) for _, m in q.matchers)]
    end = None if q.limit is None or q.limit == 0 else q.offset + q.limit
    page = matched[q.offset:end]
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


@router.get("/studies", summary="Search for studies (PS3.18 10.6)")
def search_studies(request: Request, services: ServicesDep, reader: ReaderDep) -> Response:
    q = parse_query(request)
    items = _study_items(services, reader, _base(request)).values()
    return _answer(request, q, items, STUDY_TAGS)


@router.get("/series", summary="Search for series (all studies)")
def search_all_series(request: Request, services: ServicesDep, reader: ReaderDep) -> Response:
    q = parse_query(request)
    return _answer(request, q, _series_items(services, reader, _base(request), None),
                   SERIES_TAGS, ("0020000D",))


@router.get("/studies/{study}/series", summary="Search for series of a study")
def search_series(study: str, request: Request, services: ServicesDep,
                  reader: ReaderDep) -> Response:
    study_uid = params.uid(study, "StudyInstanceUID")
    q = parse_query(request)
    return _answer(request, q, _series_items(services, reader, _base(request), study_uid),
                   SERIES_TAGS)


@router.get("/instances", summary="Search for instances (all studies)")
def search_all_instances(request: Request, services: ServicesDep,
                         reader: ReaderDep) -> Response:
    q = parse_query(request)
    return _answer(request, q, _instance_items(services, reader, _base(request), None, None),
                   INSTANCE_TAGS, ("0020000D", "0020000E"))


@router.get("/studies/{study}/instances", summary="Search for instances of a study")
def search_study_instances(study: str, request: Request, services: ServicesDep,
                           reader: ReaderDep) -> Response:
    study_uid = params.uid(study, "StudyInstanceUID")
    q = parse_query(request)
    return _answer(request, q, _instance_items(services, reader, _base(request), study_uid,
                                               None), INSTANCE_TAGS, ("0020000E",))


@router.get("/studies/{study}/series/{series}/instances",
            summary="Search for instances of a series")
def search_series_instances(study: str, series: str, request: Request, services: ServicesDep,
                            reader: ReaderDep) -> Response:
    study_uid = params.uid(study, "StudyInstanceUID")
    series_uid = params.uid(series, "SeriesInstanceUID")
    q = parse_query(request)
    return _answer(request, q, _instance_items(services, reader, _base(request), study_uid,
                                               series_uid), INSTANCE_TAGS)

