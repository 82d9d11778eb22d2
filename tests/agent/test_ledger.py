"""The energy ledger: Astana hour boundaries, counter resets, restarts, cost per record."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.ledger import EnergyLedger, month_bounds
from kuat.collectors.readings import MeterReading

# 2026-11-24 19:00 UTC is 2026-11-25 00:00 in Astana (UTC+5): hour-ending 1 of the 25th starts.
MIDNIGHT = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)


def reading(at: datetime, kwh: float | None, p_kw: float = 600.0) -> MeterReading:
    return MeterReading("10.0.0.5", 1, "sunspec", at, p_kw=p_kw, import_kwh=kwh, demand_kw=p_kw)


def feed(ledger: EnergyLedger, start: datetime, kwh0: float, step_s: float, n: int, kw: float):
    """n readings every step_s seconds of a meter drawing kw."""
    for i in range(n):
        at = start + timedelta(seconds=i * step_s)
        ledger.record("site", reading(at, kwh0 + kw * i * step_s / 3600.0, kw))


@pytest.fixture
def ledger(tmp_path: Path):
    with EnergyLedger(tmp_path / "ledger.db") as led:
        yield led


def test_hour_boundary_is_astana_midnight_and_the_gap_is_split(ledger: EnergyLedger) -> None:
    # Readings at 23:59:30 and 00:00:30 Astana: 10 kWh counted between them, half each side.
    ledger.record("site", reading(MIDNIGHT - timedelta(seconds=90), 1000.0))
    ledger.record("site", reading(MIDNIGHT - timedelta(seconds=30), 1005.0))
    ledger.record("site", reading(MIDNIGHT + timedelta(seconds=30), 1015.0))
    ledger.record("site", reading(MIDNIGHT + timedelta(seconds=90), 1020.0))
    rows = ledger.hourly("site", MIDNIGHT - timedelta(hours=1), MIDNIGHT + timedelta(hours=1))
    assert [(r.day, r.hour_ending) for r in rows] == [
        (date(2026, 11, 24), 24),
        (date(2026, 11, 25), 1),
    ]
    assert [r.kwh for r in rows] == [10.0, 10.0]
    assert [r.interpolated_kwh for r in rows] == [5.0, 5.0]
    assert rows[1].start_utc == MIDNIGHT


def test_energy_is_conserved_across_many_hours(ledger: EnergyLedger) -> None:
    # 600 kW for 5 hours, read every 7 s (never on an hour boundary): 3000 kWh in all,
    # 600 in each whole hour.
    start = MIDNIGHT + timedelta(minutes=30)
    feed(ledger, start, 50_000.0, 7.0, int(5 * 3600 / 7) + 1, 600.0)
    rows = ledger.hourly("site", MIDNIGHT, MIDNIGHT + timedelta(hours=6))
    assert sum(r.kwh for r in rows) == pytest.approx(600.0 * (int(5 * 3600 / 7) * 7) / 3600)
    whole = [r for r in rows if r.hour_ending in (2, 3, 4, 5)]
    assert [round(r.kwh, 3) for r in whole] == [600.0] * 4
    assert rows[0].kwh == pytest.approx(300.0, abs=0.01)


def test_outage_gap_is_spread_over_the_hours_it_spans(ledger: EnergyLedger) -> None:
    # The meter is silent from 00:30 to 03:30: 300 kWh appear on the counter across the gap.
    ledger.record("site", reading(MIDNIGHT + timedelta(minutes=30), 0.0))
    ledger.record("site", reading(MIDNIGHT + timedelta(hours=3, minutes=30), 300.0))
    rows = ledger.hourly("site", MIDNIGHT, MIDNIGHT + timedelta(hours=4))
    assert [r.kwh for r in rows] == [50.0, 100.0, 100.0, 50.0]
    assert all(r.kwh == r.interpolated_kwh for r in rows)


def test_counter_reset_starts_a_new_segment(ledger: EnergyLedger) -> None:
    at = MIDNIGHT + timedelta(minutes=10)
    ledger.record("site", reading(at, 9_990.0))
    ledger.record("site", reading(at + timedelta(minutes=10), 10_000.0))
    # Replaced meter: its counter starts near zero; the 20 s across the swap are not counted.
    ledger.record("site", reading(at + timedelta(minutes=10, seconds=20), 1.0))
    ledger.record("site", reading(at + timedelta(minutes=30), 21.0))
    [row] = ledger.hourly("site", MIDNIGHT, MIDNIGHT + timedelta(hours=1))
    assert row.kwh == 30.0
    assert row.resets == 1
    assert row.samples == 4


def test_ledger_survives_a_restart_and_bridges_from_the_last_reading(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with EnergyLedger(path) as led:
        led.record("site", reading(MIDNIGHT + timedelta(minutes=50), 100.0))
        led.record("site", reading(MIDNIGHT + timedelta(minutes=55), 110.0))
    with EnergyLedger(path) as led:  # a new process: nothing in memory
        led.record("site", reading(MIDNIGHT + timedelta(minutes=65), 130.0))
        rows = led.hourly("site", MIDNIGHT, MIDNIGHT + timedelta(hours=2))
    assert [(r.hour_ending, r.kwh) for r in rows] == [(1, 20.0), (2, 10.0)]


def test_repeats_out_of_order_and_missing_counters_are_ignored(ledger: EnergyLedger) -> None:
    at = MIDNIGHT + timedelta(minutes=5)
    assert ledger.record("site", reading(at, 10.0))
    assert not ledger.record("site", reading(at, 10.0))
    assert not ledger.record("site", reading(at - timedelta(seconds=5), 9.0))
    assert not ledger.record("site", reading(at + timedelta(seconds=5), None))
    assert ledger.record("site", reading(at + timedelta(seconds=10), 11.0))
    [row] = ledger.hourly("site", MIDNIGHT, MIDNIGHT + timedelta(hours=1))
    assert (row.kwh, row.samples, row.resets) == (1.0, 2, 0)


def test_sources_are_booked_separately(ledger: EnergyLedger) -> None:
    at = MIDNIGHT + timedelta(minutes=5)
    ledger.record("site", reading(at, 0.0), "grid")
    ledger.record("site", reading(at + timedelta(minutes=10), 100.0), "grid")
    ledger.record("site", reading(at + timedelta(minutes=20), 150.0), "own_ongrid")
    ledger.record("site", reading(at + timedelta(minutes=30), 200.0), "own_ongrid")
    rows = ledger.hourly("site", MIDNIGHT, MIDNIGHT + timedelta(hours=1))
    assert {r.source: r.kwh for r in rows} == {"grid": 100.0, "own_ongrid": 100.0}


def test_daily_groups_by_astana_date(ledger: EnergyLedger) -> None:
    # 2026-11-30 23:00 Astana to 2026-12-01 01:00 Astana, 100 kW.
    start = MIDNIGHT + timedelta(days=5, hours=23)
    feed(ledger, start, 0.0, 60.0, 121, 100.0)
    nov = ledger.daily("2026-11")
    dec = ledger.daily("2026-12")
    assert [(r.day, r.kwh) for r in nov] == [(date(2026, 11, 30), 100.0)]
    assert [(r.day, r.kwh) for r in dec] == [(date(2026, 12, 1), 100.0)]


def test_month_bounds_are_astana_midnights() -> None:
    start, end = month_bounds("2026-12")
    assert start == datetime(2026, 11, 30, 19, tzinfo=UTC)
    assert end == datetime(2026, 12, 31, 19, tzinfo=UTC)
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds("2026-13")


def test_record_is_cheap(ledger: EnergyLedger) -> None:
    # The meter job calls record() every few seconds per meter; 2000 calls must be far
    # below a second of work (it is one UPDATE on the usual path).
    t0 = time.perf_counter()
    feed(ledger, MIDNIGHT, 0.0, 1.0, 2000, 500.0)
    assert time.perf_counter() - t0 < 2.0
