"""The one-pass engine on a synthetic CT with planted (fake) identifiers.

No real patient data: every value below is invented for the test.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread, dcmwrite
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicom_service.deidentify import Profile, Pseudonymiser, derive_date_shift, load_profiles
from dicom_service.deidentify.plan import Kind

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "deid_profiles"
KEY = bytes(range(32))
PSEUDONYM = "ERN-7K2QX9M4TD"

STUDY = "1.2.999.4242.1"  # invented; not under pydicom's root, which it writes itself
SERIES = "1.2.999.4242.1.2"
SOP = "1.2.999.4242.1.2.3"
OTHER_SOP = "1.2.999.4242.1.2.4"
FOR = "1.2.999.4242.1.9"
PRIVATE_SOP_CLASS = "1.2.840.113619.4.27"  # a vendor's private SOP class: kept
TALAIRACH = "1.2.840.10008.1.4.1.1"  # a registered well-known frame of reference

PHI = [
    "Doe^Jane", "MRN-123456", "19700101", "20240315", "101010", "ACC-99", "St Elsewhere",
    "House^Greg", "CT chest Jane Doe", "secret private", "Nested^Name", "OP-77",
    "curve secret", "overlay comment secret", "ST-NODE-1", "SENDER_AE",
    STUDY, SERIES, SOP, OTHER_SOP, FOR,
]


def item(**kwargs: object) -> Dataset:
    ds = Dataset()
    for key, value in kwargs.items():
        setattr(ds, key, value)
    return ds


def make_ct() -> Dataset:
    """A small CT with identifiers in the usual places, in sequences, in
    private groups (also nested), in a curve and an overlay."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(SOP)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "SENDER_AE"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = SOP
    ds.StudyDate = "20240315"
    ds.StudyTime = "101010"
    ds.AccessionNumber = "ACC-99"
    ds.Modality = "CT"
    ds.Manufacturer = "ACME"
    ds.InstitutionName = "St Elsewhere"
    ds.ReferringPhysicianName = "House^Greg"
    ds.StationName = "ST-NODE-1"
    ds.StudyDescription = "CT chest Jane Doe"
    ds.OperatorsName = "OP-77"
    ds.ReferencedImageSequence = Sequence(
        [item(ReferencedSOPClassUID=CTImageStorage, ReferencedSOPInstanceUID=OTHER_SOP)]
    )
    ds.ReferencedStudySequence = Sequence(
        [item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1", ReferencedSOPInstanceUID=STUDY)]
    )
    series_item = item(SeriesInstanceUID=SERIES)
    series_item.ReferencedInstanceSequence = Sequence(
        [item(ReferencedSOPClassUID=PRIVATE_SOP_CLASS, ReferencedSOPInstanceUID=OTHER_SOP)]
    )
    series_item.PatientName = "Nested^Name"
    block = series_item.private_block(0x0019, "ACME NESTED", create=True)
    block.add_new(0x01, "LO", "secret private")
    ds.ReferencedSeriesSequence = Sequence([series_item])  # not in Table E.1-1: kept, walked
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-123456"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.OtherPatientIDsSequence = Sequence([item(PatientID="MRN-123456", IssuerOfPatientID="X")])
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.FrameOfReferenceUID = FOR
    ds.SynchronizationFrameOfReferenceUID = TALAIRACH
    ds.Rows = 2
    ds.Columns = 2
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\x01\x00\x02\x00\x03\x00\x04\x00"
    acme = ds.private_block(0x0009, "ACME 1.0", create=True)
    acme.add_new(0x01, "LO", "secret private")
    acme.add_new(0x02, "UI", STUDY)
    acme.add_new(0x03, "SQ", Sequence([item(PatientName="Nested^Name")]))
    ds.add_new(0x50000005, "US", 2)
    ds.add_new(0x50003000, "OB", b"curve secret")
    ds.add_new(0x60000010, "US", 2)
    ds.add_new(0x60000011, "US", 2)
    ds.add_new(0x60003000, "OB", b"\x00\x01")
    ds.add_new(0x60004000, "LT", "overlay comment secret")
    return ds


def encode(ds: Dataset, transfer_syntax: str) -> bytes:
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture(scope="module")
def profile() -> Profile:
    return load_profiles(PROFILES).get("basic")  # these tests are about the basic profile


@pytest.fixture()
def p() -> Pseudonymiser:
    return Pseudonymiser(key=KEY, pseudonym=PSEUDONYM, date_shift_days=derive_date_shift(KEY))


SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
]


@pytest.fixture(params=SYNTAXES, ids=lambda ts: ts.name)
def deidentified(request: pytest.FixtureRequest, profile: Profile, p: Pseudonymiser) -> bytes:
    """Encode the CT in a transfer syntax, read it (raw elements), apply,
    write with enforce_file_format=True; return the bytes."""
    ds = dcmread(io.BytesIO(encode(make_ct(), request.param)))
    profile.apply(ds, p)
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def test_round_trip_reads_back(deidentified: bytes, p: Pseudonymiser) -> None:
    ds = dcmread(io.BytesIO(deidentified))
    ds.walk(lambda _ds, elem: elem.value)  # every element decodes
    assert ds.PatientName == PSEUDONYM
    assert ds.PatientID == PSEUDONYM
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == p.uid(SOP)
    assert ds.PixelData == b"\x01\x00\x02\x00\x03\x00\x04\x00"


def test_no_planted_identifier_in_the_output_bytes(deidentified: bytes) -> None:
    ds = dcmread(io.BytesIO(deidentified))
    plain = DicomBytesIO()  # re-encoded, so a deflated output is checked too
    plain.is_little_endian, plain.is_implicit_VR = True, False
    write_dataset(plain, ds)
    for data in (deidentified, plain.getvalue()):
        for value in [*PHI, "ACME 1.0", "ACME NESTED"]:  # with the private creators
            assert value.encode("ascii") not in data, value


def test_private_elements_and_creators_are_gone(deidentified: bytes) -> None:
    ds = dcmread(io.BytesIO(deidentified))
    assert not [e.tag for e in ds.iterall() if e.tag.is_private]


def test_curves_and_overlays_are_gone(deidentified: bytes) -> None:
    ds = dcmread(io.BytesIO(deidentified))
    assert not [e.tag for e in ds.iterall() if e.tag.group in (0x5000, 0x6000)]


def test_markers(deidentified: bytes, profile: Profile) -> None:
    ds = dcmread(io.BytesIO(deidentified))
    assert ds.PatientIdentityRemoved == "YES"
    method = list(ds.DeidentificationMethod)
    assert method == ["dicom_service profile basic v2", f"sha256 {profile.sha256[:16]}"]
    assert all(len(m) <= 64 for m in method)
    codes = ds.DeidentificationMethodCodeSequence
    assert [(c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning) for c in codes] == [
        ("113100", "DCM", "Basic Application Confidentiality Profile")
    ]
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    equipment = ds.ContributingEquipmentSequence[-1]
    assert equipment.Manufacturer == "dicom_service"
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109104"


def test_uids_are_keyed_consistently_inside_sequences(
    deidentified: bytes, p: Pseudonymiser
) -> None:
    ds = dcmread(io.BytesIO(deidentified))
    assert ds.StudyInstanceUID == p.uid(STUDY)
    assert ds.SeriesInstanceUID == p.uid(SERIES)
    assert ds.FrameOfReferenceUID == p.uid(FOR)
    series = ds.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == ds.SeriesInstanceUID
    assert series.PatientName == PSEUDONYM  # PatientName inside a sequence too
    ref = series.ReferencedInstanceSequence[0]
    assert ref.ReferencedSOPInstanceUID == p.uid(OTHER_SOP)
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == p.uid(OTHER_SOP)
    # classes are kept: registered, and a vendor's private SOP class
    assert ds.SOPClassUID == CTImageStorage
    assert ds.ReferencedImageSequence[0].ReferencedSOPClassUID == CTImageStorage
    assert ref.ReferencedSOPClassUID == PRIVATE_SOP_CLASS
    assert ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
    # a registered UID in an instance attribute is not an identifier
    assert ds.SynchronizationFrameOfReferenceUID == TALAIRACH


def test_annex_e_actions_on_the_ct(deidentified: bytes) -> None:
    ds = dcmread(io.BytesIO(deidentified))
    assert ds.StudyDate == "" and ds.StudyTime == "" and ds.AccessionNumber == ""  # Z
    assert ds.ReferringPhysicianName == ""  # Z
    assert ds.InstitutionName == "ANONYMIZED"  # X/Z/D -> D
    assert ds.StationName == "ANONYMIZED"  # X/Z/D -> D
    assert ds.OperatorsName == ""  # X/Z/D, PN -> Z
    assert ds.PatientBirthDate == "" and ds.PatientSex == ""  # Z
    assert "StudyDescription" not in ds  # X
    assert "OtherPatientIDsSequence" not in ds  # X
    assert len(ds.ReferencedStudySequence) == 0  # X/Z -> Z
    assert len(ds.ReferencedImageSequence) == 1  # X/Z/U* -> kept, UIDs replaced
    assert "SourceApplicationEntityTitle" not in ds.file_meta
    assert ds.Manufacturer == "ACME" and ds.Modality == "CT"  # not in the table: kept


def test_memory_and_bytes_give_the_same_result(profile: Profile, p: Pseudonymiser) -> None:
    in_memory = make_ct()
    profile.apply(in_memory, p)
    from_bytes = dcmread(io.BytesIO(encode(make_ct(), ExplicitVRLittleEndian)))
    profile.apply(from_bytes, p)

    def flat(ds: Dataset) -> list[tuple[str, str]]:
        return [(str(e.tag), str(e.value)) for e in ds.iterall() if e.VR != "SQ"]

    assert flat(in_memory) == flat(from_bytes)


def test_deterministic_and_resend_idempotent(profile: Profile, p: Pseudonymiser) -> None:
    data = encode(make_ct(), ExplicitVRLittleEndian)
    outputs = []
    for _ in range(2):
        ds = dcmread(io.BytesIO(data))
        profile.apply(ds, p)
        out = io.BytesIO()
        dcmwrite(out, ds, enforce_file_format=True)
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1]
    again = dcmread(io.BytesIO(outputs[0]))
    profile.apply(again, p)  # de-identifying the output again changes no identifier
    assert again.SOPInstanceUID != p.uid(SOP)  # (keyed once more: a new, unrelated UID)
    assert len(again.ContributingEquipmentSequence) == 1


def test_other_enrolment_other_uids(profile: Profile) -> None:
    results = []
    for key in (bytes(32), bytes([1]) * 32):
        ds = make_ct()
        profile.apply(ds, Pseudonymiser(key=key, pseudonym="ERN-A", date_shift_days=-40))
        results.append(ds.StudyInstanceUID)
    assert results[0] != results[1]


def test_mismatched_media_storage_uid_follows_sop_instance(
    profile: Profile, p: Pseudonymiser
) -> None:
    ds = make_ct()
    ds.file_meta.MediaStorageSOPInstanceUID = UID("1.2.3.999")
    profile.apply(ds, p)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == p.uid(SOP)


def test_unknown_un_element_is_removed(profile: Profile, p: Pseudonymiser) -> None:
    ds = make_ct()
    ds.add_new(0x00201234, "UN", b"opaque secret")  # not in the dictionary
    data = encode(ds, ExplicitVRLittleEndian)
    back = dcmread(io.BytesIO(data))
    assert back[0x00201234].VR == "UN"
    profile.apply(back, p)
    assert 0x00201234 not in back


@pytest.mark.parametrize("vr", ["LO", "UT", "SH", "OB"])
def test_standard_tags_unknown_to_the_dictionary_are_removed(
    profile: Profile, p: Pseudonymiser, vr: str
) -> None:
    """An even-group tag the data dictionary does not know (a newer edition's,
    or invented) cannot be assessed, whatever VR it comes with: removed, and
    the rule says why."""
    ds = make_ct()
    ds.add(DataElement(0x00081234, vr, b"Bumblethorpe" if vr == "OB" else "Bumblethorpe"))
    ds.add(DataElement(0x00201236, "SQ", Sequence([item(PatientName="Nested^Name")])))
    back = dcmread(io.BytesIO(encode(ds, ExplicitVRLittleEndian)))
    assert back[0x00081234].VR == vr
    assert profile._plan is not None
    assert profile._plan.op(0x00081234, vr).rule == "unknown_element"
    profile.apply(back, p)
    assert 0x00081234 not in back and 0x00201236 not in back


@pytest.mark.parametrize("vr", ["OB", "LO", "UT"])
def test_a_sequence_that_did_not_arrive_as_one_is_removed(
    profile: Profile, p: Pseudonymiser, vr: str
) -> None:
    """Referenced Image Sequence is kept and walked; sent with another VR than
    SQ (or UN) its items cannot be read, so nothing in them could be
    de-identified: it goes."""
    ct = make_ct()
    ds = dcmread(io.BytesIO(encode(ct, ExplicitVRLittleEndian)))
    tag = BaseTag(0x00081140)
    value = b"Doe^Jane ST-NODE-1 " if vr != "OB" else b"Doe^Jane\x00"
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    back = dcmread(io.BytesIO(out.getvalue()))
    assert back._dict[tag].VR == vr
    profile.apply(back, p)
    assert tag not in back
    assert profile._plan is not None
    assert profile._plan.op(0x00081140, vr).rule == "unwalkable_sequence"
    assert profile._plan.op(0x00081140, "SQ").kind == Kind.KEEP  # and walked, as SQ


def test_dates_get_the_dummy(profile: Profile, p: Pseudonymiser) -> None:
    ds = make_ct()
    ds.InstanceCreationDate = "20240315"  # X/D -> dummy
    ds.AcquisitionDateTime = "2024"  # X/Z/D -> dummy
    profile.apply(ds, p)
    assert ds.InstanceCreationDate == "19000101"
    assert ds.AcquisitionDateTime == "19000101000000"


def test_empty_and_multivalued_uids(profile: Profile, p: Pseudonymiser) -> None:
    ds = make_ct()
    ds.FailedSOPInstanceUIDList = [SOP, OTHER_SOP]
    ds.add(DataElement(0x00080014, "UI", ""))  # Instance Creator UID, empty
    data = encode(ds, ImplicitVRLittleEndian)
    for target in (ds, dcmread(io.BytesIO(data))):
        profile.apply(target, p)
        assert list(target.FailedSOPInstanceUIDList) == [p.uid(SOP), p.uid(OTHER_SOP)]
        assert target.InstanceCreatorUID == ""


def test_known_sequence_sent_as_un_is_walked(profile: Profile, p: Pseudonymiser) -> None:
    """A sequence encoded as UN (PS3.5 Section 6.2.2: implicit VR inside) is
    decoded with its dictionary VR and de-identified like any other."""
    inner = Dataset()
    inner.ReferencedSeriesSequence = Sequence(
        [item(SeriesInstanceUID=SERIES, PatientName="Nested^Name")]
    )
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = True, True
    write_dataset(fp, inner)
    value = fp.getvalue()[8:]  # the sequence's value: tag and length stripped
    ct = make_ct()
    del ct.ReferencedSeriesSequence
    ds = dcmread(io.BytesIO(encode(ct, ExplicitVRLittleEndian)))  # raw elements are written as read
    tag = BaseTag(0x00081115)  # set raw, or pydicom would decode it on the spot
    ds._dict[tag] = RawDataElement(tag, "UN", len(value), value, 0, False, True)
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    data = out.getvalue()
    assert b"\x08\x00\x15\x11UN" in data  # on the wire as UN
    back = dcmread(io.BytesIO(data))
    profile.apply(back, p)
    series = back.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == p.uid(SERIES)
    assert series.PatientName == PSEUDONYM


def test_content_sequence_under_d_gets_dummy_content(profile: Profile, p: Pseudonymiser) -> None:
    """Content Sequence is D: the tree stays, its text, names and dates do not
    (retaining them cleaned is the Clean Structured Content Option)."""
    concept = item(CodeValue="121071", CodingSchemeDesignator="DCM", CodeMeaning="Finding")
    text = item(RelationshipType="CONTAINS", ValueType="TEXT",
                TextValue="Jane Doe, seen 2024-03-15 by Dr House")
    text.ConceptNameCodeSequence = Sequence([concept])
    person = item(RelationshipType="HAS OBS CONTEXT", ValueType="PNAME", PersonName="House^Greg")
    number = item(RelationshipType="CONTAINS", ValueType="NUM")
    number.MeasuredValueSequence = Sequence([item(NumericValue="12.5")])
    ds = make_ct()
    ds.ContentSequence = Sequence([text, person, number])
    data = encode(ds, ExplicitVRLittleEndian)
    for target in (ds, dcmread(io.BytesIO(data))):
        profile.apply(target, p)
        text_out, person_out, number_out = target.ContentSequence
        assert text_out.ValueType == "TEXT" and text_out.RelationshipType == "CONTAINS"
        assert text_out.TextValue == "ANONYMIZED"
        assert text_out.ConceptNameCodeSequence[0].CodeMeaning == "ANONYMIZED"
        assert person_out.PersonName == "ANONYMIZED"  # (0040,A123) D
        assert number_out.MeasuredValueSequence[0].NumericValue == 12.5  # numbers kept


@pytest.mark.parametrize(
    ("scheme", "kept"),
    [("99FAKE", False), ("L", False), ("DCM", True), ("SCT", True), ("", False), (None, False)],
)
def test_local_code_meanings_get_the_dummy(
    profile: Profile, p: Pseudonymiser, scheme: str | None, kept: bool
) -> None:
    """Local schemes' meanings are free text written on site (PS3.16 Section
    8); so may be a meaning whose item names no scheme (empty or absent)."""
    meaning = "CT chest, requested by Dr Xerxes Bumblethorpe"
    ds = make_ct()
    code_item = item(CodeValue="ZZ-CT-1", CodeMeaning=meaning)
    if scheme is not None:
        code_item.CodingSchemeDesignator = scheme
    ds.ProcedureCodeSequence = Sequence([code_item])
    ds.ReferencedImageSequence = Sequence([item(CodeMeaning=meaning)])  # a meaning alone
    data = encode(ds, ImplicitVRLittleEndian)
    for target in (ds, dcmread(io.BytesIO(data))):
        profile.apply(target, p)
        code = target.ProcedureCodeSequence[0]
        assert code.CodeMeaning == (meaning if kept else "ANONYMIZED")
        assert code.CodeValue == "ZZ-CT-1"
        assert code.get("CodingSchemeDesignator") == scheme
        assert target.ReferencedImageSequence[0].CodeMeaning == "ANONYMIZED"
