"""The hour as the dashboard shows it: energy used against the allocation with the forecast, the
power allowed for the rest of the hour, and the last 24 hours of metered energy (the ledger's
hourly kWh, which is also the hour's mean power in kW) against each hour's allocation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kuat.agent.dashboard_format import iso_utc
from kuat.agent.ledger import EnergyLedger
from kuat.quota.clock import HOUR, hour_bounds, hour_of
from kuat.quota.schedule import EnergySource, ScheduleBook

HISTORY_HOURS = 24


@dataclass(frozen=True, slots=True)
class HourBar:
    start: datetime  # UTC start of the Astana hour
    hour_ending: int  # 1..24, Astana
    kwh: float | None  # metered; None: the ledger has nothing for it
    allocation_kwh: float | None  # None: no allocation held for it
    current: bool  # the hour under way: its kWh so far


def history(
    ledger: EnergyLedger,
    meter: str | None,
    book: ScheduleBook,
    site: str,
    source: EnergySource,
    now: datetime,
) -> list[HourBar]:
    """The 24 Astana hours up to and including the current one. Blocking (SQLite): call it off
    the event loop."""
    day, he = hour_of(now)
    current_start, _ = hour_bounds(day, he)
    first = current_start - (HISTORY_HOURS - 1) * HOUR
    kwh: dict[datetime, float] = {}
    if meter is not None:
        for row in ledger.hourly(meter, first, current_start + HOUR):
            kwh[row.start_utc] = kwh.get(row.start_utc, 0.0) + row.kwh  # every source
    bars = []
    for i in range(HISTORY_HOURS):
        start = first + i * HOUR
        d, h = hour_of(start)
        alloc = book.get(site, d, source)
        bars.append(
            HourBar(
                start, h, kwh.get(start), alloc.kwh(h) if alloc else None, start == current_start
            )
        )
    return bars


@dataclass(frozen=True, slots=True)
class HourView:
    status: str | None
    hour_ending: int | None
    start: datetime | None
    end: datetime | None
    used_kwh: float | None
    allocation_kwh: float | None
    forecast_kwh: float | None
    remaining_kwh: float | None
    allowed_kw: float | None
    minutes_left: float | None
    bars: list[HourBar]

    @classmethod
    def of(cls, quota: Any, bars: list[HourBar], now: datetime) -> HourView:
        """``quota``: the agent's latest quota.evaluate.QuotaStatus, or None before the first."""
        if quota is None:
            return cls(None, None, None, None, None, None, None, None, None, None, bars)
        left = max(0.0, (quota.hour_end - now) / timedelta(minutes=1))
        return cls(
            quota.status.value,
            quota.hour_ending,
            quota.hour_start,
            quota.hour_end,
            quota.used_kwh,
            quota.allocation_kwh,
            quota.forecast_kwh,
            quota.remaining_kwh,
            quota.allowed_kw,
            left,
            bars,
        )

    def json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "hour_ending": self.hour_ending,
            "start": iso_utc(self.start),
            "end": iso_utc(self.end),
            "used_kwh": self.used_kwh,
            "allocation_kwh": self.allocation_kwh,
            "forecast_kwh": self.forecast_kwh,
            "remaining_kwh": self.remaining_kwh,
            "allowed_kw": self.allowed_kw,
            "history": [
                {
                    "start": iso_utc(b.start),
                    "hour_ending": b.hour_ending,
                    "kwh": None if b.kwh is None else round(b.kwh, 3),
                    "allocation_kwh": b.allocation_kwh,
                    "current": b.current,
                }
                for b in self.bars
            ],
        }
