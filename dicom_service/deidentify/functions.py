"""The closed set of functions a recipe may name with ``func:NAME``.

deid lets a caller pass arbitrary callables in an ``item`` dictionary; here
recipes are data and the functions are code, so the set is fixed and an
unknown name is refused when the recipe is loaded. Each function states which
actions may use it and which value representations it produces or accepts;
the compiler (``plan.py``) checks that against the data dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["FUNCTIONS", "Func", "FunctionSpec"]


class Func(Enum):
    """Functions available to recipes as ``func:<value>``."""

    KEYED_UID = "keyed_uid"
    """The enrolment's keyed UID for each value (``Pseudonymiser.uid``);
    registered (standard) UIDs such as SOP Class UIDs are kept."""

    PSEUDONYM = "pseudonym"
    """The enrolment's pseudonym (PatientName, PatientID)."""

    DATE_SHIFT = "date_shift"
    """For JITTER: the enrolment's date offset in days (``date_shift_days``)."""

    DUMMY_ITEMS = "dummy_items"
    """For a sequence under action D: the items stay, every rule applies inside
    them, and each element no rule names gets the dummy for its VR when it can
    carry a name, text or a date (``dummies.ITEM_DUMMY_VRS``), at any depth."""

    LOCAL_CODE_MEANING = "local_code_meaning"
    """For CodeMeaning: the dummy when the item's CodingSchemeDesignator names
    a local scheme (``99...`` or ``L``, PS3.16 Section 8), whose meanings are
    free text written on site, or is empty or absent (a code item without its
    scheme: nothing says the meaning is not free text); otherwise the meaning
    stays (a standard scheme's meaning is the scheme's own)."""

    DUMMY_CODE = "dummy_code"
    """For a code sequence under action D: one dummy Code Sequence Macro item
    (PS3.3 Table 8.8-1): CodeValue ``REMOVED``, CodingSchemeDesignator
    ``99DCMSVC`` (a private scheme, PS3.16 Section 8), CodeMeaning
    ``Removed by de-identification``."""

    CLEAN_TEXT = "clean_text"
    """For Annex E action C on free text (Clean Descriptors and related
    options): the text stays, with the original instance's known identifiers
    and identifier-like patterns replaced by ``[removed]``
    (``clean_text.TextCleaner``)."""

    CLEAN_ITEMS = "clean_items"
    """For a sequence under action C (Clean Structured Content, Clean Graphics,
    Clean Descriptors): as ``dummy_items``, but text no rule names is cleaned
    (``clean_text``) instead of dummied; names and dates still get the dummy."""


@dataclass(frozen=True)
class FunctionSpec:
    """What a function may be used with.

    Attributes:
        actions: the recipe actions that may name it.
        vrs: the data-dictionary VRs it may be used for, checked for tag
            rules when the recipe is loaded (what happens when an element's
            actual VR differs is decided in ``plan._op_for``).
    """

    actions: frozenset[str]
    vrs: frozenset[str]


FUNCTIONS: dict[Func, FunctionSpec] = {
    Func.KEYED_UID: FunctionSpec(frozenset({"REPLACE", "ADD"}), frozenset({"UI"})),
    Func.PSEUDONYM: FunctionSpec(
        frozenset({"REPLACE", "ADD"}), frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC"})
    ),
    Func.DATE_SHIFT: FunctionSpec(frozenset({"JITTER"}), frozenset({"DA", "DT"})),
    Func.DUMMY_CODE: FunctionSpec(frozenset({"REPLACE"}), frozenset({"SQ"})),
    Func.DUMMY_ITEMS: FunctionSpec(frozenset({"REPLACE"}), frozenset({"SQ"})),
    Func.LOCAL_CODE_MEANING: FunctionSpec(frozenset({"REPLACE"}), frozenset({"LO", "UC"})),
    Func.CLEAN_TEXT: FunctionSpec(
        frozenset({"REPLACE"}), frozenset({"AE", "LO", "LT", "SH", "ST", "UC", "UT"})
    ),
    Func.CLEAN_ITEMS: FunctionSpec(frozenset({"REPLACE"}), frozenset({"SQ"})),
}
