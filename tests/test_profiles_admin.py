"""Tools for administrators to tune and test a profile (issue 3): validation,
dry run, leak check, activation with history, and the service picking up an
activation without a restart."""

from __future__ import annotations

import base64
import io
import logging
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from dicom_service.app import Services, build_services
from dicom_service.config import DEFAULT_PROFILES_DIR, Settings
from dicom_service.db.models import AuditEvent
from dicom_service.db.session import Database
from dicom_service.deidentify import load_profiles
from dicom_service.errors import ConfigError, Conflict, NotFound
from dicom_service.profiles_admin.activation import ActiveProfile, activate, history
from dicom_service.profiles_admin.validation import validate_recipe_text
from dicom_service.web.app import create_app
from sample_data.generate import Manifest
from tests.conftest import CENTRE, PEER
from tests.support.peers import free_port, storescu
from tests.support.service import ServiceProcess

with warnings.catch_warnings():
    # starlette asks for its httpx fork; the httpx that is installed works
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

TOKEN = "t" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BAD_RECIPE = """FORMAT dicom
%header
REMOVE PatientName
FROB PatientID
REPLACE PatientSex 12345678901234567890
REMOVE PatientName
"""


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path / "data", admin_token=TOKEN,
                        server_secret=b"s" * 32, profiles_dir=DEFAULT_PROFILES_DIR)
    built = build_services(settings)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services)) as c:
        yield c


def _file(sample_set: tuple[Path, Manifest], label: str) -> tuple[Path, dict[str, object]]:
    directory, manifest = sample_set
    entry = next(f for f in manifest.files if f["label"] == label)
    return directory / entry["path"], dict(entry)


def _broken_profiles(tmp_path: Path) -> tuple[Path, int]:
    """A copy of deid_profiles with one bad line in basic.dicom; returns (dir, line)."""
    broken = tmp_path / "profiles"
    shutil.copytree(DEFAULT_PROFILES_DIR, broken)
    recipe = broken / "basic.dicom"
    lines = recipe.read_text(encoding="utf-8").splitlines()
    n = next(i for i, line in enumerate(lines) if line.startswith("REMOVE "))
    lines[n] = "EXPLODE PatientName"
    recipe.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return broken, n + 1


# -- validation -----------------------------------------------------------------


def test_validate_reports_every_error_with_its_line() -> None:
    problems = validate_recipe_text(BAD_RECIPE, "mine.dicom")
    found = {(p.file, p.line) for p in problems}
    assert ("mine.dicom", 4) in found  # unknown action
    assert ("mine.dicom", 6) in found  # second rule for PatientName
    assert all(p.reason for p in problems)
    assert validate_recipe_text((DEFAULT_PROFILES_DIR / "basic.dicom").read_text()) == []


def test_validate_endpoint(client: TestClient) -> None:
    r = client.post("/api/profiles/validate?filename=site/mine.dicom", content=BAD_RECIPE,
                    headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is False
    messages = [e["message"] for e in body["errors"]]
    assert any(m.startswith("site/mine.dicom:4: ") for m in messages), messages
    assert [e["line"] for e in body["errors"]] == sorted(e["line"] for e in body["errors"])
    ok = client.post("/api/profiles/validate", content="FORMAT dicom\n%header\nREMOVE "
                     "PatientAddress\n", headers={**AUTH, "Content-Type": "text/plain"})
    assert ok.json() == {"ok": True, "file": "recipe.dicom", "errors": []}
    bad_name = client.post("/api/profiles/validate?filename=../x", content="FORMAT dicom\n",
                           headers={**AUTH, "Content-Type": "text/plain"})
    assert bad_name.status_code == 400
    assert bad_name.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("method,path", [
    ("get", "/api/profiles"), ("get", "/api/profiles/basic"),
    ("post", "/api/profiles/validate"), ("post", "/api/profiles/basic/dry-run"),
    ("post", "/api/profiles/basic/leak-check"), ("post", "/api/profiles/activations"),
    ("get", "/api/profiles/activations"), ("get", "/api/profiles/samples"),
])
def test_every_route_is_for_the_administrator(client: TestClient, method: str,
                                              path: str) -> None:
    r = client.request(method, path, headers={"Authorization": "Bearer wrong-token-0123456789"})
    assert r.status_code == 401


# -- list, show -------------------------------------------------------------------


def test_list_and_show(client: TestClient) -> None:
    body = client.get("/api/profiles", headers=AUTH).json()
    on_disk = load_profiles(DEFAULT_PROFILES_DIR)
    names = [p["name"] for p in body["profiles"]]
    assert names == on_disk.names()
    assert body["active"]["source"] == "profiles.toml"
    assert body["active"]["name"] == on_disk.active.name
    assert [p["name"] for p in body["profiles"] if p["active"]] == [on_disk.active.name]
    basic = next(p for p in body["profiles"] if p["name"] == "basic")
    assert basic["sha256"] == on_disk.get("basic").sha256
    assert body["history"] == []
    shown = client.get("/api/profiles/basic", headers=AUTH).json()
    assert shown["recipe_texts"][0]["file"] == "basic.dicom"
    assert shown["recipe_texts"][0]["text"] == (DEFAULT_PROFILES_DIR / "basic.dicom").read_text()
    assert client.get("/api/profiles/nosuch", headers=AUTH).status_code == 404
    assert client.get("/api/profiles/NOT_A_NAME", headers=AUTH).status_code == 422


# -- dry run ----------------------------------------------------------------------


def _row(diff: list[dict[str, object]], path: str) -> dict[str, object]:
    return next(r for r in diff if r["path"] == path)


def test_dry_run_upload_shows_the_diff_and_keeps_nothing(
        client: TestClient, services: Services, sample_set: tuple[Path, Manifest],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path, _ = _file(sample_set, "ct")
    original = pydicom.dcmread(path)
    name = str(original.PatientName)
    with path.open("rb") as fh:
        r = client.post("/api/profiles/basic/dry-run", headers=AUTH,
                        files={"file": ("upload.dcm", fh, "application/dicom")})
    assert r.status_code == 200, r.text
    body = r.json()
    patient = _row(body["diff"], "PatientName")
    assert patient["tag"] == "(0010,0010)" and patient["vr"] == "PN"
    assert patient["before"] == name
    assert patient["after"] == body["pseudonym"] and patient["action"] == "replaced"
    assert str(body["pseudonym"]).startswith("DRYRUN-")
    removed = [r for r in body["diff"] if r["action"] == "removed"]
    assert any(r["keyword"] == "InstitutionAddress" for r in removed)
    assert any(str(r["path"]).startswith("(0029,") for r in removed)  # private tags
    nested = [r for r in body["diff"] if "[0]." in str(r["path"])]
    assert nested, "sequence items are flattened with paths"
    assert body["counts"]["removed"] == len(removed)
    preview = body["preview"]
    assert preview["outlined"] is False and "no Clean Pixel Data" in preview["note"]
    image = Image.open(io.BytesIO(base64.b64decode(preview["png_base64"])))
    assert image.format == "PNG" and max(image.size) <= 512

    # the same as a bare application/dicom body; changes_only leaves out kept elements
    r2 = client.post("/api/profiles/basic/dry-run?changes_only=true", content=path.read_bytes(),
                     headers={**AUTH, "Content-Type": "application/dicom"})
    assert r2.status_code == 200
    assert all(row["action"] != "kept" for row in r2.json()["diff"])

    # nothing of the instance in the data directory or the log
    written = b"".join(p.read_bytes() for p in services.settings.data_dir.rglob("*")
                       if p.is_file())
    for value in (name, str(original.PatientID), str(original.SOPInstanceUID)):
        assert value.encode() not in written
        assert value not in caplog.text


def test_dry_run_on_a_sample_outlines_cleaned_pixels(client: TestClient) -> None:
    r = client.post("/api/profiles/basic-pixels/dry-run?sample=sc_rgb", headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"]["path"].endswith(".dcm")
    assert body["pixels"]["reported"] is True
    assert body["pixels"]["regions"], "burned-in text was found and blanked"
    assert body["preview"]["outlined"] is True
    image = Image.open(io.BytesIO(base64.b64decode(body["preview"]["png_base64"])))
    pixels = np.asarray(image.convert("RGB"))
    red = int(np.all(pixels == (255, 0, 0), axis=-1).sum())
    assert red > 100


def test_dry_run_refusals_are_problems(client: TestClient) -> None:
    garbage = client.post("/api/profiles/basic/dry-run", content=b"\x00garbage" * 100,
                          headers={**AUTH, "Content-Type": "application/dicom"})
    assert garbage.status_code == 400
    assert garbage.headers["content-type"].startswith("application/problem+json")
    assert "garbage" not in garbage.text
    neither = client.post("/api/profiles/basic/dry-run", headers=AUTH)
    assert neither.status_code == 400
    wrong_type = client.post("/api/profiles/basic/dry-run", content=b"x" * 200,
                             headers={**AUTH, "Content-Type": "image/png"})
    assert wrong_type.status_code == 415
    unknown = client.post("/api/profiles/basic/dry-run?sample=nosuch", headers=AUTH)
    assert unknown.status_code == 404
    no_profile = client.post("/api/profiles/nosuch/dry-run?sample=ct", headers=AUTH)
    assert no_profile.status_code == 404


# -- leak check -------------------------------------------------------------------


def test_leak_check_reports_what_survives(client: TestClient) -> None:
    r = client.post("/api/profiles/basic/leak-check", headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    summary = body["summary"]
    assert body["sample"]["files"] > 100
    assert summary["refused_files"] == 0
    assert summary["original_uids_surviving"] == 0
    # the basic profile does not clean pixels: burned-in text survives, nothing else does
    assert summary["pixel_cleaning"] is False
    assert set(summary["survived_by_kind"]) == {"pixels"}
    element = [p for p in body["planted"] if p["kind"] == "element"]
    assert element and not any(p["survived"] for p in element)
    burned = [p for p in body["planted"] if p["kind"] == "pixels"]
    assert burned and all(p["survived"] and p["found"] for p in burned)


# -- activation -------------------------------------------------------------------


def test_activation_is_checked_audited_and_applied(client: TestClient,
                                                   services: Services) -> None:
    basic = load_profiles(DEFAULT_PROFILES_DIR).get("basic")
    wrong = client.post("/api/profiles/activations", headers=AUTH, json={
        "name": "basic", "version": basic.version, "sha256": "0" * 64})
    assert wrong.status_code == 409
    stale = client.post("/api/profiles/activations", headers=AUTH, json={
        "name": "basic", "version": "999", "sha256": basic.sha256})
    assert stale.status_code == 409
    missing = client.post("/api/profiles/activations", headers=AUTH, json={
        "name": "nosuch", "version": "1", "sha256": basic.sha256})
    assert missing.status_code == 404
    ok = client.post("/api/profiles/activations", headers=AUTH, json={
        "name": "basic", "version": basic.version, "sha256": basic.sha256})
    assert ok.status_code == 201, ok.text
    assert services.active_profile().sha256 == basic.sha256  # this process: at once
    listed = client.get("/api/profiles", headers=AUTH).json()
    assert listed["active"]["source"] == "activation" and listed["active"]["name"] == "basic"
    assert listed["history"][0]["actor"] == "admin"
    with services.db.session() as s:
        events = s.query(AuditEvent).filter(AuditEvent.action == "profile.activate").all()
    assert len(events) == 1 and events[0].object_id == f"basic v{basic.version}"
    assert client.get("/health").json()["profile"] == f"basic v{basic.version}"


def test_another_process_activation_is_seen_within_the_interval(services: Services) -> None:
    now = [0.0]
    resolver = ActiveProfile(services.db, services.settings.profiles_dir, services.profiles,
                             interval=1.0, clock=lambda: now[0])
    first = resolver.get()
    assert first.name == services.profiles.active.name
    other = "basic" if first.name != "basic" else "default"
    other_db = Database(services.settings.db_url)  # as another process would
    try:
        activate(other_db, services.settings.profiles_dir, other, actor="test")
    finally:
        other_db.dispose()
    now[0] = 0.5
    assert resolver.get() is first  # cached: no query inside the interval
    now[0] = 1.6
    assert resolver.get().name == other


def test_a_broken_profile_cannot_be_activated(services: Services, tmp_path: Path) -> None:
    broken, line = _broken_profiles(tmp_path)
    with pytest.raises(Conflict, match=rf"basic\.dicom:{line}: "):
        activate(services.db, broken, "basic", actor="test")
    with pytest.raises(NotFound):
        activate(services.db, DEFAULT_PROFILES_DIR, "nosuch", actor="test")
    assert history(services.db) == []


def test_start_up_refuses_an_activation_the_disk_no_longer_matches(
        services: Services, tmp_path: Path) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(DEFAULT_PROFILES_DIR, changed)
    activate(services.db, changed, "basic", actor="test")
    recipe = changed / "basic.dicom"
    recipe.write_text(recipe.read_text() + "\n# an edit after the activation\n")
    resolver = ActiveProfile(services.db, changed, load_profiles(changed))
    with pytest.raises(ConfigError, match="activate"):
        resolver.check()


# -- the running service ---------------------------------------------------------


def _methods(service: ServiceProcess) -> dict[str, str]:
    out = {}
    for path in service.stored_files():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out[str(ds.SOPInstanceUID)] = str(ds.DeidentificationMethod)
    return out


def test_activation_reaches_the_next_instance_without_restart(
        service: ServiceProcess, sample_set: tuple[Path, Manifest]) -> None:
    directory, manifest = sample_set
    patient = next(p for p in manifest.patients if p["patient_id"] == "Q-4471-ZQF")
    service.enrol(CENTRE, patient["patient_id"], patient["issuer"])
    slices = [directory / f["path"] for f in manifest.files if f["label"] == "ct"][:6]
    on_disk = load_profiles(DEFAULT_PROFILES_DIR)
    first = on_disk.active
    other = on_disk.get("basic" if first.name != "basic" else "default")
    with service:
        sent = storescu(slices[:3], "127.0.0.1", service.dicom_port, service.ae_title, PEER)
        assert sent.returncode == 0, sent.stderr
        before = _methods(service)
        assert len(before) == 3
        assert all(f"profile {first.name} v{first.version}" in m for m in before.values())
        service.cli("profiles", "activate", other.name, "--version", other.version,
                    "--sha256", other.sha256)
        time.sleep(1.5)  # every listener process looks at most once a second
        # several associations, so that both listener processes get some
        for f in slices[3:]:
            sent = storescu([f], "127.0.0.1", service.dicom_port, service.ae_title, PEER)
            assert sent.returncode == 0, sent.stderr
        after = {k: v for k, v in _methods(service).items() if k not in before}
        assert len(after) == 3
        assert all(f"profile {other.name} v{other.version}" in m for m in after.values()), after
        rows = service.query("SELECT profile_name FROM instances")
        assert sorted(r[0] for r in rows) == sorted([first.name] * 3 + [other.name] * 3)


def test_serve_refuses_to_start_with_a_broken_active_profile(tmp_path: Path) -> None:
    broken, line = _broken_profiles(tmp_path)
    env = {**os.environ, "DICOM_SERVICE_PROFILES_DIR": str(broken)}
    result = subprocess.run(
        [sys.executable, "-m", "dicom_service.cli", "serve", "--data-dir", str(tmp_path / "d"),
         "--dicom-port", str(free_port()), "--http-port", str(free_port())],
        capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode != 0
    assert f"basic.dicom:{line}:" in result.stderr


def test_dry_run_upload_over_the_limit_is_refused(client: TestClient,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from dicom_service.web import profiles as profiles_routes

    monkeypatch.setattr(profiles_routes, "MAX_UPLOAD_BYTES", 1000)
    r = client.post("/api/profiles/basic/dry-run", content=b"\x00" * 5000,
                    headers={**AUTH, "Content-Type": "application/dicom"})
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")


# -- draft dry run --------------------------------------------------------------


def test_draft_dry_run_shows_what_an_unsaved_edit_changes(client: TestClient) -> None:
    """An administrator edits basic.dicom (keep Study Description instead of
    removing it) and sees the effect before saving; the file on disk is untouched."""
    on_disk = (DEFAULT_PROFILES_DIR / "basic.dicom").read_text(encoding="utf-8")
    assert "REMOVE (0008,1030)\n" in on_disk
    edited = on_disk.replace("REMOVE (0008,1030)\n", "KEEP (0008,1030)\n")
    line = on_disk.splitlines().index("REMOVE (0008,1030)") + 1

    saved = client.post("/api/profiles/basic/dry-run?sample=ct", headers=AUTH).json()
    draft = client.post("/api/profiles/basic/draft-dry-run", headers=AUTH, json={
        "file": "basic.dicom", "text": edited, "sample": "ct"})
    assert draft.status_code == 200, draft.text
    before = {r["keyword"]: r for r in saved["diff"]}["StudyDescription"]
    after = {r["keyword"]: r for r in draft.json()["diff"]}["StudyDescription"]
    assert before["action"] == "removed"
    assert after["action"] == "kept"
    assert after["rule"] == f"basic.dicom:{line}"
    assert draft.json()["source"]["draft"] == "basic.dicom"
    assert (DEFAULT_PROFILES_DIR / "basic.dicom").read_text(encoding="utf-8") == on_disk


def test_draft_dry_run_names_the_bad_line(client: TestClient) -> None:
    on_disk = (DEFAULT_PROFILES_DIR / "basic.dicom").read_text(encoding="utf-8")
    lines = on_disk.splitlines()
    at = lines.index("%header") + 1
    lines.insert(at, "FROB PatientSex")
    r = client.post("/api/profiles/basic/draft-dry-run", headers=AUTH, json={
        "file": "basic.dicom", "text": "\n".join(lines), "sample": "ct"})
    assert r.status_code == 422
    assert r.json()["detail"] == f"basic.dicom:{at + 1}: unknown action 'FROB'"
    other = client.post("/api/profiles/basic/draft-dry-run", headers=AUTH, json={
        "file": "options/retain_uids.dicom", "text": on_disk, "sample": "ct"})
    assert other.status_code == 404
    assert "basic.dicom" in other.json()["detail"]
    unauthenticated = client.post("/api/profiles/basic/draft-dry-run", json={
        "file": "basic.dicom", "text": on_disk, "sample": "ct"})
    assert unauthenticated.status_code == 401
