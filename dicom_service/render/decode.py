"""Decoding: the image pixel module of a stored instance and one frame's pixels.

Two ways to a frame:

* native (uncompressed little-endian) pixel data is read straight from the
  file with one ranged read (``os.pread``) at the offset of the frame: the
  Pixel Data value offset comes from the index when the ingest recorded it,
  else from parsing the header;
* everything else (deflated, big endian, JPEG, JPEG-LS, JPEG 2000, RLE, 1-bit)
  goes through pydicom's decoders (pylibjpeg, pyjpegls), one frame at a time.

Colour data comes out as RGB (YBR_FULL / YBR_FULL_422 are converted, PS3.3
Section C.7.6.3.1.2); PALETTE COLOR comes out as the stored indices and the
palette is applied by :mod:`dicom_service.render.lut`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut, convert_color_space
from pydicom.pixels.utils import pixel_array as decode_pixel_array
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicom_service.dicom import image_tags as tags
from dicom_service.errors import NotFound
from dicom_service.render.params import VoiFunction, Window

NATIVE_LITTLE_ENDIAN = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})
_NATIVE_LE = NATIVE_LITTLE_ENDIAN
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
_UNDEFINED_LENGTH = 0xFFFFFFFF
# a stored file: the hot path passes text (cheaper than a Path), tests pass either
FilePath = str | Path


class NotRenderable(ValueError):
    """The instance has no pixel data this renderer can show (HTTP 400)."""


class FrameNotFound(NotFound):
    """The requested frame number is beyond the instance's frames (HTTP 404)."""


@dataclass(frozen=True)
class Lut:
    """A LUT from a Modality or VOI LUT Sequence item (PS3.3 Section C.11.1/C.11.2):
    input ``first`` maps to ``data[0]``; inputs below/above clamp to the ends."""

    first: int
    bits: int
    data: np.ndarray[Any, np.dtype[np.float64]]

    def apply(self, values: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
        index = np.clip(np.rint(values) - self.first, 0, len(self.data) - 1).astype(np.intp)
        result: np.ndarray[Any, np.dtype[np.float64]] = self.data[index]
        return result


@dataclass(frozen=True)
class ImageHeader:
    """The attributes of the image pixel, modality LUT and VOI LUT modules that
    rendering needs, read once per stored file."""

    transfer_syntax: str
    rows: int
    columns: int
    samples: int
    photometric: str
    planar: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    frames: int
    float_pixels: bool
    slope: float
    intercept: float
    modality_lut: Lut | None
    windows: tuple[Window, ...]
    voi_lut: Lut | None
    # PALETTE COLOR: (first stored value mapped, table of RGB rows, 8-bit)
    palette: tuple[int, np.ndarray[Any, np.dtype[np.uint8]]] | None
    # where the native Pixel Data value starts in the file, and its length
    pixel_offset: int | None
    pixel_length: int | None

    @property
    def monochrome(self) -> bool:
        return self.photometric in ("MONOCHROME1", "MONOCHROME2")

    @property
    def frame_bytes(self) -> int:
        return self.rows * self.columns * self.samples * self.bits_allocated // 8

    @property
    def native(self) -> bool:
        """True when a frame can be read from the file without a decoder."""
        return (
            self.transfer_syntax in _NATIVE_LE
            and self.bits_allocated in (8, 16, 32)
            and not self.float_pixels
            and self.photometric in ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR",
                                     "YBR_FULL")
            and self.pixel_offset is not None
            and self.pixel_length is not None
            and self.pixel_length >= self.frames * self.frame_bytes
        )


def _float(ds: Dataset, keyword: str, default: float) -> float:
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        value = value[0] if len(value) else default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if np.isfinite(number) else default


def _values(ds: Dataset, keyword: str) -> list[Any]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        return list(value)
    return [value]


def _lut_from_item(item: Dataset, signed_input: bool) -> Lut | None:
    descriptor = _values(item, "LUTDescriptor")
    if len(descriptor) != 3 or "LUTData" not in item:
        return None
    entries = int(descriptor[0]) or 65536
    first = int(descriptor[1])
    if signed_input and first >= 32768:
        first -= 65536
    bits = int(descriptor[2])
    raw = item["LUTData"].value
    if isinstance(raw, bytes | bytearray):
        dtype = "<u1" if bits <= 8 and len(raw) == entries else "<u2"
        data = np.frombuffer(raw, dtype=dtype).astype(np.float64)
    else:
        data = np.asarray(raw if isinstance(raw, list | tuple | pydicom.multival.MultiValue)
                          else [raw], dtype=np.float64)
    if len(data) == 0:
        return None
    return Lut(first=first, bits=bits, data=data[:entries])


def _windows(ds: Dataset) -> tuple[Window, ...]:
    centers = _values(ds, "WindowCenter")
    widths = _values(ds, "WindowWidth")
    name = str(ds.get("VOILUTFunction", "") or "LINEAR").strip().upper()
    try:
        function = VoiFunction(name)
    except ValueError:
        function = VoiFunction.LINEAR
    windows: list[Window] = []
    for center, width in zip(centers, widths, strict=False):
        try:
            windows.append(Window(float(center), float(width), function))
        except (TypeError, ValueError):
            continue  # a malformed stored window is skipped, not fatal
    return tuple(windows)


def _palette(ds: Dataset) -> tuple[int, np.ndarray[Any, np.dtype[np.uint8]]] | None:
    descriptor = _values(ds, "RedPaletteColorLookupTableDescriptor")
    if len(descriptor) != 3:
        raise NotRenderable("PALETTE COLOR image without a palette descriptor.")
    entries = int(descriptor[0]) or 65536
    first = int(descriptor[1])
    # pydicom expands plain and segmented palettes alike; feed it every index
    indices = np.arange(first, first + entries, dtype=np.uint16 if entries > 256 else np.uint8)
    table = np.asarray(apply_color_lut(indices, ds))
    if table.dtype == np.uint16:
        table = np.rint(table.astype(np.float64) * (255.0 / 65535.0))
    return first, np.ascontiguousarray(table.astype(np.uint8))


def header_from_dataset(
    ds: Dataset, pixel_offset: int | None = None, pixel_length: int | None = None
) -> ImageHeader:
    """Build the header; raises :class:`NotRenderable` without an image pixel module."""
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if "Rows" not in ds or "Columns" not in ds or "BitsAllocated" not in ds:
        raise NotRenderable("The instance has no image pixel data.")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    modality_lut = None
    if "ModalityLUTSequence" in ds and len(ds.ModalityLUTSequence):
        modality_lut = _lut_from_item(ds.ModalityLUTSequence[0], signed)
    voi_lut = None
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        # the VOI LUT's input is the modality output: signed if that can go negative
        voi_lut = _lut_from_item(ds.VOILUTSequence[0],
                                 signed or _float(ds, "RescaleIntercept", 0.0) < 0)
    bits_allocated = int(ds.BitsAllocated)
    return ImageHeader(
        transfer_syntax=ts,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        samples=int(ds.get("SamplesPerPixel", 1) or 1),
        photometric=photometric,
        planar=int(ds.get("PlanarConfiguration", 0) or 0),
        bits_allocated=bits_allocated,
        bits_stored=int(ds.get("BitsStored", bits_allocated) or bits_allocated),
        signed=signed,
        frames=max(1, int(ds.get("NumberOfFrames", 1) or 1)),
        float_pixels="FloatPixelData" in ds or "DoubleFloatPixelData" in ds,
        slope=_float(ds, "RescaleSlope", 1.0),
        intercept=_float(ds, "RescaleIntercept", 0.0),
        modality_lut=modality_lut,
        windows=_windows(ds),
        voi_lut=voi_lut,
        palette=_palette(ds) if photometric == "PALETTE COLOR" else None,
        pixel_offset=pixel_offset,
        pixel_length=pixel_length,
    )


def _json_values(attrs: dict[str, Any], tag: str) -> list[Any]:
    element = attrs.get(tag)
    if not isinstance(element, dict):
        return []
    values = element.get("Value")
    return values if isinstance(values, list) else []


def _json_first(attrs: dict[str, Any], tag: str, default: Any) -> Any:
    values = _json_values(attrs, tag)
    return values[0] if values and values[0] is not None else default


def header_from_json(attrs: dict[str, Any], transfer_syntax: str, pixel_offset: int,
                     pixel_length: int) -> ImageHeader | None:
    """The header from the index's DICOM JSON of the instance (no file read), for
    native pixel data without LUT sequences or palettes; ``None`` when the file
    must be parsed instead. Malformed values give ``None`` too."""
    if any(tag in attrs for tag in tags.NEEDS_FILE):
        return None
    try:
        photometric = str(_json_first(attrs, tags.PHOTOMETRIC, "MONOCHROME2")).strip().upper()
        if photometric == "PALETTE COLOR" or tags.ROWS not in attrs:
            return None
        function_name = str(_json_first(attrs, tags.FUNCTION, "LINEAR")).strip().upper()
        function = (VoiFunction(function_name) if function_name in VoiFunction.__members__
                    else VoiFunction.LINEAR)
        windows: list[Window] = []
        for center, width in zip(_json_values(attrs, tags.CENTER), _json_values(attrs, tags.WIDTH),
                                 strict=False):
            try:
                windows.append(Window(float(center), float(width), function))
            except (TypeError, ValueError):
                continue
        bits_allocated = int(_json_first(attrs, tags.ALLOCATED, 0))
        slope = float(_json_first(attrs, tags.SLOPE, 1.0))
        intercept = float(_json_first(attrs, tags.INTERCEPT, 0.0))
        return ImageHeader(
            transfer_syntax=transfer_syntax,
            rows=int(_json_first(attrs, tags.ROWS, 0)),
            columns=int(_json_first(attrs, tags.COLUMNS, 0)),
            samples=int(_json_first(attrs, tags.SAMPLES, 1)),
            photometric=photometric,
            planar=int(_json_first(attrs, tags.PLANAR, 0)),
            bits_allocated=bits_allocated,
            bits_stored=int(_json_first(attrs, tags.STORED, bits_allocated)),
            signed=int(_json_first(attrs, tags.REPRESENTATION, 0)) == 1,
            frames=max(1, int(_json_first(attrs, tags.FRAMES, 1))),
            float_pixels=False,
            slope=slope if np.isfinite(slope) else 1.0,
            intercept=intercept if np.isfinite(intercept) else 0.0,
            modality_lut=None,
            windows=tuple(windows),
            voi_lut=None,
            palette=None,
            pixel_offset=pixel_offset,
            pixel_length=pixel_length,
        )
    except (TypeError, ValueError):
        return None


def _locate_pixel_data(fp: BinaryIO, explicit_vr: bool) -> tuple[int, int] | None:
    """At the position where ``dcmread(stop_before_pixels=True)`` stopped, read the
    Pixel Data element header; (value offset, value length) of native data."""
    start = fp.tell()
    head = fp.read(12 if explicit_vr else 8)
    if len(head) < (12 if explicit_vr else 8) or head[:4] != _PIXEL_DATA_TAG:
        return None
    length = int.from_bytes(head[8:12] if explicit_vr else head[4:8], "little")
    if length == _UNDEFINED_LENGTH:
        return None  # encapsulated
    return start + len(head), length


def read_header(path: FilePath, offset: int | None = None,
                length: int | None = None) -> ImageHeader:
    """Parse the header of the stored file (not the pixel data). ``offset`` and
    ``length`` are the index's Pixel Data location, when known."""
    with open(path, "rb") as fp:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
        ts = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
        if offset is None and ts in _NATIVE_LE:
            located = _locate_pixel_data(fp, ts == ExplicitVRLittleEndian)
            if located is not None:
                offset, length = located
    return header_from_dataset(ds, offset, length)


def _native_frame(path: FilePath, header: ImageHeader, index: int) -> np.ndarray[Any, Any]:
    size = header.frame_bytes
    if header.pixel_offset is None:  # pragma: no cover - guarded by ImageHeader.native
        raise NotRenderable("The pixel data location is unknown.")
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, size, header.pixel_offset + index * size)
    finally:
        os.close(fd)
    if len(data) != size:
        raise NotRenderable("The stored pixel data is shorter than its header says.")
    dtype: np.dtype[Any] = np.dtype({8: "u1", 16: "<u2", 32: "<u4"}[header.bits_allocated])
    arr: np.ndarray[Any, Any] = np.frombuffer(data, dtype=dtype)
    if header.samples == 1:
        return arr.reshape(header.rows, header.columns)
    if header.planar == 1:
        arr = arr.reshape(header.samples, header.rows, header.columns).transpose(1, 2, 0)
    else:
        arr = arr.reshape(header.rows, header.columns, header.samples)
    if header.photometric == "YBR_FULL":
        arr = convert_color_space(arr, "YBR_FULL", "RGB")
    return arr


def read_frame(path: FilePath, header: ImageHeader, index: int) -> np.ndarray[Any, Any]:
    """The pixels of frame ``index`` (0-based): (rows, columns) for one sample per
    pixel, (rows, columns, 3) RGB for colour. Stored values, no LUT applied."""
    if not 0 <= index < header.frames:
        raise FrameNotFound(f"Frame {index + 1} does not exist (the instance has "
                            f"{header.frames}).")
    if header.native:
        return _native_frame(path, header, index)
    try:
        if header.transfer_syntax == DeflatedExplicitVRLittleEndian:
            # pydicom's file-based decoding cannot inflate: read the data set
            ds = pydicom.dcmread(path)
            arr, _ = get_decoder(DeflatedExplicitVRLittleEndian).as_array(ds, index=index)
        else:  # reads only the requested frame's fragments
            arr = decode_pixel_array(str(path), index=index)
    except (ValueError, RuntimeError, NotImplementedError, KeyError, AttributeError) as exc:
        # decoder messages do not quote dataset values, but keep to the type
        raise NotRenderable(
            f"The pixel data could not be decoded ({type(exc).__name__})."
        ) from None
    result: np.ndarray[Any, Any] = np.asarray(arr)
    if result.ndim == 3 and header.samples == 1:  # a one-frame 3-d result
        result = result[0]
    return result
