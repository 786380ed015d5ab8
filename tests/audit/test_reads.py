"""The read audit: notes coalesce in memory and reach the chain in batches."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from dicom_service.app import Services
from dicom_service.care import audit
from dicom_service.care.audit import ReadAudit
from tests.audit.conftest import open_services, rows, verify

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=10)
        return self.now


def test_identical_reads_in_one_window_become_one_row(services: Services) -> None:
    reads = ReadAudit(services.db, interval=3600, clock=Clock())
    try:
        for _ in range(3):
            reads.note("user:1", "instance.read", "instance", "2.25.7")
        reads.note("user:1", "instance.read", "instance", "2.25.7", "refused")
        reads.note("user:2", "instance.read", "instance", "2.25.7")
        reads.note("user:1", "frame.read", "instance", "2.25.7")
        reads.note("user:1", "instance.read", "instance", "2.25.8")
        assert reads.pending == 5
        assert reads.flush() == 5
        assert reads.pending == 0 and reads.flush() == 0
        reads.note("user:1", "instance.read", "instance", "2.25.7")  # a new window
        assert reads.flush() == 1
    finally:
        reads.close()
    log = rows(services)
    assert [(r["actor"], r["action"], r["object_id"], r["result"], r["at"], r["detail"])
            for r in log] == [
        ("user:1", "instance.read", "2.25.7", "ok", "2026-03-01T12:00:00.010000Z",
         "count=3 last=2026-03-01T12:00:00.030000Z"),
        ("user:1", "instance.read", "2.25.7", "refused", "2026-03-01T12:00:00.040000Z", None),
        ("user:2", "instance.read", "2.25.7", "ok", "2026-03-01T12:00:00.050000Z", None),
        ("user:1", "frame.read", "2.25.7", "ok", "2026-03-01T12:00:00.060000Z", None),
        ("user:1", "instance.read", "2.25.8", "ok", "2026-03-01T12:00:00.070000Z", None),
        ("user:1", "instance.read", "2.25.7", "ok", "2026-03-01T12:00:00.080000Z", None)]
    assert verify(services).ok


def test_the_background_thread_writes_within_the_interval(services: Services) -> None:
    services.reads.note("user:1", "study.read", "study", "2.25.9")
    deadline = time.monotonic() + 10
    while not rows(services) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["object_id"] for r in rows(services)] == ["2.25.9"]
    assert services.reads.pending == 0


def test_close_writes_what_is_left_and_later_notes_at_once(services: Services) -> None:
    reads = ReadAudit(services.db, interval=3600)
    reads.note("user:1", "study.read", "study", "2.25.10")
    assert rows(services) == []
    reads.close()
    assert [r["object_id"] for r in rows(services)] == ["2.25.10"]
    reads.note("user:1", "study.read", "study", "2.25.11")  # nobody would write it later
    assert [r["object_id"] for r in rows(services)] == ["2.25.10", "2.25.11"]
    reads.close()  # idempotent
    assert verify(services).ok


def test_too_many_distinct_notes_are_written_by_the_noting_thread(services: Services) -> None:
    reads = ReadAudit(services.db, interval=3600, max_pending=50)
    try:
        for n in range(120):
            reads.note("user:1", "instance.read", "instance", f"2.25.{n}")
        assert reads.pending == 20
        assert len(rows(services)) == 100
    finally:
        reads.close()
    assert len(rows(services)) == 120 and verify(services).ok


def test_a_failed_write_keeps_the_notes(services: Services) -> None:
    reads = ReadAudit(services.db, interval=3600, clock=Clock())
    try:
        reads.note("user:1", "study.read", "study", "2.25.12")
        db_file = services.settings.data_dir / "index.sqlite3"
        conn = sqlite3.connect(db_file)
        conn.execute("ALTER TABLE audit_head RENAME TO audit_head_away")
        conn.commit()
        services.db.dispose()  # no cached statement of the old schema
        with pytest.raises(OperationalError):
            reads.flush()
        reads.note("user:1", "study.read", "study", "2.25.12")
        assert reads.pending == 1
        conn.execute("ALTER TABLE audit_head_away RENAME TO audit_head")
        conn.commit()
        conn.close()
        assert reads.flush() == 1
    finally:
        reads.close()
    [row] = rows(services)
    assert (row["at"], row["detail"]) == ("2026-03-01T12:00:00.010000Z",
                                          "count=2 last=2026-03-01T12:00:00.020000Z")
    assert verify(services).ok


def test_services_close_writes_the_buffered_reads(tmp_path: Path) -> None:
    services = open_services(tmp_path / "data")
    services.reads.note("user:1", "study.read", "study", "2.25.13")
    services.close()
    again = open_services(tmp_path / "data")
    try:
        assert [r["object_id"] for r in rows(again)] == ["2.25.13"]
    finally:
        again.close()


def test_a_process_that_exits_without_closing_still_writes_its_reads(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    code = ("from pathlib import Path\n"
            "from tests.audit.conftest import open_services\n"
            f"services = open_services(Path({str(data_dir)!r}))\n"
            "services.reads.note('user:1', 'study.read', 'study', '2.25.14')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    services = open_services(data_dir)
    try:
        assert [r["object_id"] for r in rows(services)] == ["2.25.14"]
        assert verify(services).ok
    finally:
        services.close()


def test_export_windows_compare_times_in_utc(services: Services) -> None:
    reads = ReadAudit(services.db, interval=3600, clock=Clock())
    try:
        for n in range(5):  # at 12:00:00.010 ... 12:00:00.050 UTC
            reads.note("user:1", "study.read", "study", f"2.25.{n}")
        reads.flush()
    finally:
        reads.close()
    plus_one = timezone(timedelta(hours=1))
    since = datetime(2026, 3, 1, 13, 0, 0, 20_000, tzinfo=plus_one)  # 12:00:00.020 UTC
    until = datetime(2026, 3, 1, 12, 0, 0, 40_000)  # naive: UTC
    with services.db.engine.connect() as conn:
        window = [r["object_id"] for r in audit.export(conn, since=since, until=until)]
        assert window == ["2.25.1", "2.25.2"]
        assert [r["id"] for r in audit.export(conn, object_id="2.25.4")] == [5]
