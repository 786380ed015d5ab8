"""The Part-10 writer's shortcut writes exactly what ``pydicom.dcmwrite`` writes."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from dicom_service.deidentify import Pseudonymiser, derive_date_shift, load_profiles
from dicom_service.dicom.parse import parse_dataset, parse_part10
from dicom_service.dicom.part10 import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION,
    encode_part10,
)
from sample_data.generate import Manifest, write_ct_series
from tests.test_parse import _encode, _native

PROFILES = Path(__file__).resolve().parents[1] / "deid_profiles"


def _reference(ds: Dataset, ts: str) -> bytes:
    """What the writer did before its shortcut: pydicom's dcmwrite, whole."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = meta
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _pseudonymiser() -> Pseudonymiser:
    key = hashlib.sha256(b"part10 test enrolment").digest()
    return Pseudonymiser(key=key, pseudonym="ERN-TEST0001", date_shift_days=derive_date_shift(key))


def _files(sample_set: tuple[Path, Manifest], tmp_path: Path) -> list[Path]:
    directory, manifest = sample_set
    files = [directory / f["path"] for f in manifest.files][::7]  # every kind, not every slice
    for ts in (ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless):
        files += write_ct_series(tmp_path / ts, n=1, size=32, transfer_syntax=ts)
    return files


@pytest.mark.parametrize("deidentify", [False, True])
def test_files_are_byte_identical_to_dcmwrite(sample_set: tuple[Path, Manifest],
                                              tmp_path: Path, deidentify: bool) -> None:
    profile = load_profiles(PROFILES).active
    p = _pseudonymiser()
    files = _files(sample_set, tmp_path)
    assert len(files) > 10
    for path in files:
        raw = path.read_bytes()
        ours, ts = parse_part10(raw)
        theirs, _ = parse_part10(raw)
        if deidentify:
            profile.apply(ours, p)
            profile.apply(theirs, p)
            ts = str(ours.file_meta.TransferSyntaxUID)
        assert encode_part10(ours, ts) == _reference(theirs, ts), path.name


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ExplicitVRBigEndian,
                                ImplicitVRLittleEndian])
def test_raw_and_changed_elements_mix(ts: str) -> None:
    ds = _native()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "2.25.1"
    ds.ContentDate = "20250101"
    ds.ImageComments = "x" * 9_999  # LT: 16-bit length in explicit VR
    ds.EncapsulatedDocument = b"\x01" * 70_001  # OB: 32-bit length, odd (padded)
    ours = parse_dataset(_encode(ds, ts), ts)
    theirs = parse_dataset(_encode(ds, ts), ts)
    for d in (ours, theirs):
        d.ContentDate = "20240101"  # one converted, changed element among raw ones
    assert encode_part10(ours, ts) == _reference(theirs, ts)
