"""The association acceptor: DICOM's upper layer (PS3.8) and the DIMSE messages
of C-ECHO and C-STORE (PS3.7), one blocking thread per association.

pynetdicom runs two polling threads per association (its DUL reactor and its
association reactor, each sleeping when idle) and hands every PDU between
them through queues. On one association the sender waits for each C-STORE
response, so those hand-offs and sleeps are paid on every instance. This
module keeps pynetdicom's parts for what is rich and rare (decoding the
A-ASSOCIATE-RQ with every user information item, presentation context and
role negotiation, encoding the A-ASSOCIATE-AC and -RJ) and does itself the
hot path: read each P-DATA-TF straight from the socket into the fragments of
one message, and answer with one small PDU.

States (PS3.8 9.2), as an acceptor needs them: awaiting the A-ASSOCIATE-RQ
(within the ACSE timeout), then established until A-RELEASE-RQ (answered with
A-RELEASE-RP), A-ABORT, a timeout or a protocol error (answered with A-ABORT
naming the reason). Anything unexpected aborts this association only.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydicom.uid import UID
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor

from dicom_service.dicom.part10 import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION

log = logging.getLogger(__name__)

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

# PDU types (PS3.8 9.3.1)
A_ASSOCIATE_RQ_PDU = 0x01
A_ASSOCIATE_AC_PDU = 0x02
A_ASSOCIATE_RJ_PDU = 0x03
P_DATA_TF_PDU = 0x04
A_RELEASE_RQ_PDU = 0x05
A_RELEASE_RP_PDU = 0x06
A_ABORT_PDU = 0x07

# A-ABORT reasons when the service provider aborts (PS3.8 Table 9-26)
ABORT_NOT_SPECIFIED = 0x00
ABORT_UNRECOGNISED_PDU = 0x01
ABORT_UNEXPECTED_PDU = 0x02
ABORT_INVALID_PARAMETER = 0x06

# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 Table 9-21
REJECT_APPLICATION_CONTEXT = (0x01, 0x01, 0x02)
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
REJECT_CALLED_AE = (0x01, 0x01, 0x07)
REJECT_TRANSIENT = (0x02, 0x01, 0x01)  # transient, service user, no reason given
REJECT_TOO_MANY = (0x02, 0x03, 0x02)  # transient, provider (presentation), local limit
REJECT_PROTOCOL_VERSION = (0x01, 0x03, 0x02)  # permanent, provider (presentation)

# A P-DATA-TF may exceed the maximum we announced by this much before it is
# refused: some senders count the maximum as PDV data and add the headers on
# top. The bound is there so that a length field cannot make us allocate
# gigabytes at once, not to police a few bytes.
PDU_SLACK = 64 * 1024

# An A-ASSOCIATE-RQ proposing every storage SOP class in several transfer
# syntaxes is some tens of KiB; anything far larger is not a request.
MAX_REQUEST_PDU = 1 << 20

# DIMSE command fields (PS3.7 E.1)
C_STORE_RQ = 0x0001
C_ECHO_RQ = 0x0030
C_CANCEL_RQ = 0x0FFF
RESPONSE_BIT = 0x8000
NO_DATA_SET = 0x0101
STATUS_UNRECOGNISED_OPERATION = 0x0211
STATUS_SUCCESS = 0x0000

_HEADER = struct.Struct(">BxI")
_PDV = struct.Struct(">IBB")
_ELEMENT = struct.Struct("<HHI")


class ProtocolError(Exception):
    """The peer broke the protocol: the association is aborted with ``reason``."""

    def __init__(self, message: str, reason: int = ABORT_NOT_SPECIFIED) -> None:
        super().__init__(message)
        self.reason = reason


class PeerClosed(Exception):
    """The peer closed the connection."""


@dataclass(frozen=True)
class AssociationRequest:
    """What an A-ASSOCIATE-RQ asks for, as far as admitting it goes."""

    calling_ae_title: str
    called_ae_title: str
    address: str


@dataclass
class Association:
    """One established association, as the service sees it."""

    request: AssociationRequest
    # accepted presentation contexts: ID -> (abstract syntax, transfer syntax)
    contexts: dict[int, tuple[str, str]]
    peer_max_pdu: int
    # what the service keeps for this association (e.g. the sender it admitted)
    state: Any = None


@dataclass(frozen=True)
class StoreRequest:
    message_id: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    data_set: bytes


@dataclass(frozen=True)
class Response:
    status: int
    comment: str | None = None


class Service(Protocol):
    """What the acceptor asks of the DICOM service."""

    def admit(self, request: AssociationRequest) -> tuple[tuple[int, int, int] | None, Any]:
        """(None, state) to accept (the state is kept with the association), or
        (an A-ASSOCIATE-RJ result, source and diagnostic, None) to reject."""

    def echo(self, association: Association) -> Response: ...

    def store(self, association: Association, request: StoreRequest) -> Response: ...

    def closed(self, association: Association | None) -> None:
        """Called once per connection when it ends, however it ends."""


@dataclass(frozen=True)
class Limits:
    """What this acceptor negotiates, and how long it waits."""

    max_pdu_size: int
    supported: Sequence[PresentationContext]
    acse_timeout: float = 30.0
    network_timeout: float = 120.0


# -- reading PDUs ---------------------------------------------------------------------
def _read_exact(sock: socket.socket, n: int) -> bytearray:
    """Exactly ``n`` bytes from ``sock`` (PeerClosed if it closes first)."""
    buf = bytearray(n)
    got = 0
    with memoryview(buf) as view:
        while got < n:
            k = sock.recv_into(view[got:], n - got)
            if not k:
                raise PeerClosed
            got += k
    return buf


def _read_header(sock: socket.socket) -> tuple[int, int]:
    first = sock.recv(6)
    if not first:
        raise PeerClosed
    if len(first) < 6:
        first += _read_exact(sock, 6 - len(first))
    pdu_type, length = _HEADER.unpack(first)
    return pdu_type, length


# -- DIMSE command sets (implicit VR little endian, group 0000) ----------------------
def decode_command(data: bytes) -> dict[int, bytes]:
    """The elements of a command set, by element number (group 0000 only)."""
    out: dict[int, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 8:
            raise ProtocolError("command set ends inside an element header",
                                ABORT_INVALID_PARAMETER)
        group, element, length = _ELEMENT.unpack_from(data, pos)
        pos += 8
        if group != 0x0000 or length > end - pos:
            raise ProtocolError("malformed command set", ABORT_INVALID_PARAMETER)
        out[element] = bytes(data[pos:pos + length])
        pos += length
    return out


def _us(command: dict[int, bytes], element: int) -> int:
    value = command.get(element)
    if value is None or len(value) != 2:
        raise ProtocolError(f"command element (0000,{element:04X}) missing or not US",
                            ABORT_INVALID_PARAMETER)
    return int.from_bytes(value, "little")


def _ui(command: dict[int, bytes], element: int) -> str:
    value = command.get(element)
    if value is None:
        raise ProtocolError(f"command element (0000,{element:04X}) missing",
                            ABORT_INVALID_PARAMETER)
    return value.rstrip(b"\0 ").decode("ascii", "replace")


def _element(element: int, value: bytes, pad: bytes = b"\0") -> bytes:
    if len(value) % 2:
        value += pad
    return _ELEMENT.pack(0x0000, element, len(value)) + value


def encode_response(command_field: int, message_id: int, sop_class_uid: str,
                    sop_instance_uid: str | None, response: Response) -> bytes:
    """A response command set (PS3.7 9.3), group length first."""
    body = _element(0x0002, sop_class_uid.encode("ascii", "replace"))
    body += _element(0x0100, command_field.to_bytes(2, "little"))
    body += _element(0x0120, message_id.to_bytes(2, "little"))
    body += _element(0x0800, NO_DATA_SET.to_bytes(2, "little"))
    body += _element(0x0900, response.status.to_bytes(2, "little"))
    if response.comment:
        body += _element(0x0902, response.comment[:64].encode("ascii", "replace"), b" ")
    if sop_instance_uid is not None:
        body += _element(0x1000, sop_instance_uid.encode("ascii", "replace"))
    return _element(0x0000, len(body).to_bytes(4, "little")) + body


# -- the association ------------------------------------------------------------------
class Acceptor:
    """Runs one connection from its A-ASSOCIATE-RQ to its end."""

    def __init__(self, sock: socket.socket, address: str, service: Service,
                 limits: Limits) -> None:
        self.sock = sock
        self.address = address
        self.service = service
        self.limits = limits
        self.association: Association | None = None

    def run(self) -> None:
        try:
            try:
                if self._establish():
                    self._established()
            except PeerClosed:
                pass
            except TimeoutError:
                log.info("association aborted: the peer fell silent")
                self._abort(ABORT_NOT_SPECIFIED)
            except ProtocolError as exc:
                log.info("association aborted: %s", exc)
                self._abort(exc.reason)
            except OSError as exc:
                log.info("association connection lost (%s)", type(exc).__name__)
            except Exception as exc:  # a bug of ours: end this association, name no value
                log.error("association aborted: unexpected %s", type(exc).__name__)
                self._abort(ABORT_NOT_SPECIFIED)
        finally:
            try:
                self.service.closed(self.association)
            finally:
                self.sock.close()

    # -- establishment --------------------------------------------------------
    def _establish(self) -> bool:
        self.sock.settimeout(self.limits.acse_timeout)
        pdu_type, length = _read_header(self.sock)
        if pdu_type != A_ASSOCIATE_RQ_PDU:
            raise ProtocolError("the first PDU is not an A-ASSOCIATE-RQ",
                                ABORT_UNEXPECTED_PDU if pdu_type <= A_ABORT_PDU
                                else ABORT_UNRECOGNISED_PDU)
        if length > MAX_REQUEST_PDU:
            raise ProtocolError("A-ASSOCIATE-RQ too long", ABORT_INVALID_PARAMETER)
        raw = _HEADER.pack(pdu_type, length) + bytes(_read_exact(self.sock, length))
        try:
            pdu = A_ASSOCIATE_RQ()
            pdu.decode(raw)
            rq = pdu.to_primitive()
        except Exception:
            raise ProtocolError("A-ASSOCIATE-RQ could not be decoded",
                                ABORT_INVALID_PARAMETER) from None
        request = AssociationRequest(rq.calling_ae_title.strip(), rq.called_ae_title.strip(),
                                     self.address)
        if not int(pdu.protocol_version) & 0x0001:  # bit 0: version 1 (PS3.8 9.3.2)
            self._reject(rq, REJECT_PROTOCOL_VERSION)
            return False
        if str(rq.application_context_name) != APPLICATION_CONTEXT:
            self._reject(rq, REJECT_APPLICATION_CONTEXT)
            return False
        reason, state = self.service.admit(request)
        if reason is not None:
            self._reject(rq, reason)
            return False

        # presentation contexts and roles (pynetdicom's negotiation, as its ACSE does)
        rq_roles: dict[UID, tuple[bool | None, bool | None]] = {}
        peer_max = 0
        async_proposed = False
        for item in rq.user_information:
            if isinstance(item, MaximumLengthNotification):
                peer_max = int(item.maximum_length_received or 0)
            elif isinstance(item, SCP_SCU_RoleSelectionNegotiation) and item.sop_class_uid:
                rq_roles[item.sop_class_uid] = (item.scu_role, item.scp_role)
            elif isinstance(item, AsynchronousOperationsWindowNegotiation):
                async_proposed = True
        result, ac_roles = negotiate_as_acceptor(
            rq.presentation_context_definition_list, list(self.limits.supported),
            rq_roles or None)
        contexts = {int(cx.context_id): (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                    for cx in result
                    if cx.result == 0x00 and cx.context_id is not None
                    and cx.abstract_syntax is not None and cx.transfer_syntax}

        ac = A_ASSOCIATE()
        ac.application_context_name = UID(APPLICATION_CONTEXT)
        ac.calling_ae_title = rq.calling_ae_title
        ac.called_ae_title = rq.called_ae_title
        ac.result = 0x00
        ac.result_source = 0x01
        ac.presentation_context_definition_results_list = result
        ml = MaximumLengthNotification()
        ml.maximum_length_received = self.limits.max_pdu_size
        impl = ImplementationClassUIDNotification()
        impl.implementation_class_uid = UID(IMPLEMENTATION_CLASS_UID)
        version = ImplementationVersionNameNotification()
        version.implementation_version_name = IMPLEMENTATION_VERSION
        info: list[Any] = [ml, impl, version, *ac_roles]
        if async_proposed:  # one operation at a time each way (PS3.7 D.3.3.3)
            window = AsynchronousOperationsWindowNegotiation()
            window.maximum_number_operations_invoked = 1
            window.maximum_number_operations_performed = 1
            info.append(window)
        ac.user_information = info
        out = A_ASSOCIATE_AC()
        out.from_primitive(ac)
        self.sock.sendall(out.encode())
        self.association = Association(request, contexts, peer_max, state)
        return True

    def _reject(self, rq: A_ASSOCIATE, reason: tuple[int, int, int]) -> None:
        rj = A_ASSOCIATE()
        rj.result, rj.result_source, rj.diagnostic = reason
        rj.calling_ae_title = rq.calling_ae_title
        rj.called_ae_title = rq.called_ae_title
        pdu = A_ASSOCIATE_RJ()
        pdu.from_primitive(rj)
        self.sock.sendall(pdu.encode())
        _linger(self.sock)

    # -- established ----------------------------------------------------------
    def _established(self) -> None:
        assert self.association is not None
        self.sock.settimeout(self.limits.network_timeout)
        command: list[bytearray] = []
        data_set: list[bytearray] = []
        message: dict[int, bytes] | None = None  # a complete command awaiting its data set
        context_id = -1
        while True:
            pdu_type, length = _read_header(self.sock)
            if pdu_type == P_DATA_TF_PDU:
                if length > self.limits.max_pdu_size + PDU_SLACK or length < 6:
                    raise ProtocolError("P-DATA-TF longer than negotiated or empty",
                                        ABORT_INVALID_PARAMETER)
                remaining = length
                while remaining:
                    if remaining < 6:
                        raise ProtocolError("P-DATA-TF ends inside a PDV header",
                                            ABORT_INVALID_PARAMETER)
                    item_length, cx, header = _PDV.unpack(_read_exact(self.sock, 6))
                    if item_length < 2 or item_length + 4 > remaining:
                        raise ProtocolError("PDV length does not fit its PDU",
                                            ABORT_INVALID_PARAMETER)
                    if cx not in self.association.contexts or (
                            context_id != -1 and cx != context_id):
                        raise ProtocolError("PDV for a presentation context not accepted",
                                            ABORT_INVALID_PARAMETER)
                    context_id = cx
                    fragment = _read_exact(self.sock, item_length - 2)
                    remaining -= item_length + 4
                    last = bool(header & 0x02)
                    if header & 0x01:  # a command fragment
                        if message is not None:
                            raise ProtocolError("command fragment while a data set was due",
                                                ABORT_UNEXPECTED_PDU)
                        command.append(fragment)
                        if last:
                            message = decode_command(b"".join(command))
                            command.clear()
                            if _us(message, 0x0800) == NO_DATA_SET:
                                self._dispatch(message, context_id, None)
                                message, context_id = None, -1
                    else:
                        if message is None:
                            raise ProtocolError("data set fragment without its command",
                                                ABORT_UNEXPECTED_PDU)
                        data_set.append(fragment)
                        if last:
                            data = b"".join(data_set)
                            data_set.clear()
                            self._dispatch(message, context_id, data)
                            message, context_id = None, -1
            elif pdu_type == A_RELEASE_RQ_PDU:
                _read_exact(self.sock, length)
                self.sock.sendall(_HEADER.pack(A_RELEASE_RP_PDU, 4) + b"\0\0\0\0")
                _linger(self.sock)
                return
            elif pdu_type == A_ABORT_PDU:
                return
            elif pdu_type in (A_ASSOCIATE_RQ_PDU, A_ASSOCIATE_AC_PDU, A_ASSOCIATE_RJ_PDU,
                              A_RELEASE_RP_PDU):
                raise ProtocolError("unexpected PDU on an established association",
                                    ABORT_UNEXPECTED_PDU)
            else:
                raise ProtocolError("unrecognised PDU type", ABORT_UNRECOGNISED_PDU)

    def _dispatch(self, command: dict[int, bytes], context_id: int, data: bytes | None) -> None:
        assert self.association is not None
        field_ = _us(command, 0x0100)
        if field_ == C_CANCEL_RQ:
            return
        message_id = _us(command, 0x0110)
        abstract, transfer_syntax = self.association.contexts[context_id]
        sop_class = _ui(command, 0x0002) if 0x0002 in command else abstract
        sop_instance: str | None = None
        if field_ == C_ECHO_RQ:
            response = self.service.echo(self.association)
        elif field_ == C_STORE_RQ:
            sop_instance = _ui(command, 0x1000)
            if data is None:
                raise ProtocolError("C-STORE-RQ without a data set", ABORT_INVALID_PARAMETER)
            response = self.service.store(self.association, StoreRequest(
                message_id, sop_class, sop_instance, transfer_syntax, data))
        else:
            response = Response(STATUS_UNRECOGNISED_OPERATION, "Only C-ECHO and C-STORE")
        self._send_command(context_id, encode_response(
            field_ | RESPONSE_BIT, message_id, sop_class, sop_instance, response))

    def _send_command(self, context_id: int, command: bytes) -> None:
        """Send a command set in as few PDVs as the peer's maximum PDU allows."""
        assert self.association is not None
        peer_max = self.association.peer_max_pdu
        step = len(command) if not peer_max else max(peer_max - 6, 1)
        out = bytearray()
        for start in range(0, len(command), step):
            chunk = command[start:start + step]
            last = start + step >= len(command)
            out += _HEADER.pack(P_DATA_TF_PDU, len(chunk) + 6)
            out += _PDV.pack(len(chunk) + 2, context_id, 0x03 if last else 0x01) + chunk
        self.sock.sendall(out)

    def _abort(self, reason: int) -> None:
        try:
            # source 2: the service provider (PS3.8 9.3.8)
            self.sock.sendall(_HEADER.pack(A_ABORT_PDU, 4) + bytes((0, 0, 2, reason)))
        except OSError:
            pass


def _linger(sock: socket.socket) -> None:
    """Let the peer read our last PDU and close first (PS3.8 9.1.4): wait briefly
    for its end of the connection."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5.0)
        while sock.recv(4096):
            pass
    except OSError:
        pass
