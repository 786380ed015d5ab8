"""The per-frame request path: direct routes, prepared reads and the stored
file's path check.

The direct routes (``web.dicomweb.direct``) stay documented API routes, tried
before every other route; prepared reads (``db.prepared``) must answer
exactly what SQLAlchemy answers (types converted, ``None`` kept) in both
parameter styles; the path of a stored file from the index must never lead
outside the store. Their answers over HTTP are tested in
``tests/render/test_routes.py``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from alembic import command
from alembic.config import Config
from fastapi.routing import APIRoute
from sqlalchemy import Engine, bindparam, create_engine, select

from dicom_service.app import Services, build_services
from dicom_service.care.tokens import _LOOKUP, TokenService
from dicom_service.config import Settings
from dicom_service.db.models import AccessToken, utcnow
from dicom_service.db.prepared import PreparedRead, _loop_connection, prepared
from dicom_service.db.session import MIGRATIONS
from dicom_service.dicom.image_tags import IMAGE_JSON_KEYS
from dicom_service.errors import NotFound
from dicom_service.ingest.pipeline import Sender
from dicom_service.web.app import create_app
from dicom_service.web.dicomweb import index
from dicom_service.web.dicomweb.direct import DirectRoute
from dicom_service.web.dicomweb.index import InstanceRow
from dicom_service.web.dicomweb.wado import instance_path
from tests.support.datasets import tiny_ct

_BY_ID = (select(AccessToken.id, AccessToken.enrolment_id, AccessToken.scope,
                 AccessToken.label, AccessToken.expires_at, AccessToken.revoked_at)
          .where(AccessToken.id == bindparam("token_id")))


def _enrolled(data_dir: Path) -> tuple[Services, str]:
    services = build_services(Settings(data_dir=data_dir))
    services.care.add_centre("HOT-PATH", actor="test")
    return services, services.care.enrol("HOT-PATH", "P-1", "ISSUER", actor="test")


@pytest.mark.parametrize("paramstyle", ["qmark", "named"])
def test_prepared_read_answers_like_sqlalchemy(tmp_path: Path, paramstyle: str) -> None:
    services, pseudonym = _enrolled(tmp_path / "data")
    tokens = TokenService(services.db)
    with_expiry, _ = tokens.issue(pseudonym, actor="test", label="with expiry", valid_days=3)
    revoked, _ = tokens.issue(pseudonym, actor="test")
    tokens.revoke(revoked, actor="test")
    services.close()
    engine = create_engine(services.db.url, paramstyle=paramstyle)
    read = PreparedRead(engine, _BY_ID)
    assert (":token_id" in read.sql) == (paramstyle == "named")
    for token_id in (with_expiry, revoked, 999):
        with engine.connect() as conn:
            expected = conn.execute(_BY_ID, {"token_id": token_id}).first()
        got = read.first({"token_id": token_id})
        assert got == (tuple(expected) if expected is not None else None)
    first = read.first({"token_id": with_expiry})
    assert first is not None and isinstance(first[4], datetime) and first[5] is None
    assert first[3] == "with expiry"
    last = read.first({"token_id": revoked})
    assert last is not None and last[4] is None and isinstance(last[5], datetime)
    engine.dispose()


def test_prepared_statements_are_compiled_once_per_engine(tmp_path: Path) -> None:
    first = create_engine(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    second = create_engine(f"sqlite:///{tmp_path / 'b.sqlite3'}")
    assert prepared(first, _LOOKUP) is prepared(first, _LOOKUP)
    assert prepared(first, _LOOKUP) is not prepared(second, _LOOKUP)
    assert prepared(first, _BY_ID) is not prepared(first, _LOOKUP)
    first.dispose()
    second.dispose()


def test_prepared_reads_do_not_keep_an_engine_alive(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    prepared(engine, _LOOKUP)
    gone = weakref.ref(engine)
    del engine
    gc.collect()
    assert gone() is None


def test_token_expiry_and_revocation_through_the_prepared_read(tmp_path: Path) -> None:
    services, pseudonym = _enrolled(tmp_path / "data")
    try:
        tokens = TokenService(services.db)
        token_id, token = tokens.issue(pseudonym, actor="test", valid_days=1)
        grant = tokens.verify(token)
        assert grant is not None and grant.token_id == token_id
        with services.db.session() as s:  # the expiry passes
            s.get_one(AccessToken, token_id).expires_at = utcnow() - timedelta(seconds=1)
        assert tokens.verify(token) is None
        other_id, other = tokens.issue(pseudonym, actor="test")
        assert tokens.verify(other) is not None
        tokens.revoke(other_id, actor="test")
        assert tokens.verify(other) is None  # on the very next look-up
    finally:
        services.close()


def _row(path: str) -> InstanceRow:
    return InstanceRow(study_uid="1.2", series_uid="1.2.3", sop_uid="1.2.3.4",
                       sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                       transfer_syntax_uid="1.2.840.10008.1.2.1", path=path, enrolment_id=1,
                       metadata_json=None, number_of_frames=1, pixel_data_offset=None,
                       pixel_data_length=None)


def test_stored_paths_stay_under_the_store_root(tmp_path: Path) -> None:
    services = build_services(Settings(data_dir=tmp_path / "data"))
    try:
        root = services.store.root
        assert instance_path(services, _row("instances/ab/cd.dcm")) == root / "instances/ab/cd.dcm"
        assert instance_path(services, _row("instances/../instances/x.dcm")) == \
            root / "instances/x.dcm"
        for escaping in ("../outside.dcm", "instances/../../outside.dcm", "/etc/passwd",
                         "", "."):
            with pytest.raises(NotFound):
                instance_path(services, _row(escaping))
        # a sibling directory whose name starts with the root's is outside too
        with pytest.raises(NotFound):
            instance_path(services, _row(f"../{root.name}-other/x.dcm"))
    finally:
        services.close()


def test_direct_routes_come_first_and_are_documented(tmp_path: Path) -> None:
    services = build_services(Settings(data_dir=tmp_path / "data"))
    try:
        app = create_app(services)
        frame = "/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/rendered"
        api_routes = [r for r in app.router.routes if isinstance(r, APIRoute)]
        assert isinstance(api_routes[0], DirectRoute) and api_routes[0].path == frame
        direct = {r.path for r in api_routes if isinstance(r, DirectRoute)}
        instance = "/dicom-web/studies/{study}/series/{series}/instances/{sop}"
        assert direct == {frame, instance + "/rendered", instance + "/thumbnail",
                          instance + "/frames/{frame}/thumbnail"}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
            from fastapi.testclient import TestClient
        with TestClient(app) as client:
            spec = client.get("/openapi.json").json()
        operation = spec["paths"][frame]["get"]
        assert {p["name"] for p in operation["parameters"] if p["in"] == "path"} == \
            {"study", "series", "sop", "frame"}
        assert "DICOMweb" in operation["tags"]
    finally:
        services.close()


T = TypeVar("T")


def _in_a_new_thread(call: Callable[[], T]) -> T:
    """``call()`` in a thread of its own (this one may run an event loop already,
    e.g. Playwright's), its result or its exception."""
    with ThreadPoolExecutor(max_workers=1) as one:
        return one.submit(call).result()


def test_an_event_loop_thread_reads_on_a_connection_of_its_own(tmp_path: Path) -> None:
    services, pseudonym = _enrolled(tmp_path / "data")
    try:
        tokens = TokenService(services.db)
        token_id, token = tokens.issue(pseudonym, actor="test")
        engine = services.db.engine
        # a thread without an event loop uses the pool
        assert _in_a_new_thread(lambda: _loop_connection(engine)) is None

        async def on_the_loop() -> None:
            held = _loop_connection(engine)
            assert _loop_connection(engine) is held
            assert isinstance(held, sqlite3.Connection)
            checked_out = engine.pool.checkedout()  # type: ignore[attr-defined]
            grant = tokens.verify(token)
            assert grant is not None and grant.token_id == token_id
            # no snapshot kept: another connection's revocation counts at once
            tokens.revoke(token_id, actor="test")
            assert tokens.verify(token) is None
            assert engine.pool.checkedout() == checked_out  # type: ignore[attr-defined]
            assert not held.in_transaction
            # a connection that fails is dropped, and the next read makes another
            held.close()
            with pytest.raises(sqlite3.ProgrammingError):
                tokens.verify(token)
            again = _loop_connection(engine)
            assert again is not None and again is not held
            assert tokens.verify(token) is None

        _in_a_new_thread(lambda: asyncio.run(on_the_loop()))
    finally:
        services.close()


async def _hold(engine: Engine) -> sqlite3.Connection:
    held = _loop_connection(engine)
    assert isinstance(held, sqlite3.Connection)
    return held


def test_a_held_connection_is_closed_with_its_engine(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'held.sqlite3'}")
    held = _in_a_new_thread(lambda: asyncio.run(_hold(engine)))
    assert held.execute("select 1").fetchone() == (1,)
    engine.dispose()
    with pytest.raises(sqlite3.ProgrammingError):
        held.execute("select 1")
    again = _in_a_new_thread(lambda: asyncio.run(_hold(engine)))  # still usable
    assert again is not held and again.execute("select 1").fetchone() == (1,)
    engine.dispose()


def _ingested(data_dir: Path) -> tuple[Services, str]:
    """Services holding one 16 x 16 CT; (services, its SOP Instance UID)."""
    services, _ = _enrolled(data_dir)
    sender = Sender(centre_id=services.care.centre_id("HOT-PATH"), actor="peer:HOT_PATH")
    ds = tiny_ct("P-1", rows=16, IssuerOfPatientID="ISSUER", WindowCenter="40",
                 WindowWidth="400")
    services.pipeline.ingest(ds, str(ds.file_meta.TransferSyntaxUID), sender)
    with services.db.engine.connect() as conn:
        return services, conn.exec_driver_sql("select sop_uid from instances").scalar_one()


def _image_attributes(metadata_json: str) -> dict[str, object]:
    document = json.loads(metadata_json)
    return {k: v for k, v in document.items() if k in IMAGE_JSON_KEYS}


def test_rendering_reads_the_image_attributes_not_the_whole_document(tmp_path: Path) -> None:
    services, sop = _ingested(tmp_path / "data")
    try:
        engine = services.db.engine
        with engine.connect() as conn:
            study, series, metadata = conn.exec_driver_sql(
                "select study_uid, series_uid, metadata_json from instances").one()
        key = {"sop": sop, "series": series, "study": study}
        row = InstanceRow(*prepared(engine, index._BY_KEY_TO_RENDER).first(key) or ())
        assert row.metadata_json is None and row.image_json is not None
        assert json.loads(row.image_json) == _image_attributes(metadata)
        assert row.header_json == row.image_json
        full = InstanceRow(*prepared(engine, index._BY_KEY).first(key) or ())
        assert full.metadata_json == metadata and full.image_json == row.image_json
        with engine.begin() as conn:  # an instance without them: the whole document
            conn.exec_driver_sql("update instances set image_json = null")
        row = InstanceRow(*prepared(engine, index._BY_KEY_TO_RENDER).first(key) or ())
        assert row.image_json is None and row.header_json == metadata
    finally:
        services.close()


def test_the_migration_fills_the_image_attributes_of_stored_instances(tmp_path: Path) -> None:
    services, _ = _ingested(tmp_path / "data")
    db = services.db
    with db.engine.connect() as conn:
        metadata, image = conn.exec_driver_sql(
            "select metadata_json, image_json from instances").one()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0006")
        columns = {c[1] for c in conn.exec_driver_sql("pragma table_info(instances)")}
    assert "image_json" not in columns
    db.migrate()
    with db.engine.connect() as conn:
        filled = conn.exec_driver_sql("select image_json from instances").scalar_one()
    assert filled is not None and json.loads(filled) == json.loads(image)
    assert json.loads(filled) == _image_attributes(metadata)
    services.close()
