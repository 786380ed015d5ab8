"""``dicom-service users``: add, list, unlock, disable, reset-totp, totp-enrol."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pyotp
import pytest

from dicom_service.cli import main
from dicom_service.web.app import create_app
from tests.accounts.conftest import (
    CENTRE,
    PASSWORD,
    Person,
    TestClient,
    build,
    current_step,
    wrong_code,
)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DICOM_SERVICE_SECRET", "s" * 32)
    monkeypatch.setenv("DICOM_SERVICE_COOKIE_SECURE", "false")
    data = tmp_path / "data"
    assert main(["centres", "add", CENTRE, "--data-dir", str(data)]) == 0
    return data


def test_add_enrol_lock_and_unlock(data_dir: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    d = ["--data-dir", str(data_dir)]
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    status, out, err = _run(capsys, "users", "add", "alice", "--display-name", "Alice A",
                            "--centre", CENTRE, "--password-stdin", *d)
    assert status == 0
    assert out == "" and re.fullmatch(r"user \d+ added\n", err)
    user_id = int(err.split()[1])
    # a generated password is printed once and is the only place it exists
    status, out, _ = _run(capsys, "users", "add", "root", "--display-name", "Root", "--admin",
                          *d)
    assert status == 0
    generated = out.strip()
    assert len(generated) >= 12
    # bootstrap of the second factor
    status, out, _ = _run(capsys, "users", "totp-enrol", "alice", *d)
    assert status == 0
    totp = pyotp.parse_uri(out.strip())
    assert isinstance(totp, pyotp.TOTP)
    step = current_step()
    status, out, _ = _run(capsys, "users", "totp-enrol", "alice", "--code",
                          totp.generate_otp(step - 1), *d)
    assert status == 0
    codes = out.split()
    assert len(codes) == 10
    status, out, _ = _run(capsys, "users", "list", *d)
    assert out.splitlines() == [f"{user_id}\talice\tAlice A\t{CENTRE}\ttotp",
                                f"{user_id + 1}\troot\tRoot\t\tadmin"]

    services = build(data_dir)
    alice = Person(user_id, "alice", PASSWORD, totp, codes)
    try:
        with TestClient(create_app(services)) as client:
            root = client.post("/api/auth/login", json={"username": "root",
                                                        "password": generated})
            assert root.json()["second_factor"] == "enrol"
            client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
            for _ in range(5):
                client.post("/api/auth/totp", json={"code": wrong_code(alice, step)})
            _, out, _ = _run(capsys, "users", "list", *d)
            assert out.splitlines()[0].endswith("\tlocked,totp")
            r = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
            assert r.status_code == 423
            assert _run(capsys, "users", "unlock", "alice", *d)[:2] == (0, "alice unlocked\n")
            client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
            r = client.post("/api/auth/totp", json={"code": totp.generate_otp(step)})
            assert r.status_code == 200
            assert client.get("/api/me").json()["username"] == "alice"
            # disabling ends the session at once
            assert _run(capsys, "users", "disable", "alice", *d)[0] == 0
            assert client.get("/api/me").status_code == 401
    finally:
        services.close()


def test_reset_totp_and_set_password(data_dir: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    d = ["--data-dir", str(data_dir)]
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "bob", "--display-name", "Bob", "--password-stdin", *d]) == 0
    _, out, _ = _run(capsys, "users", "totp-enrol", "bob", *d)
    totp = pyotp.parse_uri(out.strip())
    assert isinstance(totp, pyotp.TOTP)
    # a wrong code is refused (and counted), a right one confirms
    status, _, err = _run(capsys, "users", "totp-enrol", "bob", "--code",
                          wrong_code(Person(0, "bob", PASSWORD, totp, []), current_step()), *d)
    assert (status, err) == (2, "dicom-service: wrong or already used code\n")
    assert _run(capsys, "users", "totp-enrol", "bob", "--code",
                totp.generate_otp(current_step()), *d)[0] == 0
    status, _, err = _run(capsys, "users", "totp-enrol", "bob", *d)
    assert status == 2 and "enrolled already" in err
    assert _run(capsys, "users", "reset-totp", "bob", *d)[:2] == (0, "bob second factor reset\n")
    _, out, _ = _run(capsys, "users", "totp-enrol", "bob", *d)
    assert pyotp.parse_uri(out.strip()).secret != totp.secret
    status, out, _ = _run(capsys, "users", "set-password", "bob", *d)
    assert status == 0 and len(out.strip()) >= 12


@pytest.mark.parametrize(("argv", "message"), [
    (["users", "add", "Bad Name", "--display-name", "X"], "username must be"),
    (["users", "add", "carol", "--display-name", "X", "--centre", "Nowhere"], "no such centre"),
    (["users", "add", "alice", "--display-name", "X"], "exists already"),
    (["users", "unlock", "nobody"], "no user with that username"),
])
def test_refusals_name_the_rule(data_dir: Path, capsys: pytest.CaptureFixture[str],
                                argv: list[str], message: str) -> None:
    d = ["--data-dir", str(data_dir)]
    assert main(["users", "add", "alice", "--display-name", "Alice", *d]) == 0
    capsys.readouterr()
    status, _, err = _run(capsys, *argv, *d)
    assert status == 2
    assert message in err


def test_a_short_password_is_refused_without_echoing_it(
        data_dir: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short-pw\n"))
    status, out, err = _run(capsys, "users", "add", "dave", "--display-name", "Dave",
                            "--password-stdin", "--data-dir", str(data_dir))
    assert status == 2
    assert "at least 12 characters" in err
    assert "short-pw" not in out + err
