"""Settings from flags, environment (``DICOM_SERVICE_*``) and the data directory.

Everything is validated at start-up (:meth:`Settings.validate`); a bad value
stops the service with a message naming the setting and the rule.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from dicom_service.errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "DICOM_SERVICE_"
_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE VR: no backslash
DEFAULT_PROFILES_DIR = Path(__file__).resolve().parent.parent / "deid_profiles"


def default_data_dir() -> Path:
    return Path(os.environ.get(ENV_PREFIX + "DATA_DIR", "./data"))


@dataclass(frozen=True)
class Settings:
    """All settings of one service process."""

    data_dir: Path = field(default_factory=default_data_dir)
    ae_title: str = "DICOM_SERVICE"
    dicom_host: str = "127.0.0.1"
    dicom_port: int = 11112
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    database_url: str | None = None
    profiles_dir: Path = DEFAULT_PROFILES_DIR
    max_associations: int = 16
    max_pdu_size: int = 1_048_576
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    # Secrets: from the environment; on the embedded default generated once
    # into the data directory (see load_secret).
    server_secret: bytes | None = None
    admin_token: str | None = None
    # the login cookies carry the Secure flag (sent over HTTPS only); turn off
    # only for plain-HTTP development and tests (DICOM_SERVICE_COOKIE_SECURE=false)
    cookie_secure: bool = True

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``DICOM_SERVICE_*`` variables, then explicit overrides.

        ``None`` overrides are ignored so that unset command-line flags fall
        back to the environment.
        """
        env = os.environ
        values: dict[str, object] = {}
        conv: dict[str, type] = {
            "data_dir": Path, "ae_title": str, "dicom_host": str, "dicom_port": int,
            "http_host": str, "http_port": int, "database_url": str, "profiles_dir": Path,
            "max_associations": int, "max_pdu_size": int, "tls_cert": Path, "tls_key": Path,
            "tls_ca": Path, "admin_token": str,
        }
        for name, typ in conv.items():
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                try:
                    values[name] = typ(raw)
                except ValueError as exc:
                    raise ConfigError(
                        f"{ENV_PREFIX}{name.upper()} must be a {typ.__name__}") from exc
        cookie_secure = env.get(ENV_PREFIX + "COOKIE_SECURE")
        if cookie_secure:
            values["cookie_secure"] = _flag("COOKIE_SECURE", cookie_secure)
        secret = env.get(ENV_PREFIX + "SECRET")
        if secret:
            values["server_secret"] = secret.encode("utf-8")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)  # type: ignore[arg-type]

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'index.sqlite3').resolve()}"

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        if not _AE_RE.match(self.ae_title) or self.ae_title.strip() != self.ae_title:
            raise ConfigError("ae_title must be 1-16 printable characters without backslash "
                              "or surrounding spaces (PS3.5 AE)")
        for name in ("dicom_port", "http_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name} must be between 0 and 65535")
        if self.dicom_port == self.http_port and self.dicom_port != 0:
            raise ConfigError("dicom_port and http_port must differ")
        if not 1 <= self.max_associations <= 256:
            raise ConfigError("max_associations must be between 1 and 256")
        if not 4096 <= self.max_pdu_size <= 64 * 1_048_576:
            raise ConfigError("max_pdu_size must be between 4096 and 67108864 bytes")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key must be given together")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ConfigError("tls_ca needs tls_cert and tls_key")
        for name in ("tls_cert", "tls_key", "tls_ca"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{name}: file not found")
        if not self.profiles_dir.is_dir():
            raise ConfigError(f"profiles_dir {self.profiles_dir} is not a directory")
        if self.server_secret is not None and len(self.server_secret) < 32:
            raise ConfigError(f"{ENV_PREFIX}SECRET must be at least 32 bytes")
        if self.admin_token is not None and len(self.admin_token) < 24:
            raise ConfigError(f"{ENV_PREFIX}ADMIN_TOKEN must be at least 24 characters")
        if not isinstance(self.cookie_secure, bool):
            raise ConfigError("cookie_secure must be true or false")

    def with_secrets(self) -> Settings:
        """Settings whose secrets are filled in from the data directory.

        On the embedded default a missing server secret or administrator token
        is generated once into the data directory (mode 0600), with a warning.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        server_secret = self.server_secret or _load_or_create(
            self.data_dir / "server.secret", lambda: secrets.token_hex(32)).encode("ascii")
        admin_token = self.admin_token or _load_or_create(
            self.data_dir / "admin.token", lambda: secrets.token_urlsafe(32))
        return replace(self, server_secret=server_secret, admin_token=admin_token)


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{ENV_PREFIX}{name} must be true or false")


def _load_or_create(path: Path, make: Callable[[], str]) -> str:
    if path.exists():
        value = path.read_text(encoding="ascii").strip()
        if not value:
            raise ConfigError(f"{path} is empty")
        return value
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    log.warning("generated %s in the data directory; set %s in production",
                path.name, ENV_PREFIX + ("SECRET" if "secret" in path.name else "ADMIN_TOKEN"))
    return value
