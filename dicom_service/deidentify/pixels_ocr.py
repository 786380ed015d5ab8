"""Find burned-in text with Tesseract (``/usr/bin/tesseract``, Debian's
``tesseract-ocr`` + ``tesseract-ocr-eng``), run as a subprocess.

The frame goes to Tesseract as a PNG on its standard input and the word boxes
come back as TSV on its standard output (``tesseract stdin stdout --psm 11
tsv``: sparse text, the layout of burned-in annotations), so no pixel data
ever touches the disk. Only word boxes and confidences are used; the words
themselves are dropped here and never logged or returned.

The rendering is 8-bit grayscale: luminance for RGB, the Y channel for YBR,
min-max scaling per frame for more than 8 bits (burned-in text is drawn at an
extreme of the range, which min-max always shows at full contrast), inverted
for MONOCHROME1, and upscaled when the frame is small (small fonts are read
better at 2x). Grayscale frames of more than 8 bits get a second pass over
their brightest pixels only (:func:`render_extremes`): burned-in text is
drawn at full white, and on a mid-grey radiograph min-max scaling leaves it
so little contrast that Tesseract's global threshold loses it.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from dicom_service.deidentify.pixels_rules import Box

__all__ = [
    "OcrError", "OcrSettings", "detect_text", "find_text", "render_8bit", "render_extremes",
    "tesseract_available",
]

TESSERACT = "tesseract"


class OcrError(Exception):
    """Tesseract is missing, failed or timed out (no pixel text in the message)."""


@dataclass(frozen=True)
class OcrSettings:
    """How text is detected.

    Attributes:
        min_confidence: words of ``long_word`` or more letters/digits at
            or above this Tesseract confidence (0-100) are text.
        short_word_confidence: shorter words need this confidence: noise in
            an image is read as short words ("oe", "a", "2") at up to ~60.
        long_word: see above.
        margin: pixels added on every side of a word box before blanking.
        line_gap: words on one line closer than this many text heights are
            blanked as one box (the space between them too).
        upscale_below: frames whose smaller side is below this are upscaled
            2x (at 256 px the sample text is found at 1x, and 2x adds noise
            words).
        timeout: seconds per frame before Tesseract is stopped (then OcrError).
        psm: Tesseract page segmentation mode (11: sparse text).
    """

    min_confidence: float = 40.0
    short_word_confidence: float = 80.0
    long_word: int = 4
    margin: int = 4
    line_gap: float = 1.5
    upscale_below: int = 160
    timeout: float = 60.0
    psm: int = 11


def tesseract_available() -> bool:
    return shutil.which(TESSERACT) is not None


def render_8bit(frame: NDArray[np.generic], photometric: str) -> NDArray[np.uint8]:
    """An 8-bit grayscale rendering of one frame (rows x cols [x samples])."""
    if frame.ndim == 3:
        if photometric.startswith("YBR"):
            gray = frame[..., 0].astype(np.float32)
        else:  # RGB-like: ITU-R BT.601 luminance
            f = frame.astype(np.float32)
            gray = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    else:
        gray = frame.astype(np.float32)
    if frame.dtype == np.uint8 and frame.ndim == 2:
        out = frame.astype(np.uint8, copy=True)
    else:
        lo, hi = float(gray.min()), float(gray.max())
        if hi > lo:
            out = np.clip((gray - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)
        else:
            out = np.zeros(gray.shape, dtype=np.uint8)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out


def render_extremes(image: NDArray[np.uint8], level: int = 250,
                    max_fraction: float = 0.2) -> NDArray[np.uint8] | None:
    """Black where ``image`` is at least ``level``, white elsewhere (dark text
    on white, as Tesseract reads best); ``None`` when no pixel or more than
    ``max_fraction`` of them is that bright (then it is not text)."""
    bright = image >= level
    share = float(bright.mean())
    if share == 0.0 or share > max_fraction:
        return None
    return np.where(bright, 0, 255).astype(np.uint8)


def detect_text(frame: NDArray[np.generic], photometric: str, bits_stored: int,
                settings: OcrSettings) -> list[Box]:
    """Word boxes of one decoded frame (rows x cols [x samples]): the 8-bit
    rendering, plus the extremes pass for grayscale of more than 8 bits.

    Raises:
        OcrError: as :func:`find_text`.
    """
    image = render_8bit(frame, photometric)
    boxes = find_text(image, settings)
    if frame.ndim == 2 and bits_stored > 8:
        extremes = render_extremes(image)
        if extremes is not None:
            boxes = _merge_lines(boxes + find_text(extremes, settings), settings.line_gap)
    return boxes


def _png(image: NDArray[np.uint8], scale: int) -> bytes:
    img = Image.fromarray(image, mode="L")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _parse_tsv(tsv: str, scale: int, settings: OcrSettings,
               shape: tuple[int, int]) -> list[Box]:
    rows, cols = shape
    boxes: list[Box] = []
    for line in tsv.splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) < 12 or parts[0] != "5":  # level 5: a word
            continue
        text = parts[11].strip()
        if not any(ch.isalnum() for ch in text):
            continue
        try:
            left, top, width, height = (int(v) for v in parts[6:10])
            conf = float(parts[10])
        except ValueError:
            continue
        letters = sum(ch.isalnum() for ch in text)
        needed = (settings.min_confidence if letters >= settings.long_word
                  else settings.short_word_confidence)
        if conf < needed:
            continue
        m = settings.margin
        x0 = max(0, left // scale - m)
        y0 = max(0, top // scale - m)
        x1 = min(cols, -(-(left + width) // scale) + m)
        y1 = min(rows, -(-(top + height) // scale) + m)
        if x1 > x0 and y1 > y0:
            boxes.append((x0, y0, x1, y1))
    return _merge_lines(boxes, settings.line_gap)


def _merge_lines(boxes: list[Box], gap: float) -> list[Box]:
    """Merge boxes that overlap, or sit side by side on one line (vertical
    overlap at least half the lower box, horizontal gap under ``gap`` text
    heights), until none does."""
    merged = sorted(boxes)
    changed = True
    while changed:
        changed = False
        out: list[Box] = []
        for box in merged:
            for i, other in enumerate(out):
                if _joinable(box, other, gap):
                    out[i] = (min(box[0], other[0]), min(box[1], other[1]),
                              max(box[2], other[2]), max(box[3], other[3]))
                    changed = True
                    break
            else:
                out.append(box)
        merged = sorted(out)
    return merged


def _joinable(a: Box, b: Box, gap: float) -> bool:
    overlap_y = min(a[3], b[3]) - max(a[1], b[1])
    height = min(a[3] - a[1], b[3] - b[1])
    if overlap_y <= 0:
        return False
    distance = max(a[0], b[0]) - min(a[2], b[2])  # <= 0: they overlap
    if distance <= 0:
        return True
    return overlap_y * 2 >= height and distance <= gap * max(a[3] - a[1], b[3] - b[1])


def find_text(image: NDArray[np.uint8], settings: OcrSettings) -> list[Box]:
    """Word boxes (with the margin, clipped, in ``image`` coordinates) of the
    text Tesseract reads in an 8-bit grayscale ``image``.

    Raises:
        OcrError: Tesseract is not installed, exits with an error or times out.
    """
    rows, cols = image.shape
    scale = 2 if min(rows, cols) < settings.upscale_below else 1
    env = dict(os.environ)
    env["OMP_THREAD_LIMIT"] = "1"  # one core per frame: the machine is shared
    try:
        done = subprocess.run(
            [TESSERACT, "stdin", "stdout", "--psm", str(settings.psm), "tsv"],
            input=_png(image, scale), capture_output=True, timeout=settings.timeout,
            env=env, check=False,
        )
    except FileNotFoundError:
        raise OcrError("tesseract is not installed") from None
    except subprocess.TimeoutExpired:
        raise OcrError(f"tesseract did not finish within {settings.timeout} s") from None
    if done.returncode != 0:
        raise OcrError(f"tesseract exited with status {done.returncode}")
    return _parse_tsv(done.stdout.decode("utf-8", "replace"), scale, settings, (rows, cols))
