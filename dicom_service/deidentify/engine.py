"""Apply a compiled :class:`~dicom_service.deidentify.plan.Plan` to a dataset
in one pass.

The walk looks at each element's tag and VR only: one dictionary lookup gives
the operation. Values are decoded only where they must change (UIDs, shifted
dates); removed elements are never decoded; Pixel Data is never touched. An
element still raw from the parser (``RawDataElement``) is replaced by a raw
element with the new encoded bytes, so the writer copies it without
conversion. Sequences that are kept are walked, so the profile applies inside
every item at any depth (PS3.15 Annex E: "K ... cleaned for sequences").

Nothing here logs or raises with a value in the message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydicom._uid_dict import UID_dictionary
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from dicom_service.deidentify.clean_text import TextCleaner
from dicom_service.deidentify.plan import (
    BINARY_VRS,
    NUMERIC_VRS,
    Kind,
    Op,
    Plan,
    encode_literal,
)
from dicom_service.deidentify.pseudonyms import Pseudonymiser, shift_da, shift_dt

__all__ = ["REGISTERED_UIDS", "apply_adds", "code_item", "walk"]

REGISTERED_UIDS: frozenset[str] = frozenset(UID_dictionary)
"""UIDs registered in PS3.6 Annex A (SOP classes, transfer syntaxes, coding
schemes, well-known frames of reference, ...): never replaced, they identify
classes, not patients."""

_KEEP = int(Kind.KEEP)
_REMOVE = int(Kind.REMOVE)
_BLANK = int(Kind.BLANK)
_LITERAL = int(Kind.LITERAL)
_UID = int(Kind.UID)
_PSEUDONYM = int(Kind.PSEUDONYM)
_DUMMY_CODE = int(Kind.DUMMY_CODE)
_JITTER = int(Kind.JITTER)
_DATE_SHIFT = int(Kind.DATE_SHIFT)
_DUMMY_ITEMS = int(Kind.DUMMY_ITEMS)
_LOCAL_MEANING = int(Kind.LOCAL_MEANING)
_CLEAN_TEXT = int(Kind.CLEAN_TEXT)
_CLEAN_ITEMS = int(Kind.CLEAN_ITEMS)
_CODING_SCHEME_DESIGNATOR = 0x00080102


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    """A Code Sequence Macro item (PS3.3 Table 8.8-1)."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _dummy_code_sequence() -> Sequence:
    return Sequence([code_item("REMOVED", "99DCMSVC", "Removed by de-identification")])


def _map_uid(value: str, p: Pseudonymiser) -> str:
    v = value.strip(" \x00")
    if not v or v in REGISTERED_UIDS:
        return v
    return p.uid(v)


def _map_uid_bytes(raw: bytes, p: Pseudonymiser) -> bytes:
    text = raw.decode("ascii", "surrogateescape")
    if "\\" in text:
        mapped = "\\".join(_map_uid(v, p) for v in text.split("\\"))
    else:
        mapped = _map_uid(text, p)
    out = mapped.encode("ascii")
    return out + b"\x00" if len(out) % 2 else out


def _pad_text(text: str) -> bytes:
    out = text.encode("ascii")
    return out + b" " if len(out) % 2 else out


def _value_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def _literal_value(op: Op) -> Any:
    """The literal as a value for ``DataElement.value`` of VR ``op.vr``."""
    text = op.literal or ""
    vr = op.vr
    if vr in BINARY_VRS or vr.startswith("O"):
        return encode_literal(text, "OB")
    if vr in NUMERIC_VRS or vr.startswith(("US", "SS")):
        return float(text) if vr in ("FD", "FL") else int(text)
    return text


def _shift(op: Op, text: str, p: Pseudonymiser) -> str:
    days = op.days if op.kind == _JITTER else p.date_shift_days
    return shift_da(text, days) if op.vr == "DA" else shift_dt(text, days)


def _text(elem: DataElement | RawDataElement | None) -> str:
    if elem is None or elem.value is None:
        return ""
    value = elem.value
    if isinstance(value, bytes):
        return value.decode("latin-1").strip(" \x00")
    return str(value).strip()


def is_local_scheme(designator: str) -> bool:
    """A private or local coding scheme: ``99...`` or ``L`` (PS3.16 Section 8)."""
    upper = designator.upper()
    return upper.startswith("99") or upper in ("L", "LOCAL")


def _creator(ds: Dataset, tag: int) -> str | None:
    """The private creator of private data element ``tag`` in ``ds``."""
    elem = ds._dict.get((tag & 0xFFFF0000) | ((tag >> 8) & 0xFF))  # type: ignore[call-overload]
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, bytes):
        return value.decode("latin-1").strip(" \x00")
    return None if value is None else str(value).strip(" \x00")


def _raw_op(
    ds: Dataset, tag: Any, raw: RawDataElement, op: Op, kind: int, p: Pseudonymiser
) -> None:
    """Apply a value-changing ``op`` to a raw element (value bytes as read)."""
    value = raw.value or b""
    new: bytes
    if kind == _UID:
        if not value:
            return
        new = _map_uid_bytes(value, p)
    elif kind == _LITERAL:
        new = op.literal_bytes or b""
    elif kind == _BLANK:
        new = b""
    elif kind == _PSEUDONYM:
        new = _pad_text(p.pseudonym)
    else:  # _JITTER, _DATE_SHIFT
        if not value:
            return
        new = _pad_text(_shift(op, value.decode("latin-1"), p))
    ds._dict[tag] = raw._replace(value=new, length=len(new))


def _element_op(elem: DataElement, op: Op, kind: int, p: Pseudonymiser) -> None:
    """Apply a value-changing ``op`` to a decoded element, in place."""
    if kind == _UID:
        value = elem.value
        if isinstance(value, str):
            elem.value = _map_uid(value, p)
        elif isinstance(value, MultiValue | list | tuple):
            elem.value = [_map_uid(str(v), p) for v in value]
    elif kind == _LITERAL:
        elem.value = _literal_value(op)
    elif kind == _BLANK:
        if elem.VR == "SQ":
            elem.value = Sequence()
        else:
            elem.clear()
    elif kind == _PSEUDONYM:
        elem.value = p.pseudonym
    else:  # _JITTER, _DATE_SHIFT
        text = _value_text(elem.value)
        if text:
            elem.value = _shift(op, text, p)


def walk(
    ds: Dataset,
    plan: Plan,
    p: Pseudonymiser,
    dummy: bool = False,
    cleaner: TextCleaner | None = None,
    clean: bool = False,
) -> None:
    """Apply ``plan`` to ``ds`` and, recursively, to every item of every kept
    sequence. ``ds.file_meta`` is not visited (the caller decides). With
    ``dummy`` (inside a sequence under ``func:dummy_items``) elements no rule
    names get their VR's dummy (:meth:`Plan.dummy_op`), at any depth; with
    ``clean`` (inside ``func:clean_items``) their text is cleaned instead
    (:meth:`Plan.clean_op`). ``cleaner`` holds the original instance's
    identifiers for ``func:clean_text``; without one, text to clean is
    removed (the safe reading).

    Raises:
        Exception: whatever pydicom raises for an element it cannot decode
            (only elements whose value must change, and kept sequences, are
            decoded). Messages from pydicom may quote values; callers report
            only the exception type (``dicom_service.logsafe.describe``).
    """
    d = ds._dict
    op_for: Callable[[int, str | None], Op] = (
        plan.clean_op if clean else plan.dummy_op if dummy else plan.op
    )
    private_rules = plan.has_private_rules
    pending_creators: list[Any] = []
    for tag, elem in list(d.items()):
        t = int(tag)
        vr = elem.VR
        if private_rules and (t >> 16) & 1 and (t & 0xFFFF) >= 0x1000:
            op = plan.private_op(t, vr, _creator(ds, t))
        else:
            op = op_for(t, vr)
        kind: int = op.kind
        if kind == _KEEP:
            if op.recurse:
                seq = ds[tag].value
                if seq:
                    for item in seq:
                        walk(item, plan, p, dummy, cleaner, clean)
            continue
        if kind == _REMOVE:
            if private_rules and (t >> 16) & 1 and 0x10 <= (t & 0xFFFF) <= 0xFF:
                pending_creators.append(tag)  # decided once its block is known
            else:
                del d[tag]
            continue
        if kind == _DUMMY_CODE:
            ds[tag] = DataElement(tag, "SQ", _dummy_code_sequence())
            continue
        if kind == _LOCAL_MEANING:
            # kept only beside a scheme that is named and not local: a meaning
            # without a designator (or with an empty one) is free text too
            designator = _text(d.get(_CODING_SCHEME_DESIGNATOR))  # type: ignore[call-overload]
            if designator and not is_local_scheme(designator):
                continue
            kind = _LITERAL
        if kind == _DUMMY_ITEMS or kind == _CLEAN_ITEMS:
            seq = ds[tag].value
            if seq:
                for item in seq:
                    walk(item, plan, p, True, cleaner, kind == _CLEAN_ITEMS)
            continue
        if kind == _CLEAN_TEXT:
            if cleaner is None:
                del d[tag]
                continue
            cleaner.clean_element(ds, tag, op.vr)
            continue
        if (
            type(elem) is RawDataElement
            and elem.value is not None
            and (kind != _LITERAL or op.literal_bytes is not None)
        ):
            _raw_op(ds, tag, elem, op, kind, p)
        else:
            _element_op(ds[tag], op, kind, p)
    for ctag in pending_creators:
        base = (int(ctag) & 0xFFFF0000) | ((int(ctag) & 0xFF) << 8)
        if not any(base <= int(t) <= base + 0xFF for t in d):
            del d[ctag]
    ds._private_blocks = {}


def apply_adds(ds: Dataset, plan: Plan, p: Pseudonymiser) -> None:
    """Create the elements of the plan's top-level ADD rules that are absent.

    Present ones were set by :func:`walk` (an ADD acts as REPLACE wherever
    the tag occurs)."""
    for tag, op in plan.adds:
        kind: int = op.kind
        if kind == _PSEUDONYM:
            value: Any = p.pseudonym
        elif kind == _LITERAL:
            value = _literal_value(op)
        else:  # func:keyed_uid on an absent element has nothing to map
            continue
        if tag not in ds._dict:  # present ones were replaced by the walk
            ds[tag] = DataElement(tag, op.vr, value)
