"""The access generation (migration 0006) and the scopes kept by it.

``web.policy`` keeps each person's image scope while the database's access
generation stands. These tests check that every kind of change that can take
access away moves the generation in its own transaction (so the very next
request sees it), that unrelated writes do not, that a kept scope is used
(no query but the generation's), and that a role's expiry counts without any
write at all.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pydicom
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import event, select, text, update

from dicom_service.care.access import ACCESS_GENERATION
from dicom_service.care.accounts import AccountService
from dicom_service.db.models import Enrolment, Panel, User, UserRole, utcnow
from dicom_service.db.session import MIGRATIONS, Database
from dicom_service.ingest.pipeline import Sender
from dicom_service.web.policy import scope_of
from dicom_service.web.principal import SCOPE_API, SCOPE_DICOMWEB, VIA_SESSION, Principal
from sample_data.generate import write_ct_series
from tests.panels.conftest import ISSUER, PATIENT_ID, World

migration = importlib.import_module("dicom_service.db.migrations.versions.0006_access_generation")


def generation(world: World) -> int:
    with world.services.db.engine.connect() as conn:
        return int(conn.execute(ACCESS_GENERATION).scalar_one())


def reader(world: World, name: str) -> Principal:
    user_id = world.users[name]
    return Principal(actor=f"user:{user_id}", via=VIA_SESSION,
                     scopes=frozenset({SCOPE_DICOMWEB, SCOPE_API}), user_id=user_id)


@contextmanager
def statements(world: World) -> Iterator[list[str]]:
    """The SQL statements SQLAlchemy runs meanwhile (prepared reads bypass it)."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.append(sql)

    engine = world.services.db.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def shared_panel(world: World, directory: Path) -> tuple[int, str]:
    """A panel in review sharing a study of the world's patient, expert1 accepted."""
    sender = Sender(centre_id=world.centres["Hospital A"], actor="peer:TEST_PACS")
    (path,) = write_ct_series(directory, n=1, size=16, patient_id=PATIENT_ID, issuer=ISSUER)
    ds = pydicom.dcmread(path)
    study = world.services.pipeline.ingest(ds, str(ds.file_meta.TransferSyntaxUID),
                                           sender).study_uid
    panel = world.new_panel(min_contributions=1)
    world.panels.share_study(world.person("lead"), panel, study, actor=world.actor("lead"))
    world.move(panel, "inviting")
    world.member(panel, "expert1")
    world.move(panel, "review")
    return panel, study


def test_every_watched_table_has_its_triggers(world: World) -> None:
    with world.services.db.engine.connect() as conn:
        names = set(conn.scalars(text(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'access_%'")))
    expected = {f"access_{table}_{kind}" for table in migration.WATCHED
                for kind in ("insert", "update", "delete")}
    assert names == expected


def test_the_migration_goes_down_and_up_again(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    db.migrate()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))

    def objects() -> set[str]:
        with db.engine.connect() as conn:
            return set(conn.scalars(text(
                "SELECT name FROM sqlite_master WHERE name LIKE 'access_%'")))

    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0005")
    assert objects() == {"access_tokens"}
    db.migrate()
    assert len(objects()) == 2 + 3 * len(migration.WATCHED)
    with db.engine.connect() as conn:
        assert conn.execute(ACCESS_GENERATION).scalar_one() == 0
    db.dispose()


def test_changes_that_can_change_access_move_the_generation(world: World,
                                                            tmp_path: Path) -> None:
    panel, study = shared_panel(world, tmp_path / "series")
    lead = world.person("lead")
    accounts = AccountService(world.services.db, b"s" * 32)
    changes: list[tuple[str, Callable[[], object]]] = [
        ("grant role", lambda: world.org.grant_role(world.users["outsider"], world.network_id,
                                                   "guest", by=None)),
        ("revoke role", lambda: world.org.revoke_role(world.users["outsider"],
                                                     world.network_id, "guest", by=None)),
        ("invite", lambda: world.panels.invite(lead, panel, world.users["expert2"],
                                               actor=world.actor("lead"))),
        ("accept", lambda: world.panels.respond(world.person("expert2"), panel, True,
                                                actor=world.actor("expert2"))),
        ("remove member", lambda: world.panels.remove_member(
            lead, panel, world.users["expert2"], actor=world.actor("lead"))),
        ("unshare", lambda: world.panels.unshare_study(lead, panel, study,
                                                       actor=world.actor("lead"))),
        ("share", lambda: world.panels.share_study(lead, panel, study,
                                                   actor=world.actor("lead"))),
        ("panel state", lambda: world.move(panel, "meeting")),
        ("new panel", lambda: world.new_panel(title="Another question")),
        ("enrolment", lambda: world.services.care.enrol_by(
            lead, "PAT-OTHER", ISSUER, consent_care=True, form_version="v2",
            actor=world.actor("lead"))),
        ("user's centre", lambda: _set(world, User, world.users["outsider"],
                                       centre_id=world.centres["Hospital A"])),
        ("disable", lambda: accounts.disable(world.users["outsider"], actor="test")),
        ("consent withdrawn", lambda: world.services.care.withdraw_consent(
            world.pseudonym, actor="test")),
    ]
    for label, change in changes:
        before = generation(world)
        change()
        assert generation(world) > before, label


def test_unrelated_writes_leave_the_generation(world: World, tmp_path: Path) -> None:
    panel, _ = shared_panel(world, tmp_path / "series")
    before = generation(world)
    # another instance of the patient (touches the enrolment's last instance time)
    (path,) = write_ct_series(tmp_path / "more", n=1, size=16, patient_id=PATIENT_ID,
                              issuer=ISSUER, seed=7)
    ds = pydicom.dcmread(path)
    world.services.pipeline.ingest(ds, str(ds.file_meta.TransferSyntaxUID),
                                   Sender(centre_id=world.centres["Hospital A"], actor="peer:X"))
    world.panels.set_urgent(world.person("lead"), panel, True, actor=world.actor("lead"))
    world.contribute(panel, "expert1")
    _set(world, User, world.users["expert1"], failed_logins=3)
    assert generation(world) == before


def _set(world: World, model: Any, row_id: int, **values: Any) -> None:
    with world.services.db.session() as s:
        s.execute(update(model).where(model.id == row_id).values(**values))


def _revoke_membership(world: World, panel: int) -> None:
    world.panels.remove_member(world.person("lead"), panel, world.users["expert1"],
                               actor=world.actor("lead"))


def _revoke_role(world: World, panel: int) -> None:
    world.org.revoke_role(world.users["expert1"], world.network_id, "health_professional",
                          by=None)


def _archive(world: World, panel: int) -> None:
    world.contribute(panel, "expert1")
    world.move(panel, "outcome")
    world.panels.write_outcome(world.person("lead"), panel, "Treat.",
                               actor=world.actor("lead"))
    world.move(panel, "closed")
    assert scope_of(world.services, reader(world, "expert1")).studies  # read-only, still seen
    world.move(panel, "archived")


def _withdraw(world: World, panel: int) -> None:
    world.services.care.withdraw_consent(world.pseudonym, actor="test")


def _disable(world: World, panel: int) -> None:
    AccountService(world.services.db, b"s" * 32).disable(world.users["expert1"], actor="test")


def _panel_moves_to_another_network(world: World, panel: int) -> None:
    other = world.org.add_network("ERN-OTHER", by=None)
    _set(world, Panel, panel, network_id=other)


@pytest.mark.parametrize("revoke", [_revoke_membership, _revoke_role, _archive, _withdraw,
                                    _disable, _panel_moves_to_another_network])
def test_a_kept_scope_never_outlives_a_revocation(world: World, tmp_path: Path,
                                                  revoke: Callable[[World, int], None]) -> None:
    panel, study = shared_panel(world, tmp_path / "series")
    expert = reader(world, "expert1")
    assert study in scope_of(world.services, expert).studies
    with statements(world) as seen:  # kept: no query but the generation's
        assert study in scope_of(world.services, expert).studies
    assert seen == []
    revoke(world, panel)
    assert study not in scope_of(world.services, expert).studies


def test_a_consent_withdrawal_ends_the_centres_access_at_once(world: World) -> None:
    colleague = reader(world, "colleague")  # a health professional of the patient's centre
    with world.services.db.engine.connect() as conn:
        enrolment = conn.scalar(select(Enrolment.id).where(
            Enrolment.pseudonym == world.pseudonym))
    assert enrolment in scope_of(world.services, colleague).enrolments
    world.services.care.withdraw_consent(world.pseudonym, actor="test")
    assert enrolment not in scope_of(world.services, colleague).enrolments
    # and a new enrolment of the centre is seen at once too
    pseudonym = world.services.care.enrol_by(world.person("lead"), "PAT-NEW", ISSUER,
                                             consent_care=True, form_version="v2",
                                             actor=world.actor("lead"))
    with world.services.db.engine.connect() as conn:
        new = conn.scalar(select(Enrolment.id).where(Enrolment.pseudonym == pseudonym))
    assert new in scope_of(world.services, colleague).enrolments


def test_a_role_expiring_counts_without_any_write(world: World, tmp_path: Path) -> None:
    _, study = shared_panel(world, tmp_path / "series")
    expires = utcnow() + timedelta(seconds=1.5)
    with world.services.db.session() as s:
        s.execute(update(UserRole).where(UserRole.user_id == world.users["expert1"])
                  .values(expires_at=expires))
    expert = reader(world, "expert1")
    assert study in scope_of(world.services, expert).studies
    with statements(world) as seen:
        assert study in scope_of(world.services, expert).studies
    assert seen == []
    kept_generation = generation(world)
    time.sleep(max(0.0, (expires - utcnow()).total_seconds()) + 0.1)
    assert study not in scope_of(world.services, expert).studies
    assert generation(world) == kept_generation
