"""QIDO-RS attribute matching (PS3.18 8.3.4, PS3.4 C.2.2.2) on DICOM JSON values.

Query keys are keywords or tags (``PatientID=``, ``00100020=``). Supported:
universal (empty value), single value, wildcard (``*``, ``?``), UID list
(comma or backslash separated), and date/time/datetime ranges (``A-B``,
``A-``, ``-B``). Person names match case-insensitively on the alphabetic
group. Sequence matching is not supported (400).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")
_RANGE_VRS = frozenset({"DA", "TM", "DT"})
MAX_VALUE_LENGTH = 1024


@dataclass(frozen=True)
class Attribute:
    tag: str  # 8 upper-case hex digits, the DICOM JSON key
    keyword: str
    vr: str


def attribute(key: str) -> Attribute:
    """The attribute named by a keyword or tag; ValueError (400) when unknown."""
    if "." in key:
        raise ValueError("sequence attribute paths are not supported in queries")
    if _TAG_RE.match(key):
        number = int(key, 16)
    else:
        found = tag_for_keyword(key)
        if found is None:
            raise ValueError("unknown query attribute (neither a keyword nor a tag)")
        number = found
    try:
        vr = dictionary_VR(number)
    except KeyError:
        raise ValueError("query attribute is not in the DICOM data dictionary") from None
    return Attribute(tag=f"{number:08X}", keyword=keyword_for_tag(number) or "", vr=vr)


Matcher = Callable[[dict[str, Any]], bool]


def _values(item: dict[str, Any], tag: str) -> list[str]:
    elem = item.get(tag)
    if not elem:
        return []
    out = []
    for v in elem.get("Value", []):
        if isinstance(v, dict):
            v = v.get("Alphabetic")
        if v is not None:
            out.append(str(v))
    return out


def _wildcard(pattern: str, *, fold: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.IGNORECASE | re.DOTALL if fold else re.DOTALL)


def _normal_time(value: str) -> str:
    return value.replace(":", "")


def uid_values(raw: str) -> frozenset[str]:
    """The UIDs of a UID list match (comma or backslash separated)."""
    return frozenset(v.strip() for v in re.split(r"[,\\]", raw) if v.strip())


def matcher(attr: Attribute, raw: str) -> Matcher | None:
    """A predicate on a DICOM JSON item, or ``None`` for universal matching."""
    if len(raw) > MAX_VALUE_LENGTH:
        raise ValueError(f"query values must be at most {MAX_VALUE_LENGTH} characters")
    if raw == "" or raw == "*":
        return None
    if attr.vr == "SQ":
        raise ValueError("sequence matching is not supported")
    tag = attr.tag
    if attr.vr == "UI":
        wanted = uid_values(raw)
        return lambda item: any(v in wanted for v in _values(item, tag))
    if attr.vr in _RANGE_VRS and "-" in raw:  # a range (DT time zones are not supported)
        low, _, high = raw.partition("-")
        if attr.vr == "TM":
            low, high = _normal_time(low), _normal_time(high)
        for bound in (low, high):
            if bound and not re.fullmatch(r"[0-9.+]+", bound):
                raise ValueError(f"{attr.keyword or attr.tag} range must be digits")

        def in_range(item: dict[str, Any]) -> bool:
            for v in _values(item, tag):
                v = _normal_time(v) if attr.vr == "TM" else v
                if (not low or v >= low) and (not high or v[:len(high)] <= high):
                    return True
            return False
        return in_range
    if attr.vr in _RANGE_VRS and not re.fullmatch(r"[0-9.:+*?]+", raw):
        raise ValueError(f"{attr.keyword or attr.tag} must be a date, time or range")
    fold = attr.vr == "PN"
    if "*" in raw or "?" in raw:
        rx = _wildcard(raw, fold=fold)
        return lambda item: any(rx.match(v) for v in _values(item, tag))
    if attr.vr == "TM":
        return lambda item: any(_normal_time(v) == _normal_time(raw)
                                for v in _values(item, tag))
    if fold:
        folded = raw.casefold()
        return lambda item: any(v.casefold() == folded for v in _values(item, tag))
    if attr.vr in ("IS", "DS", "US", "SS", "UL", "SL", "FL", "FD"):
        try:
            number = float(raw)
        except ValueError:
            raise ValueError(f"{attr.keyword or attr.tag} must be a number") from None
        return lambda item: any(_num(v) == number for v in _values(item, tag))
    return lambda item: any(v == raw for v in _values(item, tag))


def _num(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None
