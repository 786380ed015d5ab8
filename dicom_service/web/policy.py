"""The one access policy for images, metadata and every person-facing route.

Every DICOMweb and WADO-URI route declares :data:`ReaderDep` (reads) or
:data:`UploaderDep` (STOW-RS); the panel, people and audit routes declare
:data:`PersonDep`; administration routes :data:`AdminDep`. Routes never hold
a copy of a rule: the rules live in :mod:`dicom_service.care.access`, applied
here.

Callers: a person (session cookie or personal token, :mod:`web.auth`) or an
enrolment token (``dicom-service tokens issue``), which reads and uploads for
its one enrolment.

Refusals: no or unknown credential -> 401. A study the caller may not see is
answered exactly like a study that does not exist (404), never 403, so nobody
can probe for the existence of other patients' studies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

from fastapi import Depends, HTTPException, Request
from sqlalchemy import ColumnElement, false, or_, select

from dicom_service.app import Services
from dicom_service.care.access import EMPTY_SCOPE, ImageScope, Person, image_scope, load_person
from dicom_service.care.tokens import SCOPE_DICOMWEB as ENROLMENT_TOKEN_SCOPE
from dicom_service.care.tokens import TokenService
from dicom_service.db.models import Enrolment
from dicom_service.errors import Forbidden
from dicom_service.web import auth, deps
from dicom_service.web.deps import ServicesDep
from dicom_service.web.principal import (
    SCOPE_API,
    SCOPE_DICOMWEB,
    VIA_ENROLMENT_TOKEN,
    Principal,
)

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dicom-web"'}

__all__ = ["AdminDep", "Caller", "PersonDep", "Principal", "Reader", "ReaderDep", "UploaderDep"]


@dataclass(frozen=True)
class Reader:
    """A caller together with what they may read."""

    principal: Principal
    scope: ImageScope

    @property
    def enrolments(self) -> frozenset[int]:
        return self.scope.enrolments

    def sees(self, enrolment_id: int, study_uid: str) -> bool:
        return self.scope.sees(enrolment_id, study_uid)

    def where(self, enrolment_col: Any, study_col: Any) -> ColumnElement[bool]:
        """The SQL condition for rows this reader may see."""
        parts = []
        if self.scope.enrolments:
            parts.append(enrolment_col.in_(sorted(self.scope.enrolments)))
        if self.scope.studies:
            parts.append(study_col.in_(sorted(self.scope.studies)))
        return or_(*parts) if parts else false()


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def authenticate(request: Request, services: Services) -> Principal:
    """The caller; 401 if there is no valid credential."""
    token = _bearer(request)
    if token:
        grant = TokenService(services.db).verify(token)
        if grant is not None and grant.scope == ENROLMENT_TOKEN_SCOPE:
            return Principal(actor=f"token:{grant.token_id}", via=VIA_ENROLMENT_TOKEN,
                             scopes=frozenset({SCOPE_DICOMWEB}),
                             bound_enrolments=frozenset({grant.enrolment_id}))
    principal = auth.principal_from_request(request, services)
    if principal is None:
        refuse(request, services, "anonymous", "no valid credential")
    return principal


def refuse(request: Request, services: Services, actor: str, why: str) -> NoReturn:
    """Audit a refused request (buffered, coalesced) and answer 401."""
    # the route's template, never the concrete path: its UIDs are the caller's
    where = str(getattr(request.scope.get("route"), "path", "-"))[:64]
    services.reads.note(actor, f"auth.refused: {why}"[:64], "route", where, "refused")
    raise HTTPException(401, "Unauthorized", headers=_CHALLENGE)


def person_of(services: Services, principal: Principal) -> Person | None:
    if principal.user_id is None:
        return None
    with services.db.engine.connect() as conn:
        return load_person(conn, principal.user_id)


def scope_of(services: Services, principal: Principal) -> ImageScope:
    """Everything ``principal`` may read."""
    if SCOPE_DICOMWEB not in principal.scopes:
        return EMPTY_SCOPE
    if principal.user_id is None:
        return ImageScope(principal.bound_enrolments, frozenset())
    with services.db.engine.connect() as conn:
        person = load_person(conn, principal.user_id)
        if person is None:
            return EMPTY_SCOPE
        return image_scope(conn, person)


@dataclass(frozen=True)
class UploadScope:
    """Where a caller may add instances (STOW-RS), worked out once per request.

    An enrolment token uploads to its enrolment; a clinician to enrolments of
    their own centre.
    """

    # the centres whose enrolments may receive the caller's instances
    centres: tuple[int, ...]
    # for an enrolment token: its enrolments only (None: any of those centres')
    enrolments: frozenset[int] | None

    def allows(self, enrolment_id: int, centre_id: int) -> bool:
        return centre_id in self.centres and (
            self.enrolments is None or enrolment_id in self.enrolments)


def upload_scope(services: Services, principal: Principal) -> UploadScope:
    if SCOPE_DICOMWEB not in principal.scopes:
        return UploadScope((), frozenset())
    if principal.user_id is None:
        with services.db.engine.connect() as conn:
            centres = sorted(set(conn.scalars(select(Enrolment.centre_id).where(
                Enrolment.id.in_(sorted(principal.bound_enrolments))))))
        return UploadScope(tuple(centres), principal.bound_enrolments)
    person = person_of(services, principal)
    if person is None or not person.is_clinician or person.centre_id is None:
        return UploadScope((), frozenset())
    return UploadScope((person.centre_id,), None)


def current_reader(request: Request, services: ServicesDep) -> Reader:
    principal = authenticate(request, services)
    if SCOPE_DICOMWEB not in principal.scopes:  # e.g. a personal token for the API only
        refuse(request, services, principal.actor, "no dicomweb scope")
    return Reader(principal=principal, scope=scope_of(services, principal))


def current_uploader(request: Request, services: ServicesDep) -> Principal:
    principal = authenticate(request, services)
    if SCOPE_DICOMWEB not in principal.scopes:
        refuse(request, services, principal.actor, "no dicomweb scope")
    return principal


@dataclass(frozen=True)
class Caller:
    """A person calling a panel, people or audit route."""

    principal: Principal
    person: Person


def current_person(request: Request, services: ServicesDep) -> Caller:
    """A person with the ``api`` scope (a session has it); 401 otherwise."""
    principal = authenticate(request, services)
    person = person_of(services, principal)
    if person is None or SCOPE_API not in principal.scopes:
        refuse(request, services, principal.actor, "no person with the api scope")
    return Caller(principal, person)


def current_admin(request: Request, services: ServicesDep) -> str:
    """A platform administrator (session or personal token with the api scope),
    or the administrator token from configuration (bootstrap, scripts). Returns
    the audit actor."""
    if deps.is_admin_token(request, services):
        return "admin"
    principal = authenticate(request, services)
    person = person_of(services, principal)
    if person is None or SCOPE_API not in principal.scopes:
        refuse(request, services, principal.actor, "no person with the api scope")
    if not person.is_admin:
        services.reads.note(principal.actor, "admin.refused", "route",
                            str(getattr(request.scope.get("route"), "path", ""))[:64],
                            "refused")
        raise Forbidden("platform administrators only")
    return principal.actor


ReaderDep = Annotated[Reader, Depends(current_reader)]
UploaderDep = Annotated[Principal, Depends(current_uploader)]
PersonDep = Annotated[Caller, Depends(current_person)]
AdminDep = Annotated[str, Depends(current_admin)]
