"""Serve the embedded viewer (``viewer_static/``) at ``/viewer/``.

Plain files, no build step. Every file is answered with its media type
(ES modules need a JavaScript one), an ETag and ``Cache-Control: no-cache``:
browsers keep their copy and revalidate it, so a new release is picked up at
once without fingerprinted names. HTML pages carry a Content Security Policy
allowing only this origin (the viewer loads nothing from elsewhere).

``/viewer/dictionary.json`` is the tag keyword dictionary of the tag panel,
made from pydicom's data dictionary (no table typed by hand).
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydicom import __version__ as pydicom_version
from pydicom.datadict import dictionary_is_retired, keyword_dict

from dicom_service.errors import NotFound

ROOT = Path(__file__).resolve().parents[2] / "viewer_static"

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'")

router = APIRouter(tags=["viewer"], include_in_schema=False)


@lru_cache(maxsize=64)
def _load(path: Path, mtime_ns: int) -> tuple[bytes, str]:
    """File bytes and their ETag, cached until the file changes."""
    data = path.read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


@lru_cache(maxsize=1)
def _dictionary() -> tuple[bytes, str]:
    """{"GGGGEEEE": "Keyword"} of every current (not retired) standard tag."""
    table = {f"{tag:08X}": keyword for keyword, tag in sorted(keyword_dict.items())
             if tag >> 16 and not dictionary_is_retired(tag)}
    data = json.dumps({"source": f"pydicom {pydicom_version}", "keywords": table},
                      separators=(",", ":")).encode()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _answer(request: Request, data: bytes, etag: str, media_type: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if media_type.startswith("text/html"):
        headers["Content-Security-Policy"] = CSP
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


def resolve(relative: str) -> Path:
    """The file under :data:`ROOT` named by ``relative``; NotFound for anything else
    (unknown type, missing, or a path leaving the root)."""
    path = (ROOT / (relative or "index.html")).resolve()
    if os.path.commonpath([path, ROOT]) != str(ROOT) or not path.is_file() \
            or path.suffix not in MEDIA_TYPES:
        raise NotFound("no such viewer file")
    return path


@router.get("/viewer")
def viewer_root() -> RedirectResponse:
    return RedirectResponse("/viewer/", status_code=308)


@router.get("/viewer/dictionary.json")
def dictionary(request: Request) -> Response:
    data, etag = _dictionary()
    return _answer(request, data, etag, MEDIA_TYPES[".json"])


@router.get("/viewer/{relative:path}")
def viewer_file(relative: str, request: Request) -> Response:
    path = resolve(relative)
    data, etag = _load(path, path.stat().st_mtime_ns)
    return _answer(request, data, etag, MEDIA_TYPES[path.suffix])
