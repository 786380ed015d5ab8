"""The ratio arithmetic of ``benchmarks/ingest.py`` and ``benchmarks/ingest_ab.py``,
and which build of the service they run (their runs take minutes and are not
part of the suite; their figures are in benchmarks/README.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks import ingest, ingest_ab


def test_paired_ratios_divide_within_each_round_and_take_the_median() -> None:
    ours = {"median_ips": 324.0, "runs_ips": [324.0, 347.4, 297.7]}
    orthanc = {"median_ips": 257.7, "runs_ips": [272.6, 257.7, 243.2]}
    paired = ingest.paired_ratio(ours, orthanc)
    assert paired == {"rounds": [1.189, 1.348, 1.224], "median": 1.224}
    # the ratio of the medians mixes rounds: a different figure
    assert ingest.ratio(ours, orthanc) == 1.257


def test_no_paired_ratio_without_every_round_of_both() -> None:
    assert ingest.paired_ratio({"runs_ips": [300.0, 310.0]}, {"runs_ips": [250.0]}) is None
    assert ingest.paired_ratio({"runs_ips": [300.0]}, {"error": "PeerError"}) is None
    assert ingest.paired_ratio({}, {"runs_ips": [250.0]}) is None
    assert ingest.paired_ratio({"runs_ips": [300.0]}, {"runs_ips": [0.0]}) is None


def test_the_table_shows_the_round_by_round_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    ours = {"median_ips": 324.0, "best_ips": 347.4, "runs_ips": [324.0, 347.4, 297.7]}
    orthanc = {"median_ips": 257.7, "best_ips": 272.6, "runs_ips": [272.6, 257.7, 243.2]}
    ingest.print_table({
        "repeat": 3, "parallel": 4,
        "series": {"ct512": {"instances": 300, "rows_cols": 512}},
        "results": {"ct512": {"single": {"ours": ours, "orthanc": orthanc}}},
        "ratios": {"ct512": {"single": {"ours/orthanc": ingest.ratio(ours, orthanc)}}},
        "paired_ratios": {"ct512": {"single": {
            "ours/orthanc": ingest.paired_ratio(ours, orthanc)}}},
    })
    line = capsys.readouterr().out.splitlines()[1]
    assert "ours/orthanc=1.26" in line
    assert "ours/orthanc round by round 1.22 [1.19-1.35]" in line


def test_the_ab_script_alternates_which_build_goes_first() -> None:
    firsts = [ingest_ab.order(r)[0] for r in range(1, 7)]
    assert firsts == ["a", "b", "a", "b", "a", "b"]
    assert all(sorted(ingest_ab.order(r)) == ["a", "b"] for r in range(7))


def test_the_ab_script_divides_within_each_round() -> None:
    result = ingest_ab.summary({"a": [330.0, 300.0, 360.0], "b": [300.0, 330.0, 300.0]})
    assert result["a"] == {"median_ips": 330.0, "runs_ips": [330.0, 300.0, 360.0]}
    assert result["b"]["median_ips"] == 300.0
    assert result["a/b"] == {"rounds": [1.1, 0.909, 1.2], "median": 1.1}
    assert result["a_faster"] == {"rounds": 2, "of": 3, "sign_test_p": 1.0}


def test_the_ab_script_says_how_likely_its_split_of_rounds_is_by_chance() -> None:
    # 15 of 20: 2 * (1 + 20 + 190 + 1140 + 4845 + 15504) / 2**20
    assert ingest_ab.sign_test(15, 5) == pytest.approx(0.0414, abs=1e-4)
    assert ingest_ab.sign_test(3, 17) == pytest.approx(2 * 1351 / 2 ** 20)
    assert ingest_ab.sign_test(10, 10) == 1.0
    assert ingest_ab.sign_test(0, 0) == 1.0
    result = ingest_ab.summary({"a": [310.0, 300.0, 300.0, 290.0],
                                "b": [300.0, 300.0, 310.0, 280.0]})
    assert result["a_faster"] == {"rounds": 2, "of": 4, "sign_test_p": 1.0}  # the tie left out
    result = ingest_ab.summary({"a": [330.0] * 8, "b": [300.0] * 8})
    assert result["a_faster"] == {"rounds": 8, "of": 8, "sign_test_p": round(2 / 2 ** 8, 4)}


def test_the_ab_script_wants_two_commands_and_a_round() -> None:
    args = ingest_ab.parse_args(["--a", "x serve", "--b", "y serve"])
    assert (args.rounds, args.series, args.parallel) == (10, "ct512", 1)
    with pytest.raises(SystemExit):
        ingest_ab.parse_args(["--a", "x"])
    with pytest.raises(SystemExit):
        ingest_ab.parse_args(["--a", "x", "--b", "y", "--rounds", "0"])


REPO = Path(__file__).resolve().parents[1]


def _fake_build(root: Path, label: str) -> list[str]:
    """A command that runs a stand-in package ``dicom_service`` under ``root``,
    the way a checkout is compared: ``env PYTHONPATH=ROOT python -m ...``."""
    package = root / "dicom_service"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text(f"print('dicom-service {label} from', __file__)\n")
    return ["env", f"PYTHONPATH={root}", sys.executable, "-m", "dicom_service.cli"]


def test_a_build_is_asked_from_a_directory_of_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # From the checkout, ``python -m`` would load the checkout's package first,
    # whatever PYTHONPATH names: the build under test would silently be main.
    monkeypatch.chdir(REPO)
    build, why = ingest.service_build(_fake_build(tmp_path / "other", "9.9"))
    assert why is None
    assert build == f"dicom-service 9.9 from {tmp_path / 'other' / 'dicom_service' / 'cli.py'}"


def test_the_service_tells_its_version_and_where_it_is_loaded_from() -> None:
    build, why = ingest.service_build([sys.executable, "-m", "dicom_service.cli"])
    assert why is None
    assert build == f"dicom-service 0.1.0 from {REPO / 'dicom_service'}"


def test_the_ab_script_refuses_to_compare_a_build_with_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    a = _fake_build(tmp_path / "a", "1")
    b = _fake_build(tmp_path / "b", "1")
    found = ingest_ab.builds({"a": a, "b": b}, same_code=False)
    assert found["a"].endswith(str(tmp_path / "a" / "dicom_service" / "cli.py"))
    assert found["b"].endswith(str(tmp_path / "b" / "dicom_service" / "cli.py"))
    with pytest.raises(SystemExit, match="both run"):
        ingest_ab.builds({"a": a, "b": a}, same_code=False)
    assert ingest_ab.builds({"a": a, "b": a}, same_code=True) == {"a": found["a"], "b": found["a"]}
    with pytest.raises(SystemExit, match=r"build B: .*exited 1"):
        ingest_ab.builds({"a": a, "b": ["false"]}, same_code=False)
