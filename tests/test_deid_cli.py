"""``dicom-service deid IN_DIR OUT_DIR``: offline de-identification of a folder
with the service's engine (issue 3)."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from sample_data.generate import Manifest


def _deid(in_dir: Path, out_dir: Path, *extra: str, profile: str = "basic"
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicom_service.cli", "deid", str(in_dir), str(out_dir),
         "--profile", profile, *extra],
        capture_output=True, text=True, timeout=300, check=False)


def _outputs(out_dir: Path) -> list[Path]:
    return sorted(p for p in out_dir.rglob("*.dcm"))


def test_sample_set_offline(sample_set: tuple[Path, Manifest], tmp_path: Path) -> None:
    directory, manifest = sample_set
    out, key = tmp_path / "out", tmp_path / "offline.key"
    result = _deid(directory, out, "--key-file", str(key))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) >= 32

    outputs = _outputs(out)
    assert len(outputs) == len(manifest.files)
    pseudonyms: dict[tuple[str, str | None], set[str]] = {}
    by_sop = {f["sop_uid"]: f for f in manifest.files}
    for path in outputs:
        ds = pydicom.dcmread(path)
        study, series = path.parent.parent.name, path.parent.name
        assert (study, series, path.stem) == (
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        assert str(ds.SOPInstanceUID).startswith("2.25.")
        assert ds.PatientIdentityRemoved == "YES"
        assert "profile basic" in str(ds.DeidentificationMethod)
        assert str(ds.PatientName).startswith("OFF-") and ds.PatientName == ds.PatientID
        assert str(ds.SOPInstanceUID) not in by_sop
    # one pseudonym per patient (issuer + PatientID: P3 and P4 share the ID)
    for f in manifest.files:
        pseudonyms.setdefault((f["patient_id"], f["issuer"]), set())
    names = {str(pydicom.dcmread(p, stop_before_pixels=True).PatientName) for p in outputs}
    assert len(names) == len(pseudonyms) == len(manifest.patients)

    report_text = (out / "report.json").read_text(encoding="utf-8")
    report = json.loads(report_text)
    assert report["summary"]["written"] == len(manifest.files)
    assert report["summary"]["refused"] == 0
    assert report["summary"]["skipped"] == 1  # manifest.json
    for value in manifest.planted_values(kind=None):
        assert value not in report_text
    for uid in manifest.original_uids:
        assert uid not in report_text
    for f in manifest.files:
        assert f["path"] not in report_text and Path(f["path"]).name not in report_text
    assert "P1/" not in report_text

    # the same key gives the same output; no leftovers from the atomic writes
    again = _deid(directory, tmp_path / "again", "--key-file", str(key))
    assert again.returncode == 0, again.stderr
    assert [p.relative_to(tmp_path / "again") for p in _outputs(tmp_path / "again")] == [
        p.relative_to(out) for p in outputs]
    assert not [p for p in out.rglob("*") if p.name.startswith(".deid-")]


def test_refused_input_gives_a_non_zero_exit_and_the_rest_is_written(
        sample_set: tuple[Path, Manifest], tmp_path: Path) -> None:
    directory, manifest = sample_set
    src = tmp_path / "in" / "Doe^Jane"  # paths at hospitals may hold names
    src.mkdir(parents=True)
    good = [f for f in manifest.files if f["label"] in ("mr", "us_rgb", "dx_j2k")]
    for i, f in enumerate(good):
        shutil.copy(directory / f["path"], src / f"img{i}.dcm")
    (src / "broken.dcm").write_bytes(b"\x00not dicom at all\xff" * 50)
    truncated = (directory / good[0]["path"]).read_bytes()[:400]
    (src / "truncated.dcm").write_bytes(truncated)
    (src / "notes.txt").write_text("scanned on Tuesday\n")
    key = tmp_path / "k"
    result = _deid(tmp_path / "in", tmp_path / "out", "--key-file", str(key))
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(_outputs(tmp_path / "out")) == len(good)
    for path in _outputs(tmp_path / "out"):
        pydicom.dcmread(path)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    statuses = sorted(f["status"] for f in report["files"])
    assert statuses == sorted(["written"] * len(good) + ["refused", "refused", "skipped"])
    assert all(f["reason"] for f in report["files"] if f["status"] != "written")
    text = json.dumps(report)
    assert "Doe" not in text and "broken" not in text and "notes" not in text
    assert "Doe" not in result.stdout + result.stderr


def test_key_file_must_be_private_and_long_enough(tmp_path: Path,
                                                  sample_set: tuple[Path, Manifest]) -> None:
    directory, _ = sample_set
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 8)
    short.chmod(0o600)
    result = _deid(directory, tmp_path / "o1", "--key-file", str(short))
    assert result.returncode == 2 and "at least 32 bytes" in result.stderr
    public = tmp_path / "public.key"
    public.write_bytes(b"x" * 40)
    public.chmod(0o644)
    result = _deid(directory, tmp_path / "o2", "--key-file", str(public))
    assert result.returncode == 2 and "chmod 600" in result.stderr


@pytest.mark.parametrize("profile", ["nosuch"])
def test_unknown_profile(tmp_path: Path, profile: str) -> None:
    (tmp_path / "in").mkdir()
    result = _deid(tmp_path / "in", tmp_path / "out", profile=profile)
    assert result.returncode == 2 and "no profile named" in result.stderr


def test_profiles_validate_command(tmp_path: Path) -> None:
    recipe = tmp_path / "site.dicom"
    recipe.write_text("FORMAT dicom\n%header\nREMOVE PatientName\nSHRED PatientID\n")
    result = subprocess.run([sys.executable, "-m", "dicom_service.cli", "profiles", "validate",
                             str(recipe)], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "site.dicom:4: " in result.stdout
