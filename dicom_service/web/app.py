"""The FastAPI application: health, metrics and the administrator API."""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dicom_service import __version__
from dicom_service.app import Services
from dicom_service.web import admin, problems


def create_app(services: Services) -> FastAPI:
    app = FastAPI(title="dicom_service", version=__version__)
    app.state.services = services
    problems.install(app)
    app.include_router(admin.router)

    @app.get("/health", tags=["operations"])
    def health() -> dict[str, str]:
        services.db.ping()
        return {"status": "ok", "profile": services.profile_label()}

    @app.get("/metrics", tags=["operations"])
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
