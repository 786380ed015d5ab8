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

Every request checks its credential again. What a person may read is kept per
process while the database's access generation stands (:class:`ScopeCache`),
so a revocation counts on the very next request.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NoReturn
from weakref import WeakKeyDictionary

from fastapi import Depends, HTTPException, Request
from sqlalchemy import ColumnElement, Engine, false, or_, select
from starlette.concurrency import run_in_threadpool

from dicom_service.app import Services
from dicom_service.care.access import (
    ACCESS_GENERATION,
    EMPTY_SCOPE,
    ImageScope,
    Person,
    image_scope,
    load_person,
    person_until,
)
from dicom_service.care.tokens import SCOPE_DICOMWEB as ENROLMENT_TOKEN_SCOPE
from dicom_service.care.tokens import TokenService
from dicom_service.db.models import Enrolment, utcnow
from dicom_service.db.prepared import prepared
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
    return _scopes(services.db.engine).scope(principal.user_id)


@dataclass(frozen=True)
class _Kept:
    generation: int
    until: datetime | None  # the earliest expiry of a role it counted
    scope: ImageScope


class ScopeCache:
    """People's image scopes, kept by this process while they hold.

    Working a scope out takes three or four queries; a viewer asks for one
    with every frame. A kept scope is used while the database's access
    generation (``care.access.ACCESS_GENERATION``, moved by triggers with every
    change that can change access) is the one it was worked out at, and no
    role it counted has expired: one cheap read per request, and a revoked
    membership, role, consent or panel state still counts on the very next
    request, in every process.
    """

    def __init__(self, engine: Engine, entries: int = 4096) -> None:
        # weakly: the engine keys the caches (see _scopes)
        self._engine = weakref.ref(engine)
        self._entries = entries
        self._kept: OrderedDict[int, _Kept] = OrderedDict()
        self._lock = threading.Lock()

    def scope(self, user_id: int) -> ImageScope:
        engine = self._engine()
        if engine is None:  # pragma: no cover - the caller holds the engine
            raise RuntimeError("the engine of this cache is gone")
        # the generation first: a change committed after this read moves it
        # again, so a scope is never kept under a generation newer than its data
        row = prepared(engine, ACCESS_GENERATION).first({})
        generation = int(row[0]) if row is not None else None
        now = utcnow()
        with self._lock:
            kept = self._kept.get(user_id)
        if (kept is not None and kept.generation == generation
                and (kept.until is None or now < kept.until)):
            return kept.scope
        with engine.connect() as conn:
            person, until = person_until(conn, user_id, now)
            scope = EMPTY_SCOPE if person is None else image_scope(conn, person)
        if generation is not None:
            with self._lock:
                self._kept[user_id] = _Kept(generation, until, scope)
                self._kept.move_to_end(user_id)
                while len(self._kept) > self._entries:
                    self._kept.popitem(last=False)
        return scope


_SCOPE_CACHES: WeakKeyDictionary[Engine, ScopeCache] = WeakKeyDictionary()
_caches_lock = threading.Lock()


def _scopes(engine: Engine) -> ScopeCache:
    """The scope cache of ``engine`` (one per database, per process)."""
    cache = _SCOPE_CACHES.get(engine)
    if cache is None:
        with _caches_lock:
            cache = _SCOPE_CACHES.setdefault(engine, ScopeCache(engine))
    return cache


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


def reader_of(request: Request, services: Services) -> Reader:
    """The caller and what they may read; 401 without a credential with the
    ``dicomweb`` scope."""
    principal = authenticate(request, services)
    if SCOPE_DICOMWEB not in principal.scopes:  # e.g. a personal token for the API only
        refuse(request, services, principal.actor, "no dicomweb scope")
    return Reader(principal=principal, scope=scope_of(services, principal))


async def current_reader(request: Request) -> Reader:
    """:func:`reader_of` for a route. A bearer token is checked on the event
    loop: its look-ups only read (never blocked by a writer, in WAL mode) and
    cost less than a hop to the thread pool and back, which every frame a
    viewer scrolls through would pay. A session cookie goes to the thread
    pool: using a session may write its new idle deadline, which can wait for
    the database's writer."""
    services: Services = request.app.state.services
    if _bearer(request) is None:
        return await run_in_threadpool(reader_of, request, services)
    return reader_of(request, services)


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
