"""The service as an administrator meets it: the demo, the REST API, TLS."""

from __future__ import annotations

import argparse
import datetime
import os
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

import dicom_service
from dicom_service import cli
from dicom_service.app import build_services
from dicom_service.config import Settings
from dicom_service.demo import (
    CREDENTIALS_FILE,
    DEMO_CT_SLICES,
    DEMO_PEOPLE,
    DemoAccount,
    read_credentials,
    seed_network,
)
from dicom_service.errors import ConfigError
from tests.conftest import CENTRE, PEER
from tests.support.peers import echoscu, free_port, peer_env, start_process, stop_process
from tests.support.service import ServiceProcess


def _demo_login(client: httpx.Client, base: str, account: DemoAccount) -> None:
    """The two login steps of the API with a demo account's password and TOTP key."""
    first = client.post(f"{base}/api/auth/login",
                        json={"username": account.username, "password": account.password})
    assert first.status_code == 200, first.text
    assert first.json()["second_factor"] == "totp"  # enrolled by the demo already
    second = client.post(f"{base}/api/auth/totp", json={"code": account.totp().now()})
    assert second.status_code == 200, second.text


def test_demo_loads_the_sample_set_through_c_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    dicom_port, http_port = free_port(), free_port()
    log = tmp_path / "demo.log"
    expected = DEMO_CT_SLICES + 16  # the CT series, and the sample set's other instances
    proc = start_process([sys.executable, "-m", "dicom_service.cli", "serve", "--demo",
                          "--data-dir", str(data), "--dicom-port", str(dicom_port),
                          "--http-port", str(http_port)], log_path=log,
                         env=peer_env({"DICOM_SERVICE_COOKIE_SECURE": "false"}))
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 240
        while "passwords and TOTP keys" not in log.read_text() \
                and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            assert "demo data could not be loaded" not in log.read_text(), log.read_text()
            time.sleep(0.5)
        text = log.read_text()
        assert f"demo loaded: {expected} instances stored, 0 refused" in text, text[-2000:]
        assert f"log in at http://127.0.0.1:{http_port}/app/ as lead, " in text
        health = httpx.get(f"{base}/health", trust_env=False)
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        metrics = httpx.get(f"{base}/metrics", trust_env=False).text
        assert f"dicom_service_instances_stored_total {expected}.0" in metrics

        credentials = data / CREDENTIALS_FILE
        assert f"{credentials} (readable by you only)" in text
        assert credentials.stat().st_mode & 0o777 == 0o600
        accounts = read_credentials(credentials)
        assert sorted(accounts) == sorted(p.username for p in DEMO_PEOPLE)
        for account in accounts.values():  # secrets are in the file, never in the log
            assert account.password not in text
            assert account.totp().secret not in text

        with httpx.Client(trust_env=False, timeout=30) as lead:
            _demo_login(lead, base, accounts["lead"])
            mine = {p["state"]: p for p in lead.get(f"{base}/api/panels").json()}
            assert sorted(mine) == ["draft", "review"]
            assert mine["review"]["is_lead"] and mine["draft"]["urgent"]
            panel_id = mine["review"]["id"]
            panel = lead.get(f"{base}/api/panels/{panel_id}").json()
            assert panel["area_code"] == "VASCA" and len(panel["studies"]) == 1
            members = lead.get(f"{base}/api/panels/{panel_id}/members").json()
            assert sorted(m["status"] for m in members) == ["accepted", "accepted", "invited"]
            kinds = [c["kind"] for c in
                     lead.get(f"{base}/api/panels/{panel_id}/contributions").json()]
            assert sorted(kinds) == ["contribution", "contribution", "info_request"]
            series = lead.get(f"{base}/dicom-web/studies/{panel['studies'][0]}/series",
                              params={"Modality": "CT"}).json()
            counts = [s["00201209"]["Value"][0] for s in series]
            assert DEMO_CT_SLICES in counts, counts
        with httpx.Client(trust_env=False, timeout=30) as guest:
            _demo_login(guest, base, accounts["guest"])
            invited = guest.get(f"{base}/api/panels").json()
            assert [(p["id"], p["membership"]) for p in invited] == [(panel_id, "invited")]
            assert guest.get(f"{base}/api/panels/{mine['draft']['id']}").status_code == 404
    finally:
        stop_process(proc)
    # the synthetic originals were generated in a temporary directory, not kept
    assert not any("demo-sample" in str(p) for p in data.rglob("*"))
    assert len(list((data / "store" / "instances").rglob("*.dcm"))) == expected

    # a second seeding on the same data directory adds nothing
    before = credentials.read_text()
    db = sqlite3.connect(data / "index.sqlite3")
    try:
        enrolled = [r[0] for r in db.execute("SELECT pseudonym FROM enrolments ORDER BY id")]
    finally:
        db.close()
    assert len(enrolled) == 4  # one patient ID under two issuers
    services = build_services(Settings(data_dir=data))
    try:  # the sample set's first two patients, enrolled in this order
        again, panel_ids = seed_network(services, {"Q-4471-ZQF": enrolled[0],
                                                   "NO-ODG-5581": enrolled[1]})
    finally:
        services.close()
    assert again == credentials and credentials.read_text() == before
    assert panel_ids == [panel_id, mine["draft"]["id"]]
    db = sqlite3.connect(data / "index.sqlite3")
    try:
        assert db.execute("SELECT COUNT(*) FROM users").fetchone()[0] == len(DEMO_PEOPLE)
        assert db.execute("SELECT COUNT(*) FROM panels").fetchone()[0] == 2
        assert db.execute("SELECT COUNT(*) FROM expert_group_members").fetchone()[0] == 3
    finally:
        db.close()


def test_admin_api_requires_the_token_and_manages_enrolments(service: ServiceProcess) -> None:
    with service:
        base = f"http://127.0.0.1:{service.http_port}/api"
        token = (service.data_dir / "admin.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(trust_env=False, timeout=30) as client:
            assert client.get(f"{base}/centres").status_code == 401
            wrong = client.get(f"{base}/centres", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert wrong.headers["content-type"] == "application/problem+json"
            assert client.get(f"{base}/centres", headers=auth).json() == [CENTRE]
            assert client.post(f"{base}/centres", json={"name": "Hospital B"},
                               headers=auth).status_code == 201
            dup = client.post(f"{base}/centres", json={"name": "Hospital B"}, headers=auth)
            assert dup.status_code == 409
            peers = client.get(f"{base}/peers", headers=auth).json()
            assert peers == [{"ae_title": PEER, "host": "127.0.0.1", "centre": CENTRE}]
            bad_ae = client.post(f"{base}/peers", headers=auth,
                                 json={"ae_title": "BAD\\AE", "centre": CENTRE})
            assert bad_ae.status_code == 400
            enrolled = client.post(f"{base}/enrolments", headers=auth,
                                   json={"centre": "Hospital B", "patient_id": "SECRET-ID-77"})
            assert enrolled.status_code == 201
            pseudonym = enrolled.json()["pseudonym"]
            assert pseudonym.startswith("ERN-")
            again = client.post(f"{base}/enrolments", headers=auth,
                                json={"centre": "Hospital B", "patient_id": "SECRET-ID-77"})
            assert again.status_code == 409
            assert "SECRET-ID-77" not in again.text
            withdrawn = client.post(f"{base}/enrolments/{pseudonym}/consent/withdraw",
                                    headers=auth)
            assert withdrawn.json() == {"pseudonym": pseudonym, "instances_removed": 0}
            assert client.post(f"{base}/enrolments/ERN-0000000000/consent/withdraw",
                               headers=auth).status_code == 404
    for path, data in service.all_written_bytes():
        assert b"SECRET-ID-77" not in data, path.name


@pytest.mark.parametrize(("env", "message"), [
    ({"DICOM_SERVICE_AE_TITLE": "WAY_TOO_LONG_AE_TITLE"}, "ae_title"),
    ({"DICOM_SERVICE_DICOM_PORT": "70000"}, "dicom_port"),
    ({"DICOM_SERVICE_SECRET": "short"}, "SECRET"),
    ({"DICOM_SERVICE_TLS_CERT": "/nonexistent.pem"}, "tls_cert"),
])
def test_bad_configuration_stops_start_up(tmp_path: Path, env: dict[str, str],
                                          message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(data_dir=tmp_path).with_secrets().validate()
    result = subprocess.run([sys.executable, "-m", "dicom_service.cli", "serve", "--data-dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=60,
                            env={**__import__("os").environ, **env}, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("DICOM_SERVICE_TLS_CERT", str(cert))
    monkeypatch.setenv("DICOM_SERVICE_TLS_KEY", str(key))
    svc = ServiceProcess(tmp_path / "data")
    svc.setup_peer(CENTRE, PEER)
    with svc:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
        ae = AE(ae_title=PEER)
        ae.add_requested_context(Verification, ExplicitVRLittleEndian)
        assoc = ae.associate("localhost", svc.dicom_port, ae_title=svc.ae_title,
                             tls_args=(ctx, "localhost"))
        assert assoc.is_established
        status = assoc.send_c_echo()
        assert int(status.Status) == 0
        assoc.release()
        # a plain-TCP peer (DCMTK without TLS) gets no association
        plain = echoscu("127.0.0.1", svc.dicom_port, svc.ae_title, PEER, timeout=5)
        assert plain.returncode != 0


def test_listener_processes_run_the_package_serve_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another ``dicom_service`` in the working directory (a second checkout,
    # or something planted there): ``python -m`` would load it first.
    planted = tmp_path / "dicom_service"
    planted.mkdir()
    (planted / "__init__.py").write_text("")
    (planted / "cli.py").write_text("print('the planted package')\n")
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir=tmp_path / "data", server_secret=b"s" * 32)
    argv, env = cli.worker_command(argparse.Namespace(verbose=True), settings, 7)
    assert argv[:4] == [sys.executable, "-P", "-m", "dicom_service.cli"]
    assert argv[4:6] == ["--verbose", "dicom-worker"]
    assert argv[argv.index("--dicom-fd") + 1] == "7"
    ran = subprocess.run([*argv[:4], "--version"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    package = Path(dicom_service.__file__).resolve().parent
    assert ran.stdout.strip() == f"dicom-service {dicom_service.__version__} from {package}"


def test_listener_processes_of_an_installed_package_keep_python_s_own_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Installed into site-packages (not editable): that directory is found by
    # the listener anyway; first on PYTHONPATH it would come before the
    # standard library.
    root = str(Path(dicom_service.__file__).resolve().parent.parent)
    monkeypatch.setattr("site.getsitepackages", lambda: [root])
    monkeypatch.setenv("PYTHONPATH", "/opt/extra")
    settings = Settings(data_dir=tmp_path / "data", server_secret=b"s" * 32)
    _, env = cli.worker_command(argparse.Namespace(verbose=False), settings, 7)
    assert env["PYTHONPATH"] == "/opt/extra"
    monkeypatch.setattr("site.getsitepackages", lambda: ["/elsewhere"])
    monkeypatch.setattr("site.getusersitepackages", lambda: root)  # pip install --user
    _, env = cli.worker_command(argparse.Namespace(verbose=False), settings, 7)
    assert env["PYTHONPATH"] == "/opt/extra"
    monkeypatch.setattr("site.getusersitepackages", lambda: "/home/else")
    _, env = cli.worker_command(argparse.Namespace(verbose=False), settings, 7)
    assert env["PYTHONPATH"] == os.pathsep.join([root, "/opt/extra"])
