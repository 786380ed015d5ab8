"""``dicom-service audit verify`` and ``audit export`` through the CLI's ``main``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from dicom_service.cli import main
from tests.audit.conftest import CENTRE, ISSUER, PATIENT, ingest, open_services, write_series


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory with a few audited changes made through the CLI and ingest."""
    directory = tmp_path / "data"
    assert main(["centres", "add", CENTRE, "--data-dir", str(directory)]) == 0
    assert main(["enrol", "--centre", CENTRE, "--patient-id", PATIENT, "--issuer", ISSUER,
                 "--data-dir", str(directory)]) == 0
    services = open_services(directory)
    try:
        ingest(services, write_series(tmp_path / "ct", 2))
    finally:
        services.close()
    return directory


def _sql(data_dir: Path, *statements: str) -> None:
    conn = sqlite3.connect(data_dir / "index.sqlite3")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_verify_passes_on_an_untouched_log(data_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert out[0].startswith("audit chain intact: 4 rows (4 chained, 0 before the chain); "
                             "head 4 ")


def test_verify_fails_naming_an_edited_row(data_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _sql(data_dir, "DROP TRIGGER audit_events_no_update",
         "UPDATE audit_events SET result = 'refused' WHERE id = 3")
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", str(data_dir)]) == 1
    assert capsys.readouterr().out == \
        "audit chain broken at row 3: content does not match its hash (edited)\n"


def test_verify_fails_naming_a_deleted_rows_position(
        data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(data_dir, "DROP TRIGGER audit_events_no_delete", "DELETE FROM audit_events WHERE id = 2",
         "DROP TRIGGER audit_events_no_update",
         "UPDATE audit_events SET actor = 'someone' WHERE id = 4")
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", str(data_dir)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "audit chain broken at row 3: row 2 is missing before it (deleted)",
        "  also row 4: content does not match its hash (edited)"]


def test_export_prints_every_field_as_json_lines(
        data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["audit", "export", "--data-dir", str(data_dir)]) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["action"]) for r in exported] == [
        (1, "centre.add"), (2, "enrolment.create"), (3, "instance.store"),
        (4, "instance.store")]
    assert all(set(r) == {"id", "at", "actor", "action", "object_type", "object_id", "result",
                          "detail", "row_hash"} and len(r["row_hash"]) == 64 for r in exported)
    assert PATIENT not in json.dumps(exported)

    since, until = exported[1]["at"], exported[3]["at"]
    assert main(["audit", "export", "--since", since, "--until", until,
                 "--data-dir", str(data_dir)]) == 0
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == [2, 3]
    assert main(["audit", "export", "--since", "2100-01-01", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out == ""
    with pytest.raises(SystemExit) as exc:
        main(["audit", "export", "--since", "last week", "--data-dir", str(data_dir)])
    assert exc.value.code == 2
    assert "expected an ISO 8601 date" in capsys.readouterr().err
