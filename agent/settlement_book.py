"""The settlement book: each reconciled hour of the commercial meter, kept for the reports.

The reconciler (``agent.reconcile``) reads the commercial meter's load profile after each
Astana hour closes; the figure it reads is the one the energy company settles on. The book
keeps it — with kuat's own figure and the verdict — in ``settlement.db`` (SQLite, WAL) under
the state directory, so ``kuat report hourly`` and ``kuat report monthly`` can show the meter's
figure as the authority for every hour it covers, long after the agent read it. One row per
meter and hour; a later check of the same hour replaces the earlier one.

One process writes (the agent); the reports open the file to read while it runs.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["SettledHour", "SettlementBook"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settled_hour (
    meter TEXT NOT NULL,              -- the commercial meter (config name)
    hour_start INTEGER NOT NULL,      -- UTC epoch seconds of the Astana hour's start
    meter_kwh REAL NOT NULL,          -- the meter's load profile: the settlement figure
    kuat_kwh REAL,                    -- kuat's own (NULL: kuat did not meter the whole hour)
    difference_kwh REAL,              -- kuat - meter
    tolerance_kwh REAL NOT NULL,
    status TEXT NOT NULL,             -- ok, mismatch, incomplete
    ledger_meter TEXT NOT NULL,       -- whose ledger kuat's figure is from
    checked_at REAL NOT NULL,
    PRIMARY KEY (meter, hour_start)
);
"""


@dataclass(frozen=True, slots=True)
class SettledHour:
    meter: str
    start_utc: datetime
    meter_kwh: float
    kuat_kwh: float | None
    difference_kwh: float | None
    tolerance_kwh: float
    status: str
    ledger_meter: str


class SettlementBook:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SettlementBook({str(self.path)!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SettlementBook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, hour: SettledHour, checked_at: datetime) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO settled_hour VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    hour.meter,
                    int(hour.start_utc.timestamp()),
                    hour.meter_kwh,
                    hour.kuat_kwh,
                    hour.difference_kwh,
                    hour.tolerance_kwh,
                    hour.status,
                    hour.ledger_meter,
                    checked_at.timestamp(),
                ),
            )

    def hours(self, meter: str, start: datetime, end: datetime) -> dict[datetime, SettledHour]:
        """The settled hours of ``meter`` starting in [start, end), by their UTC start."""
        with self._lock:
            rows = self._db.execute(
                "SELECT meter, hour_start, meter_kwh, kuat_kwh, difference_kwh, tolerance_kwh, "
                "status, ledger_meter FROM settled_hour "
                "WHERE meter = ? AND hour_start >= ? AND hour_start < ? ORDER BY hour_start",
                (meter, int(start.timestamp()), int(end.timestamp())),
            ).fetchall()
        return {h.start_utc: h for h in map(_hour, rows)}


def _hour(row: tuple[Any, ...]) -> SettledHour:
    return SettledHour(
        row[0],
        datetime.fromtimestamp(row[1], UTC),
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
    )
