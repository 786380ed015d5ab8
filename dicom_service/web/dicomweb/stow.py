"""STOW-RS (PS3.18 10.5): upload instances into the same ingest pipeline as C-STORE.

The uploader's token decides the enrolment: an instance is accepted only when
its PatientID (and IssuerOfPatientID) match, by keyed hash, the enrolment the
token is bound to (within that enrolment's centre). Everything else the
pipeline decides exactly as for C-STORE: consent, de-identification, durable
write, index, audit.

Response (PS3.18 10.5.3): a DICOM JSON data set with ReferencedSOPSequence
(the stored, pseudonymous instances) and FailedSOPSequence (FailureReason
uses the C-STORE status codes of this service); 200 all stored, 202 some
failed, 409 all failed, 400 malformed request, 415 unsupported media type.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from dicom_service.app import Services
from dicom_service.dicom.parse import parse_part10
from dicom_service.dicom.status import StoreStatus
from dicom_service.errors import IngestRefused
from dicom_service.ingest.pipeline import IngestContext, Sender
from dicom_service.ingest.scp import REFUSAL_STATUS
from dicom_service.logsafe import describe
from dicom_service.web.deps import ServicesDep
from dicom_service.web.dicomweb import multipart, params
from dicom_service.web.dicomweb.urls import dicomweb_base
from dicom_service.web.dicomweb.wado import DICOM_JSON
from dicom_service.web.policy import Principal, UploaderDep, UploadScope, upload_scope

log = logging.getLogger(__name__)
router = APIRouter()

MAX_BODY = 2 * 1024**3


@dataclass(frozen=True)
class _Outcome:
    sop_class: str
    sop_uid: str
    status: StoreStatus
    study_uid: str | None = None
    series_uid: str | None = None


def _store_one(services: Services, principal: Principal, scope: UploadScope, body: bytes,
               study_uid: str | None, context: IngestContext) -> _Outcome:
    try:
        # strict: a part cut short is refused, never stored short
        ds, ts = parse_part10(body)
        sop_class = str(ds.get("SOPClassUID", ""))
        sop_uid = str(ds.get("SOPInstanceUID", ""))
    except Exception as exc:
        log.info("STOW-RS part refused: unparsable (%s)", describe(exc))
        return _Outcome("", "", StoreStatus.UNPARSABLE_DATASET)
    if study_uid is not None and str(ds.get("StudyInstanceUID", "")) != study_uid:
        return _Outcome(sop_class, sop_uid, StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS)
    patient_id = str(ds.get("PatientID", "") or "")
    issuer = ds.get("IssuerOfPatientID")
    sender = None
    for centre_id in scope.centres:
        found = services.care.find_enrolment(centre_id, str(issuer) if issuer else None,
                                             patient_id) if patient_id.strip() else None
        if found is not None and scope.allows(found.id, centre_id):
            sender = Sender(centre_id=centre_id, actor=principal.actor)
            break
    if sender is None:
        # the same answer whether the patient is unknown or another token's
        return _Outcome(sop_class, sop_uid, StoreStatus.PATIENT_NOT_ENROLLED)
    try:
        result = services.pipeline.ingest(ds, ts, sender, context=context)
    except IngestRefused as exc:
        log.info("STOW-RS instance refused: %s", exc.reason.value)
        return _Outcome(sop_class, sop_uid, REFUSAL_STATUS[exc.reason])
    except Exception as exc:
        log.error("STOW-RS instance failed (%s)", describe(exc))
        return _Outcome(sop_class, sop_uid, StoreStatus.PROCESSING_FAILURE)
    return _Outcome(result.sop_class_uid, result.sop_uid, StoreStatus.SUCCESS,
                    result.study_uid, result.series_uid)


def _json(vr: str, value: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": [value]} if value not in (None, "") else {"vr": vr}


def _response_body(base: str, outcomes: list[_Outcome]) -> dict[str, Any]:
    stored = [o for o in outcomes if o.status == StoreStatus.SUCCESS]
    failed = [o for o in outcomes if o.status != StoreStatus.SUCCESS]
    body: dict[str, Any] = {}
    studies = {o.study_uid for o in stored}
    if len(studies) == 1:
        body["00081190"] = _json("UR", f"{base}studies/{studies.pop()}")
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": [{
            "00081150": _json("UI", o.sop_class), "00081155": _json("UI", o.sop_uid),
            "00081190": _json("UR", f"{base}studies/{o.study_uid}/series/{o.series_uid}"
                                    f"/instances/{o.sop_uid}"),
        } for o in stored]}
    if failed:
        # the SOP UIDs are the uploader's own (as sent), so that it can tell which failed
        body["00081198"] = {"vr": "SQ", "Value": [{
            "00081150": _json("UI", o.sop_class), "00081155": _json("UI", o.sop_uid),
            "00081197": _json("US", int(o.status)),
        } for o in failed]}
    return body


async def _stow(request: Request, services: Services, principal: Principal,
                study_uid: str | None) -> Response:
    content_type = request.headers.get("content-type", "")
    try:
        boundary, part_type = multipart.boundary_of(content_type)
    except TypeError:
        raise HTTPException(415, 'Unsupported Media Type: send multipart/related; '
                                 'type="application/dicom"') from None
    if part_type is not None and part_type.lower() != "application/dicom":
        raise HTTPException(415, 'Unsupported Media Type: only type="application/dicom" '
                                 'is supported')
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise HTTPException(413, "Content Too Large")
    body = await request.body()
    parts = multipart.parse(body, boundary)  # ValueError -> 400
    if not parts:
        raise ValueError("the request holds no instances")
    for part in parts:
        media = part.content_type.partition(";")[0].strip().lower()
        if media not in ("application/dicom", ""):
            raise HTTPException(415, "Unsupported Media Type: every part must be "
                                     "application/dicom")
    scope = await run_in_threadpool(upload_scope, services, principal)
    outcomes = []
    with services.pipeline.context() as context:  # what the request's instances share
        for part in parts:
            outcomes.append(await run_in_threadpool(_store_one, services, principal, scope,
                                                    part.body, study_uid, context))
    base = dicomweb_base(request)
    ok = sum(o.status == StoreStatus.SUCCESS for o in outcomes)
    status = 200 if ok == len(outcomes) else 202 if ok else 409
    return Response(json.dumps(_response_body(base, outcomes)).encode("utf-8"),
                    status_code=status, media_type=DICOM_JSON)


@router.post("/studies", summary="Store instances (STOW-RS, PS3.18 10.5)")
async def store_instances(request: Request, services: ServicesDep,
                          principal: UploaderDep) -> Response:
    return await _stow(request, services, principal, None)


@router.post("/studies/{study}", summary="Store instances of one study (STOW-RS)")
async def store_study_instances(study: str, request: Request, services: ServicesDep,
                                principal: UploaderDep) -> Response:
    return await _stow(request, services, principal, params.uid(study, "StudyInstanceUID"))

