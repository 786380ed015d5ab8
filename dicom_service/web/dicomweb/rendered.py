"""Rendered and thumbnail resources (PS3.18 Section 10.4.1.1.3 and 8.3.5), and
the rendering behind WADO-URI ``contentType=image/*`` (PS3.18 Section 9.1.2).

Every route asks the policy first: :data:`ReaderDep`, or at the instance level
(what a viewer requests for every frame it scrolls through, see
:mod:`.direct`) a call of :func:`~dicom_service.web.policy.current_reader`,
the function behind it.
Instances are looked up through :mod:`.index`, which only returns what the
reader may see (else 404). The rendering itself lives in
:mod:`dicom_service.render`.

Media types: ``image/jpeg`` (default), ``image/png``, ``image/gif`` by
``Accept``; anything else is 406. Parameters: ``window=center,width[,function]``,
``viewport=vw,vh[,sx,sy,sw,sh]``, ``quality=1..100``; a malformed one is 400
with the reason.

Study and series ``rendered``: with ``Accept: multipart/related;
type="image/jpeg"`` (or png, gif) every frame of every image instance, one part
each, streamed (PS3.18 8.3.5.1); with a single image type (the default), one
representative instance (the middle image instance in series/instance-number
order), first frame. Thumbnails at every level are one image (128x128 unless a
``viewport`` is given). The instance level of a multi-frame instance answers
with its first frame.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from dicom_service.app import Services
from dicom_service.errors import NotFound
from dicom_service.render import (
    NATIVE_LITTLE_ENDIAN,
    MediaType,
    NotAcceptable,
    NotRenderable,
    Renderer,
    RenderParams,
    Viewport,
    negotiate,
    params_from_query,
    params_from_wado,
)
from dicom_service.web.deps import ServicesDep
from dicom_service.web.dicomweb import index, multipart, params
from dicom_service.web.dicomweb.direct import DirectEndpoint
from dicom_service.web.dicomweb.index import InstanceRow
from dicom_service.web.dicomweb.wado import instance_file
from dicom_service.web.policy import Reader, ReaderDep, current_reader

router = APIRouter()

THUMBNAIL_VIEWPORT = Viewport(128, 128)
# a 1024 x 1024 16-bit frame: read, windowed and JPEG-encoded in a few milliseconds
INLINE_FRAME_BYTES = 2 * 1024 * 1024
# rendered pixels of patients: not kept by browsers or proxies
CACHE_CONTROL = "private, no-store"
_renderer_lock = threading.Lock()


def get_renderer(request: Request) -> Renderer:
    """The process's renderer (and its cache), created on first use."""
    state = request.app.state
    renderer: Renderer | None = getattr(state, "renderer", None)
    if renderer is None:
        with _renderer_lock:
            renderer = getattr(state, "renderer", None)
            if renderer is None:
                renderer = Renderer()
                state.renderer = renderer
    return renderer


def _query(request: Request) -> dict[str, str | list[str]]:
    return {key: request.query_params.getlist(key) for key in request.query_params}


def _media_type(request: Request) -> MediaType:
    try:
        return negotiate(request.headers.getlist("accept"))
    except NotAcceptable as exc:
        raise HTTPException(406, f"Not Acceptable: {exc}") from None


def representative(rows: list[InstanceRow]) -> InstanceRow:
    """The middle instance among those with pixel data (all, if none is known to)."""
    images = [r for r in rows if r.number_of_frames] or rows
    return images[len(images) // 2]


def render_row(request: Request, services: Services, row: InstanceRow, frame: int,
               render_params: RenderParams) -> Response:
    """Render frame ``frame`` (0-based) of a visible instance."""
    path = instance_file(services, row)
    try:
        rendered = get_renderer(request).render(
            path, frame, render_params, offset=row.pixel_data_offset,
            length=row.pixel_data_length, metadata_json=row.header_json,
            transfer_syntax=row.transfer_syntax_uid)
    except FileNotFoundError:
        raise NotFound(index.NOT_FOUND) from None
    return Response(rendered.content, media_type=rendered.media_type.value,
                    headers={"Cache-Control": CACHE_CONTROL})


def _params(request: Request, thumbnail: bool) -> RenderParams:
    render_params = params_from_query(_query(request), _media_type(request))
    if thumbnail and render_params.viewport is None:
        render_params = RenderParams(render_params.media_type, render_params.window,
                                     THUMBNAIL_VIEWPORT, render_params.quality)
    return render_params


def _multipart_media(request: Request) -> MediaType | None:
    """The part media type when the client's first choice is ``multipart/related;
    type="image/..."`` (every image of a study or series, PS3.18 8.7.3.4); else None."""
    ranges = params.parse_accept(request.headers.get("accept"))
    if not ranges or ranges[0].type != "multipart/related":
        return None
    kind = ranges[0].params.get("type", MediaType.JPEG.value).lower()
    try:
        return negotiate([kind])
    except NotAcceptable as exc:
        raise HTTPException(406, f"Not Acceptable: {exc}") from None


def _every_image(request: Request, services: Services, rows: list[InstanceRow],
                 media: MediaType) -> Response:
    """Every frame of every image instance, rendered, one part each (streamed)."""
    render_params = params_from_query(_query(request), media)
    images = [r for r in rows if r.number_of_frames]
    if not images:
        raise NotFound(index.NOT_FOUND)
    renderer = get_renderer(request)

    def parts() -> Iterator[multipart.Part]:
        for row in images:
            path = instance_file(services, row)
            for frame in range(row.number_of_frames or 1):
                try:
                    rendered = renderer.render(
                        path, frame, render_params, offset=row.pixel_data_offset,
                        length=row.pixel_data_length, metadata_json=row.header_json,
                        transfer_syntax=row.transfer_syntax_uid)
                except (NotRenderable, FileNotFoundError, NotFound):
                    continue  # gone or undecodable since the query: leave it out
                yield multipart.Part(rendered.media_type.value, rendered.content)

    response = multipart.response(parts(), media.value)
    response.headers["Cache-Control"] = CACHE_CONTROL
    return response


def _study(request: Request, services: Services, reader: ReaderDep, study: str,
           thumbnail: bool) -> Response:
    media = None if thumbnail else _multipart_media(request)
    render_params = _params(request, thumbnail) if media is None else None
    rows = index.instances(services, reader, params.uid(study, "StudyInstanceUID"))
    if render_params is None:
        return _every_image(request, services, rows, media or MediaType.JPEG)
    return render_row(request, services, representative(rows), 0, render_params)


def _series(request: Request, services: Services, reader: ReaderDep, study: str,
            series: str, thumbnail: bool) -> Response:
    media = None if thumbnail else _multipart_media(request)
    render_params = _params(request, thumbnail) if media is None else None
    rows = index.instances(services, reader, params.uid(study, "StudyInstanceUID"),
                           params.uid(series, "SeriesInstanceUID"))
    if render_params is None:
        return _every_image(request, services, rows, media or MediaType.JPEG)
    return render_row(request, services, representative(rows), 0, render_params)


async def _instance(request: Request, reader: Reader, study: str, series: str, sop: str,
                    frame: int, thumbnail: bool) -> Response:
    services: Services = request.app.state.services
    render_params = _params(request, thumbnail)
    row = index.instance(services, reader, params.uid(study, "StudyInstanceUID"),
                         params.uid(series, "SeriesInstanceUID"),
                         params.uid(sop, "SOPInstanceUID"), to_render=True)
    if _cheap(row, render_params):
        return render_row(request, services, row, frame, render_params)
    return await run_in_threadpool(render_row, request, services, row, frame, render_params)


def _cheap(row: InstanceRow, render_params: RenderParams) -> bool:
    """Does rendering ``row`` cost about a millisecond (a native frame of modest
    size to JPEG)? Such a frame is rendered on the event loop: a hop to the
    thread pool and back would cost a good part of that again. Decoders, big
    frames, PNG and GIF go to the thread pool, so that they never hold up the
    other requests of this process."""
    if (render_params.media_type is not MediaType.JPEG
            or row.transfer_syntax_uid not in NATIVE_LITTLE_ENDIAN
            or row.pixel_data_length is None):
        return False
    return row.pixel_data_length // max(row.number_of_frames or 1, 1) <= INLINE_FRAME_BYTES


def _frame_number(frame: str) -> int:
    text = frame.strip()
    if not text.isdigit() or len(text) > 9 or int(text) < 1:
        raise ValueError("frame number must be one positive integer (the first frame is 1)")
    return int(text) - 1


# -- the instance level: what a viewer scrolls through --------------------------------
# Direct routes (direct.DirectRoute), which the application tries before any
# other: FastAPI's dependency solving and parameter handling would cost about
# 0.13 ms per request, over a tenth of a frame's CPU. Each endpoint asks the
# policy first, as ReaderDep would; malformed UIDs and frame numbers are
# refused by the same validators (400).
async def rendered_frame(request: Request, study: str, series: str, sop: str,
                         frame: str) -> Response:
    reader = await current_reader(request)
    return await _instance(request, reader, study, series, sop, _frame_number(frame),
                           thumbnail=False)


async def rendered_instance(request: Request, study: str, series: str, sop: str) -> Response:
    reader = await current_reader(request)
    return await _instance(request, reader, study, series, sop, 0, thumbnail=False)


async def thumbnail_frame(request: Request, study: str, series: str, sop: str,
                          frame: str) -> Response:
    reader = await current_reader(request)
    return await _instance(request, reader, study, series, sop, _frame_number(frame),
                           thumbnail=True)


async def thumbnail_instance(request: Request, study: str, series: str, sop: str) -> Response:
    reader = await current_reader(request)
    return await _instance(request, reader, study, series, sop, 0, thumbnail=True)


_INSTANCE = "/studies/{study}/series/{series}/instances/{sop}"
# (path relative to /dicom-web, endpoint, summary); the frame first, as routes
# are tried in order
instance_routes: list[tuple[str, DirectEndpoint, str]] = [
    (_INSTANCE + "/frames/{frame}/rendered", rendered_frame, "Rendered frame"),
    (_INSTANCE + "/rendered", rendered_instance, "Rendered instance (first frame)"),
    (_INSTANCE + "/frames/{frame}/thumbnail", thumbnail_frame, "Frame thumbnail"),
    (_INSTANCE + "/thumbnail", thumbnail_instance, "Instance thumbnail"),
]


# -- rendered -------------------------------------------------------------------------
@router.get("/studies/{study}/rendered", summary="Rendered study (its middle image)")
def rendered_study(study: str, request: Request, services: ServicesDep,
                   reader: ReaderDep) -> Response:
    return _study(request, services, reader, study, thumbnail=False)


@router.get("/studies/{study}/series/{series}/rendered",
            summary="Rendered series (its middle image)")
def rendered_series(study: str, series: str, request: Request, services: ServicesDep,
                    reader: ReaderDep) -> Response:
    return _series(request, services, reader, study, series, thumbnail=False)


# -- thumbnails -----------------------------------------------------------------------
@router.get("/studies/{study}/thumbnail", summary="Study thumbnail")
def thumbnail_study(study: str, request: Request, services: ServicesDep,
                    reader: ReaderDep) -> Response:
    return _study(request, services, reader, study, thumbnail=True)


@router.get("/studies/{study}/series/{series}/thumbnail", summary="Series thumbnail")
def thumbnail_series(study: str, series: str, request: Request, services: ServicesDep,
                     reader: ReaderDep) -> Response:
    return _series(request, services, reader, study, series, thumbnail=True)


# -- WADO-URI -------------------------------------------------------------------------
def render_wado_uri(request: Request, services: Services, instance: InstanceRow,
                    query: Mapping[str, str]) -> Response:
    """WADO-URI with ``contentType=image/jpeg|image/png|image/gif`` (PS3.18 9.1.2):
    ``rows``, ``columns``, ``region``, ``windowCenter``/``windowWidth``,
    ``imageQuality``, ``frameNumber``. ``instance`` is already checked visible
    by the caller (through the policy). Raises 400 (ValueError) or 406."""
    try:
        render_params, frame = params_from_wado(query)
    except NotAcceptable as exc:
        raise HTTPException(406, f"Not Acceptable: {exc}") from None
    return render_row(request, services, instance, frame, render_params)


render_for_wado = render_wado_uri  # the name in the rendering brief
