"""What the index keeps of every stored instance for DICOMweb, computed at ingest.

* ``metadata_json``: the de-identified data set in the DICOM JSON model
  (PS3.18 Annex F.2), with top-level bulk data (Pixel Data, overlays, large
  binary values) replaced by a ``BulkDataURI`` relative to the DICOMweb root
  (``studies/{s}/series/{se}/instances/{i}/bulkdata/{tag}``); the web layer
  prefixes the base URL when it answers. Binary values nested in sequences
  are kept inline (``InlineBinary``).
* ``image_json``: of an instance with pixel data, the attributes rendering
  reads (:data:`dicom_service.dicom.image_tags.IMAGE_JSON_KEYS`) out of
  ``metadata_json``, the same text; a frame is rendered without parsing the
  whole header;
* ``number_of_frames`` (``None`` without pixel data),
* for native (uncompressed, not deflated) pixel data, the byte offset and
  length of the Pixel Data value in the written file, so that frames are a
  ranged read.

The encoder below is a small, fast rendering of F.2 (about a quarter of the
cost of ``Dataset.to_json_dict``; ingest speed matters). Its output is tested
against pydicom's. Given a :class:`MetadataCache` (one per association), the
JSON text of each small top-level value is kept by its encoded bytes, so the
values a series repeats in every instance are rendered once; the result is
the same text.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import PersonName

from dicom_service.dicom.image_tags import IMAGE_TAGS, image_attributes
from dicom_service.storage.base import InstanceKey

BULK_THRESHOLD = 1024  # bytes; larger top-level binary values become BulkDataURI
PIXEL_DATA = 0x7FE00010
_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, PIXEL_DATA)  # float, double float, pixel data

_STRING_MULTI = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UC", "UI"})
_STRING_SINGLE = frozenset({"LT", "ST", "UT", "UR"})
_NUMBERS = frozenset({"SS", "US", "SL", "UL", "FL", "FD", "SV", "UV"})
_BINARY = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW",
                     "US or SS or OW"})


@dataclass(frozen=True)
class InstanceFacts:
    metadata_json: str
    image_json: str | None
    number_of_frames: int | None
    pixel_data_offset: int | None
    pixel_data_length: int | None


class MetadataCache:
    """JSON texts of small de-identified values, by their encoded bytes.

    Only de-identified output (what the index stores anyway) is ever in here.
    Bounded (cleared when full); used by one thread at a time.
    """

    __slots__ = ("_texts",)

    def __init__(self) -> None:
        self._texts: dict[tuple[int, str | None, bytes, bool, str | None], str] = {}

    def __repr__(self) -> str:
        return f"MetadataCache({len(self._texts)} values)"

    def clear(self) -> None:
        self._texts.clear()


_CACHED_BYTES = 256  # longer values are rarely repeated, and costly to hash
_CACHED_VALUES = 4096


def describe_instance(ds: Dataset, data: bytes, transfer_syntax: str, key: InstanceKey,
                      pixel_data: tuple[int, int] | None = None,
                      cache: MetadataCache | None = None) -> InstanceFacts:
    """The facts the index keeps of ``ds``, written as ``data`` (a Part-10 file).

    ``pixel_data``: the offset and length of the native Pixel Data value in
    ``data`` when the writer knows them (:func:`~dicom_service.dicom.part10.
    encode_instance`); otherwise it is searched for. ``cache``: see
    :class:`MetadataCache`.
    """
    base = f"studies/{key.study_uid}/series/{key.series_uid}/instances/{key.sop_uid}/bulkdata/"
    document = image = None
    try:
        if cache is not None:
            document, image = _dataset_text(ds, base, cache)
        else:
            model = _dataset(ds, base)
    except (ValueError, TypeError, KeyError, struct.error):
        # an element the fast path misreads: pydicom's slower, general encoder
        model = ds.to_json_dict(BULK_THRESHOLD,
                                lambda elem: f"{base}{elem.tag:08X}")
        document = None
    has_pixels = any(t in ds for t in _PIXEL_TAGS)
    frames: int | None = None
    if has_pixels:
        frames = _int(ds.get("NumberOfFrames")) or 1
    offset = length = None
    ts = UID(transfer_syntax)
    if PIXEL_DATA in ds and not ts.is_compressed and not ts.is_deflated:
        found = pixel_data if pixel_data is not None else locate_pixel_data(data, ds, ts)
        if found is not None:
            offset, length = found
    if document is None:
        document = _dumps(model)
        image = _dumps(image_attributes(model))
    return InstanceFacts(metadata_json=document, image_json=image if has_pixels else None,
                         number_of_frames=frames, pixel_data_offset=offset,
                         pixel_data_length=length)


def locate_pixel_data(data: bytes, ds: Dataset, ts: UID) -> tuple[int, int] | None:
    """Offset and length of the native Pixel Data value inside ``data``.

    The element header (tag, VR for explicit syntaxes, 32-bit length) is
    searched for and every candidate is confirmed by comparing the value, so
    bytes inside other values that happen to look like the header are never
    taken for it. Cost: one ``bytes.find`` plus one ``memcmp`` of the value.
    """
    value = ds.PixelData
    if not isinstance(value, bytes | bytearray):
        return None
    n = len(value) + (len(value) & 1)
    little = ts.is_little_endian
    tag = b"\xe0\x7f\x10\x00" if little else b"\x7f\xe0\x00\x10"
    size = struct.pack("<I" if little else ">I", n)
    if ts.is_implicit_VR:
        headers = [tag + size]
    else:
        headers = [tag + vr + b"\x00\x00" + size for vr in (b"OW", b"OB")]
    for header in headers:
        start = data.find(header, 0)
        while start >= 0:
            pos = start + len(header)
            if data.startswith(value, pos):  # a memcmp, no copy
                return pos, n
            start = data.find(header, start + 1)
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _dataset_text(ds: Dataset, bulk_base: str, cache: MetadataCache) -> tuple[str, str]:
    """``_dumps(_dataset(ds, bulk_base))``, each small value's text from ``cache``
    when the same bytes were rendered before (``json.dumps`` of a dict is
    its items' texts joined, so the result is the same); and the same of the
    attributes in ``IMAGE_TAGS`` only."""
    texts = cache._texts
    if len(texts) >= _CACHED_VALUES:
        texts.clear()
    text_codec = _text_codec(ds, "latin-1")
    raw_elements = ds._dict
    items: list[str] = []
    image: list[str] = []
    for tag in sorted(raw_elements, key=int):  # int order: no Python-level __lt__
        raw = raw_elements[tag]
        text = None
        memo = None
        if (type(raw) is RawDataElement and type(raw.value) is bytes and raw.VR != "SQ"
                and len(raw.value) <= _CACHED_BYTES):
            memo = (int(tag), raw.VR, raw.value, raw.is_little_endian, text_codec)
            text = texts.get(memo)
        if text is None:
            encoded = _encoded(ds, tag, raw, bulk_base, text_codec)
            text = _dumps(encoded)
            if memo is not None and "BulkDataURI" not in encoded:
                texts[memo] = text
        items.append(f'"{tag:08X}":{text}')
        if tag in IMAGE_TAGS:
            image.append(items[-1])
    return "{" + ",".join(items) + "}", "{" + ",".join(image) + "}"


def _dataset(ds: Dataset, bulk_base: str | None,
             inherited: str | None = "latin-1") -> dict[str, Any]:
    out: dict[str, Any] = {}
    text_codec = _text_codec(ds, inherited)
    raw_elements = ds._dict  # read-only: raw values are decoded here without converting
    for tag in sorted(raw_elements, key=int):  # int order: no Python-level __lt__
        out[f"{tag:08X}"] = _encoded(ds, tag, raw_elements[tag], bulk_base, text_codec)
    return out


def _encoded(ds: Dataset, tag: Any, raw: Any, bulk_base: str | None,
             text_codec: str | None) -> Any:
    """One element in the JSON model: from its raw bytes when it is still raw
    (without converting it in the data set), else from its value."""
    encoded = None
    if isinstance(raw, RawDataElement):
        if raw.VR == "SQ":
            encoded = _raw_sequence(ds, raw, text_codec)
        else:
            encoded = _raw(raw, text_codec, bulk_base)
    return encoded if encoded is not None else _element(ds[tag], bulk_base, text_codec)


# DICOM JSON of small sequences still encoded as the writer wrote them, by
# their bytes: the de-identification markers (method codes, contributing
# equipment) are the same bytes in every instance, and decoding them costs more
# than the rest of an instance's header. Only de-identified output, which the
# index stores anyway, is ever in here; the values are never mutated.
_SEQUENCES: dict[tuple[int, bytes, bool, bool, str | None], dict[str, Any]] = {}
_SEQUENCE_CACHE_BYTES = 1024
_SEQUENCE_CACHE_SIZE = 64


def _raw_sequence(ds: Dataset, raw: RawDataElement,
                  text_codec: str | None) -> dict[str, Any] | None:
    value = raw.value
    if value is None or len(value) > _SEQUENCE_CACHE_BYTES or raw.length == 0xFFFFFFFF:
        return None
    key = (int(raw.tag), value, raw.is_implicit_VR, raw.is_little_endian, text_codec)
    found = _SEQUENCES.get(key)
    if found is None:
        found = _element(ds[raw.tag], None, text_codec)
        if len(_SEQUENCES) >= _SEQUENCE_CACHE_SIZE:
            _SEQUENCES.clear()
        _SEQUENCES[key] = found
    return found


def _text_codec(ds: Dataset, inherited: str | None) -> str | None:
    """Python codec for text values, or ``None`` when only pydicom can decode them.

    A sequence item without its own Specific Character Set uses its parent's.
    """
    if 0x00080005 not in ds._dict:
        return inherited
    charset = ds.get("SpecificCharacterSet")
    if charset is None or charset in ("", "ISO_IR 6"):
        return "latin-1"  # the default repertoire is ASCII; latin-1 never fails
    if isinstance(charset, str):
        return {"ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}.get(charset)
    return None


_STRUCT = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q",
           "UV": "Q"}
_TEXT = frozenset({"SH", "LO", "ST", "LT", "UT", "PN", "UC"})


def _raw(raw: RawDataElement, text_codec: str | None,
         bulk_base: str | None) -> dict[str, Any] | None:
    """DICOM JSON of a not yet converted element straight from its bytes, or ``None``
    to let pydicom convert it (sequences, private or ambiguous VRs, other charsets)."""
    vr = raw.VR
    if vr is None:
        try:
            vr = dictionary_VR(raw.tag)
        except KeyError:
            return None
    value = raw.value
    if vr == "SQ" or " or " in vr or value is None or raw.length == 0xFFFFFFFF:
        return None
    if not value:
        return {"vr": vr}
    if vr in _BINARY:
        if bulk_base is not None and (len(value) > BULK_THRESHOLD or raw.tag in _PIXEL_TAGS):
            return {"vr": vr, "BulkDataURI": f"{bulk_base}{raw.tag:08X}"}
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}
    fmt = _STRUCT.get(vr)
    if fmt is not None:
        size = struct.calcsize(fmt)
        if len(value) % size:
            return None
        order = "<" if raw.is_little_endian else ">"
        numbers = list(struct.unpack(f"{order}{len(value) // size}{fmt}", value))
        if fmt in "fd" and any(n != n or n in (float("inf"), float("-inf")) for n in numbers):
            return None
        return {"vr": vr, "Value": numbers}
    if vr == "AT":
        return None
    if vr in _TEXT:
        if text_codec is None:
            return None
        text = value.decode(text_codec, errors="strict")
    else:
        text = value.decode("ascii", errors="strict")
    if vr in _STRING_SINGLE:
        text = text.rstrip(" \0")
        return {"vr": vr, "Value": [text]} if text else {"vr": vr}
    parts = [p.strip(" \0") for p in text.split("\\")]
    if vr == "PN":
        names = [_person(p) for p in parts]
        return {"vr": vr, "Value": names} if any(names) else {"vr": vr}
    if len(parts) == 1 and not parts[0]:
        return {"vr": vr}
    try:
        if vr == "IS":
            return {"vr": vr, "Value": [int(float(p)) if p else None for p in parts]}
        if vr == "DS":
            return {"vr": vr, "Value": [float(p) if p else None for p in parts]}
    except ValueError:
        return None
    return {"vr": vr, "Value": [p if p else None for p in parts]}


def _element(elem: DataElement, bulk_base: str | None,
             text_codec: str | None = "latin-1") -> dict[str, Any]:
    vr = elem.VR
    value = elem.value
    if vr == "SQ":
        return {"vr": "SQ", "Value": [_dataset(item, None, text_codec) for item in value]}
    if vr in _BINARY:
        binary = value if isinstance(value, bytes | bytearray) else None
        if binary is None or len(binary) == 0:
            return {"vr": _binary_vr(vr)}
        if bulk_base is not None and (len(binary) > BULK_THRESHOLD
                                      or elem.tag in _PIXEL_TAGS):
            return {"vr": _binary_vr(vr), "BulkDataURI": f"{bulk_base}{elem.tag:08X}"}
        return {"vr": _binary_vr(vr), "InlineBinary": base64.b64encode(binary).decode("ascii")}
    if value is None or value == "" or (isinstance(value, MultiValue | list) and not value):
        return {"vr": vr}
    values = list(value) if isinstance(value, MultiValue | list) else [value]
    if vr in _STRING_MULTI or vr in _STRING_SINGLE:
        return {"vr": vr, "Value": [str(v) if v not in (None, "") else None for v in values]}
    if vr == "PN":
        return {"vr": vr, "Value": [_person(v) for v in values]}
    if vr == "IS":
        return {"vr": vr, "Value": [_number(v, int) for v in values]}
    if vr == "DS":
        return {"vr": vr, "Value": [_number(v, float) for v in values]}
    if vr in _NUMBERS:
        return {"vr": vr, "Value": values}
    if vr == "US or SS":  # not resolved by pydicom (no PixelRepresentation): by sign
        numbers = [int(v) for v in values]
        return {"vr": "SS" if any(n < 0 for n in numbers) else "US", "Value": numbers}
    if vr == "AT":
        return {"vr": vr, "Value": [f"{int(BaseTag(v)):08X}" for v in values]}
    return {"vr": vr, "Value": [str(v) for v in values]}


def _binary_vr(vr: str) -> str:
    # ambiguous VRs that survive to here are written as OW by pydicom for native data
    return "OW" if " or " in vr else vr


def _number(value: Any, kind: type[int] | type[float]) -> int | float | None:
    if value is None or value == "":
        return None
    return kind(value)


def _person(value: Any) -> dict[str, str] | None:
    if value is None or value == "":
        return None
    name = value if isinstance(value, PersonName) else PersonName(str(value))
    out: dict[str, str] = {}
    if name.alphabetic:
        out["Alphabetic"] = name.alphabetic
    if name.ideographic:
        out["Ideographic"] = name.ideographic
    if name.phonetic:
        out["Phonetic"] = name.phonetic
    return out or None
