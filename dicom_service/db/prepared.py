"""Prepared reads: one SELECT compiled once, run on a pooled DB-API connection.

For the look-ups every DICOMweb request makes (its token, its instance):
SQLAlchemy's ``Connection``, execution context and ``Row`` objects cost about
25 us a query, twice what SQLite takes to answer it. A :class:`PreparedRead`
compiles the statement once for the engine's dialect (so it stays portable:
SQLite's ``?``, psycopg's ``%(name)s``), converts parameters and result
columns with the column types' own processors (e.g. SQLite's text datetimes),
and takes its connection from the engine's pool and gives it back (the pool
resets it: a rollback), as ``engine.connect()`` does.

A thread running an event loop (the HTTP server's, which checks bearer
tokens and looks up the instance of every frame a viewer requests) keeps one
connection of its own instead: the pool's check-out and check-in cost about
as much as the query again. It is made by the engine (so with its connect-time
settings) and detached from the pool; every read ends with a rollback, so it
never sits in a transaction, and a connection that failed is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, Select, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

_Processor = Callable[[Any], Any] | None
# a SELECT of any columns
AnySelect = Select[*tuple[Any, ...]]


class CompiledStatement:
    """A Core statement compiled once for a dialect: its SQL, and its
    parameters as the DB-API takes them (converted by the column types' own
    bind processors, in the dialect's paramstyle). Shared by the prepared
    reads here and the ingest's index writes (:mod:`dicom_service.ingest.index`)."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql = str(compiled)
        # positional paramstyles (qmark, format, numeric) take a sequence in
        # this order; named ones (named, pyformat) a mapping
        self._order: list[str] | None = (list(compiled.positiontup or [])
                                         if compiled.positional else None)
        if any(bind.expanding for bind in compiled.binds.values()):
            raise ValueError("a compiled statement takes no expanding (IN) parameters")
        self._binds: dict[str, _Processor] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()}
        # the statement's own values (``column == 1``); the caller gives the rest
        self._defaults: dict[str, Any] = {name: bind.effective_value
                                          for name, bind in compiled.binds.items()
                                          if not bind.required}

    def args(self, params: Mapping[str, Any]) -> Any:
        """``params`` (by bind name) as the DB-API cursor's ``execute`` takes them."""
        converted = {name: value if self._binds.get(name) is None
                     else self._binds[name](value)  # type: ignore[misc]
                     for name, value in {**self._defaults, **params}.items()}
        if self._order is None:
            return converted
        return tuple(converted[name] for name in self._order)


@contextlib.contextmanager
def dbapi_cursor(conn: Connection) -> Iterator[Any]:
    """A DB-API cursor on ``conn`` (in its transaction), closed after use, for a
    :class:`CompiledStatement`. A DB-API error is raised as SQLAlchemy raises
    it (``DBAPIError``, parameters hidden), so callers catch what they catch
    for Core statements."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.cursor()
    try:
        yield cursor
    except dbapi_error as exc:
        raise DBAPIError.instance(None, None, exc, dbapi_error, hide_parameters=True) from exc
    finally:
        cursor.close()


class PreparedRead:
    """A compiled SELECT; :meth:`first` runs it."""

    def __init__(self, engine: Engine, statement: AnySelect) -> None:
        dialect = engine.dialect
        self._statement = CompiledStatement(statement, dialect)
        self.sql = self._statement.sql
        # weakly: the engine keys the cache of prepared reads (see prepared())
        self._engine = weakref.ref(engine)
        self._results: list[_Processor] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns]

    def first(self, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row (as a tuple, converted like SQLAlchemy's), or ``None``."""
        args = self._statement.args(params)
        engine = self._engine()
        if engine is None:  # pragma: no cover - the caller holds the engine
            raise RuntimeError("the engine of this prepared read is gone")
        held = _loop_connection(engine)
        if held is not None:
            try:
                row = self._fetch(held, args)
                held.rollback()
            except Exception:
                _drop_loop_connection(engine)
                raise
        else:
            conn = engine.raw_connection()
            try:
                row = self._fetch(conn, args)
            finally:
                conn.close()  # back to the pool, which rolls back
        if row is None:
            return None
        return tuple(value if process is None else process(value)
                     for process, value in zip(self._results, row, strict=True))

    def _fetch(self, conn: Any, args: Any) -> Any:
        cursor = conn.cursor()
        try:
            cursor.execute(self.sql, args)
            return cursor.fetchone()
        finally:
            cursor.close()


# engine -> thread ident -> the DB-API connection that event-loop thread keeps
_HELD: WeakKeyDictionary[Engine, dict[int, Any]] = WeakKeyDictionary()
_held_lock = threading.Lock()


def _loop_connection(engine: Engine) -> Any | None:
    """The DB-API connection this thread keeps for ``engine`` if it runs an event
    loop (made on first use); ``None`` in other threads."""
    if asyncio._get_running_loop() is None:
        return None
    per_thread = _HELD.get(engine)
    if per_thread is None:
        with _held_lock:
            per_thread = _HELD.get(engine)
            if per_thread is None:
                per_thread = _HELD[engine] = {}
                # closed when the engine is disposed of or collected; neither
                # hook holds the engine
                event.listen(engine, "engine_disposed",
                             lambda _engine, held=per_thread: _close_all(held))
                weakref.finalize(engine, _close_all, per_thread)
    conn = per_thread.get(threading.get_ident())
    if conn is None:
        pooled = engine.raw_connection()  # connected with the engine's settings
        pooled.detach()  # ours now, no longer the pool's
        conn = per_thread[threading.get_ident()] = pooled.dbapi_connection
    return conn


def _drop_loop_connection(engine: Engine) -> None:
    conn = _HELD.get(engine, {}).pop(threading.get_ident(), None)
    if conn is not None:
        _close(conn)


def _close_all(per_thread: dict[int, Any]) -> None:
    for conn in list(per_thread.values()):
        _close(conn)  # the connections allow other threads (check_same_thread off)
    per_thread.clear()


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):  # broken already: nothing to give back
        conn.close()


_PREPARED: WeakKeyDictionary[Engine, dict[int, tuple[AnySelect, PreparedRead]]] = (
    WeakKeyDictionary())


def prepared(engine: Engine, statement: AnySelect) -> PreparedRead:
    """The :class:`PreparedRead` of ``statement`` (a module-level constant) on
    ``engine``, compiled on first use."""
    per_engine = _PREPARED.setdefault(engine, {})
    found = per_engine.get(id(statement))
    if found is None or found[0] is not statement:
        found = (statement, PreparedRead(engine, statement))
        per_engine[id(statement)] = found
    return found[1]
