"""Generate ``basic.dicom``, the PS3.15 Annex E Basic Profile as a deid recipe.

Source: ``reference/annex_e_table.json`` (Table E.1-1 as data, edition 2024b
plus the 2026c overlay; see ``reference/README.md``). Every one of the 652
concrete tags gets exactly one rule line, preceded by a comment line with its
name and Annex E code; then the 4 pattern rows; then the project's additions.

Usage::

    .venv/bin/python deid_profiles/generate_basic.py           # rewrite basic.dicom
    .venv/bin/python deid_profiles/generate_basic.py --check   # exit 1 if stale

Action codes (PS3.15 Table E.1-1a) become recipe actions as follows:

* ``X`` -> ``REMOVE``; ``Z`` -> ``BLANK``; ``K`` -> ``KEEP``;
  ``U`` -> ``REPLACE <tag> func:keyed_uid``.
* ``D`` -> ``REPLACE`` with the dummy for the VR
  (``dicom_service/deidentify/dummies.py``); a UI under ``D`` gets
  ``func:keyed_uid`` (a consistent UID is the natural dummy). A sequence under
  ``D`` gets a dummy value of its own kind: its items stay, every rule applies
  inside them, and each element no rule names that can carry a name, text or
  a date gets its VR's dummy (``func:dummy_items``; coded terms (CS), numbers
  and UIDs keep their own rules). Under the Basic Profile the content of, for
  example, Content Sequence is thus replaced, not retained: retaining it
  cleaned is the Clean Structured Content Option. Code sequences (keyword
  ``...CodeSequence``), whose codes would themselves identify (a person, an
  institution), become one dummy code item (``func:dummy_code``).
* Compound codes. Annex E lets the choice depend on the attribute's Type in
  the IOD at hand (Z/D: Type 2 vs 1; X/Z: Type 3 vs 2; X/D: Type 3 vs 1;
  X/Z/D; X/Z/U*). The engine does not know the IOD, so it takes the
  alternative valid for every Type, which leaks no more than the others
  (neither Z nor D carries the original value):

  - ``X/Z`` -> ``Z`` (present and empty is valid for Type 2 and Type 3);
  - ``Z/D``, ``X/D``, ``X/Z/D`` -> ``D`` (a dummy is valid for Type 1, 2, 3);
    except person names (VR PN) where ``Z`` is allowed: ``Z`` (an empty name
    cannot be mistaken for a person, and no Type 1 person name has these codes);
  - ``X/Z/U*`` -> ``U*``: the sequence is kept and the instance UIDs inside
    are replaced (references stay resolvable).
* ``C`` appears only in option columns, never in the Basic Profile.
* PatientName and PatientID (Z and Z/D) -> ``ADD ... func:pseudonym``: the
  enrolment's pseudonym, created if absent.
* Dates under ``D`` get a dummy (``19000101``); shifting dates by the
  enrolment's offset belongs to the Retain Longitudinal Temporal Information
  Modified Dates Option (``JITTER ... func:date_shift``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydicom._dicom_dict import DicomDictionary
from pydicom.datadict import keyword_dict

from dicom_service.deidentify.dummies import DUMMIES, ITEM_DUMMY_VRS

HERE = Path(__file__).resolve().parent
TABLE = HERE / "reference" / "annex_e_table.json"
OUTPUT = HERE / "basic.dicom"

# Dummy values (action D) by VR: dicom_service/deidentify/dummies.py.

PSEUDONYM_TAGS = {"(0010,0010)", "(0010,0020)"}

# Regular expressions on the stripped tag GGGGEEEE (deid's contains: expander).
PATTERN_RULES: dict[str, str] = {
    "(50XX,XXXX)": "contains:^50[0-9a-f]{6}$",
    "(60XX,3000)": "contains:^60[0-9a-f]{2}3000$",
    "(60XX,4000)": "contains:^60[0-9a-f]{2}4000$",
    "(GGGG,EEEE) WHERE GGGG IS ODD": "contains:^[0-9a-f]{3}[13579bdf][0-9a-f]{4}$",
}

# UI attributes that name a class, a syntax or a coding scheme, not an
# instance: kept even when not registered (a private SOP Class UID must stay
# what the object is). Chosen by keyword from pydicom's dictionary.
CLASS_UID_KEYWORD = re.compile(
    r"(SOPClass|SOPClasses|TransferSyntax|ImplementationClass|CodingScheme)"
    r"|^(ContextUID|MappingResourceUID)$"
)

# Addresses (VR UR) of the sending site's systems, not rows of Table E.1-1.
SOURCE_ADDRESSES = (
    "RetrieveURL", "RetrieveURI", "StoredInstanceBaseURI", "FolderAccessURI",
    "FileAccessURI", "FilenameInContainer", "StorageURL", "PixelDataProviderURL",
    "ContactURI",
)

FILE_META_REMOVALS = (
    "(0002,0016)",  # Source Application Entity Title
    "(0002,0017)",  # Sending Application Entity Title
    "(0002,0018)",  # Receiving Application Entity Title
    "(0002,0026)",  # Source Presentation Address
    "(0002,0027)",  # Sending Presentation Address
    "(0002,0028)",  # Receiving Presentation Address
    "(0002,0035)",  # RTV Source Identifier
    "(0002,0036)",  # RTV Flow Identifier
    "(0002,0100)",  # Private Information Creator UID
    "(0002,0102)",  # Private Information
)


def resolve(code: str, vr: str | None) -> str:
    """The single Annex E action chosen for ``code`` (see the module docstring)."""
    if code in ("X", "Z", "D", "K", "U"):
        return code
    if code == "X/Z":
        return "Z"
    if code in ("Z/D", "X/D", "X/Z/D"):
        return "Z" if vr == "PN" and "Z" in code else "D"
    if code == "X/Z/U*":
        return "U*"
    raise ValueError(f"unexpected Basic Profile code {code!r}")


def rule(row: dict[str, Any]) -> str:
    """The recipe line for one concrete row of Table E.1-1."""
    tag, code, vr, keyword = row["tag"], row["basic_profile"], row["vr"], row["keyword"] or ""
    if tag in PSEUDONYM_TAGS:  # by keyword: deid's ADD does not take "(gggg,eeee)"
        return f"ADD {keyword} func:pseudonym"
    chosen = resolve(code, vr)
    if chosen == "X":
        return f"REMOVE {tag}"
    if vr is None:
        raise ValueError(f"{tag}: code {code} needs the VR, which is unknown")
    if chosen == "Z":
        return f"BLANK {tag}"
    if chosen == "K" or chosen == "U*":
        return f"KEEP {tag}"
    if chosen == "U":
        if vr != "UI":
            raise ValueError(f"{tag}: U on VR {vr}")
        return f"REPLACE {tag} func:keyed_uid"
    # D
    if vr == "UI":
        return f"REPLACE {tag} func:keyed_uid"
    if vr == "SQ":
        if keyword.endswith("CodeSequence"):
            return f"REPLACE {tag} func:dummy_code"
        return f"REPLACE {tag} func:dummy_items"
    if vr not in DUMMIES:
        raise ValueError(f"{tag}: no dummy value for VR {vr}")
    return f"REPLACE {tag} {DUMMIES[vr]}"


def explain(row: dict[str, Any], line: str) -> str:
    code = row["basic_profile"]
    chosen = resolve(code, row["vr"])
    note = f"[{code}]" if chosen == code else f"[{code} -> {chosen}]"
    if row["tag"] in PSEUDONYM_TAGS:
        note += " pseudonym"
    elif chosen == "U*":
        note += " sequence kept, UIDs inside replaced"
    elif line.endswith("func:dummy_items"):
        note += " items kept, their names, text and dates dummied"
    elif line.endswith("func:dummy_code"):
        note += " one dummy code item"
    vr = row["vr"] or "VR unknown to pydicom"
    return f"# {row['tag']} {' '.join(row['name'].split())} ({vr}) {note}"


HEADER = """\
# basic.dicom -- GENERATED by deid_profiles/generate_basic.py; do not edit by hand.
#
# DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile
# (Table E.1-1, column "Basic Prof."), as a deid recipe.
# Edition: {edition}.
# Source: deid_profiles/reference/annex_e_table.json, sha256 {sha256}
# ({concrete} concrete tags + {patterns} pattern rows; one rule per tag, matched by tag number).
#
# Action codes -> recipe actions:
#   X -> REMOVE        Z -> BLANK        K -> KEEP
#   U -> REPLACE func:keyed_uid (2.25.<HMAC-SHA256 of the UID under the enrolment key>)
#   D -> REPLACE with a dummy for the VR: {dummies}
#        UI: func:keyed_uid. SQ: func:dummy_items -- the items stay, every rule applies
#        inside, and elements no rule names get their VR's dummy if they can carry a
#        name, text or date ({item_vrs}); code sequences: one dummy code item
#        (func:dummy_code).
#   Compound codes take the alternative valid for every IOD Type (the engine does
#   not know the IOD; neither Z nor D keeps the original value):
#        X/Z -> Z;  Z/D, X/D, X/Z/D -> D (PN: Z);  X/Z/U* -> sequence kept, UIDs inside replaced.
#   PatientName, PatientID -> ADD func:pseudonym (the enrolment's pseudonym).
#   Dates under D get the dummy; date shifting (func:date_shift) is the Modified Dates option.
#
# Private elements: the profile parameter remove_private (default true) removes
# them, creators included, before any pattern rule is looked at; the pattern
# row below says the same for readers and for deid.
# Precedence: a tag rule beats a pattern (contains:/select:) rule; see
# dicom_service/deidentify/plan.py. The engine also sets, after these rules:
# PatientName/PatientID = pseudonym, PatientIdentityRemoved = YES,
# DeidentificationMethod (+ Code Sequence, CID 7050 113100),
# LongitudinalTemporalInformationModified = REMOVED, a ContributingEquipmentSequence
# item, and file meta MediaStorageSOPInstanceUID = SOPInstanceUID.
#
# No trailing comments on rule lines: deid reads a trailing comment on a REMOVE
# line as a condition and then keeps the element.

FORMAT dicom

%header
"""


def render(table_bytes: bytes) -> str:
    """The full text of ``basic.dicom`` for the table given as raw JSON bytes."""
    table = json.loads(table_bytes)
    rows = table["attributes"]
    concrete = [r for r in rows if not r["pattern"]]
    patterns = [r for r in rows if r["pattern"]]
    if len(concrete) != table["counts"]["concrete_tags"] or len(patterns) != 4:
        raise ValueError("the table's row counts do not match its own counts")
    primary = table["sources"]["primary"]["standard_edition"]
    overlay = table["sources"]["overlay"]["standard_edition"].split(" ", 1)[0]
    out = [
        HEADER.format(
            edition=f"{primary} table + {overlay} overlay",
            sha256=hashlib.sha256(table_bytes).hexdigest(),
            concrete=len(concrete),
            patterns=len(patterns),
            dummies=", ".join(f"{vr} {DUMMIES[vr]}" for vr in sorted(DUMMIES)),
            item_vrs=" ".join(sorted(ITEM_DUMMY_VRS)),
        )
    ]
    out.append("# ---- Table E.1-1, concrete tags " + "-" * 46 + "\n")
    listed = set()
    for row in sorted(concrete, key=lambda r: r["tag"]):
        line = rule(row)
        listed.add(row["tag"])
        out.append(explain(row, line) + "\n" + line + "\n")
    out.append("\n# ---- Table E.1-1, pattern rows " + "-" * 47 + "\n")
    for row in patterns:
        out.append(f"# {row['tag']} {' '.join(row['name'].split())} [{row['basic_profile']}]\n")
        out.append(f"REMOVE {PATTERN_RULES[row['tag']]}\n")

    out.append("\n# ---- Additions of this project (not rows of Table E.1-1) " + "-" * 21 + "\n")
    out.append(
        "# Every other UID (VR UI) anywhere, also in sequences: keyed, so references\n"
        "# between instances stay consistent. Registered UIDs (PS3.6 Annex A: SOP\n"
        "# classes, transfer syntaxes, coding schemes) are kept by the function.\n"
        "REPLACE select:VR:UI func:keyed_uid\n"
    )
    out.append(
        "# UIDs that name a class, syntax or coding scheme, not an instance: kept even\n"
        "# when not registered (a private SOP class stays what the object is).\n"
    )
    for tag, entry in sorted(DicomDictionary.items()):
        text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        if entry[0] == "UI" and CLASS_UID_KEYWORD.search(entry[4]) and text not in listed:
            out.append(f"# {text} {entry[2]}\nKEEP {text}\n")
    out.append(
        "# The rest of each overlay group (60xx): without Overlay Data the Overlay\n"
        "# Plane module would be incomplete, and its labels and descriptions are text.\n"
        "REMOVE contains:^60[0-9a-f]{2}[0-9a-f]{4}$\n"
        "# Code meanings of local coding schemes (designator 99... or L, PS3.16 Section 8)\n"
        "# are free text written on site (a procedure 'requested by Dr X'): they get the\n"
        "# dummy. Meanings of standard schemes (DCM, SCT, LN, ...) are the scheme's own.\n"
        "REPLACE (0008,0104) func:local_code_meaning\n"
        "# Addresses of the sending site's systems (VR UR: retrieve, storage, file and\n"
        "# JPIP locations, contacts): they name its hosts and embed original UIDs, and\n"
        "# point nowhere once the instance is de-identified.\n"
    )
    for keyword in SOURCE_ADDRESSES:
        tag = keyword_dict[keyword]
        text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        if text not in listed:
            out.append(f"# {text} {DicomDictionary[tag][2]}\nREMOVE {text}\n")
    out.append(
        "# Elements of unknown VR (UN after the data dictionary was consulted): their\n"
        "# content cannot be inspected, so it cannot be cleaned.\n"
        "REMOVE select:VR:UN\n"
        "# File meta information naming the sending and receiving nodes, and private data.\n"
    )
    for meta_tag in FILE_META_REMOVALS:
        name = DicomDictionary[int(meta_tag[1:5] + meta_tag[6:10], 16)][2]
        out.append(f"# {meta_tag} {name}\nREMOVE {meta_tag}\n")
    return "".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the output is stale")
    args = parser.parse_args(argv)
    text = render(args.table.read_bytes())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
