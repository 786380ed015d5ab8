"""profiles.toml: loading, validation with file and line, hashing, layering."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicom_service.deidentify import (
    ProfileError,
    ProfileSet,
    Pseudonymiser,
    RecipeError,
    load_profiles,
)
from dicom_service.deidentify.plan import Kind

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "deid_profiles"
P = Pseudonymiser(key=bytes(range(32)), pseudonym="ERN-1", date_shift_days=-40)

BASE = """\
active = "basic"

[profiles.basic]
version = "1"
description = "test"
recipes = ["basic.dicom"]
"""


def write(directory: Path, toml: str, **recipes: str) -> Path:
    shutil.copy(PROFILES / "basic.dicom", directory / "basic.dicom")
    (directory / "profiles.toml").write_text(toml, encoding="utf-8")
    for name, text in recipes.items():
        path = directory / name.replace("__", "/").replace("_dicom", ".dicom")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return directory


def test_repository_profiles_load() -> None:
    profiles = load_profiles(PROFILES)
    assert isinstance(profiles, ProfileSet)
    assert profiles.names() == ["basic", "basic-pixels", "default"]
    assert profiles.active is profiles.get("default")
    basic = profiles.get("basic")
    assert (basic.name, basic.version) == ("basic", "2")
    assert len(basic.sha256) == 64 and int(basic.sha256, 16) >= 0
    with pytest.raises(KeyError, match="no profile named 'nope'"):
        profiles.get("nope")


def test_hash_is_stable_and_follows_the_recipe_text(tmp_path: Path) -> None:
    first = load_profiles(write(tmp_path, BASE)).active.sha256
    assert load_profiles(tmp_path).active.sha256 == first
    with (tmp_path / "basic.dicom").open("a", encoding="utf-8") as f:
        f.write("KEEP (0008,0060)\n")
    assert load_profiles(tmp_path).active.sha256 != first
    (tmp_path / "profiles.toml").write_text(
        BASE + "[profiles.basic.parameters]\ncontributing_equipment = false\n", encoding="utf-8"
    )
    assert load_profiles(tmp_path).active.sha256 not in (first,)


BAD_TOML = [
    (BASE.replace('active = "basic"', 'active = "other"'), 1, "active must name a profile"),
    ('colour = 1\n' + BASE, 1, "unknown top-level key 'colour'"),
    (BASE + "colour = 1\n", 7, "profile 'basic': unknown key 'colour'"),
    (BASE.replace('version = "1"', "version = 1"), 4, "version must be a string"),
    (BASE.replace("recipes = [", "recipe = ["), 6, "unknown key 'recipe'"),
    (
        BASE.replace('["basic.dicom"]', '["missing.dicom"]'), 6,
        "recipe 'missing.dicom' does not exist",
    ),
    (BASE.replace('["basic.dicom"]', '["../basic.dicom"]'), 6, "relative path inside the profiles"),
    (BASE.replace('["basic.dicom"]', '["/etc/passwd"]'), 6, "relative path inside the profiles"),
    (BASE.replace('["basic.dicom"]', "[]"), 6, "recipes must be a non-empty list"),
    (BASE + 'options = ["retain_uids"]\n', 7, "option 'retain_uids' is not defined"),
    (BASE + "[profiles.basic.parameters]\nfrob = 1\n", 8, "unknown parameter 'frob'"),
    (BASE + "[profiles.basic.parameters]\nremove_private = 1\n", 8, "must be a bool"),
    (
        BASE + '[profiles.basic.parameters]\nlongitudinal_temporal_information_modified = "X"\n',
        8, "must be one of REMOVED, MODIFIED, UNMODIFIED",
    ),
    (BASE.replace("[profiles.basic]", "[profiles.Basic]"), 3, "must be 1-32 of a-z"),
    ("active = \n", 1, "invalid TOML"),
    (BASE + "[profiles.basic\n", 7, "invalid TOML"),
]


@pytest.mark.parametrize(("toml", "line", "message"), BAD_TOML, ids=[b[2] for b in BAD_TOML])
def test_bad_profiles_toml_names_file_and_line(
    tmp_path: Path, toml: str, line: int, message: str
) -> None:
    write(tmp_path, toml)
    with pytest.raises(ProfileError, match=rf"^profiles\.toml:{line}: .*{message}"):
        load_profiles(tmp_path)


def test_bad_recipe_line_stops_loading(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    with (tmp_path / "basic.dicom").open("a", encoding="utf-8") as f:
        f.write("FROB PatientName\n")
    lines = (tmp_path / "basic.dicom").read_text(encoding="utf-8").count("\n")
    with pytest.raises(RecipeError, match=rf"^basic\.dicom:{lines}: unknown action 'FROB'"):
        load_profiles(tmp_path)


def test_every_profile_is_compiled_at_load(tmp_path: Path) -> None:
    toml = BASE + '\n[profiles.broken]\nversion = "1"\nrecipes = ["broken.dicom"]\n'
    write(tmp_path, toml, broken_dicom="FORMAT dicom\n%header\nREPLACE StudyDate soon\n")
    with pytest.raises(RecipeError, match=r"^broken\.dicom:3: .*'soon' is not a valid DA"):
        load_profiles(tmp_path)


OPTIONS = BASE.replace(
    'recipes = ["basic.dicom"]', 'recipes = ["basic.dicom"]\noptions = ["device"]'
) + """
[options.device]
recipe = "options/device.dicom"
code = "113109"
meaning = "Retain Device Identity Option"
"""


def test_option_overlays_the_base_and_is_recorded(tmp_path: Path) -> None:
    write(
        tmp_path, OPTIONS,
        options__device_dicom="FORMAT dicom\n%header\nKEEP StationName\nKEEP DeviceSerialNumber\n",
    )
    profile = load_profiles(tmp_path).active
    assert profile.recipes == ("basic.dicom", "options/device.dicom")
    ds = Dataset()
    ds.StationName = "CT-ROOM-2"
    ds.DeviceSerialNumber = "SN-42"
    ds.InstitutionName = "St Elsewhere"
    profile.apply(ds, P)
    assert ds.StationName == "CT-ROOM-2" and ds.DeviceSerialNumber == "SN-42"
    assert ds.InstitutionName == "ANONYMIZED"  # not in the option: the base decides
    codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113109"]


def test_option_code_is_checked(tmp_path: Path) -> None:
    write(tmp_path, OPTIONS.replace('"113109"', '"999999"'),
          options__device_dicom="FORMAT dicom\n%header\n")
    with pytest.raises(ProfileError, match=r"^profiles\.toml:11: .*CID 7050 option code"):
        load_profiles(tmp_path)


RULES = """\
FORMAT dicom
%header
REMOVE ALL
KEEP contains:Modality
BLANK startswith:Study
REMOVE startswith:Study
REPLACE StudyID 42
KEEP (0009,"ACME 1.0",01)
ADD PatientIdentityRemoved NO
"""


def test_precedence_within_a_recipe(tmp_path: Path) -> None:
    toml = 'active = "t"\n[profiles.t]\nversion = "1"\nrecipes = ["t.dicom"]\n'
    write(tmp_path, toml, t_dicom=RULES)
    profile = load_profiles(tmp_path).active
    ds = Dataset()
    ds.Modality = "CT"  # KEEP beats REMOVE among expanders (deid's precedence)
    ds.StudyDate = "20240315"  # REMOVE beats BLANK
    ds.StudyID = "S1"  # a tag rule beats every expander
    ds.Manufacturer = "ACME"  # REMOVE ALL
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "kept by creator")
    block.add_new(0x02, "LO", "removed")
    other = ds.private_block(0x0011, "OTHER", create=True)
    other.add_new(0x01, "LO", "removed")
    ds.ReferencedSeriesSequence = Sequence([Dataset()])
    profile.apply(ds, P)
    assert ds.Modality == "CT"
    assert "StudyDate" not in ds
    assert ds.StudyID == "42"
    assert "Manufacturer" not in ds
    assert ds[0x00091001].value == "kept by creator"
    assert 0x00091002 not in ds
    assert ds[0x00090010].value == "ACME 1.0"  # creator kept with its kept element
    assert 0x00110010 not in ds and 0x00111001 not in ds
    assert ds.PatientIdentityRemoved == "YES"  # the engine's marker wins over the recipe


@pytest.mark.parametrize("read_back", [False, True], ids=["memory", "bytes"])
def test_literals_for_binary_numbers_respect_byte_order(tmp_path: Path, read_back: bool) -> None:
    import io

    from pydicom import dcmread, dcmwrite
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, CTImageStorage, ExplicitVRBigEndian

    toml = 'active = "t"\n[profiles.t]\nversion = "1"\nrecipes = ["t.dicom"]\n'
    write(tmp_path, toml, t_dicom="FORMAT dicom\n%header\nREPLACE (0018,6016) 7\n")
    profile = load_profiles(tmp_path).active
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.999.5"
    ds.RegionFlags = 123456
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(ExplicitVRBigEndian)
    if read_back:
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        ds = dcmread(io.BytesIO(buffer.getvalue()))
    profile.apply(ds, P)
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    assert dcmread(io.BytesIO(out.getvalue())).RegionFlags == 7


def test_unknown_private_elements_follow_remove_private(tmp_path: Path) -> None:
    """The engine removes standard tags no dictionary knows; a private tag is
    not one of them: with ``remove_private = false`` and no rule naming it,
    it stays (basic.dicom's own rule for odd groups is left out here)."""
    toml = BASE + "[profiles.basic.parameters]\nremove_private = false\n"
    text = (PROFILES / "basic.dicom").read_text(encoding="utf-8").replace(
        "REMOVE contains:^[0-9a-f]{3}[13579bdf][0-9a-f]{4}$\n", "")
    write(tmp_path, toml)
    (tmp_path / "basic.dicom").write_text(text, encoding="utf-8")
    plan = load_profiles(tmp_path).active._plan
    assert plan is not None
    assert plan.op(0x00091010, "LO").kind == Kind.KEEP
    assert plan.op(0x00081234, "LO").rule == "unknown_element"
