"""STOW-RS into the same ingest pipeline as C-STORE, with the uploader's token
deciding the enrolment; PS3.18 10.5.3 responses."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import httpx
import pydicom
import pytest
from requests import HTTPError

from dicom_service.dicom.status import StoreStatus
from sample_data.generate import write_ct_series
from tests.conftest import CENTRE
from tests.dicomweb.conftest import TRANSFER_SYNTAXES, Loaded


def _stow(loaded: Loaded, token: str, datasets: list[pydicom.Dataset]) -> httpx.Response:
    """STOW-RS by hand, to see the status code (dicomweb-client hides 202)."""
    body = b""
    for ds in datasets:
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        body += b"--b\r\nContent-Type: application/dicom\r\n\r\n" + buf.getvalue() + b"\r\n"
    return httpx.post(loaded.url + "/dicom-web/studies", content=body + b"--b--\r\n",
                      headers={"Authorization": f"Bearer {token}", "Content-Type":
                               'multipart/related; type="application/dicom"; boundary=b'})


@pytest.mark.parametrize("ts", list(TRANSFER_SYNTAXES), ids=list(TRANSFER_SYNTAXES.values()))
def test_stow_round_trip_of_every_transfer_syntax(loaded: Loaded, ts: str) -> None:
    """A sample file stored through STOW-RS is the same instance as through C-STORE."""
    f = loaded.file(ts)
    study, series, sop = loaded.stored_uids(f)
    client = loaded.client(loaded.pseudonym_of(f))
    original = pydicom.dcmread(loaded.directory / f["path"])
    response = client.store_instances([original])
    (ref,) = response.ReferencedSOPSequence
    assert ref.ReferencedSOPInstanceUID == sop  # keyed pseudonym: idempotent re-send
    assert ref.RetrieveURL.endswith(f"/studies/{study}/series/{series}/instances/{sop}")
    assert "FailedSOPSequence" not in response
    back = client.retrieve_instance(study, series, sop,
                                    media_types=(("application/dicom", "*"),))
    assert back.PatientID == loaded.pseudonym_of(f)
    assert back.PatientIdentityRemoved == "YES"
    assert loaded.service.query("SELECT count(*) FROM instances WHERE sop_uid = ?",
                                sop) == [(1,)]


def _fresh(loaded: Loaded, tmp_path: Path, n: int = 3) -> tuple[str, str, list[Path]]:
    patient = f"STOW-{uuid.uuid4().hex[:8]}"
    pseudonym = loaded.service.enrol(CENTRE, patient, "HOSP-A")
    token = loaded.service.cli("tokens", "issue", "--enrolment", pseudonym).stdout.strip()
    loaded.tokens[pseudonym] = token
    files = write_ct_series(tmp_path / patient, n=n, size=64, seed=11, patient_id=patient,
                            issuer="HOSP-A")
    return pseudonym, token, files


def test_stow_of_a_new_series_is_deidentified_and_searchable(loaded: Loaded,
                                                             tmp_path: Path) -> None:
    pseudonym, _, files = _fresh(loaded, tmp_path)
    client = loaded.client(pseudonym)
    datasets = [pydicom.dcmread(p) for p in files]
    response = client.store_instances(datasets)
    assert len(response.ReferencedSOPSequence) == 3
    (study,) = client.search_for_studies()
    assert study["00100020"]["Value"] == [pseudonym]
    study_uid = study["0020000D"]["Value"][0]
    assert study_uid.startswith("2.25.")
    assert len(client.search_for_instances(study_uid)) == 3
    stored = client.retrieve_study(study_uid)
    for ds in stored:
        assert "Fernsby" not in str(ds.get("PatientName", ""))
        assert ds.PatientIdentityRemoved == "YES"
    actors = loaded.service.query("SELECT DISTINCT actor FROM audit_events "
                                  "WHERE action = 'instance.store' AND actor LIKE 'token:%'")
    assert actors


def test_partial_and_total_failure(loaded: Loaded, tmp_path: Path) -> None:
    pseudonym, token, files = _fresh(loaded, tmp_path)
    other = loaded.pseudonym_of(loaded.labelled("ct"))
    foreign = pydicom.dcmread(loaded.directory / loaded.labelled("ct")["path"])
    mine = pydicom.dcmread(files[0])
    client = loaded.client(pseudonym)
    # one of this token's patient, one of another enrolment's: 202
    r = _stow(loaded, token, [mine, foreign])
    assert r.status_code == 202
    body = r.json()
    assert len(body["00081199"]["Value"]) == 1
    (failed,) = body["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [StoreStatus.PATIENT_NOT_ENROLLED]
    # only another enrolment's: 409, and nothing of it is stored under this token
    before = loaded.service.query("SELECT count(*) FROM instances")
    with pytest.raises(HTTPError) as info:
        client.store_instances([foreign])
    assert info.value.response.status_code == 409
    assert loaded.service.query("SELECT count(*) FROM instances") == before
    assert other != pseudonym


def test_withdrawn_consent_is_refused(loaded: Loaded, tmp_path: Path) -> None:
    """Withdrawal revokes the enrolment's tokens: its uploader is turned away
    before anything is read (the pipeline's own consent check, 0xC011, is
    tested in tests/test_ingest.py and tests/panels/test_consent.py)."""
    pseudonym, _, files = _fresh(loaded, tmp_path)
    loaded.service.cli("consent", "withdraw", pseudonym)
    with pytest.raises(HTTPError) as info:
        loaded.client(pseudonym).store_instances([pydicom.dcmread(files[0])])
    assert info.value.response.status_code == 401
    assert "00081199" not in info.value.response.text  # nothing was referenced as stored


def test_stow_to_a_study_resource_checks_the_study(loaded: Loaded, tmp_path: Path) -> None:
    pseudonym, _, files = _fresh(loaded, tmp_path)
    ds = pydicom.dcmread(files[0])
    with pytest.raises(HTTPError) as info:
        loaded.client(pseudonym).store_instances([ds], study_instance_uid="1.2.3.4")
    assert info.value.response.status_code == 409
    ok = loaded.client(pseudonym).store_instances([ds],
                                                  study_instance_uid=ds.StudyInstanceUID)
    assert len(ok.ReferencedSOPSequence) == 1


@pytest.mark.parametrize(("content_type", "body", "status"), [
    ("application/json", b"{}", 415),
    ('multipart/related; type="application/dicom+json"; boundary=b', b"--b--", 415),
    ('multipart/related; type="application/dicom"', b"", 400),  # no boundary
    ('multipart/related; type="application/dicom"; boundary=b', b"garbage", 400),
    ('multipart/related; type="application/dicom"; boundary=b', b"--b--\r\n", 400),
    ('multipart/related; type="application/dicom"; boundary=b',
     b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--", 415),
])
def test_malformed_stow_requests(loaded: Loaded, content_type: str, body: bytes,
                                 status: int) -> None:
    token = next(iter(loaded.tokens.values()))
    r = httpx.post(loaded.url + "/dicom-web/studies", content=body,
                   headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"


def test_unparsable_part_fails_with_its_reason(loaded: Loaded) -> None:
    token = next(iter(loaded.tokens.values()))
    body = (b"--b\r\nContent-Type: application/dicom\r\n\r\n" + b"\x00" * 300
            + b"\r\n--b--\r\n")
    r = httpx.post(loaded.url + "/dicom-web/studies", content=body, headers={
        "Authorization": f"Bearer {token}",
        "Content-Type": 'multipart/related; type="application/dicom"; boundary=b'})
    assert r.status_code == 409
    (failed,) = r.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [StoreStatus.UNPARSABLE_DATASET]
