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
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

UNDEFINED_LENGTH = 0xFFFFFFFF
_DELIMITER_LE = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_DELIMITER_BE = b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"


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
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    try:
        for elem in data_element_generator(io.BytesIO(data), implicit, little):
            elements[elem.tag] = elem
    except EOFError:
        raise TruncatedDataset("the data set ends before a delimiter") from None
    for elem in elements.values():
        if (isinstance(elem, RawDataElement) and elem.length != UNDEFINED_LENGTH
                and elem.value is not None and len(elem.value) < elem.length):
            raise TruncatedDataset("the data set ends inside an element value")
    if elements:
        last = elements[max(elements)]
        # an undefined-length value that ends the data set must end with a whole
        # sequence delimitation item (PS3.5 7.5), not just the start of one
        if isinstance(last, RawDataElement) and last.length == UNDEFINED_LENGTH and \
                not data.endswith(_DELIMITER_LE if little else _DELIMITER_BE):
            raise TruncatedDataset("the data set ends inside a sequence delimiter")
    ds = Dataset(elements)
    encoding: str | list[str] = "iso8859"
    charset = elements.get(BaseTag(0x00080005))
    if charset is not None:
        raw_charset = cast(RawDataElement, charset)
        value = convert_raw_data_element(raw_charset).value
        encoding = list(convert_encodings(value))
    ds.set_original_encoding(implicit, little, encoding)
    return ds


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
