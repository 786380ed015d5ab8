"""Bearer tokens for DICOMweb, bound to one enrolment (until panels land).

A token is ``secrets.token_urlsafe(32)``; only its SHA-256 is stored, so the
index alone cannot be used to call the service. Issue and revocation are
audited (by token ID and pseudonym, never the token).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update

from dicom_service.care import audit
from dicom_service.db.models import AccessToken, Enrolment, utcnow
from dicom_service.db.prepared import prepared
from dicom_service.db.session import Database
from dicom_service.errors import NotFound

SCOPE_DICOMWEB = "dicomweb"
_LOOKUP = (select(AccessToken.id, AccessToken.enrolment_id, AccessToken.scope,
                  AccessToken.expires_at)
           .where(AccessToken.token_sha256 == bindparam("b_hash"),
                  AccessToken.revoked_at.is_(None)))


@dataclass(frozen=True)
class TokenGrant:
    """What a valid token grants: read (and upload) for one enrolment."""

    token_id: int
    enrolment_id: int
    scope: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def issue(self, pseudonym: str, *, actor: str, label: str | None = None,
              valid_days: int | None = None) -> tuple[int, str]:
        """Issue a token for the enrolment ``pseudonym``; return (token ID, token).

        The token is shown once: only its SHA-256 is kept.
        """
        if valid_days is not None and valid_days < 1:
            raise ValueError('"valid_days" must be at least 1')
        if label is not None and len(label) > 64:
            raise ValueError('"label" must be at most 64 characters')
        token = secrets.token_urlsafe(32)
        expires = utcnow() + timedelta(days=valid_days) if valid_days else None
        with self.db.session() as s:
            enrolment_id = s.scalar(select(Enrolment.id).where(Enrolment.pseudonym == pseudonym,
                                                               Enrolment.consent_care.is_(True)))
            if enrolment_id is None:
                raise NotFound("no such enrolment with consent for care")
            row = AccessToken(token_sha256=token_hash(token), enrolment_id=enrolment_id,
                              scope=SCOPE_DICOMWEB, label=label, expires_at=expires)
            s.add(row)
            s.flush()
            audit.record(s, actor=actor, action="token.issue", object_type="enrolment",
                         object_id=pseudonym, detail=f"token_id={row.id}")
            return row.id, token

    def revoke(self, token_id: int, *, actor: str) -> None:
        with self.db.session() as s:
            n = s.execute(update(AccessToken)
                          .where(AccessToken.id == token_id, AccessToken.revoked_at.is_(None))
                          .values(revoked_at=utcnow())).rowcount  # type: ignore[attr-defined]
            if not n:
                raise NotFound(f"no active token with ID {token_id}")
            audit.record(s, actor=actor, action="token.revoke", object_type="token",
                         object_id=str(token_id))

    def list(self, pseudonym: str) -> list[tuple[int, str | None, datetime | None, bool]]:
        """(ID, label, expiry, revoked) of the enrolment's tokens."""
        with self.db.session() as s:
            rows = s.execute(select(AccessToken.id, AccessToken.label, AccessToken.expires_at,
                                    AccessToken.revoked_at)
                             .join(Enrolment, Enrolment.id == AccessToken.enrolment_id)
                             .where(Enrolment.pseudonym == pseudonym)
                             .order_by(AccessToken.id)).all()
        return [(i, lab, exp, rev is not None) for i, lab, exp, rev in rows]

    def verify(self, token: str) -> TokenGrant | None:
        """The grant of an active (not revoked, not expired) token, else ``None``."""
        if not token or len(token) > 256:
            return None
        # every DICOMweb request of a token holder: a prepared read
        row = prepared(self.db.engine, _LOOKUP).first({"b_hash": token_hash(token)})
        if row is None:
            return None
        token_id, enrolment_id, scope, expires = row
        if expires is not None:
            if expires.tzinfo is None:  # SQLite returns naive datetimes (stored as UTC)
                expires = expires.replace(tzinfo=utcnow().tzinfo)
            if expires <= utcnow():
                return None
        return TokenGrant(token_id=token_id, enrolment_id=enrolment_id, scope=scope)
