"""The energy ledger: auditable kWh per meter, per Astana hour and per energy source.

The digital-mining fee is charged per kWh and its rate depends on the energy source, so the
monthly figures must come from the meters' own import counters, not from integrated power.
The ledger keeps, in ``ledger.db`` (SQLite, WAL) under the state directory, *pieces*: runs of
readings of one meter within one Astana hour, from one source, with a counter that never went
backwards. A piece stores its first and last counter value and time, the number of samples and
the peak power and demand seen, so a year of one-second readings stays a few thousand rows.

How an hour's kWh is computed (documented choice, tested):

* inside a piece: ``last_kwh - first_kwh``, booked to the piece's hour and source;
* between two consecutive pieces of a meter (the last reading of one hour and the first of the
  next, or either side of an outage or a restart): the counter difference is spread linearly in
  time over the gap, hour by hour, and booked to the source of the later piece (the source in
  effect when the energy was counted). The counter makes the total exact; only its split between
  the hours of the gap is an estimate, reported as ``interpolated_kwh``;
* a counter that goes backwards (meter reset or replaced) starts a new piece marked
  ``after_reset``: the energy between the last reading before and the first after is unknown and
  not counted (at most one polling interval); the hour reports ``resets`` so an auditor sees it.

Losing the last few updates in a power cut loses no energy: the next reading's counter carries
it, and the bridge rule books it. That is why the ledger runs with ``synchronous=NORMAL`` (no
fsync per reading) — ``record`` is called every few seconds per meter and must stay cheap: on the
usual path it is one UPDATE of one row.

Threading: an ``EnergyLedger`` may be shared by threads (a lock guards its connection), but one
process owns the writing — the agent. Other processes (``kuat report``) may open the same file
to read at any time: WAL lets them read while the agent writes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from kuat.collectors.readings import MeterReading
from kuat.quota.clock import ASTANA, HOUR, as_utc, hour_bounds, hour_of

__all__ = ["DayRow", "EnergyLedger", "HourRow", "month_bounds"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS piece (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    meter TEXT NOT NULL,
    hour_start INTEGER NOT NULL,      -- UTC epoch seconds of the Astana hour's start
    source TEXT NOT NULL,
    first_at REAL NOT NULL, first_kwh REAL NOT NULL,
    last_at REAL NOT NULL, last_kwh REAL NOT NULL,
    samples INTEGER NOT NULL,
    after_reset INTEGER NOT NULL,     -- 1: the counter went backwards just before this piece
    peak_p_kw REAL,                   -- highest instantaneous power seen in the piece
    peak_demand_kw REAL               -- highest demand (the meter's own interval) seen
);
CREATE INDEX IF NOT EXISTS piece_meter_first ON piece(meter, first_at);
CREATE INDEX IF NOT EXISTS piece_meter_last ON piece(meter, last_at);
"""


@dataclass(frozen=True, slots=True)
class _Piece:
    id: int
    meter: str
    hour_start: int
    source: str
    first_at: float
    first_kwh: float
    last_at: float
    last_kwh: float
    samples: int
    after_reset: bool
    peak_p_kw: float | None
    peak_demand_kw: float | None


_COLUMNS = (
    "id, meter, hour_start, source, first_at, first_kwh, last_at, last_kwh, samples, "
    "after_reset, peak_p_kw, peak_demand_kw"
)


def _piece(row: tuple[Any, ...]) -> _Piece:
    # a row of _COLUMNS, in that order; SQLite keeps after_reset as 0/1
    id_, meter, hour, source, first_at, first_kwh, last_at, last_kwh, samples = row[:9]
    after_reset, peak_p_kw, peak_demand_kw = row[9:12]
    return _Piece(
        id_,
        meter,
        hour,
        source,
        first_at,
        first_kwh,
        last_at,
        last_kwh,
        samples,
        bool(after_reset),
        peak_p_kw,
        peak_demand_kw,
    )


@dataclass(frozen=True, slots=True)
class HourRow:
    """Energy of one meter in one Astana hour from one source."""

    meter: str
    source: str
    day: date  # Astana operating date
    hour_ending: int  # 1..24
    start_utc: datetime
    kwh: float
    interpolated_kwh: float  # the part spread over a gap between readings (see module doc)
    samples: int
    resets: int
    peak_p_kw: float | None
    peak_demand_kw: float | None


@dataclass(frozen=True, slots=True)
class DayRow:
    day: date
    meter: str
    source: str
    kwh: float


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """UTC start and end of an Astana calendar month given as ``YYYY-MM``."""
    try:
        first = date.fromisoformat(f"{month}-01")
    except ValueError:
        raise ValueError(f"month must be YYYY-MM, got {month!r}") from None
    nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return hour_bounds(first, 1)[0], hour_bounds(nxt, 1)[0]


def _epoch(t: datetime) -> float:
    return as_utc(t).timestamp()


def _hour_start(epoch: float) -> int:
    day, he = hour_of(datetime.fromtimestamp(epoch, UTC))
    return int(hour_bounds(day, he)[0].timestamp())


def _max(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


class EnergyLedger:
    """See the module docstring: durable per-hour kWh from meter import counters."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._open: dict[str, _Piece] = {}  # meter -> its newest piece (the one being extended)

    def __repr__(self) -> str:
        return f"EnergyLedger({str(self.path)!r})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> EnergyLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ------------------------------------------------------------------------

    def _latest(self, meter: str) -> _Piece | None:
        piece = self._open.get(meter)
        if piece is None:
            # After a restart the newest stored piece is the one the next reading bridges from.
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM piece WHERE meter = ? ORDER BY last_at DESC, id DESC "
                "LIMIT 1",
                (meter,),
            ).fetchone()
            if row is not None:
                piece = self._open[meter] = _piece(row)
        return piece

    def record(self, meter: str, reading: MeterReading, source: str = "grid") -> bool:
        """Book one reading; False when it carries nothing to book (no import counter, or not
        newer than the last reading booked for this meter)."""
        kwh = reading.import_kwh
        if kwh is None:
            return False
        at = _epoch(reading.taken_at)
        hour = _hour_start(at)
        source = str(source)
        with self._lock:
            last = self._latest(meter)
            if last is not None and at <= last.last_at:
                return False  # a repeat or an out-of-order reading adds no information
            went_back = last is not None and kwh < last.last_kwh
            if (
                last is not None
                and not went_back
                and last.hour_start == hour
                and last.source == source
            ):
                piece = _Piece(
                    last.id,
                    meter,
                    hour,
                    source,
                    last.first_at,
                    last.first_kwh,
                    at,
                    kwh,
                    last.samples + 1,
                    last.after_reset,
                    _max(last.peak_p_kw, reading.p_kw),
                    _max(last.peak_demand_kw, reading.demand_kw),
                )
                self._db.execute(
                    "UPDATE piece SET last_at = ?, last_kwh = ?, samples = ?, peak_p_kw = ?, "
                    "peak_demand_kw = ? WHERE id = ?",
                    (at, kwh, piece.samples, piece.peak_p_kw, piece.peak_demand_kw, piece.id),
                )
            else:
                cur = self._db.execute(
                    "INSERT INTO piece(meter, hour_start, source, first_at, first_kwh, last_at, "
                    "last_kwh, samples, after_reset, peak_p_kw, peak_demand_kw) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                    (
                        meter,
                        hour,
                        source,
                        at,
                        kwh,
                        at,
                        kwh,
                        int(went_back),
                        reading.p_kw,
                        reading.demand_kw,
                    ),
                )
                piece = _Piece(
                    int(cur.lastrowid or 0),
                    meter,
                    hour,
                    source,
                    at,
                    kwh,
                    at,
                    kwh,
                    1,
                    went_back,
                    reading.p_kw,
                    reading.demand_kw,
                )
            self._open[meter] = piece
        return True

    # --- reading ------------------------------------------------------------------------

    def meters(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT meter FROM piece ORDER BY meter").fetchall()
        return [r[0] for r in rows]

    def _pieces(self, meter: str, start: float, end: float) -> list[_Piece]:
        """Pieces touching [start, end) plus the neighbours either side, whose bridges may
        reach into the window."""
        with self._lock:
            db = self._db
            inside = db.execute(
                f"SELECT {_COLUMNS} FROM piece WHERE meter = ? AND last_at >= ? AND first_at < ?",
                (meter, start, end),
            ).fetchall()
            before = db.execute(
                f"SELECT {_COLUMNS} FROM piece WHERE meter = ? AND last_at < ? "
                "ORDER BY last_at DESC, id DESC LIMIT 1",
                (meter, start),
            ).fetchall()
            after = db.execute(
                f"SELECT {_COLUMNS} FROM piece WHERE meter = ? AND first_at >= ? "
                "ORDER BY first_at, id LIMIT 1",
                (meter, end),
            ).fetchall()
        by_id = {r[0]: _piece(r) for r in (*before, *inside, *after)}
        return sorted(by_id.values(), key=lambda p: (p.first_at, p.id))

    def hourly(self, meter: str, start_utc: datetime, end_utc: datetime) -> list[HourRow]:
        """Rows for the Astana hours starting in [start_utc, end_utc), in time order, one per
        hour and source that has any energy or any reading."""
        start, end = _epoch(start_utc), _epoch(end_utc)
        acc: dict[tuple[int, str], _Acc] = defaultdict(_Acc)
        for hour, source, kwh, interpolated, piece in _contributions(
            self._pieces(meter, start, end)
        ):
            if not start <= hour < end:
                continue
            a = acc[(hour, source)]
            a.kwh += kwh
            a.interpolated += interpolated
            if piece is not None:
                a.samples += piece.samples
                a.resets += int(piece.after_reset)
                a.peak_p_kw = _max(a.peak_p_kw, piece.peak_p_kw)
                a.peak_demand_kw = _max(a.peak_demand_kw, piece.peak_demand_kw)
        rows = []
        for (hour, source), a in sorted(acc.items()):
            start_dt = datetime.fromtimestamp(hour, UTC)
            day, he = hour_of(start_dt)
            rows.append(
                HourRow(
                    meter,
                    source,
                    day,
                    he,
                    start_dt,
                    round(a.kwh, 6),
                    round(a.interpolated, 6),
                    a.samples,
                    a.resets,
                    a.peak_p_kw,
                    a.peak_demand_kw,
                )
            )
        return rows

    def hour_kwh(self, meter: str, start_utc: datetime) -> tuple[float | None, bool]:
        """kWh of ``meter`` in the Astana hour starting at ``start_utc`` (every source), and
        whether the ledger covers the whole hour: a reading at or before its start and one at
        or after its end, so the bridge rule makes the total exact. An hour the agent only saw
        part of (started, or the meter came back, mid-hour) is not a figure to settle on."""
        start = _epoch(start_utc)
        end = start + HOUR.total_seconds()
        rows = self.hourly(meter, start_utc, datetime.fromtimestamp(end, UTC))
        with self._lock:
            before = self._db.execute(
                "SELECT 1 FROM piece WHERE meter = ? AND first_at <= ? LIMIT 1", (meter, start)
            ).fetchone()
            after = self._db.execute(
                "SELECT 1 FROM piece WHERE meter = ? AND last_at >= ? LIMIT 1", (meter, end)
            ).fetchone()
            # a reset inside the hour loses up to one polling interval: not exact either
            reset = self._db.execute(
                "SELECT 1 FROM piece WHERE meter = ? AND after_reset = 1 AND first_at > ? "
                "AND first_at <= ? LIMIT 1",
                (meter, start, end),
            ).fetchone()
        if not rows:
            return None, False
        kwh = round(sum(r.kwh for r in rows), 6)
        return kwh, before is not None and after is not None and reset is None

    def daily(self, month: str, meters: Iterable[str] | None = None) -> list[DayRow]:
        """kWh per Astana date, meter and source for a month ``YYYY-MM``, sorted."""
        start, end = month_bounds(month)
        out: dict[tuple[date, str, str], float] = defaultdict(float)
        for meter in meters if meters is not None else self.meters():
            for row in self.hourly(meter, start, end):
                out[(row.day, meter, row.source)] += row.kwh
        return [DayRow(d, m, s, round(k, 3)) for (d, m, s), k in sorted(out.items())]


@dataclass
class _Acc:
    kwh: float = 0.0
    interpolated: float = 0.0
    samples: int = 0
    resets: int = 0
    peak_p_kw: float | None = None
    peak_demand_kw: float | None = None


def _contributions(
    pieces: list[_Piece],
) -> Iterator[tuple[int, str, float, float, _Piece | None]]:
    """(hour_start, source, kwh, interpolated kwh, piece or None) for each piece and bridge."""
    prev: _Piece | None = None
    for p in pieces:
        yield p.hour_start, p.source, p.last_kwh - p.first_kwh, 0.0, p
        if prev is not None and not p.after_reset:
            gained = p.first_kwh - prev.last_kwh
            for hour, kwh in _spread(prev.last_at, p.first_at, gained):
                yield hour, p.source, kwh, kwh, None
        prev = p


def _spread(t0: float, t1: float, kwh: float) -> Iterator[tuple[int, float]]:
    """``kwh`` spread linearly over [t0, t1], cut at Astana hour boundaries."""
    if kwh == 0:
        return
    if t1 <= t0:
        yield _hour_start(t1), kwh
        return
    step = HOUR.total_seconds()
    hour = _hour_start(t0)
    while hour < t1:
        lo, hi = max(t0, hour), min(t1, hour + step)
        if hi > lo:
            yield int(hour), kwh * (hi - lo) / (t1 - t0)
        hour += int(step)


def astana_date(t: datetime) -> date:
    return as_utc(t).astimezone(ASTANA).date()
