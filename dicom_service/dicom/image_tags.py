"""The attributes rendering reads, as DICOM JSON keys (PS3.18 F.2).

The index keeps these of every image instance apart from its full DICOM JSON
(``instances.image_json``), so that rendering a frame reads and parses a few
hundred bytes instead of the whole header (:mod:`dicom_service.ingest.metadata`
writes them, :func:`dicom_service.render.decode.header_from_json` reads them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SAMPLES, PHOTOMETRIC, PLANAR, FRAMES = "00280002", "00280004", "00280006", "00280008"
ROWS, COLUMNS = "00280010", "00280011"
ALLOCATED, STORED, REPRESENTATION = "00280100", "00280101", "00280103"
CENTER, WIDTH, FUNCTION = "00281050", "00281051", "00281056"
INTERCEPT, SLOPE = "00281052", "00281053"
# present: the file must be parsed (LUT data, palettes, float pixels)
NEEDS_FILE = ("00283000", "00283010", "7FE00008", "7FE00009")

IMAGE_JSON_KEYS = frozenset({
    SAMPLES, PHOTOMETRIC, PLANAR, FRAMES, ROWS, COLUMNS, ALLOCATED, STORED, REPRESENTATION,
    CENTER, WIDTH, FUNCTION, INTERCEPT, SLOPE, *NEEDS_FILE})
# the same as integer tags
IMAGE_TAGS = frozenset(int(key, 16) for key in IMAGE_JSON_KEYS)


def image_attributes(document: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes of :data:`IMAGE_JSON_KEYS` in a DICOM JSON ``document``,
    in its order."""
    return {key: value for key, value in document.items() if key in IMAGE_JSON_KEYS}
