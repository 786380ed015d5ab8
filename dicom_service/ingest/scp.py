"""The DICOM listener: C-ECHO and C-STORE, kept thin.

Associations are accepted only from registered peers (calling AE title, and
source address where the peer is bound to one); others are rejected at
association with "calling AE title not recognised" (PS3.8 Table 9-21). A
C-STORE is parsed, handed to the ingest pipeline and answered with a named
DIMSE status once the instance is durable and indexed.

The upper layer protocol is :mod:`.ulp` (one blocking thread per
association, pynetdicom's PDU classes and negotiation); this module is the
listening socket, TLS, the admission of peers and the mapping of pipeline
results to statuses.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any

import pynetdicom
from pydicom.uid import (
    JPEG2000,
    UID,
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
from pynetdicom import StoragePresentationContexts, build_context
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicom_service import metrics
from dicom_service.care.enrolment import CareService
from dicom_service.config import Settings
from dicom_service.dicom.parse import SOP_CLASS_UID, SOP_INSTANCE_UID, parse_dataset, peek_uid
from dicom_service.dicom.status import STATUS_COMMENTS, StoreStatus
from dicom_service.errors import IngestRefused, Refusal
from dicom_service.ingest import ulp
from dicom_service.ingest.pipeline import IngestContext, IngestPipeline, Sender
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



@dataclass(frozen=True)
class _Admitted:
    """What an accepted association keeps: who sent it, and the ingest context
    its instances share (one database connection, the de-identification
    caches), closed when the association ends."""

    sender: Sender
    context: IngestContext


def _status(code: StoreStatus) -> ulp.Response:
    if code == StoreStatus.SUCCESS:
        return ulp.Response(int(code))
    return ulp.Response(int(code), STATUS_COMMENTS[code][:64])


def supported_contexts() -> list[PresentationContext]:
    """Verification and every storage SOP class pynetdicom knows, each in every
    transfer syntax we keep as received."""
    syntaxes: list[str | UID] = list(TRANSFER_SYNTAXES)
    contexts = [build_context(Verification, syntaxes)]
    for cx in StoragePresentationContexts:
        if cx.abstract_syntax is not None:
            contexts.append(build_context(cx.abstract_syntax, syntaxes))
    return contexts


def _quiet_pynetdicom() -> None:
    """pynetdicom logs identifiers at INFO/DEBUG by default: turn that off."""
    pynetdicom._config.LOG_REQUEST_IDENTIFIERS = False
    pynetdicom._config.LOG_RESPONSE_IDENTIFIERS = False
    pynetdicom._config.LOG_HANDLER_LEVEL = "none"
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


class DicomListener:
    """The C-ECHO / C-STORE service class provider (implements :class:`ulp.Service`)."""

    def __init__(self, settings: Settings, care: CareService, pipeline: IngestPipeline) -> None:
        _quiet_pynetdicom()
        self.settings = settings
        self.care = care
        self.pipeline = pipeline
        self.limits = ulp.Limits(max_pdu_size=settings.max_pdu_size,
                                 supported=supported_contexts())
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._owner = True
        self._closing = False
        self._ssl = self._ssl_context()

    @property
    def port(self) -> int:
        if self._socket is None:
            return self.settings.dicom_port
        return int(self._socket.getsockname()[1])

    def start(self, *, inherited: socket.socket | None = None) -> None:
        """Start listening in a background thread.

        Several processes share one listening socket (``serve`` creates it and
        its listener processes inherit it as ``inherited``): each blocks in
        accept(), and the kernel hands each new connection to the process that
        has waited longest, so concurrent associations are dealt round-robin
        and use every core despite Python's GIL. (SO_REUSEPORT would hash each
        connection to a process: four associations would often land three on
        one process and one on the other.)
        """
        if inherited is None:
            host = self.settings.dicom_host
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._socket = socket.create_server((host, self.settings.dicom_port),
                                                family=family, backlog=128)
            self._owner = True
        else:
            self._socket = inherited
            self._owner = False
        self._thread = threading.Thread(target=self._accept_loop, name="dicom-listener",
                                        daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        """The listening socket, for listener processes to inherit."""
        if self._socket is None:
            raise RuntimeError("the listener is not started")
        return self._socket.fileno()

    def stop(self) -> None:
        """Stop accepting, and end the associations in progress."""
        listening, self._socket = self._socket, None
        if listening is None:
            return
        self._closing = True
        if self._owner:
            try:
                listening.shutdown(socket.SHUT_RDWR)  # wakes every accept() up
            except OSError:
                pass
        listening.close()
        if self._thread is not None and self._owner:
            self._thread.join(timeout=5)
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

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

    # -- connections ----------------------------------------------------------
    def _accept_loop(self) -> None:
        listening = self._socket
        while listening is not None and not self._closing:
            try:
                conn, address = listening.accept()
            except OSError as exc:
                if self._closing or exc.errno in (errno.EBADF, errno.EINVAL):
                    return  # stopped (here, or by the process that owns the socket)
                log.warning("accept failed (%s); retrying", errno.errorcode.get(exc.errno or 0))
                threading.Event().wait(0.05)
                continue
            threading.Thread(target=self._connection, args=(conn, address[0]),
                             name="dicom-association", daemon=True).start()

    def _connection(self, conn: socket.socket, address: str) -> None:
        # Without TCP_NODELAY every C-STORE response waits for a delayed ACK.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ssl is not None:
            try:
                conn.settimeout(self.limits.acse_timeout)
                conn = self._ssl.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                log.info("TLS handshake failed (%s)", type(exc).__name__)
                conn.close()
                return
        with self._lock:
            self._connections.add(conn)
        metrics.ASSOCIATIONS_ACTIVE.inc()
        try:
            ulp.Acceptor(conn, address, self, self.limits).run()
        finally:
            metrics.ASSOCIATIONS_ACTIVE.dec()
            with self._lock:
                self._connections.discard(conn)

    # -- ulp.Service ----------------------------------------------------------
    def admit(self, request: ulp.AssociationRequest
              ) -> tuple[tuple[int, int, int] | None, Any]:
        if request.called_ae_title != self.settings.ae_title.strip():
            log.info("association rejected: called AE title is not ours")
            metrics.ASSOCIATIONS_REJECTED.labels(reason="called-ae-not-recognised").inc()
            return ulp.REJECT_CALLED_AE, None
        with self._lock:
            active = len(self._connections)
        if active > self.settings.max_associations:
            log.warning("association rejected: %d associations already", active - 1)
            metrics.ASSOCIATIONS_REJECTED.labels(reason="local-limit-exceeded").inc()
            return ulp.REJECT_TOO_MANY, None
        try:
            peer = self.care.find_peer(request.calling_ae_title, request.address)
        except Exception as exc:  # the database is down: refuse, transiently
            log.error("peer lookup failed (%s)", describe(exc))
            metrics.ASSOCIATIONS_REJECTED.labels(reason="lookup-failed").inc()
            return ulp.REJECT_TRANSIENT, None
        if peer is None:
            log.info("association rejected: calling AE title not registered")
            metrics.ASSOCIATIONS_REJECTED.labels(reason="calling-ae-not-recognised").inc()
            return ulp.REJECT_CALLING_AE, None
        sender = Sender(centre_id=peer.centre_id, actor=f"peer:{request.calling_ae_title}")
        return None, _Admitted(sender, self.pipeline.context())

    def closed(self, association: ulp.Association | None) -> None:
        if association is not None and isinstance(association.state, _Admitted):
            association.state.context.close()  # forgets the identifiers it cached

    def echo(self, association: ulp.Association) -> ulp.Response:
        return ulp.Response(int(StoreStatus.SUCCESS))

    def store(self, association: ulp.Association, request: ulp.StoreRequest) -> ulp.Response:
        admitted: _Admitted = association.state
        try:
            ds = parse_dataset(request.data_set, request.transfer_syntax)
        except Exception as exc:
            log.info("C-STORE refused: unparsable data set (%s)", describe(exc))
            metrics.INSTANCES_REFUSED.labels(reason=Refusal.UNPARSABLE_DATASET.value).inc()
            return _status(StoreStatus.UNPARSABLE_DATASET)
        # The data set must be what the command says it is (PS3.4 B.2.3). Read
        # without converting the elements: the writer then copies them as sent.
        sop_class = peek_uid(ds, SOP_CLASS_UID)
        sop_instance = peek_uid(ds, SOP_INSTANCE_UID)
        if (sop_class or "") != request.sop_class_uid or (
                sop_instance or "") != request.sop_instance_uid:
            if sop_class and sop_instance:
                metrics.INSTANCES_REFUSED.labels(reason="sop-class-mismatch").inc()
                return _status(StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS)
        try:
            self.pipeline.ingest(ds, request.transfer_syntax, admitted.sender,
                                 context=admitted.context)
        except IngestRefused as exc:
            log.info("C-STORE refused: %s", exc.reason.value)
            return _status(REFUSAL_STATUS[exc.reason])
        except Exception as exc:
            log.error("C-STORE failed (%s)", describe(exc))
            return _status(StoreStatus.PROCESSING_FAILURE)
        return _status(StoreStatus.SUCCESS)
