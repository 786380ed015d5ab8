"""De-identification with an association's cache (``DeidCache``) gives exactly
what it gives without one, keeps no identifier in clear, and forgets on clear.

Everything here is synthetic (``sample_data`` and invented names).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, UltrasoundImageStorage

from dicom_service.deidentify import Pseudonymiser, derive_date_shift, load_profiles
from dicom_service.deidentify.cache import DeidCache
from dicom_service.deidentify.clean_text import REMOVED, TextCleaner
from dicom_service.dicom.parse import parse_part10
from dicom_service.dicom.part10 import encode_part10
from sample_data.generate import Manifest

PROFILES = load_profiles(Path(__file__).resolve().parents[2] / "deid_profiles")
ACTIVE = PROFILES.active
DESCRIPTION = "Follow-up of Zorblatt Fernsby"


def _pseudonymiser(seed: str) -> Pseudonymiser:
    key = hashlib.sha256(f"cache test|{seed}".encode()).digest()
    return Pseudonymiser(key=key, pseudonym="ERN-" + key.hex()[:10].upper(),
                         date_shift_days=derive_date_shift(key))


def _received(ds: Dataset) -> Dataset:
    """``ds`` as the network path has it: written, then parsed (raw elements)."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return parse_part10(buf.getvalue())[0]


def _instance(name: str, description: str, number: int, *, modality: str = "CT",
              regions: tuple[int, int, int, int] | None = None) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = UltrasoundImageStorage if regions else CTImageStorage
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{number}"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1000"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1001"
    ds.PatientName = name
    ds.PatientID = "CACHE-" + name.split("^")[0].upper()
    ds.Modality = modality
    ds.StudyDescription = description
    ds.SeriesDescription = "Axial 5 mm"
    ds.InstanceNumber = number
    if regions is not None:
        region = Dataset()
        (region.RegionLocationMinX0, region.RegionLocationMinY0,
         region.RegionLocationMaxX1, region.RegionLocationMaxY1) = regions
        ds.SequenceOfUltrasoundRegions = Sequence([region])
    return _received(ds)


def _deidentified(ds: Dataset, cache: DeidCache | None) -> bytes:
    ACTIVE.apply(ds, _pseudonymiser(str(ds.PatientID)), cache)
    return encode_part10(ds, str(ds.file_meta.TransferSyntaxUID))


def test_the_sample_set_comes_out_byte_identical(sample_set: tuple[Path, Manifest]) -> None:
    directory, manifest = sample_set
    cache = DeidCache()
    compared = 0
    for entry in manifest.files:
        raw = (directory / entry["path"]).read_bytes()
        plain, cached = parse_part10(raw)[0], parse_part10(raw)[0]
        pseudonymiser = _pseudonymiser(str(plain.PatientID))
        ACTIVE.apply(plain, pseudonymiser)
        ACTIVE.apply(cached, pseudonymiser, cache)
        ts = str(plain.file_meta.TransferSyntaxUID)
        assert str(cached.file_meta.TransferSyntaxUID) == ts, entry["path"]
        assert encode_part10(cached, ts) == encode_part10(plain, ts), entry["path"]
        compared += 1
    assert compared == len(manifest.files) > 100
    assert "cleaners" in repr(cache)


def test_a_remembered_text_is_cleaned_by_each_instance_s_own_identifiers() -> None:
    cache = DeidCache()
    results = []
    for number, name in enumerate(["Fernsby^Zorblatt", "Quaxley^Ottoline",
                                   "Fernsby^Zorblatt"], start=1):
        ds = _instance(name, DESCRIPTION, number)
        expected = _deidentified(_instance(name, DESCRIPTION, number), None)
        assert _deidentified(ds, cache) == expected
        results.append(str(ds.StudyDescription))
    # the first and third name the patient; the second instance's patient is
    # someone else, so the same text stays as it is there
    assert REMOVED in results[0] and "Fernsby" not in results[0]
    assert results[1] == DESCRIPTION
    assert results[2] == results[0]


def test_one_cleaner_serves_a_series_and_is_forgotten_on_clear() -> None:
    cache = DeidCache()
    first = TextCleaner.from_dataset(_instance("Fernsby^Zorblatt", DESCRIPTION, 1), cache)
    again = TextCleaner.from_dataset(_instance("Fernsby^Zorblatt", "Other text", 2), cache)
    other = TextCleaner.from_dataset(_instance("Quaxley^Ottoline", DESCRIPTION, 3), cache)
    assert again is first and other is not first
    assert first.clean(DESCRIPTION) != DESCRIPTION
    # keys are keyed digests; nothing shows a name
    keys = b"".join(cache._cleaners)
    assert b"Fernsby" not in keys and b"FERNSBY" not in keys.upper()
    assert "Fernsby" not in repr(cache) and "Fernsby" not in repr(first)
    cache.clear()
    assert repr(first) == "TextCleaner(0 terms)"
    assert first.clean(DESCRIPTION) == DESCRIPTION  # it knows no identifier any more
    assert TextCleaner.from_dataset(_instance("Fernsby^Zorblatt", DESCRIPTION, 4),
                                    cache) is not first


def test_two_caches_do_not_share_digests() -> None:
    assert DeidCache().digest((b"same",)) != DeidCache().digest((b"same",))


def test_pixel_decisions_are_reused_only_when_they_do_not_read_the_instance() -> None:
    rules = ACTIVE._pixels
    assert rules is not None
    cache = DeidCache()
    ct = [_instance("Fernsby^Zorblatt", DESCRIPTION, n) for n in (1, 2)]
    first = rules.decide(ct[0], cache)
    assert rules.decide(ct[1], cache) is first
    assert first == rules.decide(ct[1])
    us = [_instance("Fernsby^Zorblatt", DESCRIPTION, n, modality="US", regions=box)
          for n, box in ((3, (10, 10, 99, 99)), (4, (20, 30, 199, 149)))]
    decisions = [rules.decide(ds, cache) for ds in us]
    assert decisions == [rules.decide(ds) for ds in us]
    assert decisions[0].keep != decisions[1].keep  # each instance's own regions
    assert decisions[0].keep and decisions[0].ocr
