"""The hash chain: intact after the product's own writes, and every edit or
deletion made directly in the database is found and named."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy.exc import IntegrityError

from dicom_service.app import Services
from dicom_service.care import audit
from dicom_service.care.tokens import TokenService
from dicom_service.db.models import AuditEvent, utcnow
from dicom_service.db.session import MIGRATIONS, Database
from dicom_service.errors import IngestRefused, Refusal
from tests.audit.conftest import (
    CENTRE,
    ISSUER,
    PATIENT,
    ingest,
    open_services,
    rows,
    verify,
    write_series,
)


def _mixed_writes(services: Services, tmp_path: Path) -> None:
    """Service-layer calls that audit, ingest, and reads: as the product writes."""
    services.care.add_centre(CENTRE, actor="cli")
    pseudonym = services.care.enrol(CENTRE, PATIENT, ISSUER, actor="cli")
    tokens = TokenService(services.db)
    token_id, _ = tokens.issue(pseudonym, actor="cli", label="viewer")
    files = write_series(tmp_path / "ct", 3)
    ingest(services, files)
    ingest(services, files[:1])  # a re-send
    for _ in range(4):
        services.reads.note("user:7", "study.read", "study", "2.25.42")
    services.reads.note("user:8", "study.read", "study", "2.25.42", "refused")
    assert services.reads.flush() == 2
    tokens.revoke(token_id, actor="cli")


def _db_file(services: Services) -> Path:
    return services.settings.data_dir / "index.sqlite3"


def _sql(services: Services, *statements: str) -> None:
    """Statements run with plain sqlite3, as someone with the file would."""
    conn = sqlite3.connect(_db_file(services))
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


_DROP_GUARDS = ("DROP TRIGGER audit_events_no_update", "DROP TRIGGER audit_events_no_delete",
                "DROP TRIGGER audit_head_forward")


def test_the_products_writes_form_an_intact_chain(services: Services, tmp_path: Path) -> None:
    _mixed_writes(services, tmp_path)
    result = verify(services)
    assert result.ok, result.problems
    log = rows(services)
    assert [r["action"] for r in log] == [
        "centre.add", "enrolment.create", "token.issue", "instance.store", "instance.store",
        "instance.store", "instance.resend", "study.read", "study.read", "token.revoke"]
    assert [r["id"] for r in log] == list(range(1, len(log) + 1))
    assert all(re.fullmatch(r"[0-9a-f]{64}", str(r["row_hash"])) for r in log)
    assert result.rows == len(log) and result.unchained == 0
    assert (result.head_id, result.head_hash) == (log[-1]["id"], log[-1]["row_hash"])
    assert result.summary().startswith(f"audit chain intact: {len(log)} rows")
    reads = [r for r in log if r["action"] == "study.read"]
    assert [(r["actor"], r["result"]) for r in reads] == [("user:7", "ok"), ("user:8", "refused")]
    assert str(reads[0]["detail"]).startswith("count=4 last=") and reads[1]["detail"] is None
    stored = [r for r in log if r["object_type"] == "instance"]
    assert all(str(r["object_id"]).startswith("2.25.") for r in stored)
    # nothing identifying: not the patient ID, not the issuer, not an original UID
    text = repr(log)
    assert PATIENT not in text and ISSUER not in text


def test_the_database_refuses_edits_deletions_and_unchained_rows(
        services: Services, tmp_path: Path) -> None:
    _mixed_writes(services, tmp_path)
    for statement, rule in (
            ("UPDATE audit_events SET actor = 'x' WHERE id = 2", "append-only"),
            ("DELETE FROM audit_events WHERE id = 2", "append-only"),
            ("INSERT INTO audit_events (at, actor, action, object_type, object_id, result) "
             "VALUES ('2026-01-01 00:00:00', 'x', 'y', 'z', '1', 'ok')", r"care\.audit"),
            ("UPDATE audit_head SET last_id = 1", "only moves forward"),
            ("DELETE FROM audit_head", "never deleted")):
        with pytest.raises(sqlite3.DatabaseError, match=rule):
            _sql(services, statement)
    with pytest.raises(IntegrityError, match=r"care\.audit"), services.db.session() as s:
        s.add(AuditEvent(at=utcnow(), actor="x", action="y", object_type="z", object_id="1",
                         result="ok"))
    assert verify(services).ok


@pytest.mark.parametrize("column, value", [
    ("actor", "'user:999'"),
    ("object_id", "'2.25.1'"),
    ("result", "'refused'"),
    ("detail", "'count=1'"),
    ("at", "'2026-01-01 00:00:00.000000'"),
    ("at", "'not a time'"),
    ("actor", "X'00'"),  # SQLite keeps a blob in a text column
    ("row_hash", "'" + "0" * 64 + "'"),
])
def test_an_edited_row_is_named(services: Services, tmp_path: Path, column: str,
                                value: str) -> None:
    _mixed_writes(services, tmp_path)
    _sql(services, *_DROP_GUARDS, f"UPDATE audit_events SET {column} = {value} WHERE id = 4")
    result = verify(services)
    assert not result.ok
    assert result.problems[0] == audit.Problem(4, "content does not match its hash (edited)")
    assert result.summary() == "audit chain broken at row 4: content does not match its hash " \
                               "(edited)"


@pytest.mark.parametrize("deleted, named, message", [
    (1, 2, "row 1 is missing before it (deleted)"),
    (5, 6, "row 5 is missing before it (deleted)"),
    (10, 10, "row 10 is missing at the end (deleted)"),
])
def test_a_deleted_row_is_named(services: Services, tmp_path: Path, deleted: int, named: int,
                                message: str) -> None:
    _mixed_writes(services, tmp_path)
    assert verify(services).rows == 10
    _sql(services, *_DROP_GUARDS, f"DELETE FROM audit_events WHERE id = {deleted}")
    result = verify(services)
    assert [(p.row_id, p.what) for p in result.problems] == [(named, message)]


def test_rows_cut_off_the_end_with_a_rewound_head_are_found(
        services: Services, tmp_path: Path) -> None:
    _mixed_writes(services, tmp_path)
    log = rows(services)
    _sql(services, *_DROP_GUARDS, "DELETE FROM audit_events WHERE id >= 9",
         f"UPDATE audit_head SET last_id = 8, last_hash = '{log[7]['row_hash']}'")
    result = verify(services)
    assert [(p.row_id, p.what) for p in result.problems] == [
        (8, "the chain's head was edited (MAC mismatch)")]


def test_a_row_renumbered_over_a_deleted_one_is_found(
        services: Services, tmp_path: Path) -> None:
    _mixed_writes(services, tmp_path)
    _sql(services, *_DROP_GUARDS, "DELETE FROM audit_events WHERE id = 10",
         "UPDATE audit_events SET id = 10 WHERE id = 9")
    result = verify(services)
    assert result.problems[0] == audit.Problem(10, "row 9 is missing before it (deleted)")


def test_the_chain_cannot_be_checked_or_recomputed_without_the_secret(
        services: Services, tmp_path: Path) -> None:
    _mixed_writes(services, tmp_path)
    with services.db.engine.connect() as conn:
        result = audit.verify(conn, audit.AuditChain(audit.chain_key(b"x" * 32)))
    assert result.problems[0] == audit.Problem(1, "content does not match its hash (edited)")
    other = Database(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    try:
        with pytest.raises(RuntimeError, match="no key for this database"):
            audit.chain_for(other)
    finally:
        other.dispose()


def test_rows_from_before_the_chain_are_reported_not_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db = Database(f"sqlite:///{data_dir / 'index.sqlite3'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as conn:  # a database as it was before the chain
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
        for n in range(2):
            conn.execute(AuditEvent.__table__.insert().values(  # type: ignore[attr-defined]
                at=utcnow(), actor="cli", action="centre.add", object_type="centre",
                object_id=f"old {n}", result="ok"))
    db.dispose()
    services = open_services(data_dir)  # migrates to the chain
    try:
        services.care.add_centre(CENTRE, actor="cli")
        result = verify(services)
        assert result.ok, result.problems
        assert (result.rows, result.unchained, result.head_id) == (3, 2, 3)
        assert "(1 chained, 2 before the chain)" in result.summary()
        # an unchained row after chained ones is not from before the chain
        _sql(services, "DROP TRIGGER audit_events_chained_insert",
             "INSERT INTO audit_events (id, at, actor, action, object_type, object_id, result) "
             "VALUES (4, '2026-01-01 00:00:00.000000', 'x', 'y', 'z', '1', 'ok')")
        assert [(p.row_id, p.what) for p in verify(services).problems] == [
            (4, "no hash after chained rows (inserted or edited outside the chain)"),
            (4, "rows beyond the chain's head (inserted outside the chain)")]
    finally:
        services.close()


def test_an_instance_whose_audit_row_cannot_be_written_is_refused(
        services: Services, tmp_path: Path) -> None:
    services.care.add_centre(CENTRE, actor="cli")
    services.care.enrol(CENTRE, PATIENT, ISSUER, actor="cli")
    _sql(services, "ALTER TABLE audit_head RENAME TO audit_head_away")
    services.db.dispose()  # no cached statement of the old schema
    with pytest.raises(IngestRefused) as refused:
        ingest(services, write_series(tmp_path / "ct", 1))
    assert refused.value.reason is Refusal.OUT_OF_RESOURCES
    _sql(services, "ALTER TABLE audit_head_away RENAME TO audit_head")
    with services.db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM instances").scalar() == 0
    assert not list((services.settings.data_dir / "store").rglob("*.dcm"))
    assert verify(services).ok and len(rows(services)) == 2


def test_the_core_statements_for_other_databases_chain_the_same(
        services: Services, tmp_path: Path) -> None:
    # PostgreSQL appends through SQLAlchemy Core; SQLite through its cursor.
    # Both write rows that one chain check accepts, in any mix.
    _mixed_writes(services, tmp_path)
    chain = audit.chain_for(services.db)
    events = [audit.Event(utcnow(), "user:3", "study.read", "study", f"2.25.{n}")
              for n in range(3)]
    with services.db.engine.begin() as conn:
        chain._append_core(conn, events[:1])
        chain._append_core(conn, events[1:])
    services.care.add_centre("After", actor="cli")
    result = verify(services)
    assert result.ok, result.problems
    assert [r["object_id"] for r in rows(services)][-4:] == ["2.25.0", "2.25.1", "2.25.2",
                                                            "After"]
