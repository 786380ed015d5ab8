"""Tests for the synthetic sample data generator (``sample_data``).

The full set is generated once per module (ct_slices=100) plus a second time with the same seed
to check byte-identical output.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from sample_data import (
    BENCH_PLANTED,
    MIN_CT_SLICES,
    UID_ROOT,
    FileEntry,
    Manifest,
    generate,
    searchable_bytes,
    write_ct_series,
)

CT_SLICES = MIN_CT_SLICES
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("sample_a")
    return out, generate(out, ct_slices=CT_SLICES)


@pytest.fixture(scope="module")
def file_bytes(sample: tuple[Path, Manifest]) -> dict[str, bytes]:
    out, manifest = sample
    return {f["path"]: searchable_bytes(out / f["path"]) for f in manifest.files}


def _decoder_available(ts: str) -> bool:
    try:
        from pydicom.pixels.decoders.base import get_decoder

        return bool(get_decoder(ts).is_available)
    except (ImportError, NotImplementedError):
        return False


def _walk(ds: Dataset, parent: str = "") -> Iterator[tuple[str, pydicom.DataElement]]:
    """(keyword of the enclosing sequence, element) for every element, recursively."""
    for elem in ds:
        yield parent, elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item, elem.keyword)


def _relative_dcm_files(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*.dcm")}


# -- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(
    sample: tuple[Path, Manifest], tmp_path: Path
) -> None:
    out_a, manifest_a = sample
    out_b = tmp_path / "sample_b"
    manifest_b = generate(out_b, ct_slices=CT_SLICES)
    assert manifest_b.to_dict() == manifest_a.to_dict()
    files_a = _relative_dcm_files(out_a)
    assert files_a == _relative_dcm_files(out_b)
    different = [p for p in sorted(files_a) if (out_a / p).read_bytes() != (out_b / p).read_bytes()]
    assert different == []
    assert (out_a / "manifest.json").read_bytes() == (out_b / "manifest.json").read_bytes()


def test_cli_in_fresh_process_matches(sample: tuple[Path, Manifest], tmp_path: Path) -> None:
    """``python -m sample_data.generate`` (warnings as errors) gives the same manifest."""
    out_a, _ = sample
    out_c = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            "-m",
            "sample_data.generate",
            str(out_c),
            "--ct-slices",
            str(CT_SLICES),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert (out_c / "manifest.json").read_bytes() == (out_a / "manifest.json").read_bytes()
    ct = "P1/ST1/SE2_CT/IM0050.dcm"
    assert (out_c / ct).read_bytes() == (out_a / ct).read_bytes()


def test_cli_rejects_too_few_ct_slices(tmp_path: Path) -> None:
    from sample_data.generate import main

    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "x"), "--ct-slices", "10"])
    assert exc.value.code == 2
    with pytest.raises(ValueError):
        generate(tmp_path / "y", ct_slices=MIN_CT_SLICES - 1)


# -- manifest ----------------------------------------------------------------------------------


def test_manifest_lists_every_file_and_round_trips(sample: tuple[Path, Manifest]) -> None:
    out, manifest = sample
    paths = [f["path"] for f in manifest.files]
    assert len(paths) == len(set(paths))
    assert set(paths) == _relative_dcm_files(out)
    assert Manifest.load(out / "manifest.json") == manifest
    assert Manifest.load(out) == manifest
    assert len({f["sop_uid"] for f in manifest.files}) == len(paths)
    assert sum(f["label"] == "ct" for f in manifest.files) == CT_SLICES
    assert manifest.skipped == [] or all("no encoder" in s for s in manifest.skipped)


def test_patients_and_studies(sample: tuple[Path, Manifest]) -> None:
    _, manifest = sample
    assert len(manifest.patients) >= 3
    keys = {(p["patient_id"], p["issuer"]) for p in manifest.patients}
    assert len(keys) == len(manifest.patients)
    # the same local PatientID at two centres, one without issuer
    ids = [p["patient_id"] for p in manifest.patients]
    assert len(set(ids)) < len(ids)
    assert any(p["issuer"] is None for p in manifest.patients)
    # one patient with a baseline and a follow-up on different dates
    by_patient: dict[tuple[str, str | None], list[dict[str, str]]] = {}
    for s in manifest.studies:
        by_patient.setdefault((s["patient_id"], s["issuer"]), []).append(dict(s))
    two = [v for v in by_patient.values() if len(v) >= 2]
    assert two
    roles = {s["role"] for s in two[0]}
    assert roles == {"baseline", "follow-up"}
    assert len({s["study_date"] for s in two[0]}) == 2
    for f in manifest.files:
        assert (f["patient_id"], f["issuer"]) in keys
        assert f["study_uid"] in {s["study_uid"] for s in manifest.studies}
    charsets = {f["charset"] for f in manifest.files}
    assert {"ISO_IR 100", "ISO_IR 192"} <= charsets


def test_transfer_syntaxes_and_kinds(sample: tuple[Path, Manifest]) -> None:
    _, manifest = sample
    syntaxes = {f["transfer_syntax_uid"] for f in manifest.files}
    assert {
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        JPEGBaseline8Bit,
        RLELossless,
        DeflatedExplicitVRLittleEndian,
    } <= syntaxes
    if not manifest.skipped:
        assert {JPEGLSLossless, JPEG2000Lossless} <= syntaxes
    labels = {f["label"] for f in manifest.files}
    assert {"ct", "mr", "us_rgb", "us_jpeg", "sc_rgb", "xa_multiframe", "sr"} <= labels
    assert any(f["number_of_frames"] >= 8 for f in manifest.files)


# -- planted identifiers, UIDs, dates --------------------------------------------------------


def test_every_planted_value_is_in_the_file_bytes(
    sample: tuple[Path, Manifest], file_bytes: dict[str, bytes]
) -> None:
    _, manifest = sample
    missing = []
    for entry in manifest.planted:
        assert entry["files"], entry
        if entry["kind"] != "element":
            continue
        needle = entry["value"].encode(entry["encoding"])
        for path in entry["files"]:
            if needle not in file_bytes[path]:
                missing.append((entry["value"], entry["where"], path))
    assert missing == []


def test_planted_values_cover_the_required_places(sample: tuple[Path, Manifest]) -> None:
    _, manifest = sample
    where = " ".join(p["where"] for p in manifest.planted)
    for needle in (
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "OtherPatientIDsSequence[0].PatientID",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "InstitutionName",
        "InstitutionAddress",
        "ReferringPhysicianName",
        "ReferringPhysicianAddress",
        "ReferringPhysicianTelephoneNumbers",
        "PerformingPhysicianName",
        "OperatorsName",
        "PhysiciansOfRecord",
        "RequestingPhysician",
        "NameOfPhysiciansReadingStudy",
        "AccessionNumber",
        "RequestAttributesSequence[0].AccessionNumber",
        "RequestAttributesSequence[0].RequestedProcedureID",
        "StudyDescription",
        "ImageComments",
        "AdditionalPatientHistory",
        "PatientComments",
        "ProcedureCodeSequence[0].CodeMeaning",
        "ContentSequence[1].TextValue",
        "OverlayDescription",
        "OverlayLabel",
        "CurveDescription",
        "[FAKEVENDOR 1.0]",
        "(0029,1020) [FAKEVENDOR 1.0][0].PatientName",
        "pixels: text burned into PixelData",
        "overlay: text drawn in OverlayData (6000,3000)",
        "OverlayData",
    ):
        assert needle in where, needle
    kinds = {p["kind"] for p in manifest.planted}
    assert kinds == {"element", "pixels", "overlay"}


def test_planted_values_are_distinctive(sample: tuple[Path, Manifest]) -> None:
    _, manifest = sample
    values = sorted(manifest.planted_values("element"))
    for a in values:
        assert len(a) >= 8, a
        for b in values:
            assert a == b or a not in b, (a, b)


def test_non_ascii_values_use_the_file_charset(
    sample: tuple[Path, Manifest], file_bytes: dict[str, bytes]
) -> None:
    _, manifest = sample
    charset_of = {f["path"]: f["charset"] for f in manifest.files}
    seen = set()
    for entry in manifest.planted:
        if entry["kind"] != "element" or entry["value"].isascii():
            continue
        for path in entry["files"]:
            charset = charset_of[path]
            assert charset in ("ISO_IR 100", "ISO_IR 192"), (entry["value"], path)
            codec = "latin-1" if charset == "ISO_IR 100" else "utf-8"
            assert entry["encoding"] == codec
            seen.add(charset)
            if codec == "latin-1":  # and not accidentally UTF-8 encoded
                assert entry["value"].encode("utf-8") not in file_bytes[path]
    assert seen == {"ISO_IR 100", "ISO_IR 192"}
    names = {p["name"] for p in manifest.patients}
    assert any(any("\u0370" <= ch <= "\u03ff" for ch in n) for n in names)  # Greek


def test_every_original_uid_is_in_the_files(
    sample: tuple[Path, Manifest], file_bytes: dict[str, bytes]
) -> None:
    _, manifest = sample
    everything = b"\0".join(file_bytes.values())
    assert [u for u in manifest.original_uids if u.encode() not in everything] == []
    for uid in manifest.original_uids:
        assert uid.startswith(UID_ROOT) and not uid.startswith("2.25.")
        assert len(uid) <= 64 and UID(uid).is_valid
    known = set(manifest.original_uids)
    for f in manifest.files:
        assert {f["study_uid"], f["series_uid"], f["sop_uid"]} <= known


def test_uids_and_dates_in_files_are_all_in_the_manifest(sample: tuple[Path, Manifest]) -> None:
    out, manifest = sample
    uids = set(manifest.original_uids)
    dates = set(manifest.original_dates)
    sops = {f["sop_uid"] for f in manifest.files}
    studies = {s["study_uid"] for s in manifest.studies}
    references = 0
    for f in manifest.files:
        ds = pydicom.dcmread(out / f["path"], stop_before_pixels=True)
        assert ds.file_meta.MediaStorageSOPInstanceUID == f["sop_uid"]
        for parent, elem in _walk(ds):
            if elem.VR == "UI" and elem.value and UID(str(elem.value)).name == str(elem.value):
                assert str(elem.value) in uids, (f["path"], elem.tag)
            if elem.VR in ("DA", "DT") and elem.value:
                assert str(elem.value) in dates, (f["path"], elem.tag)
            # references to instances resolve within the set (except the MPPS reference)
            if elem.keyword == "ReferencedSOPInstanceUID":
                references += 1
                if parent == "ReferencedStudySequence":
                    assert elem.value in studies
                elif parent != "ReferencedPerformedProcedureStepSequence":
                    assert elem.value in sops, (f["path"], parent)
            if elem.keyword == "UID" or (parent == "" and elem.keyword == "StudyInstanceUID"):
                assert elem.value in studies
    assert references > CT_SLICES


def test_every_original_date_is_in_the_files(
    sample: tuple[Path, Manifest], file_bytes: dict[str, bytes]
) -> None:
    _, manifest = sample
    everything = b"\0".join(file_bytes.values())
    assert [d for d in manifest.original_dates if d.encode() not in everything] == []
    assert {"19610314", "20250304", "20250916"} <= set(manifest.original_dates)
    assert any("+" in d for d in manifest.original_dates)  # DT with UTC offset


# -- reading back ---------------------------------------------------------------------------------


def test_files_read_back_with_declared_pixel_shape(sample: tuple[Path, Manifest]) -> None:
    out, manifest = sample
    decoded = set()
    for f in manifest.files:
        ds = pydicom.dcmread(out / f["path"])
        assert ds.preamble == b"\0" * 128
        assert ds.file_meta.TransferSyntaxUID == f["transfer_syntax_uid"]
        assert ds.SOPInstanceUID == f["sop_uid"]
        assert ds.SOPClassUID == f["sop_class_uid"]
        assert ds.StudyInstanceUID == f["study_uid"]
        assert ds.SeriesInstanceUID == f["series_uid"]
        assert ds.Modality == f["modality"]
        assert ds.PatientID == f["patient_id"]
        assert ds.get("IssuerOfPatientID") == f["issuer"]
        assert ds.get("SpecificCharacterSet") == f["charset"]
        if f["number_of_frames"] == 0:
            assert "PixelData" not in ds
            continue
        if not _decoder_available(f["transfer_syntax_uid"]):
            continue
        shape: tuple[int, ...] = (f["rows"], f["columns"])  # type: ignore[assignment]
        if f["samples_per_pixel"] == 3:
            shape += (3,)
        if f["number_of_frames"] > 1:
            shape = (f["number_of_frames"], *shape)
        arr = ds.pixel_array
        assert arr.shape == shape, f["path"]
        assert arr.dtype.itemsize * 8 == f["bits_allocated"]
        assert arr.std() > 0
        decoded.add(f["transfer_syntax_uid"])
    assert {ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless} <= decoded


def test_ct_series_geometry(sample: tuple[Path, Manifest]) -> None:
    out, manifest = sample
    ct = [f for f in manifest.files if f["label"] == "ct"]
    assert len({f["series_uid"] for f in ct}) == 1
    z = []
    for f in ct[:5]:
        ds = pydicom.dcmread(out / f["path"])
        assert ds.PixelRepresentation == 1 and ds.BitsAllocated == 16
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert ds.RescaleIntercept == -1024 and ds.RescaleSlope == 1
        assert len(ds.WindowCenter) == 2
        assert float(ds.SliceLocation) == float(ds.ImagePositionPatient[2])
        assert ds.pixel_array.min() < 0  # signed (padding outside the scan circle)
        z.append(float(ds.ImagePositionPatient[2]))
    steps = np.diff(z)
    assert np.allclose(steps, -float(ds.SliceThickness))


def test_burned_in_text_boxes(sample: tuple[Path, Manifest]) -> None:
    out, manifest = sample
    by_label: dict[str, FileEntry] = {}
    for f in manifest.files:
        by_label.setdefault(f["label"], f)  # first file of each kind
    assert by_label["us_rgb"]["burned_in_annotation"] == "YES"
    assert by_label["sc_rgb"]["burned_in_annotation"] is None
    assert by_label["sc_rgb"]["burned_in_text"]
    ds = pydicom.dcmread(out / by_label["us_rgb"]["path"])
    assert ds.SequenceOfUltrasoundRegions
    for f in manifest.files:
        if not f["burned_in_text"] or not _decoder_available(f["transfer_syntax_uid"]):
            continue
        arr = pydicom.dcmread(out / f["path"]).pixel_array
        if f["number_of_frames"] > 1:
            arr = arr[0]
        for item in f["burned_in_text"]:
            x0, y0, x1, y1 = item["box"]
            assert 0 <= x0 < x1 <= f["columns"] and 0 <= y0 < y1 <= f["rows"]
            region = arr[y0:y1, x0:x1]
            assert region.max() >= 200, item  # bright text pixels inside the box
    mr = by_label["mr"]
    assert mr["overlay_text"]
    ov = pydicom.dcmread(out / mr["path"]).overlay_array(0x6000)
    for item in mr["overlay_text"]:
        x0, y0, x1, y1 = item["box"]
        assert ov[y0:y1, x0:x1].any()


@pytest.mark.skipif(shutil.which("dcmdump") is None, reason="DCMTK not installed")
def test_dcmdump_parses_one_file_of_each_kind(sample: tuple[Path, Manifest]) -> None:
    out, manifest = sample
    seen: dict[str, str] = {}
    for f in manifest.files:
        seen.setdefault(f["label"], f["path"])
    for path in seen.values():
        proc = subprocess.run(["dcmdump", "-q", str(out / path)], capture_output=True, check=False)
        assert proc.returncode == 0 and proc.stderr == b"", (path, proc.stderr)


def test_readme_lists_every_planted_value(sample: tuple[Path, Manifest]) -> None:
    _, manifest = sample
    readme = (ROOT / "sample_data" / "README.md").read_text(encoding="utf-8")
    assert [v for v in manifest.planted_values(kind=None) if f"`{v}`" not in readme] == []


# -- write_ct_series ------------------------------------------------------------------------------


def test_write_ct_series(tmp_path: Path) -> None:
    paths = write_ct_series(tmp_path / "a", n=6, size=64, seed=7)
    again = write_ct_series(tmp_path / "b", n=6, size=64, seed=7)
    other = write_ct_series(tmp_path / "c", n=2, size=64, seed=8)
    assert [p.name for p in paths] == [f"CT{i:05d}.dcm" for i in range(1, 7)]
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    datasets = [pydicom.dcmread(p) for p in paths]
    assert len({ds.SOPInstanceUID for ds in datasets}) == 6
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert pydicom.dcmread(other[0]).StudyInstanceUID != datasets[0].StudyInstanceUID
    for ds in datasets:
        assert ds.pixel_array.shape == (64, 64) and ds.pixel_array.dtype == np.int16
        assert ds.PatientID == "BENCH-0001" and ds.IssuerOfPatientID == "HOSP-A"
        assert ds.StudyInstanceUID.startswith(UID_ROOT)
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert np.allclose(np.diff(z), -float(datasets[0].SliceThickness))
    raw = paths[0].read_bytes()
    assert raw[128:132] == b"DICM"
    for value in BENCH_PLANTED.values():
        assert value.encode() in raw
    assert not any(np.array_equal(datasets[0].pixel_array, ds.pixel_array) for ds in datasets[1:])


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_write_ct_series_fast_path_matches_pydicom_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ts: str
) -> None:
    """The pre-encoding slice writer gives the same bytes as ``Dataset.save_as``."""
    fast = write_ct_series(tmp_path / "fast", n=3, size=32, transfer_syntax=ts, issuer=None)
    gen = sys.modules["sample_data.generate"]
    original = gen._write_ct
    monkeypatch.setattr(gen, "_write_ct", lambda *a, **k: original(*a, **{**k, "fast": False}))
    slow = write_ct_series(tmp_path / "slow", n=3, size=32, transfer_syntax=ts, issuer=None)
    assert [p.read_bytes() for p in fast] == [p.read_bytes() for p in slow]


@pytest.mark.parametrize(
    "ts", [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless]
)
def test_write_ct_series_transfer_syntaxes(tmp_path: Path, ts: str) -> None:
    paths = write_ct_series(tmp_path, n=2, size=32, transfer_syntax=ts, patient_id="BX-9")
    ds = pydicom.dcmread(paths[1])
    assert ds.file_meta.TransferSyntaxUID == ts
    assert ds.pixel_array.shape == (32, 32)
    assert b"BX-9" in searchable_bytes(paths[1])


def test_write_ct_series_rejects_big_endian(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_ct_series(tmp_path, n=1, size=32, transfer_syntax="1.2.840.10008.1.2.2")
