"""Two-factor login, lock-out, replay, recovery codes, sessions and CSRF."""

from __future__ import annotations

import logging
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import select, update

from dicom_service.app import Services
from dicom_service.config import Settings
from dicom_service.db.models import AuditEvent, User, WebSession
from dicom_service.errors import ConfigError
from dicom_service.web.app import create_app
from tests.accounts.conftest import (
    CENTRE,
    PASSWORD,
    Person,
    TestClient,
    accounts,
    add_person,
    build,
    current_step,
    login,
    password_step,
    wrong_code,
)

CSRF = "X-CSRF-Token"


def _audit(services: Services) -> list[tuple[str, str, str, str, str | None]]:
    with services.db.session() as s:
        return [tuple(r) for r in s.execute(  # type: ignore[misc]
            select(AuditEvent.actor, AuditEvent.action, AuditEvent.object_id,
                   AuditEvent.result, AuditEvent.detail).order_by(AuditEvent.id))]


def test_the_password_alone_authenticates_nothing(client: TestClient, alice: Person) -> None:
    r = password_step(client, alice)
    assert r.status_code == 200
    assert r.json() == {"second_factor": "totp"}
    pending = client.cookies["dicom_session"]
    assert "dicom_csrf" not in client.cookies
    for method, path in (("GET", "/api/me"), ("GET", "/api/me/tokens"),
                         ("GET", "/dicom-web/studies"), ("POST", "/api/me/tokens")):
        r = client.request(method, path, json={"scopes": ["api"]})
        assert r.status_code == 401, (method, path)
        assert r.headers["content-type"] == "application/problem+json"
    r = client.post("/api/auth/totp", json={"code": alice.code(current_step())})
    assert r.status_code == 200
    # a new session token once the second factor is done (no session fixation)
    complete = client.cookies["dicom_session"]
    assert complete != pending
    assert client.cookies["dicom_csrf"] == r.json()["csrf_token"]
    me = client.get("/api/me")
    assert me.status_code == 200
    assert me.json() == {"id": alice.user_id, "username": "alice", "display_name": "Alice",
                         "centre": "Hospital A", "is_platform_admin": False,
                         "csrf_token": r.json()["csrf_token"]}
    assert client.get("/dicom-web/studies").status_code in (200, 204)
    # the pending token is spent
    client.cookies.set("dicom_session", pending)
    assert client.get("/api/me").status_code == 401


def test_second_factor_without_a_login_is_refused(client: TestClient, alice: Person) -> None:
    r = client.post("/api/auth/totp", json={"code": alice.code(current_step())})
    assert r.status_code == 401
    assert r.json()["title"].startswith("no login in progress")
    r = client.post("/api/auth/totp", json={"code": "12345"})
    assert r.status_code == 422
    password_step(client, alice)
    r = client.post("/api/auth/totp", json={"code": "123456", "recovery_code": "abcd"})
    assert r.status_code == 400


def test_unknown_user_and_wrong_password_look_the_same(client: TestClient, alice: Person,
                                                       services: Services) -> None:
    wrong = password_step(client, alice, "not the password at all")
    unknown = client.post("/api/auth/login", json={"username": "mallory-typed-this",
                                                   "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["title"] == "wrong username or password"
    assert "dicom_session" not in client.cookies
    rows = _audit(services)
    assert (f"user:{alice.user_id}", "login.password", str(alice.user_id), "failed",
            None) in rows
    assert ("anonymous", "login.password", "-", "failed", None) in rows
    assert not any("mallory" in str(row) for row in rows)


def test_five_wrong_codes_lock_the_account_until_unlocked(client: TestClient, alice: Person,
                                                          services: Services) -> None:
    step = current_step()
    assert password_step(client, alice).status_code == 200
    for _ in range(4):
        r = client.post("/api/auth/totp", json={"code": wrong_code(alice, step)})
        assert r.status_code == 401
        assert r.json()["title"] == "wrong or already used code"
    r = client.post("/api/auth/totp", json={"code": wrong_code(alice, step)})
    assert r.status_code == 423
    assert r.json()["title"] == "account locked"
    # the right password and code are refused now
    r = password_step(client, alice)
    assert r.status_code == 423
    assert client.post("/api/auth/totp", json={"code": alice.code(step)}).status_code == 401
    # a wrong password does not tell that the account exists or is locked
    assert password_step(client, alice, "still not the password").json()["title"] == \
        "wrong username or password"
    assert any(a == "account.lock" for _, a, _, _, _ in _audit(services))
    accounts(services).unlock(alice.user_id, actor="test")
    login(client, alice, step)
    assert client.get("/api/me").status_code == 200


def test_five_wrong_passwords_lock_the_account(client: TestClient, alice: Person) -> None:
    for _ in range(5):
        assert password_step(client, alice, "wrong password!!").status_code == 401
    assert password_step(client, alice).status_code == 423


def test_a_complete_login_resets_the_failure_count(client: TestClient, alice: Person,
                                                   services: Services) -> None:
    for _ in range(4):
        assert password_step(client, alice, "wrong password!!").status_code == 401
    login(client, alice)
    with services.db.session() as s:
        assert s.scalar(select(User.failed_logins).where(User.id == alice.user_id)) == 0


def test_a_replayed_code_is_refused(client: TestClient, alice: Person) -> None:
    step = current_step()
    csrf = login(client, alice, step)
    assert client.post("/api/auth/logout", headers={CSRF: csrf}).status_code == 204
    assert password_step(client, alice).status_code == 200
    r = client.post("/api/auth/totp", json={"code": alice.code(step)})
    assert r.status_code == 401
    assert r.json()["title"] == "wrong or already used code"
    # an earlier step is as stale as the same one; the next one is fine
    assert client.post("/api/auth/totp", json={"code": alice.code(step - 1)}).status_code == 401
    assert client.post("/api/auth/totp", json={"code": alice.code(step + 1)}).status_code == 200
    assert client.get("/api/me").status_code == 200


def test_a_recovery_code_works_once(client: TestClient, alice: Person) -> None:
    assert len(alice.recovery_codes) == len(set(alice.recovery_codes)) == 10
    first, second = alice.recovery_codes[:2]
    assert password_step(client, alice).status_code == 200
    r = client.post("/api/auth/totp", json={"recovery_code": first.upper()})
    assert r.status_code == 200
    csrf = r.json()["csrf_token"]
    assert client.get("/api/me").status_code == 200
    client.post("/api/auth/logout", headers={CSRF: csrf})
    assert password_step(client, alice).status_code == 200
    assert client.post("/api/auth/totp", json={"recovery_code": first}).status_code == 401
    assert client.post("/api/auth/totp", json={"recovery_code": second}).status_code == 200


def test_first_login_enrols_the_second_factor(client: TestClient, services: Services) -> None:
    bob = add_person(services, "bob", enrolled=False)
    r = password_step(client, bob)
    assert r.status_code == 200
    body = r.json()
    assert body["second_factor"] == "enrol"
    assert body["qr_svg"].startswith("<svg")
    totp = pyotp.parse_uri(body["otpauth_uri"])
    assert isinstance(totp, pyotp.TOTP)
    assert "issuer=dicom_service" in body["otpauth_uri"]
    # not enrolled yet: nothing to check a code against, and nothing authenticated
    step = current_step()
    r = client.post("/api/auth/totp", json={"code": totp.generate_otp(step)})
    assert r.status_code == 409
    assert client.get("/api/me").status_code == 401
    # a second login shows the same secret until it is confirmed
    assert password_step(client, bob).json()["otpauth_uri"] == body["otpauth_uri"]
    r = client.post("/api/auth/totp/confirm", json={"code": totp.generate_otp(step)})
    assert r.status_code == 200
    assert len(r.json()["recovery_codes"]) == 10
    assert client.get("/api/me").json()["username"] == "bob"
    # confirmed: the next login asks for a code, and the confirming one is spent
    client.post("/api/auth/logout", headers={CSRF: r.json()["csrf_token"]})
    assert password_step(client, bob).json() == {"second_factor": "totp"}
    assert client.post("/api/auth/totp",
                       json={"code": totp.generate_otp(step)}).status_code == 401


def test_a_session_cannot_change_anything_without_the_csrf_token(
        client: TestClient, alice: Person, services: Services) -> None:
    csrf = login(client, alice)
    assert client.get("/api/me").json()["csrf_token"] == csrf
    for headers in ({}, {CSRF: "0" * 64}, {CSRF: csrf[:-1]}):
        r = client.post("/api/me/tokens", json={"scopes": ["api"]}, headers=headers)
        assert r.status_code == 403
        assert r.json()["title"] == "CSRF token missing or wrong"
    # the CSRF check holds for DICOMweb too
    r = client.post("/dicom-web/studies", content=b"",
                    headers={"Content-Type": "multipart/related; type=\"application/dicom\"; "
                                             "boundary=x"})
    assert r.status_code == 403
    assert client.get("/api/me/tokens").json() == []
    refusals = [r for r in _audit(services) if r[1] == "session.csrf"]
    assert refusals == [(f"user:{alice.user_id}", "session.csrf", str(alice.user_id),
                         "refused", "CSRF token missing or wrong")] * 4
    r = client.post("/api/me/tokens", json={"scopes": ["api"]}, headers={CSRF: csrf})
    assert r.status_code == 201
    assert [t["id"] for t in client.get("/api/me/tokens").json()] == [r.json()["id"]]


def test_personal_token_scopes(client: TestClient, alice: Person, services: Services) -> None:
    csrf = login(client, alice)
    api = client.post("/api/me/tokens", json={"scopes": ["api"], "label": "script"},
                      headers={CSRF: csrf}).json()
    web = client.post("/api/me/tokens", json={"scopes": ["dicomweb"], "valid_days": 30},
                      headers={CSRF: csrf}).json()
    assert api["scopes"] == ["api"] and web["scopes"] == ["dicomweb"]
    client.post("/api/auth/logout", headers={CSRF: csrf})
    client.cookies.clear()

    def call(token: str, path: str, method: str = "GET") -> int:
        status: int = client.request(method, path,
                                     headers={"Authorization": f"Bearer {token}"}).status_code
        return status

    assert call(api["token"], "/dicom-web/studies") == 401
    assert call(api["token"], "/api/me") == 200
    assert call(web["token"], "/dicom-web/studies") in (200, 204)
    assert call(web["token"], "/api/me") == 401
    assert call("not-a-token", "/api/me") == 401
    # a token cannot issue tokens
    r = client.post("/api/me/tokens", json={"scopes": ["dicomweb"]},
                    headers={"Authorization": f"Bearer {api['token']}"})
    assert r.status_code == 403
    listed = client.get("/api/me/tokens", headers={"Authorization": f"Bearer {api['token']}"})
    assert {(t["id"], t["label"], tuple(t["scopes"]), t["revoked"]) for t in listed.json()} == {
        (api["id"], "script", ("api",), False), (web["id"], None, ("dicomweb",), False)}
    # bearer tokens need no CSRF header; revoking ends the token
    assert call(api["token"], f"/api/me/tokens/{web['id']}", "DELETE") == 204
    assert call(web["token"], "/dicom-web/studies") == 401
    assert call(api["token"], f"/api/me/tokens/{web['id']}", "DELETE") == 404
    # another person's token is not theirs to revoke
    bob = add_person(services, "bob")
    bob_id, _ = accounts(services).issue_token(bob.user_id, ["api"])
    assert call(api["token"], f"/api/me/tokens/{bob_id}", "DELETE") == 404
    # a disabled person's tokens stop working
    accounts(services).disable(alice.user_id, actor="test")
    assert call(api["token"], "/api/me") == 401


def test_logout_ends_the_session(client: TestClient, alice: Person) -> None:
    csrf = login(client, alice)
    cookie = client.cookies["dicom_session"]
    r = client.post("/api/auth/logout")
    assert r.status_code == 403  # a complete session logs out with the CSRF token only
    r = client.post("/api/auth/logout", headers={CSRF: csrf})
    assert r.status_code == 204
    assert "dicom_session" not in client.cookies
    assert client.get("/api/me").status_code == 401
    client.cookies.set("dicom_session", cookie)
    assert client.get("/api/me").status_code == 401


def test_sessions_expire_and_idle_deadlines_move(client: TestClient, alice: Person,
                                                 services: Services) -> None:
    login(client, alice)
    with services.db.session() as s:
        created, expires = s.execute(select(WebSession.created_at, WebSession.expires_at)
                                     .where(WebSession.second_factor_done.is_(True))).one()
        # opened 30 minutes ago, 10 minutes left: using it moves the idle deadline
        s.execute(update(WebSession).values(created_at=created - (expires - created) / 2,
                                            expires_at=created + (expires - created) / 6))
    assert client.get("/api/me").status_code == 200
    with services.db.session() as s:
        moved = s.scalar(select(WebSession.expires_at)
                         .where(WebSession.second_factor_done.is_(True)))
        assert moved is not None and moved > created + (expires - created) / 2
        s.execute(update(WebSession).values(expires_at=created))
    assert client.get("/api/me").status_code == 401


def test_disabling_and_resetting_end_sessions(client: TestClient, alice: Person,
                                              services: Services) -> None:
    login(client, alice)
    accounts(services).reset_totp(alice.user_id, actor="test")
    assert client.get("/api/me").status_code == 401
    assert password_step(client, alice).json()["second_factor"] == "enrol"
    accounts(services).disable(alice.user_id, actor="test")
    r = password_step(client, alice)
    assert r.status_code == 403
    assert r.json()["title"] == "account disabled"


def test_login_attempts_are_rate_limited(client: TestClient, alice: Person) -> None:
    for _ in range(20):
        assert client.post("/api/auth/login", json={"username": "nobody",
                                                     "password": "x"}).status_code == 401
    r = password_step(client, alice)
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert client.post("/api/auth/totp", json={"code": "123456"}).status_code == 429
    # the rest of the API is not limited
    assert client.get("/api/me").status_code == 401


def test_cookie_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DICOM_SERVICE_COOKIE_SECURE", raising=False)
    assert Settings().cookie_secure is True
    assert Settings.from_env().cookie_secure is True
    monkeypatch.setenv("DICOM_SERVICE_COOKIE_SECURE", "false")
    assert Settings.from_env().cookie_secure is False
    monkeypatch.setenv("DICOM_SERVICE_COOKIE_SECURE", "maybe")
    with pytest.raises(ConfigError, match="COOKIE_SECURE must be true or false"):
        Settings.from_env()
    monkeypatch.delenv("DICOM_SERVICE_COOKIE_SECURE")
    services = build(tmp_path / "data")
    try:
        assert services.settings.cookie_secure is True
        services.care.add_centre(CENTRE, actor="test")
        person = add_person(services)
        with TestClient(create_app(services), base_url="https://testserver") as client:
            r = password_step(client, person)
            session = next(c for c in r.headers.get_list("set-cookie")
                           if c.startswith("dicom_session="))
            flags = {f.strip().lower() for f in session.split(";")[1:]}
            assert flags == {"httponly", "path=/", "samesite=strict", "secure"}
            r = client.post("/api/auth/totp", json={"code": person.code(current_step())})
            csrf = next(c for c in r.headers.get_list("set-cookie")
                        if c.startswith("dicom_csrf="))
            flags = {f.strip().lower() for f in csrf.split(";")[1:]}
            assert flags == {"path=/", "samesite=strict", "secure"}  # readable by the page
            assert client.get("/api/me").status_code == 200
    finally:
        services.close()


def test_no_secret_is_logged_or_stored_in_clear(client: TestClient, services: Services,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bob = add_person(services, "bob", enrolled=False)
    r = password_step(client, bob)
    totp = pyotp.parse_uri(r.json()["otpauth_uri"])
    assert isinstance(totp, pyotp.TOTP)
    pending = client.cookies["dicom_session"]
    code = totp.generate_otp(current_step())
    r = client.post("/api/auth/totp/confirm", json={"code": code})
    codes, csrf = r.json()["recovery_codes"], r.json()["csrf_token"]
    session = client.cookies["dicom_session"]
    token = client.post("/api/me/tokens", json={"scopes": ["api"]},
                        headers={CSRF: csrf}).json()["token"]
    client.post("/api/auth/login", json={"username": "bob", "password": "a wrong password"})
    secrets = [PASSWORD, "a wrong password", pending, session, token, *codes,
               *(c.replace("-", "") for c in codes)]
    for secret in [*secrets, code, totp.secret, csrf]:
        assert secret not in caplog.text
    stored = b"".join(p.read_bytes() for p in (services.settings.data_dir).glob("index.sqlite3*"))
    for secret in secrets:
        assert secret.encode() not in stored
    with services.db.session() as s:
        audit = " ".join(f"{e.actor} {e.action} {e.object_id} {e.detail}"
                         for e in s.scalars(select(AuditEvent)).all())
    for secret in [*secrets, code, totp.secret, csrf]:
        assert secret not in audit


def test_the_routes_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/auth/login", "/api/auth/totp", "/api/auth/totp/confirm", "/api/auth/logout",
            "/api/me", "/api/me/tokens", "/api/me/tokens/{token_id}"} <= set(paths)
