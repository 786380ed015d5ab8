"""Mark a dataset as de-identified (PS3.15 Section E.1.1 and PS3.3 C.7.1.1).

Invariant 2: every stored instance records the profile name, version and hash
that de-identified it, in ``DeidentificationMethod`` (0012,0063) and
``DeidentificationMethodCodeSequence`` (0012,0064, CID 7050). These are set by
the engine after the recipes ran, whatever the recipes say.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from dicom_service.deidentify.engine import code_item
from dicom_service.deidentify.pseudonyms import Pseudonymiser
from dicom_service.dicom.parse import SOP_INSTANCE_UID, peek_uid

__all__ = ["MANUFACTURER", "Marks", "mark"]

MANUFACTURER = "dicom_service"
_DEIDENTIFYING_EQUIPMENT = ("109104", "DCM", "De-identifying Equipment")  # CID 7005

_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020
_PATIENT_IDENTITY_REMOVED = 0x00120062
_DEID_METHOD = 0x00120063
_DEID_METHOD_CODES = 0x00120064
_LONGITUDINAL = 0x00280303
_CONTRIBUTING_EQUIPMENT = 0x0018A001
_MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003


@dataclass(frozen=True)
class Marks:
    """What :func:`mark` writes.

    Attributes:
        method: values of DeidentificationMethod (LO, each at most 64 chars).
        codes: CID 7050 (code value, meaning) pairs, scheme DCM.
        longitudinal: LongitudinalTemporalInformationModified
            (``REMOVED``, ``MODIFIED`` or ``UNMODIFIED``).
        software_version: SoftwareVersions of the contributing-equipment item.
        contributing_equipment: whether to add that item.
    """

    method: tuple[str, ...]
    codes: tuple[tuple[str, str], ...]
    longitudinal: str
    software_version: str
    contributing_equipment: bool = True
    _encoded: dict[tuple[bool, bool], dict[int, bytes]] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )

    def code_sequence(self) -> Sequence:
        return Sequence([code_item(value, "DCM", meaning) for value, meaning in self.codes])

    def constants(self, implicit: bool, little: bool) -> dict[int, bytes]:
        """The constant markers encoded for one transfer syntax encoding, as
        raw element values (computed once per encoding)."""
        hit = self._encoded.get((implicit, little))
        if hit is not None:
            return hit
        values: dict[int, tuple[str, object]] = {
            _PATIENT_IDENTITY_REMOVED: ("CS", "YES"),
            _DEID_METHOD: ("LO", list(self.method)),
            _DEID_METHOD_CODES: ("SQ", self.code_sequence()),
            _LONGITUDINAL: ("CS", self.longitudinal),
            _CONTRIBUTING_EQUIPMENT: ("SQ", Sequence([_contributing_item(self)])),
        }
        encoded: dict[int, bytes] = {}
        for tag, (vr, value) in values.items():
            one = Dataset()
            one[tag] = DataElement(tag, vr, value)
            fp = DicomBytesIO()
            fp.is_implicit_VR = implicit
            fp.is_little_endian = little
            write_dataset(fp, one)
            # skip tag, VR and length: 8 bytes, or 12 for SQ in explicit VR (PS3.5 7.1.2)
            start = 12 if vr == "SQ" and not implicit else 8
            encoded[tag] = fp.getvalue()[start:]
        self._encoded[(implicit, little)] = encoded
        return encoded


def _set(ds: Dataset, tag: int, vr: str, value: object) -> None:
    ds[tag] = DataElement(tag, vr, value)


def _set_raw(
    ds: Dataset, tag: int, vr: str, data: bytes, implicit: bool, little: bool
) -> None:
    """Set an element from its encoded value; the writer copies it as is when
    the output encoding is the dataset's, and decodes it otherwise."""
    key = BaseTag(tag)
    ds._dict[key] = RawDataElement(
        key, None if implicit else vr, len(data), data, 0, implicit, little
    )


def _text(value: str) -> bytes:
    data = value.encode("ascii")
    return data + b" " if len(data) % 2 else data


def _contributing_item(marks: Marks) -> Dataset:
    item = Dataset()
    item.Manufacturer = MANUFACTURER
    item.SoftwareVersions = marks.software_version
    item.PurposeOfReferenceCodeSequence = Sequence([code_item(*_DEIDENTIFYING_EQUIPMENT)])
    return item


def _already_contributed(seq: Sequence, marks: Marks) -> bool:
    for item in seq:
        if item.get("Manufacturer") == MANUFACTURER and item.get(
            "SoftwareVersions"
        ) == marks.software_version:
            return True
    return False


def mark(ds: Dataset, p: Pseudonymiser, marks: Marks) -> None:
    """Set the pseudonym and the de-identification attributes on ``ds``.

    PatientName and PatientID become the pseudonym; PatientIdentityRemoved
    ``YES``; DeidentificationMethod, DeidentificationMethodCodeSequence and
    LongitudinalTemporalInformationModified from ``marks``; a
    ContributingEquipmentSequence item for the de-identifying equipment
    (purpose 109104, as highdicom's ``ContributingEquipment`` does) unless one
    from this software version is present; and file meta
    MediaStorageSOPInstanceUID equal to SOPInstanceUID.
    """
    encoding = ds.original_encoding
    implicit, little = bool(encoding[0]), bool(encoding[1])
    if encoding[0] is None or encoding[1] is None:  # built in memory: decoded elements
        _set(ds, _PATIENT_NAME, "PN", p.pseudonym)
        _set(ds, _PATIENT_ID, "LO", p.pseudonym)
        _set(ds, _PATIENT_IDENTITY_REMOVED, "CS", "YES")
        _set(ds, _DEID_METHOD, "LO", list(marks.method))
        _set(ds, _DEID_METHOD_CODES, "SQ", marks.code_sequence())
        _set(ds, _LONGITUDINAL, "CS", marks.longitudinal)
        constants = None
    else:  # read from bytes: add encoded elements, decoded only if asked for
        pseudonym = _text(p.pseudonym)
        _set_raw(ds, _PATIENT_NAME, "PN", pseudonym, implicit, little)
        _set_raw(ds, _PATIENT_ID, "LO", pseudonym, implicit, little)
        constants = marks.constants(implicit, little)
        for tag, vr in (
            (_PATIENT_IDENTITY_REMOVED, "CS"),
            (_DEID_METHOD, "LO"),
            (_DEID_METHOD_CODES, "SQ"),
            (_LONGITUDINAL, "CS"),
        ):
            _set_raw(ds, tag, vr, constants[tag], implicit, little)
    if marks.contributing_equipment:
        if _CONTRIBUTING_EQUIPMENT not in ds and constants is not None:
            data = constants[_CONTRIBUTING_EQUIPMENT]
            _set_raw(ds, _CONTRIBUTING_EQUIPMENT, "SQ", data, implicit, little)
        elif _CONTRIBUTING_EQUIPMENT in ds:
            seq = ds[_CONTRIBUTING_EQUIPMENT].value
            if not isinstance(seq, Sequence):  # an empty element read as [] or None
                seq = Sequence(seq or [])
                ds[_CONTRIBUTING_EQUIPMENT].value = seq
            if not _already_contributed(seq, marks):
                seq.append(_contributing_item(marks))
        else:
            _set(ds, _CONTRIBUTING_EQUIPMENT, "SQ", Sequence([_contributing_item(marks)]))
    meta = getattr(ds, "file_meta", None)
    if meta is not None and SOP_INSTANCE_UID in ds:
        # read without converting a raw element: the writer then copies its
        # bytes as the walk mapped them
        sop = peek_uid(ds, SOP_INSTANCE_UID)
        if sop:
            meta[_MEDIA_STORAGE_SOP_INSTANCE_UID] = DataElement(
                _MEDIA_STORAGE_SOP_INSTANCE_UID, "UI", sop
            )
