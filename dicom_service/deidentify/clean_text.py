"""Clean free text: PS3.15 Annex E action C for descriptors and structured content.

The Clean Descriptors Option (PS3.15 Section E.3.5) and the Clean Structured
Content Option (E.3.6) keep descriptive text "cleaned", that is with
identifying information removed. A :class:`TextCleaner` is built from the
ORIGINAL dataset before any rule runs (the engine holds it in memory during
ingest only) and collects what that instance itself says identifies someone:

* every person name (VR PN, anywhere outside private groups): each component
  (family, given, middle) and its hyphen/space-separated parts;
* identifiers: PatientID, OtherPatientIDs(Sequence), IssuerOfPatientID,
  AccessionNumber, StudyID, procedure step and request IDs, order numbers,
  admission ID, device serial number;
* addresses (patient, institution, physician, person), the institution and
  department names, the station name, and telephone numbers.

An element counts by its tag, whatever VR it arrived with: a PatientName sent
as LO, UT or OB (a sender's error, or a converter's) still names a person,
and a value in a binary VR (OB, UN) is read as text in the data set's
character set. Otherwise such an instance's own names would stay in its
cleaned descriptors.

:meth:`TextCleaner.clean` replaces in a text each occurrence of those values,
matched case- and accent-insensitively (``Ødegård`` also as ``ODEGARD`` and
``Oedegaard``; ``Müller`` as ``MUELLER``; Greek and Cyrillic by case folding,
accents removed), identifiers also with other separators (``NOODG5581``),
plus patterns: UIDs (dotted numbers of four components or more as PS3.5
Section 9 writes them, or ``2.25.`` and a large integer: an original UID
in a comment links the instance to its source), e-mail addresses,
telephone numbers, dates (numeric forms and day/month-name/year in several
languages), a title followed by capitalised words (``Dr Jane Doe``), and a
capitalised word right before a family name or right after a given name
found in the text (a relative's first name: ``Eirik Ødegård``). Each hit
becomes :data:`REMOVED`.

What it does NOT catch (documented in ``deid_profiles/README.md``): names and
identifiers that occur nowhere else in the instance (a relative's full name
with a different surname, a nickname, a misspelling), places, dates written
as words without a number, ages, rare-disease or family details that identify
in context, and text in other languages' scripts that case folding does not
map onto the stored form. It is a filter, not a guarantee.

Nothing here logs; the cleaner holds identifiers in memory only, for one
instance or, given a :class:`~dicom_service.deidentify.cache.DeidCache`, for
the instances of one association: then the cleaner built for the first
instance of a series serves the next ones (found by a keyed digest of the
elements it was built from), and remembers each text's result by a keyed
digest of the text's bytes, until the cache is cleared. There is no cache
across associations (patterns are compiled without ``re``'s module cache),
and its ``repr`` shows none.

Changing what this module removes changes what a profile does without
changing its recipe text: bump ``profiles.ENGINE_REVISION`` (part of every
profile hash) with it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydicom._dicom_dict import DicomDictionary
from pydicom.charset import decode_bytes
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from dicom_service.deidentify.plan import effective_vr

if TYPE_CHECKING:  # pragma: no cover - types only
    from dicom_service.deidentify.cache import DeidCache

__all__ = ["MAX_LENGTH", "REMOVED", "TextCleaner", "fold"]

REMOVED = "[removed]"
"""What each hit is replaced with."""

MAX_LENGTH: dict[str, int] = {"AE": 16, "SH": 16, "LO": 64, "ST": 1024, "LT": 10240}
"""Maximum value length by VR (PS3.5 Table 6.2-1); UC and UT are unlimited."""

# Categories of known terms.
_FAMILY = "family"
_GIVEN = "given"
_ID = "id"
_TEXT = "text"  # addresses, institution names: matched as phrases
_PHONE = "phone"

# Data elements whose values are identifiers (matched with any separators).
_ID_TAGS: frozenset[int] = frozenset({
    0x00100020,  # PatientID
    0x00101000,  # OtherPatientIDs (retired)
    0x00100021,  # IssuerOfPatientID
    0x00080050,  # AccessionNumber
    0x00200010,  # StudyID
    0x00400253,  # PerformedProcedureStepID
    0x00400009,  # ScheduledProcedureStepID
    0x00401001,  # RequestedProcedureID
    0x00402016,  # PlacerOrderNumberImagingServiceRequest
    0x00402017,  # FillerOrderNumberImagingServiceRequest
    0x00380010,  # AdmissionID
    0x00101090,  # MedicalRecordLocator
    0x00181000,  # DeviceSerialNumber
    0x00081010,  # StationName
})
# Addresses and names of places and organisations (matched as phrases, and
# by their comma-separated parts).
_TEXT_TAGS: frozenset[int] = frozenset({
    0x00101040,  # PatientAddress
    0x00080081,  # InstitutionAddress
    0x00080092,  # ReferringPhysicianAddress
    0x00401102,  # PersonAddress
    0x00080080,  # InstitutionName
    0x00081040,  # InstitutionalDepartmentName
    0x00102152,  # RegionOfResidence
})
_PHONE_TAGS: frozenset[int] = frozenset({
    0x00102154,  # PatientTelephoneNumbers
    0x00080094,  # ReferringPhysicianTelephoneNumbers
    0x00401103,  # PersonTelephoneNumbers
    0x00102155,  # PatientTelecomInformation
})
_SPECIFIC_CHARACTER_SET = 0x00080005

# Letters that Unicode decomposition does not reduce to a base letter.
_FOLD = {"ø": "o", "æ": "ae", "ß": "ss", "ł": "l", "đ": "d", "ð": "d", "þ": "th",
         "œ": "oe", "\u0131": "i", "ŧ": "t", "ħ": "h"}
# Usual ASCII transliterations (German, Scandinavian): a term also matches so.
_TRANSLIT = {"ø": "oe", "å": "aa", "ä": "ae", "ö": "oe", "ü": "ue", "æ": "ae"}

_TITLES = (
    "dr", "drs", "dres", "dott", "dottssa", "dra", "prof", "profs", "mr", "mrs", "ms", "mx",
    "mme", "mlle", "herr", "frau", "sr", "sra", "srta", "sig", "sigra", "doc", "doctor",
    "doktor", "docteur", "dottore", "nurse", "sister",
)
# Titles as written before a name: "Dr", "dr", and in capitals only when
# longer than three letters ("HERR"): "MR", "SR", "DR", "MS" and "DOC" in
# capitals are modalities, SR documents, a diagnosis, not titles.
_TITLE_FORMS = sorted(
    {f for t in _TITLES for f in (t, t.capitalize(), *((t.upper(),) if len(t) > 3 else ()))},
    key=len, reverse=True,
)
_TITLE_RE = re.compile(
    rf"(?<![^\W\d_])(?:{'|'.join(_TITLE_FORMS)})\b\.?(?:\s*med\.)?"
)
_NEXT_WORD_RE = re.compile(r"[ \t]*([^\W\d_][\w'\u2019-]*\.?)")
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE_RES = (
    # international: +44 20 7946 0958, 0044 ..., +1-202-555-0147
    re.compile(r"(?<![\w+])(?:\+|00)\d{1,3}(?:[\s().-]*\d){6,13}(?!\w)"),
    # national with a trunk 0: 020 7946 0958, (0161) 496-0999
    re.compile(r"(?<![\w.,])\(?0\d{1,4}\)?[\s./-]\d{2,4}(?:[\s./-]\d{2,5}){1,2}(?![\w.,])"),
    # North American: 202-555-0147, (202) 555 0147, 555-0147
    re.compile(r"(?<![\w.,])(?:\(?\d{3}\)?[\s.-])?\d{3}-\d{4}(?![\w.,-])"),
)
_MONTHS = (
    r"jan|feb|febr|mar|mär|maer|apr|may|mai|mag|jun|juin|giu|jul|juil|lug|aug|ago|"
    r"aout|août|sep|sept|set|oct|okt|ott|nov|dec|dez|des|dic|ene|abr|janv|fevr|févr|avr|"
    r"januar|februar|märz|maerz|juni|juli|oktober|dezember|desember|mars|juin|"
    r"gennaio|enero"
)
# a UID (PS3.5 Section 9.1: components of digits without leading zeros,
# separated by dots) of four components or more (1.2.840.10008...), or one
# derived from a UUID (2.25. and a large integer, PS3.5 Annex B.2)
_UID_RE = re.compile(
    r"(?<![\w.])(?:[0-2](?:\.(?:0|[1-9]\d*)){3,}|2\.25\.[1-9]\d{5,})(?![\w]|\.\d)")
_DATE_RES = (
    re.compile(r"(?<![\w.])\d{4}[-./]\d{1,2}[-./]\d{1,2}(?![\w]|\.\d)"),
    re.compile(r"(?<![\w.])\d{1,2}[-./]\d{1,2}[-./](?:\d{4}|\d{2})(?![\w]|\.\d)"),
    re.compile(r"(?<!\w)(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?!\w)"),
    re.compile(
        rf"(?<!\w)\d{{1,2}}\.?\s*(?:{_MONTHS})[^\W\d_]*\.?,?\s*\d{{2,4}}(?!\w)", re.IGNORECASE
    ),
    re.compile(
        rf"(?<!\w)(?:{_MONTHS})[^\W\d_]*\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}(?!\w)",
        re.IGNORECASE,
    ),
)


# ``re.compile`` keeps the last 512 patterns in a module-level cache: patterns
# made of an instance's identifiers would outlive its ingest there
# (invariant 1). The compiler under it does not cache; fall back to
# re.compile if a future Python moves it.
_compile_uncached: Callable[[str, int], re.Pattern[str]] = getattr(
    getattr(re, "_compiler", None), "compile", re.compile
)


def _fold_char(char: str) -> str:
    out = []
    for ch in char.casefold():
        mapped = _FOLD.get(ch)
        if mapped is not None:
            out.append(mapped)
            continue
        out.append(
            "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        )
    return "".join(out)


def fold(text: str) -> tuple[str, list[int]]:
    """Case- and accent-fold ``text``.

    Returns the folded text and, for each of its characters, the index of the
    character of ``text`` it came from (folding may change lengths: ``ß`` ->
    ``ss``)."""
    if text.isascii():  # the common case: same length, no accents
        return text.lower(), list(range(len(text)))
    folded: list[str] = []
    origin: list[int] = []
    for i, char in enumerate(text):
        f = _fold_char(char)
        folded.append(f)
        origin.extend([i] * len(f))
    return "".join(folded), origin


def _variants(term: str) -> set[str]:
    """Folded forms of a term: plain, and with ASCII transliterations."""
    plain = fold(term)[0]
    translit = fold("".join(_TRANSLIT.get(c, c) for c in term.casefold()))[0]
    return {plain, translit}


_RUN_RE = re.compile(r"[^\W_]+")
_DIGITS_RE = re.compile(r"\d")


def _pattern(term: str, category: str) -> str:
    """The regular expression (over folded text) for one folded term."""
    runs = _RUN_RE.findall(term)
    if category in (_ID, _PHONE):
        # identifiers: any separators (or none) between the parts
        chars = "".join(runs)
        if category == _PHONE:
            return r"[\s().+/-]*".join(re.escape(c) for c in chars)
        return r"[\W_]*".join(re.escape(r) for r in runs)
    return r"[\W_]+".join(re.escape(r) for r in runs)


def _build(terms: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str, str], ...]:
    """Fold the terms: (category, folded term, its first alphanumeric run,
    used as a quick substring filter). Deliberately not cached across
    instances: a cache would keep identifiers in memory after the instance's
    ingest (invariant 1)."""
    folded: set[tuple[str, str, str]] = set()
    for category, value in terms:
        if category == _PHONE:
            folded.add((category, value, ""))
            continue
        for variant in _variants(value):
            runs = _RUN_RE.findall(variant)
            if len("".join(runs)) >= 2:
                folded.add((category, variant, runs[0]))
    return tuple(sorted(folded))


def _compile(terms: tuple[tuple[str, str], ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """One regular expression per category over folded text."""
    by_category: dict[str, list[str]] = {}
    for category, term in terms:
        by_category.setdefault(category, []).append(term)
    compiled = []
    for category, values in sorted(by_category.items()):
        patterns = sorted({_pattern(v, category) for v in values}, key=len, reverse=True)
        patterns = [p for p in patterns if p]
        if patterns:
            body = "|".join(patterns)
            pattern = rf"(?<![^\W_])(?:{body})(?![^\W_])"
            compiled.append((category, _compile_uncached(pattern, 0)))
    return tuple(compiled)


def _strings(value: object) -> Iterator[str]:
    if value is None:
        return
    if isinstance(value, MultiValue | list | tuple):
        for v in value:
            yield from _strings(v)
        return
    text = str(value).strip(" \x00")
    if text:
        yield text


def _name_terms(value: object) -> Iterator[tuple[str, str]]:
    for text in _strings(value):
        # component groups (alphabetic, ideographic, phonetic), PS3.5 6.2.1
        for group in (g for g in text.split("=") if g):
            parts = group.split("^")
            for index, component in enumerate(parts[:3]):  # family, given, middle
                category = _FAMILY if index == 0 else _GIVEN
                component = component.strip()
                if len(component) < 2:
                    continue
                yield category, component
                for piece in re.split(r"[\s-]+", component):
                    if len(piece.strip(".")) >= 2:
                        yield category, piece.strip(".")


def _text_terms(value: object) -> Iterator[tuple[str, str]]:
    for text in _strings(value):
        if len(text) >= 4:
            yield _TEXT, text
        for part in text.split(","):
            part = part.strip()
            if len(part) >= 6:
                yield _TEXT, part


def _phone_terms(value: object) -> Iterator[tuple[str, str]]:
    for text in _strings(value):
        digits = re.sub(r"\D", "", text)
        if len(digits) >= 6:
            yield _PHONE, digits


def _id_terms(value: object) -> Iterator[tuple[str, str]]:
    for text in _strings(value):
        if len(re.sub(r"[\W_]", "", text)) >= 3:
            yield _ID, text


def _value(ds: Dataset, tag: BaseTag, elem: DataElement | RawDataElement) -> Any:
    """The decoded value, without replacing a raw element in ``ds`` (a raw
    element is written back as it was read: faster, and unchanged bytes).
    Bytes (an identifying element sent in a binary VR such as OB) are read as
    text in the data set's character set, values split at backslashes."""
    if isinstance(elem, RawDataElement):
        value = convert_raw_data_element(elem, encoding=ds._character_set, ds=ds).value
    else:
        value = elem.value
    if isinstance(value, bytes | bytearray):
        encodings = ds._character_set  # a codec name, or a list of them
        text = decode_bytes(bytes(value),
                            [encodings] if isinstance(encodings, str) else list(encodings),
                            _TEXT_DELIMITERS)
        return [v for v in text.split("\\") if v.strip(" \x00")]
    return value


_TEXT_DELIMITERS = {0x5C, 0x5E, 0x3D}  # \ ^ = : where ISO 2022 escapes reset


_PN_TAGS: frozenset[int] = frozenset(
    tag for tag, entry in DicomDictionary.items() if entry[0] == "PN")
"""Standard tags whose VR is PN in the data dictionary."""


def _is_name(tag: int, vr: str) -> bool:
    """A person name: VR PN on the wire, or a standard tag whose VR is PN in
    the data dictionary (sent with another VR)."""
    return vr == "PN" or tag in _PN_TAGS


_Terms = Callable[[object], Iterator[tuple[str, str]]]
_TERMS_BY_TAG: dict[int, _Terms] = {
    **dict.fromkeys(_ID_TAGS, _id_terms),
    **dict.fromkeys(_TEXT_TAGS, _text_terms),
    **dict.fromkeys(_PHONE_TAGS, _phone_terms),
}
_TERMS_NAME: dict[_Terms, str] = {_name_terms: "name", _id_terms: "id",
                                  _text_terms: "text", _phone_terms: "phone"}


def _sources(
    ds: Dataset, depth: int = 0
) -> Iterator[tuple[Dataset, BaseTag, DataElement | RawDataElement, _Terms]]:
    """The elements of ``ds`` and its sequences (not private) that name
    identifying terms, each with its data set and how to take its terms."""
    for tag, elem in list(ds._dict.items()):
        t = int(tag)
        if (t >> 16) & 1 or t >> 16 in (0x7FE0, 0x0002):
            continue
        vr = elem.VR
        if vr is None or vr == "UN":
            vr = effective_vr(t, None)
        if vr == "SQ":
            if depth < 16:
                for item in ds[tag].value or ():
                    yield from _sources(item, depth + 1)
            continue
        terms = _name_terms if _is_name(t, vr) else _TERMS_BY_TAG.get(t)
        if terms is not None:
            yield ds, tag, elem, terms


def _collect(ds: Dataset, out: set[tuple[str, str]]) -> None:
    """Collect identifying terms from ``ds`` and its sequences (not private)."""
    for item, tag, elem, terms in _sources(ds):
        out.update(terms(_value(item, tag, elem)))


def _source_key(
    sources: list[tuple[Dataset, BaseTag, DataElement | RawDataElement, _Terms]]
) -> tuple[object, ...]:
    """What determines the terms of ``sources``: an undecoded value by its
    bytes, VR and character set; a decoded one by its strings."""
    return tuple(
        (_TERMS_NAME[terms], int(tag), elem.VR, repr(item._character_set), elem.value)
        if type(elem) is RawDataElement else
        (_TERMS_NAME[terms], int(tag), tuple(_strings(elem.value)))
        for item, tag, elem, terms in sources)


_MISS = object()
_UNCHANGED = object()
_MEMO_LIMIT = 4096


@dataclass(frozen=True)
class _Hit:
    start: int
    end: int
    categories: frozenset[str]


class TextCleaner:
    """Removes an instance's own identifiers, and identifier-like patterns,
    from free text (see the module docstring for what is and is not caught).

    Build it with :meth:`from_dataset` on the original dataset, before the
    rules change it; then :meth:`clean` each text the profile keeps cleaned.
    """

    __slots__ = ("_digest", "_memo", "_terms")

    def __init__(self, terms: Iterable[tuple[str, str]],
                 cache: DeidCache | None = None) -> None:
        """``terms``: (category, value) pairs; categories ``family``,
        ``given``, ``id``, ``text``, ``phone``. With ``cache``, results of
        :meth:`clean_element` are remembered until :meth:`forget`."""
        self._terms = _build(tuple(sorted(set(terms))))
        self._memo: dict[bytes, object] | None = None if cache is None else {}
        self._digest = None if cache is None else cache.text_digest

    def forget(self) -> None:
        """Drop the terms and remembered results (its cache was cleared)."""
        self._terms = ()
        if self._memo is not None:
            self._memo.clear()

    def __repr__(self) -> str:
        return f"TextCleaner({len(self._terms)} terms)"

    def _patterns(self, folded: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
        """Compiled patterns of the terms that may occur in ``folded`` (the
        first run of a term is a substring of any text it matches; a phone
        number needs six digits): most texts compile nothing."""
        digits = len(_DIGITS_RE.findall(folded))
        candidates = tuple(
            (category, term) for category, term, first in self._terms
            if (first in folded if category != _PHONE else digits >= 6)
        )
        return _compile(candidates) if candidates else ()

    @classmethod
    def from_dataset(cls, ds: Dataset, cache: DeidCache | None = None) -> TextCleaner:
        """Collect the identifying terms of ``ds`` (the original instance).

        With ``cache``, the cleaner of an earlier instance whose identifying
        elements were the same is reused (no value is decoded then), and a
        new one is kept there.

        Raises:
            Exception: what pydicom raises for a value it cannot decode (the
                message may quote it: report the type only).
        """
        if cache is None:
            terms: set[tuple[str, str]] = set()
            _collect(ds, terms)
            return cls(terms)
        sources = list(_sources(ds))
        key = cache.digest(_source_key(sources))
        found = cache.cleaner(key)
        if found is not None:
            return found
        terms = set()
        for item, tag, elem, take in sources:
            terms.update(take(_value(item, tag, elem)))
        made = cls(terms, cache)
        cache.keep_cleaner(key, made)
        return made

    def _hits(self, text: str) -> list[_Hit]:
        hits: list[_Hit] = []
        for regex in (_UID_RE, _EMAIL_RE, *_PHONE_RES, *_DATE_RES):
            hits.extend(_Hit(m.start(), m.end(), frozenset({"pattern"}))
                        for m in regex.finditer(text))
        for m in _TITLE_RE.finditer(text):
            end = self._capitalised_after(text, m.end(), 3)
            if end > m.end():
                hits.append(_Hit(m.start(), end, frozenset({"pattern"})))
        if self._terms:
            folded, origin = fold(text)
            for category, regex in self._patterns(folded):
                for m in regex.finditer(folded):
                    if m.end() > m.start():
                        hits.append(_Hit(
                            origin[m.start()], origin[m.end() - 1] + 1, frozenset({category})
                        ))
        return hits

    @staticmethod
    def _capitalised_after(text: str, pos: int, words: int) -> int:
        """End of up to ``words`` capitalised words (or initials) after ``pos``."""
        end = pos
        for _ in range(words):
            m = _NEXT_WORD_RE.match(text, end)
            if m is None or not m.group(1)[0].isupper():
                break
            end = m.end()
        return end

    @staticmethod
    def _capitalised_before(text: str, pos: int) -> int:
        """Start of one capitalised word ending right before ``pos`` (across
        spaces only), or ``pos``."""
        head = text[:pos]
        stripped = head.rstrip()
        if len(stripped) == len(head) and head:
            return pos
        m = re.search(r"[^\W\d_][\w'\u2019-]*\.?$", stripped)
        if m is None:
            return pos
        word = m.group()
        if word[0].isupper() and any(c.islower() for c in word[1:]):
            return m.start()
        return pos

    def _merge(self, text: str, hits: list[_Hit]) -> list[tuple[int, int]]:
        """Join overlapping hits and hits separated only by spaces or hyphens
        (``Given Family``); then widen a lone family or given name by one
        capitalised neighbour."""
        hits.sort(key=lambda h: (h.start, -h.end))
        merged: list[_Hit] = []
        for h in hits:
            if merged:
                last = merged[-1]
                gap = text[last.end:h.start]
                if h.start <= last.end or (gap and not gap.strip(" -")):
                    merged[-1] = _Hit(
                        last.start, max(last.end, h.end), last.categories | h.categories
                    )
                    continue
            merged.append(h)
        spans: list[tuple[int, int]] = []
        for hit in merged:
            start, end, cats = hit.start, hit.end, hit.categories
            if cats == frozenset({_FAMILY}):  # a first name before a family name
                start = self._capitalised_before(text, start)
            elif cats == frozenset({_GIVEN}):  # a family name after a given name
                end = self._capitalised_after(text, end, 1)
            spans.append((start, end))
        return spans

    def clean(self, text: str) -> str:
        """``text`` with every hit replaced by :data:`REMOVED` (unchanged when
        nothing is found)."""
        if not text:
            return text
        hits = self._hits(text)
        if not hits:
            return text
        out: list[str] = []
        pos = 0
        for start, end in self._merge(text, hits):
            if start < pos:
                start = pos
            if end <= start:
                continue
            out.append(text[pos:start])
            out.append(REMOVED)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def clean_element(self, ds: Dataset, tag: BaseTag, vr: str) -> None:
        """Clean element ``tag`` of ``ds`` in place (:meth:`clean_value`).

        An element still raw from the parser whose text has no hit stays raw,
        so the writer copies its bytes as received. With a cache the result
        is remembered by a keyed digest of the element's bytes: the same text
        in the next instance costs one HMAC.

        Raises:
            Exception: what pydicom raises for a value it cannot decode.
        """
        elem = ds._dict[tag]
        if type(elem) is not RawDataElement or elem.value is None:
            converted = ds[tag]
            converted.value = self.clean_value(converted.value, vr)
            return
        key = b""
        if self._memo is not None and self._digest is not None:
            key = self._digest(b"%s %s\x00%s\x00%s" % (
                vr.encode(), (elem.VR or "").encode(), repr(ds._character_set).encode(),
                elem.value))
            found = self._memo.get(key, _MISS)
            if found is _UNCHANGED:
                return
            if found is not _MISS:
                ds._dict[tag] = DataElement(tag, vr, list(found) if isinstance(found, tuple)
                                            else found)
                return
        value = _value(ds, tag, elem)
        cleaned = self.clean_value(value, vr)
        changed = cleaned is not value and not (
            isinstance(cleaned, list) and isinstance(value, MultiValue | list)
            and cleaned == list(value))
        if changed:  # set decoded, in the VR the profile read it as
            ds._dict[tag] = DataElement(tag, vr, cleaned)
        if self._memo is not None and key:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            # several values are kept as a tuple: nobody can change them
            kept = tuple(cleaned) if isinstance(cleaned, list) else cleaned
            self._memo[key] = kept if changed else _UNCHANGED

    def clean_value(self, value: object, vr: str) -> object:
        """Clean an element value (a string or several) of VR ``vr``; the
        result fits the VR's maximum length. An AE title that had a hit
        becomes the dummy ``ANONYMIZED`` (brackets are not for AE titles)."""
        if isinstance(value, MultiValue | list | tuple):
            return [self.clean_value(v, vr) for v in value]
        if value is None:
            return value
        text = str(value)
        cleaned = self.clean(text)
        if cleaned == text:
            return value
        if vr == "AE":
            return "ANONYMIZED"
        limit = MAX_LENGTH.get(vr)
        if limit is not None and len(cleaned) > limit:
            cleaned = cleaned[:limit]
        return cleaned

