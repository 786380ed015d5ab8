"""Validation of what DICOMweb callers send: UIDs, frame lists, Accept headers.

Everything hostile is refused here with a reason (400, or 406 for an
unacceptable media type); values are never echoed back (they may identify).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import HTTPException

from dicom_service.dicom.uids import validate_uid

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
AS_STORED = "*"
# uncompressed syntaxes we transcode into (PS3.18 8.7.3.5.2)
NATIVE_TARGETS = frozenset({EXPLICIT_VR_LE, IMPLICIT_VR_LE})
MAX_FRAMES_IN_LIST = 4096

# PS3.18 Table 8.7.3-2..5: the media type of a compressed frame per transfer syntax
FRAME_MEDIA_TYPES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",
}


def uid(value: str, what: str) -> str:
    """A UID from a path or query; 400 (via ``InvalidUID``) when malformed."""
    return validate_uid(value, what)


def frame_list(text: str) -> list[int]:
    """``1,2,3`` -> [1, 2, 3]; 400 for empty, zero, negative or non-numeric items."""
    items = text.split(",")
    if not text or len(items) > MAX_FRAMES_IN_LIST:
        raise ValueError(f"frame list must hold 1 to {MAX_FRAMES_IN_LIST} frame numbers")
    frames = []
    for item in items:
        item = item.strip()
        if not item.isdigit() or len(item) > 9 or int(item) < 1:
            raise ValueError("frame numbers must be positive integers (the first frame is 1)")
        frames.append(int(item))
    return frames


@dataclass(frozen=True)
class MediaRange:
    type: str  # lower case, e.g. "multipart/related"
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header, best first; ``*/*`` when absent."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    if len(header) > 4096:
        raise ValueError("Accept header is too long")
    ranges = []
    for part in _split(header, ","):
        pieces = [p.strip() for p in _split(part, ";")]
        if not pieces[0]:
            continue
        params: dict[str, str] = {}
        q = 1.0
        for p in pieces[1:]:
            name, _, value = p.partition("=")
            name = name.strip().lower()
            value = value.strip().strip('"')
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    raise ValueError("Accept header has a malformed q value") from None
            elif name:
                params[name] = value
        ranges.append(MediaRange(pieces[0].lower(), params, q))
    ranges.sort(key=lambda r: -r.q)
    return [r for r in ranges if r.q > 0]


def not_acceptable(what: str) -> HTTPException:
    return HTTPException(406, f"Not Acceptable: {what}")


def negotiate_instances(accept: list[MediaRange]) -> str:
    """Transfer syntax for instance retrieval (PS3.18 8.7.3.5).

    Acceptable: ``multipart/related; type="application/dicom"`` (optionally
    with ``transfer-syntax``), ``multipart/related`` or ``*/*`` (then Explicit
    VR Little Endian). Returns the UID, or ``*`` for as stored; 406 otherwise.
    """
    for r in accept:
        if r.type in ("*/*", "multipart/*") or (
                r.type == "multipart/related"
                and r.params.get("type", "application/dicom").lower() in (
                    "application/dicom", "*/*")):
            ts = r.params.get("transfer-syntax", EXPLICIT_VR_LE)
            if ts == AS_STORED or ts in NATIVE_TARGETS:
                return ts
            if is_transfer_syntax(ts):
                return ts  # acceptable only when stored so; checked per instance
    raise not_acceptable('instances are available as multipart/related; '
                         'type="application/dicom"')


def is_transfer_syntax(value: str) -> bool:
    try:
        validate_uid(value, "transfer-syntax")
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class FrameChoice:
    """What a frames/bulkdata request accepts: native bytes, and/or as stored."""

    native: bool  # application/octet-stream, uncompressed little endian
    as_stored: bool  # any compressed frame in its own media type
    media_types: frozenset[str]  # compressed media types explicitly asked for


def negotiate_frames(accept: list[MediaRange]) -> FrameChoice:
    """PS3.18 8.7.3.5.2/8.7.3.3: ``multipart/related; type="application/octet-stream"``
    [``; transfer-syntax=*|1.2.840.10008.1.2.1``], ``multipart/related; type="image/jls"``
    (etc.), or ``*/*``."""
    native = as_stored = False
    media: set[str] = set()
    for r in accept:
        if r.type in ("*/*", "multipart/*"):
            native = True
            continue
        if r.type != "multipart/related":
            continue
        kind = r.params.get("type", "application/octet-stream").lower()
        ts = r.params.get("transfer-syntax")
        if kind in ("application/octet-stream", "*/*"):
            if ts == AS_STORED:
                native = as_stored = True
            elif ts in (None, EXPLICIT_VR_LE):
                native = True
        elif kind in FRAME_MEDIA_TYPES.values():
            media.add(kind)
    if not (native or as_stored or media):
        raise not_acceptable('frames are available as multipart/related; '
                             'type="application/octet-stream"')
    return FrameChoice(native=native, as_stored=as_stored, media_types=frozenset(media))
