"""An app built on a fresh data directory, people in it, and the login steps.

TOTP codes are computed with pyotp from the secret in the otpauth URI, for a
chosen time step: the service refuses a step it has accepted before, so
tests pick their steps explicitly.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyotp
import pytest

from dicom_service.app import Services, build_services
from dicom_service.care.accounts import AccountService
from dicom_service.config import Settings
from dicom_service.web.app import create_app

with warnings.catch_warnings():
    # starlette asks for its httpx fork; the httpx that is installed works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient as TestClient

PASSWORD = "correct horse battery"
CENTRE = "Hospital A"


@dataclass
class Person:
    user_id: int
    username: str
    password: str
    totp: pyotp.TOTP | None
    recovery_codes: list[str]

    def code(self, step: int) -> str:
        assert self.totp is not None
        return self.totp.generate_otp(step)


def current_step() -> int:
    """The current 30 s step, at least 3 s before it ends (a code of the
    previous step is then still inside the service's window)."""
    now = time.time()
    if now % 30 > 27:
        time.sleep(30 - now % 30 + 0.1)
    return int(time.time()) // 30


def wrong_code(person: Person, step: int) -> str:
    """A well-formed code that matches no step of the service's window."""
    valid = {person.code(s) for s in range(step - 2, step + 3)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def build(data_dir: Path, **settings: object) -> Services:
    return build_services(Settings.from_env(data_dir=data_dir, server_secret=b"s" * 32,
                                            **settings))


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build(tmp_path / "data", cookie_secure=False)
    built.care.add_centre(CENTRE, actor="test")
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services)) as c:
        yield c


def accounts(services: Services) -> AccountService:
    assert services.settings.server_secret is not None
    return AccountService(services.db, services.settings.server_secret)


def add_person(services: Services, username: str = "alice", *, enrolled: bool = True,
               admin: bool = False) -> Person:
    """A person; ``enrolled``: TOTP confirmed with a code of the previous step."""
    service = accounts(services)
    user_id = service.create_user(username, display_name=username.title(), password=PASSWORD,
                                  centre=CENTRE, platform_admin=admin, actor="test")
    if not enrolled:
        return Person(user_id, username, PASSWORD, None, [])
    uri = service.begin_totp_enrolment(user_id, actor="test").otpauth_uri
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP)
    codes = service.confirm_totp(user_id, totp.generate_otp(current_step() - 1), actor="test")
    return Person(user_id, username, PASSWORD, totp, codes)


@pytest.fixture
def alice(services: Services) -> Person:
    return add_person(services)


def password_step(client: TestClient, person: Person,
                  password: str | None = None) -> httpx.Response:
    r: httpx.Response = client.post("/api/auth/login", json={
        "username": person.username, "password": password or person.password})
    return r


def login(client: TestClient, person: Person, step: int | None = None) -> str:
    """A complete login; returns the CSRF token."""
    r = password_step(client, person)
    assert r.status_code == 200, r.text
    assert r.json() == {"second_factor": "totp"}
    r = client.post("/api/auth/totp",
                    json={"code": person.code(current_step() if step is None else step)})
    assert r.status_code == 200, r.text
    csrf: str = r.json()["csrf_token"]
    return csrf
