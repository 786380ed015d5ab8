"""Networks, areas, roles, preferences and groups: the rules and the CLI."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from dicom_service.cli import main
from dicom_service.db.models import AuditEvent, User, utcnow
from dicom_service.errors import Conflict, Forbidden, NotFound
from tests.panels.conftest import World


def test_a_guest_role_expires_after_90_days_unless_extended(world: World) -> None:
    uid = world.users["outsider"]
    expires = world.org.grant_role(uid, world.network_id, "guest", by=None)
    assert expires is not None
    assert abs(expires - (utcnow() + timedelta(days=90))) < timedelta(minutes=1)
    longer = world.org.extend_role(uid, world.network_id, "guest", days=30,
                                   by=world.person("coordinator"))
    assert abs(longer - (utcnow() + timedelta(days=30))) < timedelta(minutes=1)
    assert world.org.grant_role(uid, world.network_id, "health_professional", by=None) is None
    with pytest.raises(Conflict, match="does not expire"):
        world.org.extend_role(uid, world.network_id, "health_professional", by=None)
    with pytest.raises(ValueError, match="role must be one of"):
        world.org.grant_role(uid, world.network_id, "superuser", by=None)


@pytest.mark.parametrize(("name", "allowed"), [
    ("admin", {"network", "area", "join", "coordinator", "guest", "group"}),
    ("coordinator", {"area", "guest", "group"}),
    ("lead", set()),
    ("researcher", set()),
])
def test_who_administers_what(world: World, name: str, allowed: set[str]) -> None:
    by = world.person(name)
    org = world.org
    nid = world.network_id
    actions = {
        "network": lambda: org.add_network(f"ERN-{name}", by=by),
        "area": lambda: org.add_area(nid, f"A-{name}", "Area", by=by),
        "join": lambda: org.join_network(world.centres["Outside Clinic"], nid, by=by),
        "coordinator": lambda: org.grant_role(world.users["outsider"], nid, "coordinator",
                                              by=by),
        "guest": lambda: org.grant_role(world.users["outsider"], nid, "guest", by=by),
        "group": lambda: org.add_group(nid, f"Group {name}", by=by),
    }
    for action, run in actions.items():
        if action in allowed:
            run()
        else:
            with pytest.raises(Forbidden):
                run()


def test_preferences_only_in_networks_with_a_role(world: World) -> None:
    other = world.org.add_network("ERN-OTHER", by=None)
    area = world.org.add_area(other, "OTH", "Other", by=None)
    uid = world.users["expert1"]
    with pytest.raises(Conflict, match="valid role"):
        world.org.set_preferences(uid, [area], by=world.person("expert1"))
    with pytest.raises(Forbidden, match="only their own"):
        world.org.set_preferences(uid, [world.areas["HHT"]], by=world.person("expert2"))
    with pytest.raises(NotFound):
        world.org.set_preferences(uid, [area + 100], by=world.person("expert1"))
    chosen = world.org.set_preferences(uid, [world.areas["HHT"], world.areas["VASCA"]],
                                       by=world.person("expert1"))
    assert [a.code for a in chosen] == ["HHT", "VASCA"]
    assert world.org.set_preferences(uid, [], by=world.person("expert1")) == []
    with world.services.db.session() as s:
        actions = s.scalars(select(AuditEvent.action).where(
            AuditEvent.object_type == "user", AuditEvent.object_id == str(uid))).all()
    assert actions.count("preferences.set") == 3  # at set-up and twice here


def test_cli_bootstraps_the_organisation(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path / "data")]

    def run(*argv: str) -> str:
        assert main([*argv, *data]) == 0
        return capsys.readouterr().out

    run("networks", "add", "ERN-VASCERN")
    assert "ERN-VASCERN" in run("networks", "list")
    run("areas", "add", "--network", "ERN-VASCERN", "--code", "VASCA-WG",
        "--name", "Vascular Anomalies")
    run("centres", "add", "Hospital A")
    assert "joined" in run("centres", "join", "--centre", "Hospital A",
                           "--network", "ERN-VASCERN")
    from dicom_service.app import build_services
    from dicom_service.config import Settings

    services = build_services(Settings(data_dir=tmp_path / "data"))
    with services.db.session() as s:
        s.add(User(username="dr.who", display_name="Dr Who", password_hash="x"))
    services.close()
    out = run("roles", "grant", "--user", "dr.who", "--network", "ERN-VASCERN",
              "--role", "guest")
    assert "expires" in out
    assert run("prefs", "set", "--user", "dr.who", "--area", "VASCA-WG").strip() == "VASCA-WG"
    run("groups", "add", "--network", "ERN-VASCERN", "--name", "Core", "--area", "VASCA-WG")
    run("groups", "add-member", "--network", "ERN-VASCERN", "--group", "Core",
        "--user", "dr.who")
    assert "1 members" in run("groups", "list", "--network", "ERN-VASCERN")
    assert "dr.who\tguest" in run("roles", "list", "--network", "ERN-VASCERN")
    run("roles", "revoke", "--user", "dr.who", "--network", "ERN-VASCERN", "--role", "guest")
    assert main(["roles", "revoke", "--user", "dr.who", "--network", "ERN-VASCERN",
                 "--role", "guest", *data]) == 2
    assert "no such role" in capsys.readouterr().err
