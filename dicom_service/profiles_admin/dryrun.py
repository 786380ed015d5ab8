"""A dry run: one profile applied to one instance, in memory, as a diff.

The instance is parsed twice from the same bytes, once kept as it came and
once de-identified with a throwaway pseudonymiser (a random key, never an
enrolment's); the two are flattened (sequence items as paths such as
``RequestAttributesSequence[0].AccessionNumber``) and compared element by
element. The result holds original values: it goes to the administrator in
the HTTP response and nowhere else (no file, no log line, no exception
message carries a value).
"""

from __future__ import annotations

import io
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicom_service.deidentify import Profile, Pseudonymiser, derive_date_shift
from dicom_service.deidentify.plan import Kind
from dicom_service.profiles_admin.preview import (
    PixelSummary,
    Preview,
    render_preview,
    summarise_pixels,
)

__all__ = [
    "DiffRow",
    "DryRun",
    "InvalidInstance",
    "WouldRefuse",
    "dry_run",
    "read_instance",
    "throwaway_pseudonymiser",
]

MAX_VALUE_CHARS = 1024
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


class InvalidInstance(ValueError):
    """The bytes are not a DICOM instance this service could read or de-identify.
    The message names the problem, never a value."""


class WouldRefuse(Exception):
    """The service would refuse this instance (0xC020, de-identification
    failed): the profile cannot be applied to it, e.g. pixels that need
    cleaning cannot be decoded. The message names the exception type only."""


def throwaway_pseudonymiser() -> Pseudonymiser:
    """A pseudonymiser under a fresh random key: nothing it produces links to
    an enrolment, and nothing is kept."""
    key = secrets.token_bytes(32)
    pseudonym = "DRYRUN-" + "".join(secrets.choice(_CROCKFORD) for _ in range(8))
    return Pseudonymiser(key=key, pseudonym=pseudonym, date_shift_days=derive_date_shift(key))


def read_instance(data: bytes) -> Dataset:
    """Parse a Part-10 file (or a bare data set) from memory.

    Raises:
        InvalidInstance: it does not parse or has no SOP Class UID.
    """
    if len(data) < 16:
        raise InvalidInstance("the file is too short to be DICOM")
    has_magic = data[128:132] == b"DICM"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warnings may quote values
            ds = pydicom.dcmread(io.BytesIO(data), force=not has_magic)
            sop_class = ds.get("SOPClassUID")
    except Exception as exc:  # InvalidDicomError, or anything a corrupt file raises
        raise InvalidInstance(f"not a readable DICOM file ({type(exc).__name__})") from None
    if not sop_class:
        raise InvalidInstance("not a DICOM instance (no SOP Class UID)")
    return ds


@dataclass(frozen=True)
class DiffRow:
    """One element before and after. ``action``: kept, replaced, blanked,
    removed or added; ``rule``: the recipe line that decided (``file:line``),
    ``remove_private``, or None when no rule named the element."""

    path: str
    tag: str
    keyword: str
    vr: str
    action: str
    before: str | None
    after: str | None
    rule: str | None

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "tag": self.tag, "keyword": self.keyword, "vr": self.vr,
                "action": self.action, "before": self.before, "after": self.after,
                "rule": self.rule}


@dataclass(frozen=True)
class DryRun:
    profile: Profile
    pseudonym: str
    rows: list[DiffRow]
    pixels: PixelSummary
    preview: Preview

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            out[row.action] = out.get(row.action, 0) + 1
        return out


@dataclass(frozen=True)
class _Flat:
    tag: int
    keyword: str
    vr: str
    value: str
    items: int | None  # for sequences


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _creator(ds: Dataset, tag: int) -> str | None:
    group, element = tag >> 16, tag & 0xFFFF
    if not group & 1 or element < 0x1000:
        return None
    elem = ds.get((group << 16) | (element >> 8))
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, bytes):
        return value.decode("latin-1").strip(" \x00")
    return str(value).strip(" \x00") if value is not None else None


def _render(elem: DataElement) -> str:
    tag = int(elem.tag)
    value: Any = elem.value
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        if tag in _PIXEL_TAGS or len(value) > 256:
            return f"<{len(value)} bytes>"
        text = bytes(value).rstrip(b" \x00")
        if all(32 <= b < 127 or b >= 160 for b in text):
            return text.decode("latin-1")
        return f"<{len(value)} bytes>"
    if isinstance(value, MultiValue | list | tuple):
        joined = "\\".join(str(v) for v in value)
    else:
        joined = str(value)
    return joined if len(joined) <= MAX_VALUE_CHARS else joined[:MAX_VALUE_CHARS] + "…"


def _flatten(ds: Dataset, prefix: str = "") -> Iterator[tuple[str, _Flat, str | None]]:
    """(path, element, creator) for every element, depth first, in tag order."""
    for tag in list(ds.keys()):
        t = int(tag)
        try:
            elem = ds[tag]
        except Exception as exc:
            path = prefix + _tag_text(t)
            yield path, _Flat(t, "", "??", f"<undecodable: {type(exc).__name__}>", None), None
            continue
        creator = _creator(ds, t)
        keyword = elem.keyword or ""
        name = keyword or (_tag_text(t) + (f" [{creator}]" if creator else ""))
        path = prefix + name
        if elem.VR == "SQ":
            items = list(elem.value or [])
            yield path, _Flat(t, keyword, "SQ", f"<{len(items)} items>", len(items)), creator
            for i, item in enumerate(items):
                yield from _flatten(item, f"{path}[{i}].")
        else:
            try:
                text = _render(elem)
            except Exception as exc:
                text = f"<undecodable: {type(exc).__name__}>"
            yield path, _Flat(t, keyword, str(elem.VR), text, None), creator


def _all(ds: Dataset) -> dict[str, tuple[_Flat, str | None]]:
    out: dict[str, tuple[_Flat, str | None]] = {}
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        for path, flat, creator in _flatten(meta):
            out[path] = (flat, creator)
    for path, flat, creator in _flatten(ds):
        out[path] = (flat, creator)
    return out


def _rule(profile: Profile, flat: _Flat, creator: str | None) -> str | None:
    plan = profile._plan  # the compiled rules; resolve() is side-effect free
    if plan is None:  # pragma: no cover - load_profiles always compiles
        return None
    op = plan.resolve(flat.tag, None if flat.vr == "??" else flat.vr, creator)
    if op.default and op.kind == Kind.KEEP:
        return None
    return op.rule or None


def diff(profile: Profile, before: Dataset, after: Dataset) -> list[DiffRow]:
    """Element-by-element comparison, in the order of ``before`` (then additions)."""
    old = _all(before)
    new = _all(after)
    rows: list[DiffRow] = []
    for path, (flat, creator) in old.items():
        counterpart = new.get(path)
        if counterpart is None:
            action, after_value = "removed", None
        else:
            other = counterpart[0]
            after_value = other.value
            if flat.items is not None or other.items is not None:
                action = "kept" if flat.items == other.items else "replaced"
            elif other.value == flat.value:
                action = "kept"
            elif other.value == "":
                action = "blanked"
            else:
                action = "replaced"
        rows.append(DiffRow(path, _tag_text(flat.tag), flat.keyword, flat.vr, action,
                            flat.value, after_value, _rule(profile, flat, creator)))
    for path, (flat, creator) in new.items():
        if path not in old:
            rows.append(DiffRow(path, _tag_text(flat.tag), flat.keyword, flat.vr, "added",
                                None, flat.value, _rule(profile, flat, creator)))
    return rows


def dry_run(profile: Profile, data: bytes) -> DryRun:
    """De-identify the instance ``data`` with ``profile`` in memory and compare.

    Raises:
        InvalidInstance: it cannot be read.
        WouldRefuse: the profile cannot be applied to it (the ingest pipeline
            would refuse it).
    """
    before = read_instance(data)
    after = read_instance(data)
    pseudonymiser = throwaway_pseudonymiser()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report: object = profile.apply(after, pseudonymiser)
    except Exception as exc:
        raise WouldRefuse(f"the service would refuse this instance: it could not be "
                          f"de-identified ({type(exc).__name__})") from None
    try:
        pixels = summarise_pixels(report)
        rows = diff(profile, before, after)
        preview = render_preview(after, pixels)
    except Exception as exc:  # never let a message that may quote a value escape
        raise InvalidInstance(f"the instance could not be compared ({type(exc).__name__})"
                              ) from None
    return DryRun(profile, pseudonymiser.pseudonym, rows, pixels, preview)
