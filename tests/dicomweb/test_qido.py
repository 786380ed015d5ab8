"""QIDO-RS at every level, with every kind of matching, through dicomweb-client."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.dicomweb.conftest import Loaded

FUZZY = ('299 dicom_service: "fuzzymatching parameter is not supported. '
         'Only literal matching has been performed."')


def _value(item: dict[str, Any], tag: str) -> Any:
    value = item[tag]["Value"][0]
    return value["Alphabetic"] if isinstance(value, dict) else value


def _p1(loaded: Loaded) -> str:
    return loaded.pseudonym_of(loaded.labelled("ct"))


def test_studies_carry_the_required_attributes(loaded: Loaded) -> None:
    pseudonym = _p1(loaded)
    studies = loaded.client(pseudonym).search_for_studies()
    assert len(studies) == 2  # baseline and follow-up
    for study in studies:
        for tag in ("00080020", "00080030", "00080050", "00080061", "00080090", "00100010",
                    "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206",
                    "00201208", "00081190"):
            assert tag in study, tag
        assert _value(study, "00100020") == pseudonym
        assert _value(study, "00081190").endswith("/dicom-web/studies/"
                                                  + _value(study, "0020000D"))
    counts = sorted((_value(s, "00201206"), _value(s, "00201208")) for s in studies)
    assert counts == [(2, 7), (3, 102)]
    modalities = sorted(tuple(s["00080061"]["Value"]) for s in studies)
    assert modalities == [("CT", "OT"), ("MR", "SR")]


def test_study_matching(loaded: Loaded) -> None:
    pseudonym = _p1(loaded)
    client = loaded.client(pseudonym)
    studies = client.search_for_studies()
    uids = [_value(s, "0020000D") for s in studies]
    dated = [s for s in studies if "Value" in s["00080020"]]

    def n(**filters: Any) -> int:
        return len(client.search_for_studies(search_filters=filters))

    assert n(PatientID=pseudonym) == 2
    assert n(**{"00100020": pseudonym}) == 2  # tag instead of keyword
    assert n(PatientID="ERN-*") == 2  # wildcards
    assert n(PatientID=pseudonym[:-1] + "?") == 2
    assert n(PatientID="NOBODY*") == 0
    assert n(PatientName=pseudonym.lower()) == 2  # PN: case-insensitive
    assert n(StudyDate="19000101-") == len(dated)  # ranges (dates as de-identified)
    assert n(StudyDate="-18991231") == 0
    assert n(StudyInstanceUID=",".join(uids)) == 2  # UID lists
    assert n(StudyInstanceUID="\\".join([uids[0], "1.2.3"])) == 1
    assert n(ModalitiesInStudy="MR") == 1
    assert n(ModalitiesInStudy="CT") == 1
    assert n(ModalitiesInStudy="") == 2  # universal matching
    # series level: dates and times as the profile left them
    series = client.search_for_series()
    dates = sorted({_value(s, "00080021") for s in series if "Value" in s["00080021"]})
    assert dates, "the profile keeps series dates (shifted or dummy)"

    def ns(**filters: Any) -> int:
        return len(client.search_for_series(search_filters=filters))

    with_date = sum("Value" in s["00080021"] for s in series)
    assert ns(SeriesDate=f"{dates[0]}-{dates[-1]}") == with_date
    assert ns(SeriesDate=dates[0]) == sum(
        "Value" in s["00080021"] and _value(s, "00080021") == dates[0] for s in series)
    assert ns(SeriesDate=f"-{dates[0]}") >= 1
    assert ns(SeriesDate=f"{int(dates[-1]) + 1}-") == 0
    assert ns(SeriesTime="000000-235959") == sum("Value" in s["00080031"] for s in series)


def test_limit_offset_includefield_and_fuzzymatching(loaded: Loaded) -> None:
    pseudonym = _p1(loaded)
    client = loaded.client(pseudonym)
    everything = client.search_for_studies()
    assert client.search_for_studies(limit=1) == everything[:1]
    assert client.search_for_studies(offset=1) == everything[1:]
    assert client.search_for_studies(offset=1, limit=5) == everything[1:]
    assert client.search_for_studies(offset=2) == []
    with_desc = client.search_for_studies(fields=["StudyDescription", "00080021"])
    assert all("00081030" in s for s in with_desc)
    headers = {"Authorization": f"Bearer {loaded.tokens[pseudonym]}"}
    r = httpx.get(f"{loaded.url}/dicom-web/studies",
                  params={"fuzzymatching": "true", "PatientName": pseudonym}, headers=headers)
    assert r.status_code == 200
    assert r.headers["warning"] == FUZZY
    assert r.headers["content-type"] == "application/dicom+json"
    plain = httpx.get(f"{loaded.url}/dicom-web/studies",
                      headers={**headers, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    r = httpx.get(f"{loaded.url}/dicom-web/studies", headers={**headers,
                                                             "Accept-Encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip"
    assert r.json() == plain.json()
    r = httpx.get(f"{loaded.url}/dicom-web/instances", params={"includefield": "all", "limit": "1",
                                                               "Modality": "CT"},
                  headers=headers)
    assert "00280010" in r.json()[0] and "7FE00010" not in r.json()[0]


def test_series_and_instances_at_every_level(loaded: Loaded) -> None:
    ct = loaded.labelled("ct")
    study, series, sop = loaded.stored_uids(ct)
    client = loaded.client(loaded.pseudonym_of(ct))

    in_study = client.search_for_series(study)
    assert {_value(s, "00080060") for s in in_study} == {"CT", "OT"}
    ct_series = next(s for s in in_study if _value(s, "0020000E") == series)
    for tag in ("00080060", "0020000E", "00200011", "00201209", "00081190"):
        assert tag in ct_series
    assert _value(ct_series, "00201209") == 100
    assert len(client.search_for_series(study, search_filters={"Modality": "CT"})) == 2
    assert len(client.search_for_series(search_filters={"Modality": "MR"})) == 1
    all_series = client.search_for_series()
    assert len(all_series) == 5
    assert all("0020000D" in s for s in all_series)
    assert len(client.search_for_series(
        search_filters={"SeriesInstanceUID": series, "StudyInstanceUID": study})) == 1

    instances = client.search_for_instances(study, series)
    assert len(instances) == 100
    for tag in ("00080016", "00080018", "00200013", "00280010", "00280011", "00081190"):
        assert tag in instances[0]
    assert len(client.search_for_instances(study, series,
                                           search_filters={"SOPInstanceUID": sop})) == 1
    assert len(client.search_for_instances(study, search_filters={"InstanceNumber": "5"})) == 1
    assert len(client.search_for_instances(study, search_filters={"Rows": "512"})) >= 100
    assert len(client.search_for_instances(search_filters={"Modality": "CT"})) == 101
    assert len(client.search_for_instances(study, limit=10, offset=95)) == 7


@pytest.mark.parametrize(("path", "params"), [
    ("/dicom-web/studies", {"limit": "-1"}),
    ("/dicom-web/studies", {"limit": "ten"}),
    ("/dicom-web/studies", {"offset": "1e3"}),
    ("/dicom-web/studies", {"fuzzymatching": "maybe"}),
    ("/dicom-web/studies", {"NotAKeyword": "1"}),
    ("/dicom-web/studies", {"FFFFFFFF": "1"}),
    ("/dicom-web/studies", {"StudyDate": "last-week"}),
    ("/dicom-web/studies", {"includefield": "Nonsense"}),
    ("/dicom-web/studies", {"ReferencedStudySequence.StudyInstanceUID": "1.2"}),
    ("/dicom-web/series", {"SeriesNumber": "one"}),
    ("/dicom-web/studies/1.02.3/series", {}),
    ("/dicom-web/studies/abc/instances", {}),
    ("/dicom-web/studies/1.2.3/series/1..2/instances", {}),
])
def test_malformed_queries_are_400(loaded: Loaded, path: str, params: dict[str, str]) -> None:
    pseudonym = _p1(loaded)
    r = httpx.get(loaded.url + path, params=params,
                  headers={"Authorization": f"Bearer {loaded.tokens[pseudonym]}"})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 400 and problem["detail"]
    for value in params.values():  # the value is never echoed
        if len(value) > 3:
            assert value not in r.text
