"""Writing Part-10 files (PS3.10 7.1) with this implementation's file meta."""

from __future__ import annotations

import io

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID

# The implementation identity written into every file meta (PS3.10 7.1).
IMPLEMENTATION_CLASS_UID = "2.25.160547232414327386417131213127262349957"
IMPLEMENTATION_VERSION = "DICOM_SERVICE_01"


def encode_part10(ds: Dataset, transfer_syntax: str) -> bytes:
    """``ds`` as a Part-10 file in ``transfer_syntax``; replaces its file meta.

    The file meta carries only what PS3.10 requires: no source AE title or
    other trace of where the instance came from.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = meta
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()
