"""Strict parsing of network data sets: truncation is an error, never a smaller data set."""

from __future__ import annotations

import io
import warnings
import zlib
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from dicom_service.dicom.parse import (
    TruncatedDataset,
    _check_complete,
    _explicit_little,
    parse_dataset,
)
from sample_data.generate import Manifest


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


def _pydicom_elements(data: bytes) -> dict[object, object]:
    """What pydicom's reader makes of an explicit VR little endian data set
    (its warning on a corrupt character set is parse_dataset's to give)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return {e.tag: e for e in data_element_generator(io.BytesIO(data), False, True)}


def test_the_fast_reader_reads_what_pydicom_reads(sample_set: tuple[Path, Manifest]) -> None:
    directory, manifest = sample_set
    read = 0
    for entry in manifest.files:
        fp = io.BytesIO((directory / entry["path"]).read_bytes())
        read_preamble(fp, False)
        if _read_file_meta_info(fp).TransferSyntaxUID != ExplicitVRLittleEndian:
            continue
        body = fp.read()
        fast = _explicit_little(body)
        if fast is not None:
            assert fast == _pydicom_elements(body), entry["path"]
            read += 1
    assert read > 100  # the CT series at least


def test_every_cut_and_corruption_reads_as_pydicom_reads_it() -> None:
    raw = _encode(_native(), ExplicitVRLittleEndian)
    cases = [raw[:cut] for cut in range(len(raw) + 1)]
    cases += [raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:] for i in range(len(raw))]
    fast_read = 0
    for data in cases:
        try:
            fast = _explicit_little(data)
        except TruncatedDataset:  # a value cut short: refused on pydicom's path too
            with pytest.raises(ValueError):  # TruncatedDataset, or a corrupt character set
                _check_complete(_pydicom_elements(data), data, True)
            fast_read += 1
            continue
        if fast is None:
            continue
        fast_read += 1
        try:
            expected = _pydicom_elements(data)
        except Exception:  # a corrupt character set: parse_dataset refuses it too
            with pytest.raises(Exception):  # whatever pydicom raises there
                parse_dataset(data, ExplicitVRLittleEndian)
            continue
        _check_complete(expected, data, True)
        assert fast == expected
    assert fast_read > len(raw)  # most cuts: the reader does not give up on them
    assert _explicit_little(_encode(_encapsulated(), ExplicitVRLittleEndian)) is None
