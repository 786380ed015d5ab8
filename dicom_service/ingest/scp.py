"""The DICOM listener: C-ECHO and C-STORE over pynetdicom, kept thin.

Associations are accepted only from registered peers (calling AE title, and
source address where the peer is bound to one); others are rejected at
association with "calling AE title not recognised" (PS3.8 Table 9-21). A
C-STORE handler decodes the request, calls the ingest pipeline and maps the
result to a named DIMSE status.
"""

from __future__ import annotations

import io
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, cast

import pynetdicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from dicom_service import metrics
from dicom_service.care.enrolment import CareService
from dicom_service.config import Settings
from dicom_service.dicom.parse import parse_dataset
from dicom_service.dicom.status import STATUS_COMMENTS, StoreStatus
from dicom_service.errors import IngestRefused, Refusal
from dicom_service.ingest.pipeline import IngestPipeline, Sender
from dicom_service.logsafe import describe

log = logging.getLogger(__name__)

# Transfer syntaxes accepted for storage; instances are kept as received.
TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]

REFUSAL_STATUS: dict[Refusal, StoreStatus] = {
    Refusal.UNPARSABLE_DATASET: StoreStatus.UNPARSABLE_DATASET,
    Refusal.MISSING_REQUIRED_UIDS: StoreStatus.MISSING_REQUIRED_UIDS,
    Refusal.INVALID_UID: StoreStatus.INVALID_UID,
    Refusal.PATIENT_NOT_ENROLLED: StoreStatus.PATIENT_NOT_ENROLLED,
    Refusal.NO_CONSENT_FOR_CARE: StoreStatus.NO_CONSENT_FOR_CARE,
    Refusal.PEER_NOT_AUTHORISED: StoreStatus.PEER_NOT_AUTHORISED,
    Refusal.DEIDENTIFICATION_FAILED: StoreStatus.DEIDENTIFICATION_FAILED,
    Refusal.OUT_OF_RESOURCES: StoreStatus.OUT_OF_RESOURCES,
}

DUL_LOOP_DELAY = 0.0005

# A-ASSOCIATE-RJ: rejected-permanent, service-user, calling AE title not recognised
_REJECT_CALLING_AE = (0x01, 0x01, 0x03)


class _ReusePortServer(ThreadedAssociationServer):
    """An association server whose port other processes may bind too."""

    def server_bind(self) -> None:
        if self.socket is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def _quiet_pynetdicom() -> None:
    """pynetdicom logs identifiers at INFO/DEBUG by default: turn that off."""
    pynetdicom._config.LOG_REQUEST_IDENTIFIERS = False
    pynetdicom._config.LOG_RESPONSE_IDENTIFIERS = False
    pynetdicom._config.LOG_HANDLER_LEVEL = "none"
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def _exact_reader(assoc_socket: Any) -> Callable[[int], bytearray]:
    """``AssociationSocket.recv`` with the same contract (up to ``nr_bytes``,
    fewer only when the peer closes), reading with ``recv_into`` into one
    buffer instead of 4 KiB ``recv`` calls joined together."""
    def recv(nr_bytes: int) -> bytearray:
        buf = bytearray(nr_bytes)
        got = 0
        with memoryview(buf) as view:
            while got < nr_bytes:
                n = assoc_socket.socket.recv_into(view[got:], nr_bytes - got)
                if not n:
                    break
                got += n
        if got < nr_bytes:
            del buf[got:]
        return buf
    return recv


def _status(code: StoreStatus) -> Dataset:
    rsp = Dataset()
    rsp.Status = int(code)
    if code != StoreStatus.SUCCESS:
        rsp.ErrorComment = STATUS_COMMENTS[code][:64]
    return rsp


class DicomListener:
    """The C-ECHO / C-STORE service class provider."""

    def __init__(self, settings: Settings, care: CareService, pipeline: IngestPipeline) -> None:
        _quiet_pynetdicom()
        self.settings = settings
        self.care = care
        self.pipeline = pipeline
        self._senders: dict[int, Sender] = {}
        self._lock = threading.Lock()
        self._server: Any = None
        ae = AE(ae_title=settings.ae_title)
        ae.require_called_aet = True
        ae.maximum_associations = settings.max_associations
        ae.maximum_pdu_size = settings.max_pdu_size
        ae.acse_timeout = 30
        ae.dimse_timeout = 60
        ae.network_timeout = 120
        ae.add_supported_context(Verification, TRANSFER_SYNTAXES)
        for cx in StoragePresentationContexts:
            if cx.abstract_syntax is not None:
                ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)
        self.ae = ae

    @property
    def port(self) -> int:
        return int(self._server.server_address[1]) if self._server else self.settings.dicom_port

    def start(self, *, reuse_port: bool = False) -> None:
        """Start listening in a background thread.

        With ``reuse_port`` several processes listen on the same port
        (SO_REUSEPORT) and the kernel spreads associations across them, so that
        concurrent associations use every core despite Python's GIL.
        """
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, self._on_open),
            (evt.EVT_CONN_CLOSE, self._on_close),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
        ]
        server = self.ae.make_server(
            (self.settings.dicom_host, self.settings.dicom_port), evt_handlers=handlers,
            ssl_context=self._ssl_context(),
            server_class=_ReusePortServer if reuse_port else ThreadedAssociationServer)
        thread = threading.Thread(target=server.serve_forever, name="dicom-listener",
                                  daemon=True)
        thread.start()
        self.ae._servers.append(server)  # as AE.start_server does; shutdown() removes it
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _ssl_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if s.tls_cert is None or s.tls_key is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(s.tls_cert), str(s.tls_key))
        if s.tls_ca is not None:
            ctx.load_verify_locations(str(s.tls_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    # -- handlers ----------------------------------------------------------
    def _on_open(self, event: evt.Event) -> None:
        metrics.ASSOCIATIONS_ACTIVE.inc()
        sock = event.assoc.dul.socket
        raw = getattr(sock, "socket", None)
        if raw is not None:
            # Without TCP_NODELAY every C-STORE response waits for a delayed ACK.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # pynetdicom's DUL thread sleeps this long whenever it finds nothing to do;
        # its 1 ms default adds up to a millisecond to every C-STORE round trip.
        event.assoc.dul._run_loop_delay = DUL_LOOP_DELAY
        if sock is not None:
            # pynetdicom reads a PDU 4 KiB per recv() (about 130 calls, each a GIL
            # round trip, per 512x512 instance): read it straight into one buffer.
            sock.recv = _exact_reader(sock)  # type: ignore[method-assign,assignment]

    def _on_close(self, event: evt.Event) -> None:
        metrics.ASSOCIATIONS_ACTIVE.dec()
        with self._lock:
            self._senders.pop(id(event.assoc), None)

    def _on_requested(self, event: evt.Event) -> None:
        assoc = event.assoc
        primitive = cast(A_ASSOCIATE, assoc.requestor.primitive)
        calling = primitive.calling_ae_title.strip()
        address = assoc.requestor.address
        try:
            peer = self.care.find_peer(calling, address)
        except Exception as exc:  # the database is down: refuse, transiently
            log.error("peer lookup failed (%s)", describe(exc))
            metrics.ASSOCIATIONS_REJECTED.labels(reason="lookup-failed").inc()
            self._reject(assoc, (0x02, 0x01, 0x01))
            return
        if peer is None:
            log.info("association rejected: calling AE title not registered")
            metrics.ASSOCIATIONS_REJECTED.labels(reason="calling-ae-not-recognised").inc()
            self._reject(assoc, _REJECT_CALLING_AE)
            return
        with self._lock:
            self._senders[id(assoc)] = Sender(centre_id=peer.centre_id, actor=f"peer:{calling}")

    @staticmethod
    def _reject(assoc: Any, reason: tuple[int, int, int]) -> None:
        # As pynetdicom's own ACSE does: send A-ASSOCIATE-RJ, then wait for the
        # DUL to finish sending before the socket is closed.
        assoc.acse.send_reject(*reason)
        evt.trigger(assoc, evt.EVT_REJECTED, {})
        assoc.kill()

    def _on_echo(self, event: evt.Event) -> int:
        return int(StoreStatus.SUCCESS)

    def _on_store(self, event: evt.Event) -> Dataset:
        with self._lock:
            sender = self._senders.get(id(event.assoc))
        if sender is None:
            return _status(StoreStatus.PEER_NOT_AUTHORISED)
        request = cast(C_STORE, event.request)
        transfer_syntax = str(event.context.transfer_syntax)
        try:
            raw = cast(io.BytesIO, request.DataSet).getvalue()
            ds = parse_dataset(raw, transfer_syntax)
        except Exception as exc:
            log.info("C-STORE refused: unparsable data set (%s)", describe(exc))
            metrics.INSTANCES_REFUSED.labels(reason=Refusal.UNPARSABLE_DATASET.value).inc()
            return _status(StoreStatus.UNPARSABLE_DATASET)
        # The data set must be what the command says it is (PS3.4 B.2.3).
        if (str(ds.get("SOPClassUID", "")) != str(request.AffectedSOPClassUID)
                or str(ds.get("SOPInstanceUID", "")) != str(request.AffectedSOPInstanceUID)):
            if ds.get("SOPClassUID") and ds.get("SOPInstanceUID"):
                metrics.INSTANCES_REFUSED.labels(reason="sop-class-mismatch").inc()
                return _status(StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS)
        try:
            self.pipeline.ingest(ds, transfer_syntax, sender)
        except IngestRefused as exc:
            log.info("C-STORE refused: %s", exc.reason.value)
            return _status(REFUSAL_STATUS[exc.reason])
        except Exception as exc:
            log.error("C-STORE failed (%s)", describe(exc))
            return _status(StoreStatus.PROCESSING_FAILURE)
        return _status(StoreStatus.SUCCESS)
