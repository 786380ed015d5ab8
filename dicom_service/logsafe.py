"""Logging without identifiers.

Exception messages from parsers may quote the offending value (a name, an
ID). :func:`describe` keeps the exception's type and where it was raised, and
drops the message.
"""

from __future__ import annotations

import traceback


def describe(exc: BaseException) -> str:
    """``TypeName at file:line in function`` for the innermost frame; never the message."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    where = last.filename.rsplit("/", 1)[-1]
    return f"{type(exc).__name__} at {where}:{last.lineno} in {last.name}"
