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

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_ROOT = Path(__file__).resolve().parents[2] / "viewer_static"
PAGES_DIR = STATIC_ROOT / "app"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'self'; "
       "base-uri 'none'; form-action 'self'; object-src 'none'")
# front-end paths that get the page headers
_FRONT_END = ("/app/", "/viewer/")


_HEADERS = [(b"content-security-policy", CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            # small files, changed with the service: revalidate every time
            (b"cache-control", b"no-cache")]


class _PageHeaders:
    """Security headers on the front-end's responses. A plain ASGI middleware:
    every other request (DICOMweb frames while a viewer scrolls) passes
    through untouched, at the cost of one string comparison."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(_FRONT_END):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in _HEADERS if k not in names]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    """Serve the pages at ``/app/`` and send ``/`` there."""
    app.mount("/app", StaticFiles(directory=PAGES_DIR, html=True), name="app")
    app.add_middleware(_PageHeaders)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/app/panels.html", status_code=303)
