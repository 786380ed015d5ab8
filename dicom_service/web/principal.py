"""Who is calling: the result of authentication, before any access rule."""

from __future__ import annotations

from dataclasses import dataclass

# how the caller authenticated
VIA_SESSION = "session"
VIA_PERSONAL_TOKEN = "personal-token"  # noqa: S105 - a label, not a secret
VIA_ENROLMENT_TOKEN = "enrolment-token"  # noqa: S105 - a label, not a secret

SCOPE_DICOMWEB = "dicomweb"
SCOPE_API = "api"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``actor`` names them in the audit (never a patient):
    ``user:ID`` for a person, ``token:ID`` for an enrolment token."""

    actor: str
    via: str
    # what the credential may be used for (SCOPE_*); a session has all
    scopes: frozenset[str]
    # a person (session or personal token)
    user_id: int | None = None
    # enrolments the credential itself is bound to (an enrolment token)
    bound_enrolments: frozenset[int] = frozenset()
