"""The monthly report's settlement part: the commercial meter's figures as the authority.

For every Astana hour of the month the fee basis is the commercial meter's own load-profile
figure where the settlement book has it (what the energy company settles on), split over the
hour's on-grid sources in kuat's proportions (``quota.settlement.split_hour``), and kuat's own
ledger figure where it has not. The section says, per hour and per day, which one was used, and
keeps kuat's own figure beside the meter's. Pure over the ledger and the book's figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from kuat.agent.i18n import Lang, message
from kuat.agent.ledger import EnergyLedger
from kuat.quota.clock import hour_of
from kuat.quota.settlement import OFF_GRID, split_hour
from kuat.uplink.inventory import iso

__all__ = ["render_settlement", "settle_month"]

HOUR = timedelta(hours=1)


def settle_month(
    ledger: EnergyLedger,
    basis_meters: Sequence[str],
    start: datetime,
    end: datetime,
    settled: Mapping[datetime, float],
    meter: str,
) -> dict[str, Any]:
    """The month's fee basis by source with the meter's figures as the authority (module doc)."""
    kuat: dict[datetime, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name in basis_meters:
        for row in ledger.hourly(name, start, end):
            kuat[row.start_utc][row.source] += row.kwh
    basis: dict[str, float] = defaultdict(float)
    days: dict[str, dict[str, Any]] = {}
    hours: list[dict[str, str]] = []
    meter_total = kuat_same_hours = 0.0
    t = start
    while t < end:
        own = kuat.get(t, {})
        figure = settled.get(t)
        if figure is not None:
            billed = split_hour(figure, own)
            # off-grid energy never passes the commercial meter: kuat's figure stands for it
            billed.update({s: k for s, k in own.items() if s == OFF_GRID})
            meter_total += figure
            kuat_same_hours += math.fsum(own.values())
        else:
            billed = dict(own)
        authority = "commercial_meter" if figure is not None else "kuat"
        for s, k in billed.items():
            basis[s] += k
        day = hour_of(t)[0].isoformat()
        d = days.setdefault(
            day,
            {
                "date": day,
                "billed_kwh": 0.0,
                "kuat_kwh": 0.0,
                "hours_commercial_meter": 0,
                "hours_kuat": 0,
            },
        )
        d["billed_kwh"] += math.fsum(billed.values())
        d["kuat_kwh"] += math.fsum(own.values())
        d["hours_" + authority] += 1
        hours.append({"start_utc": iso(t), "authority": authority})
        t += HOUR
    return {
        "meter": meter,
        "basis_kwh": {s: round(k, 3) for s, k in sorted(basis.items())},
        "billed_total_kwh": round(math.fsum(basis.values()), 3),
        "meter_kwh": round(meter_total, 3),
        "kuat_kwh_same_hours": round(kuat_same_hours, 3),
        "hours_commercial_meter": sum(1 for h in hours if h["authority"] == "commercial_meter"),
        "hours_kuat": sum(1 for h in hours if h["authority"] == "kuat"),
        "days": [
            {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}
            for d in days.values()
        ],
        "hours": hours,
    }


def render_settlement(
    section: Mapping[str, Any] | None, lang: Lang, num: Callable[[float], str]
) -> list[str]:
    """The section's lines for the text report (nothing without a settlement section);
    ``num`` formats a kWh figure the way the rest of the report does."""
    if not section:
        return []
    lines = [
        "",
        message("settlement.title", lang, meter=section["meter"]),
        "  "
        + message(
            "settlement.hours", lang, m=section["hours_commercial_meter"], k=section["hours_kuat"]
        ),
        "  "
        + message(
            "settlement.totals",
            lang,
            a=num(section["billed_total_kwh"]),
            m=num(section["meter_kwh"]),
            q=num(section["kuat_kwh_same_hours"]),
        ),
    ]
    for d in section["days"]:
        lines.append(
            "  "
            + message(
                "settlement.day",
                lang,
                date=d["date"],
                a=num(d["billed_kwh"]),
                m=d["hours_commercial_meter"],
                k=d["hours_kuat"],
            )
        )
    return lines
