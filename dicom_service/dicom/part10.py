"""Writing Part-10 files (PS3.10 7.1) with this implementation's file meta.

The writer is ``pydicom.dcmwrite``'s, with one shortcut for ingest speed:
elements still raw from the parser (most of a de-identified instance, and
native Pixel Data) are copied as header + value bytes, exactly as pydicom's
``write_data_element`` writes them, without pydicom's per-element buffers
and without converting them. Everything else (changed elements, sequences,
encapsulated Pixel Data) is written by pydicom itself, and a data set whose
encoding or character set changes is left to ``dcmwrite`` whole. The output
is byte for byte ``dcmwrite(..., enforce_file_format=True)``'s (tested).
"""

from __future__ import annotations

import io
import struct
from typing import NamedTuple, cast

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from dicom_service.dicom.parse import SOP_CLASS_UID, SOP_INSTANCE_UID, peek_uid

# The implementation identity written into every file meta (PS3.10 7.1).
IMPLEMENTATION_CLASS_UID = "2.25.160547232414327386417131213127262349957"
IMPLEMENTATION_VERSION = "DICOM_SERVICE_01"

_PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)


class Encoded(NamedTuple):
    """A Part-10 file, and where its native Pixel Data value lies in it."""

    data: bytes
    pixel_data: tuple[int, int] | None  # (offset, length); None if not known here


def encode_part10(ds: Dataset, transfer_syntax: str) -> bytes:
    """``ds`` as a Part-10 file in ``transfer_syntax``; replaces its file meta.

    The file meta carries only what PS3.10 requires: no source AE title or
    other trace of where the instance came from.
    """
    return encode_instance(ds, transfer_syntax).data


def encode_instance(ds: Dataset, transfer_syntax: str) -> Encoded:
    """:func:`encode_part10`, also telling where a native Pixel Data value
    copied as received lies in the file (so nobody has to search for it)."""
    ts = UID(transfer_syntax)
    sop_class = peek_uid(ds, SOP_CLASS_UID) or ""
    sop_instance = peek_uid(ds, SOP_INSTANCE_UID) or ""
    encoding = (ts.is_implicit_VR, ts.is_little_endian)
    if (ts == DeflatedExplicitVRLittleEndian or ts.is_private or not ts.is_transfer_syntax
            or encoding != ds.original_encoding
            or ds.original_character_set != ds._character_set):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(sop_class)
        meta.MediaStorageSOPInstanceUID = UID(sop_instance)
        meta.TransferSyntaxUID = ts
        meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION
        ds.file_meta = meta
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
        return Encoded(buf.getvalue(), None)
    head, meta = _file_meta(sop_class, sop_instance, str(ts))
    ds.file_meta = meta
    pixels = ds._dict.get(BaseTag(_PIXEL_DATA))
    copied = pixels is not None and _pixels_copied(pixels, ts)
    if pixels is not None and not copied:  # as dcmwrite does (converting the element)
        ds[_PIXEL_DATA].is_undefined_length = ts.is_compressed
    parts = _data_set(ds, *encoding, copy_pixels=copied)
    data = b"".join([head, *parts])
    if not copied:
        return Encoded(data, None)
    # the Pixel Data value is the last part but those of any elements after it
    value = cast(bytes, ds._dict[BaseTag(_PIXEL_DATA)].value)
    index = next(i for i in range(len(parts) - 1, -1, -1) if parts[i] is value)
    offset = len(head) + sum(len(part) for part in parts[:index])
    return Encoded(data, (offset, len(value)))


def _pixels_copied(elem: RawDataElement | DataElement, ts: UID) -> bool:
    """Whether the Pixel Data element is copied as read: native (not
    encapsulated), still raw, of a defined and even length, OB or OW (or
    implicit VR); exactly what dcmwrite writes for it then."""
    value = elem.value
    return (not ts.is_compressed and type(elem) is RawDataElement and type(value) is bytes
            and elem.length != _UNDEFINED and not len(value) % 2
            and (ts.is_implicit_VR or elem.VR in ("OB", "OW")))


def _element_bytes(tag: int, vr: str, value: bytes) -> bytes:
    """An explicit VR little endian element, as pydicom pads its type (UI, SH)."""
    if len(value) % 2:
        value += b"\x00" if vr == "UI" else b" "
    if vr in _LONG_VRS:
        header = struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0, len(value))
    else:
        header = struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(value))
    return header + value


def _file_meta(sop_class: str, sop_instance: str, ts: str) -> tuple[bytes, FileMetaDataset]:
    """Preamble, prefix and the file meta group: what ``write_file_meta_info``
    writes with ``enforce_standard`` for these five elements; and the same as
    a file meta data set of raw elements (decoded only if someone reads them)."""
    elements = [
        (0x00020001, "OB", b"\x00\x01"),
        (0x00020002, "UI", sop_class.encode("ascii")),
        (0x00020003, "UI", sop_instance.encode("ascii")),
        (0x00020010, "UI", ts.encode("ascii")),
        (0x00020012, "UI", IMPLEMENTATION_CLASS_UID.encode("ascii")),
        (0x00020013, "SH", IMPLEMENTATION_VERSION.encode("ascii")),
    ]
    encoded = [_element_bytes(tag, vr, value) for tag, vr, value in elements]
    body = b"".join(encoded)
    length = struct.pack("<HH2sHL", 0x0002, 0x0000, b"UL", 4, len(body))
    meta = FileMetaDataset()
    for (tag, vr, _), element in zip(elements[1:], encoded[1:], strict=True):
        start = 8  # tag, VR and a 16-bit length: none of these is a long VR
        meta._dict[BaseTag(tag)] = RawDataElement(BaseTag(tag), vr, len(element) - start,
                                                  element[start:], 0, False, True)
    return b"\x00" * 128 + b"DICM" + length + body, meta


def _data_set(ds: Dataset, implicit: bool, little: bool, copy_pixels: bool) -> list[bytes]:
    """The encoded top-level elements of ``ds``, in tag order, as ``write_dataset``
    writes them (retired group lengths skipped). With ``copy_pixels`` the raw
    Pixel Data value is one of the parts, as it was read (not a copy)."""
    order = "<" if little else ">"
    tag_fmt = struct.Struct(f"{order}HH")
    implicit_len = struct.Struct(f"{order}L")
    short_len = struct.Struct(f"{order}2sH")
    long_len = struct.Struct(f"{order}2sHL")
    encodings = ds.get("SpecificCharacterSet", "iso8859")
    parts: list[bytes] = []
    elements = ds._dict
    for tag in sorted(elements, key=int):  # int order: no Python-level __lt__
        t = int(tag)
        if not t & 0xFFFF and t >> 16 > 6:
            continue
        elem = elements[tag]
        value = elem.value
        if (type(elem) is RawDataElement and type(value) is bytes
                and (t != _PIXEL_DATA or copy_pixels) and elem.length != _UNDEFINED):
            vr = elem.VR
            n = len(value)
            if implicit:
                parts.append(tag_fmt.pack(t >> 16, t & 0xFFFF) + implicit_len.pack(n))
                parts.append(value)
                continue
            if vr is not None and len(vr) == 2:
                if vr in _LONG_VRS:
                    header = long_len.pack(vr.encode(), 0, n)
                    parts.append(tag_fmt.pack(t >> 16, t & 0xFFFF) + header)
                    parts.append(value)
                    continue
                if n <= 0xFFFF:
                    parts.append(tag_fmt.pack(t >> 16, t & 0xFFFF) + short_len.pack(vr.encode(), n))
                    parts.append(value)
                    continue
        # anything else exactly as pydicom writes it
        scratch = DicomBytesIO()
        scratch.is_implicit_VR, scratch.is_little_endian = implicit, little
        write_data_element(scratch, ds.get_item(tag), encodings)
        parts.append(scratch.getvalue())
    return parts
