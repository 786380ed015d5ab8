"""The leak check: a profile over the synthetic sample set, and which planted
fake identifiers survive.

The sample set (``sample_data.generate``: every name, ID and address in it is
invented) is written into a temporary directory that is always removed,
every file is de-identified in memory with the profile (one throwaway
pseudonymiser per fake patient, as one enrolment each), and then, per
planted value (``manifest.json``):

* ``element`` values: searched as bytes (in the value's own character
  encoding) in the de-identified data set, file meta included, Pixel Data
  left out; where one survives, the element paths that still hold it;
* ``pixels`` (burned-in text): the share of the text's box that the pixel
  cleaning blanked (frame-wide rules plus the first frame's detected boxes);
  the text counts as surviving under :data:`PIXEL_COVERAGE` or when the
  profile does not clean pixels;
* ``overlay`` (text drawn in an overlay bitmap): survives while the overlay's
  OverlayData is still there.

Also counted: original UIDs and dates (from the manifest) still present.
The planted values are fake, so the report shows them.
"""

from __future__ import annotations

import io
import re
import secrets
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from dicom_service.deidentify import Profile, Pseudonymiser, derive_date_shift
from dicom_service.profiles_admin.dryrun import read_instance
from dicom_service.profiles_admin.preview import Region, summarise_pixels

__all__ = ["PIXEL_COVERAGE", "LeakReport", "leak_check"]

PIXEL_COVERAGE = 0.9
"""Share of a burned-in text box that must be blanked for the text to count as removed."""
SAMPLE_SEED = 20261125
SAMPLE_CT_SLICES = 100  # the generator's minimum: the check is about variety, not volume
_MAX_LOCATIONS = 10
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


@dataclass
class PlantedResult:
    value: str
    kind: str
    category: str
    encoding: str
    planted_in: list[str]  # the generator's element paths (or "pixels: ...")
    files: int = 0
    survived_files: int = 0
    found: list[dict[str, Any]] = field(default_factory=list)
    coverage: float | None = None  # pixels: lowest blanked share of the boxes

    @property
    def survived(self) -> bool:
        return self.survived_files > 0

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "value": self.value, "kind": self.kind, "category": self.category,
            "encoding": self.encoding, "planted_in": self.planted_in, "files": self.files,
            "survived": self.survived, "survived_files": self.survived_files,
            "found": self.found,
        }
        if self.coverage is not None:
            out["blanked_share"] = round(self.coverage, 3)
        return out


@dataclass
class LeakReport:
    profile: Profile
    files: int
    seconds: float
    planted: list[PlantedResult]
    refused: list[dict[str, str]]
    original_uids: tuple[int, int]  # (surviving, total)
    original_dates: tuple[int, int]
    pixel_cleaning: bool

    def to_json(self) -> dict[str, object]:
        survived = [p for p in self.planted if p.survived]
        return {
            "profile": {"name": self.profile.name, "version": self.profile.version,
                        "sha256": self.profile.sha256},
            "sample": {"generator": "sample_data.generate", "seed": SAMPLE_SEED,
                       "ct_slices": SAMPLE_CT_SLICES, "files": self.files},
            "seconds": round(self.seconds, 2),
            "summary": {
                "planted_values": len(self.planted),
                "survived": len(survived),
                "survived_by_kind": _count(p.kind for p in survived),
                "refused_files": len(self.refused),
                "original_uids_surviving": self.original_uids[0],
                "original_uids": self.original_uids[1],
                "original_dates_surviving": self.original_dates[0],
                "original_dates": self.original_dates[1],
                "pixel_cleaning": self.pixel_cleaning,
            },
            "planted": [p.to_json() for p in self.planted],
            "refused": self.refused,
        }


def _count(items: Iterator[str] | Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def _pseudonymiser(n: int) -> Pseudonymiser:
    key = secrets.token_bytes(32)
    return Pseudonymiser(key=key, pseudonym=f"LEAKCHECK-{n:03d}",
                         date_shift_days=derive_date_shift(key))


def _scan_bytes(ds: Dataset) -> bytes:
    """The de-identified header as Explicit VR Little Endian, Pixel Data left
    out: element values as stored, whatever the transfer syntax (a deflated
    file would hide them)."""
    for tag in _PIXEL_TAGS:
        if tag in ds:
            del ds[tag]
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.TransferSyntaxUID = UID(ExplicitVRLittleEndian)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buf, ds, implicit_vr=False, little_endian=True)
    return buf.getvalue()


def _text_paths(ds: Dataset, needle: str, prefix: str = "") -> Iterator[str]:
    """Element paths whose value contains ``needle`` (text or bytes, decoded as latin-1/utf-8)."""
    for elem in ds:
        name = elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
        path = prefix + name
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                yield from _text_paths(item, needle, f"{path}[{i}].")
            continue
        value = elem.value
        if isinstance(value, bytes | bytearray):
            raw = bytes(value)
            if needle.encode("utf-8") in raw or needle.encode("latin-1", "ignore") in raw:
                yield path
        elif value is not None and needle in str(value):
            yield path


def _coverage(box: list[int], regions: tuple[Region, ...]) -> float:
    x0, y0, x1, y1 = box
    area = max(0, x1 - x0) * max(0, y1 - y0)
    if area == 0:
        return 1.0
    covered = [[False] * (x1 - x0) for _ in range(y1 - y0)]
    for r in regions:
        if r.frame not in (None, 0):
            continue
        rx0, ry0, rx1, ry1 = r.box
        for y in range(max(y0, ry0), min(y1, ry1)):
            row = covered[y - y0]
            for x in range(max(x0, rx0), min(x1, rx1)):
                row[x - x0] = True
    return sum(sum(row) for row in covered) / area


def leak_check(profile: Profile) -> LeakReport:
    """Run ``profile`` over a freshly generated sample set (see the module doc)."""
    from sample_data.generate import generate  # the generator is test data, not runtime

    started = time.perf_counter()
    blobs: dict[str, bytes] = {}
    kept: dict[str, Dataset] = {}
    regions: dict[str, tuple[Region, ...]] = {}
    overlays: dict[str, bool] = {}
    refused: list[dict[str, str]] = []
    pixel_cleaning = False
    with tempfile.TemporaryDirectory(prefix="dicom-service-leakcheck-") as tmp:
        manifest = generate(Path(tmp), seed=SAMPLE_SEED, ct_slices=SAMPLE_CT_SLICES)
        pseudonymisers: dict[tuple[str, str | None], Pseudonymiser] = {}
        for entry in manifest.files:
            rel = entry["path"]
            patient = (entry["patient_id"], entry["issuer"])
            p = pseudonymisers.get(patient)
            if p is None:
                p = pseudonymisers[patient] = _pseudonymiser(len(pseudonymisers) + 1)
            ds = read_instance((Path(tmp) / rel).read_bytes())
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    report: object = profile.apply(ds, p)
            except Exception as exc:
                refused.append({"file": rel, "reason": f"could not be de-identified "
                                                       f"({type(exc).__name__})"})
                continue
            summary = summarise_pixels(report)
            pixel_cleaning = pixel_cleaning or summary.reported
            regions[rel] = summary.regions
            overlays[rel] = any((int(t) & 0xFF01FFFF) == 0x60003000 for t in ds.keys())
            blobs[rel] = _scan_bytes(ds)
            kept[rel] = ds
    planted: dict[tuple[str, str, str], PlantedResult] = {}
    for item in manifest.planted:
        key = (item["value"], item["kind"], item["encoding"])
        result = planted.get(key)
        if result is None:
            result = planted[key] = PlantedResult(item["value"], item["kind"],
                                                  item["category"], item["encoding"], [])
        result.planted_in.append(item["where"])
    boxes: dict[tuple[str, str], list[list[int]]] = {}
    for f in manifest.files:
        for text in f["burned_in_text"]:
            boxes.setdefault((f["path"], text["text"]), []).append(text["box"])
    seen: dict[tuple[str, str, str], set[str]] = {}
    for item in manifest.planted:
        key = (item["value"], item["kind"], item["encoding"])
        result = planted[key]
        done = seen.setdefault(key, set())
        for rel in item["files"]:
            if rel not in blobs or rel in done:
                continue
            done.add(rel)
            result.files += 1
            survived = False
            location: dict[str, Any] = {"file": rel}
            if item["kind"] == "element":
                needle = item["value"].encode(item["encoding"])
                if needle in blobs[rel]:
                    survived = True
                    location["elements"] = sorted(set(_text_paths(kept[rel], item["value"])))
            elif item["kind"] == "pixels":
                shares = [_coverage(b, regions[rel]) for b in boxes.get((rel, item["value"]), [])]
                share = min(shares) if shares else 0.0
                result.coverage = share if result.coverage is None else min(result.coverage,
                                                                             share)
                survived = share < PIXEL_COVERAGE
                location["blanked_share"] = round(share, 3)
            else:  # overlay
                survived = overlays[rel]
                location["elements"] = ["OverlayData"] if survived else []
            if survived:
                result.survived_files += 1
                if len(result.found) < _MAX_LOCATIONS:
                    result.found.append(location)
    everything = b"".join(blobs.values())
    uids = sum(1 for u in manifest.original_uids  # whole UIDs only, not prefixes of others
               if re.search(rb"(?<![0-9.])" + re.escape(u.encode("ascii")) + rb"(?![0-9.])",
                            everything))
    dates = sum(1 for d in manifest.original_dates if d.encode("ascii") in everything)
    return LeakReport(profile, len(manifest.files), time.perf_counter() - started,
                      list(planted.values()), refused, (uids, len(manifest.original_uids)),
                      (dates, len(manifest.original_dates)), pixel_cleaning)
