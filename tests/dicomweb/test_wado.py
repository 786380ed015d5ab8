"""WADO-RS: instances (with transfer-syntax negotiation), metadata, frames, bulk data;
parametrised over every transfer syntax of the sample set."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pydicom
import pytest
from requests import HTTPError

from tests.dicomweb.conftest import TRANSFER_SYNTAXES, Loaded

EXPLICIT = "1.2.840.10008.1.2.1"
LOSSY = {"1.2.840.10008.1.2.4.50"}


def _original_pixels(loaded: Loaded, ts: str) -> np.ndarray:
    f = loaded.file(ts)
    ds = pydicom.dcmread(loaded.directory / f["path"])
    arr = ds.pixel_array
    return arr if f["number_of_frames"] > 1 else arr[np.newaxis, ...]


@pytest.mark.parametrize("ts", list(TRANSFER_SYNTAXES), ids=list(TRANSFER_SYNTAXES.values()))
def test_retrieve_instance_default_and_as_stored(loaded: Loaded, ts: str) -> None:
    f = loaded.file(ts)
    study, series, sop = loaded.stored_uids(f)
    client = loaded.client(loaded.pseudonym_of(f))
    # default: Explicit VR Little Endian, decoded from any compressed syntax
    ds = client.retrieve_instance(study, series, sop,
                                  media_types=(("application/dicom", EXPLICIT),))
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT
    assert ds.SOPInstanceUID == sop
    assert ds.PatientIdentityRemoved == "YES"
    as_stored = client.retrieve_instance(study, series, sop,
                                         media_types=(("application/dicom", "*"),))
    assert as_stored.file_meta.TransferSyntaxUID == loaded.stored_ts(f)
    assert np.array_equal(ds.pixel_array, as_stored.pixel_array)
    if ts not in LOSSY and not f["burned_in_text"]:  # lossless, and no pixels cleaned
        original = _original_pixels(loaded, ts)
        got = ds.pixel_array if f["number_of_frames"] > 1 else ds.pixel_array[np.newaxis]
        assert np.array_equal(got, original)
    # the same through the series and study resources
    in_series = client.retrieve_series(study, series,
                                       media_types=(("application/dicom", "*"),))
    assert sop in {str(d.SOPInstanceUID) for d in in_series}


@pytest.mark.parametrize("ts", list(TRANSFER_SYNTAXES), ids=list(TRANSFER_SYNTAXES.values()))
def test_metadata_and_frames(loaded: Loaded, ts: str) -> None:
    f = loaded.file(ts)
    study, series, sop = loaded.stored_uids(f)
    client = loaded.client(loaded.pseudonym_of(f))
    meta = client.retrieve_instance_metadata(study, series, sop)
    assert meta["00080018"]["Value"] == [sop]
    assert meta["00100020"]["Value"] == [loaded.pseudonym_of(f)]
    bulk_uri = meta["7FE00010"]["BulkDataURI"]
    assert bulk_uri.startswith(loaded.url + "/dicom-web/studies/")
    series_meta = client.retrieve_series_metadata(study, series)
    assert meta in series_meta
    assert meta in client.retrieve_study_metadata(study)

    frames = f["number_of_frames"]
    rows, cols, spp = f["rows"], f["columns"], f["samples_per_pixel"]
    bits = f["bits_allocated"]
    assert rows and cols and spp and bits
    size = rows * cols * spp * bits // 8
    numbers = list(range(1, frames + 1))
    # native frames (OHIF-style Accept for uncompressed data works too)
    native = client.retrieve_instance_frames(
        study, series, sop, numbers, media_types=(("application/octet-stream", EXPLICIT),))
    assert [len(b) for b in native] == [size] * frames
    ds = client.retrieve_instance(study, series, sop,
                                  media_types=(("application/dicom", EXPLICIT),))
    arr = ds.pixel_array if frames > 1 else ds.pixel_array[np.newaxis]
    if f["photometric_interpretation"] == "YBR_FULL_422":
        pass  # decoded to RGB by both paths; compared below through the bytes length
    else:
        for n in numbers:
            assert native[n - 1] == np.ascontiguousarray(arr[n - 1]).astype(
                arr.dtype.newbyteorder("<")).tobytes()
    # a frame list, in the order asked
    if frames > 1:
        picked = client.retrieve_instance_frames(
            study, series, sop, [frames, 1], media_types=(("application/octet-stream", EXPLICIT),))
        assert picked == [native[-1], native[0]]
    # as stored: compressed frames in their own media type
    headers = {"Authorization": f"Bearer {loaded.tokens[loaded.pseudonym_of(f)]}",
               "Accept": 'multipart/related; type="application/octet-stream"; '
                         "transfer-syntax=*"}
    r = httpx.get(f"{loaded.url}/dicom-web/studies/{study}/series/{series}/instances/{sop}"
                  f"/frames/1", headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("multipart/related")
    stored = loaded.stored_ts(f)
    if pydicom.uid.UID(stored).is_compressed:
        assert f"transfer-syntax={stored}" in r.headers["content-type"]
    # bulk data of the pixel data: every frame
    bulk = client.retrieve_bulkdata(bulk_uri, media_types=(("application/octet-stream", "*"),))
    assert len(bulk) == frames


def test_bulkdata_of_other_elements(loaded: Loaded) -> None:
    f = loaded.labelled("mr")  # overlay data
    study, series, sop = loaded.stored_uids(f)
    client = loaded.client(loaded.pseudonym_of(f))
    meta = client.retrieve_instance_metadata(study, series, sop)
    uris = [v["BulkDataURI"] for k, v in meta.items()
            if "BulkDataURI" in v and k != "7FE00010"]
    for uri in uris:
        (value,) = client.retrieve_bulkdata(uri)
        assert value


@pytest.mark.parametrize(("suffix", "status"), [
    ("/frames/0", 400),
    ("/frames/x", 400),
    ("/frames/1,,2", 400),
    ("/frames/-1", 400),
    ("/frames/999", 404),
    ("/frames/1,999", 404),
    ("/bulkdata/zz", 400),
    ("/bulkdata/00100010", 404),
])
def test_frames_errors(loaded: Loaded, suffix: str, status: int) -> None:
    f = loaded.labelled("ct")
    study, series, sop = loaded.stored_uids(f)
    headers = {"Authorization": f"Bearer {loaded.tokens[loaded.pseudonym_of(f)]}"}
    r = httpx.get(f"{loaded.url}/dicom-web/studies/{study}/series/{series}/instances/{sop}"
                  + suffix, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path", [
    "/dicom-web/studies/1.02.3",
    "/dicom-web/studies/..%2F..%2Fetc",
    "/dicom-web/studies/" + "1." * 40 + "1/metadata",
    "/dicom-web/studies/1.2/series/x/metadata",
    "/dicom-web/studies/1.2/series/1.3/instances/1.4./frames/1",
])
def test_malformed_uids_are_400(loaded: Loaded, path: str) -> None:
    token = next(iter(loaded.tokens.values()))
    r = httpx.get(loaded.url + path, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code in (400, 404), r.text  # an encoded slash may not reach a route
    if r.status_code == 400:
        assert r.headers["content-type"] == "application/problem+json"


def test_unacceptable_media_types_are_406(loaded: Loaded) -> None:
    f = loaded.labelled("ct")
    study, series, sop = loaded.stored_uids(f)
    headers = {"Authorization": f"Bearer {loaded.tokens[loaded.pseudonym_of(f)]}"}
    base = f"{loaded.url}/dicom-web/studies/{study}/series/{series}/instances/{sop}"
    jpeg = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
    assert httpx.get(base, headers={**headers, "Accept": jpeg}).status_code == 406
    assert httpx.get(base, headers={**headers, "Accept": "text/html"}).status_code == 406
    assert httpx.get(base + "/frames/1", headers={**headers, "Accept": "image/png"}
                     ).status_code == 406
    assert httpx.get(base + "/frames/1", headers={
        **headers, "Accept": 'multipart/related; type="image/jls"'}).status_code == 406


def test_series_metadata_is_one_query_and_whole(loaded: Loaded) -> None:
    f = loaded.labelled("ct")
    study, series, _ = loaded.stored_uids(f)
    client = loaded.client(loaded.pseudonym_of(f))
    meta = client.retrieve_series_metadata(study, series)
    assert len(meta) == 100
    ds = pydicom.Dataset.from_json(meta[0], bulk_data_uri_handler=lambda *_: b"")
    assert ds.Modality == "CT"
    # the stored file and its metadata agree
    raw = client.retrieve_instance(study, series, str(ds.SOPInstanceUID),
                                   media_types=(("application/dicom", "*"),))
    assert raw.Rows == ds.Rows and raw.SeriesInstanceUID == ds.SeriesInstanceUID


def test_unknown_study_is_404(loaded: Loaded) -> None:
    client = loaded.client(next(iter(loaded.tokens)))
    with pytest.raises(HTTPError) as info:
        client.retrieve_study("1.2.3.4.5")
    assert info.value.response.status_code == 404


def test_retrieve_as_implicit_vr_little_endian(loaded: Loaded) -> None:
    """dicomweb-client refuses to ask for Implicit VR Little Endian: by hand."""
    f = loaded.labelled("us_jpeg")
    study, series, sop = loaded.stored_uids(f)
    r = httpx.get(
        f"{loaded.url}/dicom-web/studies/{study}/series/{series}/instances/{sop}",
        headers={"Authorization": f"Bearer {loaded.tokens[loaded.pseudonym_of(f)]}",
                 "Accept": 'multipart/related; type="application/dicom"; '
                           "transfer-syntax=1.2.840.10008.1.2"})
    assert r.status_code == 200
    boundary = r.headers["content-type"].rpartition("boundary=")[2]
    (part,) = [p for p in r.content.split(b"--" + boundary.encode())[1:-1]]
    head, _, body = part.partition(b"\r\n\r\n")
    assert b"transfer-syntax=1.2.840.10008.1.2\r\n" in head
    ds = pydicom.dcmread(io.BytesIO(body[:-2]))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert ds.SOPInstanceUID == sop
    assert ds.pixel_array.shape[:2] == (f["rows"], f["columns"])
