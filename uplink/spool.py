"""The durable queue between the agent and every server: telemetry lines and MQTT messages.

SQLite in WAL mode with ``synchronous=FULL``: every committed ``put_*`` is on disk (fsync)
before the call returns, so a ``kill -9`` or a power cut loses nothing that was accepted.
Rows leave the spool only when a server has accepted them (``ack``) or they were judged
undeliverable (``dead_letter``, kept for inspection).

Telemetry is capped at ``max_rows``: a full spool drops the OLDEST lines (newest data is the
most useful after a long outage), counts them in ``dropped`` (persisted), logs a warning and
returns the number from ``put_lines`` so the agent can raise an alert.

Thread safety: one ``Spool`` may be shared by threads (the asyncio loop, the influx writer's
worker thread, paho's network thread); a lock serialises access to its single connection.
Every call is short but does disk I/O; from a coroutine call it via ``asyncio.to_thread`` when
batches are large. Several processes must not share one spool file.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Batch", "OutboxMessage", "Spool", "SpoolStats"]

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


class Spool:
    """SQLite-backed durable queue. See the module docstring for guarantees and threading."""

    def __init__(self, path: Path, *, max_rows: int = 5_000_000, max_dead: int = 100_000) -> None:
        if max_rows < 1:
            raise ValueError("max_rows must be positive")
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_dead = max_dead
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # isolation_level=None: explicit BEGIN/COMMIT, so a batch is one fsync, not one per row.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._pending = self._db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0]

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
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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
        """Append lines durably; returns how many OLDEST lines the cap dropped (usually 0)."""
        if not lines:
            return 0
        with self._tx() as db:
            db.executemany("INSERT INTO telemetry(line) VALUES (?)", ((ln,) for ln in lines))
            self._pending += len(lines)
            excess = self._pending - self.max_rows
            dropped = total = 0
            if excess > 0:
                cut = db.execute(
                    "SELECT id FROM telemetry ORDER BY id LIMIT 1 OFFSET ?", (excess - 1,)
                ).fetchone()[0]
                dropped = db.execute("DELETE FROM telemetry WHERE id <= ?", (cut,)).rowcount
                self._pending -= dropped
                total = self._bump(db, "telemetry_dropped", dropped)
        if dropped:
            # DEBUG: the owner (the agent) reports drops to the operator, rate-limited.
            log.debug(
                "telemetry spool full (%d lines): dropped the %d oldest lines (%d in total)",
                self.max_rows,
                dropped,
                total,
            )
        return dropped

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

    def outbox_put_sequenced(
        self,
        seq_key: str,
        topic: str,
        bodies: Sequence[dict],
        *,
        qos: int = 1,
        retained: tuple[str, Callable[[int], bytes]] | None = None,
    ) -> list[int]:
        """Queue JSON messages, each given the next ``seq`` of the counter ``seq_key``.

        ``retained=(topic, build)`` also queues ``build(last_seq)`` as the retained message of
        ``topic`` (coalescing unsent older ones) — the snapshot that reflects these events.
        Numbering and queueing are one transaction: a crash can never leave a gap in ``seq``
        nor events without their snapshot. Returns the seqs assigned.
        """
        with self._tx() as db:
            last = self._bump(db, f"seq:{seq_key}", len(bodies))
            first = last - len(bodies) + 1
            now = time.time()
            seqs = list(range(first, last + 1))
            db.executemany(
                "INSERT INTO outbox(topic, payload, qos, retain, created_at) "
                "VALUES (?, ?, ?, 0, ?)",
                (
                    (
                        topic,
                        json.dumps(
                            {**b, "seq": s}, ensure_ascii=False, separators=(",", ":")
                        ).encode(),
                        qos,
                        now,
                    )
                    for b, s in zip(bodies, seqs, strict=True)
                ),
            )
            if retained is not None:
                r_topic, build = retained
                payload = build(last)
                db.execute("DELETE FROM outbox WHERE topic = ?", (r_topic,))
                db.execute(
                    "INSERT INTO retained(topic, payload) VALUES (?, ?) "
                    "ON CONFLICT(topic) DO UPDATE SET payload = excluded.payload",
                    (r_topic, payload),
                )
                db.execute(
                    "INSERT INTO outbox(topic, payload, qos, retain, created_at) "
                    "VALUES (?, ?, ?, 1, ?)",
                    (r_topic, payload, qos, now),
                )
        return seqs

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
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? "
                "ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [OutboxMessage(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows]

    def outbox_ack(self, message_id: int) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM outbox WHERE id = ?", (message_id,)).rowcount > 0

    def outbox_dead_letter(self, message_id: int, reason: str) -> bool:
        with self._tx() as db:
            row = db.execute(
                "SELECT topic, payload FROM outbox WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                return False
            db.execute("DELETE FROM outbox WHERE id = ?", (message_id,))
            db.execute(
                "INSERT INTO outbox_dead(topic, payload, reason, at) VALUES (?, ?, ?, ?)",
                (row[0], row[1], reason, time.time()),
            )
            return True

    # --- stats --------------------------------------------------------------------------

    def counts(self) -> SpoolStats:
        with self._lock:
            db = self._db
            return SpoolStats(
                pending=self._pending,
                dead=db.execute("SELECT COUNT(*) FROM telemetry_dead").fetchone()[0],
                dropped=self._meta("telemetry_dropped"),
                outbox=db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0],
                outbox_dead=db.execute("SELECT COUNT(*) FROM outbox_dead").fetchone()[0],
            )
