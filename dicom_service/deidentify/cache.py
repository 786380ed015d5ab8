"""De-identification work shared by the instances of one association.

The instances of a series repeat the same identifiers, descriptive texts and
header values, so the text cleaner built from them, the cleaned texts and the
pixel-cleaning decision are the same for each. A :class:`DeidCache` keeps them
for one ingest context (one C-STORE association, or one STOW-RS request) and
forgets them at :meth:`DeidCache.clear`, which the context calls when it
closes: a cleaner holds the identifiers of the instances it was built from,
and nothing may hold them longer than the transfer that brought them (this is
why nothing here is process-wide).

Keys are HMAC-SHA256 digests under a random key drawn for each cache, never
values in clear: a key that reaches a log or a debugger names nothing, and
digests from two associations cannot be compared. Each kind of entry is
bounded (cleared when full). A cache is used by one thread at a time, as its
association is. Nothing here logs, and the ``repr`` shows only counts.
"""

from __future__ import annotations

import hmac
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - types only: these modules import this one
    from dicom_service.deidentify.clean_text import TextCleaner
    from dicom_service.deidentify.pixels_rules import Decision

__all__ = ["DeidCache"]

_LIMIT = 64  # cleaners or decisions: a few series per association


class DeidCache:
    """Cleaners and pixel decisions of one association, by keyed digest."""

    __slots__ = ("_cleaners", "_decisions", "_key")

    def __init__(self) -> None:
        self._key = os.urandom(32)
        self._cleaners: dict[bytes, TextCleaner] = {}
        self._decisions: dict[bytes, Decision] = {}

    def __repr__(self) -> str:
        return f"DeidCache({len(self._cleaners)} cleaners, {len(self._decisions)} decisions)"

    def digest(self, value: object) -> bytes:
        """HMAC-SHA256 under this cache's key of ``value``: tuples of str,
        bytes, int, bool and ``None`` only, whose ``repr`` is unambiguous."""
        return hmac.digest(self._key, repr(value).encode("utf-8", "surrogatepass"), "sha256")

    def text_digest(self, data: bytes) -> bytes:
        """HMAC-SHA256 of one byte string (a text's memo key)."""
        return hmac.digest(self._key, data, "sha256")

    def cleaner(self, key: bytes) -> TextCleaner | None:
        return self._cleaners.get(key)

    def keep_cleaner(self, key: bytes, cleaner: TextCleaner) -> None:
        if len(self._cleaners) >= _LIMIT:
            self._cleaners.clear()
        self._cleaners[key] = cleaner

    def decision(self, key: bytes) -> Decision | None:
        return self._decisions.get(key)

    def keep_decision(self, key: bytes, decision: Decision) -> None:
        if len(self._decisions) >= _LIMIT:
            self._decisions.clear()
        self._decisions[key] = decision

    def clear(self) -> None:
        """Forget everything (the association ended); the cache stays usable."""
        for cleaner in self._cleaners.values():
            cleaner.forget()
        self._cleaners.clear()
        self._decisions.clear()
