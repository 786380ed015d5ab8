"""Sessions and personal tokens: who a request comes from.

Two credentials name a person (enrolment tokens are handled by
:mod:`dicom_service.web.policy` before this module is asked):

- a personal token as ``Authorization: Bearer``: the token's scopes; no CSRF
  check (a browser never sends it on its own);
- the session cookie :data:`SESSION_COOKIE` of a complete login (second factor
  done, not expired or revoked, the account neither locked nor disabled): all
  scopes. A state-changing request (any method but GET, HEAD, OPTIONS) must
  carry the header :data:`CSRF_HEADER` equal to the session's CSRF token,
  which the page reads from the cookie :data:`CSRF_COOKIE` or ``GET /api/me``;
  otherwise 403.

A pending session (password checked, second factor due) authenticates nothing.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from dicom_service.app import Services
from dicom_service.care.accounts import AccountService
from dicom_service.errors import ConfigError
from dicom_service.web.principal import (
    SCOPE_API,
    SCOPE_DICOMWEB,
    VIA_PERSONAL_TOKEN,
    VIA_SESSION,
    Principal,
)

SESSION_COOKIE = "dicom_session"
CSRF_COOKIE = "dicom_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def accounts(services: Services) -> AccountService:
    secret = services.settings.server_secret
    if secret is None:  # pragma: no cover - build_services fills it in
        raise ConfigError("no server secret")
    return AccountService(services.db, secret)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def require_csrf(request: Request, service: AccountService, session_token: str,
                 user_id: int) -> None:
    """403 (audited) unless the request carries the CSRF token of ``session_token``."""
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode("utf-8"),
                               service.csrf_token(session_token).encode("utf-8")):
        service.refused(user_id, "session.csrf", "CSRF token missing or wrong")
        raise HTTPException(403, "CSRF token missing or wrong")


def principal_from_request(request: Request, services: Services) -> Principal | None:
    """The person behind a personal token or a session cookie, else ``None``.

    Raises HTTPException 403 for a session on a state-changing request
    without the right CSRF token.
    """
    service = accounts(services)
    token = _bearer(request)
    if token is not None:
        # a bearer token that is not a valid personal token is no credential:
        # never fall back to the cookie, so a client sees its token refused
        grant = service.verify_token(token)
        if grant is None:
            return None
        return Principal(actor=f"user:{grant.user_id}", via=VIA_PERSONAL_TOKEN,
                         scopes=grant.scopes, user_id=grant.user_id)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    session = service.session(cookie)
    if session is None:
        return None
    if request.method not in SAFE_METHODS:
        require_csrf(request, service, cookie, session.user_id)
    return Principal(actor=f"user:{session.user_id}", via=VIA_SESSION,
                     scopes=frozenset({SCOPE_DICOMWEB, SCOPE_API}), user_id=session.user_id)
