"""Durable register history: every inventory event kuat emits, kept after the broker has it.

The outbox forgets an event once its PUBACK arrives, but the owner's include/exclude filing
(``kuat register export --since DATE``) needs the removals of the whole period, delivered or
not. So each event published on ``{prefix}/{owner_bin}/{site}/events`` is also appended here,
exactly as published (with ``seq`` and ``id``).

Storage: the table ``register_history`` lives in the spool's SQLite file and its rows are
inserted on the spool's connection **inside** ``Spool.outbox_put_sequenced``'s transaction (the
publisher does it from the ``retained`` callback, which that method runs inside the
transaction). A ``kill -9`` therefore leaves an event in both the outbox and the history or in
neither; a failed history insert rolls the outbox insert and the ``seq`` counter back too.
(Separate database files could not give that: SQLite transactions over ATTACHed files are not
atomic in WAL mode.)

The table is append-only (an UPDATE trigger refuses changes); rows leave only by age, when
their event time is older than the retention (default 400 days, so a yearly filing plus slack
works). ``register_history_meta.history_from`` records from when on the history is complete for
a site, so an export over a longer period can warn instead of silently missing removals.

Reading (``HistoryReader``) uses its own connection and plain SELECTs; the export asks SQLite
for the per-miner first/last membership event of the period (window functions over the
``(seq_key, at)`` index) rather than loading the table.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kuat.uplink.inventory import iso
from kuat.uplink.spool import Spool, Staged

__all__ = [
    "DEFAULT_RETENTION",
    "HistoryReader",
    "Membership",
    "RegisterHistory",
]

DEFAULT_RETENTION = timedelta(days=400)

# ``at`` is the event's own time as published: ISO 8601 UTC, whole seconds, "Z" (uplink.inventory
# .iso), which sorts as text in time order, so range queries use the index and an inspector can
# read the table with the sqlite3 shell.
HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS register_history (
    seq_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('added', 'removed', 'moved', 'changed')),
    miner_id TEXT NOT NULL,
    at TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (seq_key, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS register_history_at ON register_history(seq_key, at);
CREATE TABLE IF NOT EXISTS register_history_meta (
    seq_key TEXT PRIMARY KEY, history_from TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS register_history_append_only
    BEFORE UPDATE ON register_history
    BEGIN SELECT RAISE(ABORT, 'register_history is append-only'); END;
"""


# what record_in_transaction's events keep apart (Spool.staged keep=), the table's columns
HISTORY_KEYS = ("id", "type", "miner_id", "at")
_COLUMNS = "register_history(seq_key, seq, id, type, miner_id, at, body)"
_INSERT_INTO = f"INTO {_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_INTO_SELECT = f"INTO {_COLUMNS} "


def _body_json(body: dict[str, Any]) -> str:
    # The same serialisation as the outbox (uplink.spool), so history and message are one text.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


class RegisterHistory:
    """The writer side; owned by ``RegisterPublisher`` (one per site)."""

    def __init__(
        self,
        spool: Spool,
        *,
        seq_key: str,
        events_topic: str,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        if retention <= timedelta(0):
            raise ValueError("register history retention must be positive")
        self.seq_key = seq_key
        self.events_topic = events_topic
        self.retention = retention
        self._db, self._lock = spool.shared_connection()
        with self._lock:
            # Every statement is IF NOT EXISTS: idempotent, so autocommit per statement is fine
            # (executescript would commit an open transaction anyway).
            self._db.executescript(HISTORY_DDL)
        with spool.transaction() as db:
            self._backfill(db)

    def bodies(self, first: int, last: int, limit: int) -> list[bytes]:
        """The events ``first``..``last`` still kept, as published, in seq order (at most
        ``limit``): what a register's replay request gets (kuat.uplink.register_replay)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM register_history WHERE seq_key = ? AND seq BETWEEN ? AND ? "
                "ORDER BY seq LIMIT ?",
                (self.seq_key, first, last, limit),
            ).fetchall()
        return [r[0].encode() for r in rows]

    def _backfill(self, db: sqlite3.Connection) -> None:
        """On upgrade, events still in the outbox predate the history table: copy them once, so
        a removal not yet delivered is not lost to the export. Idempotent (primary key)."""
        rows = db.execute(
            "SELECT payload FROM outbox WHERE topic = ? ORDER BY id", (self.events_topic,)
        ).fetchall()
        bodies = []
        for (payload,) in rows:
            try:
                body = json.loads(payload)
            except ValueError:
                continue
            if isinstance(body, dict) and isinstance(body.get("seq"), int):
                bodies.append(body)
        db.executemany(
            f"INSERT OR IGNORE {_INSERT_INTO}",
            (
                (self.seq_key, b["seq"], *(b[k] for k in HISTORY_KEYS), _body_json(b))
                for b in bodies
            ),
        )

    def record_in_transaction(self, events: Staged, seqs: Sequence[int], now: datetime) -> None:
        """Append ``events`` (numbered ``seqs``; staged with ``keep=HISTORY_KEYS``) and prune
        by age.

        Must run inside the spool transaction that queues the same events (see the module
        docstring); it does not begin or commit anything itself.
        """
        db = self._db
        assert db.in_transaction, "register history must be written inside the outbox tx"
        if events.keep != HISTORY_KEYS:
            raise ValueError(f"register history events are staged keeping {HISTORY_KEYS}")
        now_text = iso(now)
        # The first write of a site starts its history: from then on nothing is missed.
        db.execute(
            "INSERT OR IGNORE INTO register_history_meta(seq_key, history_from) VALUES (?, ?)",
            (self.seq_key, now_text),
        )
        if seqs:
            # the outbox's text, copied inside SQLite from the staged rows
            db.execute(
                f"INSERT {_INSERT_INTO_SELECT}"
                + events.select(f":key, :first + n, {events.kept_columns}, {Staged.TEXT}"),
                {"key": self.seq_key, "first": seqs[0]},
            )
        cutoff = iso(now - self.retention)
        pruned = db.execute(
            "DELETE FROM register_history WHERE seq_key = ? AND at < ?", (self.seq_key, cutoff)
        ).rowcount
        if pruned:
            # Removals before the cutoff are gone: an older --since must be flagged.
            db.execute(
                "UPDATE register_history_meta SET history_from = max(history_from, ?) "
                "WHERE seq_key = ?",
                (cutoff, self.seq_key),
            )


# --- reading ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Membership:
    """A miner's added/removed events within a period, reduced to what a filing needs."""

    miner_id: str
    first_type: str  # "added" or "removed": the first such event in the period
    last: dict[str, Any]  # the last such event, as published (``miner`` = last known facts)


class HistoryReader:
    """Read-only queries for ``kuat register export``; safe while the agent writes."""

    def __init__(self, path: Path, seq_key: str) -> None:
        self.seq_key = seq_key
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA busy_timeout=5000")
        self.available = (
            self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'register_history'"
            ).fetchone()
            is not None
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def history_from(self) -> datetime | None:
        """From when on the history of this site is complete; None if it has none."""
        if not self.available:
            return None
        row = self._db.execute(
            "SELECT history_from FROM register_history_meta WHERE seq_key = ?", (self.seq_key,)
        ).fetchone()
        return datetime.fromisoformat(row[0].replace("Z", "+00:00")) if row else None

    def memberships(self, start: datetime | None) -> list[Membership]:
        """Per miner with an added/removed event at or after ``start`` (None: all kept): the
        type of its first such event and its last event, ordered by miner id."""
        if not self.available:
            return []
        rows = self._db.execute(
            """
            SELECT miner_id, first_type, body FROM (
                SELECT miner_id, body,
                       FIRST_VALUE(type) OVER (PARTITION BY miner_id ORDER BY seq) AS first_type,
                       ROW_NUMBER() OVER (PARTITION BY miner_id ORDER BY seq DESC) AS rn
                FROM register_history
                WHERE seq_key = ? AND at >= ? AND type IN ('added', 'removed')
            ) WHERE rn = 1 ORDER BY miner_id
            """,
            (self.seq_key, iso(start) if start else ""),
        ).fetchall()
        return [Membership(r[0], r[1], json.loads(r[2])) for r in rows]

    def updates(self, start: datetime | None) -> list[dict[str, Any]]:
        """``moved`` and ``changed`` events at or after ``start``, in seq order."""
        if not self.available:
            return []
        rows = self._db.execute(
            "SELECT body FROM register_history "
            "WHERE seq_key = ? AND at >= ? AND type IN ('moved', 'changed') ORDER BY seq",
            (self.seq_key, iso(start) if start else ""),
        ).fetchall()
        return [json.loads(r[0]) for r in rows]
