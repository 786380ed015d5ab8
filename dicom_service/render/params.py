"""Rendering parameters: what the client asked for, parsed and validated.

Query parameters of the DICOMweb rendered resources (PS3.18 Section 8.3.5.1)
and of WADO-URI (PS3.18 Section 9.1.2.1 ``rows``, ``columns``, ``region``,
``windowCenter``, ``windowWidth``, ``imageQuality``) both become one
:class:`RenderParams`. Every refusal raises :class:`BadRenderParameter` naming
the parameter and the rule, never echoing the value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

MAX_OUTPUT_SIDE = 4096  # a viewport larger than this is refused (memory bound)
DEFAULT_QUALITY = 90


class BadRenderParameter(ValueError):
    """A rendering parameter is malformed or out of range (HTTP 400)."""


class NotAcceptable(Exception):
    """None of the media types in the Accept header can be produced (HTTP 406)."""


class MediaType(StrEnum):
    JPEG = "image/jpeg"
    PNG = "image/png"
    GIF = "image/gif"


class VoiFunction(StrEnum):
    """VOI LUT Function (0028,1056), PS3.3 Section C.11.2.1.3."""

    LINEAR = "LINEAR"
    LINEAR_EXACT = "LINEAR_EXACT"
    SIGMOID = "SIGMOID"


@dataclass(frozen=True)
class Window:
    """A window centre/width and its function (PS3.3 Section C.11.2.1.2)."""

    center: float
    width: float
    function: VoiFunction = VoiFunction.LINEAR

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center) and math.isfinite(self.width)):
            raise BadRenderParameter('Window centre and width must be finite numbers.')
        minimum = 1.0 if self.function is VoiFunction.LINEAR else 0.0
        if self.width < minimum or (self.width == 0.0 and minimum == 0.0):
            rule = ">= 1" if self.function is VoiFunction.LINEAR else "> 0"
            raise BadRenderParameter(f"Window width must be {rule} for {self.function.value}.")


@dataclass(frozen=True)
class Region:
    """A source rectangle in pixels: top-left (x, y), width and height (>0)."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Viewport:
    """Fit the (optionally cropped) image within ``width`` x ``height``, keeping
    the aspect ratio (PS3.18 Section 8.3.5.1.3). A side that is ``None`` does not
    constrain (WADO-URI may give only ``rows`` or only ``columns``); both ``None``
    keeps the size of the (cropped) image."""

    width: int | None
    height: int | None
    region: Region | None = None
    # WADO-URI region: fractions (x1, y1, x2, y2) of the image, PS3.18 9.1.2.1.8
    fractional_region: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class RenderParams:
    media_type: MediaType = MediaType.JPEG
    window: Window | None = None  # None: the stored window (or the full range)
    viewport: Viewport | None = None
    quality: int = DEFAULT_QUALITY

    def cache_key(self) -> tuple[object, ...]:
        return (self.media_type.value, self.window, self.viewport, self.quality)


def _number(name: str, text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise BadRenderParameter(f'Parameter "{name}" must be a number.') from None
    if not math.isfinite(value):
        raise BadRenderParameter(f'Parameter "{name}" must be a finite number.')
    return value


def _integer(name: str, text: str) -> int:
    text = text.strip()
    if not text.lstrip("-").isdigit() or len(text) > 9:
        raise BadRenderParameter(f'Parameter "{name}" must be an integer.')
    return int(text)


def parse_window(text: str) -> Window:
    """``center,width[,function]`` (PS3.18 Section 8.3.5.1.4)."""
    parts = text.split(",")
    if len(parts) not in (2, 3):
        raise BadRenderParameter('Parameter "window" must be "center,width[,function]".')
    center = _number("window", parts[0])
    width = _number("window", parts[1])
    function = VoiFunction.LINEAR
    if len(parts) == 3:
        name = parts[2].strip().upper()
        try:
            function = VoiFunction(name)
        except ValueError:
            raise BadRenderParameter(
                'Parameter "window" function must be LINEAR, LINEAR_EXACT or SIGMOID.'
            ) from None
    return Window(center, width, function)


def _side(name: str, text: str) -> int:
    value = _integer(name, text)
    if not 1 <= value <= MAX_OUTPUT_SIDE:
        raise BadRenderParameter(f'Parameter "{name}" must be between 1 and {MAX_OUTPUT_SIDE}.')
    return value


def parse_viewport(text: str) -> Viewport:
    """``vw,vh[,sx,sy,sw,sh]`` (PS3.18 Section 8.3.5.1.3); the source region, when
    given, must have a positive width and height (flipping is not supported)."""
    parts = text.split(",")
    if len(parts) not in (2, 6):
        raise BadRenderParameter('Parameter "viewport" must be "vw,vh" or "vw,vh,sx,sy,sw,sh".')
    width = _side("viewport", parts[0])
    height = _side("viewport", parts[1])
    region = None
    if len(parts) == 6:
        sx, sy, sw, sh = (_integer("viewport", p) for p in parts[2:])
        if sx < 0 or sy < 0 or sw <= 0 or sh <= 0:
            raise BadRenderParameter(
                'Parameter "viewport" source region needs sx,sy >= 0 and sw,sh > 0.'
            )
        region = Region(sx, sy, sw, sh)
    return Viewport(width, height, region)


def parse_quality(text: str, name: str = "quality") -> int:
    value = _integer(name, text)
    if not 1 <= value <= 100:
        raise BadRenderParameter(f'Parameter "{name}" must be between 1 and 100.')
    return value


def _single(query: Mapping[str, str | list[str]], name: str) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        if len(value) != 1:
            raise BadRenderParameter(f'Parameter "{name}" must be given once.')
        return value[0]
    return value


def params_from_query(
    query: Mapping[str, str | list[str]], media_type: MediaType = MediaType.JPEG
) -> RenderParams:
    """The DICOMweb rendered-resource query (``window``, ``viewport``, ``quality``)."""
    window_text = _single(query, "window")
    viewport_text = _single(query, "viewport")
    quality_text = _single(query, "quality")
    return RenderParams(
        media_type=media_type,
        window=parse_window(window_text) if window_text is not None else None,
        viewport=parse_viewport(viewport_text) if viewport_text is not None else None,
        quality=parse_quality(quality_text) if quality_text is not None else DEFAULT_QUALITY,
    )


def params_from_wado(query: Mapping[str, str | list[str]]) -> tuple[RenderParams, int]:
    """WADO-URI rendering parameters (PS3.18 Section 9.1.2); returns the params and
    the 0-based frame index (``frameNumber`` is 1-based)."""
    content_type = (_single(query, "contentType") or MediaType.JPEG.value).strip().lower()
    media_type = negotiate([content_type]) if content_type else MediaType.JPEG
    center_text = _single(query, "windowCenter")
    width_text = _single(query, "windowWidth")
    if (center_text is None) != (width_text is None):
        raise BadRenderParameter('Parameters "windowCenter" and "windowWidth" go together.')
    window = None
    if center_text is not None and width_text is not None:
        window = Window(_number("windowCenter", center_text), _number("windowWidth", width_text))
    rows_text = _single(query, "rows")
    columns_text = _single(query, "columns")
    region_text = _single(query, "region")
    viewport = None
    if rows_text is not None or columns_text is not None or region_text is not None:
        rows = _side("rows", rows_text) if rows_text is not None else None
        columns = _side("columns", columns_text) if columns_text is not None else None
        fractional = None
        if region_text is not None:
            parts = region_text.split(",")
            if len(parts) != 4:
                raise BadRenderParameter('Parameter "region" must be "x1,y1,x2,y2".')
            x1, y1, x2, y2 = (_number("region", p) for p in parts)
            if not (0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0):
                raise BadRenderParameter(
                    'Parameter "region" needs 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1.'
                )
            fractional = (x1, y1, x2, y2)
        viewport = Viewport(columns, rows, None, fractional)
    quality_text = _single(query, "imageQuality")
    quality = parse_quality(quality_text, "imageQuality") if quality_text else DEFAULT_QUALITY
    frame_text = _single(query, "frameNumber")
    frame = 1
    if frame_text is not None:
        frame = _integer("frameNumber", frame_text)
        if frame < 1:
            raise BadRenderParameter('Parameter "frameNumber" must be >= 1.')
    return RenderParams(media_type, window, viewport, quality), frame - 1


def _accept_entries(values: Iterable[str]) -> list[tuple[float, int, str]]:
    entries: list[tuple[float, int, str]] = []
    order = 0
    for value in values:
        for item in value.split(","):
            fields = [f.strip() for f in item.split(";")]
            media = fields[0].lower()
            if not media:
                continue
            q = 1.0
            for f in fields[1:]:
                key, _, val = f.partition("=")
                if key.strip().lower() == "q":
                    try:
                        q = float(val)
                    except ValueError:
                        q = 0.0
            entries.append((q, order, media))
            order += 1
    return entries


def negotiate(accept: Iterable[str]) -> MediaType:
    """Pick the media type from Accept header values (PS3.18 Section 8.7.3): the
    highest q-value wins, then the client's order; ``*/*`` and ``image/*`` give
    JPEG; nothing acceptable raises :class:`NotAcceptable`. No header: JPEG."""
    entries = _accept_entries(accept)
    if not entries:
        return MediaType.JPEG
    for q, _, media in sorted(entries, key=lambda e: (-e[0], e[1])):
        if q <= 0.0:
            continue
        if media in ("*/*", "image/*"):
            return MediaType.JPEG
        for candidate in MediaType:
            if media == candidate.value:
                return candidate
    raise NotAcceptable("Rendered images are available as image/jpeg, image/png or image/gif.")
