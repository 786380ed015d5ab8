"""WADO-URI: application/dicom retrieval under the same policy."""

from __future__ import annotations

import importlib.util
import io

import httpx
import pydicom
import pytest

from tests.dicomweb.conftest import Loaded


def _get(loaded: Loaded, token: str, **params: str) -> httpx.Response:
    return httpx.get(loaded.url + "/wado", params=params,
                     headers={"Authorization": f"Bearer {token}"})


def test_wado_uri_dicom(loaded: Loaded) -> None:
    f = loaded.labelled("us_jpeg")
    study, series, sop = loaded.stored_uids(f)
    owner = loaded.pseudonym_of(f)
    token = loaded.tokens[owner]
    uids = {"studyUID": study, "seriesUID": series, "objectUID": sop}
    r = _get(loaded, token, requestType="WADO", contentType="application/dicom", **uids)
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
    ds = pydicom.dcmread(io.BytesIO(r.content))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    stored = loaded.stored_ts(f)
    r = _get(loaded, token, requestType="WADO", contentType="application/dicom",
             transferSyntax=stored, **uids)
    assert pydicom.dcmread(io.BytesIO(r.content)).file_meta.TransferSyntaxUID == stored
    other = next(t for p, t in loaded.tokens.items() if p != owner)
    assert _get(loaded, other, requestType="WADO", contentType="application/dicom",
                **uids).status_code == 404
    rendered = importlib.util.find_spec("dicom_service.web.dicomweb.rendered")
    r = _get(loaded, token, requestType="WADO", contentType="image/jpeg", **uids)
    assert r.status_code == (200 if rendered else 406)


@pytest.mark.parametrize("params", [
    {},
    {"requestType": "WADO"},
    {"requestType": "XYZ", "studyUID": "1", "seriesUID": "2", "objectUID": "3"},
    {"requestType": "WADO", "studyUID": "1.02", "seriesUID": "2", "objectUID": "3"},
    {"requestType": "WADO", "studyUID": "1", "seriesUID": "2", "objectUID": "3", "x": "1"},
])
def test_wado_uri_bad_requests(loaded: Loaded, params: dict[str, str]) -> None:
    token = next(iter(loaded.tokens.values()))
    r = _get(loaded, token, **params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
