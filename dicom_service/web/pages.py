"""The clinicians' and administrators' pages: static HTML and ES modules
under ``viewer_static/app`` (no build step), served at ``/app/``.

The pages hold no data of their own: they call the JSON API with the session
cookie and the CSRF header (``viewer_static/app/common.js``). Every page and
script is sent with a strict Content-Security-Policy: scripts and styles only
from this origin, no inline script, images also from ``data:``/``blob:``
(previews, rendered frames), framing only by this origin (the viewer embeds).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

STATIC_ROOT = Path(__file__).resolve().parents[2] / "viewer_static"
PAGES_DIR = STATIC_ROOT / "app"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'self'; "
       "base-uri 'none'; form-action 'self'; object-src 'none'")
# front-end paths that get the page headers
_FRONT_END = ("/app/", "/viewer/")


class _PageHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        if request.url.path.startswith(_FRONT_END):
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "no-referrer"
            # small files, changed with the service: revalidate every time
            response.headers.setdefault("Cache-Control", "no-cache")
        return response


def install(app: FastAPI) -> None:
    """Serve the pages at ``/app/`` and send ``/`` there."""
    app.mount("/app", StaticFiles(directory=PAGES_DIR, html=True), name="app")
    app.add_middleware(_PageHeaders)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/app/panels.html", status_code=303)
