"""The filesystem store: ``ROOT/instances/<study>/<series>/<sop>.dcm``.

Writes are atomic and durable: the bytes go to a temporary file under
``ROOT/tmp`` (same filesystem), are fsynced, then renamed into place and the
directory is fsynced. A crash leaves either the old object, the new one, or a
temporary file that :meth:`FilesystemStore.recover` removes at start-up; never
a partial object under ``instances/``. Only de-identified bytes ever reach this
store.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from pathlib import Path

from dicom_service.dicom.uids import validate_uid
from dicom_service.storage.base import InstanceKey, StoredObject


class FilesystemStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.instances = self.root / "instances"
        self.tmp = self.root / "tmp"
        self.instances.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._known_dirs: set[Path] = set()
        self._lock = threading.Lock()

    def recover(self) -> int:
        """Remove temporary files left by a crash; return how many."""
        removed = 0
        for entry in self.tmp.iterdir():
            entry.unlink(missing_ok=True)
            removed += 1
        return removed

    def _path(self, key: InstanceKey) -> Path:
        # Keys are validated UIDs (digits and dots, no empty component), so no
        # component can be "." or ".."; check it anyway, without touching the disk.
        path = self.instances / key.study_uid / key.series_uid / f"{key.sop_uid}.dcm"
        if os.path.commonpath([os.path.normpath(path), self.instances]) != str(self.instances):
            raise ValueError("instance path escapes the store root")
        return path

    def relative(self, key: InstanceKey) -> str:
        return str(self._path(key).relative_to(self.root))

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        with self._lock:
            created: list[Path] = []
            d = directory
            while not d.exists():
                created.append(d)
                d = d.parent
            directory.mkdir(parents=True, exist_ok=True)
            # fsync each new directory's parent so the new entries are durable
            for new in reversed(created):
                _fsync_dir(new.parent)
            self._known_dirs.add(directory)

    def put(self, key: InstanceKey, data: bytes) -> StoredObject:
        path = self._path(key)
        self._ensure_dir(path.parent)
        tmp = self.tmp / f"{uuid.uuid4().hex}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        replaced = path.exists()
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        return StoredObject(key=key, location=self.relative(key), size=len(data),
                            replaced=replaced)

    def get(self, key: InstanceKey) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: InstanceKey) -> bool:
        return self._path(key).is_file()

    def delete(self, key: InstanceKey) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)

    def delete_study(self, study_uid: str) -> None:
        validate_uid(study_uid, "StudyInstanceUID")
        directory = self.instances / study_uid
        if directory.exists():
            shutil.rmtree(directory)
            _fsync_dir(self.instances)
        self._known_dirs = {d for d in self._known_dirs if directory not in d.parents
                            and d != directory}


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
