"""Who may see what: 401 without a valid token, 404 (never 403) for others' studies."""

from __future__ import annotations

import httpx
import pytest
from requests import HTTPError

from tests.dicomweb.conftest import Loaded


def test_manifest_holds_exactly_the_tested_transfer_syntaxes(loaded: Loaded) -> None:
    from tests.dicomweb.conftest import TRANSFER_SYNTAXES

    assert {f["transfer_syntax_uid"] for f in loaded.manifest.files} == set(TRANSFER_SYNTAXES)


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer not-a-token"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
])
@pytest.mark.parametrize("path", ["/dicom-web/studies", "/dicom-web/series",
                                  "/dicom-web/studies/1.2.3/metadata",
                                  "/wado?requestType=WADO&studyUID=1&seriesUID=2&objectUID=3"])
def test_no_valid_token_is_401(loaded: Loaded, headers: dict[str, str], path: str) -> None:
    r = httpx.get(loaded.url + path, headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_stow_without_token_is_401(loaded: Loaded) -> None:
    r = httpx.post(loaded.url + "/dicom-web/studies", content=b"",
                   headers={"Content-Type": 'multipart/related; type="application/dicom"; '
                                            "boundary=x"})
    assert r.status_code == 401


def test_another_enrolments_study_is_404_never_403(loaded: Loaded) -> None:
    ct = loaded.file("1.2.840.10008.1.2.1")
    study, series, sop = loaded.stored_uids(ct)
    owner = loaded.pseudonym_of(ct)
    other = next(p for p in loaded.tokens if p != owner)
    client = loaded.client(other)
    for call in (lambda: client.retrieve_study_metadata(study),
                 lambda: client.retrieve_series_metadata(study, series),
                 lambda: client.retrieve_instance(study, series, sop),
                 lambda: client.retrieve_instance_frames(study, series, sop, [1])):
        with pytest.raises(HTTPError) as info:
            call()
        assert info.value.response.status_code == 404
    # the same answer as for a study that does not exist at all
    with pytest.raises(HTTPError) as info:
        client.retrieve_study_metadata("1.2.3.4")
    assert info.value.response.status_code == 404
    # searches never show it
    assert client.search_for_studies(search_filters={"StudyInstanceUID": study}) == []
    assert client.search_for_series(study) == []
    assert client.search_for_instances(study) == []
    assert client.search_for_instances(search_filters={"SOPInstanceUID": sop}) == []
    # the owner sees it
    assert len(loaded.client(owner).search_for_studies(
        search_filters={"StudyInstanceUID": study})) == 1


def test_revoked_and_issued_tokens(loaded: Loaded) -> None:
    pseudonym = next(iter(loaded.tokens))
    out = loaded.service.cli("tokens", "issue", "--enrolment", pseudonym)
    token = out.stdout.strip()
    token_id = out.stderr.split()[1]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(loaded.url + "/dicom-web/studies", headers=headers).status_code == 200
    loaded.service.cli("tokens", "revoke", "--id", token_id)
    assert httpx.get(loaded.url + "/dicom-web/studies", headers=headers).status_code == 401
    # only the hash is stored; issue and revocation are audited
    stored = loaded.service.query("SELECT token_sha256 FROM access_tokens")
    assert all(token not in row[0] for row in stored)
    actions = {r[0] for r in loaded.service.query("SELECT action FROM audit_events")}
    assert {"token.issue", "token.revoke"} <= actions
    unknown = loaded.service.cli("tokens", "issue", "--enrolment", "ERN-0000000000",
                                 check=False)
    assert unknown.returncode == 2
