"""Strict parsing of data sets received from the network.

pydicom is lenient on purpose: a data set cut short is returned without its
last element, with at most a warning. Network input is hostile, so here a
truncated data set is an error, never a smaller data set.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import cast

from pydicom.charset import convert_encodings
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

UNDEFINED_LENGTH = 0xFFFFFFFF
# the tags everyone peeks at (peek_uid)
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
_DELIMITER_LE = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_DELIMITER_BE = b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"


_HEADER = struct.Struct("<HH2sH")  # explicit VR little endian: tag, VR, 16-bit length
_LENGTH_32 = struct.Struct("<L")
# every standard VR as encoded -> (VR, whether a 32-bit length follows)
_VRS = {str(vr).encode("ascii"): (str(vr), vr in EXPLICIT_VR_LENGTH_32)
        for vr in VR if len(str(vr)) == 2}


class TruncatedDataset(ValueError):
    """The encoded data set ends inside an element."""


def parse_dataset(raw: bytes, transfer_syntax: str) -> Dataset:
    """Decode ``raw`` (a data set without file meta) encoded in ``transfer_syntax``.

    Raises :class:`TruncatedDataset` when the bytes end inside an element (a
    value shorter than its length, or no delimiter after an undefined-length
    value) and ``ValueError`` for anything else pydicom cannot decode. Values
    stay raw (converted on first access), so parsing costs little.
    """
    ts = UID(transfer_syntax)
    data = raw
    if ts == DeflatedExplicitVRLittleEndian:
        try:
            data = zlib.decompress(raw, -zlib.MAX_WBITS)
        except zlib.error:
            raise TruncatedDataset("the deflated data set cannot be inflated") from None
    implicit = ts.is_implicit_VR
    little = ts.is_little_endian
    found = None if implicit or not little else _explicit_little(data)
    if found is not None:
        elements = found  # checked there: whole values, no undefined length
    else:
        elements = {}
        try:
            for elem in data_element_generator(io.BytesIO(data), implicit, little):
                elements[elem.tag] = elem
        except EOFError:
            raise TruncatedDataset("the data set ends before a delimiter") from None
        _check_complete(elements, data, little)
    ds = Dataset(elements)
    encoding: str | list[str] = "iso8859"
    charset = elements.get(BaseTag(0x00080005))
    if charset is not None:
        raw_charset = cast(RawDataElement, charset)
        value = convert_raw_data_element(raw_charset).value
        encoding = list(convert_encodings(value))
    ds.set_original_encoding(implicit, little, encoding)
    return ds


def _check_complete(elements: dict[BaseTag, RawDataElement | DataElement], data: bytes,
                    little: bool) -> None:
    """Raise :class:`TruncatedDataset` if a value is cut short, or an
    undefined-length value ends the data set without its delimiter."""
    for elem in elements.values():
        if (isinstance(elem, RawDataElement) and elem.length != UNDEFINED_LENGTH
                and elem.value is not None and len(elem.value) < elem.length):
            raise TruncatedDataset("the data set ends inside an element value")
    if elements:
        last = elements[max(elements, key=int)]  # int order: no Python-level __lt__
        # an undefined-length value that ends the data set must end with a whole
        # sequence delimitation item (PS3.5 7.5), not just the start of one
        if isinstance(last, RawDataElement) and last.length == UNDEFINED_LENGTH and \
                not data.endswith(_DELIMITER_LE if little else _DELIMITER_BE):
            raise TruncatedDataset("the data set ends inside a sequence delimiter")


def _explicit_little(data: bytes) -> dict[BaseTag, RawDataElement | DataElement] | None:
    """The elements of an explicit VR little endian data set, as pydicom's
    ``data_element_generator`` reads them (the same raw elements, half the
    cost), when every element has a standard VR and a defined length; else
    ``None``, and pydicom reads it (undefined lengths, odd VRs, delimiters).
    Like pydicom, it stops at fewer than 8 bytes left.

    Raises :class:`TruncatedDataset` when a value is cut short (only the
    last one can be; :func:`_check_complete` refuses it on pydicom's path)."""
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    header = _HEADER.unpack_from
    length_32 = _LENGTH_32.unpack_from
    vrs = _VRS
    pos = 0
    end = len(data)
    while end - pos >= 8:
        group, number, encoded_vr, length = header(data, pos)
        known = vrs.get(encoded_vr)
        if known is None:
            return None
        vr, long_length = known
        pos += 8
        if long_length:
            if end - pos < 4:
                return None
            length = length_32(data, pos)[0]
            pos += 4
        tag = group << 16 | number
        if length == 0xFFFFFFFF or tag == 0xFFFEE00D:
            return None
        key = BaseTag(tag)
        value = (data[pos:pos + length] if length
                 else cast(bytes | None, empty_value_for_VR(vr, raw=True)))  # as pydicom
        elements[key] = RawDataElement(key, vr, length, value, pos, False, True)
        pos += length
    if pos > end:
        raise TruncatedDataset("the data set ends inside an element value")
    return elements


def peek_uid(ds: Dataset, tag: int) -> str | None:
    """The value of the UI element ``tag`` of ``ds`` as text (``None`` if absent).

    An element still raw from the parser is read as pydicom reads a UI value
    (ISO 8859, trailing NULs and spaces dropped) without converting it, so
    the writer can still copy its bytes as they are. Several values come
    back joined by backslashes (no valid UID).
    """
    elem = ds._dict.get(BaseTag(tag))
    if elem is None:
        return None
    if type(elem) is not RawDataElement:
        value = ds[tag].value
        return None if value is None else str(value)
    return "" if elem.value is None else elem.value.decode("latin-1").rstrip("\0 ")


def parse_part10(raw: bytes) -> tuple[Dataset, str]:
    """Decode a Part-10 file (preamble, file meta, data set) as strictly as
    :func:`parse_dataset`; return the data set and its transfer syntax UID.

    Raises ``ValueError`` (or :class:`TruncatedDataset`) when it is not a
    complete Part-10 file with a transfer syntax.
    """
    fp = io.BytesIO(raw)
    try:
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
    except (InvalidDicomError, EOFError, struct.error):
        raise ValueError("not a DICOM Part-10 file (no preamble and file meta)") from None
    ts = meta.get("TransferSyntaxUID")
    if not ts:
        raise ValueError("the file meta has no transfer syntax")
    ds = parse_dataset(raw[fp.tell():], str(ts))
    ds.file_meta = meta
    return ds, str(ts)
