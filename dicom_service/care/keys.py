"""Keyed derivations. Nothing here is a plain hash: without the server
secret none of these values can be recomputed from an identifier.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def patient_hash(server_secret: bytes, issuer: str | None, patient_id: str) -> str:
    """HMAC-SHA256 of issuer + NUL + patient ID, hex. Links an instance to an enrolment."""
    msg = b"patient\x00" + (issuer or "").strip().encode("utf-8") + b"\x00" + \
        patient_id.strip().encode("utf-8")
    return hmac.new(server_secret, msg, hashlib.sha256).hexdigest()


def enrolment_key(server_secret: bytes, salt: bytes) -> bytes:
    """The per-enrolment key that pseudonymous UIDs and the date shift derive from."""
    return hmac.new(server_secret, b"enrolment-key\x00" + salt, hashlib.sha256).digest()


def new_pseudonym() -> str:
    """A random pseudonym, never derived from identity: ``ERN-`` + 10 Crockford characters."""
    return "ERN-" + "".join(secrets.choice(_CROCKFORD) for _ in range(10))


def new_salt() -> bytes:
    return secrets.token_bytes(32)
