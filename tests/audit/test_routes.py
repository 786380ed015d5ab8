"""``GET /api/audit`` and ``/api/audit/verify``: platform administrators only."""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from dicom_service.app import Services
from dicom_service.care.access import Person
from dicom_service.web import policy
from dicom_service.web.app import create_app
from dicom_service.web.principal import SCOPE_API, SCOPE_DICOMWEB, VIA_SESSION, Principal
from tests.audit.conftest import rows

with warnings.catch_warnings():
    # starlette asks for its httpx fork; the httpx that is installed works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


def _caller(user_id: int, *, admin: bool) -> policy.Caller:
    return policy.Caller(
        Principal(actor=f"user:{user_id}", via=VIA_SESSION,
                  scopes=frozenset({SCOPE_API, SCOPE_DICOMWEB}), user_id=user_id),
        Person(user_id=user_id, centre_id=None, is_admin=admin, roles=frozenset()))


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services)) as c:
        yield c


def _as(client: TestClient, caller: policy.Caller) -> None:
    client.app.dependency_overrides[policy.current_person] = lambda: caller  # type: ignore[attr-defined]


def _seed(services: Services) -> None:
    for name in ("North", "South", "East"):
        services.care.add_centre(name, actor="cli")
    services.reads.note("user:5", "study.read", "study", "2.25.77")
    services.reads.flush()


def test_only_platform_administrators_read_the_log(client: TestClient,
                                                   services: Services) -> None:
    _seed(services)
    for path in ("/api/audit", "/api/audit/verify"):
        assert client.get(path).status_code == 401
    _as(client, _caller(2, admin=False))
    for path in ("/api/audit", "/api/audit/verify"):
        response = client.get(path)
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == "platform administrators only"
    _as(client, _caller(1, admin=True))
    response = client.get("/api/audit")
    assert response.status_code == 200
    assert [(r["id"], r["action"], r["object_id"]) for r in response.json()] == [
        (1, "centre.add", "North"), (2, "centre.add", "South"), (3, "centre.add", "East"),
        (4, "study.read", "2.25.77")]
    assert set(response.json()[0]) == {"id", "at", "actor", "action", "object_type",
                                       "object_id", "result", "detail", "row_hash"}
    # reading the log, and being refused it, are audited too (the requests
    # without credentials by the policy, one row per route)
    services.reads.flush()
    later = [(r["actor"], r["action"], r["result"]) for r in rows(services)[4:]]
    assert [r for r in later if r[0] != "anonymous"] == [
        ("user:2", "audit.export", "refused"), ("user:2", "audit.verify", "refused"),
        ("user:1", "audit.export", "ok")]
    assert [r for r in later if r[0] == "anonymous"] == [
        ("anonymous", "auth.refused: no valid credential", "refused")] * 2


def test_filters_and_paging(client: TestClient, services: Services) -> None:
    _seed(services)
    _as(client, _caller(1, admin=True))

    def ids(**params: object) -> list[int]:
        response = client.get("/api/audit", params=params)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()]

    every = client.get("/api/audit").json()
    assert ids(actor="cli") == [1, 2, 3]
    assert ids(object_type="study", object_id="2.25.77") == [4]
    assert ids(limit=2, offset=1) == [2, 3]
    assert ids(since=every[1]["at"], until=every[3]["at"]) == [2, 3]
    assert ids(since="2000-01-01T00:00:00+02:00", until=datetime.now(UTC).isoformat())[:4] == \
        [1, 2, 3, 4]
    assert ids(until="2000-01-01") == []
    for bad in ({"limit": 0}, {"limit": 10_001}, {"offset": -1}, {"since": "yesterday"}):
        assert client.get("/api/audit", params=bad).status_code in (400, 422)


def test_verify_over_rest(client: TestClient, services: Services) -> None:
    _seed(services)
    _as(client, _caller(1, admin=True))
    body = client.get("/api/audit/verify").json()
    assert body["ok"] is True and body["problems"] == [] and body["rows"] == 4
    assert body["summary"].startswith("audit chain intact: 4 rows")
    conn = sqlite3.connect(services.settings.data_dir / "index.sqlite3")
    conn.execute("DROP TRIGGER audit_events_no_update")
    conn.execute("UPDATE audit_events SET object_id = 'Elsewhere' WHERE id = 2")
    conn.commit()
    conn.close()
    body = client.get("/api/audit/verify").json()
    assert body["ok"] is False
    assert body["problems"][0] == {"row": 2, "problem": "content does not match its hash "
                                                        "(edited)"}
