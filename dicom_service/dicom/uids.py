"""UID validation (DICOM PS3.5 Section 9.1).

Network input is hostile: every UID that reaches a path or a query is checked
here first.
"""

from __future__ import annotations

import re

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
MAX_UID_LENGTH = 64


class InvalidUID(ValueError):
    """A value is not a valid DICOM UID; the message names the rule broken."""


def validate_uid(value: object, what: str = "UID") -> str:
    """Return ``value`` if it is a valid UID, else raise :class:`InvalidUID`.

    A valid UID is at most 64 characters of digits and dots, with no empty
    component and no leading zero in a component (PS3.5 Section 9.1). The
    offending value is never echoed back: it may be identifying.
    """
    if not isinstance(value, str):
        raise InvalidUID(f"{what} must be a string")
    if not value:
        raise InvalidUID(f"{what} is missing")
    if len(value) > MAX_UID_LENGTH:
        raise InvalidUID(f"{what} is longer than {MAX_UID_LENGTH} characters")
    if not _UID_RE.match(value):
        raise InvalidUID(
            f"{what} must be digits separated by dots, without leading zeros"
        )
    return value


def is_valid_uid(value: object) -> bool:
    """True when ``value`` passes :func:`validate_uid`."""
    try:
        validate_uid(value)
    except InvalidUID:
        return False
    return True
