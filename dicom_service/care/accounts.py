"""People who log in: passwords, the TOTP second factor, sessions, personal tokens.

- Passwords: Argon2id (argon2-cffi's defaults, RFC 9106), at least
  :data:`MIN_PASSWORD` characters. An unknown username costs the same as a
  wrong password (a dummy hash is verified) so timing does not reveal which
  usernames exist.
- Second factor: TOTP (RFC 6238, 30 s steps, 6 digits, ±1 step accepted). The
  accepted step is stored; a code of that step or earlier is a replay and
  refused. Confirming the enrolment yields :data:`RECOVERY_CODES` one-time
  recovery codes, shown once (only their SHA-256 is kept).
- Lock-out: :data:`MAX_FAILURES` consecutive failures (wrong password, wrong or
  replayed code, wrong recovery code) lock the account until an administrator
  unlocks it. The count is reset only by a complete login, so a known password
  does not buy more guesses at the second factor.
- Sessions: a random token in the cookie, only its SHA-256 stored. A session
  whose second factor is pending lives :data:`PENDING_LIFETIME` and
  authenticates nothing; a complete one lives at most :data:`SESSION_LIFETIME`
  and ends after :data:`SESSION_IDLE` without use. Locking or disabling an
  account revokes its sessions.
- Personal tokens: random, only the SHA-256 stored, scopes ``dicomweb``
  and/or ``api``, optional expiry.

The TOTP secret itself is stored as is (the service must compute the codes):
it never leaves this module except in the otpauth URI shown at enrolment, and
is never logged.

Every security event is audited with actor ``user:ID`` (``anonymous`` for an
unknown username); never a password, code, token or typed unknown username.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import Session

from dicom_service.care import audit
from dicom_service.care.tokens import token_hash
from dicom_service.db.models import (
    Centre,
    PersonalToken,
    RecoveryCode,
    User,
    WebSession,
    utcnow,
)
from dicom_service.db.session import Database
from dicom_service.errors import Conflict, NotFound

MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # Argon2 takes any length; a bound keeps requests cheap
MAX_FAILURES = 5
RECOVERY_CODES = 10
SESSION_LIFETIME = timedelta(hours=12)
SESSION_IDLE = timedelta(hours=1)
# an active session's idle deadline is pushed forward at most this often (a write)
IDLE_REFRESH = timedelta(minutes=5)
PENDING_LIFETIME = timedelta(minutes=10)
TOTP_ISSUER = "dicom_service"
TOKEN_SCOPES = ("dicomweb", "api")
_USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_RECOVERY_RE = re.compile(r"^[0-9a-f]{12}$")

_hasher = PasswordHasher()


class LoginRefused(Exception):
    """A login step failed. The message is the public reason."""


class WrongCredentials(LoginRefused):
    def __init__(self) -> None:
        # the same for an unknown username and a wrong password
        super().__init__("wrong username or password")


class WrongCode(LoginRefused):
    def __init__(self) -> None:
        super().__init__("wrong or already used code")


class NoLoginInProgress(LoginRefused):
    def __init__(self) -> None:
        super().__init__("no login in progress; log in with username and password first")


class EnrolmentDue(LoginRefused):
    def __init__(self) -> None:
        super().__init__("the second factor is not enrolled yet; confirm the enrolment first")


class AccountLocked(LoginRefused):
    def __init__(self) -> None:
        super().__init__("account locked")


class AccountDisabled(LoginRefused):
    def __init__(self) -> None:
        super().__init__("account disabled")


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    display_name: str
    centre: str | None
    is_platform_admin: bool
    locked: bool
    disabled: bool
    totp_enrolled: bool


@dataclass(frozen=True)
class TotpEnrolment:
    """What an authenticator app needs: the otpauth URI (holds the secret) and its QR."""

    otpauth_uri: str
    qr_svg: str


@dataclass(frozen=True)
class PendingLogin:
    """Password accepted; the second factor is still due."""

    user_id: int
    session_token: str
    totp_enrolled: bool


@dataclass(frozen=True)
class ActiveSession:
    session_id: int
    user_id: int


@dataclass(frozen=True)
class TokenInfo:
    id: int
    label: str | None
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked: bool


@dataclass(frozen=True)
class PersonalGrant:
    """What a valid personal token grants."""

    token_id: int
    user_id: int
    scopes: frozenset[str]


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_hex(16))


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:  # SQLite returns naive datetimes (stored as UTC)
        return value.replace(tzinfo=utcnow().tzinfo)
    return value


def _actor(user_id: int) -> str:
    return f"user:{user_id}"


def _check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"password must be at most {MAX_PASSWORD} characters")


def _normal_recovery(code: str) -> str:
    return code.replace("-", "").replace(" ", "").strip().lower()


class AccountService:
    """Accounts, login steps, sessions and personal tokens on one database."""

    def __init__(self, db: Database, server_secret: bytes) -> None:
        self.db = db
        self.server_secret = server_secret

    # -- accounts ---------------------------------------------------------------
    def create_user(self, username: str, *, display_name: str, password: str,
                    centre: str | None = None, platform_admin: bool = False,
                    actor: str) -> int:
        """Add a person; return their user ID. The second factor is enrolled later."""
        if not _USERNAME_RE.match(username):
            raise ValueError("username must be 2-64 characters: lower-case letters, digits, "
                             "'.', '_' or '-', starting with a letter or digit")
        display_name = display_name.strip()
        if not 1 <= len(display_name) <= 128 or not display_name.isprintable():
            raise ValueError("display name must be 1-128 printable characters")
        _check_password_rules(password)
        password_hash = _hasher.hash(password)
        with self.db.session() as s:
            centre_id = None
            if centre is not None:
                centre_id = s.scalar(select(Centre.id).where(Centre.name == centre))
                if centre_id is None:
                    raise NotFound("no such centre")
            if s.scalar(select(User.id).where(User.username == username)) is not None:
                raise Conflict("a user with that username exists already")
            user = User(username=username, display_name=display_name, centre_id=centre_id,
                        password_hash=password_hash, is_platform_admin=platform_admin)
            s.add(user)
            s.flush()
            audit.record(s, actor=actor, action="account.create", object_type="user",
                         object_id=str(user.id),
                         detail="platform administrator" if platform_admin else None)
            return user.id

    def user_id(self, username: str) -> int:
        """The ID of ``username``; :class:`NotFound` if there is none."""
        with self.db.engine.connect() as conn:
            user_id = conn.scalar(select(User.id).where(User.username == username))
        if user_id is None:
            raise NotFound("no user with that username")
        return int(user_id)

    def user(self, user_id: int) -> UserInfo:
        infos = self._infos(User.id == user_id)
        if not infos:
            raise NotFound("no such user")
        return infos[0]

    def list_users(self) -> list[UserInfo]:
        return self._infos(None)

    def _infos(self, where: ColumnElement[bool] | None) -> list[UserInfo]:
        query = (select(User.id, User.username, User.display_name, Centre.name,
                        User.is_platform_admin, User.locked_at, User.disabled_at,
                        User.totp_confirmed)
                 .outerjoin(Centre, Centre.id == User.centre_id).order_by(User.username))
        if where is not None:
            query = query.where(where)
        with self.db.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [UserInfo(id=r[0], username=r[1], display_name=r[2], centre=r[3],
                         is_platform_admin=bool(r[4]), locked=r[5] is not None,
                         disabled=r[6] is not None, totp_enrolled=bool(r[7])) for r in rows]

    def set_password(self, user_id: int, password: str, *, actor: str) -> None:
        """Replace the password; the person's sessions end."""
        _check_password_rules(password)
        password_hash = _hasher.hash(password)
        with self.db.session() as s:
            self._get(s, user_id).password_hash = password_hash
            self._revoke_sessions(s, user_id)
            audit.record(s, actor=actor, action="account.password", object_type="user",
                         object_id=str(user_id))

    def unlock(self, user_id: int, *, actor: str) -> None:
        """End a lock-out and forget the failures."""
        with self.db.session() as s:
            user = self._get(s, user_id)
            user.locked_at = None
            user.failed_logins = 0
            audit.record(s, actor=actor, action="account.unlock", object_type="user",
                         object_id=str(user_id))

    def disable(self, user_id: int, *, actor: str) -> None:
        """The person can no longer log in; their sessions end, their tokens stop working."""
        with self.db.session() as s:
            user = self._get(s, user_id)
            if user.disabled_at is None:
                user.disabled_at = utcnow()
            self._revoke_sessions(s, user_id)
            audit.record(s, actor=actor, action="account.disable", object_type="user",
                         object_id=str(user_id))

    def reset_totp(self, user_id: int, *, actor: str) -> None:
        """Forget the second factor and the recovery codes; the next login enrols anew."""
        with self.db.session() as s:
            user = self._get(s, user_id)
            user.totp_secret = None
            user.totp_confirmed = False
            user.totp_last_step = None
            s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
            self._revoke_sessions(s, user_id)
            audit.record(s, actor=actor, action="account.reset-totp", object_type="user",
                         object_id=str(user_id))

    @staticmethod
    def _get(s: Session, user_id: int) -> User:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound("no such user")
        return user

    # -- second factor enrolment ------------------------------------------------
    def begin_totp_enrolment(self, user_id: int, *, actor: str) -> TotpEnrolment:
        """The otpauth URI and QR code of a new TOTP secret (generated here).

        An enrolment begun but not confirmed keeps its secret, so the URI can
        be shown again; a confirmed one must be reset first (:class:`Conflict`).
        """
        with self.db.session() as s:
            user = self._get(s, user_id)
            if user.totp_confirmed:
                raise Conflict("the second factor is enrolled already; reset it first")
            if user.totp_secret is None:
                user.totp_secret = pyotp.random_base32()
                audit.record(s, actor=actor, action="totp.enrol", object_type="user",
                             object_id=str(user_id))
            secret, username = user.totp_secret, user.username
        uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=TOTP_ISSUER)
        return TotpEnrolment(otpauth_uri=uri, qr_svg=segno.make(uri, error="m").svg_inline(
            scale=4))

    def confirm_totp(self, user_id: int, code: str, *, actor: str) -> list[str]:
        """Confirm the enrolment with a valid code; return the recovery codes (shown once).

        A wrong code counts as a failed login (:class:`WrongCode`,
        :class:`AccountLocked` at the limit).
        """
        with self.db.session() as s:
            user = self._get(s, user_id)
            if user.totp_confirmed or user.totp_secret is None:
                raise Conflict("no second factor enrolment in progress")
            accepted = self._accept_code(s, user, code)
        if not accepted:
            self._failed(user_id, "totp.confirm")
        codes = [secrets.token_hex(6) for _ in range(RECOVERY_CODES)]
        with self.db.session() as s:
            self._get(s, user_id).totp_confirmed = True
            s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
            s.add_all(RecoveryCode(user_id=user_id, code_sha256=token_hash(c)) for c in codes)
            audit.record(s, actor=actor, action="totp.confirm", object_type="user",
                         object_id=str(user_id))
        return [f"{c[:4]}-{c[4:8]}-{c[8:]}" for c in codes]

    def _accept_code(self, s: Session, user: User, code: str) -> bool:
        """Is ``code`` valid for a step after the last accepted one (±1 step of now)?

        The step is claimed with a conditional update so that two concurrent
        uses of one code cannot both succeed.
        """
        if user.totp_secret is None or not code.isdigit() or len(code) != 6:
            return False
        totp = pyotp.TOTP(user.totp_secret)
        now_step = int(time.time()) // totp.interval
        last = user.totp_last_step if user.totp_last_step is not None else -1
        for step in (now_step - 1, now_step, now_step + 1):
            if step > last and secrets.compare_digest(totp.generate_otp(step), code):
                claim = (update(User)
                         .where(User.id == user.id,
                                User.totp_last_step.is_(None) | (User.totp_last_step < step))
                         .values(totp_last_step=step)
                         .execution_options(synchronize_session=False))
                return bool(s.execute(claim).rowcount)  # type: ignore[attr-defined]
        return False

    # -- login ------------------------------------------------------------------
    def login(self, username: str, password: str) -> PendingLogin:
        """Check the password and open a session whose second factor is pending.

        Raises :class:`WrongCredentials` (unknown user or wrong password, the
        same message and cost), :class:`AccountLocked` or
        :class:`AccountDisabled` (only once the password is right).
        """
        username = username.strip().lower()
        _dummy_hash()  # made once per process, before any lookup: no first-time timing tell
        with self.db.engine.connect() as conn:
            row = conn.execute(select(User.id, User.password_hash, User.locked_at,
                                      User.disabled_at, User.totp_confirmed)
                               .where(User.username == username)).first()
        if row is None:
            self._verify(_dummy_hash(), password[:MAX_PASSWORD])
            with self.db.session() as s:
                audit.record(s, actor="anonymous", action="login.password",
                             object_type="user", object_id="-", result="failed")
            raise WrongCredentials()
        user_id, password_hash, locked_at, disabled_at, enrolled = row
        if len(password) > MAX_PASSWORD or not self._verify(password_hash, password):
            self._failed(user_id, "login.password", wrong=WrongCredentials)
        if locked_at is not None:
            self.refused(user_id, "login.password", "locked")
            raise AccountLocked()
        if disabled_at is not None:
            self.refused(user_id, "login.password", "disabled")
            raise AccountDisabled()
        with self.db.session() as s:
            if _hasher.check_needs_rehash(password_hash):
                self._get(s, user_id).password_hash = _hasher.hash(password)
            token = self._open_session(s, user_id, complete=False)
            audit.record(s, actor=_actor(user_id), action="login.password",
                         object_type="user", object_id=str(user_id))
        return PendingLogin(user_id=user_id, session_token=token, totp_enrolled=bool(enrolled))

    @staticmethod
    def _verify(password_hash: str, password: str) -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def pending_user(self, session_token: str | None) -> int:
        """The user of a pending login; :class:`NoLoginInProgress`,
        :class:`AccountLocked` or :class:`AccountDisabled` otherwise."""
        if not session_token:
            raise NoLoginInProgress()
        with self.db.engine.connect() as conn:
            row = conn.execute(
                select(WebSession.user_id, WebSession.expires_at, User.locked_at,
                       User.disabled_at)
                .join(User, User.id == WebSession.user_id)
                .where(WebSession.token_sha256 == token_hash(session_token),
                       WebSession.revoked_at.is_(None),
                       WebSession.second_factor_done.is_(False))).first()
        if row is None or _aware(row[1]) <= utcnow():
            raise NoLoginInProgress()
        if row[2] is not None:
            raise AccountLocked()
        if row[3] is not None:
            raise AccountDisabled()
        return int(row[0])

    def second_factor(self, session_token: str | None, *, code: str | None = None,
                      recovery_code: str | None = None) -> str:
        """Complete a pending login with a TOTP or recovery code.

        Returns the token of a new, complete session (the pending one is
        revoked: no session fixation). Raises :class:`WrongCode` (counted),
        :class:`AccountLocked` at the limit, or :class:`NoLoginInProgress`.
        """
        if (code is None) == (recovery_code is None):
            raise ValueError("give exactly one of code and recovery_code")
        user_id = self.pending_user(session_token)
        action = "login.totp" if code is not None else "login.recovery-code"
        with self.db.session() as s:
            user = self._get(s, user_id)
            if not user.totp_confirmed:
                raise EnrolmentDue()
            if code is not None:
                accepted = self._accept_code(s, user, code)
            else:
                normal = _normal_recovery(recovery_code or "")
                # marked used in the same statement that finds it: usable once
                use = (update(RecoveryCode)
                       .where(RecoveryCode.user_id == user_id,
                              RecoveryCode.code_sha256 == token_hash(normal),
                              RecoveryCode.used_at.is_(None))
                       .values(used_at=utcnow()))
                accepted = bool(_RECOVERY_RE.match(normal)) and bool(
                    s.execute(use).rowcount)  # type: ignore[attr-defined]
        if not accepted:
            self._failed(user_id, action)
        return self._complete(session_token or "", user_id, action)

    def confirm_enrolment(self, session_token: str | None, code: str) -> tuple[str, list[str]]:
        """First login: confirm the TOTP enrolment of a pending login.

        Returns (new complete session token, recovery codes).
        """
        user_id = self.pending_user(session_token)
        codes = self.confirm_totp(user_id, code, actor=_actor(user_id))
        return self._complete(session_token or "", user_id, "login.totp"), codes

    def _complete(self, pending_token: str, user_id: int, action: str) -> str:
        with self.db.session() as s:
            s.execute(update(WebSession)
                      .where(WebSession.token_sha256 == token_hash(pending_token))
                      .values(revoked_at=utcnow()))
            self._get(s, user_id).failed_logins = 0
            token = self._open_session(s, user_id, complete=True)
            audit.record(s, actor=_actor(user_id), action=action, object_type="user",
                         object_id=str(user_id))
        return token

    def _failed(self, user_id: int, action: str,
                wrong: type[LoginRefused] = WrongCode) -> None:
        """Count a failed attempt, lock at the limit, and raise."""
        with self.db.session() as s:
            s.execute(update(User).where(User.id == user_id)
                      .values(failed_logins=User.failed_logins + 1))
            user = self._get(s, user_id)
            s.refresh(user)
            audit.record(s, actor=_actor(user_id), action=action, object_type="user",
                         object_id=str(user_id), result="failed")
            locks_now = user.failed_logins >= MAX_FAILURES and user.locked_at is None
            if locks_now:
                user.locked_at = utcnow()
                self._revoke_sessions(s, user_id)
                audit.record(s, actor=_actor(user_id), action="account.lock",
                             object_type="user", object_id=str(user_id),
                             detail=f"{MAX_FAILURES} consecutive failed attempts")
        # a wrong password never tells whether the account exists or is locked
        if locks_now and wrong is not WrongCredentials:
            raise AccountLocked()
        raise wrong()

    def refused(self, user_id: int, action: str, why: str) -> None:
        """Audit a refused request of ``user_id`` (``why`` names the rule, never a value)."""
        with self.db.session() as s:
            audit.record(s, actor=_actor(user_id), action=action, object_type="user",
                         object_id=str(user_id), result="refused", detail=why)

    # -- sessions ---------------------------------------------------------------
    def _open_session(self, s: Session, user_id: int, *, complete: bool) -> str:
        token = secrets.token_urlsafe(32)
        now = utcnow()
        # sessions that ended a day ago serve nobody (logins are audited)
        s.execute(delete(WebSession).where(WebSession.expires_at < now - timedelta(days=1)))
        s.add(WebSession(token_sha256=token_hash(token), user_id=user_id,
                         second_factor_done=complete, created_at=now,
                         expires_at=now + (SESSION_IDLE if complete else PENDING_LIFETIME)))
        return token

    def session(self, token: str) -> ActiveSession | None:
        """The complete, unexpired, unrevoked session of an active user, else ``None``.

        Using a session pushes its idle deadline forward (never past the
        absolute lifetime).
        """
        if not token or len(token) > 256:
            return None
        with self.db.engine.connect() as conn:
            row = conn.execute(
                select(WebSession.id, WebSession.user_id, WebSession.created_at,
                       WebSession.expires_at)
                .join(User, User.id == WebSession.user_id)
                .where(WebSession.token_sha256 == token_hash(token),
                       WebSession.revoked_at.is_(None),
                       WebSession.second_factor_done.is_(True),
                       User.locked_at.is_(None), User.disabled_at.is_(None))).first()
        if row is None:
            return None
        session_id, user_id, created, expires = row
        now = utcnow()
        expires = _aware(expires)
        if expires <= now:
            return None
        deadline = min(_aware(created) + SESSION_LIFETIME, now + SESSION_IDLE)
        if deadline - expires >= IDLE_REFRESH:
            with self.db.session() as s:
                s.execute(update(WebSession).where(WebSession.id == session_id)
                          .values(expires_at=deadline))
        return ActiveSession(session_id=session_id, user_id=user_id)

    def csrf_token(self, session_token: str) -> str:
        """The CSRF token of a session: HMAC(server secret, session token).

        Derived, not stored: it changes with the session and cannot be
        computed without the server secret.
        """
        return hmac.new(self.server_secret, b"csrf\0" + session_token.encode("utf-8"),
                        hashlib.sha256).hexdigest()

    def logout(self, token: str) -> None:
        """Revoke the session of ``token`` (pending or complete); unknown tokens are ignored."""
        with self.db.session() as s:
            user_id = s.scalar(select(WebSession.user_id)
                               .where(WebSession.token_sha256 == token_hash(token),
                                      WebSession.revoked_at.is_(None)))
            if user_id is None:
                return
            s.execute(update(WebSession).where(WebSession.token_sha256 == token_hash(token))
                      .values(revoked_at=utcnow()))
            audit.record(s, actor=_actor(user_id), action="session.logout",
                         object_type="user", object_id=str(user_id))

    @staticmethod
    def _revoke_sessions(s: Session, user_id: int) -> None:
        s.execute(update(WebSession)
                  .where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
                  .values(revoked_at=utcnow()))

    # -- personal tokens ----------------------------------------------------------
    def issue_token(self, user_id: int, scopes: list[str], *, label: str | None = None,
                    valid_days: int | None = None) -> tuple[int, str]:
        """Issue a personal token; return (ID, token). The token is shown once."""
        wanted = sorted(set(scopes))
        if not wanted or any(sc not in TOKEN_SCOPES for sc in wanted):
            raise ValueError(f"scopes must be a non-empty subset of {', '.join(TOKEN_SCOPES)}")
        if valid_days is not None and not 1 <= valid_days <= 3650:
            raise ValueError('"valid_days" must be between 1 and 3650')
        if label is not None and len(label) > 64:
            raise ValueError('"label" must be at most 64 characters')
        token = secrets.token_urlsafe(32)
        expires = utcnow() + timedelta(days=valid_days) if valid_days else None
        with self.db.session() as s:
            self._get(s, user_id)
            row = PersonalToken(token_sha256=token_hash(token), user_id=user_id,
                                scopes=" ".join(wanted), label=label, expires_at=expires)
            s.add(row)
            s.flush()
            audit.record(s, actor=_actor(user_id), action="personal-token.issue",
                         object_type="personal-token", object_id=str(row.id),
                         detail="scopes=" + ",".join(wanted))
            return row.id, token

    def list_tokens(self, user_id: int) -> list[TokenInfo]:
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(PersonalToken.id, PersonalToken.label,
                                       PersonalToken.scopes, PersonalToken.created_at,
                                       PersonalToken.expires_at, PersonalToken.revoked_at)
                                .where(PersonalToken.user_id == user_id)
                                .order_by(PersonalToken.id)).all()
        return [TokenInfo(id=r[0], label=r[1], scopes=tuple(r[2].split()),
                          created_at=_aware(r[3]),
                          expires_at=_aware(r[4]) if r[4] is not None else None,
                          revoked=r[5] is not None) for r in rows]

    def revoke_token(self, user_id: int, token_id: int) -> None:
        """Revoke one of the person's own tokens; :class:`NotFound` for any other."""
        with self.db.session() as s:
            n = s.execute(update(PersonalToken)
                          .where(PersonalToken.id == token_id,
                                 PersonalToken.user_id == user_id,
                                 PersonalToken.revoked_at.is_(None))
                          .values(revoked_at=utcnow())).rowcount  # type: ignore[attr-defined]
            if not n:
                raise NotFound("no such active token")
            audit.record(s, actor=_actor(user_id), action="personal-token.revoke",
                         object_type="personal-token", object_id=str(token_id))

    def verify_token(self, token: str) -> PersonalGrant | None:
        """The grant of an active personal token of an active user, else ``None``."""
        if not token or len(token) > 256:
            return None
        with self.db.engine.connect() as conn:
            row = conn.execute(
                select(PersonalToken.id, PersonalToken.user_id, PersonalToken.scopes,
                       PersonalToken.expires_at)
                .join(User, User.id == PersonalToken.user_id)
                .where(PersonalToken.token_sha256 == token_hash(token),
                       PersonalToken.revoked_at.is_(None),
                       User.locked_at.is_(None), User.disabled_at.is_(None))).first()
        if row is None or (row[3] is not None and _aware(row[3]) <= utcnow()):
            return None
        return PersonalGrant(token_id=row[0], user_id=row[1], scopes=frozenset(row[2].split()))
