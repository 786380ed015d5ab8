"""The filesystem store: ``ROOT/instances/<study>/<series>/<sop>.dcm``.

Writes are atomic and durable: the bytes go to a temporary file under
``ROOT/tmp`` (same filesystem), are fsynced, then renamed into place and the
directory is fsynced. :meth:`FilesystemStore.start_put` does the first half
and starts the writeback to the disk, so that the caller works meanwhile;
``finish`` does the rest. A crash leaves either the old object, the new one, or a
temporary file that :meth:`FilesystemStore.recover` removes at start-up; never
a partial object under ``instances/``. Only de-identified bytes ever reach this
store.

Creating a file costs this filesystem a journal handle, which can wait for the
commit an fsync of another file has started (measured here: 0.2 to 0.8 ms,
a fifth of an instance's whole ingest). So each process keeps two empty
temporary files made ahead by a background thread under ``ROOT/spare`` (mode
0600, empty) and takes one per write, moving it to ``ROOT/tmp`` before it
writes to it; the thread makes the next one while the sender sends the next
instance. Spares left by a crash are empty and removed at start-up with the
temporary files.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from dicom_service.dicom.uids import validate_uid
from dicom_service.storage.base import InstanceKey, StoredObject


class FilesystemStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.instances = self.root / "instances"
        self.tmp = self.root / "tmp"
        self.spare = self.root / "spare"
        self.instances.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.spare.mkdir(parents=True, exist_ok=True)
        # the hot path works on strings: pathlib costs more than the checks
        self._instances = str(self.instances)
        self._tmp = str(self.tmp)
        self._root_length = len(str(self.root)) + 1
        self._known_dirs: set[str] = set()
        self._lock = threading.Lock()
        self._spares = _Spares(str(self.spare))

    def recover(self) -> int:
        """Remove temporary files left by a crash (and spares, which are
        empty); return how many temporary files."""
        removed = 0
        for entry in self.tmp.iterdir():
            entry.unlink(missing_ok=True)
            removed += 1
        for entry in self.spare.iterdir():  # before this process made any
            entry.unlink(missing_ok=True)
        return removed

    def close(self) -> None:
        """Remove this process's spare files."""
        self._spares.close()

    def _place(self, key: InstanceKey) -> tuple[str, str]:
        """The directory and the path of ``key``'s file.

        Keys are validated UIDs (digits and dots, no empty component), so no
        component can be "." or ".."; check it anyway, without touching the disk.
        """
        directory = os.path.join(self._instances, key.study_uid, key.series_uid)
        path = os.path.join(directory, f"{key.sop_uid}.dcm")
        if os.path.commonpath([os.path.normpath(path), self._instances]) != self._instances:
            raise ValueError("instance path escapes the store root")
        return directory, path

    def _path(self, key: InstanceKey) -> Path:
        return Path(self._place(key)[1])

    def relative(self, key: InstanceKey) -> str:
        return self._place(key)[1][self._root_length:]

    def _ensure_dir(self, directory: str) -> None:
        if directory in self._known_dirs:
            return
        with self._lock:
            created: list[Path] = []
            d = Path(directory)
            while not d.exists():
                created.append(d)
                d = d.parent
            Path(directory).mkdir(parents=True, exist_ok=True)
            # fsync each new directory's parent so the new entries are durable
            for new in reversed(created):
                _fsync_dir(new.parent)
            self._known_dirs.add(directory)

    def put(self, key: InstanceKey, data: bytes) -> StoredObject:
        return self.start_put(key, data).finish()

    def start_put(self, key: InstanceKey, data: bytes) -> _PendingFile:
        """Write ``data`` to a temporary file and start its writeback to the
        disk (``sync_file_range``, Linux): the fsync in ``finish`` then waits
        for less."""
        directory, path = self._place(key)
        self._ensure_dir(directory)
        fd, spare = self._spares.take()
        tmp = os.path.join(self._tmp, os.path.basename(spare))
        try:
            os.rename(spare, tmp)  # what is being written lives under tmp/
        except BaseException:
            _discard(fd, spare)
            raise
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            _start_writeback(fd)
        except BaseException:
            _discard(fd, tmp)
            raise
        return _PendingFile(key, fd, tmp, directory, path, path[self._root_length:], len(data))

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
        inside = f"{directory}{os.sep}"
        self._known_dirs = {d for d in self._known_dirs
                            if d != str(directory) and not d.startswith(inside)}


class _PendingFile:
    """A temporary file written, not yet fsynced nor renamed into place."""

    def __init__(self, key: InstanceKey, fd: int, tmp: str, directory: str, path: str,
                 location: str, size: int) -> None:
        self._key = key
        self.location = location
        self._fd: int | None = fd
        self._tmp = tmp
        self._directory = directory
        self._path = path
        self._size = size

    def finish(self) -> StoredObject:
        """fsync, rename into place, fsync the directory: durable and visible."""
        fd, self._fd = self._fd, None
        if fd is None:
            raise ValueError("this write was finished or aborted already")
        try:
            os.fsync(fd)
        except BaseException:
            _discard(fd, self._tmp)
            raise
        os.close(fd)
        replaced = os.path.exists(self._path)
        os.replace(self._tmp, self._path)
        try:
            _fsync_dir(self._directory)
        except BaseException:
            if not replaced:  # not durable: nothing of it stays
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path)
            raise
        return StoredObject(key=self._key, location=self.location, size=self._size,
                            replaced=replaced)

    def abort(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            _discard(fd, self._tmp)


class _Spares:
    """Empty temporary files made ahead by a background thread (see the
    module's docstring). A write takes one, or makes one itself when none is
    ready; the thread then makes the next."""

    KEEP = 2

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._ready: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def _make(self) -> tuple[int, str]:
        path = os.path.join(self._directory, f"{uuid.uuid4().hex}.part")
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), path

    def take(self) -> tuple[int, str]:
        with self._lock:
            spare = self._ready.pop() if self._ready else None
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="store-spares",
                                                daemon=True)
                self._thread.start()
        self._wanted.set()
        return spare if spare is not None else self._make()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            while True:
                with self._lock:
                    if self._closed or len(self._ready) >= self.KEEP:
                        break
                try:
                    spare = self._make()
                except OSError:
                    break  # the write that needs one makes its own, and reports
                with self._lock:
                    if self._closed:
                        _discard(*spare)
                        return
                    self._ready.append(spare)
            if self._closed:
                return

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ready, self._ready = self._ready, []
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=5)  # it may be making one: let it remove it
        for fd, path in ready:
            _discard(fd, path)


def _discard(fd: int, tmp: str) -> None:
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def _load_sync_file_range() -> Callable[[int], object] | None:
    """libc's ``sync_file_range`` (Linux; not in :mod:`os`), or ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    function.restype = ctypes.c_int
    return lambda fd: function(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


_SYNC_FILE_RANGE_WRITE = 2  # start writeback of the dirty pages; do not wait
_sync_file_range = _load_sync_file_range()


def _start_writeback(fd: int) -> None:
    """Start writing the file's dirty pages to the disk without waiting. Only
    a head start for the fsync that follows, which alone makes them durable:
    a failure here (or no such call) changes nothing."""
    if _sync_file_range is not None:
        _sync_file_range(fd)


def _fsync_dir(directory: Path | str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
