"""Engine, sessions and migrations for the index database.

SQLite (the embedded default) runs in WAL mode so that readers never block
the writer; ``synchronous=FULL`` makes every acknowledged commit durable.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str, *, held: int = 0) -> None:
        """``held``: connections that may stay checked out for long (each DICOM
        association holds one while it lasts); the pool has room for them on
        top of what requests use."""
        self.url = url
        kwargs: dict[str, Any] = {"future": True, "pool_size": 20 + held, "max_overflow": 20}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._thread_lock = threading.Lock()
        self._lock_path: str | None = None
        database = self.engine.url.database
        if url.startswith("sqlite") and database and database != ":memory:":
            self._lock_path = database + ".write-lock"

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Serialise hot-path writers of this database across threads and processes.

        SQLite has one writer at a time; a writer that finds the database busy
        sleeps in growing steps (1, 2, 5, 10 ms ...) before retrying, which
        with several listener processes costs more than the write itself. A
        blocking file lock wakes the next writer the moment the lock is free.
        Other databases need nothing here.
        """
        if self._lock_path is None:
            yield
            return
        with self._thread_lock:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the lock

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self.sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
