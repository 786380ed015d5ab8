"""The audit trail: an append-only, hash-chained log of who did what to which
object, when, and with what result.

Rows never hold identifying values: objects are named by pseudonyms,
pseudonymous UIDs or internal IDs; actors by ``user:ID``, ``token:ID``,
``peer:AE`` or ``cli``.

The chain
---------
Every row's ``row_hash`` is HMAC-SHA256, keyed with a key derived from the
server secret (:func:`chain_key`), over the previous row's ``row_hash`` and a
canonical encoding of the row: the JSON array ``[id, at, actor, action,
object_type, object_id, result, detail]`` with ``at`` in UTC as
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (SQLite hands back naive UTC datetimes,
PostgreSQL aware ones; both encode the same). The first chained row follows
the empty string (:data:`GENESIS`). Because the hash is keyed, someone who
can write the database but cannot read the server secret cannot recompute
the chain after an edit; checking it (``dicom-service audit verify``)
therefore needs the secret too. Someone who holds the secret can rewrite
history. The default secret file lies in the data directory beside the
SQLite file: to keep those who administer the database from it, give the
secret through ``DICOM_SERVICE_SECRET`` instead. Note the head that ``audit
verify`` prints somewhere else now and then: that also exposes a database
restored from an older copy, which no chain can.

Ids are given out by the chain, not by the database: the one-row table
``audit_head`` holds the last id, its hash and a MAC over both. An append
first bumps ``audit_head.last_id`` (``UPDATE ... RETURNING``); that write takes
SQLite's write lock (on PostgreSQL: the head row's lock) until the caller's
transaction ends, so appends from every thread and process are serialised in
chain order, see the latest head, and a rolled-back transaction leaves no gap.
Ids are therefore contiguous, and :func:`verify` tells a deleted row (a gap,
or a head beyond the last row) from an edited one (a hash mismatch). The head
MAC exposes rows cut off the end together with a rewound head.

An append costs three statements whatever the number of rows (bump the
head, insert, set the head's hash and MAC): on the ingest path about 0.07 ms
more than the plain insert it replaced, 1-2% of an instance's ingest.

Rows written before the chain existed (``row_hash`` NULL, before migration
0005) are reported as unchained; they are an error only after a chained
row. Migration 0005 adds SQLite triggers that refuse UPDATE and DELETE of
audit rows and an INSERT that bypasses the chain; :func:`verify` does not
rely on them. (On PostgreSQL, revoke UPDATE and DELETE on ``audit_events``
and ``audit_head`` from the service's role instead.)

Writers: :func:`record` appends one row in the caller's ORM session (it
commits with the change it describes); the ingest pipeline calls
:meth:`AuditChain.append` in its own transaction; reads go through
:class:`ReadAudit`, which buffers them in memory and appends them in batches.
The key is registered per database by :func:`use_key` (``CareService`` does
it, since it holds the server secret).
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from dicom_service.db.models import AuditEvent, utcnow
from dicom_service.db.session import Database
from dicom_service.logsafe import describe

log = logging.getLogger(__name__)

GENESIS = ""  # what the first chained row follows

# The one-row head of the chain (migration 0005). Only this module touches it.
audit_head = Table(
    "audit_head", MetaData(),
    Column("id", Integer, primary_key=True),
    Column("last_id", Integer, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("mac", String(64), nullable=True),
)
_events = cast(Table, AuditEvent.__table__)

# built once, so that SQLAlchemy compiles them once
_BUMP = (update(audit_head).where(audit_head.c.id == 1)
         .values(last_id=audit_head.c.last_id + bindparam("b_n"))
         .returning(audit_head.c.last_id, audit_head.c.last_hash))
_INSERT = insert(_events)
_SET_HEAD = (update(audit_head).where(audit_head.c.id == 1)
             .values(last_hash=bindparam("b_hash"), mac=bindparam("b_mac")))
# The same on SQLite through the DB-API cursor: 0.08 ms instead of the 0.16 ms
# of the three Core statements (the ingest hot path appends one row per instance).
_SQLITE_BUMP = "UPDATE audit_head SET last_id = last_id + ? WHERE id = 1 " \
    "RETURNING last_id, last_hash"
_SQLITE_INSERT = "INSERT INTO audit_events (id, at, actor, action, object_type, object_id, " \
    "result, detail, row_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SQLITE_SET_HEAD = "UPDATE audit_head SET last_hash = ?, mac = ? WHERE id = 1"
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores a DateTime in SQLite


class Event(NamedTuple):
    """One audit row before it is chained."""

    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    result: str = "ok"
    detail: str | None = None


def chain_key(server_secret: bytes) -> bytes:
    """The key of the audit chain, derived from the server secret."""
    return hmac.new(server_secret, b"audit-chain\x00", hashlib.sha256).digest()


def utc(at: datetime) -> datetime:
    """``at`` as an aware UTC datetime; a naive one is taken as UTC (SQLite's)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def iso(at: datetime) -> str:
    """``at`` in UTC in the one format the chain hashes and exports use."""
    return utc(at).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _canonical(row_id: int, e: Event) -> bytes:
    # default=repr: SQLite stores any type in any column, and an edit that puts
    # a blob where text was must show as a mismatch, not stop the check
    return json.dumps([row_id, iso(e.at), e.actor, e.action, e.object_type, e.object_id,
                       e.result, e.detail], ensure_ascii=False, separators=(",", ":"),
                      default=repr).encode("utf-8")


class AuditChain:
    """Appends rows to the chain of one database, and checks it."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def row_hash(self, previous: str, row_id: int, event: Event) -> str:
        msg = b"row\x00" + previous.encode("utf-8") + b"\x00" + _canonical(row_id, event)
        return hmac.digest(self._key, msg, "sha256").hex()

    def head_mac(self, last_id: int, last_hash: str) -> str:
        msg = b"head\x00" + str(last_id).encode("ascii") + b"\x00" + last_hash.encode("utf-8")
        return hmac.digest(self._key, msg, "sha256").hex()

    def append(self, conn: Connection, events: Sequence[Event]) -> None:
        """Append ``events`` in order, in ``conn``'s transaction (which the caller commits).

        Three statements whatever the number of events: bump the head (this
        takes the write lock), insert the rows, set the head's hash and MAC.
        """
        if not events:
            return
        if conn.dialect.name == "sqlite":
            self._append_sqlite(conn, events)
        else:
            self._append_core(conn, events)

    def _append_sqlite(self, conn: Connection, events: Sequence[Event]) -> None:
        dbapi_error = conn.dialect.loaded_dbapi.Error
        cursor = conn.connection.cursor()
        try:
            cursor.execute(_SQLITE_BUMP, (len(events),))
            last_id, previous = cast(tuple[int, str], cursor.fetchone())
            rows = self._chained(last_id, previous, events)
            cursor.executemany(_SQLITE_INSERT, [
                (r["id"], r["at"].strftime(_SQLITE_TIME), r["actor"], r["action"],
                 r["object_type"], r["object_id"], r["result"], r["detail"], r["row_hash"])
                for r in rows])
            head = rows[-1]["row_hash"]
            cursor.execute(_SQLITE_SET_HEAD, (head, self.head_mac(last_id, head)))
        except dbapi_error as exc:  # raised as SQLAlchemy would: callers catch that
            raise DBAPIError.instance(None, None, exc, dbapi_error,
                                      hide_parameters=True) from exc
        finally:
            cursor.close()

    def _append_core(self, conn: Connection, events: Sequence[Event]) -> None:
        last_id, previous = conn.execute(_BUMP, {"b_n": len(events)}).one()
        rows = self._chained(last_id, previous, events)
        conn.execute(_INSERT, rows)
        head = rows[-1]["row_hash"]
        conn.execute(_SET_HEAD, {"b_hash": head, "b_mac": self.head_mac(last_id, head)})

    def _chained(self, last_id: int, previous: str,
                 events: Sequence[Event]) -> list[dict[str, Any]]:
        """The rows of ``events``, numbered to end at ``last_id``, each with its hash."""
        rows: list[dict[str, Any]] = []
        for row_id, e in enumerate(events, start=last_id - len(events) + 1):
            e = e._replace(at=utc(e.at))  # stored as it is hashed
            previous = self.row_hash(previous, row_id, e)
            rows.append({"id": row_id, **e._asdict(), "row_hash": previous})
        return rows


# -- which key belongs to which database -------------------------------------
_chains: dict[str, AuditChain] = {}
_chains_lock = threading.Lock()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def use_key(db: Database, server_secret: bytes) -> AuditChain:
    """Register the chain key of ``db`` (every connection to the same URL uses it)."""
    chain = AuditChain(chain_key(server_secret))
    with _chains_lock:
        _chains[_url(db.engine)] = chain
    return chain


def chain_for(bind: Database | Engine) -> AuditChain:
    """The chain of a database whose key :func:`use_key` registered.

    Raises :class:`RuntimeError` otherwise: an audit row is never written unchained.
    """
    engine = bind.engine if isinstance(bind, Database) else bind
    with _chains_lock:
        chain = _chains.get(_url(engine))
    if chain is None:
        raise RuntimeError("the audit chain has no key for this database "
                           "(audit.use_key; CareService registers it)")
    return chain


def record(session: Session, *, actor: str, action: str, object_type: str, object_id: str,
           result: str = "ok", detail: str | None = None) -> None:
    """Append an audit row in ``session``'s transaction; it commits with the change it
    describes. From here until that commit the session holds the write lock."""
    bind = session.get_bind()
    if not isinstance(bind, Engine):  # pragma: no cover - sessions are bound to an engine
        bind = bind.engine
    chain_for(bind).append(session.connection(), [
        Event(utcnow(), actor, action, object_type, object_id, result, detail)])


# -- reads --------------------------------------------------------------------
_CHUNK = 500  # rows per transaction of ReadAudit.flush: the write lock is never held long


@dataclass
class _Pending:
    first: datetime
    last: datetime
    count: int = 1


class ReadAudit:
    """Audit for reads, cheap enough for hundreds per second.

    :meth:`note` only touches memory. A background thread (started by the
    first note) appends what was noted every ``interval`` seconds, in
    transactions of up to 500 rows. Identical (actor, action, object, result) notes within one
    window become one row: ``at`` is the first time, ``detail`` is
    ``count=N last=TIME`` when N > 1. :meth:`close` (``Services.close``, and
    at interpreter exit) writes what is left. A failed write keeps the notes
    for the next attempt. With more than ``max_pending`` distinct notes the
    noting thread writes them itself, so memory stays bounded.

    One per process: build it after any fork.
    """

    def __init__(self, db: Database, *, interval: float = 0.5, max_pending: int = 20_000,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._interval = interval
        self._max_pending = max_pending
        self._clock = clock
        self._pending: dict[tuple[str, str, str, str, str], _Pending] = {}
        self._lock = threading.Lock()  # guards _pending and _thread
        self._flush_lock = threading.Lock()  # one write at a time, in order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, actor: str, action: str, object_type: str, object_id: str,
             result: str = "ok") -> None:
        """Note one read (or refused read); it reaches the chain within ``interval``."""
        now = self._clock()
        key = (actor, action, object_type, object_id, result)
        with self._lock:
            entry = self._pending.get(key)
            if entry is None:
                self._pending[key] = _Pending(now, now)
            else:
                entry.last = now
                entry.count += 1
            # once closed, nobody writes later: the noting thread does it now
            full = len(self._pending) >= self._max_pending or self._stop.is_set()
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="read-audit",
                                                daemon=True)
                self._thread.start()
                atexit.register(self.close)
        if full:
            self.flush()

    def flush(self) -> int:
        """Append everything noted so far; return the number of rows written.

        Raises the error (of the database, usually) after putting back the
        notes not yet written.
        """
        with self._flush_lock:
            with self._lock:
                taken, self._pending = self._pending, {}
            items = sorted(taken.items(), key=lambda item: item[1].first)
            written = 0
            try:
                chain = chain_for(self._db)
                for start in range(0, len(items), _CHUNK):
                    events = [Event(p.first, actor, action, otype, oid, result,
                                    f"count={p.count} last={iso(p.last)}" if p.count > 1
                                    else None)
                              for (actor, action, otype, oid, result), p
                              in items[start:start + _CHUNK]]
                    with self._db.write_lock(), self._db.engine.begin() as conn:
                        chain.append(conn, events)
                    written += len(events)
            except BaseException:
                self._put_back(dict(items[written:]))
                raise
            return written

    def _put_back(self, taken: dict[tuple[str, str, str, str, str], _Pending]) -> None:
        with self._lock:
            for key, p in taken.items():
                newer = self._pending.get(key)
                if newer is not None:
                    p.last, p.count = newer.last, p.count + newer.count
                self._pending[key] = p

    @property
    def pending(self) -> int:
        """Distinct notes not yet written."""
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # the thread must live on: the notes are kept
            log.error("read audit not written yet, will retry (%s)", describe(exc))

    def close(self) -> None:
        """Stop the background thread and write what is left (idempotent)."""
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
            atexit.unregister(self.close)
        self._flush_logged()


# -- checking and export ---------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """Where the chain breaks: the row named, and what is wrong there."""

    row_id: int
    what: str

    def __str__(self) -> str:
        return f"row {self.row_id}: {self.what}"


@dataclass
class Verification:
    """The result of :func:`verify`."""

    rows: int = 0
    unchained: int = 0
    head_id: int = 0
    head_hash: str = GENESIS
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return (f"audit chain intact: {self.rows} rows ({self.rows - self.unchained} "
                    f"chained, {self.unchained} before the chain); head {self.head_id} "
                    f"{self.head_hash or '-'}")
        return f"audit chain broken at {self.problems[0]}"


# ``at`` as the database has it (SQLite: text), parsed by _time: an edited,
# unparsable time is then a finding of verify, not an exception
_COLUMNS = (_events.c.id, type_coerce(_events.c.at, String), _events.c.actor, _events.c.action,
            _events.c.object_type, _events.c.object_id, _events.c.result, _events.c.detail,
            _events.c.row_hash)


def _time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def verify(conn: Connection, chain: AuditChain) -> Verification:
    """Walk the chain in id order and report every break, first one first.

    A hash that does not match the row's content and its predecessor's hash
    means the row (or its hash) was edited; a gap in the ids, or a head
    beyond the last row, means rows were deleted; a row without a hash after
    chained rows, or beyond the head, was inserted outside the chain.
    """
    v = Verification()
    previous_id = 0
    previous_hash = GENESIS
    chained = False
    rows = conn.execute(select(*_COLUMNS).order_by(_events.c.id)
                        .execution_options(yield_per=5000))
    for row_id, at, actor, action, otype, oid, result, detail, row_hash in rows:
        v.rows += 1
        gap = row_id != previous_id + 1
        if gap:
            missing = (f"row {previous_id + 1} is" if row_id == previous_id + 2 else
                       f"rows {previous_id + 1}-{row_id - 1} are")
            v.problems.append(Problem(row_id, f"{missing} missing before it (deleted)"))
        if row_hash is None:
            if chained:
                v.problems.append(Problem(row_id, "no hash after chained rows "
                                                  "(inserted or edited outside the chain)"))
            else:
                v.unchained += 1
        else:
            chained = True
            when = _time(at)
            # after a gap the predecessor's hash is gone: only the gap is reported
            if not gap and (when is None or row_hash != chain.row_hash(
                    previous_hash, row_id,
                    Event(when, actor, action, otype, oid, result, detail))):
                v.problems.append(Problem(row_id, "content does not match its hash (edited)"))
            previous_hash = row_hash
        previous_id = row_id
    head = conn.execute(select(audit_head.c.last_id, audit_head.c.last_hash, audit_head.c.mac)
                        .where(audit_head.c.id == 1)).first()
    if head is None:
        v.problems.append(Problem(previous_id + 1, "the chain's head is missing (deleted)"))
        return v
    v.head_id, v.head_hash, mac = head
    if v.head_id > previous_id:
        missing = (f"row {v.head_id} is" if v.head_id == previous_id + 1 else
                   f"rows {previous_id + 1}-{v.head_id} are")
        v.problems.append(Problem(previous_id + 1, f"{missing} missing at the end (deleted)"))
    elif v.head_id < previous_id:
        v.problems.append(Problem(v.head_id + 1, "rows beyond the chain's head "
                                                 "(inserted outside the chain)"))
    elif v.head_hash != previous_hash:
        v.problems.append(Problem(previous_id, "the chain's head does not match the last row"))
    if chained and mac != chain.head_mac(v.head_id, v.head_hash):
        v.problems.append(Problem(v.head_id, "the chain's head was edited (MAC mismatch)"))
    return v


def export(conn: Connection, *, since: datetime | None = None, until: datetime | None = None,
           actor: str | None = None, object_type: str | None = None,
           object_id: str | None = None, limit: int | None = None,
           offset: int = 0) -> Iterator[dict[str, Any]]:
    """Audit rows in id order as JSON-ready dicts (every field, ``row_hash`` too).

    ``since`` is inclusive, ``until`` exclusive; naive datetimes are UTC.
    """
    query = (select(*_COLUMNS).order_by(_events.c.id).offset(offset).limit(limit)
             .execution_options(yield_per=5000))
    if since is not None:
        query = query.where(_events.c.at >= utc(since))
    if until is not None:
        query = query.where(_events.c.at < utc(until))
    for column, value in ((_events.c.actor, actor), (_events.c.object_type, object_type),
                          (_events.c.object_id, object_id)):
        if value is not None:
            query = query.where(column == value)
    for row_id, at, actor_, action, otype, oid, result, detail, row_hash in conn.execute(query):
        when = _time(at)
        yield {"id": row_id, "at": iso(when) if when else str(at), "actor": actor_,
               "action": action, "object_type": otype, "object_id": oid, "result": result,
               "detail": detail, "row_hash": row_hash}


