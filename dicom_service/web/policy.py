"""The one access policy for reading (and uploading) images and metadata.

Every DICOMweb and WADO-URI route declares :data:`ReaderDep` (reads) or
:data:`UploaderDep` (STOW-RS); routes never hold a copy of the rule. Today a
caller is known by a bearer token bound to one enrolment
(:mod:`dicom_service.care.tokens`); panel membership and personal tokens plug
in here, in :func:`authenticate` and :func:`visible_enrolments`, without
touching a route.

Refusals: no or unknown token -> 401. A study the caller may not see is
answered exactly like a study that does not exist (404), never 403, so a token
cannot probe for the existence of other patients' studies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from dicom_service.app import Services
from dicom_service.care.tokens import SCOPE_DICOMWEB, TokenService
from dicom_service.web.deps import ServicesDep

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dicom-web"'}


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``actor`` names them in the audit (never a patient)."""

    actor: str
    # enrolments the credential itself is bound to (a token for one enrolment)
    bound_enrolments: frozenset[int]
    can_upload: bool


@dataclass(frozen=True)
class Reader:
    """A caller together with the enrolments whose studies they may see."""

    principal: Principal
    enrolments: frozenset[int]

    def sees(self, enrolment_id: int) -> bool:
        return can_read_study(self, enrolment_id)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def authenticate(request: Request, services: Services) -> Principal:
    """The caller from the ``Authorization: Bearer`` header; 401 if none is valid."""
    token = _bearer(request)
    grant = TokenService(services.db).verify(token) if token else None
    if grant is None or grant.scope != SCOPE_DICOMWEB:
        raise HTTPException(401, "Unauthorized", headers=_CHALLENGE)
    return Principal(actor=f"token:{grant.token_id}",
                     bound_enrolments=frozenset({grant.enrolment_id}), can_upload=True)


def visible_enrolments(services: Services, principal: Principal) -> frozenset[int]:
    """The enrolments whose studies ``principal`` may read.

    Today: the enrolment the token is bound to. With panels: also every
    enrolment shared with a panel the person is a member of.
    """
    del services  # panels will look up memberships here
    return principal.bound_enrolments


def can_read_study(reader: Reader, enrolment_id: int) -> bool:
    """May the reader see a study (series, instance) of ``enrolment_id``?"""
    return enrolment_id in reader.enrolments


def can_upload_for(principal: Principal, enrolment_id: int) -> bool:
    """May ``principal`` add instances to ``enrolment_id`` (STOW-RS)?"""
    return principal.can_upload and enrolment_id in principal.bound_enrolments


def current_reader(request: Request, services: ServicesDep) -> Reader:
    principal = authenticate(request, services)
    return Reader(principal=principal, enrolments=visible_enrolments(services, principal))


def current_uploader(request: Request, services: ServicesDep) -> Principal:
    principal = authenticate(request, services)
    if not principal.can_upload:
        raise HTTPException(401, "Unauthorized", headers=_CHALLENGE)
    return principal


ReaderDep = Annotated[Reader, Depends(current_reader)]
UploaderDep = Annotated[Principal, Depends(current_uploader)]
