"""multipart/related bodies (RFC 2387) for WADO-RS responses and STOW-RS requests."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from fastapi.responses import StreamingResponse

_BOUNDARY_RE = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{1,70}$")


@dataclass(frozen=True)
class Part:
    content_type: str
    body: bytes
    location: str | None = None


def response(parts: Iterable[Part], type_: str, *, transfer_syntax: str | None = None,
             status_code: int = 200) -> StreamingResponse:
    """A streamed multipart/related response; parts are produced lazily."""
    boundary = secrets.token_hex(16)

    def body() -> Iterator[bytes]:
        for part in parts:
            head = f"--{boundary}\r\nContent-Type: {part.content_type}\r\n"
            if part.location:
                head += f"Content-Location: {part.location}\r\n"
            yield (head + f"Content-Length: {len(part.body)}\r\n\r\n").encode("ascii")
            yield part.body
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode("ascii")

    media = f'multipart/related; type="{type_}"; boundary={boundary}'
    if transfer_syntax:
        media = f'multipart/related; type="{type_}"; transfer-syntax={transfer_syntax}; ' \
                f"boundary={boundary}"
    return StreamingResponse(body(), status_code=status_code, media_type=media)


def boundary_of(content_type: str) -> tuple[str, str | None]:
    """(boundary, type parameter) of a multipart/related Content-Type; ValueError else."""
    main, _, rest = content_type.partition(";")
    if main.strip().lower() != "multipart/related":
        raise TypeError("not multipart/related")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        name, _, value = item.partition("=")
        if name.strip():
            params[name.strip().lower()] = value.strip().strip('"')
    boundary = params.get("boundary")
    if not boundary or not _BOUNDARY_RE.match(boundary):
        raise ValueError("multipart/related request has no valid boundary parameter")
    return boundary, params.get("type")


def parse(body: bytes, boundary: str) -> list[Part]:
    """The parts of a multipart body; ValueError when it is malformed."""
    delimiter = b"--" + boundary.encode("ascii")
    start = body.find(delimiter)
    if start < 0:
        raise ValueError("multipart body has no boundary delimiter")
    parts: list[Part] = []
    pos = start + len(delimiter)
    while True:
        if body.startswith(b"--", pos):
            return parts  # close delimiter
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            raise ValueError("multipart body is truncated")
        header_end = body.find(b"\r\n\r\n", line_end)
        if header_end < 0:
            raise ValueError("multipart part has no header end")
        headers: dict[str, str] = {}
        for line in body[line_end + 2:header_end].split(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        content_start = header_end + 4
        nxt = body.find(b"\r\n" + delimiter, content_start)
        if nxt < 0:
            raise ValueError("multipart body is truncated")
        parts.append(Part(content_type=headers.get("content-type", ""),
                          body=body[content_start:nxt]))
        pos = nxt + 2 + len(delimiter)
        if len(parts) > 10_000:
            raise ValueError("multipart body has too many parts")
