"""The DICOM JSON and pixel data offsets kept at ingest (dicom_service/ingest/metadata.py),
checked against pydicom's own DICOM JSON for every sample file."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import UID

from dicom_service.ingest.metadata import describe_instance
from dicom_service.storage.base import InstanceKey
from sample_data.generate import Manifest

KEY = InstanceKey("1.2.3", "1.2.3.4", "1.2.3.4.5")


def _normal(model: dict[str, Any]) -> dict[str, Any]:
    """Differences PS3.18 F.2 allows: empty string vs null for empty values, and an
    empty sequence with or without an empty Value array."""
    out = {}
    for tag, elem in model.items():
        elem = dict(elem)
        if " or " in elem["vr"] and elem["vr"] != "US or SS":
            elem["vr"] = "OW"  # a definite VR, as F.2.3 requires (pydicom keeps "OB or OW")
        if elem.get("vr") == "SQ":
            elem["Value"] = [_normal(item) for item in elem.get("Value", [])]
        elif "Value" in elem:
            elem["Value"] = [None if v == "" else v for v in elem["Value"]]
        if "BulkDataURI" in elem:
            elem["BulkDataURI"] = "bulk"
        out[tag] = elem
    return out


def test_metadata_matches_pydicom_and_offsets_point_at_pixel_data(
        sample_set: tuple[Path, Manifest]) -> None:
    import json

    directory, manifest = sample_set
    seen = set()
    for f in manifest.files:
        if f["label"] in seen:
            continue
        seen.add(f["label"])
        data = (directory / f["path"]).read_bytes()
        ds = pydicom.dcmread(io.BytesIO(data))
        ts = UID(f["transfer_syntax_uid"])
        facts = describe_instance(ds, data, ts, KEY)
        mine = json.loads(facts.metadata_json)
        reference = pydicom.dcmread(io.BytesIO(data)).to_json_dict(1024, lambda _: "bulk")
        assert _normal(mine) == _normal(reference), f["label"]
        if "7FE00010" in mine:
            assert mine["7FE00010"]["BulkDataURI"] == (
                "studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/bulkdata/7FE00010")
            assert facts.number_of_frames == max(1, f["number_of_frames"])
        else:
            assert facts.number_of_frames is None
        if ts.is_compressed or ts.is_deflated or "PixelData" not in ds:
            assert facts.pixel_data_offset is None
        else:
            assert facts.pixel_data_offset is not None and facts.pixel_data_length is not None
            start, end = facts.pixel_data_offset, facts.pixel_data_offset + len(ds.PixelData)
            assert data[start:end] == ds.PixelData


@pytest.mark.parametrize("decoy", [True, False])
def test_pixel_offset_is_not_fooled_by_a_lookalike_header(decoy: bool) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1")
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated = 16
    ds.SamplesPerPixel = 1
    header = b"\xe0\x7f\x10\x00OW\x00\x00" + (32).to_bytes(4, "little")
    if decoy:  # the header bytes inside an earlier value
        ds.add_new(0x00091001, "OB", header + b"\x01" * 32)
        ds.private_block(0x0009, "X", create=True)
    ds.PixelData = b"\x02" * 32
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    data = buf.getvalue()
    facts = describe_instance(ds, data, UID("1.2.840.10008.1.2.1"), KEY)
    assert facts.pixel_data_offset is not None
    assert data[facts.pixel_data_offset:facts.pixel_data_offset + 32] == b"\x02" * 32
