"""The generated Annex E option recipes, composed over the basic profile."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread, dcmwrite
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

from dicom_service.deidentify import Profile, ProfileError, Pseudonymiser, load_profiles
from dicom_service.deidentify.pseudonyms import shift_da, shift_dt

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "deid_profiles"
TABLE = json.loads((PROFILES / "reference" / "annex_e_table.json").read_text(encoding="utf-8"))
ROWS = [r for r in TABLE["attributes"] if not r["pattern"] and r["vr"]]
SHIFT = -400
P = Pseudonymiser(key=bytes(range(32)), pseudonym="ERN-1", date_shift_days=SHIFT)
OPTIONS = [
    "retain_uids",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
    "retain_longitudinal_full_dates",
    "retain_longitudinal_modified_dates",
]


def profile_with(tmp_path: Path, *options: str) -> Profile:
    directory = tmp_path / "profiles"
    shutil.copytree(PROFILES, directory)
    toml = (directory / "profiles.toml").read_text(encoding="utf-8")
    listed = ", ".join(f'"{o}"' for o in options)
    toml += f'\n[profiles.test]\nversion = "1"\nrecipes = ["basic.dicom"]\noptions = [{listed}]\n'
    (directory / "profiles.toml").write_text(toml, encoding="utf-8")
    return load_profiles(directory).get("test")


def test_option_recipes_are_generated_from_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_options", PROFILES / "generate_options.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "generate_options", module)  # for its dataclasses
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0


def value_for(tag: int, vr: str) -> Any:
    hex_tag = f"{tag:08X}"
    values: dict[str, Any] = {
        "AE": f"AE{hex_tag}", "AS": "045Y", "CS": f"C{hex_tag}", "DA": "20240315",
        "DS": "1.5", "DT": "20240315123456", "IS": "7", "LO": f"lo {hex_tag}",
        "LT": f"lt {hex_tag}", "ST": f"st {hex_tag}", "UT": f"ut {hex_tag}",
        "UC": f"uc {hex_tag}", "PN": f"Doe{hex_tag}", "SH": f"S{hex_tag}", "TM": "123456",
        "UI": f"1.2.999.77.{tag}", "UR": f"http://example.com/{hex_tag}",
        "OB": hex_tag.encode("ascii"), "UN": hex_tag.encode("ascii"), "US": 3,
    }
    if vr == "SQ":
        inner = Dataset()
        inner.CodeValue = f"V{hex_tag}"
        inner.CodingSchemeDesignator = "99ORIG"
        inner.CodeMeaning = f"m {hex_tag}"
        return Sequence([inner])
    return values[vr]


def tag_of(row: dict[str, Any]) -> int:
    return int(row["tag"][1:5] + row["tag"][6:10], 16)


def build(rows: list[dict[str, Any]]) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.999.77.1"
    for row in rows:
        tag = tag_of(row)
        elem = DataElement(tag, row["vr"], value_for(tag, row["vr"]))
        (ds.file_meta if tag >> 16 == 2 else ds)[tag] = elem
    return ds


def changed(option: str, row: dict[str, Any]) -> bool:
    code = row["options"].get(option)
    if code == "K":
        return True
    return (
        option == "retain_longitudinal_modified_dates"
        and code == "C"
        and row["vr"] in ("DA", "DT", "TM")
    )


def cases() -> list[tuple[str, dict[str, Any]]]:
    """(option, row) for rows the option changes; command (0000) and file-meta
    (0002) rows are left out: they cannot be written inside a dataset."""
    return [
        (option, row)
        for option in OPTIONS
        for row in ROWS
        if tag_of(row) >> 16 not in (0, 2) and changed(option, row)
    ]


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    """Each option over basic, applied to a dataset of its K/C rows, read from bytes."""
    out: dict[str, Dataset] = {}
    for option in OPTIONS:
        profile = profile_with(tmp_path_factory.mktemp(option), option)
        rows = [row for o, row in cases() if o == option]
        ds = build(rows)
        ds.file_meta.TransferSyntaxUID = UID(ExplicitVRLittleEndian)
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        back = dcmread(io.BytesIO(buffer.getvalue()))
        profile.apply(back, P)
        out[option] = back
    return out


@pytest.mark.parametrize(
    ("option", "row"), cases(), ids=[f"{o}-{r['tag']}" for o, r in cases()]
)
def test_option_row(option: str, row: dict[str, Any], applied: dict[str, Dataset]) -> None:
    tag = tag_of(row)
    ds = applied[option]
    original = value_for(tag, row["vr"])
    assert tag in ds, f"{row['tag']} must be kept by {option}"
    value = ds[tag].value
    code = row["options"][option]
    if code == "K" or row["vr"] == "TM":
        if row["vr"] == "SQ":
            assert value[0].CodeValue == original[0].CodeValue
        elif row["vr"] in ("OB", "UN"):
            assert bytes(value) == original
        else:
            assert str(value) == str(original)
    elif row["vr"] == "DA":
        assert value == shift_da(original, SHIFT)
    else:
        assert value == shift_dt(original, SHIFT)


def ct() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.999.77.1"
    ds.StudyInstanceUID = "1.2.999.77.2"
    ds.add(DataElement(0x0040A124, "UI", "1.2.999.77.3"))  # UID: U, not retained
    ds.add(DataElement(0x00209999, "UI", "1.2.999.77.4"))  # not in the table
    ds.StudyDate = "20240315"
    ds.StudyTime = "101010"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.InstitutionName = "St Elsewhere"
    ds.StationName = "CT-2"
    return ds


def test_retain_uids(tmp_path: Path) -> None:
    ds = ct()
    profile_with(tmp_path, "retain_uids").apply(ds, P)
    assert ds.StudyInstanceUID == "1.2.999.77.2"
    assert ds[0x00209999].value == "1.2.999.77.4"
    assert ds[0x0040A124].value == P.uid("1.2.999.77.3")  # the table keeps U here
    codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113110"]


def test_modified_dates(tmp_path: Path) -> None:
    ds = ct()
    profile_with(tmp_path, "retain_longitudinal_modified_dates").apply(ds, P)
    assert ds.StudyDate == shift_da("20240315", SHIFT)
    assert ds.StudyTime == "101010"
    assert ds.PatientBirthDate == ""  # not part of the option: Z
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert ds.StudyInstanceUID == P.uid("1.2.999.77.2")


def test_options_compose(tmp_path: Path) -> None:
    ds = ct()
    profile = profile_with(
        tmp_path, "retain_patient_characteristics", "retain_institution_identity",
        "retain_longitudinal_full_dates",
    )
    profile.apply(ds, P)
    assert ds.PatientSex == "F" and ds.InstitutionName == "St Elsewhere"
    assert ds.StudyDate == "20240315"
    assert ds.StationName == "ANONYMIZED"  # device identity not retained
    assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == [
        "113100", "113108", "113112", "113106"
    ]


def test_date_options_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"excludes 'retain_longitudinal_modified_dates'"):
        profile_with(
            tmp_path, "retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"
        )


# ---------------------------------------------------------------------------
# Clean Descriptors / Structured Content: the text cleaner (clean_text.py)


def cleaner() -> Any:
    from dicom_service.deidentify.clean_text import TextCleaner

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Ødegård^Åsa"
    ds.PatientID = "NO-ODG-5581"
    ds.OtherPatientNames = "Παπαδοπούλου^Ελευθερία"
    ds.ReferringPhysicianName = "Müller-Lüdenscheidt^Jürgen^^Dr. med."
    ds.AccessionNumber = "ACC-31415"
    ds.PatientAddress = "Fjordveien 42, 9999 Fjordvik"
    ds.PatientTelephoneNumbers = "+44 161 496 0999"
    ds.RequestAttributesSequence = Sequence([Dataset()])
    ds.RequestAttributesSequence[0].ScheduledPerformingPhysicianName = "Kühnemund^Götz"
    return TextCleaner.from_dataset(ds)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("UL abdomen - Åsa Ødegård (NO-ODG-5581)", "UL abdomen - [removed] ([removed])"),
        ("ODEGARD, ASA", "[removed], [removed]"),
        ("patient oedegaard", "patient [removed]"),
        ("ref NOODG5581 / no odg 5581", "ref [removed] / [removed]"),
        ("Ασθενής: ΠΑΠΑΔΟΠΟΥΛΟΥ", "Ασθενής: [removed]"),
        # a capitalised word before a lone family name goes too (a relative's
        # first name), even when it is not a name: documented over-removal
        ("Patient Ødegård", "[removed]"),
        ("seen by Dr Muller-Ludenscheidt", "seen by [removed]"),
        ("MTRA Götz Kuehnemund", "MTRA [removed]"),
        ("brother Eirik Ødegård also affected", "brother [removed] also affected"),
        ("Dr House and Prof. Jane Q. Public", "[removed] and [removed]"),
        ("call +1-202-555-0147 or 0161 496 0999", "call [removed] or [removed]"),
        ("mail jane.doe@example.org", "mail [removed]"),
        (
            "born 29.02.1988, seen 1988-02-29 and 02/29/1988",
            "born [removed], seen [removed] and [removed]",
        ),
        ("seen 5 September 2024, 20240905", "seen [removed], [removed]"),
        ("lives at Fjordveien 42", "lives at [removed]"),
        ("acc ACC-31415", "acc [removed]"),
        ("compare 1.2.826.0.1.3680043.10.1234.77.1 (prior)", "compare [removed] (prior)"),
        ("see 2.25.339723123456789012345.", "see [removed]."),
        ("protocol v1.2.3, 1.5 mm, host 10.0.0.1", "protocol v1.2.3, 1.5 mm, host 10.0.0.1"),
        ("CT thorax 2.5 mm, 120 kV, W 400 L 40", "CT thorax 2.5 mm, 120 kV, W 400 L 40"),
        ("T2 TSE tra 3.0 x 3.0 x 5.0", "T2 TSE tra 3.0 x 3.0 x 5.0"),
        # capitals that are modalities or diagnoses, not titles
        ("MR Knee Left, DR Chest PA", "MR Knee Left, DR Chest PA"),
        ("SR Panel Report", "SR Panel Report"),
        ("MS Lesion Follow-up", "MS Lesion Follow-up"),
        ("HERR Kühnemund", "[removed]"),
        ("", ""),
    ],
)
def test_clean_text(text: str, expected: str) -> None:
    assert cleaner().clean(text) == expected


def _explicit_element(tag: int, vr: str, value: bytes) -> bytes:
    """One element in explicit VR little endian, padded to even length."""
    if len(value) % 2:
        value += b"\x00" if vr in ("OB", "UN", "UI") else b" "
    head = struct.pack("<HH2s", tag >> 16, tag & 0xFFFF, vr.encode("ascii"))
    if vr in ("OB", "OW", "UN", "UT", "UC", "UR", "SQ"):
        return head + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def _cleaned_description(tag: int, vr: str, value: bytes, text: bytes) -> set[str]:
    """StudyDescription ``text`` of a data set whose element ``tag`` arrives
    as ``vr`` holding ``value``, after the Clean Descriptors option; with
    and without an association's cache (one result each, as a set)."""
    from dicom_service.deidentify.cache import DeidCache
    from dicom_service.dicom.parse import parse_dataset

    elements = {
        0x00080005: _explicit_element(0x00080005, "CS", b"ISO_IR 192"),
        0x00080016: _explicit_element(0x00080016, "UI", CTImageStorage.encode()),
        0x00080018: _explicit_element(0x00080018, "UI", b"1.2.999.77.3"),
        0x00081030: _explicit_element(0x00081030, "LO", text),
        0x0020000D: _explicit_element(0x0020000D, "UI", b"1.2.999.77.1"),
        0x0020000E: _explicit_element(0x0020000E, "UI", b"1.2.999.77.2"),
        tag: _explicit_element(tag, vr, value),
    }
    raw = b"".join(elements[t] for t in sorted(elements))
    out = set()
    for cache in (None, DeidCache()):
        ds = parse_dataset(raw, ExplicitVRLittleEndian)
        _CLEANING.apply(ds, P, cache)
        out.add(str(ds.StudyDescription))
    return out


_CLEANING = load_profiles(PROFILES).active  # the default: Clean Descriptors among its options


@pytest.mark.parametrize("vr", ["PN", "LO", "SH", "UT", "LT", "CS", "OB", "UN"])
@pytest.mark.parametrize("keyword", ["PatientName", "OtherPatientNames",
                                     "ReferringPhysicianName", "OperatorsName"])
def test_names_are_cleaned_whatever_vr_they_arrive_with(keyword: str, vr: str) -> None:
    """A person name sent with another VR than PN (a sender's or a converter's
    error) is still one of the instance's own names: its descriptors lose it."""
    assert any(o.name == "clean_descriptors" for o in _CLEANING.options)
    got = _cleaned_description(tag_for_keyword(keyword), vr, b"Zyxwa^Quenbel",
                               b"Review of Quenbel Zyxwa, follow-up")
    assert got == {"Review of [removed], follow-up"}


@pytest.mark.parametrize("vr", ["LO", "OB", "UN", "UT"])
@pytest.mark.parametrize("keyword", ["PatientID", "AccessionNumber", "StudyID",
                                     "PatientAddress"])
def test_identifiers_are_cleaned_whatever_vr_they_arrive_with(keyword: str, vr: str) -> None:
    """The same for identifiers and addresses sent in a binary VR (OB, UN):
    their bytes are read as text in the data set's character set."""
    got = _cleaned_description(tag_for_keyword(keyword), vr, "QX-Ødeg-88231".encode(),
                               "case QX-Ødeg-88231 review".encode())
    assert got == {"case [removed] review"}


def test_clean_value_fits_the_vr() -> None:
    c = cleaner()
    assert c.clean_value("Ødegård", "AE") == "ANONYMIZED"
    assert c.clean_value("ok", "SH") == "ok"
    assert len(str(c.clean_value("x" * 60 + " Ødegård", "LO"))) <= 64
    assert c.clean_value(["Ødegård", "fine"], "LO") == ["[removed]", "fine"]
    assert "Ødegård" not in repr(c)
