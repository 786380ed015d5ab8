"""Login, logout, the caller's own account and personal tokens (JSON under ``/api``).

Login is two steps. ``POST /api/auth/login`` checks the password and sets the
session cookie with the second factor pending; then ``POST /api/auth/totp``
(a TOTP or recovery code) or, at the first login, ``POST
/api/auth/totp/confirm`` (a code from the newly enrolled authenticator)
completes it with a *new* session token (no session fixation) and sets the
CSRF cookie. Until then the session authenticates nothing.

Cookies: :data:`~dicom_service.web.auth.SESSION_COOKIE` is HttpOnly,
SameSite=Strict, Path=/ and Secure unless ``cookie_secure`` is off;
:data:`~dicom_service.web.auth.CSRF_COOKIE` has the same flags but is
readable by the page, which echoes it in the ``X-CSRF-Token`` header.

The login endpoints are rate-limited per client address
(:data:`ATTEMPTS_PER_WINDOW` per :data:`WINDOW_SECONDS`, answered 429 with
Retry-After beyond that). Behind a reverse proxy every client has the proxy's
address; the proxy should then limit too.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from dicom_service.app import Services
from dicom_service.care.accounts import (
    TOKEN_SCOPES,
    AccountDisabled,
    AccountLocked,
    EnrolmentDue,
    LoginRefused,
)
from dicom_service.errors import Forbidden
from dicom_service.web.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    accounts,
    require_csrf,
)
from dicom_service.web.deps import ServicesDep
from dicom_service.web.policy import PersonDep
from dicom_service.web.principal import VIA_SESSION

router = APIRouter(prefix="/api", tags=["login"])

ATTEMPTS_PER_WINDOW = 20
WINDOW_SECONDS = 60.0
_CODE = r"^[0-9]{6}$"


class SlidingWindow:
    """At most ``limit`` hits per key in any ``window`` seconds (in memory, per process)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Record a hit; or, over the limit, record nothing and return the
        seconds until the next hit is allowed."""
        now = time.monotonic()
        with self._lock:
            if len(self._hits) > 10_000:  # forget idle addresses; memory stays bounded
                self._hits = {k: q for k, q in self._hits.items()
                              if q and q[-1] > now - self.window}
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return hits[0] + self.window - now
            hits.append(now)
            return None


_limiter_lock = threading.Lock()


def rate_limit(request: Request) -> None:
    """429 with Retry-After when this client has tried too often (one window per app)."""
    state = request.app.state
    with _limiter_lock:
        if not hasattr(state, "login_limiter"):
            state.login_limiter = SlidingWindow(ATTEMPTS_PER_WINDOW, WINDOW_SECONDS)
    limiter: SlidingWindow = state.login_limiter
    retry = limiter.hit(request.client.host if request.client else "unknown")
    if retry is not None:
        raise HTTPException(429, "too many login attempts; try again later",
                            headers={"Retry-After": str(max(1, math.ceil(retry)))})


RateLimited = Depends(rate_limit)

_STATUS: dict[type[LoginRefused], int] = {AccountLocked: 423, AccountDisabled: 403,
                                          EnrolmentDue: 409}


@contextmanager
def _refusals() -> Iterator[None]:
    """A refused login step as a problem response naming the reason."""
    try:
        yield
    except LoginRefused as exc:
        raise HTTPException(_STATUS.get(type(exc), 401), str(exc)) from None


def _set_cookies(response: Response, services: Services, token: str, *,
                 complete: bool) -> str | None:
    """Set the session cookie (and, for a complete login, the CSRF cookie);
    return the CSRF token of a complete login."""
    secure = services.settings.cookie_secure
    # no Max-Age: the browser forgets the cookie when it closes; the server
    # enforces the lifetime
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict",
                        secure=secure, path="/")
    if not complete:
        response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, samesite="strict")
        return None
    csrf = accounts(services).csrf_token(token)
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, samesite="strict", secure=secure,
                        path="/")
    return csrf


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class LoginOut(BaseModel):
    second_factor: str  # "totp", or "enrol" at the first login
    otpauth_uri: str | None = None
    qr_svg: str | None = None


class SecondFactorIn(BaseModel):
    code: str | None = Field(default=None, pattern=_CODE)
    recovery_code: str | None = Field(default=None, min_length=1, max_length=32)


class ConfirmIn(BaseModel):
    code: str = Field(pattern=_CODE)


class SessionOut(BaseModel):
    csrf_token: str


class EnrolledOut(SessionOut):
    # shown once: only their hashes are kept
    recovery_codes: list[str]


class MeOut(BaseModel):
    id: int
    username: str
    display_name: str
    centre: str | None
    is_platform_admin: bool
    # for state-changing requests of a browser session; None for a token
    csrf_token: str | None


class TokenIn(BaseModel):
    scopes: list[str] = Field(min_length=1, max_length=len(TOKEN_SCOPES))
    label: str | None = Field(default=None, max_length=64)
    valid_days: int | None = Field(default=None, ge=1, le=3650)


class TokenOut(BaseModel):
    id: int
    label: str | None
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked: bool


class TokenIssued(BaseModel):
    id: int
    # shown once: only its SHA-256 is kept
    token: str
    scopes: list[str]


@router.post("/auth/login", response_model_exclude_none=True, dependencies=[RateLimited])
def login(body: LoginIn, request: Request, response: Response,
          services: ServicesDep) -> LoginOut:
    """Step 1: the password. Sets the session cookie with the second factor pending."""
    service = accounts(services)
    with _refusals():
        pending = service.login(body.username, body.password)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        service.logout(previous)
    _set_cookies(response, services, pending.session_token, complete=False)
    if pending.totp_enrolled:
        return LoginOut(second_factor="totp")
    enrolment = service.begin_totp_enrolment(pending.user_id, actor=f"user:{pending.user_id}")
    return LoginOut(second_factor="enrol", otpauth_uri=enrolment.otpauth_uri,
                    qr_svg=enrolment.qr_svg)


@router.post("/auth/totp", dependencies=[RateLimited])
def second_factor(body: SecondFactorIn, request: Request, response: Response,
                  services: ServicesDep) -> SessionOut:
    """Step 2: a TOTP code or a recovery code. Replaces the session token."""
    if (body.code is None) == (body.recovery_code is None):
        raise ValueError('give exactly one of "code" and "recovery_code"')
    with _refusals():
        token = accounts(services).second_factor(request.cookies.get(SESSION_COOKIE),
                                                 code=body.code,
                                                 recovery_code=body.recovery_code)
    csrf = _set_cookies(response, services, token, complete=True)
    return SessionOut(csrf_token=csrf or "")


@router.post("/auth/totp/confirm", dependencies=[RateLimited])
def confirm_enrolment(body: ConfirmIn, request: Request, response: Response,
                      services: ServicesDep) -> EnrolledOut:
    """Step 2 of the first login: a code of the new authenticator. Returns the
    recovery codes once and replaces the session token."""
    with _refusals():
        token, codes = accounts(services).confirm_enrolment(
            request.cookies.get(SESSION_COOKIE), body.code)
    csrf = _set_cookies(response, services, token, complete=True)
    return EnrolledOut(csrf_token=csrf or "", recovery_codes=codes)


@router.post("/auth/logout", status_code=204)
def logout(request: Request, services: ServicesDep) -> Response:
    """End the session (a complete one needs the CSRF header) and clear the cookies."""
    service = accounts(services)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        session = service.session(cookie)
        if session is not None:
            require_csrf(request, service, cookie, session.user_id)
        service.logout(cookie)
    response = Response(status_code=204)
    secure = services.settings.cookie_secure
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=secure, httponly=name == SESSION_COOKIE,
                               samesite="strict")
    return response


@router.get("/me")
def me(caller: PersonDep, request: Request, services: ServicesDep) -> MeOut:
    """Who is logged in, and the CSRF token of their browser session."""
    service = accounts(services)
    info = service.user(caller.person.user_id)
    cookie = request.cookies.get(SESSION_COOKIE)
    csrf = service.csrf_token(cookie) if caller.principal.via == VIA_SESSION and cookie else None
    return MeOut(id=info.id, username=info.username, display_name=info.display_name,
                 centre=info.centre, is_platform_admin=info.is_platform_admin,
                 csrf_token=csrf)


@router.get("/me/tokens")
def list_tokens(caller: PersonDep, services: ServicesDep) -> list[TokenOut]:
    return [TokenOut(id=t.id, label=t.label, scopes=list(t.scopes), created_at=t.created_at,
                     expires_at=t.expires_at, revoked=t.revoked)
            for t in accounts(services).list_tokens(caller.person.user_id)]


@router.post("/me/tokens", status_code=201)
def issue_token(body: TokenIn, caller: PersonDep, services: ServicesDep) -> TokenIssued:
    """Issue a personal token (only from a browser session: a token cannot breed tokens)."""
    if caller.principal.via != VIA_SESSION:
        raise Forbidden("personal tokens are issued from a logged-in browser session only")
    token_id, token = accounts(services).issue_token(
        caller.person.user_id, body.scopes, label=body.label, valid_days=body.valid_days)
    return TokenIssued(id=token_id, token=token, scopes=sorted(set(body.scopes)))


@router.delete("/me/tokens/{token_id}", status_code=204)
def revoke_token(token_id: int, caller: PersonDep, services: ServicesDep) -> Response:
    accounts(services).revoke_token(caller.person.user_id, token_id)
    return Response(status_code=204)

