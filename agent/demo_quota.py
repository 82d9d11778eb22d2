"""The demo's allocation files: what a farm would get from KOREM, sized to the simulated load."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from kuat.quota.clock import hour_of

# The demo buys 10% more than it draws: the hour closes OK with a visible margin.
HEADROOM = 1.10


def write_demo_schedule(directory: Path, site: str, load_kw: float, now: datetime) -> Path:
    """Write today's and tomorrow's (Astana dates) hourly allocations as CSV files."""
    directory.mkdir(parents=True, exist_ok=True)
    today, _ = hour_of(now)
    mwh = round(load_kw * HEADROOM / 1000, 3)
    for day in (today, today + timedelta(days=1)):
        rows = [f"{site},{day.isoformat()},grid,1,{h},{mwh}" for h in range(1, 25)]
        text = "# demo allocation (simulated KOREM result)\nsite,date,source,version,hour,mwh\n"
        (directory / f"{day.isoformat()}-grid.csv").write_text(text + "\n".join(rows) + "\n")
    return directory
