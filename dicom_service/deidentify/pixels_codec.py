"""Decode Pixel Data for cleaning and write the cleaned pixels back.

Transfer syntax rules (PS3.5 Section 8 and Annex A.4; LossyImageCompression
PS3.3 C.7.6.1.1.5):

* uncompressed (implicit/explicit VR little endian, deflated, big endian)
  stays as it is;
* lossless compressed (RLE, JPEG-LS lossless, JPEG 2000 lossless) is
  re-encoded losslessly in the same syntax; a lossless syntax pydicom cannot
  encode (JPEG lossless process 14, HTJ2K) becomes Explicit VR Little Endian;
* a lossy source (JPEG baseline/extended, JPEG-LS near-lossless, JPEG 2000,
  HTJ2K) is decoded once, cleaned and stored JPEG-LS lossless (else Explicit
  VR Little Endian), never re-encoded lossy; LossyImageCompression stays
  ``01``;
* any change of syntax is written to ``ds.file_meta.TransferSyntaxUID``:
  that is how the caller (the ingest pipeline's encoder) learns it.

Decoding failures (no decoder, corrupt data, unsupported layout) raise
:class:`PixelCleaningError`, so an instance that needs cleaning is refused
rather than stored uncleaned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

__all__ = ["Decoded", "PixelCleaningError", "decode", "fill_value", "transfer_syntax", "write_back"]

_UNCOMPRESSED = frozenset({
    ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
})
_REENCODE_SAME = frozenset({RLELossless, JPEGLSLossless, JPEG2000Lossless})
_LOSSY = frozenset({
    "1.2.840.10008.1.2.4.50",  # JPEG baseline (process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG extended (processes 2 & 4)
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000 (lossless or lossy: assume lossy)
    "1.2.840.10008.1.2.4.203",  # HTJ2K (lossless or lossy: assume lossy)
})
LOSSY_TARGET = JPEGLSLossless
"""Where a lossy source goes after cleaning (Explicit VR LE if that fails)."""
_PIXEL_DATA = 0x7FE00010
_EXTENDED_OFFSETS = (0x7FE00001, 0x7FE00002)


class PixelCleaningError(Exception):
    """The instance's pixels could not be cleaned: it must not be stored.

    The message names the step and the exception type only, never a value.
    """


@dataclass
class Decoded:
    """Pixel data as an array of shape (frames, rows, columns[, samples]).

    ``photometric`` is the array's photometric interpretation (YBR sources
    decoded to RGB say ``RGB``); ``lossy`` whether the source was lossy.
    """

    array: NDArray[np.generic]
    photometric: str
    syntax: UID
    lossy: bool


def transfer_syntax(ds: Dataset) -> UID:
    """The transfer syntax of ``ds``: file meta, else (not encapsulated) the
    encoding it was read with.

    Raises:
        PixelCleaningError: it cannot be known.
    """
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return UID(str(meta.TransferSyntaxUID))
    implicit, little = ds.original_encoding
    if little is None:
        implicit, little = ds.is_implicit_VR, ds.is_little_endian
    elem = ds.get(_PIXEL_DATA)
    if elem is not None and getattr(elem, "is_undefined_length", False):
        raise PixelCleaningError("transfer syntax unknown for encapsulated pixel data")
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian


def decode(ds: Dataset) -> Decoded:
    """Decode every frame of ``ds``'s Pixel Data into a writeable array.

    Uncompressed and lossless data keep their colour space (YBR_FULL stays
    YBR_FULL, so blanking needs no colour conversion); lossy data is converted
    to RGB as a viewer would show it.

    Raises:
        PixelCleaningError: no decoder for the syntax, missing plugin,
            corrupt or inconsistent data, 1-bit data.
    """
    syntax = transfer_syntax(ds)
    if int(ds.get("BitsAllocated", 0) or 0) == 1:
        raise PixelCleaningError("1-bit pixel data cannot be cleaned")
    lossy = syntax in _LOSSY or str(ds.get("LossyImageCompression", "")).strip() == "01"
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = syntax  # pydicom's decoders read it here
    try:
        decoder = get_decoder(syntax)
    except Exception as exc:  # NotImplementedError for syntaxes without decoders
        raise PixelCleaningError(f"no pixel data decoder ({type(exc).__name__})") from None
    if not decoder.is_available:
        raise PixelCleaningError("no pixel data decoder plugin is installed for the syntax")
    try:
        # pydicom annotates **kwargs as DecodeOptions per value; it is a TypedDict of them
        options: dict[str, Any] = {"as_rgb": syntax in _LOSSY}
        arr, info = decoder.as_array(ds, **options)
    except Exception as exc:
        raise PixelCleaningError(f"pixel data could not be decoded ({type(exc).__name__})") \
            from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    expected = 2 if samples == 1 else 3
    if arr.ndim == expected:
        arr = arr[np.newaxis]
    if arr.ndim != expected + 1 or arr.shape[0] != frames:
        raise PixelCleaningError("decoded pixel data does not match the image attributes")
    photometric = str(info.get("photometric_interpretation", ds.PhotometricInterpretation))
    if photometric == "YBR_FULL_422" and syntax in _UNCOMPRESSED:
        photometric = "YBR_FULL"  # pydicom upsamples; written back at full resolution
    return Decoded(np.array(arr, copy=True), photometric, syntax, lossy)


def fill_value(ds: Dataset, decoded: Decoded) -> tuple[int, ...]:
    """The stored value that displays black (PS3.3 C.7.6.3.1.2): the lowest
    value for MONOCHROME2 (highest for MONOCHROME1), (0, 0, 0) for RGB,
    (0, half, half) for YBR."""
    bits = int(ds.get("BitsStored", 0) or 0) or decoded.array.dtype.itemsize * 8
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    pi = decoded.photometric
    if decoded.array.ndim == 4:
        half = 1 << (bits - 1)
        return (0, half, half) if pi.startswith("YBR") else (0, 0, 0)
    if pi == "MONOCHROME1":
        return ((1 << (bits - 1)) - 1,) if signed else ((1 << bits) - 1,)
    return (-(1 << (bits - 1)),) if signed else (0,)


def _native_bytes(arr: NDArray[np.generic], ds: Dataset, big_endian: bool,
                  planar: bool) -> bytes:
    if planar and arr.ndim == 4:
        arr = arr.transpose(0, 3, 1, 2)
    if big_endian and arr.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder(">"))
    data = np.ascontiguousarray(arr).tobytes()
    return data + b"\x00" if len(data) % 2 else data


def _set_native(ds: Dataset, decoded: Decoded, syntax: UID) -> None:
    arr = decoded.array
    planar = int(ds.get("PlanarConfiguration", 0) or 0) == 1 and syntax in _UNCOMPRESSED
    data = _native_bytes(arr, ds, syntax == ExplicitVRBigEndian, planar)
    for tag in _EXTENDED_OFFSETS:
        if tag in ds:
            del ds[tag]
    vr = "OW" if int(ds.get("BitsAllocated", 8) or 8) > 8 else "OB"
    ds[_PIXEL_DATA] = DataElement(_PIXEL_DATA, vr, data)
    if arr.ndim == 4 and syntax not in _UNCOMPRESSED:
        ds.PlanarConfiguration = 0


def write_back(ds: Dataset, decoded: Decoded) -> UID:
    """Store ``decoded.array`` as ``ds``'s Pixel Data by the rules above;
    update PhotometricInterpretation, LossyImageCompression and
    ``ds.file_meta.TransferSyntaxUID``. Returns the syntax written.

    Raises:
        PixelCleaningError: the pixels could not be stored in any syntax.
    """
    source = decoded.syntax
    ds.PhotometricInterpretation = decoded.photometric
    if source in _UNCOMPRESSED:
        target = source
    elif source in _REENCODE_SAME:
        target = source
    elif source in _LOSSY:
        target = LOSSY_TARGET
    else:
        target = ExplicitVRLittleEndian
    written = target
    if target in _UNCOMPRESSED:
        _set_native(ds, decoded, target)
    else:
        if decoded.array.ndim == 4:
            ds.PlanarConfiguration = 0
        try:
            arr = decoded.array if decoded.array.shape[0] > 1 else decoded.array[0]
            ds.compress(target, arr, generate_instance_uid=False)
        except Exception:  # no encoder or the encoder refused the data: stay lossless
            written = ExplicitVRLittleEndian
            ds.PhotometricInterpretation = decoded.photometric
            try:
                _set_native(ds, decoded, written)
            except Exception as exc:
                raise PixelCleaningError(
                    f"cleaned pixel data could not be stored ({type(exc).__name__})"
                ) from None
    if decoded.lossy:
        ds.LossyImageCompression = "01"
    ds.file_meta.TransferSyntaxUID = written
    return written
