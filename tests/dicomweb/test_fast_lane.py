"""The fast lane in front of the middleware stack (``web.dicomweb.direct.FastLane``).

A GET of a direct route (a rendered frame or thumbnail of one instance) must be
answered exactly as the whole stack answers it: the same status, headers and
body, refusals included (problem responses, the bearer challenge), without
passing through the stack. Every other request goes through the stack.
What these routes answer is tested over HTTP in ``tests/render/test_routes.py``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.types import Receive, Scope, Send

from dicom_service.app import Services, build_services
from dicom_service.care.tokens import TokenService
from dicom_service.config import Settings
from dicom_service.dicom.parse import parse_part10
from dicom_service.ingest.pipeline import Sender
from dicom_service.web.app import create_app
from dicom_service.web.dicomweb.direct import FastLane
from sample_data.generate import write_ct_series

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

CENTRE = "Fast Lane Centre"
PATIENT, ISSUER = "FL-0001", "HOSP-FL"


@dataclass
class Lanes:
    fast: TestClient  # the application: fast lane first
    stack: TestClient  # the same application's middleware stack alone
    stack_calls: list[str]
    token: str
    instance: str  # /dicom-web/studies/../series/../instances/..


@pytest.fixture
def lanes(tmp_path: Path) -> Iterator[Lanes]:
    services: Services = build_services(Settings(data_dir=tmp_path / "data"))
    services.care.add_centre(CENTRE, actor="test")
    pseudonym = services.care.enrol(CENTRE, PATIENT, ISSUER, actor="test")
    (path,) = write_ct_series(tmp_path / "ct", n=1, size=32, patient_id=PATIENT, issuer=ISSUER)
    sender = Sender(centre_id=services.care.centre_id(CENTRE), actor="peer:FAST_LANE")
    services.pipeline.ingest(*parse_part10(path.read_bytes()), sender)
    _, token = TokenService(services.db).issue(pseudonym, actor="test")
    with services.db.engine.connect() as conn:
        study, series, sop = conn.exec_driver_sql(
            "select study_uid, series_uid, sop_uid from instances").one()
    app = create_app(services)
    fast = TestClient(app)
    fast.get("/health")  # builds the middleware stack
    lane = app.middleware_stack
    assert isinstance(lane, FastLane)
    calls: list[str] = []
    inner = lane.stack

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["method"])
        await inner(scope, receive, send)

    lane.stack = counted

    async def stack_only(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = app  # as Starlette's own entry sets it
        await inner(scope, receive, send)

    try:
        yield Lanes(fast, TestClient(stack_only), calls, token,
                    f"/dicom-web/studies/{study}/series/{series}/instances/{sop}")
    finally:
        fast.close()
        services.close()


def _requests(lanes: Lanes) -> list[tuple[str, dict[str, str], int]]:
    """(path, headers, expected status) of direct-route GETs, answered and refused."""
    bearer = {"Authorization": f"Bearer {lanes.token}"}
    i = lanes.instance
    other = "/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5"
    return [
        (f"{i}/frames/1/rendered", bearer, 200),
        (f"{i}/frames/1/rendered?quality=40&window=40,400", bearer, 200),
        (f"{i}/rendered", {**bearer, "Accept": "image/png"}, 200),
        (f"{i}/thumbnail", bearer, 200),
        (f"{i}/frames/1/thumbnail?viewport=16,16", bearer, 200),
        (f"{i}/frames/1/rendered", {}, 401),  # no credential: the bearer challenge
        (f"{i}/frames/1/rendered", {"Authorization": "Bearer not-a-token"}, 401),
        (f"{other}/frames/1/rendered", bearer, 404),  # nobody's instance
        (f"{i}/frames/2/rendered", bearer, 404),  # no such frame
        (f"{i}/frames/0/rendered", bearer, 400),  # frames count from 1
        (f"{i}/frames/1/rendered?quality=0", bearer, 400),
        ("/dicom-web/studies/1..2/series/1/instances/x/rendered", bearer, 400),  # malformed UIDs
        (f"{i}/rendered", {**bearer, "Accept": "application/pdf"}, 406),
    ]


def test_direct_gets_are_answered_as_the_stack_answers_them(lanes: Lanes) -> None:
    for path, headers, status in _requests(lanes):
        fast = lanes.fast.get(path, headers=headers)
        assert lanes.stack_calls == [], path  # the stack never saw it
        full = lanes.stack.get(path, headers=headers)
        assert (fast.status_code, full.status_code) == (status, status), path
        assert fast.content == full.content, path
        assert sorted(fast.headers.multi_items()) == sorted(full.headers.multi_items()), path
        if status >= 400:
            assert fast.headers["content-type"] == "application/problem+json", path
        if status == 401:
            assert fast.headers["www-authenticate"].startswith("Bearer"), path


def test_everything_else_goes_through_the_stack(lanes: Lanes) -> None:
    bearer = {"Authorization": f"Bearer {lanes.token}"}
    frame = f"{lanes.instance}/frames/1/rendered"
    head = lanes.fast.head(frame, headers=bearer)  # whatever the stack answers (405)
    assert head.status_code == lanes.stack.head(frame, headers=bearer).status_code
    assert lanes.fast.post(frame, headers=bearer).status_code == 405
    series = lanes.instance.rsplit("/instances/", 1)[0]
    assert lanes.fast.get(f"{series}/rendered", headers=bearer).status_code == 200
    assert lanes.fast.get(f"{lanes.instance}/metadata", headers=bearer).status_code == 200
    assert lanes.fast.get("/health").status_code == 200
    assert lanes.stack_calls == ["HEAD", "POST", "GET", "GET", "GET"]
