"""Leak check of the active profile over the synthetic sample set, and the
option columns of PS3.15 Table E.1-1 checked row by row.

Everything here is synthetic (``sample_data``: invented names and numbers).
Test failures name tags, paths and manifest categories, never values.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import random
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread, dcmwrite
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

from dicom_service.deidentify import Profile, Pseudonymiser, derive_date_shift, load_profiles
from dicom_service.deidentify.clean_text import REMOVED
from dicom_service.deidentify.engine import REGISTERED_UIDS
from dicom_service.deidentify.plan import Kind
from dicom_service.deidentify.pseudonyms import shift_da, shift_dt
from sample_data.generate import Manifest, generate, searchable_bytes

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "deid_profiles"
TABLE = json.loads((PROFILES / "reference" / "annex_e_table.json").read_text(encoding="utf-8"))
COLUMNS = list(TABLE["option_columns"])
ACTIVE = load_profiles(PROFILES).active


def pseudonymiser(patient_id: str, issuer: str | None) -> Pseudonymiser:
    """Stand-in for an enrolment: key and pseudonym derived from the patient."""
    key = hashlib.sha256(f"test-enrolment|{issuer}|{patient_id}".encode()).digest()
    pseudonym = "ERN-" + key.hex()[:10].upper()
    return Pseudonymiser(key=key, pseudonym=pseudonym, date_shift_days=derive_date_shift(key))


def profile_with(tmp_path: Path, *options: str, base: str = "basic") -> Profile:
    """A profile ``test`` = the recipes of ``base`` + its options + ``options``."""
    directory = tmp_path / "profiles"
    shutil.copytree(PROFILES, directory)
    profiles = load_profiles(directory)
    chosen = [o.name for o in profiles.get(base).options] + list(options)
    toml = (directory / "profiles.toml").read_text(encoding="utf-8")
    listed = ", ".join(f'"{o}"' for o in chosen)
    toml += f'\n[profiles.test]\nversion = "1"\nrecipes = ["basic.dicom"]\noptions = [{listed}]\n'
    (directory / "profiles.toml").write_text(toml, encoding="utf-8")
    return load_profiles(directory).get("test")


def deidentify_set(src: Path, dst: Path, manifest: Manifest, profile: Profile) -> None:
    for entry in manifest.files:
        ds = dcmread(src / entry["path"])
        profile.apply(ds, pseudonymiser(entry["patient_id"], entry["issuer"]))
        out = dst / entry["path"]
        out.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(out)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Manifest]:
    """(input dir, de-identified dir, manifest) with the active profile."""
    src = tmp_path_factory.mktemp("sample")
    manifest = generate(src, ct_slices=100)
    dst = tmp_path_factory.mktemp("deidentified")
    deidentify_set(src, dst, manifest, ACTIVE)
    return src, dst, manifest


# ---------------------------------------------------------------------------
# 1. No planted value survives


def test_no_planted_value_survives(sample: tuple[Path, Path, Manifest]) -> None:
    _, dst, manifest = sample
    cache: dict[str, bytes] = {}
    leaks = []
    checked = 0
    for entry in manifest.planted:
        if entry["kind"] not in ("element", "overlay"):
            continue  # pixels: the pixel-cleaning check
        needle = entry["value"].encode(entry["encoding"])
        for path in entry["files"]:
            data = cache.get(path)
            if data is None:
                data = cache[path] = searchable_bytes(dst / path)
            checked += 1
            if needle in data:
                leaks.append(f"{entry['category']} at {entry['where']} in {path}")
    assert checked > 1000
    assert leaks == []


def test_overlay_bitmaps_are_gone(sample: tuple[Path, Path, Manifest]) -> None:
    _, dst, manifest = sample
    paths = {p for e in manifest.planted if e["kind"] == "overlay" for p in e["files"]}
    assert paths
    for path in paths:
        ds = dcmread(dst / path)
        assert not [e.tag for e in ds if e.tag.group & 0xFF00 == 0x6000], path


def test_descriptors_are_kept_cleaned(sample: tuple[Path, Path, Manifest]) -> None:
    """Clean Descriptors keeps descriptions, minus the identifiers."""
    src, dst, manifest = sample
    if "clean_descriptors" not in {o.name for o in ACTIVE.options}:
        pytest.skip("the active profile does not clean descriptors")
    ct = next(f["path"] for f in manifest.files if f["label"] == "ct")
    before, after = dcmread(src / ct), dcmread(dst / ct)
    assert after.SeriesDescription == before.SeriesDescription  # nothing to remove
    assert after.StudyDescription.startswith("CT chest for ")
    assert REMOVED in after.StudyDescription


# Planted identifiers moved where a sender's mistakes or a hostile sender put
# them: another VR on the wire, inside an item of a sequence the profile keeps
# (and walks), inside such a sequence sent as UN (implicit VR items, defined
# or undefined length) or as OB, under a standard tag no dictionary knows.
# Only elements whose tag the profile acts on are moved: a tag it keeps by
# design (a TextValue outside its content tree) is no leak.

_WIRE_VRS = ("UN", "OB", "UT", "LT", "ST", "LO", "SH", "UC", "CS", "PN")
_KEPT_SEQUENCES = (0x00081140, 0x00081115, 0x00081250, 0x00089121, 0x00400275, 0x00540016)
_UNKNOWN_TAGS = (0x00081234, 0x00201236, 0x0040F00E)  # even, in no dictionary
_MUTATIONS = ("vr", "nest", "nest_un", "vr_and_nest", "unknown_tag", "sequence_as_ob")


def _encoded(ds: Dataset, implicit: bool, charset: Any = None) -> bytes:
    """``ds`` encoded; an item with its parent's ``charset``."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, implicit
    if charset is None:
        write_dataset(buf, ds)
    else:
        write_dataset(buf, ds, parent_encoding=[charset] if isinstance(charset, str)
                      else list(charset))
    return buf.getvalue()


def _explicit_with(raw: bytes, tag: int, element: bytes) -> bytes | None:
    """``element`` inserted in tag order among the top-level elements of an
    explicit VR little endian data set (``None`` if an undefined length
    before its place cannot be stepped over)."""
    pos = 0
    while pos + 8 <= len(raw):
        group, number, vr = struct.unpack_from("<HH2s", raw, pos)
        if (group << 16 | number) > tag:
            return raw[:pos] + element + raw[pos:]
        if vr in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UT", b"UN", b"UC",
                  b"UR", b"SV", b"UV"):
            length, head = struct.unpack_from("<I", raw, pos + 8)[0], 12
        else:
            length, head = struct.unpack_from("<H", raw, pos + 6)[0], 8
        if length == 0xFFFFFFFF:
            return None
        pos += head + length
    return raw + element


def _carriers(ds: Dataset, needles: list[bytes], path: tuple[tuple[int, int], ...] = ()
              ) -> Iterator[tuple[tuple[tuple[int, int], ...], int]]:
    """Where (item path, tag) an element the profile acts on holds a needle."""
    plan = ACTIVE._plan
    assert plan is not None
    for elem in ds:
        if elem.VR == "SQ":
            for index, child in enumerate(elem.value):
                yield from _carriers(child, needles, (*path, (int(elem.tag), index)))
            continue
        if elem.tag.is_private or plan.op(int(elem.tag), elem.VR).kind == Kind.KEEP:
            continue
        value = elem.value
        data = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
        if any(n in data for n in needles):
            yield path, int(elem.tag)


def test_moved_and_mistyped_identifiers_do_not_survive(
        sample: tuple[Path, Path, Manifest], monkeypatch: pytest.MonkeyPatch) -> None:
    import pydicom.config

    # as the service runs pydicom (app._quiet_pydicom): a value invalid for
    # the VR it was given is taken as it is, without a warning quoting it
    for mode in ("reading_validation_mode", "writing_validation_mode"):
        monkeypatch.setattr(pydicom.config.settings, mode, pydicom.config.IGNORE)
    from dicom_service.deidentify.cache import DeidCache
    from dicom_service.dicom.parse import parse_dataset
    from dicom_service.dicom.part10 import encode_instance

    src, _, manifest = sample
    needles: dict[str, list[bytes]] = {}
    for entry in manifest.planted:
        if entry["kind"] == "element":
            for path in entry["files"]:
                needles.setdefault(path, []).append(entry["value"].encode(entry["encoding"]))
    files = [f for f in manifest.files if f["path"] in needles
             and f["transfer_syntax_uid"] in (ExplicitVRLittleEndian, "1.2.840.10008.1.2")]
    rng = random.Random(20261126)
    done: dict[str, int] = dict.fromkeys(_MUTATIONS, 0)
    leaks = []
    for _ in range(500):
        entry = rng.choice(files)
        ds = dcmread(src / entry["path"])
        ts = str(ds.file_meta.TransferSyntaxUID)
        implicit = ts != ExplicitVRLittleEndian
        places = list(_carriers(ds, needles[entry["path"]]))
        if not places:
            continue
        path, tag = rng.choice(places)
        holder = ds
        for sequence, index in path:
            holder = holder[sequence].value[index]
        elem = holder[tag]
        value = elem.value if isinstance(elem.value, bytes) else str(elem.value).encode("utf-8")
        mutation = rng.choice(_MUTATIONS if not implicit else ("nest", "unknown_tag"))
        if mutation in ("vr", "vr_and_nest"):
            vr = rng.choice(_WIRE_VRS)
            holder[tag] = DataElement(tag, vr, value if vr in ("UN", "OB")
                                      else value.decode("utf-8", "replace"))
        into = rng.choice(_KEPT_SEQUENCES)
        if mutation == "unknown_tag":
            into = rng.choice(_UNKNOWN_TAGS)
            vr = "UN" if implicit else rng.choice(("LO", "UT", "SQ"))
            if vr == "SQ":
                copy = Dataset()
                copy[tag] = holder[tag]
                ds.add(DataElement(into, "SQ", Sequence([copy])))
            else:
                ds.add(DataElement(into, vr, value if vr == "UN"
                                   else value.decode("utf-8", "replace")))
        if mutation in ("nest", "vr_and_nest"):
            copy = Dataset()
            copy[tag] = holder[tag]
            ds.add(DataElement(into, "SQ", Sequence([copy])))
        raw = _encoded(ds, implicit)
        if mutation in ("nest_un", "sequence_as_ob"):  # the item in implicit VR
            copy = Dataset()
            copy[tag] = holder[tag]
            inner = _encoded(copy, True, ds.get("SpecificCharacterSet", "ISO_IR 6"))
            items = b"\xfe\xff\x00\xe0" + struct.pack("<I", len(inner)) + inner
            vr_bytes = b"UN" if mutation == "nest_un" else b"OB"
            head = struct.pack("<HH", into >> 16, into & 0xFFFF) + vr_bytes + b"\x00\x00"
            if mutation == "sequence_as_ob" or rng.random() < 0.5:
                element = head + struct.pack("<I", len(items)) + items
            else:
                element = head + b"\xff\xff\xff\xff" + items + b"\xfe\xff\xdd\xe0" + bytes(4)
            spliced = _explicit_with(raw, into, element)
            if spliced is None:
                continue
            raw = spliced
        out = parse_dataset(raw, ts)  # as the listener reads it
        out.file_meta = FileMetaDataset()
        out.file_meta.TransferSyntaxUID = UID(ts)
        ACTIVE.apply(out, pseudonymiser(entry["patient_id"], entry["issuer"]), DeidCache())
        written = encode_instance(out, str(out.file_meta.TransferSyntaxUID)).data
        done[mutation] += 1
        if any(n in written for n in needles[entry["path"]]):
            leaks.append(f"{mutation} ({tag:08X}) from {entry['path']} into {into:08X}")
    assert min(done.values()) >= 30, done
    assert leaks == []


def test_original_uids_in_text_and_addresses_do_not_survive(
        sample: tuple[Path, Path, Manifest], tmp_path: Path) -> None:
    """A sender's comments and descriptions may quote UIDs (a prior study to
    compare with), and its retrieve addresses embed them: no original UID
    survives in either (Clean Descriptors removes UIDs from text; the
    sending site's addresses are removed)."""
    src, _, manifest = sample
    originals = [u.encode("ascii") for u in manifest.original_uids]
    firsts = {f["label"]: f for f in manifest.files}  # one file of each kind
    leaks = []
    for entry in firsts.values():
        ds = dcmread(src / entry["path"])
        study, sop = ds.StudyInstanceUID, ds.SOPInstanceUID
        ds.StudyDescription = f"compare with {study}"[:64]
        ds.ImageComments = f"prior {sop}, series {ds.SeriesInstanceUID}"
        ds.RetrieveURL = f"https://pacs.example/dicom-web/studies/{study}"
        ds.ReferencedSeriesSequence = Sequence([Dataset()])
        ds.ReferencedSeriesSequence[0].RetrieveURI = f"https://pacs.example/wado?st={study}"
        ds.ReferencedSeriesSequence[0].SeriesInstanceUID = ds.SeriesInstanceUID
        ACTIVE.apply(ds, pseudonymiser(entry["patient_id"], entry["issuer"]))
        out = tmp_path / "out.dcm"
        ds.save_as(out)
        data = searchable_bytes(out)
        leaks += [f"{entry['label']}: an original UID" for u in originals if u in data]
        assert "RetrieveURL" not in ds and "RetrieveURI" not in ds.ReferencedSeriesSequence[0]
        assert REMOVED in ds.ImageComments, entry["label"]
    assert len(firsts) >= 5
    assert leaks == []


# ---------------------------------------------------------------------------
# 2. Markers


def test_markers(sample: tuple[Path, Path, Manifest]) -> None:
    _, dst, manifest = sample
    codes = ["113100", *(o.code for o in ACTIVE.options)]
    longitudinal = ACTIVE.marks.longitudinal
    for entry in manifest.files:
        ds = dcmread(dst / entry["path"])
        where = entry["path"]
        assert ds.PatientIdentityRemoved == "YES", where
        assert list(ds.DeidentificationMethod) == [
            f"dicom_service profile {ACTIVE.name} v{ACTIVE.version}",
            f"sha256 {ACTIVE.sha256[:16]}",
        ], where
        seq = ds.DeidentificationMethodCodeSequence
        assert [i.CodeValue for i in seq] == codes, where
        assert {i.CodingSchemeDesignator for i in seq} == {"DCM"}, where
        assert ds.LongitudinalTemporalInformationModified == longitudinal, where
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID, where


# ---------------------------------------------------------------------------
# 3. One patient, two studies


def test_two_studies_of_one_patient_share_pseudonym_and_date_shift(
    sample: tuple[Path, Path, Manifest], tmp_path: Path
) -> None:
    src, dst, manifest = sample
    baseline = next(s for s in manifest.studies if s["role"] == "baseline")
    follow_up = next(s for s in manifest.studies if s["role"] == "follow-up")
    assert (baseline["patient_id"], baseline["issuer"]) == (
        follow_up["patient_id"], follow_up["issuer"]
    )
    first = next(f for f in manifest.files if f["study_uid"] == baseline["study_uid"])
    second = next(
        f for f in manifest.files
        if f["study_uid"] == follow_up["study_uid"] and f["modality"] == "MR"
    )
    # the active profile: one pseudonym, the follow-up's reference to the baseline study holds
    a, b = dcmread(dst / first["path"]), dcmread(dst / second["path"])
    assert a.PatientName == b.PatientName == a.PatientID
    assert a.StudyInstanceUID != b.StudyInstanceUID
    # ReferencedStudySequence is X in the basic profile; where a reference to
    # the baseline survives it is the same keyed UID
    p = pseudonymiser(first["patient_id"], first["issuer"])
    assert p.uid(baseline["study_uid"]) == a.StudyInstanceUID
    refs = [i.ReferencedSOPInstanceUID for i in b.get("ReferencedStudySequence", [])]
    assert refs in ([], [a.StudyInstanceUID])
    others = {
        dcmread(dst / f["path"]).PatientID
        for f in manifest.files
        if (f["patient_id"], f["issuer"]) != (first["patient_id"], first["issuer"])
        and f["label"] != "ct"
    }
    assert a.PatientID not in others
    # the active profile shifts dates: one shift for both studies, so the interval stays
    assert "retain_longitudinal_modified_dates" in {o.name for o in ACTIVE.options}
    profile = ACTIVE
    shifted = []
    for entry in (first, second):
        ds = dcmread(src / entry["path"])
        original = ds.StudyDate
        profile.apply(ds, p)
        assert ds.StudyDate == shift_da(original, p.date_shift_days)
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        shifted.append(datetime.datetime.strptime(ds.StudyDate, "%Y%m%d"))
    original_gap = datetime.datetime.strptime(
        follow_up["study_date"], "%Y%m%d"
    ) - datetime.datetime.strptime(baseline["study_date"], "%Y%m%d")
    assert shifted[1] - shifted[0] == original_gap


# ---------------------------------------------------------------------------
# 4. UID references inside sequences resolve in the output set


def uid_refs(ds: Dataset, prefix: str = "", inside: bool = False) -> Iterator[tuple[str, str]]:
    """(path, UID) for every UI value inside a sequence, except class UIDs."""
    for elem in ds:
        if elem.VR == "SQ":
            for n, item in enumerate(elem.value or []):
                yield from uid_refs(item, f"{prefix}{elem.keyword or elem.tag}[{n}].", True)
        elif elem.VR == "UI" and inside and elem.value:
            values = elem.value if isinstance(elem.value, list | tuple) else [elem.value]
            for v in values:
                if str(v) not in REGISTERED_UIDS and "ClassUID" not in elem.keyword:
                    yield f"{prefix}{elem.keyword or elem.tag}", str(v)


def instance_uids(ds: Dataset) -> set[str]:
    return {
        str(ds.get(k)) for k in (
            "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"
        ) if ds.get(k)
    }


def test_uid_references_resolve(sample: tuple[Path, Path, Manifest]) -> None:
    src, dst, manifest = sample
    before: dict[str, Dataset] = {}
    after: dict[str, Dataset] = {}
    for entry in manifest.files:
        before[entry["path"]] = dcmread(src / entry["path"], stop_before_pixels=True)
        after[entry["path"]] = dcmread(dst / entry["path"], stop_before_pixels=True)
    uids_before = set().union(*(instance_uids(d) for d in before.values()))
    uids_after = set().union(*(instance_uids(d) for d in after.values()))
    assert not uids_before & uids_after
    resolving = dangling = 0
    problems = []
    for path, ds in after.items():
        original = dict(uid_refs(before[path]))
        for where, value in uid_refs(ds):
            was = original.get(where)
            if was is None:
                continue
            if was in uids_before:
                resolving += 1
                if value not in uids_after:
                    problems.append(f"{path}: {where} no longer resolves")
            else:
                dangling += 1
                if value == was or not value.startswith("2.25."):
                    problems.append(f"{path}: {where} was not replaced")
    assert problems == []
    assert resolving >= 5 and dangling >= 1


# ---------------------------------------------------------------------------
# 5. Each option column of Table E.1-1, row by row

NAME = "Quillfeather^Zaphodia"
PATIENT_ID = "Q-4471-ZQF"
IDENTIFIERS = ("Quillfeather", "Zaphodia", "Q-4471", "4471")
SHIFT = -400
P = Pseudonymiser(key=bytes(range(32)), pseudonym="ERN-1", date_shift_days=SHIFT)


def tag_of(row: dict[str, Any]) -> int:
    return int(row["tag"][1:5] + row["tag"][6:10], 16)


def value_for(tag: int, vr: str) -> Any:
    """A value for a row; text carries a benign word and the identifiers."""
    h = f"{tag:08X}"
    text = f"keep{h} Zaphodia Quillfeather {PATIENT_ID}"
    values: dict[str, Any] = {
        "AE": "Quillfeather", "AS": "045Y", "CS": f"C{h}", "DA": "20240315", "DS": "1.5",
        "DT": "20240315123456", "IS": "7", "LO": text, "LT": text, "ST": text, "UT": text,
        "UC": text, "PN": f"Doe{h}^Quillfeather", "SH": "Quillfeather", "TM": "123456",
        "UI": f"1.2.999.77.{tag}", "UR": f"http://example.com/{h}",
        "OB": b"Quillfeather", "UN": b"Quillfeather", "US": 3,
    }
    if vr == "SQ":
        inner = Dataset()
        inner.CodeValue = f"V{h}"
        inner.CodingSchemeDesignator = "99ORIG"
        inner.CodeMeaning = f"keep{h} Quillfeather"
        return Sequence([inner])
    return values.get(vr)


def table_rows() -> list[dict[str, Any]]:
    """Concrete rows with a value we can write (command and file-meta rows,
    and PatientName/PatientID, which the engine always sets, left out)."""
    rows = []
    for row in TABLE["attributes"]:
        if row["pattern"] or not row["vr"]:
            continue
        tag = tag_of(row)
        if tag >> 16 in (0x0000, 0x0002) or tag in (0x00100010, 0x00100020):
            continue
        if value_for(tag, row["vr"]) is None:
            continue
        rows.append(row)
    return rows


ROWS = table_rows()


def dataset_of_all_rows() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(ExplicitVRLittleEndian)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.999.77.1"
    ds.PatientName = NAME
    ds.PatientID = PATIENT_ID
    for row in ROWS:
        tag = tag_of(row)
        ds[tag] = DataElement(tag, row["vr"], value_for(tag, row["vr"]))
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return dcmread(io.BytesIO(buffer.getvalue()))


def rendered(ds: Dataset, tag: int) -> Any:
    if tag not in ds:
        return None
    value = ds[tag].value
    if isinstance(value, Sequence):
        return [sorted((str(e.tag), str(e.value)) for e in item) for item in value]
    return bytes(value) if isinstance(value, bytes) else str(value)


def contains_identifier(ds: Dataset, tag: int) -> bool:
    text = json.dumps(rendered(ds, tag), ensure_ascii=False)
    return any(i.casefold() in text.casefold() for i in IDENTIFIERS)


@pytest.fixture(scope="module")
def basic_output() -> Dataset:
    ds = dataset_of_all_rows()
    load_profiles(PROFILES).get("basic").apply(ds, P)
    return ds


@pytest.mark.parametrize("column", COLUMNS)
def test_option_column(
    column: str, basic_output: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """For ``column``: K rows keep their value, C rows are cleaned (no
    identifier left; text and sequences kept), all other rows exactly as
    under the basic profile."""
    original = dataset_of_all_rows()
    ds = dataset_of_all_rows()
    profile_with(tmp_path_factory.mktemp(column), column).apply(ds, P)
    problems = []
    counts = {"K": 0, "C": 0, "-": 0}
    for row in ROWS:
        tag, vr = tag_of(row), row["vr"]
        code = row["options"].get(column)
        name = f"{row['tag']} {vr} [{code}]"
        if column == "clean_graphics" and tag == 0x00700006:
            code = "C"  # implied by C on Graphic Annotation Sequence (its text)
        if code == "K":
            counts["K"] += 1
            if vr == "SQ":  # "cleaned for sequences": items kept and walked
                if [i.CodeValue for i in (ds[tag].value if tag in ds else [])] != [f"V{tag:08X}"]:
                    problems.append(f"{name}: sequence not kept")
            elif rendered(ds, tag) != rendered(original, tag):
                problems.append(f"{name}: not kept")
        elif code == "C":
            counts["C"] += 1
            if column == "retain_longitudinal_modified_dates":
                value = str(original[tag].value)
                expected = {
                    "DA": shift_da(value, SHIFT) if vr == "DA" else None,
                    "DT": shift_dt(value, SHIFT) if vr == "DT" else None,
                    "TM": value,
                }.get(vr, rendered(basic_output, tag))  # other VRs: not cleaned by rule
                if rendered(ds, tag) != expected:
                    problems.append(f"{name}: not shifted")
                continue
            if contains_identifier(ds, tag):
                problems.append(f"{name}: identifier left")
            if vr in ("LO", "LT", "ST", "UT", "UC") and f"keep{tag:08X}" not in str(
                rendered(ds, tag)
            ):
                problems.append(f"{name}: text not kept")
            if vr == "SQ" and not ds.get(tag):
                problems.append(f"{name}: sequence not kept")
            if vr == "CS" and rendered(ds, tag) != rendered(original, tag):
                problems.append(f"{name}: coded term not kept")
        else:
            counts["-"] += 1
            if rendered(ds, tag) != rendered(basic_output, tag):
                problems.append(f"{name}: differs from the basic profile")
    assert problems == []
    assert counts["K"] + counts["C"] > 0 or column == "retain_safe_private"


def test_retain_safe_private(tmp_path: Path) -> None:
    """Only the listed private attributes stay, with their creator."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.999.77.1"
    ds.PatientName = NAME
    safe = ds.private_block(0x7053, "Philips PET Private Group", create=True)
    safe.add_new(0x00, "DS", "0.000276")
    safe.add_new(0x01, "LO", "Quillfeather")  # not on the list
    vendor = ds.private_block(0x0029, "FAKEVENDOR 1.0", create=True)
    vendor.add_new(0x10, "LO", "Quillfeather")
    profile_with(tmp_path, "retain_safe_private").apply(ds, P)
    kept = {int(e.tag): e.value for e in ds if e.tag.is_private}
    assert kept == {0x70530010: "Philips PET Private Group", 0x70531000: "0.000276"}
    codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert codes[-1] == "113111"


def test_clean_structured_content_keeps_report_text(
    sample: tuple[Path, Path, Manifest], tmp_path: Path
) -> None:
    src, _, manifest = sample
    sr = next(f for f in manifest.files if f["label"] == "sr")
    profile = profile_with(tmp_path, "clean_structured_content", base=ACTIVE.name)
    ds = dcmread(src / sr["path"])
    profile.apply(ds, pseudonymiser(sr["patient_id"], sr["issuer"]))
    texts = [i.TextValue for i in ds.ContentSequence if "TextValue" in i]
    assert texts and all(t != "ANONYMIZED" for t in texts)
    assert any(REMOVED in t for t in texts)
    data = io.BytesIO()
    ds.save_as(data)
    for entry in manifest.planted:
        if entry["kind"] == "element" and sr["path"] in entry["files"]:
            assert entry["value"].encode(entry["encoding"]) not in data.getvalue(), entry["where"]


def test_clean_recognizable_visual_features_cannot_be_claimed(tmp_path: Path) -> None:
    from dicom_service.deidentify import ProfileError

    with pytest.raises(ProfileError, match="declared but not implemented"):
        profile_with(tmp_path, "clean_recognizable_visual_features")
