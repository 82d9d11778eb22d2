"""The durable queue between the agent and every server: telemetry lines and MQTT messages.

SQLite in WAL mode with ``synchronous=FULL``: every committed ``put_*`` is on disk (fsync)
before the call returns, so a ``kill -9`` or a power cut loses nothing that was accepted.
Rows leave the spool only when a server has accepted them (``ack``) or they were judged
undeliverable (``dead_letter``, kept for inspection).

Telemetry is capped at ``max_rows``: a full spool drops the OLDEST lines (newest data is the
most useful after a long outage), counts them in ``dropped`` (persisted), logs a warning and
returns the number from ``put_lines`` so the agent can raise an alert.

A full disk does not stop the agent: a small reserve file (``<spool>.reserve``) is given up
when the disk fills, and from then on every ``put_lines`` makes room by deleting the OLDEST
lines (counted in ``dropped``, like the cap) before inserting, checkpointing the WAL each time
so the space it frees is reused. If even that fails the newest lines wait in memory (bounded,
oldest dropped and counted) until a write succeeds. ``disk_full`` says which state it is in;
the change is logged once each way, and the reserve is taken back when space returns.

Damage: a spool SQLite cannot read (truncated, header or a page overwritten, or a 0-byte file
where a spool used to be) is never fatal. ``Spool()`` runs ``PRAGMA quick_check`` when it
opens the file; a damaged file (with its ``-wal``/``-shm``) is renamed to
``<spool>.damaged-<UTC time>``, logged at ERROR with the file and the reason, counted in
``SpoolStats.quarantined`` (files waiting for the operator), and a fresh spool starts.
``kuat spool`` inspects and salvages a quarantined file.

Register ``seq`` across a lost spool: the counters live in the spool, so a fresh spool would
restart them at 1 and a receiver would drop the new events as old. The spool therefore also
keeps ``<spool>.seq``, a small JSON file (written with fsync and an atomic rename, in the same
transaction that numbers the events, before it commits) that *reserves* counter values in
blocks of ``SEQ_RESERVE``: every seq ever issued is at or below the reserved value. When the
spool opened is not the one the reservation was made for (a fresh or replaced file), or its
counter is behind its last reservation (an older copy put back), each counter continues from
its reservation: ``seq`` stays strictly increasing; a receiver sees a
forward gap (up to ``SEQ_RESERVE``), which the register contract already treats as "events
lost: rebuild from the retained inventory".

"Behind" is measured against ``issued``, which the file also keeps per counter: the value the
spool's counter had when the reservation was written (before the transaction commits) and, once
it has committed, the value it committed (written again after the commit). A transaction killed
between the two writes leaves the counter at the first value, which is not behind: the events
it would have numbered were never issued, so no gap is made for them (an agent killed while
publishing used to skip a whole reservation). A copy older than the committed value is behind.

Thread safety: one ``Spool`` may be shared by threads (the asyncio loop, the influx writer's
worker thread, paho's network thread); a lock serialises access to its single connection.
Every call is short but does disk I/O; from a coroutine call it via ``asyncio.to_thread`` when
batches are large. Several processes must not share one spool file.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import math
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from kuat.collectors.errors import KuatError

__all__ = [
    "QUARANTINE_MARK",
    "SEQ_RESERVE",
    "Batch",
    "FilePayload",
    "OutboxMessage",
    "Quarantined",
    "Spool",
    "SpoolFull",
    "SpoolStats",
    "Staged",
    "open_checked",
    "quarantined_files",
    "read_damaged",
    "salvage_into",
]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS telemetry_dead (
    id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL, reason TEXT NOT NULL,
    at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
    qos INTEGER NOT NULL, retain INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox_dead (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
    reason TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS retained (topic TEXT PRIMARY KEY, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


SEQ_RESERVE = 1000  # seq values reserved per fsync of the .seq file
QUARANTINE_MARK = ".damaged-"
DEFAULT_RESERVE_BYTES = 4 * 1024 * 1024
# Lines held in memory while not even a delete-then-insert fits on the disk (about 10 MB).
MAX_HELD_LINES = 50_000
# SQLite result codes that mean "this file is not a readable database" (vs busy, permissions).
_DAMAGE_CODES = frozenset(
    {
        getattr(sqlite3, "SQLITE_CORRUPT", 11),
        getattr(sqlite3, "SQLITE_NOTADB", 26),
    }
)
_FULL_CODE = getattr(sqlite3, "SQLITE_FULL", 13)


# An outbox row whose payload is this stands for its topic's retained message as stored when
# the row is read. A farm's inventory snapshot (19 MB at 50,000 miners) copied into the outbox
# inside SQLite held it twice in SQLite's memory (the value read and the row made of it): +37 MB
# over the agent's level at each publish and on every new broker connection, the largest part
# of the agent's peak (issue 15; bench/inventory_peak.py). kuat's payloads are JSON, so a
# leading NUL never starts one. A newer retained message replaces the unsent row of the older
# (both callers delete it first), so the row never sends a later state than it should.
FROM_RETAINED = b"\x00kuat:retained\x00"
# the payload an outbox row stands for: its own, or its topic's retained message (outbox o)
_OUTBOX_PAYLOAD = (
    "CASE WHEN o.payload = :ref THEN "
    "(SELECT r.payload FROM retained r WHERE r.topic = o.topic) ELSE o.payload END"
)


class FilePayload:
    """A payload written to a file as it was made rather than held in memory: ``head``, then
    ``body``'s content from its start (``body_size`` bytes). The spool copies it into the stored
    blob a chunk at a time and closes ``body``; ``read()`` gives it whole.

    A farm's inventory snapshot, 19 MB of JSON at 50,000 miners, was a buffer in the agent from
    its first miner until it was stored: +22 MB over the agent's level at each periodic
    publish, the agent's peak in an hour at 50,000 miners (issue 15, bench/farm_scale.py). A
    temporary file's pages are the kernel's to write out and drop under pressure; one removed
    seconds after it was written (``tempfile.TemporaryFile``: no name, gone with its last
    descriptor, even after a crash) is seldom written to the disk at all."""

    __slots__ = ("body", "body_size", "head")
    CHUNK = 1 << 20

    def __init__(self, head: bytes, body: IO[bytes], body_size: int) -> None:
        self.head = head
        self.body = body
        self.body_size = body_size

    def __len__(self) -> int:
        return len(self.head) + self.body_size

    def chunks(self) -> Iterator[bytes]:
        """The payload's bytes, a chunk at a time; the file is closed at the end."""
        try:
            yield self.head
            self.body.seek(0)
            left = self.body_size
            while left > 0:
                chunk = self.body.read(min(self.CHUNK, left))
                if not chunk:
                    raise OSError(f"spilled payload ended {left} bytes short")
                left -= len(chunk)
                yield chunk
        finally:
            self.body.close()

    def read(self) -> bytes:
        return b"".join(self.chunks())


def _put_retained(
    db: sqlite3.Connection, topic: str, payload: bytes | bytearray | FilePayload
) -> None:
    """``payload`` as ``topic``'s retained message, written into a blob of its size rather than
    bound to the statement: a bound value is copied by SQLite and the copy kept with the cached
    statement until it is bound again. A farm's inventory snapshot (19 MB at 50,000 miners),
    bound to this insert and to its outbox copy, stayed in the agent twice between publishes
    (issue 15); the outbox row refers to this one (``FROM_RETAINED``)."""
    try:
        db.execute(
            "INSERT INTO retained(topic, payload) VALUES (?, zeroblob(?)) "
            "ON CONFLICT(topic) DO UPDATE SET payload = excluded.payload",
            (topic, len(payload)),
        )
        (rowid,) = db.execute("SELECT rowid FROM retained WHERE topic = ?", (topic,)).fetchone()
        with db.blobopen("retained", "payload", rowid) as blob:
            if isinstance(payload, FilePayload):
                for chunk in payload.chunks():
                    blob.write(chunk)
            else:
                blob.write(payload)
    finally:
        if isinstance(payload, FilePayload):
            payload.body.close()  # the file goes with it, stored or not


class SequencedJson:
    """JSON objects each to be given a ``seq`` (as their last key) by the transaction that
    numbers them, encoded ahead of it: ``payload(i, seq)`` is the bytes of
    ``json.dumps({**body, "seq": seq}, ensure_ascii=False, separators=(",", ":"))``.

    Encoded inside ``outbox_put_sequenced``'s transaction, a farm's first inventory (an event
    per miner, ~32 us each, twice: outbox and register history) held the spool's lock, and with
    it the event loop spooling readings, for seconds at 50,000 miners. The encoded bodies sit in
    one buffer (~0.6 KB an event), not an object each; ``keep`` names keys kept apart, as
    ``kept(i)``, for the rows that index them. ``Spool.staged`` encodes a chunk at a time with
    it: all of a farm's first inventory at once was 33 MB (bench/inventory_peak.py)."""

    __slots__ = ("_buf", "_ends", "_kept")

    def __init__(self, bodies: Iterable[Mapping[str, Any]], keep: tuple[str, ...] = ()) -> None:
        buf = bytearray()
        ends: list[int] = []
        kept: list[tuple[Any, ...]] = []
        for body in bodies:
            if "seq" in body or not body:
                raise ValueError("a sequenced body has keys, and no seq of its own")
            # without its closing brace: the seq goes after the body's own keys
            buf += json.dumps(body, ensure_ascii=False, separators=(",", ":"))[:-1].encode()
            ends.append(len(buf))
            if keep:
                kept.append(tuple(body[k] for k in keep))
        self._buf = buf
        self._ends = ends
        self._kept = kept

    def __len__(self) -> int:
        return len(self._ends)

    def _span(self, i: int) -> memoryview:
        return memoryview(self._buf)[self._ends[i - 1] if i else 0 : self._ends[i]]

    def payload(self, i: int, seq: int) -> bytes:
        return b"".join((self._span(i), b',"seq":%d}' % seq))

    def text(self, i: int) -> str:
        """Body ``i`` without its closing brace (what ``Spool.staged`` stores)."""
        return str(self._span(i), "utf-8")

    def kept(self, i: int) -> tuple[Any, ...]:
        return self._kept[i]


# Bodies encoded and written to the staging table at a time (Spool.staged): ~0.6 MB of a farm's
# inventory events, the spool's lock held for one chunk's insert.
STAGE_CHUNK = 1000
_STAGE_KEEP_MAX = 4
_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS kuat_staged "
    "(n INTEGER PRIMARY KEY, body TEXT NOT NULL, k0, k1, k2, k3)"
)


class Staged:
    """Bodies a transaction is to number, already encoded and written (``Spool.staged``): row
    ``n`` (0, 1, ...) of the spool connection's temporary table ``kuat_staged`` holds body ``n``
    without its closing brace, and ``k0``... the values of its ``keep`` keys. Inside that
    transaction, ``select(columns)`` reads them in order, where ``TEXT`` is the message given
    the seq ``:first + n`` (the text ``SequencedJson.payload`` makes)."""

    TEXT = "body || ',\"seq\":' || (:first + n) || '}'"

    def __init__(self, count: int, keep: tuple[str, ...]) -> None:
        self.count = count
        self.keep = keep
        self.open = True  # the rows are there (the staged() block has not ended)

    def __len__(self) -> int:
        return self.count

    @property
    def kept_columns(self) -> str:
        return ", ".join(f"k{i}" for i in range(len(self.keep)))

    def select(self, columns: str) -> str:
        if not self.open:
            raise RuntimeError("staged bodies used after their staged() block")
        return f"SELECT {columns} FROM temp.kuat_staged ORDER BY n"


def _counter(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class SpoolFull(KuatError, sqlite3.OperationalError):
    """A write found no space on the disk; the transaction was rolled back."""


class _Damaged(Exception):
    pass


def _is_full(exc: BaseException) -> bool:
    return (
        isinstance(exc, sqlite3.OperationalError)
        and getattr(exc, "sqlite_errorcode", None) == _FULL_CODE
    )


def _is_damage(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _DAMAGE_CODES
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A database file that could not be opened, moved aside for the operator."""

    original: Path
    moved_to: Path
    reason: str


def quarantined_files(path: Path) -> list[Path]:
    """Quarantined copies of the database ``path`` still beside it, oldest first."""
    path = Path(path)
    try:
        found = [
            p
            for p in path.parent.glob(f"{path.name}{QUARANTINE_MARK}*")
            if not p.name.endswith(("-wal", "-shm"))
        ]
    except OSError:
        return []
    return sorted(found)


def _quarantine(path: Path, reason: str, what: str) -> Quarantined:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}{QUARANTINE_MARK}{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, Path(f"{target}{suffix}"))
    _fsync_dir(path.parent)
    log.error(
        "%s %s is damaged (%s): moved to %s and starting a fresh one; what it held is not "
        "sent until salvaged: kuat spool inspect / kuat spool salvage %s",
        what,
        path,
        reason,
        target,
        target,
    )
    return Quarantined(path, target, reason)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def open_checked(
    path: Path,
    *,
    what: str,
    existed_before: bool = False,
    setup: Callable[[sqlite3.Connection], object] | None = None,
) -> tuple[sqlite3.Connection, Quarantined | None]:
    """Open the SQLite file ``path`` (WAL, synchronous=FULL), quarantining it if damaged.

    Damaged means SQLite says so (not a database, malformed), ``PRAGMA quick_check`` finds a
    problem, or the file is empty (0 bytes) although ``existed_before`` says a database was
    there. ``setup`` (schema creation) runs on the opened connection and is part of the check.
    Anything else (locked, permission denied) is raised: moving the file would not help.
    """
    path = Path(path)
    found: Quarantined | None = None
    for attempt in (1, 2):
        db: sqlite3.Connection | None = None
        try:
            if attempt == 1 and existed_before and path.exists() and path.stat().st_size == 0:
                raise _Damaged("empty file (0 bytes) where a database was")
            # isolation_level=None: explicit BEGIN/COMMIT, so a batch is one fsync.
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            problems = [r[0] for r in db.execute("PRAGMA quick_check(3)").fetchall()]
            if problems != ["ok"]:
                raise _Damaged("integrity check: " + "; ".join(str(p) for p in problems))
            if setup is not None:
                setup(db)
            return db, found
        except (_Damaged, sqlite3.DatabaseError) as exc:
            if db is not None:
                db.close()
            if attempt == 2 or not (isinstance(exc, _Damaged) or _is_damage(exc)):
                raise
            found = _quarantine(path, str(exc), what)
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class Batch:
    """Spooled telemetry lines taken for sending; ``ids`` are the rows to ``ack``."""

    ids: tuple[int, ...]
    lines: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def split(self) -> tuple[Batch, Batch]:
        half = len(self.ids) // 2
        return (
            Batch(self.ids[:half], self.lines[:half]),
            Batch(self.ids[half:], self.lines[half:]),
        )


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class SpoolStats:
    pending: int  # telemetry lines waiting to be sent
    dead: int  # telemetry lines dead-lettered (kept for inspection, capped)
    dropped: int  # telemetry lines dropped by the size cap since the spool was created
    outbox: int  # MQTT messages waiting for their PUBACK
    outbox_dead: int  # MQTT messages the broker refused
    quarantined: int = 0  # damaged spool files moved aside, waiting for the operator
    disk_full: bool = False  # writes are making room by dropping the oldest lines


class Spool:
    """SQLite-backed durable queue. See the module docstring for guarantees and threading."""

    def __init__(
        self,
        path: Path,
        *,
        max_rows: int = 5_000_000,
        max_dead: int = 100_000,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    ) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be positive")
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_dead = max_dead
        self.reserve_bytes = reserve_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._stage_lock = threading.Lock()  # one staged() block at a time (one staging table)
        self._seq_path = self.path.with_name(self.path.name + ".seq")
        self._reserve_path = self.path.with_name(self.path.name + ".reserve")
        sidecar = self._read_sidecar()
        self._db, self.quarantine = open_checked(
            self.path,
            what="spool",
            existed_before=sidecar is not None,
            setup=lambda db: db.executescript(_SCHEMA),
        )
        self._pending = self._db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0]
        self._reserved: dict[str, int] = {}
        self._issued: dict[str, int] = {}  # per counter, a value it is known to have reached
        self._adopt_counters(sidecar)
        self.disk_full = False
        self._held: deque[str] = deque()
        self._unsaved_drops = 0  # dropped while even the counter could not be written
        self._make_reserve()

    # --- seq reservation (see the module docstring) ---------------------------------------

    def _read_sidecar(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self._seq_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error(
                "register seq file %s unreadable (%s); counters from the spool", self._seq_path, exc
            )
            return None
        if not isinstance(data, dict) or not isinstance(data.get("reserved"), dict):
            log.error(
                "register seq file %s has no reservations; counters from the spool", self._seq_path
            )
            return None
        return data

    def _write_sidecar(self) -> None:
        body = json.dumps(
            {"spool_id": self._spool_id, "reserved": self._reserved, "issued": self._issued},
            sort_keys=True,
        ).encode()
        tmp = self._seq_path.with_name(self._seq_path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._seq_path)
        _fsync_dir(self._seq_path.parent)

    def _adopt_counters(self, sidecar: dict[str, Any] | None) -> None:
        """Tie the reservations to this spool; continue the counters if the spool is new."""
        spool_id = self._meta("spool_id")
        counters = {
            k.removeprefix("seq:"): int(v)
            for k, v in self._db.execute(
                "SELECT key, value FROM meta WHERE key LIKE 'seq:%'"
            ).fetchall()
        }
        reserved: dict[str, int] = {}
        issued: dict[str, int] = {}
        if sidecar is not None:
            for k, v in sidecar["reserved"].items():
                if _counter(v):
                    reserved[str(k)] = v
            found = sidecar.get("issued")
            for k, v in (found.items() if isinstance(found, dict) else ()):
                if _counter(v):
                    issued[str(k)] = v
        same = sidecar is not None and spool_id != 0 and sidecar.get("spool_id") == spool_id
        with self._tx() as db:
            if spool_id == 0:
                spool_id = secrets.randbits(62) or 1
                db.execute("INSERT INTO meta(key, value) VALUES ('spool_id', ?)", (spool_id,))
            for key, high in reserved.items():
                # A counter below what the file says was issued went back (an older copy of
                # the file); a spool the reservations were not made for lost its counters.
                # A file written before "issued" existed: its reservation's start.
                behind = counters.get(key, 0) < issued.get(key, high - SEQ_RESERVE)
                if (behind or not same) and counters.get(key, 0) < high:
                    # Every seq up to `high` may have been issued by the lost spool.
                    db.execute(
                        "INSERT INTO meta(key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (f"seq:{key}", high),
                    )
                    log.warning(
                        "register seq of %s continues after %d (the spool that counted it "
                        "is gone; receivers see a gap and rebuild from the inventory)",
                        key,
                        high,
                    )
                    counters[key] = high
            self._spool_id = spool_id
            self._reserved = {k: max(v, reserved.get(k, 0)) for k, v in counters.items()}
            self._issued = dict(counters)
            if not same or self._reserved != reserved or self._issued != issued:
                self._write_sidecar()

    def _make_reserve(self) -> None:
        """Space given up when the disk fills, so the spool can still delete and checkpoint."""
        if self.reserve_bytes <= 0 or self._reserve_path.exists():
            return
        try:
            fd = os.open(self._reserve_path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
            finally:
                os.close(fd)
        except OSError as exc:
            log.debug("no reserve file for the spool (%s)", exc)
            with contextlib.suppress(OSError):
                self._reserve_path.unlink()

    def __repr__(self) -> str:
        return f"Spool({str(self.path)!r}, max_rows={self.max_rows})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def shared_connection(self) -> tuple[sqlite3.Connection, threading.RLock]:
        """The spool's connection and the lock that serialises it.

        For a component whose rows must commit in the same transaction as the spool's own (the
        register history beside the outbox, see ``outbox_put_sequenced``'s ``retained`` build
        callback): take the lock for any statement of your own, and never commit inside a
        callback the spool runs in its transaction.
        """
        return self._db, self._lock

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE … COMMIT, rolled back on an exception) on the
        spool's database, for a component that keeps its own tables beside the spool's."""
        with self._tx() as db:
            yield db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    # SQLite may already have rolled back (a full disk at COMMIT does).
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if _is_full(exc) and not isinstance(exc, SpoolFull):
                    raise SpoolFull(f"no space left for {self.path}: {exc}") from exc
                raise
            except OSError as exc:  # the .seq file (written inside the transaction)
                if exc.errno == errno.ENOSPC:
                    raise SpoolFull(f"no space left for {self._seq_path}: {exc}") from exc
                raise

    def _bump(self, db: sqlite3.Connection, key: str, by: int) -> int:
        db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
            (key, by),
        )
        return int(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    # --- telemetry ----------------------------------------------------------------------

    def put_lines(self, lines: Sequence[str]) -> int:
        """Append lines durably; returns how many OLDEST lines were dropped (usually 0) by the
        cap or, on a full disk, to make room (see the module docstring)."""
        if not lines and not self._held:
            return 0
        with self._lock:
            batch = [*self._held, *lines] if self._held else list(lines)
            if self.disk_full and self._space_returned():
                self._leave_full()
            if not self.disk_full:
                try:
                    dropped = self._insert(batch, make_room=0)
                except SpoolFull:
                    self._enter_full()
                else:
                    self._held.clear()
                    return dropped
            return self._put_when_full(batch)

    def _insert(self, lines: list[str], *, make_room: int) -> int:
        pending = self._pending
        try:
            return self._insert_tx(lines, make_room)
        except BaseException:
            self._pending = pending  # rolled back
            raise

    def _insert_tx(self, lines: list[str], make_room: int) -> int:
        with self._tx() as db:
            dropped = 0
            if make_room:
                dropped = self._drop_oldest(db, make_room)
            db.executemany("INSERT INTO telemetry(line) VALUES (?)", ((ln,) for ln in lines))
            self._pending += len(lines)
            excess = self._pending - self.max_rows
            if excess > 0:
                dropped += self._drop_oldest(db, excess)
            total = 0
            if dropped or self._unsaved_drops:
                total = self._bump(db, "telemetry_dropped", dropped + self._unsaved_drops)
        self._unsaved_drops = 0
        if dropped:
            # DEBUG: the owner (the agent) reports drops to the operator, rate-limited.
            log.debug(
                "telemetry spool full (%d lines): dropped the %d oldest lines (%d in total)",
                self.max_rows,
                dropped,
                total,
            )
        return dropped

    def _drop_oldest(self, db: sqlite3.Connection, n: int) -> int:
        cut = db.execute(
            "SELECT id FROM telemetry ORDER BY id LIMIT 1 OFFSET ?", (n - 1,)
        ).fetchone()
        if cut is None:
            removed = db.execute("DELETE FROM telemetry").rowcount
        else:
            removed = db.execute("DELETE FROM telemetry WHERE id <= ?", (cut[0],)).rowcount
        self._pending -= removed
        return removed

    def _put_when_full(self, lines: list[str]) -> int:
        # Delete a little more than we insert: rows differ in size and the pages freed must
        # hold the new ones, or the file would have to grow.
        room = max(16, math.ceil(len(lines) * 1.25))
        try:
            dropped = self._insert(lines, make_room=room)
        except SpoolFull:
            # Not even that fits: keep the newest lines in memory until a write succeeds.
            self._held = deque(lines[-MAX_HELD_LINES:])
            lost = max(0, len(lines) - MAX_HELD_LINES)
            self._unsaved_drops += lost
            return lost
        self._held.clear()
        # The WAL holds what we just wrote; moving it into the database (whose freed pages
        # take it) and truncating the WAL gives the space back for the next write.
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return dropped

    def _enter_full(self) -> None:
        self.disk_full = True
        with contextlib.suppress(OSError):
            self._reserve_path.unlink()
        log.error(
            "no space left on the disk of the spool %s: dropping the oldest telemetry lines to "
            "make room for new ones (counted in 'dropped') until space returns",
            self.path,
        )

    def _space_returned(self) -> bool:
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize >= 2 * max(self.reserve_bytes, 1 << 20)

    def _leave_full(self) -> None:
        self.disk_full = False
        self._make_reserve()
        log.warning("space is available again for the spool %s: no more lines dropped", self.path)

    def take(self, limit: int, *, after: int | None = None) -> Batch:
        """The oldest ``limit`` pending lines, without removing them (``ack`` does).

        ``after``: only rows with a larger id — the next batch while an earlier one's ack is
        still being written (ids only grow: AUTOINCREMENT).
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT id, line FROM telemetry WHERE id > ? ORDER BY id LIMIT ?",
                (-1 if after is None else after, limit),
            ).fetchall()
        return Batch(tuple(r[0] for r in rows), tuple(r[1] for r in rows))

    def ack(self, batch: Batch) -> int:
        """Remove a delivered batch; returns rows removed (fewer if the cap dropped some)."""
        if not batch.ids:
            return 0
        ids = batch.ids
        with self._tx() as db:
            if ids[-1] - ids[0] + 1 == len(ids):
                # The usual batch is a dense run of ids (AUTOINCREMENT never reuses one): a
                # range delete walks the primary key instead of a 5,000-id JSON list.
                removed = db.execute(
                    "DELETE FROM telemetry WHERE id BETWEEN ? AND ?", (ids[0], ids[-1])
                ).rowcount
            else:
                removed = db.execute(
                    "DELETE FROM telemetry WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(ids),),
                ).rowcount
            self._pending -= removed
        return removed

    def dead_letter(self, batch: Batch | Sequence[str], reason: str) -> int:
        """Move undeliverable lines out of the queue into ``telemetry_dead`` (capped).

        Accepts a taken ``Batch`` or bare lines that were never spooled. Returns the number
        of queued rows removed.
        """
        if not isinstance(batch, Batch):
            batch = Batch((), tuple(batch))
        if not batch.lines:
            return 0
        now = time.time()
        with self._tx() as db:
            removed = db.execute(
                "DELETE FROM telemetry WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(batch.ids),),
            ).rowcount
            self._pending -= removed
            db.executemany(
                "INSERT INTO telemetry_dead(line, reason, at) VALUES (?, ?, ?)",
                ((ln, reason, now) for ln in batch.lines),
            )
            self._bump(db, "telemetry_dead_total", len(batch.lines))
            db.execute(
                "DELETE FROM telemetry_dead WHERE id <= "
                "(SELECT id FROM telemetry_dead ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.max_dead,),
            )
        return removed

    def dead_lines(self, limit: int = 100) -> list[tuple[str, str]]:
        """Most recent dead-lettered lines with their reasons (for the CLI / dashboard)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT line, reason FROM telemetry_dead ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    # --- MQTT outbox --------------------------------------------------------------------

    def outbox_put(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        coalesce: bool = False,
    ) -> int:
        """Queue one message; ``coalesce`` first drops unsent messages to the same topic
        (a newer retained snapshot makes older ones worthless)."""
        with self._tx() as db:
            if coalesce:
                db.execute("DELETE FROM outbox WHERE topic = ?", (topic,))
            if retain:
                # unsent rows standing for the retained message keep the one they stood for
                db.execute(
                    "UPDATE outbox SET payload = "
                    "(SELECT payload FROM retained WHERE retained.topic = outbox.topic) "
                    "WHERE topic = ? AND payload = ?",
                    (topic, FROM_RETAINED),
                )
                db.execute(
                    "INSERT INTO retained(topic, payload) VALUES (?, ?) "
                    "ON CONFLICT(topic) DO UPDATE SET payload = excluded.payload",
                    (topic, payload),
                )
            cur = db.execute(
                "INSERT INTO outbox(topic, payload, qos, retain, created_at) VALUES (?,?,?,?,?)",
                (topic, payload, qos, int(retain), time.time()),
            )
            return int(cur.lastrowid or 0)

    @contextmanager
    def staged(
        self, bodies: Iterable[Mapping[str, Any]], keep: tuple[str, ...] = ()
    ) -> Iterator[Staged]:
        """``bodies`` encoded (``SequencedJson``) and written to a temporary table of the
        spool's connection, ``STAGE_CHUNK`` at a time, for ``outbox_put_sequenced`` inside this
        block; ``keep`` (at most 4 keys) as ``Staged`` says.

        Encoded ahead of the numbering transaction, as they must be (``SequencedJson``), but
        not all held at once: a farm's first inventory (an ``added`` event per miner) was 33 MB
        of encoded events at 50,000 miners beside its 19 MB snapshot. Each chunk is encoded
        without the spool's lock and inserted holding it only for that; the transaction copies
        the rows inside SQLite. The temporary table goes where SQLite keeps temporary files
        (a file, with the stock ``SQLITE_TEMP_STORE``; its pages cached like the spool's) and
        is emptied when the block ends."""
        if len(keep) > _STAGE_KEEP_MAX:
            raise ValueError(f"at most {_STAGE_KEEP_MAX} keys are kept apart")
        columns = ", ".join(["n", "body", *(f"k{i}" for i in range(len(keep)))])
        insert = (
            f"INSERT INTO temp.kuat_staged({columns}) VALUES ({', '.join('?' * (2 + len(keep)))})"
        )
        with self._stage_lock:
            with self._lock:
                self._db.execute(_STAGE_DDL)
                self._db.execute("DELETE FROM temp.kuat_staged")
            staged = Staged(0, keep)
            try:
                it = iter(bodies)
                while chunk := list(itertools.islice(it, STAGE_CHUNK)):
                    encoded = SequencedJson(chunk, keep)
                    at = staged.count
                    rows = [
                        (at + i, encoded.text(i), *(encoded.kept(i) if keep else ()))
                        for i in range(len(encoded))
                    ]
                    with self._tx() as db:
                        db.executemany(insert, rows)
                    staged.count += len(rows)
                # this frame lives on while the caller's block runs: nothing of the bodies kept
                del bodies, it, chunk
                yield staged
            finally:
                staged.open = False
                with self._lock:
                    self._db.execute("DELETE FROM temp.kuat_staged")
                    self._db.execute("PRAGMA shrink_memory")  # the pages cached for them

    def outbox_put_sequenced(
        self,
        seq_key: str,
        topic: str,
        bodies: Iterable[Mapping[str, Any]] | Staged,
        *,
        qos: int = 1,
        retained: tuple[str, Callable[[int], bytes | bytearray | FilePayload]] | None = None,
    ) -> list[int]:
        """Queue JSON messages, each given the next ``seq`` of the counter ``seq_key``.

        ``retained=(topic, build)`` also queues ``build(last_seq)`` as the retained message of
        ``topic`` (coalescing unsent older ones) — the snapshot that reflects these events.
        Numbering and queueing are one transaction: a crash can never leave a gap in ``seq``
        nor events without their snapshot. Returns the seqs assigned. ``bodies`` already
        ``staged`` (inside that block) are not encoded again.
        """
        if not isinstance(bodies, Staged):
            with self.staged(bodies) as staged:
                return self.outbox_put_sequenced(seq_key, topic, staged, qos=qos, retained=retained)
        reserving = False
        with self._tx() as db:
            last = self._bump(db, f"seq:{seq_key}", len(bodies))
            if last > self._reserved.get(seq_key, 0):
                # Reserve before committing: a seq is never issued beyond what the .seq file
                # (which outlives a damaged spool) says may have been issued.
                before = dict(self._reserved), dict(self._issued)
                self._reserved[seq_key] = last + SEQ_RESERVE
                self._issued[seq_key] = last - len(bodies)  # committed so far
                try:
                    self._write_sidecar()
                except BaseException:
                    self._reserved, self._issued = before
                    raise
                reserving = True
            first = last - len(bodies) + 1
            now = time.time()
            db.execute(
                "INSERT INTO outbox(topic, payload, qos, retain, created_at) "
                + bodies.select(f":topic, CAST({Staged.TEXT} AS BLOB), :qos, 0, :now"),
                {"topic": topic, "qos": qos, "now": now, "first": first},
            )
            if retained is not None:
                r_topic, build = retained
                db.execute("DELETE FROM outbox WHERE topic = ?", (r_topic,))
                snapshot = build(last)
                _put_retained(db, r_topic, snapshot)
                del snapshot  # the builder handed its buffer over
                # the outbox row refers to the stored snapshot, not a copy of it
                db.execute(
                    "INSERT INTO outbox(topic, payload, qos, retain, created_at) "
                    "VALUES (?, ?, ?, 1, ?)",
                    (r_topic, FROM_RETAINED, qos, now),
                )
        if reserving:
            self._confirm_issued(seq_key, last)
        return list(range(first, last + 1))

    def _confirm_issued(self, seq_key: str, last: int) -> None:
        """Record in the .seq file that the counter committed ``last``, so that a copy of the
        spool older than this commit is seen to be behind (see the module docstring)."""
        with self._lock:
            self._issued[seq_key] = max(self._issued.get(seq_key, 0), last)
            try:
                self._write_sidecar()
            except OSError as exc:  # committed already: the next reservation writes it again
                log.warning("register seq file %s not updated: %s", self._seq_path, exc)

    def outbox_requeue_retained(self, topic: str, *, qos: int = 1) -> bool:
        """Queue ``topic``'s retained message again at the end of the outbox, coalescing
        unsent copies of it; False (nothing changed) when it has none.

        A row that refers to it (``FROM_RETAINED``), as ``outbox_put_sequenced`` queues it: read
        out and put back with ``outbox_put``, a farm's inventory snapshot (19 MB at 50,000
        miners) was held as bytes and bound twice, and copied inside SQLite it was held twice
        in SQLite's memory (the register publisher requeues it on every new connection)."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM retained WHERE topic = ?", (topic,)).fetchone() is None:
                return False
            db.execute("DELETE FROM outbox WHERE topic = ?", (topic,))
            db.execute(
                "INSERT INTO outbox(topic, payload, qos, retain, created_at) "
                "VALUES (?, ?, ?, 1, ?)",
                (topic, FROM_RETAINED, qos, time.time()),
            )
        return True

    def last_seq(self, seq_key: str) -> int:
        with self._lock:
            return self._meta(f"seq:{seq_key}")

    def retained(self) -> dict[str, bytes]:
        """Last payload queued per retained topic (republished on every connect)."""
        with self._lock:
            rows = self._db.execute("SELECT topic, payload FROM retained").fetchall()
        return {r[0]: bytes(r[1]) for r in rows}

    def outbox_peek(self, *, after_id: int = 0, limit: int = 1000) -> list[OutboxMessage]:
        with self._lock:
            # A row referring to its retained message gets it by blob I/O, straight into the
            # bytes returned: read as a column (through _OUTBOX_PAYLOAD's subquery), SQLite made
            # two copies of a farm's 19 MB snapshot besides the one returned, the agent's peak
            # at each publish with a broker (bench/inventory_peak.py --send, issue 15).
            found = self._db.execute(
                "SELECT o.id, o.topic, o.payload, o.qos, o.retain, CASE WHEN o.payload = :ref "
                "THEN (SELECT r.rowid FROM retained r WHERE r.topic = o.topic) END FROM outbox o "
                "WHERE o.id > :after ORDER BY o.id LIMIT :limit",
                {"ref": FROM_RETAINED, "after": after_id, "limit": limit},
            ).fetchall()
            rows = [
                (*r[:2], self._retained_blob(r[5]) if r[2] == FROM_RETAINED else r[2], *r[3:5])
                for r in found
            ]
        gone = [r[0] for r in rows if r[2] is None]
        for message_id in gone:  # its retained message is gone: nothing to send, not a stall
            self.outbox_dead_letter(message_id, "its retained message is no longer stored")
        return [
            OutboxMessage(r[0], r[1], bytes(r[2]), r[3], bool(r[4]))
            for r in rows
            if r[2] is not None
        ]

    def _retained_blob(self, rowid: int | None) -> bytes | None:
        if rowid is None:
            return None
        with self._db.blobopen("retained", "payload", rowid, readonly=True) as blob:
            return blob.read()

    def outbox_ack(self, message_id: int) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM outbox WHERE id = ?", (message_id,)).rowcount > 0

    def outbox_dead_letter(self, message_id: int, reason: str) -> bool:
        with self._tx() as db:
            row = db.execute(
                f"SELECT o.topic, {_OUTBOX_PAYLOAD} FROM outbox o WHERE o.id = :id",
                {"ref": FROM_RETAINED, "id": message_id},
            ).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM outbox WHERE id = ?", (message_id,))
            db.execute(
                "INSERT INTO outbox_dead(topic, payload, reason, at) VALUES (?, ?, ?, ?)",
                (row[0], b"" if row[1] is None else row[1], reason, time.time()),
            )
            return True

    # --- stats --------------------------------------------------------------------------

    def counts(self) -> SpoolStats:
        with self._lock:
            db = self._db
            return SpoolStats(
                pending=self._pending,
                dead=db.execute("SELECT COUNT(*) FROM telemetry_dead").fetchone()[0],
                dropped=self._meta("telemetry_dropped") + self._unsaved_drops,
                outbox=db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0],
                outbox_dead=db.execute("SELECT COUNT(*) FROM outbox_dead").fetchone()[0],
                quarantined=len(quarantined_files(self.path)),
                disk_full=self.disk_full,
            )


# --- quarantined files: inspect and salvage ------------------------------------------------

# What a salvage can read back, per table: the columns, in the order inserted again.
_SALVAGE_TABLES: dict[str, tuple[str, ...]] = {
    "telemetry": ("line",),
    "outbox": ("topic", "payload", "qos", "retain", "created_at"),
    "retained": ("topic", "payload"),
    "register_history": ("seq_key", "seq", "id", "type", "miner_id", "at", "body"),
    "meta": ("key", "value"),
}
_CHUNK = 2048


@dataclass(slots=True)
class SalvageReport:
    """What could be read from a damaged file (``rows``) and what was unreadable."""

    path: Path
    readable: bool  # SQLite could open it as a database at all
    problems: list[str]
    rows: dict[str, list[tuple[Any, ...]]]
    unreadable: dict[str, int]  # table -> key ranges (or rows) that could not be read

    def counts(self) -> dict[str, int]:
        return {t: len(r) for t, r in self.rows.items()}


def read_damaged(path: Path) -> SalvageReport:
    """Every row of the spool's tables that can still be read from ``path``.

    Works on a copy (the damaged file is evidence and stays as it is). A truncated file's
    header still claims its old length, which makes SQLite refuse even the schema; the copy's
    page count is set to what is really there. Rows are then read by key range; a range SQLite
    cannot read is halved until the damaged rows are isolated, so a bad page costs only the
    rows on it.
    """
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".salvage-") as tmp:
        copy = Path(tmp) / "copy.db"
        shutil.copyfile(path, copy)
        if Path(f"{path}-wal").exists():
            shutil.copyfile(f"{path}-wal", f"{copy}-wal")
        _fix_page_count(copy)
        report = _read_copy(copy)
    report.path = path
    return report


def _fix_page_count(path: Path) -> None:
    with path.open("r+b") as f:
        header = f.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
            return
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        if page_size < 512:
            return
        pages = path.stat().st_size // page_size
        if int.from_bytes(header[28:32], "big") > pages:
            f.seek(28)
            f.write(pages.to_bytes(4, "big"))


def _read_copy(path: Path) -> SalvageReport:
    report = SalvageReport(path, False, [], {}, {})
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        report.problems.append(f"cannot open: {exc}")
        return report
    try:
        try:
            tables = {
                r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            report.readable = True
        except sqlite3.DatabaseError as exc:
            report.problems.append(str(exc))
            return report
        try:
            report.problems += [
                str(r[0]) for r in db.execute("PRAGMA quick_check(20)").fetchall() if r[0] != "ok"
            ]
        except sqlite3.DatabaseError as exc:
            report.problems.append(str(exc))
        for table, columns in _SALVAGE_TABLES.items():
            if table in tables:
                rows, bad = _read_table(db, table, columns)
                report.rows[table] = rows
                if bad:
                    report.unreadable[table] = bad
    finally:
        db.close()
    return report


def _read_table(
    db: sqlite3.Connection, table: str, columns: tuple[str, ...]
) -> tuple[list[tuple[Any, ...]], int]:
    cols = ", ".join(columns)
    try:
        return db.execute(f"SELECT {cols} FROM {table}").fetchall(), 0
    except sqlite3.DatabaseError:
        pass
    # Tables with a rowid: walk it in ranges. (register_history is WITHOUT ROWID; it and meta
    # fall back to what a full scan gave before failing.)
    try:
        lo, hi = db.execute(f"SELECT min(rowid), max(rowid) FROM {table}").fetchone()
    except sqlite3.DatabaseError:
        lo, hi = None, None
    if lo is None or hi is None:
        try:
            seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        except sqlite3.DatabaseError:
            seq = None
        if seq is None:
            return _partial_scan(db, table, cols), 1
        lo, hi = 1, int(seq[0])
    rows: list[tuple[Any, ...]] = []
    bad = 0
    ranges = [(a, min(a + _CHUNK - 1, hi)) for a in range(lo, hi + 1, _CHUNK)]
    while ranges:
        a, b = ranges.pop(0)
        try:
            rows += db.execute(
                f"SELECT {cols} FROM {table} WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
                (a, b),
            ).fetchall()
        except sqlite3.DatabaseError:
            if a == b:
                bad += 1
            else:
                mid = (a + b) // 2
                ranges[:0] = [(a, mid), (mid + 1, b)]
    return rows, bad


def _partial_scan(db: sqlite3.Connection, table: str, cols: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    cur = db.execute(f"SELECT {cols} FROM {table}")
    while True:
        try:
            row = cur.fetchone()
        except sqlite3.DatabaseError:
            return rows
        if row is None:
            return rows
        rows.append(row)


def salvage_into(report: SalvageReport, spool: Spool) -> dict[str, int]:
    """Put what ``report`` read back into the live ``spool``; returns rows restored per table.

    Telemetry lines are queued again (the server overwrites points it already has: the same
    series and time). Outbox messages are queued again in their order (receivers deduplicate
    events by ``id``). Register history rows are added where missing. A register counter in the
    damaged file above the live one raises the live one, so ``seq`` never goes back.
    """
    done: dict[str, int] = {}
    lines = [r[0] for r in report.rows.get("telemetry", []) if isinstance(r[0], str)]
    for i in range(0, len(lines), 10_000):
        spool.put_lines(lines[i : i + 10_000])
    done["telemetry"] = len(lines)
    history = report.rows.get("register_history", [])
    if history:
        from kuat.uplink.register_history import HISTORY_DDL

        db, lock = spool.shared_connection()
        with lock:
            db.executescript(HISTORY_DDL)  # idempotent; commits nothing of ours
    with spool.transaction() as db:
        # a row standing for its topic's retained message (FROM_RETAINED) gets the one the
        # damaged file held; none readable: the row is not restored
        held = {r[0]: r[1] for r in report.rows.get("retained", []) if len(r) == 2}
        outbox = [
            (r[0], held[r[0]], *r[2:]) if r[1] == FROM_RETAINED else r
            for r in report.rows.get("outbox", [])
            if r[1] != FROM_RETAINED or held.get(r[0]) is not None
        ]
        db.executemany(
            "INSERT INTO outbox(topic, payload, qos, retain, created_at) VALUES (?,?,?,?,?)",
            outbox,
        )
        done["outbox"] = len(outbox)
        if history:
            done["register_history"] = db.executemany(
                "INSERT OR IGNORE INTO register_history"
                "(seq_key, seq, id, type, miner_id, at, body) VALUES (?,?,?,?,?,?,?)",
                history,
            ).rowcount
        raised = 0
        for key, value in report.rows.get("meta", []):
            if isinstance(key, str) and key.startswith("seq:") and isinstance(value, int):
                raised += db.execute(
                    "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                    "SET value = excluded.value WHERE excluded.value > meta.value",
                    (key, value),
                ).rowcount
        done["seq_counters_raised"] = raised
    return done
