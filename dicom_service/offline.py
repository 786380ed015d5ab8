"""Offline de-identification of a folder: ``dicom-service deid IN_DIR OUT_DIR``.

A hospital can run the service's own engine and profiles over its data before
sending anything, to see what would be refused and what comes out. Every
DICOM file under ``IN_DIR`` (recursively) is de-identified in memory with the
named profile and written to ``OUT_DIR/<study>/<series>/<sop>.dcm`` under its
pseudonymous UIDs (temporary file, fsync, rename). Files that are not DICOM
are skipped; DICOM files that cannot be read or de-identified are refused
(the same checks as the ingest pipeline, without enrolment and consent).

Pseudonyms are keyed, as in the service but without its database: a secret
key (``--key-file``: at least 32 random bytes, created with mode 0600 when
missing) derives, per patient (IssuerOfPatientID, PatientID), a UID key, a
date shift and the pseudonym ``OFF-`` + 10 characters of base32 HMAC, so one
patient's files share a pseudonym and repeated runs with the same key give
the same output. Without ``--key-file`` a random key is used for this run only.

``OUT_DIR/report.json`` holds no identifier: an input is named by a keyed
hash of its path relative to ``IN_DIR`` (paths at hospitals often hold
patient names), ``HMAC-SHA256(path key, relative POSIX path)`` in hex, where
the path key is ``HMAC-SHA256(key file bytes, "dicom_service/offline/input-path")``,
so the holder of the key file can match a report line to a file; then the
output path, the status (written, duplicate, skipped, refused) and the reason
for a refusal or skip. Nothing identifying is printed or logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import os
import secrets
import stat
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from dicom_service.deidentify import Profile, Pseudonymiser, derive_date_shift
from dicom_service.dicom.parse import parse_part10
from dicom_service.dicom.part10 import encode_part10
from dicom_service.dicom.uids import InvalidUID, validate_uid
from dicom_service.errors import ConfigError

__all__ = ["KEY_MIN_BYTES", "REPORT_NAME", "OfflineReport", "deidentify_folder", "load_key"]

log = logging.getLogger(__name__)

KEY_MIN_BYTES = 32
REPORT_NAME = "report.json"
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})
_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


def load_key(path: Path | None) -> tuple[bytes, bool]:
    """The secret key from ``path`` (created with 32 random bytes, mode 0600,
    if missing), or a random one-off key without ``path``. Returns (key, persistent).

    Raises:
        ConfigError: the file is shorter than 32 bytes, is readable by group or
            others, or cannot be read or created.
    """
    if path is None:
        return secrets.token_bytes(KEY_MIN_BYTES), False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"key file {path}: cannot create ({type(exc).__name__})") from None
    else:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(KEY_MIN_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        log.info("created a new key file %s: keep it to repeat the same pseudonyms", path)
    try:
        mode = path.stat().st_mode
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"key file {path}: cannot read ({type(exc).__name__})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"key file {path} must not be accessible by group or others "
                          "(chmod 600)")
    if len(key) < KEY_MIN_BYTES:
        raise ConfigError(f"key file {path} must hold at least {KEY_MIN_BYTES} bytes")
    return key, True


class _Keys:
    """Derivations from the key; each purpose has its own HMAC label."""

    def __init__(self, key: bytes) -> None:
        self._root = hmac.new(key, b"dicom_service/offline/v1", hashlib.sha256).digest()
        self.path_key = hmac.new(key, b"dicom_service/offline/input-path",
                                 hashlib.sha256).digest()
        self._pseudonymisers: dict[tuple[str, str], Pseudonymiser] = {}

    def _mac(self, label: bytes, issuer: str, patient_id: str) -> bytes:
        msg = label + b"\x00" + issuer.encode("utf-8") + b"\x00" + patient_id.encode("utf-8")
        return hmac.new(self._root, msg, hashlib.sha256).digest()

    def pseudonymiser(self, issuer: str, patient_id: str) -> Pseudonymiser:
        """One patient's material: keyed on (issuer, PatientID), as enrolments are."""
        k = (issuer, patient_id)
        found = self._pseudonymisers.get(k)
        if found is None:
            uid_key = self._mac(b"patient-key", issuer, patient_id)
            name = base64.b32encode(self._mac(b"pseudonym", issuer, patient_id)).decode("ascii")
            found = Pseudonymiser(key=uid_key, pseudonym="OFF-" + name[:10],
                                  date_shift_days=derive_date_shift(uid_key))
            if len(self._pseudonymisers) >= 100_000:
                self._pseudonymisers.clear()
            self._pseudonymisers[k] = found
        return found

    def input_id(self, relative: str) -> str:
        return hmac.new(self.path_key, relative.encode("utf-8", "surrogateescape"),
                        hashlib.sha256).hexdigest()


@dataclass
class FileResult:
    input: str  # keyed hash of the relative path
    status: str  # written, duplicate, skipped, refused
    output: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"input": self.input, "status": self.status, "output": self.output,
                "reason": self.reason}


@dataclass
class OfflineReport:
    profile: Profile
    persistent_key: bool
    files: list[FileResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def refused(self) -> int:
        return self.count("refused")

    def to_json(self) -> dict[str, object]:
        return {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "profile": {"name": self.profile.name, "version": self.profile.version,
                        "sha256": self.profile.sha256},
            "key": "key file" if self.persistent_key else "random, this run only",
            "input_naming": "HMAC-SHA256 of the path relative to IN_DIR (POSIX), under "
                            "HMAC-SHA256(key file, 'dicom_service/offline/input-path')",
            "summary": {s: self.count(s) for s in ("written", "duplicate", "skipped",
                                                    "refused")},
            "files": [f.to_json() for f in self.files],
        }


class _Refused(Exception):
    """The file is refused; the message is the reason (never a value)."""


class _Skipped(Exception):
    """The file is not a DICOM instance; the message says what it is."""


def _walk(in_dir: Path, out_dir: Path) -> Iterator[Path]:
    """Regular files under ``in_dir``, sorted, not following symlinks, outside ``out_dir``."""
    out_resolved = out_dir.resolve()
    for root, dirs, files in os.walk(in_dir, followlinks=False):
        root_path = Path(root)
        if root_path.resolve() == out_resolved or root_path.resolve().is_relative_to(
                out_resolved):
            dirs[:] = []
            continue
        dirs.sort()
        for name in sorted(files):
            path = root_path / name
            if path.is_file() and not path.is_symlink():
                yield path


def _read(data: bytes, suffix: str) -> Dataset:
    """Parse a file; :class:`_Skipped` for what is not DICOM at all,
    :class:`_Refused` for DICOM that cannot be read."""
    has_magic = len(data) >= 132 and data[128:132] == b"DICM"
    looks_dicom = has_magic or suffix.lower() in _DICOM_SUFFIXES
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # strict for Part-10 files: a truncated file is refused, not cut short
            ds = parse_part10(data)[0] if has_magic else pydicom.dcmread(
                io.BytesIO(data), force=True)
            sop_class = ds.get("SOPClassUID")
            meta_class = ds.file_meta.get("MediaStorageSOPClassUID") if hasattr(
                ds, "file_meta") else None
    except Exception as exc:
        if looks_dicom:
            raise _Refused(f"not a readable DICOM file ({type(exc).__name__})") from None
        raise _Skipped("not DICOM") from None
    if str(meta_class or "") == _MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
        raise _Skipped("DICOMDIR (a media directory, not an instance)")
    if not sop_class:
        if looks_dicom:
            raise _Refused("no SOP Class UID: not a DICOM instance")
        raise _Skipped("not DICOM")
    return ds


def _check(ds: Dataset) -> tuple[str, str]:
    """The ingest pipeline's checks before de-identification; returns (issuer, PatientID)."""
    try:
        for name in _REQUIRED_UIDS:
            value = ds.get(name)
            if value is None or str(value) == "":
                raise _Refused(f"{name} is missing")
            validate_uid(str(value), name)
        patient_id = ds.get("PatientID")
        issuer = ds.get("IssuerOfPatientID")
    except InvalidUID as exc:
        raise _Refused(str(exc)) from None
    except _Refused:
        raise
    except Exception as exc:
        raise _Refused(f"the data set could not be parsed ({type(exc).__name__})") from None
    if not patient_id or not str(patient_id).strip():
        raise _Refused("no PatientID: the service would refuse it (no enrolment can match)")
    return (str(issuer).strip() if issuer else ""), str(patient_id).strip()


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return str(ts) if ts else ImplicitVRLittleEndian


def _encode(ds: Dataset, transfer_syntax: str) -> bytes:
    """A Part-10 file in ``transfer_syntax``, pydicom's value warnings silenced
    (they quote values)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return encode_part10(ds, transfer_syntax)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".deid-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _deidentify_one(data: bytes, suffix: str, profile: Profile, keys: _Keys
                    ) -> tuple[str, bytes]:
    ds = _read(data, suffix)
    issuer, patient_id = _check(ds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            profile.apply(ds, keys.pseudonymiser(issuer, patient_id))
        # pixel cleaning may have changed the syntax (Profile.apply's contract)
        transfer_syntax = _transfer_syntax(ds)
        parts = [str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)]
        for part in parts:
            validate_uid(part, "output UID")
        encoded = _encode(ds, transfer_syntax)
    except Exception as exc:
        raise _Refused(f"could not be de-identified ({type(exc).__name__})") from None
    return f"{parts[0]}/{parts[1]}/{parts[2]}.dcm", encoded


def deidentify_folder(in_dir: Path, out_dir: Path, profile: Profile, key: bytes, *,
                      persistent_key: bool = True) -> OfflineReport:
    """De-identify every DICOM file under ``in_dir`` into ``out_dir`` and write
    ``out_dir/report.json`` (see the module doc).

    Raises:
        ConfigError: ``in_dir`` is not a directory, or ``out_dir`` is ``in_dir``
            or lies above it.
    """
    if not in_dir.is_dir():
        raise ConfigError(f"{in_dir} is not a directory")
    in_resolved, out_resolved = in_dir.resolve(), out_dir.resolve()
    if in_resolved == out_resolved or in_resolved.is_relative_to(out_resolved):
        raise ConfigError("OUT_DIR must not be IN_DIR or contain it")
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = _Keys(key)
    report = OfflineReport(profile, persistent_key)
    written: set[str] = set()
    for path in _walk(in_dir, out_dir):
        relative = path.relative_to(in_dir).as_posix()
        result = FileResult(keys.input_id(relative), "refused")
        report.files.append(result)
        try:
            data = path.read_bytes()
            output, encoded = _deidentify_one(data, path.suffix, profile, keys)
        except _Skipped as exc:
            result.status, result.reason = "skipped", str(exc)
            continue
        except _Refused as exc:
            result.reason = str(exc)
            continue
        except OSError as exc:
            result.reason = f"could not be read ({type(exc).__name__})"
            continue
        result.output = output
        if output in written:
            result.status, result.reason = "duplicate", "same SOP Instance UID as an earlier input"
            continue
        try:
            _write_atomic(out_dir / output, encoded)
        except OSError as exc:
            result.reason = f"could not be written ({type(exc).__name__})"
            result.output = None
            continue
        written.add(output)
        result.status = "written"
    _write_atomic(out_dir / REPORT_NAME,
                  (json.dumps(report.to_json(), indent=1) + "\n").encode("utf-8"))
    return report
