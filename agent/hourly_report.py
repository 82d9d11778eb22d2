"""``kuat report hourly``: every Astana hour of a date range with its figures, for the month-end
settlement with the energy company.

Per hour and energy source: the energy used by the fee-basis meter (the site meter, else every
meter, as in the monthly report), the allocation for that hour when a schedule file holds one,
a status (``ok``, ``over`` the allocation, ``no_allocation``, ``no_data``), whether the ledger
covers the whole hour (``complete``: a reading at or before its start and one at or after its
end, no counter reset inside), and the commercial (settlement) meter's figure for the hour when
the site has one. Every hour of the range is listed, an hour with no reading too: a missing hour
is a finding, not a gap in the table. Pure over the ledger and the schedule book; nothing here
polls a device or writes a file.

Where the commercial meter's own load profile covers an hour (the settlement book, ``settled``),
that figure is the authority — it is what the energy company settles on: ``billed_kwh`` is the
meter's figure, split over the hour's on-grid sources in kuat's proportions
(``quota.settlement.split_hour``), beside kuat's own ``used_kwh``, and ``authority`` says which
one the hour's status and totals stand on (``commercial_meter`` or ``kuat``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from kuat.agent.config import KuatConfig
from kuat.agent.i18n import Lang, has, message, number
from kuat.agent.ledger import EnergyLedger
from kuat.agent.reports import label, source_name
from kuat.quota.clock import hour_bounds
from kuat.quota.schedule import EnergySource, ScheduleBook
from kuat.quota.settlement import split_hour
from kuat.uplink.inventory import iso

MAX_DAYS = 366  # a settlement period is a month; a year at most keeps the output readable


def _label(key: str, lang: Lang) -> str:
    # the hourly report's own words are hourly.* in the catalog, the rest shared with reports
    return message(f"hourly.{key}", lang) if has(f"hourly.{key}", lang) else label(key, lang)


def parse_range(start: str, end: str) -> tuple[date, date]:
    """``--from`` and ``--to`` (Astana dates, both included); ``ValueError`` says what is wrong."""
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError:
        raise ValueError(
            f"--from and --to must be dates YYYY-MM-DD, got {start!r}, {end!r}"
        ) from None
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValueError(f"at most {MAX_DAYS} days in one report, asked for {start} .. {end}")
    return first, last


def hourly_report(
    ledger: EnergyLedger,
    cfg: KuatConfig,
    first: date,
    last: date,
    *,
    book: ScheduleBook | None = None,
    settled: Mapping[datetime, float] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every Astana hour from ``first`` 00:00 to ``last`` 24:00 with its figures (module doc).
    ``settled``: the commercial meter's load-profile kWh by hour start (UTC)."""
    start = hour_bounds(first, 1)[0]
    end = hour_bounds(last, 24)[1]
    roles = {m.name: m.role for m in cfg.meter}
    meters = sorted(set(ledger.meters()) | set(roles))
    basis = [m for m in meters if roles.get(m) == "site"] or meters
    commercial = cfg.commercial_meter.name if cfg.commercial_meter else None

    used: dict[tuple[datetime, str], float] = {}
    for meter in basis:
        for row in ledger.hourly(meter, start, end):
            key = (row.start_utc, row.source)
            used[key] = used.get(key, 0.0) + row.kwh
    commercial_kwh: dict[datetime, float] = {}
    if commercial is not None:
        for row in ledger.hourly(commercial, start, end):
            commercial_kwh[row.start_utc] = commercial_kwh.get(row.start_utc, 0.0) + row.kwh

    hours: list[dict[str, Any]] = []
    day = first
    while day <= last:
        for he in range(1, 25):
            h_start = hour_bounds(day, he)[0]
            complete = bool(basis) and all(ledger.hour_kwh(m, h_start)[1] for m in basis)
            sources = {s for (t, s) in used if t == h_start}
            allocations: dict[str, float] = {}
            for energy in EnergySource:
                alloc = book.get(cfg.site.id, day, energy) if book is not None else None
                if alloc is not None:
                    allocations[energy.value] = round(alloc.kwh(he), 3)
            meter_kwh = (settled or {}).get(h_start)
            billed = (
                split_hour(meter_kwh, {s: k for (t, s), k in used.items() if t == h_start})
                if meter_kwh is not None
                else {}
            )
            for source in sorted(sources | set(allocations) | set(billed)) or [
                EnergySource.GRID.value
            ]:
                kwh = used.get((h_start, source))
                authority = "commercial_meter" if source in billed else "kuat"
                figure = billed.get(source, kwh)
                allocation = allocations.get(source)
                if figure is None:
                    status = "no_data"
                elif allocation is None:
                    status = "no_allocation"
                else:
                    status = "over" if figure > allocation else "ok"
                c = commercial_kwh.get(h_start)
                hours.append(
                    {
                        "date": day.isoformat(),
                        "hour_ending": he,
                        "start_utc": iso(h_start),
                        "source": source,
                        "used_kwh": None if kwh is None else round(kwh, 3),
                        "allocation_kwh": allocation,
                        "status": status,
                        "complete": complete,
                        "commercial_kwh": None if c is None else round(c, 3),
                        "billed_kwh": None if figure is None else round(figure, 3),
                        "authority": authority,
                    }
                )
        day += timedelta(days=1)

    totals: dict[str, dict[str, float]] = {}
    for h in hours:
        t = totals.setdefault(
            h["source"], {"used_kwh": 0.0, "billed_kwh": 0.0, "allocation_kwh": 0.0}
        )
        t["used_kwh"] += h["used_kwh"] or 0.0
        t["billed_kwh"] += h["billed_kwh"] or 0.0
        t["allocation_kwh"] += h["allocation_kwh"] or 0.0
    return {
        "report": "hourly-energy",
        "site": cfg.site.id,
        "owner_bin": cfg.site.owner_bin,
        "from": first.isoformat(),
        "to": last.isoformat(),
        "period_utc": [iso(start), iso(end)],
        "generated_at": iso(now or datetime.now(UTC)),
        "basis_meters": basis,
        "commercial_meter": commercial,
        "hours": hours,
        "totals": {s: {k: round(v, 3) for k, v in t.items()} for s, t in sorted(totals.items())},
        "hours_over": sum(1 for h in hours if h["status"] == "over"),
        "hours_incomplete": len({h["start_utc"] for h in hours if not h["complete"]}),
        "commercial_total_kwh": (
            round(math.fsum(commercial_kwh.values()), 3) if commercial is not None else None
        ),
        "hours_by_authority": {
            a: len({h["start_utc"] for h in hours if h["authority"] == a})
            for a in ("commercial_meter", "kuat")
        },
    }


CSV_COLUMNS = (
    "date",
    "hour_ending",
    "start_utc",
    "source",
    "used_kwh",
    "allocation_kwh",
    "status",
    "complete",
    "commercial_kwh",
    "billed_kwh",
    "authority",
)


def hourly_csv(report: Mapping[str, Any]) -> str:
    """One row per hour and source; an unknown figure is an empty cell, never 0."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for h in report["hours"]:
        w.writerow([_cell(h[c]) for c in CSV_COLUMNS])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render_hourly(report: Mapping[str, Any], lang: Lang) -> str:
    kwh = label("kwh", lang)

    def num(v: float | None) -> str:
        # 1 234,500 in kk and ru, 1,234.500 in en (the CSV and JSON keep 1234.500)
        return "—" if v is None else number(v, lang, 3)

    lines = [
        f"{_label('title', lang)} — {report['from']} .. {report['to']}",
        f"{label('site', lang)}: {report['site']}",
        f"{label('owner_bin', lang)}: {report['owner_bin']}",
        "",
        f"{label('date', lang):<10}  {_label('hour', lang):>4}  {label('source', lang)}: "
        f"{_label('used', lang)} / {_label('allocation', lang)} ({kwh}), {_label('status', lang)}"
        + (f"; {_label('commercial', lang)}" if report["commercial_meter"] else "")
        + f"; {_label('billed', lang)} ({_label('authority', lang)})",
    ]
    for h in report["hours"]:
        line = (
            f"{h['date']:<10}  {h['hour_ending']:>4}  {source_name(h['source'], lang)}: "
            f"{num(h['used_kwh'])} / {num(h['allocation_kwh'])}, {_label(h['status'], lang)}"
        )
        if report["commercial_meter"]:
            line += f"; {num(h['commercial_kwh'])}"
        if not h["complete"] and h["status"] != "no_data":
            line += f" ({_label('incomplete', lang)})"
        line += f"; {num(h['billed_kwh'])} ({_label(h['authority'], lang)})"
        lines.append(line)
    lines.append("")
    lines.append(f"{label('total', lang)}:")
    for source, t in report["totals"].items():
        lines.append(
            f"  {source_name(source, lang)}: {_label('used', lang)} {num(t['used_kwh'])} {kwh}, "
            f"{_label('billed', lang)} {num(t['billed_kwh'])} {kwh}, "
            f"{_label('allocation', lang)} {num(t['allocation_kwh'])} {kwh}"
        )
    if report["commercial_total_kwh"] is not None:
        lines.append(f"  {_label('commercial', lang)}: {num(report['commercial_total_kwh'])} {kwh}")
    by = report["hours_by_authority"]
    lines.append(_label("hours_by_authority", lang).format(m=by["commercial_meter"], k=by["kuat"]))
    lines.append(f"{_label('hours_over', lang)}: {report['hours_over']}")
    lines.append(f"{_label('hours_incomplete', lang)}: {report['hours_incomplete']}")
    return "\n".join(lines)
