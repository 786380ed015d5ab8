"""The Clean Pixel Data Option (DICOM PS3.15 Annex E, E.3.1; CID 7050 code
113101): blank burned-in text in the Pixel Data, in place.

What is blanked is decided by the ``%filter`` rules of the profile's recipes
(``pixels_rules``: vendor boxes, keep-only ultrasound regions, and which
instances go through text detection), then Tesseract finds text in every
frame of the instances at risk (``pixels_ocr``). The blanked pixels take the
value that displays black. The cleaned pixels are written back under the
transfer syntax rules of ``pixels_codec`` (never re-encoded lossy).

An instance whose pixels must be cleaned but cannot be (no decoder, corrupt
data, Tesseract missing or failing) raises :class:`PixelCleaningError`; the
ingest pipeline refuses it (0xC020) and nothing of it is stored.

The :class:`PixelReport` lists the blanked boxes with the rule's label or
``"ocr"``, never the text that was found.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from dicom_service.deidentify.pixels_codec import (
    Decoded,
    PixelCleaningError,
    decode,
    fill_value,
    transfer_syntax,
    write_back,
)
from dicom_service.deidentify.pixels_ocr import OcrError, OcrSettings, detect_text
from dicom_service.deidentify.pixels_rules import Box, Decision, PixelRules, compile_pixel_rules

__all__ = [
    "CLEAN_PIXEL_DATA_CODE",
    "PIXEL_ENGINE_REVISION",
    "CleanedRegion",
    "OcrSettings",
    "OcrTiming",
    "PixelCleaningError",
    "PixelReport",
    "PixelRules",
    "clean_pixels",
    "compile_pixel_rules",
    "ocr_timing",
]

CLEAN_PIXEL_DATA_CODE = ("113101", "Clean Pixel Data Option")
PIXEL_ENGINE_REVISION = f"1 {OcrSettings()!r}"
"""Part of the hash of every profile with the Clean Pixel Data option: bump
the number when the cleaning itself changes (the Tesseract thresholds are
included as they are)."""
OCR_REASON = "ocr"
_PIXEL_DATA = 0x7FE00010


@dataclass(frozen=True)
class CleanedRegion:
    """One blanked box.

    Attributes:
        frame: 0-based frame index, or ``None`` for every frame (filter rules).
        box: (x0, y0, x1, y1) in pixels, x1/y1 exclusive, clipped to the image.
        reason: the filter rule's LABEL, or ``"ocr"``.
    """

    frame: int | None
    box: Box
    reason: str


@dataclass(frozen=True)
class PixelReport:
    """What :func:`clean_pixels` did to one instance (no pixel text in it).

    Attributes:
        examined: a rule applied (filter boxes or text detection).
        ocr: the LABEL of the ``ocr`` rule that sent the instance to text
            detection, or ``None``.
        regions: the blanked boxes.
        frames, rows, columns: the image geometry (0 when not examined).
        fill: the stored value written into blanked pixels (per sample).
        transfer_syntax_in, transfer_syntax_out: as received and as written
            (equal when nothing was blanked).
    """

    examined: bool = False
    ocr: str | None = None
    regions: tuple[CleanedRegion, ...] = ()
    frames: int = 0
    rows: int = 0
    columns: int = 0
    fill: tuple[int, ...] = ()
    transfer_syntax_in: str = ""
    transfer_syntax_out: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.regions)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for the dry-run preview."""
        return {
            "examined": self.examined, "ocr": self.ocr, "frames": self.frames,
            "rows": self.rows, "columns": self.columns, "fill": list(self.fill),
            "transfer_syntax_in": self.transfer_syntax_in,
            "transfer_syntax_out": self.transfer_syntax_out,
            "regions": [{"frame": r.frame, "box": list(r.box), "reason": r.reason}
                        for r in self.regions],
        }


def _clip(box: Box, rows: int, cols: int) -> Box | None:
    x0, y0, x1, y1 = box
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(cols, x1), min(rows, y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _mask_boxes(mask: NDArray[np.bool_]) -> list[Box]:
    """Decompose a 2-D mask into boxes: rows with the same runs merge."""
    boxes: list[Box] = []
    open_runs: dict[tuple[int, int], int] = {}  # (x0, x1) -> first row
    padded = np.zeros((mask.shape[0] + 1, mask.shape[1] + 2), dtype=np.int8)
    padded[:-1, 1:-1] = mask
    for y in range(mask.shape[0] + 1):
        edges = np.flatnonzero(np.diff(padded[y]))
        runs = set(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))
        for run in list(open_runs):
            if run not in runs:
                boxes.append((run[0], open_runs.pop(run), run[1], y))
        for run in runs:
            open_runs.setdefault(run, y)
    return sorted(boxes, key=lambda b: (b[1], b[0]))


def _rule_regions(decision: Decision, rows: int, cols: int) -> list[tuple[str, Box]]:
    out: list[tuple[str, Box]] = []
    for label, maybe_box in decision.blank:
        clipped = _clip(maybe_box if maybe_box is not None else (0, 0, cols, rows), rows, cols)
        if clipped is not None:
            out.append((label, clipped))
    for label, keeps in decision.keep:
        mask = np.ones((rows, cols), dtype=bool)
        for box in keeps:
            clipped = _clip(box, rows, cols)
            if clipped is not None:
                x0, y0, x1, y1 = clipped
                mask[y0:y1, x0:x1] = False
        out.extend((label, b) for b in _mask_boxes(mask))
    return out


def _blank(arr: NDArray[np.generic], frame: int | None, box: Box,
           fill: NDArray[np.generic]) -> None:
    x0, y0, x1, y1 = box
    if frame is None:
        arr[:, y0:y1, x0:x1] = fill
    else:
        arr[frame, y0:y1, x0:x1] = fill


def clean_pixels(
    ds: Dataset,
    rules: PixelRules,
    *,
    decision: Decision | None = None,
    settings: OcrSettings | None = None,
) -> PixelReport:
    """Blank burned-in text in ``ds``'s Pixel Data, in place.

    Args:
        ds: the instance; its transfer syntax is ``ds.file_meta.TransferSyntaxUID``
            (else inferred for uncompressed data).
        rules: the profile's compiled filter rules.
        decision: ``rules.decide(ds)`` evaluated earlier (on the header as
            received, before the header rules changed it); evaluated now if
            omitted.
        settings: text detection settings.

    Returns:
        The report. When a rule applied, BurnedInAnnotation is set to ``NO``
        (PS3.15 E.3.1); when a box was blanked, the pixels are re-encoded and
        ``ds.file_meta.TransferSyntaxUID`` names the syntax written. An
        instance no rule selects (CT or MR slices) is not decoded at all.

    Raises:
        PixelCleaningError: the pixels need cleaning but cannot be decoded,
            searched for text or stored.
    """
    if _PIXEL_DATA not in ds:
        return PixelReport()
    if decision is None:
        decision = rules.decide(ds)
    if not decision.needed:  # not decoded, not even looked at
        meta = getattr(ds, "file_meta", None)
        known = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        return PixelReport(transfer_syntax_in=known, transfer_syntax_out=known)
    syntax_in = str(transfer_syntax(ds))
    decoded = decode(ds)
    arr = decoded.array
    frames, rows, cols = arr.shape[0], arr.shape[1], arr.shape[2]
    fill_values = fill_value(ds, decoded)
    fill = np.array(fill_values if arr.ndim == 4 else fill_values[0], dtype=arr.dtype)
    regions: list[CleanedRegion] = []
    for label, box in _rule_regions(decision, rows, cols):
        _blank(arr, None, box, fill)
        regions.append(CleanedRegion(None, box, label))
    if decision.ocr is not None:
        bits = int(ds.get("BitsStored", 8) or 8)
        seen: dict[bytes, list[Box]] = {}  # identical frames (still screens) are read once
        for i in range(frames):
            digest = hashlib.blake2b(arr[i].tobytes(), digest_size=16).digest()
            boxes = seen.get(digest)
            if boxes is None:
                try:
                    boxes = detect_text(arr[i], decoded.photometric, bits,
                                        settings or OcrSettings())
                except OcrError as exc:
                    raise PixelCleaningError(f"text detection failed: {exc}") from None
                seen[digest] = boxes
            for box in boxes:
                _blank(arr, i, box, fill)
                regions.append(CleanedRegion(i, box, OCR_REASON))
    syntax_out = syntax_in
    if regions:
        syntax_out = str(write_back(ds, decoded))
    ds.BurnedInAnnotation = "NO"
    return PixelReport(
        examined=True, ocr=decision.ocr, regions=tuple(regions), frames=frames,
        rows=rows, columns=cols, fill=fill_values,
        transfer_syntax_in=syntax_in, transfer_syntax_out=syntax_out,
    )


@dataclass(frozen=True)
class OcrTiming:
    """Cost of text detection on one instance (for ``benchmarks/deid.py``)."""

    modality: str
    frames: int
    rows: int
    columns: int
    ms_total: float
    ms_per_frame: float
    boxes: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def ocr_timing(ds: Dataset, settings: OcrSettings | None = None) -> OcrTiming:
    """Time decoding + rendering + Tesseract over every frame of ``ds``
    (a copy is decoded; ``ds`` is not changed). Not a cleaning: no rule is
    evaluated and nothing is blanked.

    Raises:
        PixelCleaningError: as :func:`clean_pixels`.
    """
    settings = settings or OcrSettings()
    started = time.perf_counter()
    decoded: Decoded = decode(ds.copy())
    decoded_at = time.perf_counter()
    arr = decoded.array
    found = 0
    bits = int(ds.get("BitsStored", 8) or 8)
    for i in range(arr.shape[0]):
        try:
            found += len(detect_text(arr[i], decoded.photometric, bits, settings))
        except OcrError as exc:
            raise PixelCleaningError(f"text detection failed: {exc}") from None
    total = (time.perf_counter() - started) * 1000.0
    return OcrTiming(
        modality=str(ds.get("Modality", "")), frames=arr.shape[0], rows=arr.shape[1],
        columns=arr.shape[2], ms_total=total, ms_per_frame=total / arr.shape[0], boxes=found,
        extra={"decode_ms": (decoded_at - started) * 1000.0},
    )
