"""The demo's allocation files: what a farm would get from KOREM, sized to the simulated load.

The story the demo tells needs one tight hour, and it must be the hour the demo starts in:
nobody watches a demo for the hour's remaining minutes. So the hour the demo starts in gets
what the farm has used of it so far (its first part ran at full draw: the demo seeds that
history) plus ``TIGHT_SHARE`` of its full draw for the rest. The planner has to take the rest
of the hour down to that share. Started in an hour's last minutes, the next hour is tight too
(that share of the full draw for the whole hour), so a short demo never crosses into an ample
hour; every later hour is ample, so a demo left running sees the miners come back.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

from kuat.quota.clock import current_hour_bounds, hour_of

# The rest of the demo's first hour may draw this share of the farm's full draw.
TIGHT_SHARE = 0.80
# Started with less than this left of the hour, the next hour is tight as well.
LAST_MINUTES = timedelta(minutes=10)
# Every other hour buys 10% more than the farm draws: it closes OK with a visible margin.
HEADROOM = 1.10
# The demo config's [quota] tolerance_kwh: KOREM sells whole kWh, so an hour a few Wh over its
# allocation is not over it.
TOLERANCE_KWH = 1.0


def tight_allocation_kwh(load_kw: float, used_kwh: float, now: datetime) -> float:
    """The first hour's allocation: what was used of it, plus the tight share of the rest."""
    _, end = current_hour_bounds(now)
    left_h = (end - now).total_seconds() / 3600
    return used_kwh + load_kw * TIGHT_SHARE * left_h


def starts_late(load_kw: float, now: datetime) -> bool:
    """Whether the first hour's cut (the rest of it at ``TIGHT_SHARE``) is no more than the
    planner lets pass, the tolerance plus the up to 1 kWh the allocation file's rounding adds,
    while the next hour is tight too. So it is in an hour's last moments (its last ~2.5 minutes
    at 250 kW, ~40 s at 1 MW): the planner rightly has nothing to do until the next hour."""
    _, end = current_hour_bounds(now)
    left_h = (end - now).total_seconds() / 3600
    cut_kwh = (1 - TIGHT_SHARE) * load_kw * left_h
    return end - now < LAST_MINUTES and cut_kwh <= TOLERANCE_KWH + 1.0


def write_demo_schedule(
    directory: Path, site: str, load_kw: float, now: datetime, *, used_kwh: float | None = None
) -> Path:
    """Write today's and tomorrow's (Astana dates) hourly allocations as CSV files: the hour
    containing ``now`` tight (``used_kwh`` of it already used), the others ample; with
    ``used_kwh`` None, every hour ample (a farm simply inside its allocations)."""
    directory.mkdir(parents=True, exist_ok=True)
    today, _ = hour_of(now)
    ample = round(load_kw * HEADROOM / 1000, 3)
    tight: dict[tuple[date, int], float] = {}
    if used_kwh is not None:
        # rounded up to the kWh: the file holds MWh with three decimals
        tight[hour_of(now)] = (int(tight_allocation_kwh(load_kw, used_kwh, now)) + 1) / 1000
        _, end = current_hour_bounds(now)
        if end - now < LAST_MINUTES:
            tight[hour_of(end)] = round(load_kw * TIGHT_SHARE / 1000, 3)
    for day in (today, today + timedelta(days=1)):
        mwh = [tight.get((day, h), ample) for h in range(1, 25)]
        rows = [f"{site},{day.isoformat()},grid,1,{h},{v}" for h, v in enumerate(mwh, 1)]
        text = "# demo allocation (simulated KOREM result)\nsite,date,source,version,hour,mwh\n"
        (directory / f"{day.isoformat()}-grid.csv").write_text(text + "\n".join(rows) + "\n")
    return directory
