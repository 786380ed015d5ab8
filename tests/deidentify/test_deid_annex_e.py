"""Every row of PS3.15 Annex E Table E.1-1 against the basic profile.

One dataset holds all 652 concrete tags with a value valid for the VR (the VR
from pydicom's dictionary, or a guess from the name for the 25 tags pydicom
does not know); it is de-identified once per encoding (built in memory, and
encoded then read back as explicit VR little endian, implicit VR little
endian and explicit VR big endian, which exercises the raw-element path), and
each row is one test named by its tag.

The expected outcome restates the rule documented in
``deid_profiles/generate_basic.py`` independently of the generator.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from dicom_service.deidentify import Profile, Pseudonymiser, derive_date_shift, load_profiles

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "deid_profiles"
TABLE = json.loads((PROFILES / "reference" / "annex_e_table.json").read_text(encoding="utf-8"))
ROWS = [r for r in TABLE["attributes"] if not r["pattern"]]
KEY = bytes(range(32))
PSEUDONYM = "ERN-7K2QX9M4TD"

DUMMIES = {  # documented in generate_basic.py and basic.dicom's header
    "AE": "ANONYMIZED", "AS": "000Y", "CS": "ANONYMIZED", "DA": "19000101",
    "DT": "19000101000000", "TM": "000000", "LO": "ANONYMIZED", "LT": "ANONYMIZED",
    "PN": "ANONYMIZED", "SH": "ANONYMIZED", "ST": "ANONYMIZED", "UC": "ANONYMIZED",
    "UT": "ANONYMIZED", "UR": "urn:uuid:00000000-0000-0000-0000-000000000000",
}


def tag_int(text: str) -> int:
    return int(text[1:5] + text[6:10], 16)


def row_vr(row: dict[str, Any]) -> str:
    """The row's VR; for tags pydicom does not know, a guess from the name."""
    if row["vr"]:
        return str(row["vr"])
    name = row["name"]
    if name.endswith("Sequence"):
        return "SQ"
    if name.endswith("DateTime"):
        return "DT"
    return "LO"


def original_uid(tag: int) -> str:
    return f"1.2.826.0.1.3680043.8.498.{tag}"


SOP_INSTANCE_UID = original_uid(0x00080018)


def original_value(tag: int, vr: str) -> Any:
    """A value valid for ``vr`` that names its tag, so mix-ups show."""
    hex_tag = f"{tag:08X}"
    values: dict[str, Any] = {
        "AE": f"AE{hex_tag}",
        "AS": "045Y",
        "CS": f"C{hex_tag}",
        "DA": "20240315",
        "DS": "1.5",
        "DT": "20240315123456",
        "IS": "7",
        "LO": f"original LO {hex_tag}",
        "LT": f"original LT {hex_tag}",
        "ST": f"original ST {hex_tag}",
        "UT": f"original UT {hex_tag}",
        "UC": f"original UC {hex_tag}",
        "PN": f"Doe{hex_tag}^Jane",
        "SH": f"S{hex_tag}",
        "TM": "123456",
        "UI": SOP_INSTANCE_UID if tag == 0x00020003 else original_uid(tag),
        "UR": f"http://example.com/{hex_tag}",
        "OB": hex_tag.encode("ascii"),
        "UN": hex_tag.encode("ascii"),
        "US": 1,
    }
    if vr == "SQ":
        item = Dataset()
        item.CodeValue = f"V{hex_tag}"
        item.CodingSchemeDesignator = "99ORIG"
        item.CodeMeaning = f"meaning {hex_tag}"
        item.ReferencedSOPInstanceUID = original_uid(tag + 1)
        return Sequence([item])
    return values[vr]


def build() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    for row in ROWS:
        tag = tag_int(row["tag"])
        vr = row_vr(row)
        elem = DataElement(tag, vr, original_value(tag, vr))
        if tag >> 16 == 0x0002:
            ds.file_meta[tag] = elem
        else:
            ds[tag] = elem
    return ds


def encode_and_read(ds: Dataset, implicit: bool, little: bool) -> Dataset:
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    write_dataset(fp, ds)
    back = read_dataset(io.BytesIO(fp.getvalue()), implicit, little)
    back.file_meta = ds.file_meta
    return back


ENCODINGS = {
    "memory": None,
    "explicit-le": (False, True),
    "implicit-le": (True, True),
    "explicit-be": (False, False),
}


@pytest.fixture(scope="module")
def profile() -> Profile:
    return load_profiles(PROFILES).get("basic")


@pytest.fixture(scope="module")
def pseudonymiser() -> Pseudonymiser:
    return Pseudonymiser(key=KEY, pseudonym=PSEUDONYM, date_shift_days=derive_date_shift(KEY))


@pytest.fixture(scope="module", params=list(ENCODINGS))
def result(
    request: pytest.FixtureRequest, profile: Profile, pseudonymiser: Pseudonymiser
) -> Dataset:
    ds = build()
    encoding = ENCODINGS[request.param]
    if encoding is not None:
        ds = encode_and_read(ds, *encoding)
    profile.apply(ds, pseudonymiser)
    return ds


def expected(row: dict[str, Any]) -> str:
    """The documented outcome for one row of the Basic Profile column."""
    code, vr, keyword = row["basic_profile"], row_vr(row), row["keyword"] or ""
    if row["tag"] in ("(0010,0010)", "(0010,0020)"):
        return "pseudonym"
    if code == "X":
        return "absent"
    if code in ("Z", "X/Z"):
        return "empty"
    if code == "U":
        return "uid"
    if code == "X/Z/U*":
        return "sequence-cleaned"
    assert code in ("D", "Z/D", "X/D", "X/Z/D"), code
    if vr == "PN" and "Z" in code:
        return "empty"
    if vr == "UI":
        return "uid"
    if vr == "SQ":
        return "dummy-code" if keyword.endswith("CodeSequence") else "dummy-items"
    return "dummy"


def lookup(ds: Dataset, tag: int) -> DataElement | None:
    where = ds.file_meta if tag >> 16 == 0x0002 else ds
    return where[tag] if tag in where else None


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == b"" or (
        isinstance(value, list | Sequence) and len(value) == 0
    )


def test_table_is_complete() -> None:
    assert len(ROWS) == 652
    assert len({r["tag"] for r in ROWS}) == 652
    assert sum(1 for r in TABLE["attributes"] if r["pattern"]) == 4


@pytest.mark.parametrize("row", ROWS, ids=[r["tag"] for r in ROWS])
def test_row(row: dict[str, Any], result: Dataset, pseudonymiser: Pseudonymiser) -> None:
    tag = tag_int(row["tag"])
    vr = row_vr(row)
    original = original_value(tag, vr)
    elem = lookup(result, tag)
    outcome = expected(row)
    if outcome == "absent":
        assert elem is None
        return
    assert elem is not None, f"{row['tag']} must be present ({outcome})"
    value = elem.value
    if outcome == "empty":
        assert is_empty(value)
    elif outcome == "pseudonym":
        assert str(value) == PSEUDONYM
    elif outcome == "uid":
        assert str(value) == pseudonymiser.uid(original)
        assert str(value).startswith("2.25.")
    elif outcome == "dummy":
        assert not is_empty(value)
        assert value != original
        if vr in DUMMIES:
            assert str(value) == DUMMIES[vr]
        else:  # OB, UN
            assert bytes(value).rstrip(b"\x00") == b"ANONYMIZED"
    elif outcome == "dummy-code":
        assert len(value) == 1
        assert value[0].CodeValue == "REMOVED"
        assert value[0].CodingSchemeDesignator == "99DCMSVC"
    else:  # sequence kept; the UID inside replaced consistently
        assert len(value) == 1
        inner = original[0].ReferencedSOPInstanceUID
        assert value[0].ReferencedSOPInstanceUID == pseudonymiser.uid(inner)
        if outcome == "dummy-items":  # elements no rule names: the VR's dummy
            assert value[0].CodeValue == "ANONYMIZED"
            assert value[0].CodeMeaning == "ANONYMIZED"
        else:  # X/Z/U*: only the UIDs change
            assert value[0].CodeValue == original[0].CodeValue


def test_no_original_value_survives(result: Dataset) -> None:
    """No original top-level value (each names its tag) appears anywhere."""
    originals = set()
    for row in ROWS:
        tag = tag_int(row["tag"])
        value = original_value(tag, row_vr(row))
        if isinstance(value, str) and f"{tag:08X}" in value:
            originals.add(value)
    seen = [str(e.value) for e in result.iterall() if e.VR not in ("SQ", "OB", "UN")]
    seen += [str(e.value) for e in result.file_meta]
    assert not originals.intersection(seen)
    uids = {original_uid(tag_int(r["tag"])) for r in ROWS}
    assert not uids.intersection(seen)


def test_pattern_rows_are_in_the_recipe() -> None:
    text = (PROFILES / "basic.dicom").read_text(encoding="utf-8")
    for row in TABLE["attributes"]:
        if row["pattern"]:
            assert f"# {row['tag']} " in text
