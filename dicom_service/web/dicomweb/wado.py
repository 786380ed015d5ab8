"""WADO-RS (PS3.18 10.4): instances, metadata, frames and bulk data.

Every route declares :data:`ReaderDep`; look-ups go through :mod:`.index`,
which only returns what the reader may see (else 404).
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
from fastapi import APIRouter, Request, Response
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import UID

from dicom_service.app import Services
from dicom_service.errors import NotFound
from dicom_service.logsafe import describe
from dicom_service.web.deps import ServicesDep
from dicom_service.web.dicomweb import index, multipart, params
from dicom_service.web.dicomweb.index import InstanceRow
from dicom_service.web.dicomweb.urls import dicomweb_base
from dicom_service.web.policy import ReaderDep

log = logging.getLogger(__name__)
router = APIRouter()

DICOM_JSON = "application/dicom+json"
BIG_ENDIAN = "1.2.840.10008.1.2.2"


# -- shared helpers (also for WADO-URI and rendering) -------------------------------
def instance_file(services: Services, row: InstanceRow) -> str:
    """The stored file of ``row`` (as text), checked to lie under the store root.

    The relative path comes from the index (the ingest wrote it), never from
    the request. It is normalised as text, so that no ``..`` leads outside
    the (resolved) root, without the file-system calls of ``resolve()``: this
    runs for every frame a viewer scrolls through (which is also why it stays
    text: a ``Path`` would cost more than the check).
    """
    root = str(services.store.root)
    path = os.path.normpath(os.path.join(root, row.path))
    if not path.startswith(root + os.sep):
        raise NotFound(index.NOT_FOUND)
    return path


def instance_path(services: Services, row: InstanceRow) -> Path:
    """:func:`instance_file` as a ``Path``."""
    return Path(instance_file(services, row))


def read_instance(services: Services, row: InstanceRow) -> bytes:
    try:
        return instance_path(services, row).read_bytes()
    except FileNotFoundError:
        raise NotFound(index.NOT_FOUND) from None


def transcode(data: bytes, stored_ts: str, target: str) -> bytes:
    """Part-10 bytes in ``target`` (an uncompressed syntax, or the stored one)."""
    if target in (params.AS_STORED, stored_ts):
        return data
    ds = pydicom.dcmread(io.BytesIO(data))
    if UID(stored_ts).is_compressed:
        # keep the UIDs: pydicom would otherwise give the decoded copy a new one
        ds.decompress(generate_instance_uid=False)  # pylibjpeg / pyjpegls / RLE plugins
    ds.file_meta.TransferSyntaxUID = UID(target)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, implicit_vr=target == params.IMPLICIT_VR_LE,
               little_endian=True)
    return buf.getvalue()


def dicom_json(request: Request, rows: list[InstanceRow]) -> Response:
    """The stored DICOM JSON of ``rows`` as one array, BulkDataURIs made absolute."""
    base = dicomweb_base(request)
    body = "[" + ",".join(r.metadata_json or "{}" for r in rows) + "]"
    body = body.replace('"BulkDataURI":"', '"BulkDataURI":"' + base)
    return Response(body.encode("utf-8"), media_type=DICOM_JSON)


# -- instances ----------------------------------------------------------------------
def _retrieve(request: Request, services: Services, rows: list[InstanceRow]) -> Response:
    target = params.negotiate_instances(params.parse_accept(request.headers.get("accept")))
    if target != params.AS_STORED and target not in params.NATIVE_TARGETS:
        if any(r.transfer_syntax_uid != target for r in rows):
            raise params.not_acceptable("instances cannot be transcoded into the requested "
                                        "transfer syntax")

    def parts() -> Iterator[multipart.Part]:
        for row in rows:
            data = read_instance(services, row)
            try:
                out = transcode(data, row.transfer_syntax_uid, target)
            except Exception as exc:  # a codec failure ends the stream; logged safely
                log.error("instance could not be transcoded (%s)", describe(exc))
                return
            ts = row.transfer_syntax_uid if target == params.AS_STORED else target
            yield multipart.Part(f"application/dicom; transfer-syntax={ts}", out)

    return multipart.response(parts(), "application/dicom",
                              transfer_syntax=None if target == params.AS_STORED else target)


@router.get("/studies/{study}", summary="Retrieve a study (PS3.18 10.4)")
def retrieve_study(study: str, request: Request, services: ServicesDep,
                   reader: ReaderDep) -> Response:
    rows = index.instances(services, reader, params.uid(study, "StudyInstanceUID"))
    return _retrieve(request, services, rows)


@router.get("/studies/{study}/series/{series}", summary="Retrieve a series")
def retrieve_series(study: str, series: str, request: Request, services: ServicesDep,
                    reader: ReaderDep) -> Response:
    rows = index.instances(services, reader, params.uid(study, "StudyInstanceUID"),
                           params.uid(series, "SeriesInstanceUID"))
    return _retrieve(request, services, rows)


@router.get("/studies/{study}/series/{series}/instances/{sop}", summary="Retrieve an instance")
def retrieve_instance(study: str, series: str, sop: str, request: Request,
                      services: ServicesDep, reader: ReaderDep) -> Response:
    rows = index.instances(services, reader, params.uid(study, "StudyInstanceUID"),
                           params.uid(series, "SeriesInstanceUID"),
                           params.uid(sop, "SOPInstanceUID"))
    return _retrieve(request, services, rows)


# -- metadata -----------------------------------------------------------------------
@router.get("/studies/{study}/metadata", summary="Study metadata (DICOM JSON)")
def study_metadata(study: str, request: Request, services: ServicesDep,
                   reader: ReaderDep) -> Response:
    return dicom_json(request, index.instances(
        services, reader, params.uid(study, "StudyInstanceUID")))


@router.get("/studies/{study}/series/{series}/metadata", summary="Series metadata (one query)")
def series_metadata(study: str, series: str, request: Request, services: ServicesDep,
                    reader: ReaderDep) -> Response:
    return dicom_json(request, index.instances(
        services, reader, params.uid(study, "StudyInstanceUID"),
        params.uid(series, "SeriesInstanceUID")))


@router.get("/studies/{study}/series/{series}/instances/{sop}/metadata",
            summary="Instance metadata")
def instance_metadata(study: str, series: str, sop: str, request: Request,
                      services: ServicesDep, reader: ReaderDep) -> Response:
    return dicom_json(request, index.instances(
        services, reader, params.uid(study, "StudyInstanceUID"),
        params.uid(series, "SeriesInstanceUID"), params.uid(sop, "SOPInstanceUID")))


# -- frames and bulk data -----------------------------------------------------------
def _native_frames(services: Services, row: InstanceRow, numbers: list[int]) -> list[bytes]:
    """Frames of native pixel data: a ranged read per frame, no decoding."""
    count = row.number_of_frames or 1
    offset, length = row.pixel_data_offset, row.pixel_data_length
    if offset is None or length is None:
        raise NotFound("no pixel data")
    size = length // count
    out = []
    with instance_path(services, row).open("rb") as fh:
        for n in numbers:
            fh.seek(offset + (n - 1) * size)
            out.append(fh.read(size))
    if row.transfer_syntax_uid == BIG_ENDIAN:
        bits = _bits_allocated(row)
        if bits > 8:
            dtype = np.dtype(f">u{bits // 8}")
            out = [np.frombuffer(f, dtype=dtype).astype(dtype.newbyteorder("<")).tobytes()
                   for f in out]
    return out


def _bits_allocated(row: InstanceRow) -> int:
    meta = json.loads(row.metadata_json or "{}")
    value = meta.get("00280100", {}).get("Value", [16])
    return int(value[0])


def _decoded_frames(ds: Dataset, count: int, numbers: list[int]) -> list[bytes]:
    """Frames decoded to native little-endian bytes (PS3.18 8.7.3.5.2)."""
    arr = ds.pixel_array
    if count == 1:
        arr = arr[np.newaxis, ...]
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return [np.ascontiguousarray(arr[n - 1]).tobytes() for n in numbers]


def frame_parts(request: Request, services: Services, row: InstanceRow,
                numbers: list[int]) -> Response:
    """The requested frames of ``row`` as multipart/related, negotiated on Accept."""
    choice = params.negotiate_frames(params.parse_accept(
        request.query_params.get("accept") or request.headers.get("accept")))
    count = row.number_of_frames
    if not count:
        raise NotFound("the instance has no pixel data")
    if max(numbers) > count:
        raise NotFound(f"frame number beyond NumberOfFrames ({count})")
    stored = UID(row.transfer_syntax_uid)
    octet = "application/octet-stream"
    if not stored.is_compressed:
        if not choice.native:
            raise params.not_acceptable("these frames are uncompressed: "
                                        f'ask for type="{octet}"')
        if row.pixel_data_offset is not None:
            frames = _native_frames(services, row, numbers)
        else:  # deflated: inflate the file
            ds = pydicom.dcmread(io.BytesIO(read_instance(services, row)))
            frames = _decoded_frames(ds, count, numbers)
        ts = params.EXPLICIT_VR_LE
        parts = [multipart.Part(f"{octet}; transfer-syntax={ts}", f) for f in frames]
        return multipart.response(parts, octet, transfer_syntax=ts)
    media = params.FRAME_MEDIA_TYPES.get(str(stored))
    ds = pydicom.dcmread(io.BytesIO(read_instance(services, row)))
    if media is not None and (choice.as_stored or media in choice.media_types):
        wanted = set(numbers)
        found: dict[int, bytes] = {}
        for i, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=count),
                                  start=1):
            if i in wanted:
                found[i] = frame
        parts = [multipart.Part(f"{media}; transfer-syntax={stored}", found[n])
                 for n in numbers]
        return multipart.response(parts, media, transfer_syntax=str(stored))
    if not choice.native:
        raise params.not_acceptable("the frames cannot be given in the requested media type")
    frames = _decoded_frames(ds, count, numbers)
    ts = params.EXPLICIT_VR_LE
    return multipart.response([multipart.Part(f"{octet}; transfer-syntax={ts}", f)
                               for f in frames], octet, transfer_syntax=ts)


@router.get("/studies/{study}/series/{series}/instances/{sop}/frames/{frames}",
            summary="Frames (PS3.18 10.4.1.1.4)")
def retrieve_frames(study: str, series: str, sop: str, frames: str, request: Request,
                    services: ServicesDep, reader: ReaderDep) -> Response:
    row = index.instance(services, reader, params.uid(study, "StudyInstanceUID"),
                         params.uid(series, "SeriesInstanceUID"),
                         params.uid(sop, "SOPInstanceUID"))
    return frame_parts(request, services, row, params.frame_list(frames))


@router.get("/studies/{study}/series/{series}/instances/{sop}/bulkdata/{tag}",
            summary="Bulk data of a top-level element (the BulkDataURI of metadata)")
def retrieve_bulkdata(study: str, series: str, sop: str, tag: str, request: Request,
                      services: ServicesDep, reader: ReaderDep) -> Response:
    if len(tag) != 8 or any(c not in "0123456789abcdefABCDEF" for c in tag):
        raise ValueError("bulk data tag must be 8 hexadecimal digits")
    row = index.instance(services, reader, params.uid(study, "StudyInstanceUID"),
                         params.uid(series, "SeriesInstanceUID"),
                         params.uid(sop, "SOPInstanceUID"))
    number = int(tag, 16)
    if number == 0x7FE00010:
        return frame_parts(request, services, row, list(range(1, (row.number_of_frames or 1)
                                                              + 1)))
    params.negotiate_frames(params.parse_accept(request.headers.get("accept")))
    ds = pydicom.dcmread(io.BytesIO(read_instance(services, row)))
    elem = ds.get(number)
    if elem is None or not isinstance(elem.value, bytes | bytearray):
        raise NotFound("no such bulk data element")
    octet = "application/octet-stream"
    return multipart.response([multipart.Part(octet, bytes(elem.value))], octet)
