"""DICOMweb (PS3.18) under ``/dicom-web`` and WADO-URI at ``/wado``.

Every route declares :data:`dicom_service.web.policy.ReaderDep` (or
``UploaderDep``), or, for the instance-level rendered resources (direct
routes, :mod:`.direct`), calls the function behind it first: one policy
decides what the caller may see; no route holds a copy of the rule.

Plug-in point for rendering (``rendered.py``, owned by the rendering work): if
the module exists it provides

* ``router``: an :class:`fastapi.APIRouter` with the ``.../rendered`` and
  ``.../thumbnail`` resources, paths relative to ``/dicom-web``; it is included
  here;
* optionally ``instance_routes``: (path relative to ``/dicom-web``, endpoint,
  summary) of the resources a viewer requests for every frame; the
  application adds them as :class:`~.direct.DirectRoute` before every other
  route (:func:`first_routes`);
* optionally ``render_wado_uri(request, services, instance, params) -> Response``
  for WADO-URI ``contentType=image/jpeg|image/png|image/gif``, where
  ``instance`` is a visible :class:`dicom_service.web.dicomweb.index.InstanceRow`
  and ``params`` the validated query (a ``Mapping[str, str]``). Without it such
  requests answer 406.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

from fastapi import APIRouter

from dicom_service.web.dicomweb.direct import DirectEndpoint
from dicom_service.web.dicomweb.qido import router as qido_router
from dicom_service.web.dicomweb.stow import router as stow_router
from dicom_service.web.dicomweb.wado import router as wado_router
from dicom_service.web.dicomweb.wado_uri import router as wado_uri_router

log = logging.getLogger(__name__)

PREFIX = "/dicom-web"


def _rendered() -> ModuleType | None:
    try:
        return importlib.import_module("dicom_service.web.dicomweb.rendered")
    except ModuleNotFoundError as exc:
        if exc.name != "dicom_service.web.dicomweb.rendered":
            raise
        return None


def build_routers() -> list[APIRouter]:
    """The routers to include in the application (DICOMweb, then WADO-URI)."""
    dicomweb = APIRouter(prefix=PREFIX, tags=["DICOMweb"])
    rendered = _rendered()
    if rendered is not None:
        # before the generic routes so that ".../rendered" is never taken for a UID
        dicomweb.include_router(rendered.router)
    dicomweb.include_router(qido_router)
    dicomweb.include_router(wado_router)
    dicomweb.include_router(stow_router)
    return [dicomweb, wado_uri_router]


def first_routes() -> list[tuple[str, DirectEndpoint, str]]:
    """The rendering module's ``instance_routes`` (path, endpoint, summary) with
    their full paths, for the application to add as :class:`~.direct.DirectRoute`
    before every other route."""
    rendered = _rendered()
    routes: list[tuple[str, DirectEndpoint, str]] = (
        getattr(rendered, "instance_routes", []) if rendered else [])
    return [(PREFIX + path, endpoint, summary) for path, endpoint, summary in routes]


def wado_uri_renderer() -> object | None:
    """``rendered.render_wado_uri`` when the rendering module provides it."""
    rendered = _rendered()
    return getattr(rendered, "render_wado_uri", None) if rendered is not None else None
