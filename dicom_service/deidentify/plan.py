"""Compile parsed recipes into a plan: one operation per (tag, VR), looked up
in a dictionary while the engine walks a dataset.

Which rule applies to an element (documented in ``deid_profiles/README.md``):

1. Recipes are layered: a profile's base recipe first, then each option
   recipe. The last layer that has any rule matching the element decides.
2. Within a layer the most specific field wins: a tag or keyword, then a
   private tag named by its creator, then a repeating-group keyword, then an
   expander (``ALL``, ``contains:``, ``select:VR:UI``, ...).
3. Among rules of equal specificity, deid's precedence decides: KEEP > ADD >
   REPLACE > JITTER > REMOVE > BLANK; then the earlier line. Two tag/keyword
   rules for the same tag in one recipe are refused.
4. Private elements (odd groups) are removed before any of this unless a
   rule names them by tag or by creator (profile parameter ``remove_private``,
   default on, as deid's ``remove_private=True``).
5. No rule: the element is kept (PS3.15 Annex E lists only what it changes);
   a kept sequence is walked and its items are de-identified with the same plan.

Values are checked against the data dictionary when the recipe is loaded
(a literal must be valid for the tag's VR; a function must suit the VR). Where
an expander matches an element whose VR the action cannot produce (a literal
for a sequence, a date shift for a code string), the element is removed: the
safe reading, never a pass-through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum

from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR
from pydicom.valuerep import validate_value

from dicom_service.deidentify.dummies import DUMMIES, ITEM_DUMMY_VRS
from dicom_service.deidentify.functions import FUNCTIONS, Func
from dicom_service.deidentify.recipe import (
    Action,
    DaysValue,
    ElementKey,
    FuncValue,
    HeaderRule,
    LiteralValue,
    MaskField,
    PrivateField,
    Recipe,
    RecipeError,
    TagField,
    element_key,
)

__all__ = ["Kind", "Op", "Plan", "compile_plan", "effective_vr"]


class Kind(IntEnum):
    KEEP = 0
    REMOVE = 1
    BLANK = 2
    LITERAL = 3
    UID = 4
    PSEUDONYM = 5
    DUMMY_CODE = 6
    JITTER = 7
    DATE_SHIFT = 8
    DUMMY_ITEMS = 9
    LOCAL_MEANING = 10
    CLEAN_TEXT = 11
    CLEAN_ITEMS = 12


_PRECEDENCE = {
    Action.KEEP: 0,
    Action.ADD: 1,
    Action.REPLACE: 2,
    Action.JITTER: 3,
    Action.REMOVE: 4,
    Action.BLANK: 5,
}

BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
NUMERIC_VRS = frozenset({"AT", "FD", "FL", "SL", "SS", "SV", "UL", "US", "UV"})
# Padding to even length, PS3.5 Section 6.2: UI with NUL, binary with 0x00,
# text with a space.
_PAD_NUL = frozenset({"UI"}) | BINARY_VRS
CLEANABLE_VRS = frozenset({"AE", "LO", "LT", "SH", "ST", "UC", "UT"})
"""Text VRs that ``func:clean_text`` cleans (and, inside ``func:clean_items``,
the VRs of elements no rule names that are cleaned instead of dummied)."""


def _walkable(op: Op, tag: int) -> Op:
    """``op``, unless it keeps a sequence that did not arrive as one (a
    dictionary SQ sent as OB, LO, ...): its items cannot be walked, so the
    rules could not reach what they hold; it is removed instead. (Sent as UN,
    it is read as the sequence it is: PS3.5 Section 6.2.2.)"""
    if op.kind == Kind.KEEP and op.vr != "SQ" and _dictionary_vr(tag) == "SQ":
        return Op(Kind.REMOVE, op.raw_vr, op.vr, rule="unwalkable_sequence")
    return op


def effective_vr(tag: int, vr: str | None) -> str:
    """The VR the plan resolves against: the element's own VR, or the data
    dictionary's when the element was read as implicit VR (``None``) or as UN
    (PS3.5 Section 6.2.2). Private and unknown tags without a VR are UN."""
    if vr is not None and vr != "UN":
        return vr
    if (tag >> 16) & 1:
        return "UN"
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def encode_literal(text: str, vr: str) -> bytes:
    """Encode a literal as the raw bytes of an element of VR ``vr``."""
    data = text.encode("ascii")
    if len(data) % 2:
        data += b"\x00" if vr in _PAD_NUL or vr.startswith("O") else b" "
    return data


@dataclass(frozen=True, slots=True)
class Op:
    """What to do with one element, resolved for one (tag, VR).

    ``raw_vr`` is the VR as read (``None`` for implicit VR), the cache key's
    second half; ``vr`` the effective VR. ``literal``/``literal_bytes`` carry a
    REPLACE value (no bytes for binary numbers: those go through pydicom);
    ``days`` a JITTER offset; ``recurse`` marks a sequence to walk; ``add``
    marks a top-level ADD; ``rule`` is ``"file:line"``; ``default`` says no
    rule matched (kept by default).
    """

    kind: Kind
    raw_vr: str | None
    vr: str
    literal: str | None = None
    literal_bytes: bytes | None = None
    days: int = 0
    recurse: bool = False
    add: bool = False
    rule: str = ""
    default: bool = False  # no rule matched


def _check_literal(vr: str, text: str) -> str | None:
    """Return why ``text`` is not valid for ``vr``, or None."""
    if vr == "SQ":
        return "a sequence cannot take a literal value"
    if vr in BINARY_VRS:
        return None
    if vr in NUMERIC_VRS:
        try:
            float(text) if vr in ("FD", "FL") else int(text)
        except ValueError:
            return f"{text!r} is not a number"
        return None
    if " or " in vr:
        return None
    try:
        validate_value(vr, text, pydicom_config.RAISE)
    except (ValueError, KeyError) as exc:
        return f"{text!r} is not a valid {vr} value ({exc})"
    return None


def _op_for(rule: HeaderRule, source: str, raw_vr: str | None, vr: str) -> Op:
    """The operation ``rule`` performs on an element of effective VR ``vr``;
    REMOVE when the action cannot produce a valid value for that VR."""
    where = f"{source}:{rule.line}"
    action, value = rule.action, rule.value
    recurse = vr == "SQ"
    if action is Action.KEEP:
        return Op(Kind.KEEP, raw_vr, vr, recurse=recurse, rule=where)
    if action is Action.REMOVE:
        return Op(Kind.REMOVE, raw_vr, vr, rule=where)
    if action is Action.BLANK:
        return Op(Kind.BLANK, raw_vr, vr, rule=where)
    removed = Op(Kind.REMOVE, raw_vr, vr, rule=where)
    add = action is Action.ADD
    if action is Action.JITTER:
        if vr not in ("DA", "DT"):
            return removed
        if isinstance(value, DaysValue):
            return Op(Kind.JITTER, raw_vr, vr, days=value.days, rule=where)
        return Op(Kind.DATE_SHIFT, raw_vr, vr, rule=where)
    if isinstance(value, LiteralValue):
        if _check_literal(vr, value.text) is not None:
            return removed
        # binary numbers depend on the byte order: set through pydicom instead
        text_like = vr not in NUMERIC_VRS and " or " not in vr
        return Op(
            Kind.LITERAL, raw_vr, vr, literal=value.text,
            literal_bytes=encode_literal(value.text, vr) if text_like else None,
            add=add, rule=where,
        )
    if isinstance(value, FuncValue):
        func = value.func
        if func is Func.KEYED_UID:
            if vr == "SQ" or vr in BINARY_VRS or vr in NUMERIC_VRS:
                return removed
            return Op(Kind.UID, raw_vr, vr, add=add, rule=where)
        if func is Func.PSEUDONYM:
            if vr not in FUNCTIONS[Func.PSEUDONYM].vrs:
                return removed
            return Op(Kind.PSEUDONYM, raw_vr, vr, add=add, rule=where)
        if func is Func.DUMMY_CODE:
            return Op(Kind.DUMMY_CODE, raw_vr, vr, rule=where) if vr == "SQ" else removed
        if func is Func.DUMMY_ITEMS:
            return Op(Kind.DUMMY_ITEMS, raw_vr, vr, rule=where) if vr == "SQ" else removed
        if func is Func.CLEAN_TEXT:
            if vr not in CLEANABLE_VRS:
                return removed
            return Op(Kind.CLEAN_TEXT, raw_vr, vr, rule=where)
        if func is Func.CLEAN_ITEMS:
            return Op(Kind.CLEAN_ITEMS, raw_vr, vr, rule=where) if vr == "SQ" else removed
        if func is Func.LOCAL_CODE_MEANING:
            if vr not in FUNCTIONS[Func.LOCAL_CODE_MEANING].vrs:
                return removed
            text = DUMMIES[vr] if vr in DUMMIES else DUMMIES["LO"]
            return Op(
                Kind.LOCAL_MEANING, raw_vr, vr, literal=text,
                literal_bytes=encode_literal(text, vr), rule=where,
            )
    return removed  # pragma: no cover - the parser admits nothing else


def _specificity(rule: HeaderRule) -> int:
    field = rule.field
    if isinstance(field, TagField):
        return 0
    if isinstance(field, PrivateField):
        return 1
    if isinstance(field, MaskField):
        return 2
    return 3


@dataclass(frozen=True)
class _Layer:
    source: str
    exact: dict[int, HeaderRule]
    others: tuple[HeaderRule, ...]  # sorted by (specificity, precedence, line)


def _compile_layer(recipe: Recipe, dictionary_vrs: dict[int, str]) -> _Layer:
    exact: dict[int, HeaderRule] = {}
    others: list[HeaderRule] = []
    for rule in recipe.header:
        field = rule.field
        if isinstance(field, TagField):
            previous = exact.get(field.tag)
            if previous is not None:
                raise RecipeError(
                    recipe.source, rule.line,
                    f"{field.text} already has a rule at line {previous.line}",
                )
            _check_exact(recipe.source, rule, field, dictionary_vrs)
            exact[field.tag] = rule
        else:
            others.append(rule)
    others.sort(key=lambda r: (_specificity(r), _PRECEDENCE[r.action], r.line))
    return _Layer(recipe.source, exact, tuple(others))


def _dictionary_vr(tag: int, extra: Mapping[int, str] | None = None) -> str | None:
    """The data dictionary's VR of a standard tag, or of one ``extra`` names
    (``None`` for private and unknown tags)."""
    if extra is not None and tag in extra:
        return extra[tag]
    if (tag >> 16) & 1:
        return None
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def _check_exact(source: str, rule: HeaderRule, field: TagField, extra: dict[int, str]) -> None:
    """Load-time checks of a tag/keyword rule against the data dictionary."""
    action, value = rule.action, rule.value
    if action in (Action.KEEP, Action.REMOVE, Action.BLANK):
        return
    vr = _dictionary_vr(field.tag, extra)
    if vr is None:
        raise RecipeError(
            source, rule.line,
            f"{action.value} {field.text}: the tag is not in the data dictionary, "
            "so its value cannot be checked",
        )
    if action is Action.JITTER:
        if vr not in ("DA", "DT"):
            raise RecipeError(
                source, rule.line, f"JITTER needs a DA or DT element, {field.text} is {vr}"
            )
        return
    if isinstance(value, LiteralValue):
        problem = _check_literal(vr, value.text)
        if problem is not None:
            raise RecipeError(source, rule.line, f"{action.value} {field.text}: {problem}")
        if action is Action.ADD and " or " in vr:
            raise RecipeError(source, rule.line, f"ADD {field.text}: the VR is ambiguous ({vr})")
    elif isinstance(value, FuncValue):
        if vr not in FUNCTIONS[value.func].vrs:
            raise RecipeError(
                source, rule.line,
                f"func:{value.func.value} cannot produce a {vr} value for {field.text}",
            )


_CACHE_LIMIT = 100_000


class Plan:
    """The compiled, layered rules of a profile, with a per-tag cache.

    :meth:`op` is the engine's only entry point. The cache is filled on first
    sight of a (tag, VR) and is safe to share between threads (single dict
    operations under the GIL; a lost update only costs a recomputation).
    """

    def __init__(self, layers: Sequence[_Layer], remove_private: bool = True) -> None:
        self._layers = tuple(layers)
        self.remove_private = remove_private
        self.has_private_rules = any(
            isinstance(r.field, PrivateField) for layer in self._layers for r in layer.others
        ) or any((tag >> 16) & 1 for layer in self._layers for tag in layer.exact)
        self.cleans = any(
            isinstance(r.value, FuncValue) and r.value.func in (Func.CLEAN_TEXT, Func.CLEAN_ITEMS)
            for layer in self._layers
            for r in (*layer.exact.values(), *layer.others)
        )
        """Whether any rule cleans text: the engine then collects the
        original's identifiers before the walk (``clean_text.TextCleaner``)."""
        self._cache: dict[int, Op] = {}
        self._dummy_cache: dict[int, Op] = {}
        self._private_cache: dict[tuple[int, str | None, str | None], Op] = {}
        adds: list[tuple[int, Op]] = []
        seen: set[int] = set()
        for layer in self._layers:
            for tag, rule in layer.exact.items():
                if rule.action is Action.ADD and tag not in seen:
                    seen.add(tag)
                    op = self.resolve(tag, None)
                    if op.add:
                        adds.append((tag, op))
        self.adds: tuple[tuple[int, Op], ...] = tuple(sorted(adds, key=lambda a: a[0]))

    def resolve(self, tag: int, raw_vr: str | None, creator: str | None = None) -> Op:
        """Resolve the operation for an element (uncached)."""
        vr = effective_vr(tag, raw_vr)
        if self.remove_private and (tag >> 16) & 1:
            return self._resolve_private(tag, raw_vr, vr, creator)
        key: ElementKey | None = None
        for layer in reversed(self._layers):
            rule = layer.exact.get(tag)
            if rule is None and layer.others:
                if key is None:
                    key = element_key(tag, vr, creator)
                for candidate in layer.others:
                    if candidate.field.matches(key):
                        rule = candidate
                        break
            if rule is not None:
                return _walkable(_op_for(rule, layer.source, raw_vr, vr), tag)
        if not (tag >> 16) & 1 and _dictionary_vr(tag) is None:
            # a standard tag this engine does not know (a newer edition's, or
            # invented): nothing says what it holds, so it cannot be assessed
            return Op(Kind.REMOVE, raw_vr, vr, rule="unknown_element")
        return _walkable(Op(Kind.KEEP, raw_vr, vr, recurse=vr == "SQ", default=True), tag)

    def _resolve_private(self, tag: int, raw_vr: str | None, vr: str, creator: str | None) -> Op:
        """With ``remove_private``: only rules naming private elements explicitly
        (a tag, or ``(gggg,"CREATOR",ee)``) keep them; field expanders do not."""
        key = element_key(tag, vr, creator)
        for layer in reversed(self._layers):
            rule = layer.exact.get(tag)
            if rule is None:
                for candidate in layer.others:
                    if isinstance(candidate.field, PrivateField) and candidate.field.matches(key):
                        rule = candidate
                        break
            if rule is not None:
                return _op_for(rule, layer.source, raw_vr, vr)
        return Op(Kind.REMOVE, raw_vr, vr, rule="remove_private")

    def op(self, tag: int, raw_vr: str | None) -> Op:
        """The cached operation for ``tag`` read with VR ``raw_vr``."""
        op = self._cache.get(tag)
        if op is not None and op.raw_vr == raw_vr:
            return op
        op = self.resolve(tag, raw_vr)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[tag] = op
        return op

    def dummy_op(self, tag: int, raw_vr: str | None) -> Op:
        """:meth:`op` inside the items of a sequence under ``func:dummy_items``:
        an element no rule names gets the dummy for its VR if that VR is in
        ``ITEM_DUMMY_VRS``, and so does every code meaning (the designator
        beside it may have been dummied already); everything else as :meth:`op`."""
        op = self.op(tag, raw_vr)
        if op.kind == Kind.LOCAL_MEANING:
            return replace(op, kind=Kind.LITERAL)
        if op.kind != Kind.KEEP or not op.default or op.vr not in ITEM_DUMMY_VRS:
            return op
        dummy = self._dummy_cache.get(tag)
        if dummy is not None and dummy.raw_vr == raw_vr:
            return dummy
        text = DUMMIES[op.vr]
        dummy = Op(
            Kind.LITERAL, raw_vr, op.vr, literal=text,
            literal_bytes=encode_literal(text, op.vr), rule="dummy_items", default=True,
        )
        if len(self._dummy_cache) >= _CACHE_LIMIT:
            self._dummy_cache.clear()
        self._dummy_cache[tag] = dummy
        return dummy

    def clean_op(self, tag: int, raw_vr: str | None) -> Op:
        """:meth:`op` inside the items of a sequence under ``func:clean_items``:
        as :meth:`dummy_op`, except that text no rule names (VRs in
        ``CLEANABLE_VRS``) and local code meanings are cleaned, not dummied."""
        op = self.op(tag, raw_vr)
        if op.kind == Kind.LOCAL_MEANING or (
            op.kind == Kind.KEEP and op.default and op.vr in CLEANABLE_VRS
        ):
            return Op(Kind.CLEAN_TEXT, raw_vr, op.vr, rule="clean_items", default=True)
        return self.dummy_op(tag, raw_vr)

    def private_op(self, tag: int, raw_vr: str | None, creator: str | None) -> Op:
        """The cached operation for a private data element of ``creator``."""
        k = (tag, raw_vr, creator)
        op = self._private_cache.get(k)
        if op is None:
            op = self.resolve(tag, raw_vr, creator)
            if len(self._private_cache) >= _CACHE_LIMIT:
                self._private_cache.clear()
            self._private_cache[k] = op
        return op


def compile_plan(
    recipes: Sequence[Recipe],
    *,
    remove_private: bool = True,
    dictionary_vrs: dict[int, str] | None = None,
) -> Plan:
    """Compile ``recipes`` (base first, then options) into a :class:`Plan`.

    ``remove_private``: remove every private element (odd group, PS3.5
    Section 7.8) except those a rule names explicitly, before any field
    expander is considered (as deid's ``remove_private=True``; without it a
    ``REPLACE select:VR:UI`` would outrank a ``REMOVE`` pattern for private
    UIDs). ``dictionary_vrs`` adds VRs for tags newer than pydicom's dictionary.

    Raises:
        RecipeError: on a duplicate tag rule or a value invalid for its VR.
    """
    extra = dictionary_vrs or {}
    return Plan([_compile_layer(r, extra) for r in recipes], remove_private=remove_private)

