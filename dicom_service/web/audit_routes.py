"""The audit log over REST, for platform administrators only.

- ``GET /api/audit[?since=&until=&actor=&object_type=&object_id=&limit=&offset=]``:
  rows in id order as a JSON array, every field including ``row_hash``;
  ``since`` inclusive, ``until`` exclusive (ISO 8601; UTC without an offset);
  ``limit`` 1-10000 (default 1000).
- ``GET /api/audit/verify``: the chain check of ``dicom-service audit verify``.

A person who is not a platform administrator gets 403 (the routes' existence
is no secret); no person, 401. Reading the log is itself audited, and so is a
refusal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from dicom_service.app import Services
from dicom_service.care import audit
from dicom_service.errors import Forbidden
from dicom_service.web.deps import ServicesDep
from dicom_service.web.policy import Caller, PersonDep

router = APIRouter(prefix="/api/audit", tags=["audit"])

MAX_LIMIT = 10_000


class AuditRowOut(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    object_type: str
    object_id: str
    result: str
    detail: str | None
    row_hash: str | None


class ProblemOut(BaseModel):
    row: int
    problem: str


class VerificationOut(BaseModel):
    ok: bool
    summary: str
    rows: int
    unchained: int
    head_id: int
    head_hash: str
    problems: list[ProblemOut]


def _admin_only(services: Services, caller: Caller, what: str) -> None:
    allowed = caller.person.is_admin
    services.reads.note(caller.principal.actor, f"audit.{what}", "audit", "log",
                        "ok" if allowed else "refused")
    if not allowed:
        raise Forbidden("platform administrators only")


@router.get("")
def export_audit(
        services: ServicesDep, caller: PersonDep,
        since: datetime | None = None, until: datetime | None = None,
        actor: Annotated[str | None, Query(max_length=64)] = None,
        object_type: Annotated[str | None, Query(max_length=32)] = None,
        object_id: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
        offset: Annotated[int, Query(ge=0)] = 0) -> list[AuditRowOut]:
    _admin_only(services, caller, "export")
    with services.db.engine.connect() as conn:
        return [AuditRowOut(**row) for row in audit.export(
            conn, since=since, until=until, actor=actor, object_type=object_type,
            object_id=object_id, limit=limit, offset=offset)]


@router.get("/verify")
def verify_audit(services: ServicesDep, caller: PersonDep) -> VerificationOut:
    _admin_only(services, caller, "verify")
    with services.db.engine.connect() as conn:
        result = audit.verify(conn, audit.chain_for(services.db))
    return VerificationOut(ok=result.ok, summary=result.summary(), rows=result.rows,
                           unchained=result.unchained, head_id=result.head_id,
                           head_hash=result.head_hash,
                           problems=[ProblemOut(row=p.row_id, problem=p.what)
                                     for p in result.problems])
