"""The audit trail: who did what to which object, and with what result.

Rows never hold identifying values: objects are named by pseudonyms,
pseudonymous UIDs or internal IDs.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from dicom_service.db.models import AuditEvent


def record(session: Session, *, actor: str, action: str, object_type: str, object_id: str,
           result: str = "ok", detail: str | None = None) -> None:
    """Add an audit row to ``session``; it commits with the change it describes."""
    session.add(AuditEvent(actor=actor, action=action, object_type=object_type,
                           object_id=object_id, result=result, detail=detail))
