"""A PNG preview of a de-identified instance's first frame, with the pixel
regions that were cleaned outlined.

For an administrator checking a profile, not for diagnosis: the frame is
scaled to 8 bits (rescale, then the instance's first window or the 0.5-99.5
percentile range; MONOCHROME1 inverted), colour stays colour, and the image
fits in :data:`MAX_EDGE` pixels. The PNG is built in memory and returned
base64-encoded in the response; nothing is cached or written.

The cleaned regions come from the pixel report that ``Profile.apply``
returns when the profile has the Clean Pixel Data option
(``dicom_service.deidentify.pixels``); boxes are ``(x0, y0, x1, y1)``,
exclusive, for one frame or (``frame`` None) for every frame.
"""

from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_rescale

__all__ = ["MAX_EDGE", "PixelSummary", "Preview", "Region", "render_preview", "summarise_pixels"]

MAX_EDGE = 512
_OUTLINE = (255, 0, 0)


@dataclass(frozen=True)
class Region:
    frame: int | None
    box: tuple[int, int, int, int]
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"frame": self.frame, "box": list(self.box), "reason": self.reason}


@dataclass(frozen=True)
class PixelSummary:
    """What pixel cleaning reported for one instance.

    ``reported``: the profile cleans pixel data and returned a report;
    ``detail``: the report as JSON (no pixel text in it).
    """

    reported: bool
    regions: tuple[Region, ...] = ()
    detail: dict[str, Any] | None = None

    def to_json(self) -> dict[str, object]:
        return {"reported": self.reported, "regions": [r.to_json() for r in self.regions],
                "report": self.detail}


def summarise_pixels(report: object) -> PixelSummary:
    """Read the pixel report ``Profile.apply`` returned (None: no pixel cleaning)."""
    if report is None or not hasattr(report, "regions"):
        return PixelSummary(False)
    regions: list[Region] = []
    for r in getattr(report, "regions", ()):
        box = tuple(int(v) for v in r.box)
        if len(box) == 4:
            frame = r.frame if r.frame is None else int(r.frame)
            regions.append(Region(frame, (box[0], box[1], box[2], box[3]), str(r.reason)))
    to_dict = getattr(report, "to_dict", None)
    detail = to_dict() if callable(to_dict) else None
    return PixelSummary(True, tuple(regions), detail if isinstance(detail, dict) else None)


@dataclass(frozen=True)
class Preview:
    png: bytes | None
    outlined: bool
    note: str
    regions: tuple[Region, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        return {
            "media_type": "image/png" if self.png is not None else None,
            "png_base64": base64.b64encode(self.png).decode("ascii") if self.png else None,
            "outlined": self.outlined, "note": self.note,
            "regions": [r.to_json() for r in self.regions],
        }


def _first_frame(ds: Dataset) -> NDArray[Any]:
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        ds.pixel_array_options(index=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr: NDArray[Any] = ds.pixel_array
    return arr


def _first(value: Any) -> float:
    if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        return float(value)
    return float(value[0])


def _window(ds: Dataset) -> tuple[float, float] | None:
    """The first VOI window (PS3.3 C.11.2.1.2) as (low, high), if usable."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        c, w = _first(center), _first(width)
    except (TypeError, ValueError, IndexError):
        return None
    return (c - w / 2.0, c + w / 2.0) if w > 1 else None


def _to_8bit(ds: Dataset, arr: NDArray[Any]) -> NDArray[np.uint8]:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    samples = int(ds.get("SamplesPerPixel") or 1)
    if samples > 1 or arr.ndim == 3:
        if arr.dtype == np.uint8:
            return arr
        peak = float(arr.max()) or 1.0
        return np.clip(arr.astype(np.float64) * (255.0 / peak), 0, 255).astype(np.uint8)
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        top = float(rgb.max()) or 1.0
        return np.clip(rgb.astype(np.float64) * (255.0 / top), 0, 255).astype(np.uint8)
    values = apply_rescale(arr, ds).astype(np.float64)
    window = _window(ds)
    if window is None:
        lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    else:
        lo, hi = window
    if hi <= lo:
        hi = lo + 1.0
    out = np.clip((values - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return 255 - out if photometric == "MONOCHROME1" else out


def render_preview(ds: Dataset, pixels: PixelSummary) -> Preview:
    """The first frame of ``ds`` as PNG, the cleaned regions outlined in red."""
    if "PixelData" not in ds:
        return Preview(None, False, "the instance has no pixel data")
    try:
        image8 = _to_8bit(ds, _first_frame(ds))
    except Exception as exc:  # no decoder, corrupt data: say so, never the values
        return Preview(None, False, f"the pixel data could not be decoded ({type(exc).__name__})")
    img = Image.fromarray(image8).convert("RGB")
    scale = min(1.0, MAX_EDGE / max(img.width, img.height))
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.BILINEAR)
    regions = tuple(r for r in pixels.regions if r.frame in (None, 0))
    if not pixels.reported:
        note = ("this profile does not clean pixel data (no Clean Pixel Data option), so "
                "there are no cleaned regions to outline")
    elif not pixels.regions:
        examined = bool(pixels.detail.get("examined")) if pixels.detail else True
        note = ("pixel cleaning examined this instance and blanked nothing" if examined else
                "no pixel cleaning rule selects this instance: its pixels were not examined")
    else:
        note = f"{len(regions)} cleaned region(s) on the first frame outlined in red"
        draw = ImageDraw.Draw(img)
        for r in regions:
            x0, y0, x1, y1 = (v * scale for v in r.box)
            draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=_OUTLINE,
                           width=2)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return Preview(buf.getvalue(), pixels.reported and bool(regions), note, regions)
