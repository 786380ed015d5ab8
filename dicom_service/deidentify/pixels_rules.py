"""Which pixels of an instance to clean: the ``%filter`` sections of a recipe,
compiled and evaluated against a dataset's header.

Two filter sections are understood (any other name is refused when the
profile loads, so a typo cannot silently switch cleaning off):

* ``%filter graylist`` (deid's name): a ``LABEL`` group whose criteria match
  blanks its ``coordinates``/``ctpcoordinates`` boxes, and everything
  outside its ``keepcoordinates`` boxes (``keepcoordinates from:
  SequenceOfUltrasoundRegions`` keeps only the ultrasound regions, as deid
  does). ``coordinates all`` blanks the whole frame.
* ``%filter ocr`` (ours): a group whose criteria match sends every frame
  through text detection (``pixels_ocr``). It has no coordinates.

Criteria (deid's language): tests ``contains`` / ``notcontains`` (regular
expressions, case-insensitive, searched in the value; a multi-valued element
as ``A\\B\\C``), ``equals`` / ``notequals`` (case-insensitive, whole value or
one of its values), ``missing`` / ``present`` / ``empty``. Within a line the
tests fold left to right with their ``+`` (and) / ``||`` (or); lines fold the
same way with the joiner that starts them, no joiner meaning *and*. (deid
itself ands all lines whatever their joiner; the written joiners are what
the rules' authors meant, e.g. deid's own "Burned In Annotation" rule.) A
group with no criteria always matches. Fields are top-level tags or
keywords (a repeating-group keyword such as OverlayDescription reads
its first group, 6000); group 0002 is read from the file meta.

Evaluation reads only the header, never pixel data, and runs before the
header rules change the dataset (they may blank SeriesDescription,
Manufacturer, ...). Nothing here logs or puts a value in a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicom_service.deidentify.recipe import (
    CoordinateSpec,
    FilterGroup,
    FilterTest,
    MaskField,
    Recipe,
    RecipeError,
    TagField,
)

if TYPE_CHECKING:  # pragma: no cover - types only
    from dicom_service.deidentify.cache import DeidCache

__all__ = ["Box", "CompiledGroup", "Decision", "PixelRules", "compile_pixel_rules"]

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in pixels, x1/y1 exclusive."""

GRAYLIST = "graylist"
OCR = "ocr"
_SECTIONS = (GRAYLIST, OCR)
_ULTRASOUND_REGIONS = "SequenceOfUltrasoundRegions"
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UI", "UR", "UT"})
_REGION_KEYS = ("RegionLocationMinX0", "RegionLocationMinY0",
                "RegionLocationMaxX1", "RegionLocationMaxY1")


@dataclass(frozen=True, eq=False)  # identity hash: equal tests are interned at compile
class _Test:
    joiner: str | None
    test: str
    tag: int
    value: str | None
    pattern: re.Pattern[str] | None


@dataclass
class _Memo:
    results: dict[_Test, bool] = field(default_factory=dict)
    texts: dict[int, tuple[bool, list[str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class CompiledGroup:
    """One ``LABEL`` group, ready to evaluate."""

    section: str
    label: str
    lines: tuple[tuple[str | None, tuple[_Test, ...]], ...]
    coordinates: tuple[CoordinateSpec, ...]

    def matches(self, ds: Dataset, memo: _Memo | None = None) -> bool:
        """Whether the criteria hold for ``ds``; ``memo`` caches values and
        test results across groups (most start with the same Modality test)."""
        memo = _Memo() if memo is None else memo
        result = True
        for i, (lead, tests) in enumerate(self.lines):
            if i and (result if lead == "or" else not result):
                continue  # decided whatever this line says
            result = _fold(ds, tests, memo)
        return result


@dataclass(frozen=True)
class Decision:
    """What :meth:`PixelRules.decide` found for one instance.

    Attributes:
        blank: (label, box) for every box to blank in every frame, in image
            coordinates (not yet clipped). ``None`` as the box means the whole frame.
        keep: (label, boxes): blank everything outside ``boxes`` (one entry
            per matching ``keepcoordinates`` group; an empty tuple of boxes
            blanks the whole frame).
        ocr: the label of the first matching ``ocr`` group, or ``None``.
    """

    blank: tuple[tuple[str, Box | None], ...] = ()
    keep: tuple[tuple[str, tuple[Box, ...]], ...] = ()
    ocr: str | None = None

    @property
    def needed(self) -> bool:
        return bool(self.blank or self.keep or self.ocr)


@dataclass(frozen=True)
class PixelRules:
    """The compiled ``%filter`` groups of a profile, in recipe order."""

    groups: tuple[CompiledGroup, ...] = ()
    # every tag some test reads, in order: what a decision depends on
    _tags: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tags = {t.tag for g in self.groups for _, tests in g.lines for t in tests}
        object.__setattr__(self, "_tags", tuple(sorted(tags)))

    def decide(self, ds: Dataset, cache: DeidCache | None = None) -> Decision:
        """Evaluate every group against the header of ``ds`` (top level and file meta).

        With ``cache``, the decision of an earlier instance whose tested
        values were the same is reused (found by a keyed digest of those
        values), unless it took boxes from the instance's own regions.

        Raises:
            Exception: what pydicom raises for an element it cannot decode
                (messages may quote values; report only the type).
        """
        memo = _Memo()
        key = b""
        if cache is not None:
            try:
                key = cache.digest(self._tested(ds, memo))
            except Exception:  # undecodable: evaluated as without a cache, which reports it
                memo = _Memo()
            found = cache.decision(key) if key else None
            if found is not None:
                return found
        decision, own_regions = self._evaluate(ds, memo)
        if key and not own_regions and cache is not None:
            cache.keep_decision(key, decision)
        return decision

    def _tested(self, ds: Dataset, memo: _Memo) -> tuple[object, ...]:
        """Every tested value of ``ds`` (kept in ``memo`` for the evaluation)."""
        texts = memo.texts
        for tag in self._tags:
            texts[tag] = _present_texts(ds, tag)
        return tuple((tag, present, tuple(values))
                     for tag, (present, values) in texts.items())

    def _evaluate(self, ds: Dataset, memo: _Memo) -> tuple[Decision, bool]:
        """The decision, and whether it took boxes from the instance's regions."""
        blank: list[tuple[str, Box | None]] = []
        keep: list[tuple[str, tuple[Box, ...]]] = []
        ocr: str | None = None
        own_regions = False
        for group in self.groups:
            if group.section == OCR and ocr is not None:
                continue
            if not group.matches(ds, memo):
                continue
            if group.section == OCR:
                ocr = group.label
                continue
            keeps: list[Box] = []
            has_keep = False
            for spec in group.coordinates:
                own_regions = own_regions or spec.source == _ULTRASOUND_REGIONS
                boxes = _boxes(ds, spec)
                if spec.keep:
                    has_keep = True
                    if boxes is not None:
                        keeps.extend(boxes)
                elif boxes is None:
                    blank.append((group.label, None))
                else:
                    blank.extend((group.label, b) for b in boxes)
            if has_keep:
                keep.append((group.label, tuple(keeps)))
        return Decision(tuple(blank), tuple(keep), ocr), own_regions


def _boxes(ds: Dataset, spec: CoordinateSpec) -> list[Box] | None:
    """The boxes of a coordinate line; ``None`` for the whole frame
    (``coordinates all``; ``keepcoordinates all`` keeps the whole frame)."""
    if spec.box is not None:
        return [spec.box]
    if spec.source == "all":
        return None
    if spec.source is None:  # pragma: no cover - the parser always sets one
        return []
    return _region_boxes(ds, spec.source)


def _region_boxes(ds: Dataset, keyword: str) -> list[Box]:
    """Boxes from a sequence of regions (PS3.3 C.8.5.5: RegionLocationMinX0 ..
    MaxY1, inclusive pixel coordinates). Items without all four are skipped."""
    if keyword not in ds:
        return []
    seq = ds[keyword].value
    items = seq if isinstance(seq, list | tuple) or hasattr(seq, "__iter__") else [seq]
    boxes: list[Box] = []
    for item in items:
        if not isinstance(item, Dataset):
            continue
        values = [item.get(k) for k in _REGION_KEYS]
        if any(v is None or v == "" for v in values):
            continue
        x0, y0, x1, y1 = (int(v) for v in values)
        if x1 >= x0 and y1 >= y0:
            boxes.append((x0, y0, x1 + 1, y1 + 1))
    return boxes


def _present_texts(ds: Dataset, tag: int) -> tuple[bool, list[str]]:
    """Whether ``tag`` is present (file meta for group 0002) and its value as
    strings. Text read from the network is not decoded to str: the raw bytes
    are searched as latin-1 (every recipe value is ASCII), which is much
    cheaper on the path every instance takes."""
    source: Dataset | None = ds
    if tag >> 16 == 0x0002:
        source = getattr(ds, "file_meta", None)
    if source is None:
        return False, []
    elem = source._dict.get(tag)  # type: ignore[call-overload]
    if elem is None:
        return False, []
    if type(elem) is RawDataElement and elem.value is not None:
        vr = elem.VR or _dictionary_vr(tag)
        if vr in _TEXT_VRS:
            text = elem.value.decode("latin-1")
            return True, _values(text.split("\\") if "\\" in text else text)
    if type(elem) is RawDataElement:  # decoded without converting it in the data set
        return True, _values(convert_raw_data_element(
            elem, encoding=source._character_set, ds=source).value)
    return True, _values(elem.value)


def _dictionary_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _values(value: object) -> list[str]:
    """The value as strings: each single value, then (multi-valued) all joined."""
    if value is None:
        return []
    if isinstance(value, MultiValue | list | tuple):
        parts = [str(v).strip(" \x00") for v in value]
        return [*parts, "\\".join(parts)]
    if isinstance(value, bytes):
        return [value.decode("latin-1").strip(" \x00")]
    return [str(value).strip(" \x00")]


def _run(ds: Dataset, t: _Test, memo: _Memo) -> bool:
    known = memo.texts.get(t.tag)
    if known is None:
        known = memo.texts[t.tag] = _present_texts(ds, t.tag)
    present, texts = known
    if t.test == "missing":
        return not present
    if t.test == "present":
        return present
    if t.test == "empty":
        return present and not any(texts)
    if t.test in ("contains", "notcontains"):
        pattern = t.pattern
        found = pattern is not None and any(pattern.search(s) for s in texts)
        return found if t.test == "contains" else not found
    wanted = (t.value or "").strip().lower()
    equal = any(s.lower() == wanted for s in texts)
    return equal if t.test == "equals" else not equal


def _fold(ds: Dataset, tests: tuple[_Test, ...], memo: _Memo) -> bool:
    """Left to right: ``a + b || c`` is ``(a and b) or c``."""
    result = False
    for i, t in enumerate(tests):
        if i and (result if t.joiner == "or" else not result):
            continue  # decided whatever this test says
        value = memo.results.get(t)
        if value is None:
            value = memo.results[t] = _run(ds, t, memo)
        result = value
    return result


def _compile_test(recipe: Recipe, group: FilterGroup, t: FilterTest) -> _Test:
    if isinstance(t.field, MaskField):  # a repeating group: its first, 60xx -> 6000
        tag = t.field.value
    elif isinstance(t.field, TagField):
        tag = t.field.tag
    else:
        raise RecipeError(recipe.source, group.line,
                          f"filter {group.name!r}: a test needs a tag or keyword, "
                          f"not {t.field.text!r}")
    pattern = None
    if t.test in ("contains", "notcontains"):
        pattern = re.compile((t.value or "").strip(), re.IGNORECASE)
    return _Test(t.joiner, t.test, tag, t.value, pattern)


def _intern(test: _Test, seen: dict[tuple[object, ...], _Test]) -> _Test:
    key = (test.joiner, test.test, test.tag, test.value)
    return seen.setdefault(key, test)


def compile_pixel_rules(recipes: list[Recipe] | tuple[Recipe, ...]) -> PixelRules:
    """Compile the ``%filter`` sections of ``recipes`` (in order).

    Raises:
        RecipeError: a section other than ``graylist``/``ocr``; a graylist
            group without coordinates; an ocr group with coordinates; a test
            on something other than a tag or keyword; ``from:`` a field other
            than ``SequenceOfUltrasoundRegions``.
    """
    groups: list[CompiledGroup] = []
    seen: dict[tuple[object, ...], _Test] = {}
    for recipe in recipes:
        for section, items in recipe.filters.items():
            if section not in _SECTIONS:
                line = items[0].line if items else 0
                raise RecipeError(
                    recipe.source, line,
                    f"%filter {section!r} is not used for pixel cleaning "
                    f"(known: {', '.join(_SECTIONS)})",
                )
            for group in items:
                if section == GRAYLIST and not group.coordinates:
                    raise RecipeError(recipe.source, group.line,
                                      f"filter {group.name!r}: a graylist group needs coordinates")
                if section == OCR and group.coordinates:
                    raise RecipeError(recipe.source, group.line,
                                      f"filter {group.name!r}: an ocr group takes no coordinates")
                for spec in group.coordinates:
                    if spec.source not in (None, "all", _ULTRASOUND_REGIONS):
                        raise RecipeError(
                            recipe.source, spec.line,
                            f"coordinates from:{spec.source} is not supported "
                            f"(only from:{_ULTRASOUND_REGIONS})",
                        )
                lines = tuple(
                    (lead, tuple(_intern(_compile_test(recipe, group, t), seen) for t in tests))
                    for lead, tests in group.criteria
                )
                groups.append(CompiledGroup(section, group.name, lines, group.coordinates))
    return PixelRules(tuple(groups))
