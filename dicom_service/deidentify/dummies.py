"""Dummy values for PS3.15 Annex E action D, by VR.

Valid for the VR (``basic.dicom`` is checked against pydicom's validators when
it is loaded), obviously artificial, ASCII, and never derived from the
original. ``deid_profiles/generate_basic.py`` writes these into the recipe;
the engine uses them for the items of a sequence under D (``func:dummy_items``).
"""

from __future__ import annotations

__all__ = ["DUMMIES", "ITEM_DUMMY_VRS"]

DUMMIES: dict[str, str] = {
    "AE": "ANONYMIZED",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "OB": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "TM": "000000",
    "UC": "ANONYMIZED",
    "UN": "ANONYMIZED",
    "UR": "urn:uuid:00000000-0000-0000-0000-000000000000",
    "UT": "ANONYMIZED",
}

ITEM_DUMMY_VRS: frozenset[str] = frozenset(
    {"AE", "AS", "DA", "DT", "LO", "LT", "OB", "PN", "SH", "ST", "TM", "UC", "UN", "UR", "UT"}
)
"""Inside a sequence under D, elements no rule names get the dummy when their
VR is one of these (names, text, dates, opaque bytes). Kept as they are:
CS (enumerated terms such as an SR ValueType), IS/DS and binary numbers
(measurements, indices), AT, OW/OF/OD/OL/OV, and UIDs (keyed by their own
rule, class UIDs kept)."""
