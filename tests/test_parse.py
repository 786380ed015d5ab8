"""Strict parsing of network data sets: truncation is an error, never a smaller data set."""

from __future__ import annotations

import zlib

import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from dicom_service.dicom.parse import TruncatedDataset, parse_dataset


def _encode(ds: Dataset, ts: str) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = ts != ExplicitVRBigEndian
    fp.is_implicit_VR = ts == ImplicitVRLittleEndian
    write_dataset(fp, ds)
    raw = fp.getvalue()
    if ts == DeflatedExplicitVRLittleEndian:
        c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        raw = c.compress(raw) + c.flush()
    return raw


def _native() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Ødegård^Åsa"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated = 16
    ds.PixelData = bytes(range(32))
    ds["PixelData"].VR = "OW"
    return ds


def _encapsulated() -> Dataset:
    ds = _native()
    ds.PixelData = encapsulate([b"\x01" * 20, b"\x02" * 30])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_complete_data_sets_parse(ts: str) -> None:
    ds = parse_dataset(_encode(_native(), ts), ts)
    assert str(ds.PatientName) == "Ødegård^Åsa"
    assert len(ds.PixelData) == 32


@pytest.mark.parametrize(("make", "ts"), [(_native, ExplicitVRLittleEndian),
                                          (_native, ImplicitVRLittleEndian),
                                          (_native, ExplicitVRBigEndian),
                                          (_encapsulated, RLELossless)])
@pytest.mark.parametrize("cut", [1, 3, 8, 9, 20])
def test_truncated_data_sets_are_refused(make: object, ts: str, cut: int) -> None:
    assert callable(make)
    raw = _encode(make(), ts)
    parse_dataset(raw, ts)  # the whole is fine
    with pytest.raises(TruncatedDataset, match="ends"):
        parse_dataset(raw[:-cut], ts)


def test_truncated_deflate_stream_is_refused() -> None:
    raw = _encode(_native(), DeflatedExplicitVRLittleEndian)
    with pytest.raises(TruncatedDataset):
        parse_dataset(raw[:-5], DeflatedExplicitVRLittleEndian)


def test_part10_files_parse_strictly(tmp_path: object) -> None:
    import io

    from pydicom.dataset import FileMetaDataset

    from dicom_service.dicom.parse import parse_part10

    ds = _native()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    parsed, ts = parse_part10(buf.getvalue())
    assert ts == ExplicitVRLittleEndian
    assert parsed.SOPInstanceUID == "1.2.3.4"
    with pytest.raises(TruncatedDataset):
        parse_part10(buf.getvalue()[:-7])
    with pytest.raises(ValueError):
        parse_part10(b"not dicom at all" * 20)
