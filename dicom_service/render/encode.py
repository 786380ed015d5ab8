"""Cropping, scaling and encoding 8-bit display images.

JPEG goes through libjpeg-turbo (``simplejpeg``); PNG and GIF through Pillow.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image

from dicom_service.render.params import (
    MAX_OUTPUT_SIDE,
    BadRenderParameter,
    MediaType,
    Viewport,
)

ByteArray = np.ndarray[Any, np.dtype[np.uint8]]
PNG_COMPRESS_LEVEL = 2  # speed over size: rendered frames are viewed, not archived


def crop(image: ByteArray, viewport: Viewport) -> ByteArray:
    """The source region of ``viewport`` (pixels, or WADO-URI fractions)."""
    rows, columns = image.shape[:2]
    if viewport.region is not None:
        r = viewport.region
        if r.x >= columns or r.y >= rows:
            raise BadRenderParameter('Parameter "viewport" source region lies outside '
                                     "the image.")
        return image[r.y:min(r.y + r.height, rows), r.x:min(r.x + r.width, columns)]
    if viewport.fractional_region is not None:
        x1, y1, x2, y2 = viewport.fractional_region
        left, right = round(x1 * columns), max(round(x2 * columns), 1)
        top, bottom = round(y1 * rows), max(round(y2 * rows), 1)
        return image[top:max(bottom, top + 1), left:max(right, left + 1)]
    return image


def fitted_size(columns: int, rows: int, viewport: Viewport) -> tuple[int, int]:
    """(width, height) fitting ``columns`` x ``rows`` within the viewport with the
    aspect ratio kept (PS3.18 Section 8.3.5.1.3); never 0, never above the cap."""
    scales = []
    if viewport.width is not None:
        scales.append(viewport.width / columns)
    if viewport.height is not None:
        scales.append(viewport.height / rows)
    scale = min(scales) if scales else 1.0
    scale = min(scale, MAX_OUTPUT_SIDE / columns, MAX_OUTPUT_SIDE / rows)
    return max(1, round(columns * scale)), max(1, round(rows * scale))


def apply_viewport(image: ByteArray, viewport: Viewport | None) -> ByteArray:
    if viewport is None:
        return image
    image = crop(image, viewport)
    rows, columns = image.shape[:2]
    width, height = fitted_size(columns, rows, viewport)
    if (width, height) == (columns, rows):
        return image
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(
        (width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def encode(image: ByteArray, media_type: MediaType, quality: int) -> bytes:
    """Encode (rows, columns) grey or (rows, columns, 3) RGB uint8 pixels."""
    image = np.ascontiguousarray(image)
    if media_type is MediaType.JPEG:
        if image.ndim == 2:
            return bytes(simplejpeg.encode_jpeg(image[:, :, None], quality=quality,
                                                colorspace="GRAY"))
        return bytes(simplejpeg.encode_jpeg(image, quality=quality, colorspace="RGB",
                                            colorsubsampling="422"))
    picture = Image.fromarray(image)
    out = io.BytesIO()
    if media_type is MediaType.PNG:
        picture.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        if picture.mode == "RGB":
            picture = picture.quantize(colors=256)
        picture.save(out, format="GIF")
    return out.getvalue()
