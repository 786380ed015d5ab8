"""The association acceptor (dicom_service.ingest.ulp) against real requestors:
DCMTK and pynetdicom, and hand-made PDUs for what they would never send.

The listener runs in this process on an ephemeral loopback port, with its own
throw-away data directory.
"""

from __future__ import annotations

import io
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE, build_role
from pynetdicom.pdu_primitives import AsynchronousOperationsWindowNegotiation

from dicom_service.app import Services, build_services
from dicom_service.config import Settings
from dicom_service.dicom.status import StoreStatus
from dicom_service.ingest import ulp
from dicom_service.ingest.scp import DicomListener
from sample_data.generate import write_ct_series
from tests.support.datasets import tiny_ct
from tests.support.peers import echoscu, storescu

AET = "ULP_TEST"
PEER = "ULP_PEER"
CENTRE = "ULP Centre"
PATIENT = "ULP-0001"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Services, DicomListener]]:
    settings = Settings(data_dir=tmp_path / "data", server_secret=b"u" * 32, dicom_port=0,
                        ae_title=AET, max_pdu_size=4096, max_associations=2)
    services = build_services(settings)
    services.care.add_centre(CENTRE, actor="test")
    services.care.add_peer(PEER, CENTRE, None, actor="test")
    services.care.enrol(CENTRE, PATIENT, None, actor="test")
    listener = DicomListener(settings, services.care, services.pipeline)
    listener.start()
    try:
        yield services, listener
    finally:
        listener.stop()
        services.close()


def _ct(rows: int = 64) -> Dataset:
    return tiny_ct(PATIENT, rows=rows,
                   pixels=np.arange(rows * rows, dtype=np.uint16).tobytes())


def _stored_pixels(services: Services) -> list[bytes]:
    root = services.settings.data_dir / "store" / "instances"
    return [bytes(pydicom.dcmread(p).PixelData) for p in sorted(root.rglob("*.dcm"))]


# -- hand-made PDUs --------------------------------------------------------------------
def _item(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def _uid(kind: int, value: str) -> bytes:
    return _item(kind, value.encode("ascii"))


def _request(called: str, calling: str, *, context: str = "1.2.840.10008.3.1.1.1") -> bytes:
    pc = _item(0x20, bytes([1, 0, 0, 0]) + _uid(0x30, CTImageStorage)
               + _uid(0x40, ExplicitVRLittleEndian))
    user = _item(0x50, _item(0x51, struct.pack(">I", 16384)) + _uid(0x52, "1.2.3.4"))
    body = (struct.pack(">HH", 1, 0) + called.ljust(16).encode() + calling.ljust(16).encode()
            + b"\0" * 32 + _uid(0x10, context) + pc + user)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    head = b""
    while len(head) < 6:
        chunk = sock.recv(6 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    length = struct.unpack(">I", head[2:])[0]
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return head[0], body


def _associated(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(_request(AET, PEER))
    kind, _ = _read_pdu(sock)
    assert kind == 0x02, "association not accepted"
    return sock


def _p_data(context_id: int, control: int, data: bytes) -> bytes:
    pdv = struct.pack(">IBB", len(data) + 2, context_id, control) + data
    return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv


def _command(**elements: tuple[int, bytes]) -> bytes:
    body = b"".join(struct.pack("<HHI", 0, tag, len(v)) + v for tag, v in elements.values())
    return struct.pack("<HHI", 0, 0, 4) + len(body).to_bytes(4, "little") + body


def _store_command(ds: Dataset) -> bytes:
    """A C-STORE-RQ (message 1) for ``ds``, with a data set to follow."""
    return _command(sop=(0x0002, _ui(CTImageStorage)), field=(0x0100, _us(0x0001)),
                    id=(0x0110, _us(1)), prio=(0x0700, _us(0)), dstype=(0x0800, _us(0x0000)),
                    sop_uid=(0x1000, _ui(str(ds.SOPInstanceUID))))


def _us(value: int) -> bytes:
    return value.to_bytes(2, "little")


def _ui(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


# -- tests ----------------------------------------------------------------------------
def test_a_ct_series_in_4_kib_pdus_is_reassembled_exactly(
        node: tuple[Services, DicomListener], tmp_path: Path) -> None:
    """storescu splits each 512x512 instance into 128+ PDUs of our 4 KiB maximum:
    every one is answered Success and stored with exactly its pixels."""
    services, listener = node
    files = write_ct_series(tmp_path / "ct", n=5, size=512, patient_id=PATIENT, issuer=None)
    result = storescu(files, "127.0.0.1", listener.port, AET, PEER)
    assert result.returncode == 0, result.stderr
    sent = sorted(bytes(pydicom.dcmread(f).PixelData) for f in files)
    assert sorted(_stored_pixels(services)) == sent


def test_pynetdicom_requestor_negotiates_roles_and_the_operations_window(
        node: tuple[Services, DicomListener]) -> None:
    services, listener = node
    ae = AE(ae_title=PEER)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 5
    window.maximum_number_operations_performed = 5
    role = build_role(CTImageStorage, scu_role=True, scp_role=False)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=AET, ext_neg=[window, role])
    assert assoc.is_established
    try:
        # one operation at a time, whatever was proposed
        assert assoc.acceptor.asynchronous_operations == (1, 1)
        assert assoc.acceptor.maximum_length == 4096
        ds = _ct()
        assert int(assoc.send_c_store(ds).Status) == StoreStatus.SUCCESS
    finally:
        assoc.release()
    assert assoc.is_released
    assert _stored_pixels(services) == [bytes(_ct().PixelData)]


def test_wrong_application_context_is_rejected(node: tuple[Services, DicomListener]) -> None:
    _, listener = node
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
        sock.sendall(_request(AET, PEER, context="1.2.3.4"))
        kind, body = _read_pdu(sock)
    assert kind == 0x03
    assert tuple(body[1:4]) == ulp.REJECT_APPLICATION_CONTEXT


def test_association_limit_rejects_the_next_one_transiently(
        node: tuple[Services, DicomListener]) -> None:
    _, listener = node
    held = [_associated(listener.port) for _ in range(2)]
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
            sock.sendall(_request(AET, PEER))
            kind, body = _read_pdu(sock)
        assert kind == 0x03
        assert tuple(body[1:4]) == ulp.REJECT_TOO_MANY
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("what, pdus, reason", [
    ("unknown PDU type", [struct.pack(">BBI", 0x09, 0, 4) + b"\0" * 4],
     ulp.ABORT_UNRECOGNISED_PDU),
    ("second A-ASSOCIATE-RQ", [_request(AET, PEER)], ulp.ABORT_UNEXPECTED_PDU),
    ("context never accepted", [_p_data(3, 0x03, b"\0" * 8)], ulp.ABORT_INVALID_PARAMETER),
    ("data set before its command", [_p_data(1, 0x02, b"\0" * 8)], ulp.ABORT_UNEXPECTED_PDU),
    ("command set cut inside an element", [_p_data(1, 0x03, b"\0\0\0\0\x10\0\0\0ab")],
     ulp.ABORT_INVALID_PARAMETER),
    ("PDV longer than its PDU",
     [struct.pack(">BBI", 0x04, 0, 8) + struct.pack(">IBB", 100, 1, 3) + b"ab"],
     ulp.ABORT_INVALID_PARAMETER),
])
def test_protocol_errors_abort_that_association_only(
        node: tuple[Services, DicomListener], what: str, pdus: list[bytes],
        reason: int) -> None:
    services, listener = node
    sock = _associated(listener.port)
    try:
        for pdu in pdus:
            sock.sendall(pdu)
        kind, body = _read_pdu(sock)
        assert kind == 0x07, what
        assert body[2] == 2 and body[3] == reason, (what, body)  # source: provider
    finally:
        sock.close()
    # nothing stored, and the next association is served
    assert _stored_pixels(services) == []
    assert echoscu("127.0.0.1", listener.port, AET, PEER).returncode == 0


def test_an_operation_other_than_echo_and_store_is_answered_unrecognised(
        node: tuple[Services, DicomListener]) -> None:
    _, listener = node
    sock = _associated(listener.port)
    try:
        # C-FIND-RQ on the CT storage context (no query model is offered)
        command = _command(sop=(0x0002, _ui(CTImageStorage)), field=(0x0100, _us(0x0020)),
                           id=(0x0110, _us(7)), prio=(0x0700, _us(0)),
                           dstype=(0x0800, _us(0x0101)))
        sock.sendall(_p_data(1, 0x03, command))
        kind, body = _read_pdu(sock)
        assert kind == 0x04
        response = ulp.decode_command(body[6:])
        assert int.from_bytes(response[0x0100], "little") == 0x8020
        assert int.from_bytes(response[0x0120], "little") == 7
        assert int.from_bytes(response[0x0900], "little") == ulp.STATUS_UNRECOGNISED_OPERATION
        # the association goes on: release it properly
        sock.sendall(struct.pack(">BBI", 0x05, 0, 4) + b"\0" * 4)
        kind, _ = _read_pdu(sock)
        assert kind == 0x06
    finally:
        sock.close()


def test_a_peer_that_vanishes_mid_data_set_leaves_nothing(
        node: tuple[Services, DicomListener]) -> None:
    services, listener = node
    ds = _ct()
    sock = _associated(listener.port)
    command = _store_command(ds)
    sock.sendall(_p_data(1, 0x03, command) + _p_data(1, 0x00, b"\x08\x00" * 50))
    sock.close()
    assert echoscu("127.0.0.1", listener.port, AET, PEER).returncode == 0
    assert _stored_pixels(services) == []
    assert list((services.settings.data_dir / "store" / "tmp").iterdir()) == []


def test_pdus_a_little_over_the_maximum_are_taken_and_huge_ones_refused(
        node: tuple[Services, DicomListener]) -> None:
    """A sender that fills PDVs with our maximum of data (PDUs 6 bytes over it)
    is served; a length field far beyond it aborts before anything is allocated."""
    services, listener = node
    ds = _ct()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=False, implicit_vr=False,
                     little_endian=True)
    data = buffer.getvalue()
    assert len(data) > 2 * 4096
    sock = _associated(listener.port)
    try:
        command = _store_command(ds)
        sock.sendall(_p_data(1, 0x03, command))
        chunks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
        for n, chunk in enumerate(chunks):
            sock.sendall(_p_data(1, 0x02 if n == len(chunks) - 1 else 0x00, chunk))
        kind, body = _read_pdu(sock)
        assert kind == 0x04
        assert int.from_bytes(ulp.decode_command(body[6:])[0x0900], "little") == 0
        sock.sendall(struct.pack(">BBI", 0x04, 0, 4096 + ulp.PDU_SLACK + 1))
        kind, body = _read_pdu(sock)
        assert kind == 0x07 and body[3] == ulp.ABORT_INVALID_PARAMETER
    finally:
        sock.close()
    assert _stored_pixels(services) == [bytes(ds.PixelData)]


def test_a_command_with_bytes_that_are_no_uid_is_still_answered(
        node: tuple[Services, DicomListener]) -> None:
    _, listener = node
    sock = _associated(listener.port)
    try:
        command = _command(sop=(0x0002, b"1.2.\xff\xfe"), field=(0x0100, _us(0x0030)),
                           id=(0x0110, _us(3)), dstype=(0x0800, _us(0x0101)))
        sock.sendall(_p_data(1, 0x03, command))
        kind, body = _read_pdu(sock)
        assert kind == 0x04
        response = ulp.decode_command(body[6:])
        assert int.from_bytes(response[0x0100], "little") == 0x8030
        assert int.from_bytes(response[0x0900], "little") == 0
        assert response[0x0002].rstrip(b"\0").decode("ascii").startswith("1.2.")
    finally:
        sock.close()
    assert echoscu("127.0.0.1", listener.port, AET, PEER).returncode == 0
