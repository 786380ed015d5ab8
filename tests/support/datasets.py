"""Small hand-made data sets for tests of the ingest path."""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def tiny_ct(patient_id: str, *, rows: int = 4, pixels: bytes | None = None,
            **overrides: str) -> Dataset:
    """A CT image of ``rows`` x ``rows`` 16-bit pixels (zeros unless ``pixels``),
    with fresh UIDs and a planted fake name; ``overrides`` set keywords last."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = "Quux^Zebedee"
    ds.Modality = "CT"
    ds.Rows = ds.Columns = rows
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = pixels if pixels is not None else b"\0" * (2 * rows * rows)
    for k, v in overrides.items():
        setattr(ds, k, v)
    return ds
