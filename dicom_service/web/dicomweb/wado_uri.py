"""WADO-URI (PS3.18 9): ``GET /wado?requestType=WADO&studyUID=&seriesUID=&objectUID=``.

``contentType=application/dicom`` (with optional ``transferSyntax``) returns the
instance; the rendered content types (``image/jpeg``, ``image/png``,
``image/gif``) go to the rendering module when it is present, else 406.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from fastapi import APIRouter, HTTPException, Request, Response

from dicom_service.web.deps import ServicesDep
from dicom_service.web.dicomweb import index, params
from dicom_service.web.dicomweb.wado import read_instance, transcode
from dicom_service.web.policy import ReaderDep

router = APIRouter(tags=["WADO-URI"])

RENDERED = frozenset({"image/jpeg", "image/png", "image/gif"})
_KNOWN = frozenset({"requestType", "studyUID", "seriesUID", "objectUID", "contentType",
                    "transferSyntax", "charset", "anonymize", "annotation", "rows", "columns",
                    "region", "windowCenter", "windowWidth", "frameNumber", "imageQuality",
                    "presentationUID", "presentationSeriesUID"})


@router.get("/wado", summary="WADO-URI (PS3.18 9)")
def wado(request: Request, services: ServicesDep, reader: ReaderDep) -> Response:
    query = request.query_params
    for name in query:
        if name not in _KNOWN:
            raise ValueError("unknown WADO-URI parameter")
    if query.get("requestType") != "WADO":
        raise ValueError('"requestType" must be WADO')
    for name in ("studyUID", "seriesUID", "objectUID"):
        if not query.get(name):
            raise ValueError(f'"{name}" is required')
    row = index.instance(services, reader, params.uid(query["studyUID"], "studyUID"),
                         params.uid(query["seriesUID"], "seriesUID"),
                         params.uid(query["objectUID"], "objectUID"))
    content_types = [c.strip().lower() for c in query.get("contentType", "").split(",")
                     if c.strip()] or ["image/jpeg"]  # PS3.18 9.1.2.1.5: default for images
    for content_type in content_types:
        media = content_type.partition(";")[0].strip()
        if media == "application/dicom":
            ts = query.get("transferSyntax") or params.EXPLICIT_VR_LE
            if ts not in params.NATIVE_TARGETS and ts != row.transfer_syntax_uid:
                raise params.not_acceptable("the instance cannot be given in the requested "
                                            "transfer syntax")
            data = transcode(read_instance(services, row), row.transfer_syntax_uid, ts)
            return Response(data, media_type="application/dicom")
        if media in RENDERED or media == "*/*":
            from dicom_service.web.dicomweb import wado_uri_renderer

            render = wado_uri_renderer()
            if render is not None:
                fn = cast(Callable[..., Response], render)
                return fn(request, services, row, cast(Any, dict(query)))
    raise HTTPException(406, "Not Acceptable: contentType is not supported")
