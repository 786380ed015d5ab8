"""Per-enrolment pseudonymisation: keyed UIDs and date shifts.

Invariant 3 of the architecture: pseudonymous identifiers are deterministic
per enrolment, so follow-up studies, re-sends and references inside sequences
stay consistent. UIDs are replaced by ``2.25.<int>`` UIDs derived with
HMAC-SHA256 under the enrolment's secret key (DICOM PS3.5 Section B.2 and
PS3.15 Annex E action "U"); dates are shifted by a per-enrolment number of days
(PS3.15 Annex E "Retain Longitudinal Temporal Information with Modified Dates
Option").

Nothing here logs, and no exception message carries a key, a value or a date.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass, field

__all__ = [
    "KEY_LENGTH",
    "MAX_DATE_SHIFT",
    "MIN_DATE_SHIFT",
    "UID_ROOT",
    "Pseudonymiser",
    "derive_date_shift",
    "shift_da",
    "shift_dt",
]

UID_ROOT = "2.25."
"""UUID-derived root, PS3.5 Section B.2: ``2.25.`` + a 128-bit integer."""

KEY_LENGTH = 32
MIN_DATE_SHIFT = -3650
MAX_DATE_SHIFT = -30

# A series repeats its Study, Series and Frame of Reference UIDs in every
# instance; the cache saves an HMAC per repeat. Bounded so a long-lived
# pseudonymiser fed hostile input cannot grow without limit.
_UID_CACHE_LIMIT = 65_536

# Pseudonyms go into PatientName (PN) and PatientID (LO): printable ASCII,
# none of PN's delimiters or the value separator, at most 64 characters.
_PSEUDONYM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._\-]{0,63}$")

_DT_RE = re.compile(
    r"^(?P<year>\d{4})(?P<month>\d{2})?(?P<day>\d{2})?"
    r"(?P<time>(?P<hour>\d{2})(?P<minute>\d{2})?(?P<second>\d{2})?(?P<fraction>\.\d{1,6})?)?"
    r"(?P<offset>[+-]\d{4})?$"
)


def derive_date_shift(key: bytes) -> int:
    """Return the enrolment's date offset in days, derived from its key.

    Deterministic (the same key always gives the same offset) and in
    ``[MIN_DATE_SHIFT, MAX_DATE_SHIFT]`` = ``[-3650, -30]``: dates move into
    the past by one month to ten years, never forward and never by zero.
    """
    digest = hmac.new(key, b"dicom_service/date-shift/v1", hashlib.sha256).digest()
    span = MAX_DATE_SHIFT - MIN_DATE_SHIFT + 1
    return MIN_DATE_SHIFT + int.from_bytes(digest[:8], "big") % span


def _shift_one_da(value: str, days: int) -> str:
    if len(value) != 8 or not value.isdigit():
        return ""
    try:
        shifted = dt.date(int(value[:4]), int(value[4:6]), int(value[6:])) + dt.timedelta(days)
    except (ValueError, OverflowError):
        return ""
    return f"{shifted.year:04d}{shifted.month:02d}{shifted.day:02d}"


def _shift_one_dt(value: str, days: int) -> str:
    m = _DT_RE.match(value)
    if m is None:
        return ""
    year, month, day = m["year"], m["month"], m["day"]
    # Time components only make sense after a full date.
    if m["time"] is not None and day is None:
        return ""
    if m["fraction"] is not None and m["second"] is None:
        return ""
    hour, minute, second = m["hour"], m["minute"], m["second"]
    if (hour is not None and int(hour) > 23) or (minute is not None and int(minute) > 59):
        return ""
    if second is not None and int(second) > 60:  # 60: leap second, PS3.5 Table 6.2-1
        return ""
    offset = m["offset"]
    if offset is not None and (int(offset[1:3]) > 14 or int(offset[3:]) > 59):
        return ""
    try:
        # year or month precision: shift the middle of the period (unbiased)
        base = dt.date(int(year), int(month or 7), int(day or (15 if month else 2)))
        shifted = base + dt.timedelta(days)
    except (ValueError, OverflowError):
        return ""
    # Keep the original precision: a YYYYMM value stays YYYYMM.
    out = f"{shifted.year:04d}"
    if month is not None:
        out += f"{shifted.month:02d}"
    if day is not None:
        out += f"{shifted.day:02d}"
    return out + (m["time"] or "") + (offset or "")


def shift_da(value: str, days: int) -> str:
    """Shift a DA value (``YYYYMMDD``, possibly multi-valued) by ``days``.

    Empty stays empty. A value component that is not a valid date (including
    the retired ``YYYY.MM.DD`` form) or that would leave years 1..9999 becomes
    empty: an unparsable date is never passed through.
    """
    text = value.strip(" \x00")
    if not text:
        return ""
    return "\\".join(_shift_one_da(v.strip(), days) if v.strip() else "" for v in text.split("\\"))


def shift_dt(value: str, days: int) -> str:
    """Shift a DT value (``YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]``) by ``days``.

    The time of day and the UTC offset are kept; a value with year or month
    precision keeps that precision (the middle of the period is shifted).
    Empty stays empty; an invalid component becomes empty.
    """
    text = value.strip(" \x00")
    if not text:
        return ""
    return "\\".join(_shift_one_dt(v.strip(), days) if v.strip() else "" for v in text.split("\\"))


@dataclass(frozen=True)
class Pseudonymiser:
    """The pseudonymisation material of one enrolment.

    Attributes:
        key: the enrolment's 32-byte secret key. Never logged, never in a repr.
        pseudonym: the enrolment's pseudonym, e.g. ``"ERN-7K2QX9M4TD"``; it
            becomes PatientName and PatientID.
        date_shift_days: the enrolment's date offset, used by the
            date-shifting options (see :func:`derive_date_shift`).

    Raises:
        ValueError: on a key that is not 32 bytes or a pseudonym that is not
            1..64 characters of ``[A-Za-z0-9 ._-]`` starting alphanumeric.
    """

    key: bytes = field(repr=False)
    pseudonym: str
    date_shift_days: int
    _uid_cache: dict[str, str] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != KEY_LENGTH:
            raise ValueError(f"Pseudonymiser key must be {KEY_LENGTH} bytes")
        if not isinstance(self.pseudonym, str) or not _PSEUDONYM_RE.match(self.pseudonym):
            raise ValueError(
                "Pseudonymiser pseudonym must be 1 to 64 characters of letters, digits, "
                "space, '.', '_' or '-', starting with a letter or digit"
            )
        if not isinstance(self.date_shift_days, int) or abs(self.date_shift_days) > 36_500:
            raise ValueError("Pseudonymiser date_shift_days must be an int within 100 years")

    def uid(self, original: str) -> str:
        """Return the keyed replacement for the UID ``original``.

        ``"2.25." + str(int.from_bytes(HMAC-SHA256(key, original)[:16], "big"))``:
        at most 44 characters, valid UID syntax (no leading zeros), equal for
        equal inputs under one key and unrelated across keys. ``original`` is
        encoded as ASCII (UTF-8 with surrogate escapes for the malformed values
        a hostile peer may send, so every input maps and none is echoed).
        """
        cache = self._uid_cache
        hit = cache.get(original)
        if hit is not None:
            return hit
        mac = hmac.new(
            self.key, original.encode("utf-8", "surrogateescape"), hashlib.sha256
        ).digest()
        new = UID_ROOT + str(int.from_bytes(mac[:16], "big"))
        if len(cache) >= _UID_CACHE_LIMIT:
            cache.clear()
        cache[original] = new
        return new

    def shift_date(self, value: str) -> str:
        """Shift a DA value by :attr:`date_shift_days` (see :func:`shift_da`)."""
        return shift_da(value, self.date_shift_days)

    def shift_datetime(self, value: str) -> str:
        """Shift a DT value by :attr:`date_shift_days` (see :func:`shift_dt`)."""
        return shift_dt(value, self.date_shift_days)
