"""The shared annotations API over real HTTP (FastAPI TestClient), with the
person dependency overridden to people who exist in the database (accounts
and login are not there yet); the access rules themselves are the real ones
of ``care.access.panel_view``."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from dicom_service.app import Services, build_services
from dicom_service.care.access import load_person
from dicom_service.config import Settings
from dicom_service.db.models import (
    AuditEvent,
    CentreNetwork,
    Network,
    Panel,
    PanelMember,
    PanelStudy,
    Study,
    ThematicArea,
    User,
    UserRole,
)
from dicom_service.web import policy
from dicom_service.web.app import create_app
from dicom_service.web.principal import SCOPE_API, SCOPE_DICOMWEB, VIA_SESSION, Principal

with warnings.catch_warnings():
    # starlette asks for its httpx fork; the httpx that is installed works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

STUDY = "2.25.1001"
OTHER_STUDY = "2.25.1002"
SERIES = "2.25.2001"
SOP = "2.25.3001"
SECRET_NOTE = "nodule next to the fissure"


@dataclass
class World:
    client: TestClient
    services: Services
    panel: int
    users: dict[str, int]
    who: dict[str, str]

    def as_(self, name: str) -> TestClient:
        self.who["name"] = name
        return self.client

    def url(self, panel: int | None = None) -> str:
        return f"/api/panels/{self.panel if panel is None else panel}/annotations"

    def set_state(self, state: str) -> None:
        with self.services.db.session() as s:
            s.execute(update(Panel).where(Panel.id == self.panel).values(state=state))


def length(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"study_uid": STUDY, "series_uid": SERIES, "sop_uid": SOP,
                            "frame": 1, "kind": "length", "points": [[10, 20], [110, 20]]}
    return {**body, **changes}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    services = build_services(Settings(data_dir=tmp_path / "data", server_secret=b"s" * 32))
    care = services.care
    care.add_centre("Hospital A", actor="test")
    pseudonym = care.enrol("Hospital A", "PAT-1", "HOSP-A", actor="test")
    users: dict[str, int] = {}
    with services.db.session() as s:
        enrolment_id = care.get_enrolment(pseudonym).id
        network = Network(name="ERN-TEST")
        s.add(network)
        s.flush()
        centre_id = care.centre_id("Hospital A")
        s.add(CentreNetwork(centre_id=centre_id, network_id=network.id))
        area = ThematicArea(network_id=network.id, code="lung", name="Lung")
        s.add(area)
        for uid in (STUDY, OTHER_STUDY):
            s.add(Study(study_uid=uid, enrolment_id=enrolment_id))
        for name in ("lead", "member", "second", "invited", "outsider"):
            user = User(username=name, display_name=f"Dr {name.title()}", password_hash="x",
                        centre_id=None)
            s.add(user)
            s.flush()
            users[name] = user.id
            if name != "outsider":
                s.add(UserRole(user_id=user.id, network_id=network.id,
                               role="health_professional"))
        s.flush()
        panel = Panel(network_id=network.id, enrolment_id=enrolment_id, area_id=area.id,
                      lead_user_id=users["lead"], title="Which treatment?", state="review")
        s.add(panel)
        s.flush()
        for name, status in (("member", "accepted"), ("second", "accepted"),
                             ("invited", "invited")):
            s.add(PanelMember(panel_id=panel.id, user_id=users[name], status=status))
        s.add(PanelStudy(panel_id=panel.id, study_uid=STUDY))
        panel_id = panel.id
    who = {"name": "member"}
    app = create_app(services)

    def current_person() -> policy.Caller:
        user_id = users[who["name"]]
        with services.db.engine.connect() as conn:
            person = load_person(conn, user_id)
        assert person is not None
        return policy.Caller(Principal(actor=f"user:{user_id}", via=VIA_SESSION,
                                       scopes=frozenset({SCOPE_API, SCOPE_DICOMWEB}),
                                       user_id=user_id), person)

    app.dependency_overrides[policy.current_person] = current_person
    try:
        with TestClient(app) as client:
            yield World(client, services, panel_id, users, who)
    finally:
        services.close()


def audit_rows(world: World) -> list[tuple[str, str, str, str | None]]:
    with world.services.db.session() as s:
        return [(r[0], r[1], r[2], r[3]) for r in s.execute(
            select(AuditEvent.actor, AuditEvent.action, AuditEvent.object_id, AuditEvent.detail)
            .where(AuditEvent.action.like("annotation.%")).order_by(AuditEvent.id))]


def test_members_share_annotations_and_writes_are_audited(world: World) -> None:
    r = world.as_("member").post(world.url(), json=length())
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["author"] == "Dr Member" and made["mine"] is True
    assert made["points"] == [[10.0, 20.0], [110.0, 20.0]]
    note = world.client.post(world.url(), json=length(kind="arrow", text=SECRET_NOTE))
    assert note.status_code == 201, note.text

    seen = world.as_("lead").get(world.url()).json()
    assert [(a["kind"], a["author"], a["mine"]) for a in seen] == [
        ("length", "Dr Member", False), ("arrow", "Dr Member", False)]
    assert seen[1]["text"] == SECRET_NOTE
    assert world.as_("second").get(world.url(), params={"series": SERIES}).json() == seen
    assert world.client.get(world.url(), params={"series": "2.25.9"}).json() == []

    rows = audit_rows(world)
    member, panel = f"user:{world.users['member']}", str(world.panel)
    assert rows == [(member, "annotation.add", panel, f"annotation {made['id']} (length)"),
                    (member, "annotation.add", panel, f"annotation {note.json()['id']} (arrow)")]
    assert all(SECRET_NOTE not in str(row) for row in rows)


@pytest.mark.parametrize("name", ["invited", "outsider"])
def test_people_without_the_images_get_404(world: World, name: str) -> None:
    world.as_("member").post(world.url(), json=length())
    client = world.as_(name)
    assert client.get(world.url()).status_code == 404
    assert client.post(world.url(), json=length()).status_code == 404
    assert client.delete(f"{world.url()}/1").status_code == 404
    assert client.get(world.url(world.panel + 1)).status_code == 404


def test_refusals(world: World) -> None:
    client = world.as_("member")
    assert client.post(world.url(), json=length(study_uid=OTHER_STUDY)).status_code == 404
    assert client.post(world.url(), json=length(study_uid="1.02.3")).status_code == 422
    assert client.post(world.url(), json=length(kind="circle")).status_code == 422
    assert client.post(world.url(), json=length(points=[[1, 2]])).status_code == 400
    assert client.post(world.url(), json=length(points=[[1e9, 2], [3, 4]])).status_code == 422
    text = client.post(world.url(), json=length(kind="text", points=[[1, 2]], text=" "))
    assert text.status_code == 400
    assert text.headers["content-type"].startswith("application/problem+json")
    assert client.get(world.url(), params={"study": "x"}).status_code == 400
    assert audit_rows(world) == []


def test_delete_by_author_or_lead_only(world: World) -> None:
    made = world.as_("member").post(world.url(), json=length()).json()
    assert world.as_("second").delete(f"{world.url()}/{made['id']}").status_code == 403
    assert world.as_("member").delete(f"{world.url()}/{made['id']}").status_code == 204
    assert world.client.get(world.url()).json() == []
    assert world.client.delete(f"{world.url()}/{made['id']}").status_code == 404
    other = world.as_("second").post(world.url(), json=length()).json()
    assert world.as_("lead").delete(f"{world.url()}/{other['id']}").status_code == 204
    assert [r[1] for r in audit_rows(world)] == ["annotation.add", "annotation.delete",
                                                  "annotation.add", "annotation.delete"]


def test_annotations_of_an_unshared_study_leave_the_list(world: World) -> None:
    world.as_("member").post(world.url(), json=length())
    with world.services.db.session() as s:
        s.execute(delete(PanelStudy).where(PanelStudy.panel_id == world.panel))
    assert world.client.get(world.url()).json() == []


def test_closed_panels_are_read_only_and_archived_ones_hidden(world: World) -> None:
    made = world.as_("member").post(world.url(), json=length()).json()
    world.set_state("closed")
    assert [a["id"] for a in world.client.get(world.url()).json()] == [made["id"]]
    assert world.client.post(world.url(), json=length()).status_code == 409
    assert world.client.delete(f"{world.url()}/{made['id']}").status_code == 409
    world.set_state("archived")
    assert world.as_("lead").get(world.url()).status_code == 404
    world.set_state("draft")
    assert world.as_("lead").get(world.url()).status_code == 404


def test_without_a_person_401(tmp_path: Path) -> None:
    services = build_services(Settings(data_dir=tmp_path / "data", server_secret=b"s" * 32))
    try:
        with TestClient(create_app(services)) as client:
            r = client.get("/api/panels/1/annotations")
            assert r.status_code == 401
            assert r.headers["www-authenticate"].startswith("Bearer")
    finally:
        services.close()
