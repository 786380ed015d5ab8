"""The rendered and thumbnail resources and WADO-URI rendering, over HTTP against a
real ``dicom-service serve`` fed by DCMTK storescu, read with a real token.

Expected pixels come from the reference rendering in ``test_render`` applied
to the stored (de-identified) file.
"""

from __future__ import annotations

import io
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image

from sample_data.generate import Manifest
from tests.conftest import CENTRE, PEER
from tests.render.test_render import decode_image, ref_grey
from tests.support.peers import require_private_netns, storescu
from tests.support.service import ServiceProcess

P1 = ("Q-4471-ZQF", "NOWHEREVILLE-GH")
P3 = ("RDX-33019-K", "KLINIKUM-HWD")


@dataclass
class Served:
    service: ServiceProcess
    client: httpx.Client
    token_p1: str
    token_p3: str

    def uids(self, modality: str) -> list[tuple[str, str, str]]:
        """(study, series, sop) of the instances of the largest series of ``modality``
        (for CT: the axial series, not the localizer), in order."""
        rows = self.service.query(
            "select i.study_uid, i.series_uid, i.sop_uid from instances i "
            "join series s on s.series_uid = i.series_uid where s.modality = ? "
            "order by i.instance_number, i.sop_uid", modality)
        sizes: dict[str, int] = {}
        for r in rows:
            sizes[r[1]] = sizes.get(r[1], 0) + 1
        largest = max(sizes, key=lambda k: sizes[k])
        return [(r[0], r[1], r[2]) for r in rows if r[1] == largest]

    def stored(self, sop: str) -> pydicom.Dataset:
        (path,) = [p for p in self.service.stored_files() if p.stem == sop]
        return pydicom.dcmread(path)

    def get(self, url: str, token: str | None = None, **headers: str) -> httpx.Response:
        token = self.token_p1 if token is None else token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.get(url, headers=headers)


@pytest.fixture(scope="module")
def served(sample_set: tuple[Path, Manifest],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    require_private_netns()
    directory, manifest = sample_set
    svc = ServiceProcess(tmp_path_factory.mktemp("render-routes") / "data")
    svc.setup_peer(CENTRE, PEER)
    pseudonyms = {p: svc.enrol(CENTRE, *p) for p in (P1, P3)}
    files = [directory / f["path"] for f in manifest.files
             if (f["patient_id"], f["issuer"]) in pseudonyms]
    try:
        svc.start()
        result = storescu(files, "127.0.0.1", svc.dicom_port, svc.ae_title, PEER)
        assert result.returncode == 0, result.stderr
        tokens = [svc.cli("tokens", "issue", "--enrolment", pseudonyms[p]).stdout.strip()
                  for p in (P1, P3)]
        with httpx.Client(base_url=f"http://127.0.0.1:{svc.http_port}", trust_env=False,
                          timeout=60) as client:
            yield Served(svc, client, tokens[0], tokens[1])
    finally:
        svc.stop()


def _base(study: str, series: str, sop: str) -> str:
    return f"/dicom-web/studies/{study}/series/{series}/instances/{sop}"


def test_frame_rendered_defaults_to_jpeg_with_the_stored_window(served: Served) -> None:
    study, series, sop = served.uids("CT")[10]
    resp = served.get(_base(study, series, sop) + "/frames/1/rendered")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "image/jpeg"
    assert "no-store" in resp.headers["cache-control"]
    expected = ref_grey(served.stored(sop), window=(40.0, 400.0, "LINEAR"))
    assert np.abs(decode_image(resp.content).astype(int) - expected).mean() < 3.0


@pytest.mark.parametrize(("accept", "media"), [("image/png", "image/png"),
                                               ("image/gif", "image/gif"),
                                               ("image/webp, image/png;q=0.5", "image/png"),
                                               ("*/*", "image/jpeg")])
def test_accept_negotiation(served: Served, accept: str, media: str) -> None:
    study, series, sop = served.uids("CT")[0]
    resp = served.get(_base(study, series, sop) + "/rendered", Accept=accept)
    assert resp.status_code == 200 and resp.headers["content-type"] == media


def test_unacceptable_media_type_is_406(served: Served) -> None:
    study, series, sop = served.uids("CT")[0]
    resp = served.get(_base(study, series, sop) + "/rendered", Accept="application/dicom")
    assert resp.status_code == 406
    assert "image/jpeg, image/png or image/gif" in resp.json()["title"]


def test_explicit_window_as_png(served: Served) -> None:
    study, series, sop = served.uids("CT")[5]
    resp = served.get(_base(study, series, sop) + "/rendered?window=-600,1500,SIGMOID",
                      Accept="image/png")
    assert resp.status_code == 200
    expected = ref_grey(served.stored(sop), window=(-600.0, 1500.0, "SIGMOID"))
    assert np.abs(decode_image(resp.content).astype(int) - expected).max() <= 1


@pytest.mark.parametrize(("query", "reason"), [
    ("window=40", 'Parameter \\"window\\" must be'),
    ("window=40,400,CUBIC", "LINEAR, LINEAR_EXACT or SIGMOID"),
    ("viewport=0,10", 'Parameter \\"viewport\\" must be between 1 and 4096'),
    ("quality=1000", 'Parameter \\"quality\\" must be between 1 and 100'),
])
def test_bad_parameters_are_400_with_a_reason(served: Served, query: str, reason: str) -> None:
    study, series, sop = served.uids("CT")[0]
    resp = served.get(_base(study, series, sop) + f"/rendered?{query}")
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert reason.replace("\\", "") in resp.json()["detail"]


def test_multiframe_frames(served: Served) -> None:
    ((study, series, sop),) = served.uids("XA")
    ds = served.stored(sop)
    for frame in (1, 6, 12):
        resp = served.get(_base(study, series, sop) + f"/frames/{frame}/rendered",
                          token=served.token_p3, Accept="image/png")
        assert resp.status_code == 200
        assert np.abs(decode_image(resp.content).astype(int) - ref_grey(ds, frame - 1)).max() <= 1
    for frame, status in (("13", 404), ("0", 400), ("1,2", 400)):
        resp = served.get(_base(study, series, sop) + f"/frames/{frame}/rendered",
                          token=served.token_p3)
        assert resp.status_code == status


def test_monochrome1_over_http(served: Served) -> None:
    ((study, series, sop),) = served.uids("CR")
    resp = served.get(_base(study, series, sop) + "/rendered", Accept="image/png",
                      token=served.token_p3)
    assert resp.status_code == 200
    assert np.abs(decode_image(resp.content).astype(int)
                  - ref_grey(served.stored(sop))).max() <= 1


def test_viewport_scales_keeping_the_aspect_ratio(served: Served) -> None:
    ((study, series, sop),) = served.uids("CR")  # 320 wide, 384 high
    resp = served.get(_base(study, series, sop) + "/rendered?viewport=160,160",
                      token=served.token_p3)
    assert Image.open(io.BytesIO(resp.content)).size == (133, 160)


def test_thumbnails_and_representative_instance(served: Served) -> None:
    ct = served.uids("CT")
    study, series, _ = ct[0]
    middle = ct[len(ct) // 2][2]
    for url in (f"/dicom-web/studies/{study}/series/{series}/thumbnail",
                _base(study, series, middle) + "/thumbnail",
                _base(study, series, middle) + "/frames/1/thumbnail"):
        resp = served.get(url)
        assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(resp.content)).size == (128, 128)
    series_png = served.get(f"/dicom-web/studies/{study}/series/{series}/rendered",
                            Accept="image/png")
    middle_png = served.get(_base(study, series, middle) + "/rendered", Accept="image/png")
    assert series_png.content == middle_png.content
    study_thumb = served.get(f"/dicom-web/studies/{study}/thumbnail?viewport=64,64")
    assert study_thumb.status_code == 200
    assert max(Image.open(io.BytesIO(study_thumb.content)).size) == 64
    assert served.get(f"/dicom-web/studies/{study}/rendered").status_code == 200


def test_policy_decides(served: Served) -> None:
    study, series, sop = served.uids("CT")[0]
    url = _base(study, series, sop) + "/rendered"
    assert served.get(url, token="").status_code == 401
    assert served.get(url, token="not-a-token").status_code == 401
    # P3's token does not see P1's study: indistinguishable from absent
    assert served.get(url, token=served.token_p3).status_code == 404
    assert served.get(f"/dicom-web/studies/{study}/thumbnail",
                      token=served.token_p3).status_code == 404
    assert served.get(_base(study, series, "1.2.3") + "/rendered").status_code == 404
    assert served.get(_base(study, series, "01.2") + "/rendered").status_code == 400


@pytest.mark.parametrize("resource", ["/frames/1/rendered", "/rendered", "/frames/1/thumbnail",
                                      "/thumbnail"])
def test_instance_level_resources_ask_the_policy_first(served: Served, resource: str) -> None:
    # direct routes (no ReaderDep, no dependency solving): the same answers as the others
    study, series, sop = served.uids("CT")[0]
    url = _base(study, series, sop) + resource
    for token in ("", "not-a-token"):
        refused = served.get(url, token=token)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["www-authenticate"].startswith("Bearer")
    other = served.get(url, token=served.token_p3)
    assert other.status_code == 404
    assert other.headers["content-type"] == "application/problem+json"
    assert served.get(_base(study, series, "1.2.3") + resource).status_code == 404
    assert served.get(_base(study, "01.2", sop) + resource).status_code == 400
    ok = served.get(url)
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "image/jpeg"
    assert ok.headers["cache-control"] == "private, no-store"
    post = served.client.post(url, headers={"Authorization": f"Bearer {served.token_p1}"})
    assert post.status_code == 405


def test_revoked_or_expired_tokens_are_refused_on_the_next_frame(served: Served) -> None:
    study, series, sop = served.uids("CT")[0]
    url = _base(study, series, sop) + "/frames/1/rendered"
    (pseudonym,), = served.service.query(
        "select e.pseudonym from enrolments e join instances i on i.enrolment_id = e.id "
        "where i.sop_uid = ?", sop)
    expiring = served.service.cli("tokens", "issue", "--enrolment", pseudonym,
                                  "--valid-days", "1")
    token, token_id = expiring.stdout.strip(), int(expiring.stderr.split()[1])
    assert served.get(url, token=token).status_code == 200  # its expiry lies ahead
    con = sqlite3.connect(served.service.data_dir / "index.sqlite3", timeout=30)
    try:
        with con:  # the expiry passes
            con.execute("update access_tokens set expires_at = '2000-01-01 00:00:00.000000' "
                        "where id = ?", (token_id,))
    finally:
        con.close()
    assert served.get(url, token=token).status_code == 401
    issued = served.service.cli("tokens", "issue", "--enrolment", pseudonym)
    token = issued.stdout.strip()
    assert served.get(url, token=token).status_code == 200
    served.service.cli("tokens", "revoke", "--id", issued.stderr.split()[1])
    assert served.get(url, token=token).status_code == 401


def test_refusals_on_the_frame_route_are_audited_by_its_template(served: Served) -> None:
    study, series, sop = served.uids("CT")[0]
    assert served.get(_base(study, series, sop) + "/frames/1/rendered",
                      token="").status_code == 401
    template = "/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/{frame}"
    deadline = time.monotonic() + 20
    rows: list[tuple[str, ...]] = []
    while time.monotonic() < deadline and not rows:
        rows = served.service.query(
            "select object_id from audit_events where action like 'auth.refused%' "
            "and object_type = 'route' and result = 'refused' and object_id = ?",
            template[:64])
        time.sleep(0.2)
    assert rows  # the route's template, never the concrete path with its UIDs
    assert not served.service.query(
        "select object_id from audit_events where object_type = 'route' and object_id like ?",
        f"%{study}%")


def test_wado_uri_rendered(served: Served) -> None:
    study, series, sop = served.uids("CT")[3]
    query = (f"/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}"
             "&contentType=image/png&windowCenter=-600&windowWidth=1500")
    resp = served.get(query)
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    expected = ref_grey(served.stored(sop), window=(-600.0, 1500.0, "LINEAR"))
    assert np.abs(decode_image(resp.content).astype(int) - expected).max() <= 1
    small = served.get(query + "&rows=64&region=0,0,0.5,0.5&imageQuality=80")
    assert Image.open(io.BytesIO(small.content)).size == (64, 64)
    jpeg = served.get(f"/wado?requestType=WADO&studyUID={study}&seriesUID={series}"
                      f"&objectUID={sop}")
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
    bad = served.get(query + "&windowWidth=0")  # LINEAR needs a width >= 1
    assert bad.status_code == 400
    ((xs, xse, xsop),) = served.uids("XA")
    frame = served.get(f"/wado?requestType=WADO&studyUID={xs}&seriesUID={xse}&objectUID={xsop}"
                       "&contentType=image/png&frameNumber=6", token=served.token_p3)
    assert frame.status_code == 200
    assert np.abs(decode_image(frame.content).astype(int)
                  - ref_grey(served.stored(xsop), 5)).max() <= 1


def _parts(resp: httpx.Response) -> list[tuple[str, bytes]]:
    boundary = resp.headers["content-type"].split("boundary=")[1].strip()
    out = []
    for chunk in resp.content.split(b"--" + boundary.encode())[1:-1]:
        head, _, body = chunk.partition(b"\r\n\r\n")
        kind = next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-type"))
        out.append((kind, body[:-2]))
    return out


def test_series_rendered_as_multipart_gives_every_frame(served: Served) -> None:
    ((study, series, sop),) = served.uids("XA")
    resp = served.get(f"/dicom-web/studies/{study}/series/{series}/rendered?window=128,256",
                      token=served.token_p3, Accept='multipart/related; type="image/png"')
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith('multipart/related; type="image/png"')
    parts = _parts(resp)
    assert len(parts) == 12 and {k for k, _ in parts} == {"image/png"}
    ds = served.stored(sop)
    expected = ref_grey(ds, 6, window=(128.0, 256.0, "LINEAR"))
    assert np.abs(decode_image(parts[6][1]).astype(int) - expected).max() <= 1
    study_all = served.get(f"/dicom-web/studies/{study}/rendered", token=served.token_p3,
                           Accept="multipart/related; type=image/jpeg")
    # XA (12 frames) + CR + DX
    assert study_all.status_code == 200 and len(_parts(study_all)) == 14
    refused = served.get(f"/dicom-web/studies/{study}/rendered", token=served.token_p3,
                         Accept='multipart/related; type="image/webp"')
    assert refused.status_code == 406
