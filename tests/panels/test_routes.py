"""The REST routes over real HTTP (FastAPI's TestClient): refusals as problem
responses, 404 for a panel the caller may not see, bodies without identifiers.

Who is logged in is chosen with ``app.dependency_overrides`` on
``policy.current_person`` (login itself is tested in tests/accounts).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI

from dicom_service.web import policy
from dicom_service.web.app import create_app
from dicom_service.web.principal import SCOPE_API, SCOPE_DICOMWEB, VIA_SESSION, Principal
from tests.panels.conftest import PATIENT_ID, World

with warnings.catch_warnings():
    # starlette asks for its httpx fork; the httpx that is installed works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"


@pytest.fixture
def app(world: World) -> FastAPI:
    return create_app(world.services)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def login(app: FastAPI, world: World) -> Callable[[str], None]:
    """Choose who is logged in for the following requests."""
    def _login(name: str) -> None:
        person = world.person(name)
        principal = Principal(actor=f"user:{person.user_id}", via=VIA_SESSION,
                              scopes=frozenset({SCOPE_API, SCOPE_DICOMWEB}),
                              user_id=person.user_id)
        app.dependency_overrides[policy.current_person] = lambda: policy.Caller(principal,
                                                                                 person)
    return _login


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/panels"), ("POST", "/api/panels"), ("GET", "/api/panels/1"),
    ("POST", "/api/panels/1/transition"), ("GET", "/api/panels/1/contributions"),
    ("GET", "/api/networks"), ("POST", "/api/networks"), ("PUT", "/api/me/preferences"),
    ("GET", "/api/centre/enrolments"), ("POST", "/api/centre/enrolments"),
    ("GET", "/api/stats"),
])
def test_no_person_is_401(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path, json={})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM


def test_a_panel_the_caller_may_not_see_is_404(client: TestClient, world: World,
                                               login: Callable[[str], None]) -> None:
    panel_id = world.new_panel()
    world.move(panel_id, "inviting")
    login("lead")
    assert client.get(f"/api/panels/{panel_id}").json()["state"] == "inviting"
    for name in ("outsider", "expert1", "researcher", "admin"):
        login(name)
        hidden = client.get(f"/api/panels/{panel_id}")
        missing = client.get(f"/api/panels/{panel_id + 1000}")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.headers["content-type"] == PROBLEM
        assert hidden.json() == missing.json()  # nothing tells them apart
        for method, sub in (("GET", "/contributions"), ("GET", "/members"),
                            ("POST", "/response"), ("POST", "/contributions")):
            body = {"accept": True} if sub == "/response" else {"body": "x"}
            assert client.request(method, f"/api/panels/{panel_id}{sub}",
                                  json=body).status_code == 404
        assert panel_id not in [p["id"] for p in client.get("/api/panels").json()]


def test_visible_but_not_allowed_is_403_and_illegal_state_409(
        client: TestClient, world: World, login: Callable[[str], None]) -> None:
    panel_id = world.new_panel()
    login("coordinator")
    assert client.get(f"/api/panels/{panel_id}").status_code == 200
    refused = client.post(f"/api/panels/{panel_id}/transition", json={"to": "inviting"})
    assert refused.status_code == 403
    assert refused.json()["detail"] == "only the panel's lead may change its state"
    login("lead")
    illegal = client.post(f"/api/panels/{panel_id}/transition", json={"to": "closed"})
    assert illegal.status_code == 409
    assert illegal.json()["detail"] == "cannot go from draft to closed"
    assert client.post(f"/api/panels/{panel_id}/transition",
                       json={"to": "cancelled"}).status_code == 422


def test_a_panel_through_its_life_by_http(client: TestClient, world: World,
                                          login: Callable[[str], None]) -> None:
    login("lead")
    created = client.post("/api/panels", json={
        "pseudonym": world.pseudonym, "network_id": world.network_id,
        "area_id": world.areas["VASCA"], "title": "Sirolimus or surgery?", "urgent": True,
        "min_contributions": 1})
    assert created.status_code == 201, created.text
    panel = created.json()
    assert (panel["state"], panel["is_lead"], panel["urgent"]) == ("draft", True, True)
    assert (panel["lead_name"], panel["consent_care"]) == ("Lead", True)
    pid = panel["id"]
    assert client.post(f"/api/panels/{pid}/transition", json={"to": "inviting"}).json()[
        "state"] == "inviting"
    no_area = client.post(f"/api/panels/{pid}/invitations",
                          json={"user_id": world.users["no_area"]})
    assert no_area.status_code == 409
    assert "chosen no thematic area" in no_area.json()["detail"]
    assert client.post(f"/api/panels/{pid}/invitations",
                       json={"user_id": world.users["expert1"]}).status_code == 201
    login("expert1")
    assert [p["membership"] for p in client.get("/api/panels").json()] == ["invited"]
    assert client.post(f"/api/panels/{pid}/response", json={"accept": True}).status_code == 204
    login("lead")
    assert client.post(f"/api/panels/{pid}/transition", json={"to": "review"}).status_code \
        == 200
    login("expert1")
    made = client.post(f"/api/panels/{pid}/contributions", json={"body": "Surgery."})
    assert made.status_code == 201
    cid = made.json()["id"]
    assert client.put(f"/api/panels/{pid}/contributions/{cid}",
                      json={"body": "Sirolimus first."}).status_code == 204
    login("lead")
    assert client.post(f"/api/panels/{pid}/transition", json={"to": "outcome"}).status_code \
        == 200
    assert client.put(f"/api/panels/{pid}/outcome", json={"text": "Sirolimus."}).status_code \
        == 204
    closed = client.post(f"/api/panels/{pid}/transition", json={"to": "closed"})
    assert closed.json()["state"] == "closed"
    login("expert1")
    late = client.put(f"/api/panels/{pid}/contributions/{cid}", json={"body": "Changed."})
    assert late.status_code == 409
    assert [c["body"] for c in client.get(f"/api/panels/{pid}/contributions").json()] == [
        "Sirolimus first."]
    login("lead")
    again = client.post(f"/api/panels/{pid}/restart", json={"reason": "New scan."})
    assert (again.json()["state"], again.json()["round"]) == ("review", 2)
    assert [r["outcome"] for r in again.json()["rounds"]] == ["Sirolimus.", None]
    login("researcher")
    figures = client.get("/api/stats").json()
    assert figures[0]["panels_per_state"]["review"] == 1
    assert figures[0]["closed_rounds"] == 1
    assert PATIENT_ID not in client.get("/api/stats").text


def test_enrolment_by_http_never_returns_the_patient_id(
        client: TestClient, world: World, login: Callable[[str], None]) -> None:
    login("lead")
    refused = client.post("/api/centre/enrolments",
                          json={"patient_id": "PAT-NEW-0815", "consent_care": False})
    assert refused.status_code == 400
    assert "PAT-NEW-0815" not in refused.text
    made = client.post("/api/centre/enrolments", json={
        "patient_id": "PAT-NEW-0815", "issuer": "HOSP-A", "consent_care": True,
        "consent_research": True, "form_version": "2024-1"})
    assert made.status_code == 201
    assert "PAT-NEW-0815" not in made.text
    pseudonym = made.json()["pseudonym"]
    listed = client.get("/api/centre/enrolments")
    assert {e["pseudonym"] for e in listed.json()} == {world.pseudonym, pseudonym}
    assert PATIENT_ID not in listed.text and "PAT-NEW-0815" not in listed.text
    changed = client.post(f"/api/centre/enrolments/{pseudonym}/consents",
                          json={"kind": "registries", "granted": True})
    assert changed.json()["consent_registries"] is True
    history = client.get(f"/api/centre/enrolments/{pseudonym}/consents").json()
    assert [(h["kind"], h["granted"]) for h in history] == [
        ("care", True), ("registries", False), ("research", True), ("registries", True)]
    assert {h["recorded_by"] for h in history} == {world.actor("lead")}
    login("expert1")  # another centre
    assert client.get(f"/api/centre/enrolments/{pseudonym}").status_code == 404
    assert client.get("/api/centre/enrolments").json() == []
    login("coordinator")
    assert client.get("/api/centre/enrolments").status_code == 403


def test_organisation_by_http(client: TestClient, world: World,
                              login: Callable[[str], None]) -> None:
    login("lead")
    assert client.post("/api/networks", json={"name": "ERN-X"}).status_code == 403
    assert [n["name"] for n in client.get("/api/networks").json()] == ["ERN-VASCERN"]
    login("admin")
    assert client.post("/api/networks", json={"name": "ERN-X"}).status_code == 201
    login("coordinator")
    nid = world.network_id
    area = client.post(f"/api/networks/{nid}/areas", json={"code": "LYMPH", "name": "Lymph"})
    assert area.status_code == 201
    granted = client.post(f"/api/networks/{nid}/roles",
                          json={"user_id": world.users["outsider"], "role": "guest"})
    assert granted.status_code == 201
    expires = datetime.fromisoformat(granted.json()["expires_at"])
    expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=90))) < timedelta(minutes=5)
    assert client.post(f"/api/networks/{nid}/roles", json={
        "user_id": world.users["outsider"], "role": "coordinator"}).status_code == 403
    roles = client.get(f"/api/networks/{nid}/roles").json()
    assert ("outsider", "guest") in {(r["username"], r["role"]) for r in roles}
    login("outsider")  # now a guest of the network: may choose its areas
    prefs = client.put("/api/me/preferences", json={"area_ids": [area.json()["id"]]})
    assert [a["code"] for a in prefs.json()] == ["LYMPH"]
    login("no_area")
    other = client.get("/api/networks").json()
    x_id = next(n["id"] for n in other if n["name"] == "ERN-X")
    login("admin")
    x_area = client.post(f"/api/networks/{x_id}/areas", json={"code": "XA", "name": "X"})
    login("no_area")  # no role in ERN-X: cannot choose its area
    assert client.put("/api/me/preferences",
                      json={"area_ids": [x_area.json()["id"]]}).status_code == 409
    assert client.get("/api/me/preferences").json() == []
    login("researcher")
    assert client.get(f"/api/networks/{nid}/roles").status_code == 403
    assert client.get("/api/stats").status_code == 200
    login("lead")
    assert client.get("/api/stats").status_code == 403


def test_openapi_documents_the_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    tags = {t for item in spec["paths"].values() for op in item.values() for t in op["tags"]}
    assert {"panels", "enrolments", "organisation", "figures"} <= tags
    transition = spec["paths"]["/api/panels/{panel_id}/transition"]["post"]
    assert {"403", "404", "409"} <= set(transition["responses"])
