"""The service as an administrator meets it: the demo, the REST API, TLS."""

from __future__ import annotations

import datetime
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

from dicom_service.config import Settings
from dicom_service.errors import ConfigError
from tests.conftest import CENTRE, PEER
from tests.support.peers import echoscu, free_port, start_process, stop_process
from tests.support.service import ServiceProcess


def test_demo_loads_the_sample_set_through_c_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    dicom_port, http_port = free_port(), free_port()
    log = tmp_path / "demo.log"
    proc = start_process([sys.executable, "-m", "dicom_service.cli", "serve", "--demo",
                          "--data-dir", str(data), "--dicom-port", str(dicom_port),
                          "--http-port", str(http_port)], log_path=log)
    try:
        deadline = time.monotonic() + 120
        while "demo loaded" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.5)
        text = log.read_text()
        assert "demo loaded: 136 instances stored, 0 refused" in text, text[-2000:]
        health = httpx.get(f"http://127.0.0.1:{http_port}/health", trust_env=False)
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        metrics = httpx.get(f"http://127.0.0.1:{http_port}/metrics", trust_env=False).text
        assert "dicom_service_instances_stored_total 136.0" in metrics
    finally:
        stop_process(proc)
    # the synthetic originals were generated in a temporary directory, not kept
    assert not any("demo-sample" in str(p) for p in data.rglob("*"))
    assert len(list((data / "store" / "instances").rglob("*.dcm"))) == 136


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
