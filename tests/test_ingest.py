"""Acceptance of the ingest node (issue 2), against real DCMTK peers on loopback."""

from __future__ import annotations

import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pynetdicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless
from pynetdicom import AE

from dicom_service.app import build_services
from dicom_service.config import Settings
from dicom_service.deidentify import Pseudonymiser
from dicom_service.dicom.status import StoreStatus
from sample_data.generate import Manifest, write_ct_series
from tests.conftest import CENTRE, PEER
from tests.support.datasets import tiny_ct
from tests.support.peers import echoscu, spawn_storescu, storescu
from tests.support.service import ServiceProcess


def _enrol_all(service: ServiceProcess, manifest: Manifest) -> dict[tuple[str, str | None], str]:
    return {(p["patient_id"], p.get("issuer")):
            service.enrol(CENTRE, p["patient_id"], p.get("issuer")) for p in manifest.patients}


def _encodings(value: str) -> set[bytes]:
    out = {value.encode("utf-8")}
    try:
        out.add(value.encode("latin-1"))
    except UnicodeEncodeError:
        pass
    return out


def _needles(manifest: Manifest) -> list[tuple[str, bytes]]:
    needles: list[tuple[str, bytes]] = []
    for item in manifest.planted:
        if item.get("where", "").startswith("pixels"):
            continue  # burned-in text is cleaned by the pixel filters (profiles issue)
        for enc in _encodings(item["value"]):
            needles.append((f"planted value at {item['where']}", enc))
    needles += [("original UID", uid.encode("ascii")) for uid in manifest.original_uids]
    needles += [("original date", d.encode("ascii")) for d in manifest.original_dates]
    return needles


def _pseudonymisers(service: ServiceProcess, pseudonyms: list[str]) -> dict[str, Pseudonymiser]:
    """Each enrolment's pseudonymiser (keyed UIDs, date shift), as the service
    derives it from its data directory."""
    services = build_services(Settings(data_dir=service.data_dir))
    try:
        return {p: services.care.pseudonymiser(services.care.get_enrolment(p))
                for p in pseudonyms}
    finally:
        services.close()


def test_sample_set_is_stored_deidentified_and_indexed(
        service: ServiceProcess, sample_set: tuple[Path, Manifest]) -> None:
    directory, manifest = sample_set
    pseudonyms = _enrol_all(service, manifest)
    with service:
        files = [directory / f["path"] for f in manifest.files]
        result = storescu(files, "127.0.0.1", service.dicom_port, service.ae_title, PEER)
        assert result.returncode == 0, result.stderr[-2000:]

    expected: dict[str, int] = {}
    for f in manifest.files:
        pseudonym = pseudonyms[(f["patient_id"], f.get("issuer"))]
        expected[pseudonym] = expected.get(pseudonym, 0) + 1
    rows = service.query("SELECT e.pseudonym, count(*) FROM instances i JOIN enrolments e "
                         "ON e.id = i.enrolment_id GROUP BY e.pseudonym")
    assert dict(rows) == expected
    stored = service.stored_files()
    assert len(stored) == len(manifest.files)
    for path in stored:
        ds = pydicom.dcmread(path)
        assert ds.PatientID in pseudonyms.values()
        assert str(ds.PatientName) == ds.PatientID
        assert ds.PatientIdentityRemoved == "YES"
        assert str(ds.StudyInstanceUID).startswith("2.25.")
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID

    # every instance's dates moved by exactly its enrolment's shift
    shifters = _pseudonymisers(service, sorted(set(pseudonyms.values())))
    for f in manifest.files:
        p = shifters[pseudonyms[(f["patient_id"], f.get("issuer"))]]
        original = pydicom.dcmread(directory / f["path"], stop_before_pixels=True)
        kept = pydicom.dcmread(service.store_root / p.uid(f["study_uid"])
                               / p.uid(f["series_uid"]) / f"{p.uid(f['sop_uid'])}.dcm",
                               stop_before_pixels=True)
        for keyword in ("StudyDate", "SeriesDate", "ContentDate"):
            if original.get(keyword):
                assert kept.get(keyword) == p.shift_date(original.get(keyword)), keyword
    # A shifted date can equal another study's original date (the shifts are
    # random, one month to ten years back: about one run in a hundred here).
    # Such a date was just checked to be the shift of its own; the scan below
    # looks for every other original date.
    shifted = {p.shift_date(d[:8]) for d in manifest.original_dates for p in shifters.values()}
    needles = [(what, needle) for what, needle in _needles(manifest)
               if not (what == "original date" and needle.decode("ascii") in shifted)]
    assert len(needles) > 100
    for path, data in service.all_written_bytes():
        for what, needle in needles:
            assert needle not in data, f"{what} found in {path.name}"


def test_echo_from_registered_peer_and_rejection_of_unknown(service: ServiceProcess) -> None:
    with service:
        ok = echoscu("127.0.0.1", service.dicom_port, service.ae_title, PEER)
        assert ok.returncode == 0, ok.stderr
        unknown = echoscu("127.0.0.1", service.dicom_port, service.ae_title, "STRANGER")
        assert unknown.returncode != 0
        text = (unknown.stdout + unknown.stderr).lower()
        assert "calling ae title not recognized" in text, text
        wrong_called = echoscu("127.0.0.1", service.dicom_port, "NOT_US", PEER)
        assert wrong_called.returncode != 0


def test_peer_bound_to_an_address_is_refused_from_elsewhere(tmp_path: Path) -> None:
    svc = ServiceProcess(tmp_path / "data")
    svc.setup_peer(CENTRE, "BOUND_PACS", host="127.0.0.2")
    with svc:
        result = echoscu("127.0.0.1", svc.dicom_port, svc.ae_title, "BOUND_PACS")
        assert result.returncode != 0


def _store_status(port: int, called: str, ds: Dataset, calling: str = PEER) -> int:
    ae = AE(ae_title=calling)
    ae.add_requested_context(ds.SOPClassUID if "SOPClassUID" in ds else CTImageStorage,
                             ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        status = assoc.send_c_store(ds)
        return int(status.Status)
    finally:
        assoc.release()


def _ct(patient_id: str, **overrides: str) -> Dataset:
    return tiny_ct(patient_id, **overrides)


def _rle_ct(patient_id: str) -> Dataset:
    ds = _ct(patient_id)
    ds.compress(RLELossless, np.arange(16, dtype=np.uint16).reshape(4, 4))
    return ds


def _store_file_status(port: int, called: str, path: Path, transfer_syntax: str) -> int:
    ae = AE(ae_title=PEER)
    ae.add_requested_context(CTImageStorage, transfer_syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    pynetdicom._config.STORE_SEND_CHUNKED_DATASET = True
    try:
        return int(assoc.send_c_store(path).Status)
    finally:
        pynetdicom._config.STORE_SEND_CHUNKED_DATASET = False
        assoc.release()


def _nothing_kept(svc: ServiceProcess) -> None:
    assert svc.stored_files() == []
    assert svc.query("SELECT count(*) FROM instances") == [(0,)]
    assert svc.query("SELECT count(*) FROM studies") == [(0,)]
    assert list((svc.data_dir / "store" / "tmp").iterdir()) == []


def test_not_enrolled_and_withdrawn_consent_are_refused(service: ServiceProcess) -> None:
    service.cli("centres", "add", "Hospital B")
    other_centre = service.enrol("Hospital B", "PAT-ELSEWHERE")
    assert other_centre.startswith("ERN-")
    pseudonym = service.enrol(CENTRE, "PAT-1")
    with service:
        port, aet = service.dicom_port, service.ae_title
        assert _store_status(port, aet, _ct("PAT-NOBODY")) == StoreStatus.PATIENT_NOT_ENROLLED
        # enrolled, but at another centre than the sending peer's
        assert _store_status(port, aet, _ct("PAT-ELSEWHERE")) == StoreStatus.PATIENT_NOT_ENROLLED
        _nothing_kept(service)

        assert _store_status(port, aet, _ct("PAT-1")) == StoreStatus.SUCCESS
        assert len(service.stored_files()) == 1
        out = service.cli("consent", "withdraw", pseudonym).stdout
        assert "1 instances removed" in out
        _nothing_kept(service)
        assert _store_status(port, aet, _ct("PAT-1")) == StoreStatus.NO_CONSENT_FOR_CARE
        _nothing_kept(service)
    events = service.query("SELECT action, object_id FROM audit_events "
                           "WHERE action = 'consent.withdraw'")
    assert events == [("consent.withdraw", pseudonym)]


@pytest.mark.parametrize(("overrides", "status"), [
    ({"StudyInstanceUID": "../../x"}, StoreStatus.INVALID_UID),
    ({"SeriesInstanceUID": "1." + "2" * 198}, StoreStatus.INVALID_UID),
    ({"StudyInstanceUID": "1.02.3"}, StoreStatus.INVALID_UID),
    ({"StudyInstanceUID": ""}, StoreStatus.MISSING_REQUIRED_UIDS),
])
def test_malformed_uids_are_refused(service: ServiceProcess, overrides: dict[str, str],
                                    status: StoreStatus) -> None:
    service.enrol(CENTRE, "PAT-1")
    with service:
        # hostile input: build and send it without pydicom's own validation
        with pydicom.config.disable_value_validation():
            hostile = _ct("PAT-1", **overrides)
            assert _store_status(service.dicom_port, service.ae_title, hostile) == status
        _nothing_kept(service)
        assert _store_status(service.dicom_port, service.ae_title, _ct("PAT-1")) == 0


def _associate_raw(port: int, called: str, calling: str) -> socket.socket:
    """Open an association by hand (PS3.8 9.3.2), returning the socket."""
    def item(kind: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", kind, 0, len(payload)) + payload

    def uid(kind: int, value: str) -> bytes:
        return item(kind, value.encode("ascii"))

    pc = item(0x20, bytes([1, 0, 0, 0]) + uid(0x30, CTImageStorage) +
              uid(0x40, ExplicitVRLittleEndian))
    user = item(0x50, item(0x51, struct.pack(">I", 16384)) + uid(0x52, "1.2.3.4"))
    body = (struct.pack(">HH", 1, 0) + called.ljust(16).encode() + calling.ljust(16).encode()
            + b"\0" * 32 + uid(0x10, "1.2.840.10008.3.1.1.1") + pc + user)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(struct.pack(">BBI", 0x01, 0, len(body)) + body)
    head = sock.recv(6)
    assert head[0] == 0x02, "association not accepted"
    length = struct.unpack(">I", head[2:6])[0]
    while length:
        length -= len(sock.recv(length))
    return sock


def test_garbage_and_truncated_input_leave_the_server_serving(
        service: ServiceProcess, tmp_path: Path) -> None:
    service.enrol(CENTRE, "PAT-1")
    with service:
        port, aet = service.dicom_port, service.ae_title
        # 1. not DICOM at all
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n" + bytes(range(256)) * 8)
            s.settimeout(10)
            try:
                s.recv(1024)
            except OSError:
                pass
        # 2. an association, then a P-DATA-TF whose PDV is garbage
        s = _associate_raw(port, aet, PEER)
        pdv = struct.pack(">IBB", 200, 1, 0x03) + b"\xff" * 198
        s.sendall(struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv)
        s.settimeout(10)
        try:
            s.recv(1024)
        except OSError:
            pass
        s.close()
        # 3. data sets cut short, sent as they are (pynetdicom's chunked mode
        #    streams the file's bytes without parsing them)
        for name, ds in (("native", _ct("PAT-1")), ("encapsulated", _rle_ct("PAT-1"))):
            full = tmp_path / f"{name}.dcm"
            ds.save_as(full, enforce_file_format=True)
            for cut in (20, 9, 3):
                truncated = tmp_path / f"{name}-{cut}.dcm"
                truncated.write_bytes(full.read_bytes()[:-cut])
                assert _store_file_status(port, aet, truncated, ds.file_meta.TransferSyntaxUID) \
                    == StoreStatus.UNPARSABLE_DATASET, (name, cut)
            _nothing_kept(service)
        # the server is still up and serves the next association
        assert echoscu("127.0.0.1", port, aet, PEER).returncode == 0
        assert _store_status(port, aet, _ct("PAT-1")) == StoreStatus.SUCCESS
        assert service.alive


def test_eight_concurrent_associations_store_everything_exactly_once(
        service: ServiceProcess, tmp_path: Path) -> None:
    service.enrol(CENTRE, "BENCH-0001", "HOSP-A")
    dirs = []
    for i in range(8):
        d = tmp_path / f"series{i}"
        write_ct_series(d, n=100, size=64, seed=100 + i)
        dirs.append(d)
    with service:
        procs = [spawn_storescu(d, "127.0.0.1", service.dicom_port, service.ae_title, PEER)
                 for d in dirs]
        for p in procs:
            _, err = p.communicate(timeout=600)
            assert p.returncode == 0, err[-2000:]
    rows = service.query("SELECT path FROM instances")
    assert len(rows) == 800
    files = {str(p.relative_to(service.data_dir / "store")) for p in service.stored_files()}
    assert files == {r[0] for r in rows}
    assert service.query("SELECT count(DISTINCT series_uid) FROM instances") == [(8,)]


def test_sigkill_mid_transfer_loses_nothing_acknowledged(
        service: ServiceProcess, tmp_path: Path) -> None:
    pseudonym = service.enrol(CENTRE, "BENCH-0001", "HOSP-A")
    files = write_ct_series(tmp_path / "ct", n=300, size=128, seed=7)
    service.start()
    acked: list[str] = []
    ae = AE(ae_title=PEER)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", service.dicom_port, ae_title=service.ae_title)
    assert assoc.is_established
    raw_socket = assoc.dul.socket.socket

    def killer() -> None:
        while len(acked) < 100:
            time.sleep(0.001)
        service.kill()

    thread = threading.Thread(target=killer)
    thread.start()
    for f in files:
        if not assoc.is_established:
            break
        status = assoc.send_c_store(f)
        if status and int(status.Status) == 0:
            acked.append(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID))
    thread.join()
    assoc.abort()
    raw_socket.close()  # pynetdicom drops its socket unclosed when the peer dies
    assert 100 <= len(acked) < 300

    service.start()  # restart on the same data directory
    services = build_services(Settings(data_dir=service.data_dir))
    p = services.care.pseudonymiser(services.care.get_enrolment(pseudonym))
    indexed = {r[0] for r in service.query("SELECT sop_uid FROM instances")}
    for original in acked:
        assert p.uid(original) in indexed
    for path in service.stored_files():  # no partial file is visible
        ds = pydicom.dcmread(path)
        assert len(ds.PixelData) == 128 * 128 * 2
    assert list((service.data_dir / "store" / "tmp").iterdir()) == []
    # every indexed instance has its file; a file written but not yet indexed
    # when the server died was never acknowledged and is replaced by the retry
    assert indexed <= {path.stem for path in service.stored_files()}

    result = storescu(tmp_path / "ct", "127.0.0.1", service.dicom_port, service.ae_title, PEER)
    assert result.returncode == 0, result.stderr[-2000:]
    assert service.query("SELECT count(*) FROM instances") == [(300,)]
    assert {path.stem for path in service.stored_files()} == {
        r[0] for r in service.query("SELECT sop_uid FROM instances")}
    services.close()
