"""The FastAPI application: health, metrics and the administrator API."""

from __future__ import annotations

import os

from fastapi import FastAPI, Response
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from starlette.middleware.gzip import GZipMiddleware

from dicom_service import __version__
from dicom_service.app import Services
from dicom_service.web import (
    admin,
    audit_routes,
    login,
    organisation,
    pages,
    panels,
    problems,
    profiles,
    viewer,
)
from dicom_service.web.annotations import router as annotations_router
from dicom_service.web.dicomweb import build_routers as dicomweb_routers
from dicom_service.web.dicomweb import first_routes as dicomweb_first_routes
from dicom_service.web.dicomweb.direct import DirectRoute, ServiceApp

# JSON (QIDO-RS, metadata) is gzipped for clients that accept it; images and
# DICOM are not (already compressed, or too large to be worth the CPU)
_NO_GZIP = ("text/event-stream", "multipart/related", "application/dicom",
            "application/octet-stream", "image/jpeg", "image/png", "image/gif")

_NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(services: Services) -> FastAPI:
    # FastAPI's native OpenTelemetry off: spans would carry request paths (UIDs)
    # to whatever exporter the environment configures, and checking for one
    # costs every request; the service's own figures are at /metrics
    app = ServiceApp(title="dicom_service", version=__version__, telemetry=_NO_TELEMETRY)
    app.state.services = services
    problems.install(app)
    # DICOMweb first, its instance-level rendered resources before anything:
    # routes are matched in order, and every frame a viewer scrolls through
    # would otherwise be tried against all the routes above it
    for path, endpoint, summary in dicomweb_first_routes():
        app.router.add_api_route(path, endpoint, methods=["GET"], summary=summary,
                                 tags=["DICOMweb"], route_class_override=DirectRoute)
    for router in dicomweb_routers():
        app.include_router(router)
    app.include_router(admin.router)
    app.include_router(profiles.router)
    app.include_router(audit_routes.router)
    app.include_router(organisation.router)
    app.include_router(panels.enrolments)
    app.include_router(panels.router)
    app.include_router(panels.stats_router)
    app.include_router(login.router)
    app.include_router(annotations_router)
    app.include_router(viewer.router)
    pages.install(app)
    app.add_middleware(GZipMiddleware, minimum_size=1024, exclude_content_types=_NO_GZIP)

    @app.get("/health", tags=["operations"])
    def health() -> dict[str, str]:
        services.db.ping()
        return {"status": "ok", "profile": services.profile_label()}

    @app.get("/metrics", tags=["operations"])
    def metrics() -> Response:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # every listener process of this serve, summed
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
