"""A strict parser for deid's recipe language (``FORMAT dicom``).

The language is the one of the ``deid`` library (pydicom/deid,
``deid/config/utils.py``, ``deid/dicom/fields.py``); this parser reads the same
files but fails loudly where deid is lenient: deid calls ``sys.exit`` on some
bad lines, skips unknown lines with a warning and turns an unknown action into
BLANK. Here every problem raises :class:`RecipeError` naming the file and line,
when the recipe is loaded, before any instance is touched.

Supported (as deid defines them):

* ``FORMAT dicom``; comments from ``#`` to the end of the line.
* ``%header`` with the actions ``ADD``, ``BLANK``, ``JITTER``, ``KEEP``,
  ``REPLACE`` and ``REMOVE``. Fields are tags ``(0010,0010)`` or ``00100010``,
  pydicom keywords (case-insensitive, as in deid), private tags with their
  creator ``(0033,"CREATOR",1E)``, and the expanders ``ALL``,
  ``startswith:RE``, ``endswith:RE``, ``contains:RE``, ``except:RE``,
  ``select:VR:XX`` and ``select:group:GGGG``. Values are literals,
  ``func:NAME`` (see ``functions.py``) or, for JITTER, a whole number of days.
* ``%filter NAME`` sections of ``LABEL`` groups (criteria with ``+``/``||``,
  ``contains``, ``notcontains``, ``equals``, ``notequals``, ``missing``,
  ``present``, ``empty``; ``coordinates``, ``keepcoordinates``,
  ``ctpcoordinates``, ``ctpkeepcoordinates``). They are kept as data for the
  pixel-cleaning step.

Refused: ``%values``/``%fields`` sections and ``values:``/``fields:`` field
lists (they select fields by the data's own values), ``var:`` and
``deid_func:`` values, nested ``__`` field paths, and ``LABEL`` outside
``%filter``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from pydicom._dicom_dict import RepeatersDictionary
from pydicom.datadict import (
    dictionary_description,
    dictionary_keyword,
    keyword_dict,
)

from dicom_service.deidentify.functions import FUNCTIONS, Func

__all__ = [
    "Action",
    "CoordinateSpec",
    "DaysValue",
    "ElementKey",
    "ExpanderField",
    "FieldSpec",
    "FilterGroup",
    "FilterTest",
    "FuncValue",
    "HeaderRule",
    "LiteralValue",
    "MaskField",
    "PrivateField",
    "Recipe",
    "RecipeError",
    "TagField",
    "ValueSpec",
    "load_recipe",
    "parse_recipe",
]


class RecipeError(Exception):
    """A recipe is invalid. The message is ``"<file>:<line>: <what is wrong>"``.

    Attributes:
        source: the recipe's file name (or label) as given to the parser.
        line: 1-based line number (0 when the problem is the whole file).
        reason: the message without the location.
    """

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{source}:{line}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


class Action(Enum):
    """Header actions of the deid language."""

    ADD = "ADD"
    BLANK = "BLANK"
    JITTER = "JITTER"
    KEEP = "KEEP"
    REPLACE = "REPLACE"
    REMOVE = "REMOVE"


_ACTIONS = {a.value: a for a in Action}


# ---------------------------------------------------------------------------
# Fields


@dataclass(frozen=True, slots=True)
class ElementKey:
    """What field expressions are matched against, for one element.

    ``vr`` is the effective VR (the data dictionary's for a known tag read as
    implicit VR or UN); ``keyword``/``name`` come from pydicom's public
    dictionary (``""``/``"Private tag data"``/``"Private Creator"`` for
    private elements); ``creator`` is the private creator of a private data
    element, when known.
    """

    tag: int
    vr: str
    keyword: str
    name: str
    creator: str | None = None

    @property
    def is_private(self) -> bool:
        return bool((self.tag >> 16) & 1)


@dataclass(frozen=True)
class TagField:
    """One tag, written as a tag or a keyword."""

    tag: int
    text: str

    def matches(self, key: ElementKey) -> bool:
        return key.tag == self.tag


@dataclass(frozen=True)
class MaskField:
    """A repeating-group keyword such as ``OverlayData`` (60xx,3000)."""

    mask: int
    value: int
    text: str

    def matches(self, key: ElementKey) -> bool:
        return key.tag & self.mask == self.value


@dataclass(frozen=True)
class PrivateField:
    """A private data element named by its creator: ``(GGGG,"CREATOR",EE)``."""

    group: int
    creator: str
    offset: int
    text: str

    def matches(self, key: ElementKey) -> bool:
        return (
            key.tag >> 16 == self.group
            and key.tag & 0xFF == self.offset
            and (key.tag & 0xFFFF) >= 0x1000
            and key.creator is not None
            and key.creator.strip() == self.creator
        )


@dataclass(frozen=True)
class ExpanderField:
    """A deid field expander: ``ALL``, ``startswith:``, ``endswith:``,
    ``contains:``, ``except:`` (regular expressions, case-insensitive, searched
    in the keyword, the dictionary name, ``(gggg,eeee)`` and ``GGGGEEEE``, and
    for private elements ``GGGG,"CREATOR",EE``), or ``select:VR:XX`` /
    ``select:group:GGGG``."""

    expander: str
    expression: str
    text: str
    pattern: re.Pattern[str] | None = None

    def matches(self, key: ElementKey) -> bool:
        if self.expander == "all":
            return True
        if self.expander == "select":
            attribute, _, value = self.expression.partition(":")
            if attribute == "vr":
                return key.vr == value.upper()
            return key.tag >> 16 == int(value, 16)
        pattern = self.pattern
        if pattern is None:  # pragma: no cover - the parser always compiles one
            return False
        tag = key.tag
        found = (
            pattern.search(key.keyword.lower()) is not None
            or pattern.search(f"({tag >> 16:04x},{tag & 0xFFFF:04x})") is not None
            or pattern.search(f"{tag >> 16:04X}{tag & 0xFFFF:04X}") is not None
            or pattern.search(key.name) is not None
            or pattern.search(key.keyword) is not None
        )
        if not found and key.creator is not None:
            short = f'{tag >> 16:04X},"{key.creator}",{tag & 0xFF:02X}'
            found = pattern.search(short) is not None or pattern.search(f"({short})") is not None
        return not found if self.expander == "except" else found


FieldSpec = TagField | MaskField | PrivateField | ExpanderField


# ---------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class LiteralValue:
    text: str


@dataclass(frozen=True)
class FuncValue:
    func: Func


@dataclass(frozen=True)
class DaysValue:
    days: int


ValueSpec = LiteralValue | FuncValue | DaysValue


@dataclass(frozen=True)
class HeaderRule:
    """One ``%header`` line."""

    action: Action
    field: FieldSpec
    value: ValueSpec | None
    line: int


# ---------------------------------------------------------------------------
# Filters (kept as data)


@dataclass(frozen=True)
class FilterTest:
    """``contains|notcontains|equals|notequals FIELD VALUE`` or
    ``missing|present|empty FIELD``; ``joiner`` is how it attaches to the
    previous test (``None`` for the first test of a line)."""

    joiner: str | None
    test: str
    field: FieldSpec
    value: str | None


@dataclass(frozen=True)
class CoordinateSpec:
    """A region to clean (``keep=False``) or keep (``keep=True``).

    ``box`` is (xmin, ymin, xmax, ymax) (CTP's x, y, width, height already
    converted, as deid does), or ``None`` with ``source`` ``"all"`` or the
    keyword after ``from:``.
    """

    keep: bool
    box: tuple[int, int, int, int] | None
    source: str | None
    line: int


@dataclass(frozen=True)
class FilterGroup:
    """A ``LABEL`` and its criteria: lines of tests (OR/AND as written)."""

    name: str
    criteria: tuple[tuple[str | None, tuple[FilterTest, ...]], ...]
    coordinates: tuple[CoordinateSpec, ...]
    line: int


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe. ``text`` is kept for hashing."""

    source: str
    text: str
    header: tuple[HeaderRule, ...]
    filters: dict[str, tuple[FilterGroup, ...]]


# ---------------------------------------------------------------------------
# Parsing

_SPLIT_RE = re.compile(r"""(?:[^\s"']+|"(?:\\.|[^"])*"|'(?:\\.|[^'])*')+""")
_PAREN_TAG_RE = re.compile(r"^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$")
_BARE_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")
_PRIVATE_RE = re.compile(r'^\(?([0-9A-Fa-f]{4}),"([^"\\]{1,64})",([0-9A-Fa-f]{2})\)?$')
_KEYWORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_VRS = frozenset(
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    "UN UR US UT UV".split()
)
_EXPANDERS = ("startswith", "endswith", "contains", "except", "select")
_FILTER_TESTS = ("contains", "notcontains", "equals", "notequals", "missing", "present", "empty")
_COORDINATES = ("coordinates", "keepcoordinates", "ctpcoordinates", "ctpkeepcoordinates")
_KEYWORDS_LOWER = {k.lower(): v for k, v in keyword_dict.items()}
_REPEATER_KEYWORDS_LOWER = {v[4].lower(): k for k, v in RepeatersDictionary.items() if v[4]}


def _strip_comment(line: str) -> str:
    """Cut at the first ``#`` outside double quotes."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return line[:i].rstrip()
    return line.rstrip()


def element_key(tag: int, vr: str, creator: str | None = None) -> ElementKey:
    """Build the :class:`ElementKey` of ``tag`` with effective VR ``vr``."""
    if (tag >> 16) & 1:
        element = tag & 0xFFFF
        name = "Private Creator" if 0x0010 <= element <= 0x00FF else "Private tag data"
        return ElementKey(tag, vr, "", name, creator)
    try:  # also repeating groups (curves, overlays), which pydicom finds by mask
        return ElementKey(tag, vr, dictionary_keyword(tag), dictionary_description(tag))
    except KeyError:
        return ElementKey(tag, vr, "", "Unknown")


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.header: list[HeaderRule] = []
        self.filters: dict[str, list[FilterGroup]] = {}
        self.format_seen = False
        self.section: str | None = None
        self.filter_name: str | None = None
        # open LABEL group
        self.label: tuple[str, int] | None = None
        self.criteria: list[tuple[str | None, tuple[FilterTest, ...]]] = []
        self.coordinates: list[CoordinateSpec] = []

    def error(self, line: int, reason: str) -> RecipeError:
        return RecipeError(self.source, line, reason)

    # -- fields ------------------------------------------------------------

    def parse_field(self, token: str, n: int) -> FieldSpec:
        if token.lower() == "all":
            return ExpanderField("all", "", token)
        if "__" in token:
            raise self.error(n, f"nested field path {token!r} is not supported")
        if token.lower().startswith(("values:", "fields:")):
            raise self.error(n, f"field list {token!r} is not supported (no %values/%fields)")
        m = _PRIVATE_RE.match(token)
        if m is not None:
            group = int(m.group(1), 16)
            if not group & 1:
                raise self.error(n, f"private tag {token!r} must have an odd group")
            return PrivateField(group, m.group(2).strip(), int(m.group(3), 16), token)
        if token.startswith("("):
            m = _PAREN_TAG_RE.match(token)
            if m is None:
                raise self.error(n, f"malformed tag {token!r} (expected '(gggg,eeee)')")
            return TagField(int(m.group(1) + m.group(2), 16), token)
        if _BARE_TAG_RE.match(token):
            return TagField(int(token, 16), token)
        if ":" in token:
            return self.parse_expander(token, n)
        if not _KEYWORD_RE.match(token):
            raise self.error(n, f"malformed field {token!r}")
        tag = keyword_dict.get(token)
        if tag is None:
            tag = _KEYWORDS_LOWER.get(token.lower())
        if tag is not None:
            return TagField(tag, token)
        repeater = _REPEATER_KEYWORDS_LOWER.get(token.lower())
        if repeater is not None:
            mask = int("".join("0" if c == "x" else "F" for c in repeater), 16)
            value = int(repeater.replace("x", "0"), 16)
            return MaskField(mask, value, token)
        raise self.error(n, f"unknown keyword {token!r} (not in the DICOM data dictionary)")

    def parse_expander(self, token: str, n: int) -> ExpanderField:
        expander, _, expression = token.partition(":")
        expander = expander.lower()
        if expander not in _EXPANDERS:
            raise self.error(n, f"unknown field expander {expander!r}")
        if not expression:
            raise self.error(n, f"field expander {expander!r} needs an expression")
        if expander == "select":
            attribute, _, value = expression.partition(":")
            attribute = attribute.lower()
            if attribute == "vr":
                if value.upper() not in _VRS:
                    raise self.error(n, f"select:VR needs a VR, got {value!r}")
                return ExpanderField("select", f"vr:{value.upper()}", token)
            if attribute == "group":
                if not re.fullmatch(r"[0-9A-Fa-f]{4}", value):
                    raise self.error(n, f"select:group needs 4 hex digits, got {value!r}")
                return ExpanderField("select", f"group:{value.upper()}", token)
            raise self.error(n, f"select:{attribute} is not supported (VR or group)")
        expression = expression.lower()  # as deid does
        if expander == "startswith":
            regex = f"^({expression})"
        elif expander == "endswith":
            regex = f"({expression})$"
        else:
            regex = expression
        try:
            pattern = re.compile(regex, re.IGNORECASE)
        except re.error as exc:
            raise self.error(n, f"invalid regular expression in {token!r}: {exc}") from None
        return ExpanderField(expander, expression, token, pattern)

    # -- values ------------------------------------------------------------

    def parse_value(self, action: Action, parts: list[str], n: int) -> ValueSpec | None:
        text = " ".join(parts)
        if action in (Action.BLANK, Action.KEEP):
            if text:
                raise self.error(n, f"{action.value} takes no value")
            return None
        if not text:
            if action is Action.REMOVE:
                return None
            raise self.error(n, f"{action.value} needs a value")
        kind, sep, rest = text.partition(":")
        kind = kind.lower()
        if sep and kind in ("var", "deid_func"):
            raise self.error(n, f"'{kind}:' values are not supported; use func:")
        if sep and kind == "func":
            try:
                func = Func(rest.strip())
            except ValueError:
                known = ", ".join(f.value for f in Func)
                raise self.error(n, f"unknown function {rest.strip()!r} (known: {known})") from None
            if action.value not in FUNCTIONS[func].actions:
                raise self.error(n, f"func:{func.value} cannot be used with {action.value}")
            return FuncValue(func)
        if action is Action.REMOVE:
            raise self.error(n, "REMOVE takes no value (conditional removal is not supported)")
        if action is Action.JITTER:
            if not re.fullmatch(r"[+-]?\d{1,5}", text):
                raise self.error(n, f"JITTER needs a whole number of days or func:, got {text!r}")
            return DaysValue(int(text))
        if not text.isascii() or not text.isprintable():
            raise self.error(n, "literal values must be printable ASCII")
        return LiteralValue(text)

    # -- lines -------------------------------------------------------------

    def header_line(self, line: str, n: int) -> None:
        parts = _SPLIT_RE.findall(line)
        word = parts.pop(0)
        if word == "LABEL":
            raise self.error(n, "LABEL is only valid in a %filter section")
        action = _ACTIONS.get(word)
        if action is None:
            raise self.error(n, f"unknown action {word!r}")
        if not parts:
            raise self.error(n, f"{word} needs a field")
        field = self.parse_field(parts.pop(0), n)
        value = self.parse_value(action, parts, n)
        if action is Action.ADD and not isinstance(field, TagField):
            raise self.error(n, "ADD needs a single tag or keyword")
        self.header.append(HeaderRule(action, field, value, n))

    def close_label(self) -> None:
        if self.label is None or self.filter_name is None:
            return
        name, n = self.label
        self.filters.setdefault(self.filter_name, []).append(
            FilterGroup(name, tuple(self.criteria), tuple(self.coordinates), n)
        )
        self.label = None
        self.criteria = []
        self.coordinates = []

    def filter_line(self, line: str, n: int) -> None:
        first = line.split(None, 1)[0]
        if first == "LABEL":
            self.close_label()
            name = line[len("LABEL"):].strip()
            if not name:
                raise self.error(n, "LABEL needs a name")
            self.label = (name, n)
            return
        if first in _ACTIONS:
            raise self.error(n, f"{first} belongs in a %header section")
        if self.label is None:
            raise self.error(n, "filter criteria must follow a LABEL")
        if first.lower() in _COORDINATES:
            self.coordinates.append(self.coordinate_line(first.lower(), line, n))
            return
        self.criteria.append(self.criteria_line(line, n))

    def coordinate_line(self, word: str, line: str, n: int) -> CoordinateSpec:
        raw = line[len(word):].strip().replace(" ", "")
        keep = "keep" in word
        if raw.lower() == "all":
            return CoordinateSpec(keep, None, "all", n)
        if raw.startswith("from:") and not word.startswith("ctp"):
            self.parse_field(raw[5:], n)
            return CoordinateSpec(keep, None, raw[5:], n)
        if not re.fullmatch(r"\d+,\d+,\d+,\d+", raw):
            raise self.error(n, f"{word} needs four whole numbers x,y,x,y or 'all'")
        a, b, c, d = (int(v) for v in raw.split(","))
        if word.startswith("ctp"):  # x, y, width, height -> xmin, ymin, xmax, ymax
            c, d = a + c, b + d
        if c < a or d < b:
            raise self.error(n, f"{word}: the box ends before it starts")
        return CoordinateSpec(keep, (a, b, c, d), None, n)

    def criteria_line(self, line: str, n: int) -> tuple[str | None, tuple[FilterTest, ...]]:
        words = line.split()
        lead: str | None = None
        if words[0] in ("+", "||"):
            lead = "and" if words.pop(0) == "+" else "or"
        elif words[0].startswith("||"):
            lead, words[0] = "or", words[0][2:]
        elif words[0].startswith("+"):
            lead, words[0] = "and", words[0][1:]
        # split into tests at '+' / '||' tokens that are followed by a test word
        chunks: list[tuple[str | None, list[str]]] = [(None, [])]
        i = 0
        while i < len(words):
            w = words[i]
            nxt = words[i + 1].lower() if i + 1 < len(words) else ""
            if w in ("+", "||") and nxt in _FILTER_TESTS:
                chunks.append(("and" if w == "+" else "or", []))
            else:
                chunks[-1][1].append(w)
            i += 1
        tests: list[FilterTest] = []
        for joiner, chunk in chunks:
            if not chunk:
                raise self.error(n, "empty filter test")
            test = chunk[0].lower()
            if test not in _FILTER_TESTS:
                raise self.error(n, f"unknown filter test {chunk[0]!r}")
            if len(chunk) < 2:
                raise self.error(n, f"{test} needs a field")
            field = self.parse_field(chunk[1], n)
            if test in ("missing", "present", "empty"):
                if len(chunk) > 2:
                    raise self.error(n, f"{test} takes only a field")
                tests.append(FilterTest(joiner, test, field, None))
                continue
            if len(chunk) < 3:
                raise self.error(n, f"{test} needs a field and a value")
            value = " ".join(chunk[2:])
            if test in ("contains", "notcontains"):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise self.error(n, f"invalid regular expression {value!r}: {exc}") from None
            tests.append(FilterTest(joiner, test, field, value))
        return lead, tuple(tests)

    def section_line(self, line: str, n: int) -> None:
        self.close_label()
        head, _, name = line.partition(" ")
        section = head[1:].lower()
        name = name.strip()
        if section == "header":
            if name:
                raise self.error(n, "%header takes no name")
            self.section, self.filter_name = "header", None
        elif section == "filter":
            if not name:
                raise self.error(n, "%filter needs a name, e.g. '%filter graylist'")
            self.section, self.filter_name = "filter", name
        elif section in ("values", "fields", "labels"):
            raise self.error(n, f"section %{section} is not supported (only %header and %filter)")
        else:
            raise self.error(n, f"unknown section {head!r}")

    def parse(self) -> Recipe:
        for n, raw in enumerate(self.text.splitlines(), start=1):
            line = _strip_comment(raw).strip()
            if not line:
                continue
            if line.split(None, 1)[0].upper() == "FORMAT":
                if self.format_seen or self.section is not None:
                    raise self.error(n, "FORMAT must come once, before any section")
                fmt = line.split(None, 1)[1].strip().lower() if " " in line else ""
                if fmt != "dicom":
                    raise self.error(n, f"unsupported FORMAT {fmt!r} (only 'dicom')")
                self.format_seen = True
            elif not self.format_seen:
                raise self.error(n, "the recipe must start with 'FORMAT dicom'")
            elif line.startswith("%"):
                self.section_line(line, n)
            elif self.section == "header":
                self.header_line(line, n)
            elif self.section == "filter":
                self.filter_line(line, n)
            else:
                raise self.error(n, "line outside a section (start with %header or %filter)")
        self.close_label()
        if not self.format_seen:
            raise self.error(0, "the recipe is empty (no 'FORMAT dicom')")
        return Recipe(
            self.source,
            self.text,
            tuple(self.header),
            {k: tuple(v) for k, v in self.filters.items()},
        )


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse recipe ``text``; ``source`` names it in error messages.

    Raises:
        RecipeError: on the first invalid line, as ``"<source>:<line>: <reason>"``.
    """
    return _Parser(text, source).parse()


def load_recipe(path: Path, label: str | None = None) -> Recipe:
    """Read and parse the recipe at ``path`` (UTF-8).

    Raises:
        RecipeError: if the file cannot be read or decoded, or is invalid.
    """
    source = label or path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(source, 0, f"cannot read the recipe ({type(exc).__name__})") from None
    return parse_recipe(text, source)

