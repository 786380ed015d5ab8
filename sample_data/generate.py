"""Seeded, deterministic generator of synthetic DICOM studies with planted FAKE identifiers.

Every identifying value written by this module is invented and distinctive, so a byte scan of
de-identified output for them has no false positives.  What is planted where:

* Patient module: PatientName, PatientID, IssuerOfPatientID, OtherPatientIDsSequence,
  OtherPatientNames, PatientMotherBirthName, PatientAddress, PatientTelephoneNumbers,
  PatientComments, AdditionalPatientHistory, PatientBirthDate, PatientAge/Sex/Size/Weight.
* Study/series: AccessionNumber, StudyID, PerformedProcedureStepID; StudyDescription,
  ImageComments, RequestedProcedureDescription, PerformedProcedureStepDescription and
  DerivationDescription holding a name and/or an ID; ProcedureCodeSequence with a free-text
  CodeMeaning naming a physician.
* Staff and sites: ReferringPhysicianName/Address/TelephoneNumbers, PerformingPhysicianName,
  OperatorsName, PhysiciansOfRecord, RequestingPhysician, NameOfPhysiciansReadingStudy,
  InstitutionName/Address, InstitutionalDepartmentName, StationName, DeviceSerialNumber.
* Nested sequences: RequestAttributesSequence (AccessionNumber, RequestedProcedureID, ...),
  OtherPatientIDsSequence, ReferencedStudySequence / ReferencedImageSequence /
  SourceImageSequence (original UIDs referencing other instances of the set), an SR
  ContentSequence (TEXT, PNAME, DATE, UIDREF and IMAGE items) and VerifyingObserverSequence.
* Private tags: private creator blocks ("FAKEVENDOR 1.0" in (0029,xx), and others) with a
  name, an ID, a date, a UID, a private sequence and an OB "vendor header" blob with a name.
* Overlay plane (6000,xxxx) with OverlayDescription/OverlayLabel and a bitmap with drawn text,
  retired curve data (5000,xxxx) with CurveDescription/CurveLabel.
* Text burned into pixels (US, RGB secondary capture, multi-frame SC) with boxes recorded.

The exact values are listed in ``sample_data/README.md`` and in the manifest (``planted``).

Public API: :func:`generate`, :func:`write_ct_series`, :class:`Manifest`,
:func:`searchable_bytes`.  CLI: ``python -m sample_data.generate OUT_DIR [--seed N]
[--ct-slices N]``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import io
import json
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.charset import convert_encodings
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_dataset, write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

__all__ = [
    "BENCH_PLANTED",
    "DEFAULT_CT_SLICES",
    "DEFAULT_SEED",
    "MIN_CT_SLICES",
    "UID_ROOT",
    "BurnedInText",
    "FileEntry",
    "Manifest",
    "PatientEntry",
    "PlantedEntry",
    "StudyEntry",
    "generate",
    "main",
    "searchable_bytes",
    "write_ct_series",
]

DEFAULT_SEED = 20261125
DEFAULT_CT_SLICES = 120
MIN_CT_SLICES = 100
#: Root of every generated UID (a realistic organisational root, deliberately not 2.25).
UID_ROOT = "1.2.826.0.1.3680043.10.1234."
MANIFEST_NAME = "manifest.json"

# SOP classes used
CT_IMAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE = UID("1.2.840.10008.5.1.4.1.1.4")
US_IMAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
SC_IMAGE = UID("1.2.840.10008.5.1.4.1.1.7")
MF_GRAY_BYTE_SC = UID("1.2.840.10008.5.1.4.1.1.7.2")
CR_IMAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")
XA_IMAGE = UID("1.2.840.10008.5.1.4.1.1.12.1")
BASIC_TEXT_SR = UID("1.2.840.10008.5.1.4.1.1.88.11")
STUDY_COMPONENT_MGMT = UID("1.2.840.10008.3.1.2.3.1")  # Detached Study Management (retired)
MPPS_SOP_CLASS = UID("1.2.840.10008.3.1.2.3.3")

_CHARSET_CODEC = {None: "ascii", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}


# ---------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------


class PatientEntry(TypedDict):
    """A fake patient. ``(patient_id, issuer)`` identifies the patient, not ``patient_id``."""

    patient_id: str
    issuer: str | None
    name: str
    birth_date: str
    centre_hint: str
    sex: str
    charset: str | None


class StudyEntry(TypedDict):
    """One study; ``role`` is "baseline", "follow-up" or "single"."""

    study_uid: str
    patient_id: str
    issuer: str | None
    role: str
    study_date: str
    study_time: str
    accession_number: str
    description: str


class PlantedEntry(TypedDict):
    """One planted identifying value.

    ``kind`` is "element" (in a data element's value: findable in :func:`searchable_bytes`
    encoded with ``encoding``), "pixels" (text burned into PixelData) or "overlay" (text drawn
    into an overlay bitmap).  ``files`` are the relative paths it was written to.
    """

    value: str
    where: str
    kind: str
    encoding: str
    category: str
    files: list[str]


class BurnedInText(TypedDict):
    """Text drawn into an image; ``box`` is ``[x0, y0, x1, y1]`` in pixels, x1/y1 exclusive."""

    text: str
    box: list[int]


class FileEntry(TypedDict):
    """One written file (paths relative to the output directory, POSIX separators)."""

    path: str
    label: str
    patient_id: str
    issuer: str | None
    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str
    sop_class_uid: str
    transfer_syntax_uid: str
    charset: str | None
    number_of_frames: int
    rows: int | None
    columns: int | None
    samples_per_pixel: int | None
    bits_allocated: int | None
    photometric_interpretation: str | None
    burned_in_annotation: str | None
    burned_in_text: list[BurnedInText]
    overlay_text: list[BurnedInText]


@dataclass
class Manifest:
    """What :func:`generate` wrote; serialised as ``manifest.json`` in the output directory.

    ``original_uids`` are all non-well-known UIDs written (instance/series/study/frame of
    reference UIDs, UIDs in references, in private tags and in file meta); ``original_dates``
    all DA/DT values as written (also in sequences and private tags), ``original_times`` all TM
    values.  ``skipped`` names optional instances not generated because a codec was missing.
    """

    seed: int
    ct_slices: int
    patients: list[PatientEntry] = field(default_factory=list)
    studies: list[StudyEntry] = field(default_factory=list)
    planted: list[PlantedEntry] = field(default_factory=list)
    original_uids: list[str] = field(default_factory=list)
    original_dates: list[str] = field(default_factory=list)
    original_times: list[str] = field(default_factory=list)
    files: list[FileEntry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    uid_root: str = UID_ROOT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n"

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Load ``manifest.json`` (or the directory containing it)."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def planted_values(self, kind: str | None = "element") -> set[str]:
        """Distinct planted values, optionally only those of one ``kind``."""
        return {p["value"] for p in self.planted if kind is None or p["kind"] == kind}

    def files_for(self, patient_id: str, issuer: str | None) -> list[FileEntry]:
        return [f for f in self.files if f["patient_id"] == patient_id and f["issuer"] == issuer]


def searchable_bytes(path: Path) -> bytes:
    """The bytes of a DICOM file in which planted values can be found by substring search.

    This is the raw file, except that a Deflated Explicit VR Little Endian dataset is inflated
    (the file meta and the inflated dataset are concatenated).
    """
    raw = Path(path).read_bytes()
    if DeflatedExplicitVRLittleEndian.encode() not in raw[:1024]:
        return raw
    # Preamble (128) + "DICM" (4) + group length element (12 bytes) gives the meta length.
    meta_len = int.from_bytes(raw[140:144], "little")
    start = 144 + meta_len
    return raw[:start] + zlib.decompress(raw[start:], -zlib.MAX_WBITS)


# ---------------------------------------------------------------------------------------------
# Fake people and places
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Centre:
    hint: str
    institution: str
    address: str
    department: str
    referring: str
    referring_address: str
    referring_phone: str
    performing: str
    operator: str
    physician_of_record: str
    reading: str
    station: str
    serial: str
    manufacturer: str
    model: str


@dataclass(frozen=True)
class _Patient:
    key: str
    name: str
    name_text: str
    patient_id: str
    issuer: str | None
    birth_date: str
    sex: str
    size: str
    weight: str
    address: str
    phone: str
    other_id: str
    other_id_issuer: str
    other_names: str
    mother_birth_name: str
    relative_text: str
    charset: str | None
    centre: _Centre


@dataclass(frozen=True)
class _Study:
    key: str
    patient: _Patient
    role: str
    date: str
    time: str
    accession: str
    study_id: str
    requested_procedure_id: str
    description: str
    charset: str | None


_CENTRE_A = _Centre(
    hint="CENTRE-A",
    institution="Nowhereville General Hospital",
    address="200 Infirmary Row, Nowhereville Upon Sea",
    department="Quillby Wing Radiology",
    referring="Bumblethorpe^Xerxes^^Dr",
    referring_address="Bumblethorpe Surgery, 9 Pudding Lane, Nowhereville",
    referring_phone="+44 113 496 0871",
    performing="Snorkelwick^Theophania",
    operator="Twillingate^Ambrosius",
    physician_of_record="Fennimore-Oddsocks^Philippa",
    reading="Marrowbone^Cuthbert",
    station="QFX-CT-STATION7",
    serial="SN-ZQX-99317",
    manufacturer="FAKEVENDOR",
    model="Phantasma CT 64",
)
_CENTRE_B = _Centre(
    hint="CENTRE-B",
    institution="Fjordvik Universitetssykehus",
    address="Sykehusveien 1, 9999 Fjordvik",
    department="Fjordvik Ultralydlab",
    referring="Østergaard-Nyhus^Bjørn",
    referring_address="Legekontoret Bryggen 3, 9999 Fjordvik",
    referring_phone="+44 161 496 0753",
    performing="Lindqvist-Ødegaard^Sølvi",
    operator="Чайковская^Людмила",
    physician_of_record="Haugeland-Brekke^Torvald",
    reading="Sørbøe-Kvist^Ingvild",
    station="FJV-US-ROOM12",
    serial="SN-FJV-40417",
    manufacturer="FAKEVENDOR",
    model="Sonofake 900",
)
_CENTRE_C = _Centre(
    hint="CENTRE-C",
    institution="Musterklinikum Hinterwaldingen-Süd",
    address="Krankenhausweg 5, 99998 Hinterwaldingen",
    department="Röntgenabteilung Haus Quakenbrück",
    referring="Straßburger^Bärbel^^Dr. med.",
    referring_address="Praxis Straßburger, Marktgäßchen 2, Hinterwaldingen",
    referring_phone="+44 117 496 0123",
    performing="Schnäbele^Wölfram",
    operator="Kühnemund^Götz",
    physician_of_record="Pfannkuchen-Öztürk^Hedwig",
    reading="Löffelhardt^Ottokar",
    station="HWD-ANGIO-3",
    serial="SN-HWD-77120",
    manufacturer="FAKEVENDOR",
    model="Radiofake XR",
)
_CENTRE_D = _Centre(
    hint="CENTRE-D",
    institution="Pouthenopoli Diagnostic Centre",
    address="Odos Fantasias 7, 99999 Pouthenopoli",
    department="Tmima Apeikonisis Kentro Pi",
    referring="Καραγκιόζης^Σπυρίδων",
    referring_address="Iatreio Karagiozi, Plateia Oneiron 4, Pouthenopoli",
    referring_phone="+1-202-555-0147",
    performing="Ξενοφώντος^Ηλέκτρα",
    operator="Θεοχαροπούλου^Μυρτώ",
    physician_of_record="Anagnostakopoulos^Leonidas",
    reading="Zacharoplastis^Evangelos",
    station="PTH-MR-BAY2",
    serial="SN-PTH-31337",
    manufacturer="FAKEVENDOR",
    model="Magnefake 1.5T",
)

_P1 = _Patient(
    key="P1",
    name="Quillfeather^Zaphodia",
    name_text="Zaphodia Quillfeather",
    patient_id="Q-4471-ZQF",
    issuer="NOWHEREVILLE-GH",
    birth_date="19610314",
    sex="F",
    size="1.68",
    weight="61.5",
    address="1 Fakestreet Lane, Nowhereville",
    phone="+44 20 7946 0958",
    other_id="ZQF-LEGACY-00917",
    other_id_issuer="OLD-PAS-NOWHERE",
    other_names="Quillfeather-Brandt^Zaphodia",
    mother_birth_name="Brandtweiler^Ottilie",
    relative_text="Petronella Quillfeather",
    charset=None,
    centre=_CENTRE_A,
)
_P2 = _Patient(
    key="P2",
    name="Ødegård^Åsa",
    name_text="Åsa Ødegård",
    patient_id="NO-ODG-5581",
    issuer="FJORDVIK-UH",
    birth_date="19880229",
    sex="F",
    size="1.74",
    weight="70",
    address="Fjordveien 42, 9999 Fjordvik",
    phone="+44 161 496 0999",
    other_id="FJV-ODG-000731",
    other_id_issuer="FJORDVIK-LAB",
    other_names="Oedegaard^Aasa",
    mother_birth_name="Tjønnøy^Gudrun",
    relative_text="Eirik Ødegård",
    charset="ISO_IR 192",
    centre=_CENTRE_B,
)
_P3 = _Patient(
    key="P3",
    name="Müller-Lüdenscheidt^Jürgen",
    name_text="Jürgen Müller-Lüdenscheidt",
    patient_id="RDX-33019-K",
    issuer="KLINIKUM-HWD",
    birth_date="19450808",
    sex="M",
    size="1.81",
    weight="88.2",
    address="Quakstraße 13, 99999 Hinterwaldingen",
    phone="+44 117 496 0777",
    other_id="HWD-MLJ-88-0042",
    other_id_issuer="HWD-ALTARCHIV",
    other_names="Mueller-Luedenscheidt^Juergen",
    mother_birth_name="Häberle^Waltraud",
    relative_text="Friedegund Müller-Lüdenscheidt",
    charset="ISO_IR 100",
    centre=_CENTRE_C,
)
# Same PatientID as P3 but a different person from another centre, with no issuer: only
# (centre, issuer, patient ID) identifies a patient.
_P4 = _Patient(
    key="P4",
    name="Παπαδοπούλου^Ελευθερία",
    name_text="Eleftheria Papadopoulou",
    patient_id="RDX-33019-K",
    issuer=None,
    birth_date="20090101",
    sex="F",
    size="1.62",
    weight="49.8",
    address="Odos Oneiron 99, 99999 Pouthenopoli",
    phone="+1-202-555-0186",
    other_id="PTH-PPE-55012",
    other_id_issuer="PTH-ARCHIVE",
    other_names="Papadopoulou^Eleftheria",
    mother_birth_name="Kalliopi^Stavroula^Nikolaidou",
    relative_text="Kalliopi Papadopoulou",
    charset="ISO_IR 192",
    centre=_CENTRE_D,
)
_PATIENTS = (_P1, _P2, _P3, _P4)

_ST_P1_BASE = _Study(
    "P1/ST1",
    _P1,
    "baseline",
    "20250304",
    "091512",
    "ACC-ZQF-77120",
    "STU-ZQF-0311",
    "RP-ZQF-5521",
    "CT chest for Zaphodia Quillfeather (MRN Q-4471-ZQF)",
    None,
)
_ST_P1_FU = _Study(
    "P1/ST2",
    _P1,
    "follow-up",
    "20250916",
    "143005",
    "ACC-ZQF-77988",
    "STU-ZQF-0912",
    "RP-ZQF-6630",
    "MR follow-up Zaphodia Quillfeather Q-4471-ZQF",
    "ISO_IR 100",
)
_ST_P2 = _Study(
    "P2/ST1",
    _P2,
    "single",
    "20250521",
    "140312",
    "ACC-ODG-31415",
    "STU-ODG-0521",
    "RP-ODG-2718",
    "UL abdomen – Åsa Ødegård (NO-ODG-5581)",  # noqa: RUF001
    "ISO_IR 192",
)
_ST_P3 = _Study(
    "P3/ST1",
    _P3,
    "single",
    "20240612",
    "081945",
    "ACC-MLJ-88412",
    "STU-MLJ-0612",
    "RP-MLJ-1414",
    "Angio/Röntgen Jürgen Müller-Lüdenscheidt",
    "ISO_IR 100",
)
_ST_P4 = _Study(
    "P4/ST1",
    _P4,
    "single",
    "20251030",
    "170258",
    "ACC-PPE-60221",
    "STU-PPE-1030",
    "RP-PPE-1732",
    "MR brain Παπαδοπούλου Ελευθερία RDX-33019-K",
    "ISO_IR 192",
)
_STUDIES = (_ST_P1_BASE, _ST_P1_FU, _ST_P2, _ST_P3, _ST_P4)

# Free-text and other one-off planted strings (free-text forms of names, vendor IDs, ...).
_EXTRA_TEXT = {
    "Xerxes Bumblethorpe": "referring physician name (free text)",
    "Cuthbert Marrowbone": "reading physician name (free text)",
    "A. Twillingate": "operator name (free text)",
    "Géraldine Saint-Émilion": "referring physician name (free text)",
    "Saint-Émilion^Géraldine": "referring physician name",
    "Marigold Quillfeather": "relative name (free text)",
    "Bjørn Østergaard-Nyhus": "referring physician name (free text)",
    "Götz Kühnemund": "operator name (free text)",
    "Σπυρίδων Καραγκιόζης": "referring physician name (free text)",
    "Παπαδοπούλου Ελευθερία": "patient name (free text)",
    "VENDOR-PT-Q4471": "vendor internal patient key",
    "FAKEVENDOR-ID-ODG-99": "vendor internal patient key",
    "FAKEVENDOR-ID-MLJ-07": "vendor internal patient key",
    "FAKEVENDOR-ID-PPE-11": "vendor internal patient key",
}


def _sps_id(s: _Study) -> str:
    return f"SPS-{s.requested_procedure_id[3:]}"


def _pps_id(s: _Study) -> str:
    return f"PPS-{s.requested_procedure_id[3:]}"


def _catalogue() -> dict[str, str]:
    """Every identifying string written by :func:`generate` -> category."""
    cat: dict[str, str] = {}
    for c in (_CENTRE_A, _CENTRE_B, _CENTRE_C, _CENTRE_D):
        cat.update(
            {
                c.institution: "institution name",
                c.address: "institution address",
                c.department: "institutional department",
                c.referring: "referring physician name",
                c.referring_address: "referring physician address",
                c.referring_phone: "referring physician telephone",
                c.performing: "performing physician name",
                c.operator: "operator name",
                c.physician_of_record: "physician of record",
                c.reading: "physician reading study",
                c.station: "station name",
                c.serial: "device serial number",
            }
        )
    for p in _PATIENTS:
        cat.update(
            {
                p.name: "patient name",
                p.name_text: "patient name (free text)",
                p.patient_id: "patient ID",
                p.address: "patient address",
                p.phone: "patient telephone",
                p.other_id: "other patient ID",
                p.other_id_issuer: "issuer of other patient ID",
                p.other_names: "other patient name",
                p.mother_birth_name: "patient mother's birth name",
                p.relative_text: "relative name (free text)",
            }
        )
        if p.issuer:
            cat[p.issuer] = "issuer of patient ID"
    for s in _STUDIES:
        cat.update(
            {
                s.accession: "accession number",
                s.study_id: "study ID",
                s.requested_procedure_id: "requested procedure ID",
                _sps_id(s): "scheduled procedure step ID",
                _pps_id(s): "performed procedure step ID",
            }
        )
    cat.update(_EXTRA_TEXT)
    return cat


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _uid(seed: int, *parts: object) -> str:
    """A deterministic UID under :data:`UID_ROOT` derived from the seed and ``parts``."""
    digest = hashlib.sha256("|".join([str(seed), *map(str, parts)]).encode()).digest()
    kind = {"study": 1, "series": 2, "sop": 3, "for": 4}.get(str(parts[-1]), 9)
    number = int.from_bytes(digest[:10], "big") | (1 << 79)  # 24-25 digits, no leading zero
    return f"{UID_ROOT}{kind}.{number}"


def _ds(value: float) -> str:
    """Format a number as a DS value (<= 16 characters)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _age(birth: str, on: str) -> str:
    b = _dt.date(int(birth[:4]), int(birth[4:6]), int(birth[6:]))
    d = _dt.date(int(on[:4]), int(on[4:6]), int(on[6:]))
    years = d.year - b.year - ((d.month, d.day) < (b.month, b.day))
    return f"{years:03d}Y"


def _add_seconds(hhmmss: str, seconds: int) -> str:
    t = int(hhmmss[:2]) * 3600 + int(hhmmss[2:4]) * 60 + int(hhmmss[4:6]) + seconds
    return f"{t // 3600 % 24:02d}{t // 60 % 60:02d}{t % 60:02d}"


def _item(**kwargs: Any) -> Dataset:
    ds = Dataset()
    for key, value in kwargs.items():
        setattr(ds, key, value)
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def _file_meta(ds: Dataset, transfer_syntax: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta = meta


def _write(ds: Dataset, path: Path, transfer_syntax: str) -> None:
    """Write ``ds`` as a Part-10 file (preamble, file meta) in ``transfer_syntax``."""
    _file_meta(ds, transfer_syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _encoder_available(transfer_syntax: str) -> bool:
    try:
        from pydicom.pixels.encoders.base import get_encoder

        return bool(get_encoder(transfer_syntax).is_available)
    except (ImportError, NotImplementedError):
        return False


# ---------------------------------------------------------------------------------------------
# Pixel synthesis
# ---------------------------------------------------------------------------------------------


class _CtPhantom:
    """Synthetic chest phantom: masks and a noise field computed once, varied cheaply per slice.

    Stored values are HU + 1024 (RescaleIntercept -1024) with -2000 outside the scan circle.
    """

    def __init__(self, size: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        c = (size - 1) / 2.0
        axis = (np.arange(size, dtype=np.float32) - c) / (size / 2.0)
        ny, nx = np.meshgrid(axis, axis, indexing="ij")
        self.size = size
        self.outside = (nx * nx + ny * ny) > 1.0
        self.q_body = (nx / 0.80) ** 2 + ((ny - 0.02) / 0.58) ** 2
        self.q_lung_l = ((nx + 0.34) / 0.25) ** 2 + ((ny + 0.02) / 0.38) ** 2
        self.q_lung_r = ((nx - 0.34) / 0.25) ** 2 + ((ny + 0.02) / 0.38) ** 2
        self.q_lesion = ((nx - 0.30) / 0.09) ** 2 + ((ny + 0.10) / 0.09) ** 2
        self.spine = (nx * nx + (ny - 0.36) ** 2) < 0.075**2
        self.heart = ((nx + 0.06) / 0.2) ** 2 + ((ny + 0.02) / 0.17) ** 2 < 1.0
        self.pad = max(8, size // 8)
        noise = rng.normal(0.0, 14.0, (size + self.pad, size + self.pad))
        self.noise = np.round(noise).astype(np.int16)

    def slice(self, i: int, n: int) -> np.ndarray:
        t = (i + 0.5) / max(n, 1)
        img = np.full((self.size, self.size), -1000 + 1024, dtype=np.int16)
        body_scale = 1.0 + 0.04 * np.cos(2 * np.pi * t)
        img[self.q_body < body_scale**2] = 40 + 1024
        lung_scale = 0.35 + 0.65 * np.sin(np.pi * min(1.0, t * 1.15))
        lungs = (self.q_lung_l < lung_scale**2) | (self.q_lung_r < lung_scale**2)
        img[lungs] = -850 + 1024
        if 0.25 < t < 0.75:
            img[self.heart] = 45 + 1024
        img[self.spine] = 700 + 1024
        lesion_r2 = 1.0 - ((t - 0.55) / 0.12) ** 2
        if lesion_r2 > 0:
            img[self.q_lesion < lesion_r2] = 65 + 1024
        oy = (i * 7) % self.pad
        ox = (i * 13) % self.pad
        img += self.noise[oy : oy + self.size, ox : ox + self.size]
        img[self.outside] = -2000
        return img


def _mr_slices(n: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    axis = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0) / (size / 2.0)
    ny, nx = np.meshgrid(axis, axis, indexing="ij")
    q_head = (nx / 0.72) ** 2 + (ny / 0.88) ** 2
    q_brain = (nx / 0.64) ** 2 + (ny / 0.80) ** 2
    q_vent = (nx / 0.12) ** 2 + ((ny + 0.05) / 0.25) ** 2
    noise = np.abs(rng.normal(0.0, 18.0, (size, size))).astype(np.float32)
    out = []
    for i in range(n):
        s = 1.0 - 0.25 * abs((i - (n - 1) / 2.0) / max(n / 2.0, 1))
        img = np.zeros((size, size), dtype=np.float32)
        img[q_head < s * s] = 300.0
        img[q_brain < (0.94 * s) ** 2] = 820.0
        img[q_vent < s * s] = 1500.0
        img += np.roll(noise, i * 11, axis=1)
        out.append(np.clip(img, 0, 4095).astype(np.uint16))
    return out


def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=px)


def _draw_texts(
    img: Image.Image, items: Sequence[tuple[tuple[int, int], str, int]], fill: Any
) -> list[BurnedInText]:
    """Draw ``(xy, text, pixel_height)`` items on ``img`` and return their bounding boxes.

    Uses Pillow's bundled default font (scalable with FreeType, so results do not depend on
    system fonts); without FreeType the bitmap font is drawn small and scaled up.
    """
    draw = ImageDraw.Draw(img)
    boxes: list[BurnedInText] = []
    for (x, y), text, px in items:
        font = _font(px)
        if isinstance(font, ImageFont.FreeTypeFont):
            draw.text((x, y), text, font=font, fill=fill)
            x0, y0, x1, y1 = (int(v) for v in draw.textbbox((x, y), text, font=font))
        else:  # pragma: no cover - Pillow without FreeType
            left, top, r, b = (int(v) for v in font.getbbox(text))
            small = Image.new("L", (r, b), 0)
            ImageDraw.Draw(small).text((0, 0), text, font=font, fill=255)
            scale = max(1, px // max(b, 1))
            big = small.resize((r * scale, b * scale), Image.Resampling.NEAREST)
            img.paste(fill, (x, y), big)
            x0, y0, x1, y1 = x + left * scale, y + top * scale, x + r * scale, y + b * scale
        boxes.append(
            {
                "text": text,
                "box": [
                    max(0, x0 - 2),
                    max(0, y0 - 2),
                    min(img.width, x1 + 2),
                    min(img.height, y1 + 2),
                ],
            }
        )
    return boxes


# ---------------------------------------------------------------------------------------------
# Dataset building blocks
# ---------------------------------------------------------------------------------------------


def _set_common(
    ds: Dataset,
    *,
    sop_class: str,
    sop_uid: str,
    modality: str,
    charset: str | None,
) -> None:
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality


def _set_patient(ds: Dataset, p: _Patient, study: _Study, *, full: bool) -> None:
    """Patient module (+ planted contact details/other IDs when ``full``)."""
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    if p.issuer:
        ds.IssuerOfPatientID = p.issuer
    ds.PatientBirthDate = p.birth_date
    ds.PatientSex = p.sex
    ds.PatientAge = _age(p.birth_date, study.date)
    ds.PatientSize = p.size
    ds.PatientWeight = p.weight
    if not full:
        return
    ds.OtherPatientIDsSequence = [
        _item(PatientID=p.other_id, IssuerOfPatientID=p.other_id_issuer, TypeOfPatientID="TEXT")
    ]
    ds.OtherPatientNames = p.other_names
    ds.PatientMotherBirthName = p.mother_birth_name
    ds.PatientAddress = p.address
    ds.PatientTelephoneNumbers = p.phone
    ds.PatientComments = f"Next of kin {p.relative_text}, phone {p.phone}"
    ds.AdditionalPatientHistory = (
        f"{p.name_text} ({p.patient_id}) referred for rare disease panel; "
        f"relative {p.relative_text} also affected."
    )


def _set_study(ds: Dataset, s: _Study, seed: int, *, full: bool) -> None:
    c = s.patient.centre
    ds.StudyInstanceUID = _uid(seed, s.key, "study")
    ds.StudyDate = s.date
    ds.StudyTime = s.time
    ds.AccessionNumber = s.accession
    ds.StudyID = s.study_id
    ds.StudyDescription = s.description
    ds.ReferringPhysicianName = c.referring
    if not full:
        return
    ds.ReferringPhysicianAddress = c.referring_address
    ds.ReferringPhysicianTelephoneNumbers = c.referring_phone
    ds.PhysiciansOfRecord = c.physician_of_record
    ds.NameOfPhysiciansReadingStudy = c.reading
    ds.RequestingPhysician = c.referring
    ds.RequestAttributesSequence = [
        _item(
            AccessionNumber=s.accession,
            RequestedProcedureID=s.requested_procedure_id,
            RequestedProcedureDescription=f"Panel review {s.patient.name_text}"[:64],
            ScheduledProcedureStepID=_sps_id(s),
            ScheduledProcedureStepStartDate=s.date,
            ScheduledProcedureStepStartTime=_add_seconds(s.time, -900),
        )
    ]


def _set_series(
    ds: Dataset,
    s: _Study,
    seed: int,
    series_key: str,
    number: int,
    description: str,
    *,
    offset_s: int,
    full: bool,
) -> None:
    c = s.patient.centre
    ds.SeriesInstanceUID = _uid(seed, s.key, series_key, "series")
    ds.SeriesNumber = number
    ds.SeriesDate = s.date
    ds.SeriesTime = _add_seconds(s.time, offset_s)
    ds.SeriesDescription = description
    ds.Manufacturer = c.manufacturer
    ds.ManufacturerModelName = c.model
    ds.InstitutionName = c.institution
    ds.InstitutionAddress = c.address
    ds.StationName = c.station
    ds.DeviceSerialNumber = c.serial
    ds.SoftwareVersions = "FV 1.0.3"
    ds.OperatorsName = c.operator
    ds.PerformingPhysicianName = c.performing
    if full:
        ds.InstitutionalDepartmentName = c.department
        ds.PerformedProcedureStepStartDate = s.date
        ds.PerformedProcedureStepStartTime = s.time
        ds.PerformedProcedureStepID = _pps_id(s)
        ds.PerformedProcedureStepDescription = f"{description} for {s.patient.patient_id}"[:64]


def _set_image_dates(ds: Dataset, s: _Study, offset_s: int, tz: str | None = None) -> None:
    t = _add_seconds(s.time, offset_s)
    ds.InstanceCreationDate = s.date
    ds.InstanceCreationTime = t
    ds.ContentDate = s.date
    ds.ContentTime = t
    ds.AcquisitionDate = s.date
    ds.AcquisitionTime = t
    ds.AcquisitionDateTime = f"{s.date}{t}.000000{tz or ''}"
    if tz:
        ds.TimezoneOffsetFromUTC = tz


def _private_block(
    ds: Dataset,
    group: int,
    creator: str,
    p: _Patient,
    *,
    vendor_key: str,
    ref_uid: str | None = None,
    blob: bool = False,
) -> None:
    codec = _CHARSET_CODEC[p.charset] if "SpecificCharacterSet" in ds else "ascii"
    """Private creator block with a name, an ID, a date, a UID, a sequence and an OB blob."""
    block = ds.private_block(group, creator, create=True)
    block.add_new(0x10, "LO", p.name)
    block.add_new(0x11, "LO", vendor_key)
    block.add_new(0x12, "DA", p.birth_date)
    if ref_uid:
        block.add_new(0x13, "UI", ref_uid)
    inner = Dataset()
    inner.PatientName = p.name
    inner.PatientID = p.patient_id
    inner_block = inner.private_block(group, creator, create=True)
    inner_block.add_new(0x14, "LO", p.phone)
    block.add_new(0x20, "SQ", DicomSequence([inner]))
    if blob:
        text = f"<<FV-HDR>>PAT={p.name};MRN={p.patient_id};KEY={vendor_key};"
        payload = b"\x01\x00FVHD" + text.encode(codec) + bytes(range(16))
        if len(payload) % 2:
            payload += b"\x00"
        block.add_new(0x30, "OB", payload)


def _sequence_of_us_regions(rows: int, cols: int) -> list[Dataset]:
    region = Dataset()
    region.add_new(0x00186012, "US", 1)  # RegionSpatialFormat: 2D
    region.add_new(0x00186014, "US", 1)  # RegionDataType: tissue
    region.add_new(0x00186016, "UL", 0)  # RegionFlags
    region.add_new(0x00186018, "UL", 40)  # RegionLocationMinX0
    region.add_new(0x0018601A, "UL", 60)  # RegionLocationMinY0
    region.add_new(0x0018601C, "UL", cols - 41)  # RegionLocationMaxX1
    region.add_new(0x0018601E, "UL", rows - 21)  # RegionLocationMaxY1
    region.add_new(0x00186020, "SL", cols // 2)  # ReferencePixelX0
    region.add_new(0x00186022, "SL", 60)  # ReferencePixelY0
    region.add_new(0x00186024, "US", 3)  # PhysicalUnitsXDirection: cm
    region.add_new(0x00186026, "US", 3)  # PhysicalUnitsYDirection: cm
    region.add_new(0x0018602C, "FD", 0.035)  # PhysicalDeltaX
    region.add_new(0x0018602E, "FD", 0.035)  # PhysicalDeltaY
    return [region]


def _set_pixels(
    ds: Dataset,
    arr: np.ndarray,
    *,
    photometric: str,
    bits_stored: int,
    signed: bool = False,
) -> None:
    """Uncompressed pixel module from ``arr`` (frames, rows, cols[, samples])."""
    samples = 3 if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422") else 1
    frames = arr.shape[0] if arr.ndim == (4 if samples == 3 else 3) else 1
    rows, cols = arr.shape[-3:-1] if samples == 3 else arr.shape[-2:]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1 or "NumberOfFrames" in ds:
        ds.NumberOfFrames = frames
    ds.PixelData = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


# ---------------------------------------------------------------------------------------------
# CT series (shared by write_ct_series and generate)
# ---------------------------------------------------------------------------------------------

#: Identifiers planted by :func:`write_ct_series` (besides PatientID/issuer and dates).
BENCH_PLANTED: dict[str, str] = {
    "PatientName": "Fernsby^Zorblatt",
    "InstitutionName": "Zorblatt Memorial Infirmary",
    "ReferringPhysicianName": "Quaxley^Ottoline",
    "StudyDescription": "Benchmark CT for Zorblatt Fernsby",
    "AccessionNumber": "ACC-BENCH-7731",
}
_BENCH_DATE = "20250614"
_BENCH_BIRTH = "19720905"


def _ct_geometry(ds: Dataset, size: int) -> tuple[float, float, float, float]:
    """Set fixed geometry; returns (x0, y0, z0, step)."""
    spacing = 360.0 / size
    thickness = 2.5 if size >= 256 else 1.25
    x0 = -spacing * (size - 1) / 2.0
    y0 = x0 + 20.0
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [_ds(spacing), _ds(spacing)]
    ds.SliceThickness = _ds(thickness)
    ds.SpacingBetweenSlices = _ds(thickness)
    return x0, y0, -40.0, thickness


def _ct_template(ds: Dataset, size: int) -> None:
    """CT image module attributes that do not change per slice."""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.add_new(0x00280120, "SS", -2000)  # PixelPaddingValue
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = ["40", "-600"]
    ds.WindowWidth = ["400", "1500"]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
    ds.KVP = "120"
    ds.XRayTubeCurrent = 220
    ds.ExposureTime = 500
    ds.ConvolutionKernel = "FC07"
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "CHEST"
    ds.AcquisitionNumber = 1
    ds.PositionReferenceIndicator = ""
    ds.LossyImageCompression = "00"


#: Elements of a CT slice that change from slice to slice (all others are encoded once).
_CT_VARYING = (
    0x00080018,  # SOPInstanceUID
    0x00080032,  # AcquisitionTime
    0x00080033,  # ContentTime
    0x00200013,  # InstanceNumber
    0x00200032,  # ImagePositionPatient
    0x00201041,  # SliceLocation
    0x7FE00010,  # PixelData
)


class _SliceWriter:
    """Writes many datasets that differ only in ``varying`` elements, quickly.

    The static elements of ``template`` are encoded once; per file only the file meta and the
    varying elements are encoded.  Output is byte-identical to ``Dataset.save_as(...,
    enforce_file_format=True)`` (checked by the tests).  Uncompressed, non-deflated little
    endian transfer syntaxes only; the set of elements must not change between writes.
    """

    def __init__(self, template: Dataset, transfer_syntax: str, varying: Sequence[int]) -> None:
        self.ts = UID(transfer_syntax)
        self.implicit = self.ts == ImplicitVRLittleEndian
        charset = template.get("SpecificCharacterSet")
        self.encodings = convert_encodings(charset) if charset else ["iso8859"]
        self.varying = set(varying)
        self.plan: list[bytes | int] = []
        static_run: list[int] = []
        for tag in sorted({int(t) for t in template.keys()} | self.varying):
            if tag in self.varying:
                if static_run:
                    self.plan.append(self._encode_static(template, static_run))
                    static_run = []
                self.plan.append(tag)
            else:
                static_run.append(tag)
        if static_run:
            self.plan.append(self._encode_static(template, static_run))
        self.tags = set(template.keys())

    def _fp(self) -> DicomBytesIO:
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = self.implicit
        return fp

    def _encode_static(self, template: Dataset, tags: list[int]) -> bytes:
        part = Dataset()
        if "SpecificCharacterSet" in template:
            part.SpecificCharacterSet = template.SpecificCharacterSet
        for tag in tags:
            part.add(template[tag])
        fp = self._fp()
        write_dataset(fp, part, self.encodings)
        return fp.getvalue()

    def write(self, ds: Dataset, path: Path) -> None:
        if set(ds.keys()) != self.tags:
            raise ValueError("dataset elements changed since the template was encoded")
        _file_meta(ds, self.ts)
        meta = self._fp()
        meta.is_implicit_VR = False
        write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
        fp = self._fp()
        for item in self.plan:
            if isinstance(item, bytes):
                fp.write(item)
                continue
            elem = ds[item]
            if item == 0x7FE00010:
                elem = DataElement(item, "OW" if ds.BitsAllocated > 8 else "OB", elem.value)
            write_data_element(fp, elem, self.encodings)
        path.write_bytes(b"\0" * 128 + b"DICM" + meta.getvalue() + fp.getvalue())


def _write_ct(
    out_dir: Path,
    *,
    n: int,
    size: int,
    seed: int,
    template: Dataset,
    transfer_syntax: str,
    sop_uid: Callable[[int], str],
    name: Callable[[int], str],
    on_written: Callable[[Dataset, Path], None] | None = None,
    fast: bool = True,
) -> list[Path]:
    phantom = _CtPhantom(size, seed)
    ds = template
    _ct_template(ds, size)
    x0, y0, z0, step = _ct_geometry(ds, size)
    compressed = UID(transfer_syntax).is_compressed
    base_time = str(ds.AcquisitionTime)
    paths: list[Path] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    writer: _SliceWriter | None = None
    fast = fast and not compressed and not UID(transfer_syntax).is_deflated
    for i in range(n):
        z = z0 - i * step
        ds.SOPInstanceUID = sop_uid(i)
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(z)]
        ds.SliceLocation = _ds(z)
        t = _add_seconds(base_time, i // 8)
        ds.ContentTime = t
        ds.AcquisitionTime = t
        pixels = phantom.slice(i, n)
        ds.PixelData = pixels.astype("<i2").tobytes()
        if compressed:
            _file_meta(ds, ExplicitVRLittleEndian)
            ds.compress(transfer_syntax, pixels, generate_instance_uid=False)
        path = out_dir / name(i)
        if fast:
            if writer is None:
                writer = _SliceWriter(ds, transfer_syntax, _CT_VARYING)
            writer.write(ds, path)
        else:
            _write(ds, path, transfer_syntax)
        if on_written is not None:
            on_written(ds, path)
        paths.append(path)
    ds.AcquisitionTime = base_time
    return paths


def write_ct_series(
    out_dir: Path,
    *,
    n: int,
    size: int = 512,
    seed: int = 1,
    patient_id: str = "BENCH-0001",
    issuer: str | None = "HOSP-A",
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> list[Path]:
    """Write a synthetic CT series of ``n`` slices of ``size`` x ``size`` into ``out_dir``.

    Fast (phantom and noise are computed once and varied per slice).  One study and one series
    whose UIDs are derived from ``(seed, patient_id, issuer)``; distinct SOPInstanceUIDs.
    Real geometry (ImagePositionPatient stepping -z, ImageOrientationPatient, PixelSpacing,
    SliceThickness, SliceLocation), signed 16-bit with RescaleIntercept -1024, two windows.

    Planted identifiers: PatientName "Fernsby^Zorblatt", PatientID ``patient_id``,
    IssuerOfPatientID ``issuer``, InstitutionName "Zorblatt Memorial Infirmary",
    ReferringPhysicianName "Quaxley^Ottoline", StudyDescription "Benchmark CT for Zorblatt
    Fernsby", AccessionNumber "ACC-BENCH-7731" (see :data:`BENCH_PLANTED`), PatientBirthDate
    19720905 and Study/Series/Content/Acquisition dates 20250614.

    ``transfer_syntax`` may be any uncompressed little endian syntax (explicit, implicit,
    deflated) or a compressed one pydicom can encode (e.g. RLE Lossless).  Files are named
    ``CT00001.dcm`` ... and returned in slice order.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    if size < 16:
        raise ValueError("size must be >= 16")
    ts = UID(transfer_syntax)
    if not ts.is_little_endian:
        raise ValueError("big endian transfer syntaxes are not supported")
    if ts.is_compressed and not _encoder_available(ts):
        raise ValueError(f"no pydicom encoder available for {ts.name}")
    key = ("bench", patient_id, issuer)
    ds = Dataset()
    _set_common(ds, sop_class=CT_IMAGE, sop_uid="", modality="CT", charset=None)
    ds.PatientName = BENCH_PLANTED["PatientName"]
    ds.PatientID = patient_id
    if issuer is not None:
        ds.IssuerOfPatientID = issuer
    ds.PatientBirthDate = _BENCH_BIRTH
    ds.PatientSex = "O"
    ds.PatientAge = _age(_BENCH_BIRTH, _BENCH_DATE)
    ds.StudyInstanceUID = _uid(seed, *key, "study")
    ds.StudyDate = _BENCH_DATE
    ds.StudyTime = "101500"
    ds.AccessionNumber = BENCH_PLANTED["AccessionNumber"]
    ds.StudyID = "1"
    ds.StudyDescription = BENCH_PLANTED["StudyDescription"]
    ds.ReferringPhysicianName = BENCH_PLANTED["ReferringPhysicianName"]
    ds.SeriesInstanceUID = _uid(seed, *key, "series")
    ds.SeriesNumber = 2
    ds.SeriesDate = _BENCH_DATE
    ds.SeriesTime = "101712"
    ds.SeriesDescription = "Thorax 2.5 mm"
    ds.Manufacturer = "FAKEVENDOR"
    ds.InstitutionName = BENCH_PLANTED["InstitutionName"]
    ds.FrameOfReferenceUID = _uid(seed, *key, "for")
    ds.ContentDate = _BENCH_DATE
    ds.AcquisitionDate = _BENCH_DATE
    ds.AcquisitionTime = "101714"
    return _write_ct(
        Path(out_dir),
        n=n,
        size=size,
        seed=seed,
        template=ds,
        transfer_syntax=ts,
        sop_uid=lambda i: _uid(seed, *key, i, "sop"),
        name=lambda i: f"CT{i + 1:05d}.dcm",
    )


# ---------------------------------------------------------------------------------------------
# Recording what was written
# ---------------------------------------------------------------------------------------------

_TEXT_VRS = {"AE", "AS", "CS", "DS", "IS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}
_BYTES_VRS = {"OB", "UN"}
_SKIP_BYTES = {0x7FE00010, 0x60003000, 0x50003000}


def _elem_name(ds: Dataset, elem: DataElement) -> str:
    tag = elem.tag
    tag_text = f"({tag.group:04X},{tag.element:04X})"
    if tag.is_private and not tag.is_private_creator:
        creator_tag = (tag.group << 16) | (tag.element >> 8)
        creator = ds[creator_tag].value if creator_tag in ds else "?"
        return f"{tag_text} [{creator}]"
    return elem.keyword or keyword_for_tag(tag) or tag_text


def _walk(ds: Dataset, prefix: str = "") -> Iterator[tuple[str, DataElement]]:
    for elem in ds:
        name = prefix + _elem_name(ds, elem)
        yield name, elem
        if elem.VR == "SQ":
            for idx, item in enumerate(elem.value):
                yield from _walk(item, f"{name}[{idx}].")


def _values(elem: DataElement) -> list[str]:
    value = elem.value
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple | MultiValue):
        return [str(v) for v in value]
    return [str(value)]


class _Recorder:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.catalogue = _catalogue()
        self.planted: dict[tuple[str, str, str, str], PlantedEntry] = {}
        self.uids: dict[str, None] = {}
        self.dates: set[str] = set()
        self.times: set[str] = set()
        self.files: list[FileEntry] = []

    def _plant(
        self, value: str, where: str, kind: str, encoding: str, category: str, rel: str
    ) -> None:
        key = (value, where, kind, encoding)
        entry = self.planted.get(key)
        if entry is None:
            entry = self.planted[key] = {
                "value": value,
                "where": where,
                "kind": kind,
                "encoding": encoding,
                "category": category,
                "files": [],
            }
        if not entry["files"] or entry["files"][-1] != rel:
            entry["files"].append(rel)

    def record(
        self,
        ds: Dataset,
        path: Path,
        *,
        label: str,
        patient: _Patient,
        burned_in: Sequence[BurnedInText] = (),
        overlay: Sequence[BurnedInText] = (),
    ) -> None:
        rel = path.relative_to(self.out_dir).as_posix()
        charset = ds.get("SpecificCharacterSet")
        encoding = _CHARSET_CODEC[charset]
        for uid in (ds.file_meta.MediaStorageSOPInstanceUID,):
            self.uids.setdefault(str(uid), None)
        for where, elem in _walk(ds):
            vr = elem.VR
            if vr == "UI":
                for v in _values(elem):
                    if UID(v).name == v:  # not a well-known (dictionary) UID
                        self.uids.setdefault(v, None)
                continue
            if vr in ("DA", "DT"):
                self.dates.update(_values(elem))
            elif vr == "TM":
                self.times.update(_values(elem))
            if vr in _TEXT_VRS:
                texts = _values(elem)
                elem_encoding = encoding
            elif vr in _BYTES_VRS and int(elem.tag) not in _SKIP_BYTES and elem.value:
                texts = [bytes(elem.value).decode(encoding, errors="replace")]
                elem_encoding = encoding
            else:
                continue
            found = False
            for text in texts:
                for value, category in self.catalogue.items():
                    if value in text:
                        found = True
                        self._plant(value, where, "element", elem_encoding, category, rel)
            if vr == "PN" and not found:
                raise RuntimeError(f"PN value {texts} at {where} is not in the catalogue")
        for box in burned_in:
            self._plant(
                box["text"],
                "pixels: text burned into PixelData",
                "pixels",
                "ascii",
                "burned-in text",
                rel,
            )
        for box in overlay:
            self._plant(
                box["text"],
                "overlay: text drawn in OverlayData (6000,3000)",
                "overlay",
                "ascii",
                "text in overlay bitmap",
                rel,
            )
        is_image = "PixelData" in ds
        self.files.append(
            {
                "path": rel,
                "label": label,
                "patient_id": patient.patient_id,
                "issuer": patient.issuer,
                "study_uid": str(ds.StudyInstanceUID),
                "series_uid": str(ds.SeriesInstanceUID),
                "sop_uid": str(ds.SOPInstanceUID),
                "modality": str(ds.Modality),
                "sop_class_uid": str(ds.SOPClassUID),
                "transfer_syntax_uid": str(ds.file_meta.TransferSyntaxUID),
                "charset": charset,
                "number_of_frames": int(ds.get("NumberOfFrames", 1)) if is_image else 0,
                "rows": int(ds.Rows) if is_image else None,
                "columns": int(ds.Columns) if is_image else None,
                "samples_per_pixel": int(ds.SamplesPerPixel) if is_image else None,
                "bits_allocated": int(ds.BitsAllocated) if is_image else None,
                "photometric_interpretation": str(ds.PhotometricInterpretation)
                if is_image
                else None,
                "burned_in_annotation": ds.get("BurnedInAnnotation"),
                "burned_in_text": [{"text": b["text"], "box": list(b["box"])} for b in burned_in],
                "overlay_text": [{"text": b["text"], "box": list(b["box"])} for b in overlay],
            }
        )


# ---------------------------------------------------------------------------------------------
# The sample set
# ---------------------------------------------------------------------------------------------


class _Builder:
    def __init__(self, out_dir: Path, seed: int, ct_slices: int) -> None:
        self.out = out_dir
        self.seed = seed
        self.ct_slices = ct_slices
        self.rec = _Recorder(out_dir)
        self.rng = np.random.default_rng(seed)
        self.skipped: list[str] = []
        self.refs: dict[str, list[tuple[str, str]]] = {}  # label -> [(sop_class, sop_uid)]

    # -- helpers ------------------------------------------------------------------------------
    def uid(self, *parts: object) -> str:
        return _uid(self.seed, *parts)

    def base(
        self,
        s: _Study,
        *,
        sop_class: str,
        sop_key: object,
        modality: str,
        series_key: str,
        series_number: int,
        series_description: str,
        offset_s: int,
        full: bool = True,
        tz: str | None = None,
    ) -> Dataset:
        ds = Dataset()
        _set_common(
            ds,
            sop_class=sop_class,
            sop_uid=self.uid(s.key, series_key, sop_key, "sop"),
            modality=modality,
            charset=s.charset,
        )
        _set_patient(ds, s.patient, s, full=full)
        _set_study(ds, s, self.seed, full=full)
        _set_series(
            ds,
            s,
            self.seed,
            series_key,
            series_number,
            series_description,
            offset_s=offset_s,
            full=full,
        )
        _set_image_dates(ds, s, offset_s + 30, tz)
        return ds

    def path(self, s: _Study, series_dir: str, index: int) -> Path:
        return self.out / s.key / series_dir / f"IM{index:04d}.dcm"

    def save(
        self,
        ds: Dataset,
        path: Path,
        ts: str,
        label: str,
        patient: _Patient,
        *,
        burned_in: Sequence[BurnedInText] = (),
        overlay: Sequence[BurnedInText] = (),
    ) -> None:
        _write(ds, path, ts)
        self.rec.record(
            ds, path, label=label, patient=patient, burned_in=burned_in, overlay=overlay
        )
        self.refs.setdefault(label, []).append((str(ds.SOPClassUID), str(ds.SOPInstanceUID)))

    # -- P1 baseline: CT localizer, CT axial series, RGB secondary capture ---------------------
    def ct_study(self) -> None:
        s, p = _ST_P1_BASE, _P1
        for_uid = self.uid(s.key, "for")
        # Localizer
        ds = self.base(
            s,
            sop_class=CT_IMAGE,
            sop_key=0,
            modality="CT",
            series_key="SE1",
            series_number=1,
            series_description="Topogram 0.6 T20f",
            offset_s=60,
        )
        ds.FrameOfReferenceUID = for_uid
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.InstanceNumber = 1
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "0", "-1"]
        ds.ImagePositionPatient = ["-255.5", "0", "120"]
        ds.PixelSpacing = ["1", "1"]
        ds.SliceThickness = "1"
        ds.KVP = "120"
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "0"
        ds.WindowWidth = "1600"
        axis = np.linspace(-1, 1, 512, dtype=np.float32)
        yy, xx = np.meshgrid(axis, axis, indexing="ij")
        body = np.clip(1.0 - (xx / 0.75) ** 2, 0, 1) * 900 + np.cos(yy * 9) * 40
        loc = np.clip(body + self.rng.normal(0, 10, body.shape), 0, 3000).astype(np.int16)
        _set_pixels(ds, loc, photometric="MONOCHROME2", bits_stored=16, signed=True)
        self.save(
            ds, self.path(s, "SE1_CT_LOCALIZER", 1), ExplicitVRLittleEndian, "ct_localizer", p
        )
        loc_ref = self.refs["ct_localizer"][0]

        # Axial series: template with all the planted extras, then the shared fast writer.
        tmpl = self.base(
            s,
            sop_class=CT_IMAGE,
            sop_key="tmpl",
            modality="CT",
            series_key="SE2",
            series_number=2,
            series_description="Thorax 2.5 mm soft tissue",
            offset_s=120,
        )
        tmpl.FrameOfReferenceUID = for_uid
        tmpl.IrradiationEventUID = self.uid(s.key, "irradiation-event")
        tmpl.ImageComments = f"Patient {p.name_text}, see MRN {p.patient_id}"
        tmpl.ReferencedImageSequence = [
            _item(ReferencedSOPClassUID=loc_ref[0], ReferencedSOPInstanceUID=loc_ref[1])
        ]
        tmpl.ReferencedPerformedProcedureStepSequence = [
            _item(
                ReferencedSOPClassUID=MPPS_SOP_CLASS,
                ReferencedSOPInstanceUID=self.uid(s.key, "mpps"),
            )
        ]
        tmpl.ProcedureCodeSequence = [
            _code("ZZ-CT-CHEST", "99FAKE", "CT chest, requested by Dr Xerxes Bumblethorpe")
        ]
        tmpl.PerformedProtocolCodeSequence = [_code("ZZ-PROT-7", "99FAKE", "Chest routine")]
        tmpl.AnatomicRegionSequence = [_code("T-D3000", "SRT", "Chest")]
        _private_block(
            tmpl,
            0x0029,
            "FAKEVENDOR 1.0",
            p,
            vendor_key="VENDOR-PT-Q4471",
            ref_uid=tmpl.StudyInstanceUID,
            blob=True,
        )
        rec = self.rec

        def on_written(ds: Dataset, path: Path) -> None:
            rec.record(ds, path, label="ct", patient=p)
            self.refs.setdefault("ct", []).append((str(ds.SOPClassUID), str(ds.SOPInstanceUID)))

        _write_ct(
            self.out / s.key / "SE2_CT",
            n=self.ct_slices,
            size=512,
            seed=self.seed,
            template=tmpl,
            transfer_syntax=ExplicitVRLittleEndian,
            sop_uid=lambda i: self.uid(s.key, "SE2", i, "sop"),
            name=lambda i: f"IM{i + 1:04d}.dcm",
            on_written=on_written,
        )

        # RGB secondary capture "screenshot" of the middle slice, no BurnedInAnnotation.
        mid = self.ct_slices // 2
        hu = _CtPhantom(512, self.seed).slice(mid, self.ct_slices).astype(np.float32) - 1024
        gray = (np.clip((hu + 160) / 400.0, 0, 1) * 255).astype(np.uint8)
        shot = Image.new("RGB", (640, 480), (12, 12, 24))
        shot.paste(
            Image.fromarray(gray).resize((400, 400), Image.Resampling.BILINEAR).convert("RGB"),
            (120, 60),
        )
        boxes = _draw_texts(
            shot,
            [
                ((8, 6), "QUILLFEATHER, ZAPHODIA", 22),
                ((8, 32), "Q-4471-ZQF", 20),
                ((440, 6), "DOB 14-MAR-1961", 18),
                ((440, 30), "04-MAR-2025 09:15", 18),
                ((8, 452), "NOWHEREVILLE GENERAL HOSPITAL", 18),
            ],
            fill=(255, 255, 0),
        )
        ds = self.base(
            s,
            sop_class=SC_IMAGE,
            sop_key=0,
            modality="OT",
            series_key="SE3",
            series_number=3,
            series_description="Screenshot key image",
            offset_s=900,
        )
        ds.ConversionType = "WSD"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.InstanceNumber = 1
        ds.SecondaryCaptureDeviceManufacturer = "FAKEVENDOR"
        ds.DerivationDescription = "Screen capture exported by A. Twillingate"
        ds.SourceImageSequence = [
            _item(ReferencedSOPClassUID=c, ReferencedSOPInstanceUID=u)
            for c, u in self.refs["ct"][mid - 1 : mid + 2]
        ]
        _set_pixels(ds, np.asarray(shot, dtype=np.uint8), photometric="RGB", bits_stored=8)
        self.save(
            ds, self.path(s, "SE3_SC_RGB", 1), ExplicitVRLittleEndian, "sc_rgb", p, burned_in=boxes
        )

    # -- P1 follow-up: MR (implicit VR, overlay, curve) and a Basic Text SR ---------------------
    def mr_followup(self) -> None:
        s, p = _ST_P1_FU, _P1
        n = 6
        slices = _mr_slices(n, 256, self.seed + 1)
        for_uid = self.uid(s.key, "for")
        baseline_uid = _uid(self.seed, _ST_P1_BASE.key, "study")
        for i, img in enumerate(slices):
            ds = self.base(
                s,
                sop_class=MR_IMAGE,
                sop_key=i,
                modality="MR",
                series_key="SE1",
                series_number=1,
                series_description="T2 TSE tra",
                offset_s=200,
            )
            ds.ReferringPhysicianName = "Saint-Émilion^Géraldine"
            ds.ImageComments = "Compared with baseline, Dr Géraldine Saint-Émilion"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
            ds.FrameOfReferenceUID = for_uid
            ds.ReferencedStudySequence = [
                _item(
                    ReferencedSOPClassUID=STUDY_COMPONENT_MGMT,
                    ReferencedSOPInstanceUID=baseline_uid,
                )
            ]
            if i > 0:
                first = self.refs["mr"][0]
                ds.ReferencedImageSequence = [
                    _item(ReferencedSOPClassUID=first[0], ReferencedSOPInstanceUID=first[1])
                ]
            ds.InstanceNumber = i + 1
            ds.ScanningSequence = "SE"
            ds.SequenceVariant = "SK"
            ds.MRAcquisitionType = "2D"
            ds.RepetitionTime = "4000"
            ds.EchoTime = "98"
            ds.MagneticFieldStrength = "3"
            ds.ImagingFrequency = "123.2"
            ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
            ds.ImagePositionPatient = ["-119.53125", "-119.53125", _ds(20.0 + 5.0 * i)]
            ds.PixelSpacing = ["0.9375", "0.9375"]
            ds.SliceThickness = "4"
            ds.SliceLocation = _ds(20.0 + 5.0 * i)
            ds.WindowCenter = "700"
            ds.WindowWidth = "1400"
            _private_block(ds, 0x0029, "FAKEVENDOR 1.0", p, vendor_key="VENDOR-PT-Q4471")
            overlay: list[BurnedInText] = []
            if i == 0:
                overlay = self._overlay_and_curve(ds, p)
            _set_pixels(ds, img, photometric="MONOCHROME2", bits_stored=12)
            self.save(
                ds, self.path(s, "SE1_MR", i + 1), ImplicitVRLittleEndian, "mr", p, overlay=overlay
            )

        # Basic Text SR referencing MR (this study) and CT (baseline) instances.
        ds = self.base(
            s,
            sop_class=BASIC_TEXT_SR,
            sop_key=0,
            modality="SR",
            series_key="SE2",
            series_number=2,
            series_description="Panel report",
            offset_s=3600,
        )
        ds.ReferringPhysicianName = "Saint-Émilion^Géraldine"
        for kw in ("AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime"):
            delattr(ds, kw)
        ds.InstanceNumber = 1
        ds.ValueType = "CONTAINER"
        ds.ConceptNameCodeSequence = [_code("11528-7", "LN", "Radiology Report")]
        ds.ContinuityOfContent = "SEPARATE"
        ds.CompletionFlag = "COMPLETE"
        ds.VerificationFlag = "VERIFIED"
        ds.VerifyingObserverSequence = [
            _item(
                VerifyingObserverName=p.centre.reading,
                VerifyingObserverIdentificationCodeSequence=[],
                VerifyingOrganization=p.centre.institution,
                VerificationDateTime=f"{s.date}170412",
            )
        ]
        ds.ReferencedPerformedProcedureStepSequence = []
        ds.PerformedProcedureCodeSequence = []
        mr_refs = self.refs["mr"]
        ct_refs = self.refs["ct"][:2]
        ds.CurrentRequestedProcedureEvidenceSequence = [
            _item(
                StudyInstanceUID=_uid(self.seed, s.key, "study"),
                ReferencedSeriesSequence=[
                    _item(
                        SeriesInstanceUID=_uid(self.seed, s.key, "SE1", "series"),
                        ReferencedSOPSequence=[
                            _item(ReferencedSOPClassUID=c, ReferencedSOPInstanceUID=u)
                            for c, u in mr_refs
                        ],
                    )
                ],
            ),
        ]
        ds.PertinentOtherEvidenceSequence = [
            _item(
                StudyInstanceUID=baseline_uid,
                ReferencedSeriesSequence=[
                    _item(
                        SeriesInstanceUID=_uid(self.seed, _ST_P1_BASE.key, "SE2", "series"),
                        ReferencedSOPSequence=[
                            _item(ReferencedSOPClassUID=c, ReferencedSOPInstanceUID=u)
                            for c, u in ct_refs
                        ],
                    )
                ],
            ),
        ]

        def content(value_type: str, code: Dataset, **kw: Any) -> Dataset:
            item = _item(
                RelationshipType="CONTAINS",
                ValueType=value_type,
                ConceptNameCodeSequence=[code],
                **kw,
            )
            return item

        findings = (
            f"Follow-up of {p.name_text} ({p.patient_id}), DOB 14.03.1961, "
            f"address {p.address}. Discussed with Dr Xerxes Bumblethorpe and "
            f"Dr Géraldine Saint-Émilion; sister Marigold Quillfeather to be screened."
        )
        ds.ContentSequence = [
            content(
                "PNAME", _code("121008", "DCM", "Person Observer Name"), PersonName=p.centre.reading
            ),
            content("TEXT", _code("121071", "DCM", "Findings"), TextValue=findings),
            content("DATE", _code("111060", "DCM", "Study Date"), Date=_ST_P1_BASE.date),
            content(
                "DATETIME", _code("111526", "DCM", "DateTime Started"), DateTime=f"{s.date}{s.time}"
            ),
            content(
                "UIDREF", _code("121018", "DCM", "Procedure Study Instance UID"), UID=baseline_uid
            ),
            _item(
                RelationshipType="CONTAINS",
                ValueType="IMAGE",
                ReferencedSOPSequence=[
                    _item(
                        ReferencedSOPClassUID=mr_refs[0][0], ReferencedSOPInstanceUID=mr_refs[0][1]
                    )
                ],
            ),
        ]
        self.save(ds, self.path(s, "SE2_SR", 1), ExplicitVRLittleEndian, "sr", p)

    def _overlay_and_curve(self, ds: Dataset, p: _Patient) -> list[BurnedInText]:
        bitmap = Image.new("L", (256, 256), 0)
        boxes = _draw_texts(
            bitmap, [((6, 4), "Q-4471-ZQF", 16), ((6, 232), "ZQF FOLLOW-UP", 14)], fill=255
        )
        ImageDraw.Draw(bitmap).ellipse((150, 90, 200, 140), outline=255, width=2)
        bits = (np.asarray(bitmap) > 127).astype(np.uint8)
        packed = np.packbits(bits.ravel(), bitorder="little").tobytes()
        ds.add_new(0x60000010, "US", 256)  # OverlayRows
        ds.add_new(0x60000011, "US", 256)  # OverlayColumns
        ds.add_new(0x60000022, "LO", f"Annotated for {p.name_text}")  # OverlayDescription
        ds.add_new(0x60000040, "CS", "G")  # OverlayType
        ds.add_new(0x60000050, "SS", [1, 1])  # OverlayOrigin
        ds.add_new(0x60000100, "US", 1)  # OverlayBitsAllocated
        ds.add_new(0x60000102, "US", 0)  # OverlayBitPosition
        ds.add_new(0x60001500, "LO", f"ROI {p.patient_id}")  # OverlayLabel
        ds.add_new(0x60003000, "OW", packed)  # OverlayData
        # Retired curve (50xx): a polygon ROI
        pts = np.array([[150, 90], [200, 90], [200, 140], [150, 140], [150, 90]], dtype="<u2")
        ds.add_new(0x50000005, "US", 2)  # CurveDimensions
        ds.add_new(0x50000010, "US", len(pts))  # NumberOfPoints
        ds.add_new(0x50000020, "CS", "ROI")  # TypeOfData
        ds.add_new(0x50000022, "LO", "ROI drawn by Cuthbert Marrowbone")  # CurveDescription
        ds.add_new(0x50000030, "SH", ["PIXL", "PIXL"])  # AxisUnits
        ds.add_new(0x50000103, "US", 0)  # DataValueRepresentation: unsigned short
        ds.add_new(0x50002500, "LO", f"Lesion {p.patient_id}")  # CurveLabel
        ds.add_new(0x50003000, "OW", pts.tobytes())  # CurveData
        return boxes

    # -- P2: ultrasound RGB (uncompressed) + ultrasound JPEG baseline ---------------------------
    def us_study(self) -> None:
        s, p = _ST_P2, _P2
        rows, cols = 480, 640
        yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
        r = np.hypot(xx - cols / 2, yy - 60)
        ang = np.arctan2(xx - cols / 2, yy - 60)
        sector = (r > 20) & (r < 400) & (np.abs(ang) < 0.7)
        texts = [
            ((8, 6), "ODEGARD, ASA", 22),
            ((8, 32), "NO-ODG-5581", 20),
            ((460, 6), "21.05.2025 14:03", 18),
            ((460, 30), "FJORDVIK UH", 18),
        ]
        refs: list[tuple[str, str]] = []
        for idx, (label, ts) in enumerate(
            (("us_rgb", ExplicitVRLittleEndian), ("us_jpeg", JPEGBaseline8Bit))
        ):
            speckle = self.rng.rayleigh(45.0, (rows, cols)).astype(np.float32)
            tissue = 60 + 50 * np.sin(r / 23.0 + idx) + speckle
            gray = np.where(sector, np.clip(tissue, 0, 255), 0).astype(np.uint8)
            rgb = np.repeat(gray[:, :, None], 3, axis=2)
            img = Image.fromarray(rgb, "RGB")
            boxes = _draw_texts(img, texts, fill=(255, 255, 255))
            ImageDraw.Draw(img).line((cols - 30, 80, cols - 30, 300), fill=(0, 200, 255), width=3)
            arr = np.asarray(img, dtype=np.uint8)
            ds = self.base(
                s,
                sop_class=US_IMAGE,
                sop_key=idx,
                modality="US",
                series_key="SE1",
                series_number=1,
                series_description="Abdomen B-mode",
                offset_s=30 + idx * 40,
                tz="+0200",
            )
            ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
            ds.InstanceNumber = idx + 1
            ds.BurnedInAnnotation = "YES"
            ds.SequenceOfUltrasoundRegions = _sequence_of_us_regions(rows, cols)
            ds.TransducerData = ["C5-1", "", ""]
            ds.ImageComments = (
                f"Bilde lagret for {p.name_text}, {p.patient_id}, henvist av Bjørn Østergaard-Nyhus"
            )
            _private_block(ds, 0x0009, "FAKEVENDOR US 3.1", p, vendor_key="FAKEVENDOR-ID-ODG-99")
            if refs:
                ds.ReferencedImageSequence = [
                    _item(ReferencedSOPClassUID=refs[0][0], ReferencedSOPInstanceUID=refs[0][1])
                ]
            if ts == JPEGBaseline8Bit:
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=90, subsampling="4:2:2")
                _set_pixels(ds, arr, photometric="YBR_FULL_422", bits_stored=8)
                ds.PixelData = encapsulate([buf.getvalue()])
                ds["PixelData"].VR = "OB"
                ds.LossyImageCompression = "01"
                ds.LossyImageCompressionRatio = _ds(arr.nbytes / len(buf.getvalue()))
                ds.LossyImageCompressionMethod = "ISO_10918_1"
            else:
                _set_pixels(ds, arr, photometric="RGB", bits_stored=8)
                ds.LossyImageCompression = "00"
            self.save(ds, self.path(s, "SE1_US", idx + 1), ts, label, p, burned_in=boxes)
            refs.append((str(ds.SOPClassUID), str(ds.SOPInstanceUID)))

    # -- P3: multi-frame XA, CR (JPEG-LS lossless), DX (JPEG 2000 lossless) --------------------
    def xray_study(self) -> None:
        s, p = _ST_P3, _P3
        frames = 12
        size = 256
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        base = 170 - 40 * ((xx - 128) ** 2 + (yy - 128) ** 2) / (128.0**2)
        noise = self.rng.normal(0, 6, (size + 32, size + 32)).astype(np.float32)
        cine = np.empty((frames, size, size), dtype=np.uint8)
        for f in range(frames):
            vessel = np.abs(yy - (60 + 0.6 * xx + 8 * np.sin(xx / 20.0 + f / 3.0))) < 5
            reach = xx < (f + 1) * size / frames
            img = base - np.where(vessel & reach, 90, 0) + noise[f : f + size, f * 2 : f * 2 + size]
            cine[f] = np.clip(img, 0, 255).astype(np.uint8)
        ds = self.base(
            s,
            sop_class=XA_IMAGE,
            sop_key=0,
            modality="XA",
            series_key="SE1",
            series_number=1,
            series_description="Coronary LCA RAO 30",
            offset_s=120,
            tz="+0100",
        )
        ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
        ds.InstanceNumber = 1
        ds.ImageComments = (
            f"Untersuchung {p.name_text}, Angehörige {p.relative_text}, MTRA Götz Kühnemund"
        )
        ds.KVP = "80"
        ds.PositionerPrimaryAngle = "-30"
        ds.PositionerSecondaryAngle = "0"
        ds.FrameTime = "66.7"
        ds.CineRate = 15
        ds.FrameIncrementPointer = 0x00181063
        ds.NumberOfFrames = frames
        _private_block(
            ds,
            0x0019,
            "FAKEVENDOR XA 2.1",
            p,
            vendor_key="FAKEVENDOR-ID-MLJ-07",
            ref_uid=ds.StudyInstanceUID,
            blob=True,
        )
        _set_pixels(ds, cine, photometric="MONOCHROME2", bits_stored=8)
        self.save(
            ds, self.path(s, "SE1_XA_MULTIFRAME", 1), ExplicitVRLittleEndian, "xa_multiframe", p
        )

        yy2, xx2 = np.mgrid[0:384, 0:320].astype(np.float32)
        chest = 2600 - 1500 * np.exp(-(((xx2 - 160) / 70) ** 2 + ((yy2 - 190) / 120) ** 2))
        chest += self.rng.normal(0, 25, chest.shape).astype(np.float32)
        chest12 = np.clip(chest, 0, 4095).astype(np.uint16)
        for idx, (label, ts, sop_class, modality, photometric) in enumerate(
            (
                ("cr_jpegls", JPEGLSLossless, CR_IMAGE, "CR", "MONOCHROME1"),
                ("dx_j2k", JPEG2000Lossless, DX_PRESENTATION, "DX", "MONOCHROME2"),
            )
        ):
            if not _encoder_available(ts):
                self.skipped.append(f"{label}: no encoder for {UID(ts).name}")
                continue
            ds = self.base(
                s,
                sop_class=sop_class,
                sop_key=0,
                modality=modality,
                series_key=f"SE{idx + 2}",
                series_number=idx + 2,
                series_description=f"Thorax pa ({modality})",
                offset_s=900 + idx * 60,
            )
            ds.ImageType = ["ORIGINAL", "PRIMARY"]
            ds.InstanceNumber = 1
            ds.BodyPartExamined = "CHEST"
            ds.ViewPosition = "PA"
            ds.ImagerPixelSpacing = ["0.3", "0.3"]
            ds.ImageComments = f"Aufnahme {p.name_text} ({p.patient_id})"
            pixels = chest12 if photometric == "MONOCHROME2" else (4095 - chest12)
            if modality == "DX":
                ds.PresentationIntentType = "FOR PRESENTATION"
                ds.PixelIntensityRelationship = "LOG"
                ds.PixelIntensityRelationshipSign = 1
                ds.RescaleIntercept = "0"
                ds.RescaleSlope = "1"
                ds.RescaleType = "US"
                ds.BurnedInAnnotation = "NO"
                ds.PatientOrientation = ["L", "F"]
                ds.DetectorType = "SCINTILLATOR"
            ds.WindowCenter = "2048"
            ds.WindowWidth = "4096"
            _set_pixels(ds, pixels.astype(np.uint16), photometric=photometric, bits_stored=12)
            ds.compress(ts, pixels, generate_instance_uid=False)
            self.save(ds, self.path(s, f"SE{idx + 2}_{label.upper()}", 1), ts, label, p)

    # -- P4: multi-frame SC (RLE, burned-in text) + MR (deflated) ------------------------------
    def p4_study(self) -> None:
        s, p = _ST_P4, _P4
        size = 128
        mr = _mr_slices(1, size, self.seed + 4)[0]
        ds = self.base(
            s,
            sop_class=MR_IMAGE,
            sop_key=0,
            modality="MR",
            series_key="SE1",
            series_number=1,
            series_description="T1 sag",
            offset_s=60,
        )
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.FrameOfReferenceUID = self.uid(s.key, "for")
        ds.InstanceNumber = 1
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = "SP"
        ds.MRAcquisitionType = "3D"
        ds.ImageComments = f"Ασθενής {p.name_text}, τηλ. {p.phone}"
        ds.ImageOrientationPatient = ["0", "1", "0", "0", "0", "-1"]
        ds.ImagePositionPatient = ["0", "-120", "120"]
        ds.PixelSpacing = ["1.875", "1.875"]
        ds.SliceThickness = "1.875"
        _private_block(
            ds, 0x0029, "FAKEVENDOR 1.0", p, vendor_key="FAKEVENDOR-ID-PPE-11", blob=True
        )
        _set_pixels(ds, mr, photometric="MONOCHROME2", bits_stored=12)
        self.save(
            ds, self.path(s, "SE1_MR_DEFLATED", 1), DeflatedExplicitVRLittleEndian, "mr_deflated", p
        )
        mr_ref = self.refs["mr_deflated"][0]

        frames = 8
        cine_base = (_mr_slices(1, 256, self.seed + 5)[0] >> 4).astype(np.int16)
        mask_img = Image.new("L", (256, 256), 0)
        boxes = _draw_texts(
            mask_img, [((4, 4), "PAPADOPOULOU E", 18), ((4, 230), "RDX-33019-K", 16)], fill=255
        )
        text = np.asarray(mask_img, dtype=np.int16)
        stack = np.stack(
            [
                np.maximum(np.clip(cine_base + 6 * f, 0, 230), text).astype(np.uint8)
                for f in range(frames)
            ]
        )
        if not _encoder_available(RLELossless):  # pragma: no cover - pydicom has a native one
            self.skipped.append("sc_rle_multiframe: no RLE encoder")
            return
        ds = self.base(
            s,
            sop_class=MF_GRAY_BYTE_SC,
            sop_key=0,
            modality="OT",
            series_key="SE2",
            series_number=2,
            series_description="Exported cine",
            offset_s=600,
        )
        ds.ConversionType = "WSD"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.InstanceNumber = 1
        ds.BurnedInAnnotation = "YES"
        ds.FrameIncrementPointer = 0x00181063
        ds.FrameTime = "100"
        ds.SourceImageSequence = [
            _item(ReferencedSOPClassUID=mr_ref[0], ReferencedSOPInstanceUID=mr_ref[1])
        ]
        ds.DerivationDescription = "Export για Dr Σπυρίδων Καραγκιόζης"  # noqa: RUF001
        ds.NumberOfFrames = frames
        _set_pixels(ds, stack, photometric="MONOCHROME2", bits_stored=8)
        ds.compress(RLELossless, stack, generate_instance_uid=False)
        self.save(
            ds,
            self.path(s, "SE2_SC_RLE_MULTIFRAME", 1),
            RLELossless,
            "sc_rle_multiframe",
            p,
            burned_in=boxes,
        )

    # -- manifest -------------------------------------------------------------------------------
    def manifest(self) -> Manifest:
        patients: list[PatientEntry] = [
            {
                "patient_id": p.patient_id,
                "issuer": p.issuer,
                "name": p.name,
                "birth_date": p.birth_date,
                "centre_hint": p.centre.hint,
                "sex": p.sex,
                "charset": p.charset,
            }
            for p in _PATIENTS
        ]
        studies: list[StudyEntry] = [
            {
                "study_uid": _uid(self.seed, s.key, "study"),
                "patient_id": s.patient.patient_id,
                "issuer": s.patient.issuer,
                "role": s.role,
                "study_date": s.date,
                "study_time": s.time,
                "accession_number": s.accession,
                "description": s.description,
            }
            for s in _STUDIES
        ]
        return Manifest(
            seed=self.seed,
            ct_slices=self.ct_slices,
            patients=patients,
            studies=studies,
            planted=list(self.rec.planted.values()),
            original_uids=list(self.rec.uids),
            original_dates=sorted(self.rec.dates),
            original_times=sorted(self.rec.times),
            files=self.rec.files,
            skipped=self.skipped,
        )


def generate(
    out_dir: Path, *, seed: int = DEFAULT_SEED, ct_slices: int = DEFAULT_CT_SLICES
) -> Manifest:
    """Write the full synthetic sample set into ``out_dir`` and ``out_dir/manifest.json``.

    Layout ``P<n>/ST<n>/SE<n>_<KIND>/IM<nnnn>.dcm`` (no identifiers in paths):

    * P1 "Quillfeather^Zaphodia" (issuer NOWHEREVILLE-GH), two studies:
      ST1 baseline 2025-03-04: CT localizer, CT axial (``ct_slices`` x 512x512, signed 16-bit,
      explicit VR LE, private tags, nested sequences), RGB secondary capture with burned-in
      text and no BurnedInAnnotation; ST2 follow-up 2025-09-16: MR 6 x 256x256 implicit VR LE
      (ISO_IR 100) with overlay and curve data, Basic Text SR referencing MR and CT.
    * P2 "Ødegård^Åsa" (ISO_IR 192): US RGB with burned-in text and ultrasound regions, and
      the same as JPEG Baseline (YBR_FULL_422).
    * P3 "Müller-Lüdenscheidt^Jürgen" (ISO_IR 100): 12-frame XA, CR as JPEG-LS lossless,
      DX as JPEG 2000 lossless (skipped, and listed in ``skipped``, without encoders).
    * P4 "Παπαδοπούλου^Ελευθερία" (ISO_IR 192, no issuer, same PatientID as P3): MR in
      Deflated Explicit VR LE, 8-frame byte SC in RLE Lossless with burned-in text.

    Deterministic: the same seed gives byte-identical files.  The seed drives UIDs and pixel
    noise; planted identifiers and dates are fixed (see README.md).
    """
    if ct_slices < MIN_CT_SLICES:
        raise ValueError(f"ct_slices must be >= {MIN_CT_SLICES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    builder = _Builder(out_dir, seed, ct_slices)
    builder.ct_study()
    builder.mr_followup()
    builder.us_study()
    builder.xray_study()
    builder.p4_study()
    manifest = builder.manifest()
    manifest.save(out_dir / MANIFEST_NAME)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sample_data.generate",
        description="Write a synthetic DICOM sample set with planted FAKE identifiers.",
    )
    parser.add_argument("out_dir", type=Path, help="output directory")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--ct-slices", type=int, default=DEFAULT_CT_SLICES, help=f"CT slices (>= {MIN_CT_SLICES})"
    )
    args = parser.parse_args(argv)
    if args.ct_slices < MIN_CT_SLICES:
        parser.error(f"--ct-slices must be >= {MIN_CT_SLICES}")
    start = time.perf_counter()
    manifest = generate(args.out_dir, seed=args.seed, ct_slices=args.ct_slices)
    elapsed = time.perf_counter() - start
    print(
        f"wrote {len(manifest.files)} files for {len(manifest.patients)} patients to "
        f"{args.out_dir} in {elapsed:.1f}s ({len(manifest.planted)} planted entries, "
        f"{len(manifest.original_uids)} UIDs); manifest: {args.out_dir / MANIFEST_NAME}"
    )
    for item in manifest.skipped:
        print(f"skipped {item}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
