"""The ingest pipeline's fast paths: one context per association, the SQLite
index statements on the DB-API cursor, the two-step store write, and the
writer that knows where Pixel Data lies. Each gives what the plain path gives.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian, RLELossless
from sqlalchemy import select, text

from dicom_service.app import Services, build_services
from dicom_service.config import Settings
from dicom_service.db.models import Centre, Enrolment, Instance, Series, Study
from dicom_service.db.session import Database
from dicom_service.deidentify import Pseudonymiser, derive_date_shift, load_profiles
from dicom_service.dicom.image_tags import IMAGE_JSON_KEYS
from dicom_service.dicom.parse import parse_part10, peek_uid
from dicom_service.dicom.part10 import encode_instance, encode_part10
from dicom_service.errors import IngestRefused, Refusal
from dicom_service.ingest.index import IndexStatements
from dicom_service.ingest.metadata import MetadataCache, describe_instance, locate_pixel_data
from dicom_service.ingest.pipeline import IngestContext, Sender
from dicom_service.storage import FilesystemStore, InstanceKey
from sample_data.generate import Manifest, write_ct_series

ROOT = Path(__file__).resolve().parents[1]
CENTRE = "Context Centre"
PATIENT = "CTX-0001"
ISSUER = "HOSP-CTX"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = build_services(Settings(data_dir=tmp_path / "data"))
    svc.care.add_centre(CENTRE, actor="test")
    svc.care.enrol(CENTRE, PATIENT, ISSUER, actor="test")
    try:
        yield svc
    finally:
        svc.close()


def _received(path: Path) -> tuple[Dataset, str]:
    """A file's data set as the network path has it (raw elements)."""
    return parse_part10(path.read_bytes())


def _series(directory: Path, n: int, **kwargs: Any) -> list[Path]:
    return write_ct_series(directory, n=n, size=32, patient_id=PATIENT, issuer=ISSUER,
                           **kwargs)


def _sender(services: Services) -> Sender:
    return Sender(centre_id=services.care.centre_id(CENTRE), actor="peer:CTX_TEST")


def _stored(services: Services) -> list[tuple[str, str]]:
    with services.db.session() as s:
        return sorted((sop, path) for sop, path in s.execute(select(Instance.sop_uid,
                                                                      Instance.path)))


def test_a_series_through_one_context_is_stored_as_without_one(services: Services,
                                                              tmp_path: Path) -> None:
    files = _series(tmp_path / "ct", 4)
    sender = _sender(services)
    with services.pipeline.context() as context:
        results = [services.pipeline.ingest(*_received(f), sender, context=context)
                   for f in files]
        assert services.db.engine.pool.checkedout() == 1  # one connection, held
    assert services.db.engine.pool.checkedout() == 0  # given back at close
    with pytest.raises(RuntimeError, match="closed"):  # it would take one never given back
        services.pipeline.ingest(*_received(files[0]), sender, context=context)
    assert services.db.engine.pool.checkedout() == 0
    assert [r.replaced for r in results] == [False] * 4
    stored = _stored(services)
    assert len(stored) == 4
    before = {path: (services.store.root / path).read_bytes() for _, path in stored}
    with services.db.session() as s:
        metadata = {sop: document for sop, document
                    in s.execute(select(Instance.sop_uid, Instance.metadata_json))}
    # a re-send without a context writes the same bytes, and changes no row
    again = [services.pipeline.ingest(*_received(f), sender) for f in files]
    assert [r.replaced for r in again] == [True] * 4
    assert [r.sop_uid for r in again] == [r.sop_uid for r in results]
    assert {path: (services.store.root / path).read_bytes() for _, path in stored} == before
    assert _stored(services) == stored
    for sop_uid, document in metadata.items():
        assert document is not None and sop_uid in document and PATIENT not in document


def test_withdrawal_during_an_association_refuses_the_next_instance(services: Services,
                                                                    tmp_path: Path) -> None:
    files = _series(tmp_path / "ct", 3)
    sender = _sender(services)
    with services.pipeline.context() as context:
        first = services.pipeline.ingest(*_received(files[0]), sender, context=context)
        services.care.withdraw_consent(first.pseudonym, actor="test")
        for path in files[1:]:
            with pytest.raises(IngestRefused) as refused:
                services.pipeline.ingest(*_received(path), sender, context=context)
            assert refused.value.reason is Refusal.NO_CONSENT_FOR_CARE
    assert _stored(services) == []
    assert list((services.store.root / "instances").rglob("*.dcm")) == []
    assert list((services.store.root / "tmp").iterdir()) == []


def test_consent_is_checked_again_when_the_instance_is_indexed(services: Services,
                                                               tmp_path: Path) -> None:
    """A withdrawal between the enrolment lookup and the index transaction
    (the window a held connection and cached identity leave) stores nothing."""
    files = _series(tmp_path / "ct", 2)
    sender = _sender(services)
    pipeline = services.pipeline
    with pipeline.context() as context:
        first = pipeline.ingest(*_received(files[0]), sender, context=context)
        looked_up = pipeline._enrolment

        def then_withdraw(ds: Dataset, who: Sender, ctx: IngestContext) -> Any:
            found = looked_up(ds, who, ctx)
            services.care.withdraw_consent(first.pseudonym, actor="test")
            return found

        pipeline._enrolment = then_withdraw  # type: ignore[method-assign]
        with pytest.raises(IngestRefused) as refused:
            pipeline.ingest(*_received(files[1]), sender, context=context)
    assert refused.value.reason is Refusal.NO_CONSENT_FOR_CARE
    assert _stored(services) == []
    assert list((services.store.root / "instances").rglob("*.dcm")) == []


def _index_rows(statements: IndexStatements, db: Database) -> dict[str, list[tuple[Any, ...]]]:
    now = datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC)
    with db.session() as s:
        centre = Centre(name="C")
        s.add(centre)
        s.flush()
        s.add(Enrolment(id=7, pseudonym="ERN-0000000001", centre_id=centre.id,
                        patient_hash="h", key_salt=b"\x00" * 32, created_at=now))
    study = {"study_uid": "2.25.1", "enrolment_id": 7, "study_date": "20250101",
             "study_time": None, "created_at": now, "patient_name": "ERN-0000000001",
             "patient_id": "ERN-0000000001", "patient_birth_date": None, "patient_sex": "O",
             "accession_number": None, "study_id": None, "study_description": "Dé-scan",
             "referring_physician_name": None}
    series = {"series_uid": "2.25.2", "study_uid": "2.25.1", "modality": "CT",
              "series_number": 3, "series_description": None, "series_date": "20250101",
              "series_time": "101010", "pps_start_date": None, "pps_start_time": None}
    instance = {"sop_uid": "2.25.3", "series_uid": "2.25.2", "study_uid": "2.25.1",
                "enrolment_id": 7, "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
                "transfer_syntax_uid": "1.2.840.10008.1.2.1", "instance_number": None,
                "path": "instances/2.25.1/2.25.2/2.25.3.dcm", "size": 2 ** 40,
                "profile_name": "default", "profile_version": "2", "profile_sha256": "ab" * 32,
                "received_at": now, "metadata_json": '{"x":"é"}', "number_of_frames": 1,
                "pixel_data_offset": 1234, "pixel_data_length": 2 ** 33,
                "image_json": "{}"}
    results = []
    for _ in range(2):  # the second is a re-send
        with db.engine.begin() as conn:
            results.append(statements.write(conn, 7, now, study, series, instance))
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE enrolments SET consent_care = 0"))
    with db.engine.begin() as conn:
        results.append(statements.write(conn, 7, now, None, None, instance))
    assert results == [True, False, None]
    out = {}
    with db.engine.connect() as conn:
        for table in ("studies", "series", "instances", "enrolments"):
            out[table] = [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table}"))]
    return out


def test_sqlite_statements_write_what_the_core_statements_write(tmp_path: Path) -> None:
    written = []
    for raw in (True, False):
        db = Database(f"sqlite:///{tmp_path / f'raw-{raw}.sqlite'}")
        db.migrate()
        written.append(_index_rows(IndexStatements("sqlite", raw_sqlite=raw), db))
        db.dispose()
    assert written[0] == written[1]
    assert len(written[0]["instances"]) == 1
    with Database(f"sqlite:///{tmp_path / 'raw-True.sqlite'}").session() as s:
        row = s.scalars(select(Instance)).one()
        assert (row.received_at.replace(tzinfo=UTC), row.size) == (
            datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC), 2 ** 40)
        assert s.scalars(select(Study.study_description)).one() == "Dé-scan"
        assert s.scalars(select(Series.series_number)).one() == 3


def test_a_started_write_is_invisible_until_finished_and_leaves_nothing_if_aborted(
        tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "store")
    key = InstanceKey("2.25.1", "2.25.2", "2.25.3")
    pending = store.start_put(key, b"abcd" * 1000)
    assert not store.exists(key)
    assert len(list(store.tmp.iterdir())) == 1
    pending.abort()
    pending.abort()  # idempotent
    assert not store.exists(key) and list(store.tmp.iterdir()) == []
    pending = store.start_put(key, b"abcd" * 1000)
    assert pending.location == store.relative(key) == "instances/2.25.1/2.25.2/2.25.3.dcm"
    stored = pending.finish()
    assert (stored.location, stored.size, stored.replaced) == (pending.location, 4000, False)
    assert store.get(key) == b"abcd" * 1000 and list(store.tmp.iterdir()) == []
    with pytest.raises(ValueError, match="finished or aborted"):
        pending.finish()
    assert store.put(key, b"efgh").replaced and store.get(key) == b"efgh"


@pytest.mark.parametrize("ts", [None, ImplicitVRLittleEndian, RLELossless])
def test_the_writer_tells_where_native_pixel_data_lies(tmp_path: Path, ts: str | None) -> None:
    kwargs = {} if ts is None else {"transfer_syntax": ts}
    path = write_ct_series(tmp_path, n=1, size=64, **kwargs)[0]
    ds, syntax = _received(path)
    pixels = ds._dict[0x7FE00010]
    data, located = encode_instance(ds, syntax)
    assert data == encode_part10(_received(path)[0], syntax)
    if ts == RLELossless:
        assert located is None
        return
    assert type(ds._dict[0x7FE00010]) is RawDataElement  # copied, not converted
    assert located == locate_pixel_data(data, ds, pydicom.uid.UID(syntax))
    offset, length = located
    assert data[offset:offset + length] == pixels.value


def test_uids_are_read_as_pydicom_reads_them_without_converting(tmp_path: Path) -> None:
    ds, _ = _received(_series(tmp_path, 1)[0])
    for tag in (0x00080016, 0x00080018, 0x0020000D, 0x0020000E):
        assert type(ds._dict[tag]) is RawDataElement
        peeked = peek_uid(ds, tag)
        assert type(ds._dict[tag]) is RawDataElement
        assert peeked == str(ds[tag].value)  # converts: the same text
        assert peek_uid(ds, tag) == peeked
    assert peek_uid(ds, 0x00081155) is None
    padded = Dataset()
    padded._dict[pydicom.tag.BaseTag(0x00080018)] = RawDataElement(
        pydicom.tag.BaseTag(0x00080018), "UI", 8, b"1.2.3 \x00\x00", 0, False, True)
    assert peek_uid(padded, 0x00080018) == "1.2.3"


def test_metadata_through_a_cache_is_the_same_text(sample_set: tuple[Path, Manifest]) -> None:
    directory, manifest = sample_set
    profile = load_profiles(ROOT / "deid_profiles").active
    key = hashlib.sha256(b"metadata cache test").digest()
    pseudonymiser = Pseudonymiser(key=key, pseudonym="ERN-METADATA01",
                                  date_shift_days=derive_date_shift(key))
    cache = MetadataCache()
    for entry in manifest.files * 2:  # the second round finds every value cached
        ds, _ = _received(directory / entry["path"])
        profile.apply(ds, pseudonymiser)
        ts = str(ds.file_meta.TransferSyntaxUID)
        data, located = encode_instance(ds, ts)
        instance = InstanceKey(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                               str(ds.SOPInstanceUID))
        plain = describe_instance(ds, data, ts, instance)
        assert describe_instance(ds, data, ts, instance, located, cache) == plain, entry["path"]
        document = json.loads(plain.metadata_json)
        # the image attributes apart: the same values, for images only
        if "7FE00010" in document:
            assert plain.image_json is not None
            image = json.loads(plain.image_json)
            assert image == {k: v for k, v in document.items() if k in IMAGE_JSON_KEYS}
            assert "00280010" in image, entry["path"]
        else:
            assert plain.image_json is None, entry["path"]
    assert repr(cache) != "MetadataCache(0 values)"


def test_contexts_of_concurrent_associations_store_everything_once(services: Services,
                                                                   tmp_path: Path) -> None:
    series = [_series(tmp_path / f"s{seed}", 6, seed=seed) for seed in range(1, 5)]
    sender = _sender(services)
    errors: list[BaseException] = []

    def association(files: list[Path]) -> None:
        try:
            with services.pipeline.context() as context:
                for path in files + files[:2]:  # and two re-sends
                    services.pipeline.ingest(*_received(path), sender, context=context)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=association, args=(files,)) for files in series]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stored = _stored(services)
    assert len(stored) == 24 == len({sop for sop, _ in stored})
    on_disk = {str(p.relative_to(services.store.root))
               for p in (services.store.root / "instances").rglob("*.dcm")}
    assert on_disk == {path for _, path in stored}
    assert services.db.engine.pool.checkedout() == 0


def test_spare_files_are_empty_private_and_removed(tmp_path: Path) -> None:
    """The store makes empty temporary files ahead (a background thread): they
    hold nothing, only their owner may open them, a write moves one under tmp/
    before writing, and closing the store or a restart's recovery removes them."""
    store = FilesystemStore(tmp_path / "store")
    for n in range(5):
        store.put(InstanceKey("2.25.1", "2.25.2", f"2.25.{n + 10}"), b"x" * 100)
    deadline = time.monotonic() + 10
    while len(list(store.spare.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    spares = list(store.spare.iterdir())
    assert len(spares) == 2
    for spare in spares:
        assert spare.stat().st_size == 0 and spare.stat().st_mode & 0o777 == 0o600
    assert list(store.tmp.iterdir()) == []
    # a crash leaves spares behind: the next start's recovery removes them
    restarted = FilesystemStore(tmp_path / "store")
    assert restarted.recover() == 0 and list(store.spare.iterdir()) == []
    store.close()
    restarted.close()
    store = FilesystemStore(tmp_path / "store")
    store.put(InstanceKey("2.25.1", "2.25.2", "2.25.99"), b"y")
    store.close()
    assert list(store.spare.iterdir()) == []
    assert store.get(InstanceKey("2.25.1", "2.25.2", "2.25.99")) == b"y"
