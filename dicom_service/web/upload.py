"""Read an uploaded file into memory, never to disk.

Starlette's form parser spools uploads larger than 1 MiB into a temporary
file; a DICOM instance under test carries identifying values and must not
touch the disk (architecture invariant 1). This reads the body with a size
limit and takes the file out of ``multipart/form-data`` (RFC 7578) with
python-multipart's streaming parser into memory, or takes the body as it is
for ``application/dicom`` (PS3.18 Section 8.7.3.3.2) and
``application/octet-stream``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["BadUpload", "UploadTooLarge", "read_body", "read_upload"]

_RAW_TYPES = (b"application/dicom", b"application/octet-stream")


class UploadTooLarge(Exception):
    """The body is larger than the limit."""


class BadUpload(ValueError):
    """The body is not a file upload this endpoint reads. Names the rule, never content."""


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused past ``limit`` bytes (before reading, when declared)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _multipart_file(body: bytes, boundary: bytes, field: str) -> bytes | None:
    parts: list[tuple[dict[bytes, bytes], bytearray]] = []
    header_field = bytearray()
    header_value = bytearray()

    def on_part_begin() -> None:
        parts.append(({}, bytearray()))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        parts[-1][0][bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1][1].extend(data[start:end])

    callbacks: MultipartCallbacks = {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_part_data": on_part_data,
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError:
        raise BadUpload("the multipart/form-data body could not be parsed") from None
    for headers, data in parts:
        _, params = parse_options_header(headers.get(b"content-disposition", b""))
        if params.get(b"name", b"").decode("latin-1") == field:
            return bytes(data)
    return None


async def read_upload(request: Request, limit: int, field: str = "file") -> bytes | None:
    """The uploaded file: the ``field`` part of a ``multipart/form-data`` body,
    or an ``application/dicom`` / ``application/octet-stream`` body. None when
    the request carries no body.

    Raises:
        UploadTooLarge: more than ``limit`` bytes.
        BadUpload: another media type, or a multipart body without ``field``.
    """
    body = await read_body(request, limit)
    if not body:
        return None
    media_type, params = parse_options_header(request.headers.get("content-type", ""))
    if media_type in _RAW_TYPES:
        return body
    if media_type == b"multipart/form-data":
        boundary = params.get(b"boundary")
        if not boundary:
            raise BadUpload("a multipart/form-data body needs a boundary parameter")
        found = _multipart_file(body, boundary, field)
        if found is None:
            raise BadUpload(f"the multipart/form-data body has no part named {field!r}")
        return found
    raise BadUpload("upload the file as multipart/form-data (field 'file') or as "
                    "application/dicom")
