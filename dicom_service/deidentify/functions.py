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

    DUMMY_CODE = "dummy_code"
    """For a code sequence under action D: one dummy Code Sequence Macro item
    (PS3.3 Table 8.8-1): CodeValue ``REMOVED``, CodingSchemeDesignator
    ``99DCMSVC`` (a private scheme, PS3.16 Section 8), CodeMeaning
    ``Removed by de-identification``."""


@dataclass(frozen=True)
class FunctionSpec:
    """What a function may be used with.

    Attributes:
        actions: the recipe actions that may name it.
        vrs: value representations of the elements it may be applied to
            (checked for exact-tag rules at load; ``None``: any string VR).
    """

    actions: frozenset[str]
    vrs: frozenset[str] | None


_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
     "UI", "UR", "UT"}
)

FUNCTIONS: dict[Func, FunctionSpec] = {
    Func.KEYED_UID: FunctionSpec(frozenset({"REPLACE", "ADD"}), frozenset({"UI"})),
    Func.PSEUDONYM: FunctionSpec(
        frozenset({"REPLACE", "ADD"}), frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC"})
    ),
    Func.DATE_SHIFT: FunctionSpec(frozenset({"JITTER"}), frozenset({"DA", "DT"})),
    Func.DUMMY_CODE: FunctionSpec(frozenset({"REPLACE"}), frozenset({"SQ"})),
}

STRING_VRS = _STRING_VRS
