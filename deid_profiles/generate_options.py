"""Generate ``options/<option>.dicom``: one recipe per PS3.15 Annex E option
column of Table E.1-1 that can be applied without a human, overlaying
``basic.dicom`` (a profile lists them under ``options``; see profiles.toml).

Usage::

    .venv/bin/python deid_profiles/generate_options.py           # rewrite options/
    .venv/bin/python deid_profiles/generate_options.py --check   # exit 1 if stale

Per column: ``K`` -> ``KEEP``. ``C`` ("clean": replace with values of similar
meaning known not to identify):

* under the Modified Dates option, DA/DT -> ``JITTER func:date_shift`` (the
  enrolment's offset) and TM -> ``KEEP`` (a whole-day shift leaves the time of
  day as it was);
* text (AE, LO, LT, SH, ST, UC, UT) -> ``REPLACE func:clean_text``: the text
  stays minus the instance's own identifiers and identifier-like patterns
  (``dicom_service/deidentify/clean_text.py``; an AE title with a hit becomes
  ``ANONYMIZED``);
* sequences -> ``REPLACE func:clean_items``: items kept, every rule applies
  inside, text no rule names cleaned, names and dates no rule names dummied;
* CS (coded terms) -> ``KEEP``;
* anything else (OB: MakerNote, DeviceSettingDescription; the curve and
  overlay pattern rows of Clean Graphics, whose Overlay Data is a bitmap
  that only pixel work could clean) keeps the Basic Profile action.

Retain Safe Private (PS3.15 Section E.3.10) keeps the private attributes of
``SAFE_PRIVATE`` (a short list taken from the standard's Table E.3.10-1,
numeric acquisition parameters only); every other private element is still
removed. Clean Pixel Data and Clean Recognizable Visual Features have no
column: pixel work (``profiles.toml`` says what each declares).

The 35 rows taken from the 2026c overlay have unknown option columns
(``options_known: false``) and keep their Basic Profile action under every
option.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
TABLE = HERE / "reference" / "annex_e_table.json"
OUTPUT = HERE / "options"


def _basic() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_basic", HERE / "generate_basic.py")
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ImportError("generate_basic.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class OptionSpec:
    column: str
    extra: str = ""  # lines appended after the table rows


# PS3.15 Table E.3.10-1 "Safe Private Attributes" (a subset: numeric scale
# factors and diffusion parameters needed to read the pixel values, which
# hold no identifier). (group, creator, element offset, what it is).
SAFE_PRIVATE: tuple[tuple[str, str, str, str], ...] = (
    ("7053", "Philips PET Private Group", "00", "SUV Factor (DS)"),
    ("7053", "Philips PET Private Group", "09", "Activity Concentration Scale Factor (DS)"),
    ("2005", "Philips MR Imaging DD 001", "0D", "Scale Intercept (FL)"),
    ("2005", "Philips MR Imaging DD 001", "0E", "Scale Slope (FL)"),
    ("2001", "Philips Imaging DD 001", "03", "Diffusion B-Factor (FL)"),
    ("2001", "Philips Imaging DD 001", "04", "Diffusion Direction (CS)"),
    ("0019", "SIEMENS MR HEADER", "0C", "B Value (IS)"),
    ("0019", "SIEMENS MR HEADER", "0D", "Diffusion Directionality (CS)"),
    ("0019", "SIEMENS MR HEADER", "0E", "Diffusion Gradient Direction (FD)"),
    ("0019", "SIEMENS MR HEADER", "27", "B Matrix (FD)"),
    ("0019", "GEMS_ACQU_01", "23", "Table Speed (DS)"),
    ("0019", "GEMS_ACQU_01", "27", "Rotation Speed (DS)"),
    ("0043", "GEMS_PARM_01", "27", "Scan Pitch Ratio (SH)"),
    ("0025", "GEMS_SERS_01", "07", "Images in Series (SL)"),
)


def _safe_private() -> str:
    lines = [
        "# PS3.15 Section E.3.10 and Table E.3.10-1 (Safe Private Attributes):\n"
        "# kept when present with this creator; every other private element is\n"
        "# removed (profile parameter remove_private). A private creator stays\n"
        "# while an element of its block stays.\n"
    ]
    for group, creator, offset, what in SAFE_PRIVATE:
        lines.append(f"# {what}\nKEEP ({group},\"{creator}\",{offset})\n")
    return "".join(lines)


TEXT_VRS = frozenset({"AE", "LO", "LT", "SH", "ST", "UC", "UT"})


OPTIONS: dict[str, OptionSpec] = {
    "retain_uids": OptionSpec(
        "retain_uids",
        "# UIDs not in Table E.1-1: kept too (basic.dicom keys every UI element).\n"
        "KEEP select:VR:UI\n",
    ),
    "retain_device_identity": OptionSpec("retain_device_identity"),
    "retain_institution_identity": OptionSpec("retain_institution_identity"),
    "retain_patient_characteristics": OptionSpec("retain_patient_characteristics"),
    "retain_longitudinal_full_dates": OptionSpec("retain_longitudinal_full_dates"),
    "retain_longitudinal_modified_dates": OptionSpec("retain_longitudinal_modified_dates"),
    "retain_safe_private": OptionSpec("retain_safe_private", _safe_private()),
    "clean_descriptors": OptionSpec("clean_descriptors"),
    "clean_structured_content": OptionSpec("clean_structured_content"),
    "clean_graphics": OptionSpec(
        "clean_graphics",
        "# Implied by C on Graphic Annotation Sequence: the text of its text\n"
        "# objects is cleaned, not dummied (row (0070,0006) comes from the 2026c\n"
        "# overlay, whose option columns are unknown).\n"
        "REPLACE (0070,0006) func:clean_text\n",
    ),
}


def rule(column: str, row: dict[str, Any]) -> str | None:
    """The option's line for ``row``, or None when the base action stands."""
    code = row["options"].get(column)
    tag, vr = row["tag"], row["vr"]
    if code == "K":
        return f"KEEP {tag}"
    if code != "C":
        return None
    if column == "retain_longitudinal_modified_dates":
        if vr in ("DA", "DT"):
            return f"JITTER {tag} func:date_shift"
        if vr == "TM":
            return f"KEEP {tag}"
        return None
    if vr in TEXT_VRS:
        return f"REPLACE {tag} func:clean_text"
    if vr == "SQ":
        return f"REPLACE {tag} func:clean_items"
    if vr == "CS":
        return f"KEEP {tag}"
    return None


def render(name: str, table_bytes: bytes, basic: ModuleType) -> str:
    table = json.loads(table_bytes)
    spec = OPTIONS[name]
    meta = table["option_columns"][spec.column]
    rows = sorted((r for r in table["attributes"] if not r["pattern"]), key=lambda r: r["tag"])
    primary = table["sources"]["primary"]["standard_edition"]
    overlay = table["sources"]["overlay"]["standard_edition"].split(" ", 1)[0]
    out = [
        f"# options/{name}.dicom -- GENERATED by deid_profiles/generate_options.py; "
        "do not edit by hand.\n"
        "#\n"
        f"# DICOM PS3.15 Annex E, {meta['option']} (CID 7050 {meta['cid7050_code']}):\n"
        f"# Table E.1-1 column {meta['innolitics_key']!r}, overlaying basic.dicom.\n"
        f"# Edition: {primary} table + {overlay} overlay.\n"
        "# Source: deid_profiles/reference/annex_e_table.json, sha256 "
        f"{hashlib.sha256(table_bytes).hexdigest()}\n"
        "# K -> KEEP; C -> see generate_options.py (dates shifted, text cleaned,\n"
        "# sequences walked and cleaned, CS kept, anything else as in basic.dicom);\n"
        "# rows without a code here keep the Basic Profile action.\n"
        "\nFORMAT dicom\n\n%header\n"
    ]
    kept_uis = set()
    for row in rows:
        line = rule(spec.column, row)
        if line is None:
            continue
        code = row["options"][spec.column]
        name_text = " ".join(row["name"].split())
        out.append(f"# {row['tag']} {name_text} ({row['vr']}) [{code}]\n{line}\n")
        if row["vr"] == "UI":
            kept_uis.add(row["tag"])
    if spec.extra:
        out.append("\n" + spec.extra)
        # This layer's expander would outrank the base for UI rows the option
        # does not cover: restate their Basic Profile rule here.
        restated = [
            r for r in rows
            if "select:VR:UI" in spec.extra and r["vr"] == "UI" and r["tag"] not in kept_uis
        ]
        if restated:
            out.append("# UI rows this option does not retain: their Basic Profile rule.\n")
        for row in restated:
            out.append(f"# {row['tag']} {row['name']} [basic {row['basic_profile']}]\n")
            out.append(basic.rule(row) + "\n")
    return "".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if an output is stale")
    args = parser.parse_args(argv)
    table_bytes = args.table.read_bytes()
    basic = _basic()
    stale = []
    for name in OPTIONS:
        text = render(name, table_bytes, basic)
        path = args.output / f"{name}.dicom"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print("out of date: " + ", ".join(str(p) for p in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
