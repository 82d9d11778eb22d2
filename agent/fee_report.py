"""``kuat report quarterly``: the digital-mining fee's quarter (``../shared/regulation.md``).

The fee is charged per kWh consumed, its tax period is a calendar quarter and it is paid by the
20th of the month after it. The rate depends on the energy source (grid electricity on a scale
by the average price paid, own generation, own renewable generation), and energy consumed
without control metering devices is charged at 25 ₸/kWh; where several rates apply, the
highest. Whether the 2026 Tax Code kept these figures is not known here, so the source rates
are an input (``--rate grid=…``), not constants; only the unmetered rate has a default (25 ₸,
``--unmetered-rate``).

What the report gives, from the energy ledger:

* kWh per meter and per source over the quarter (every meter, so an auditor sees them all);
* the fee basis per source: the site meter (``role = "site"``), else every meter, as in the
  monthly report — submeters sit behind the site meter; where the commercial meter's load
  profile covers an hour (the settlement book), that figure replaces kuat's, as the monthly
  report bills (``settled_hours``, ``settled_kwh``);
* which of that energy is **backed by the commercial (control) meter**: an hour counts as
  backed when the commercial meter's counter spans it whole (``EnergyLedger.hour_kwh``: kuat
  read it at or before the hour's start and at or after its end, with no counter reset). A gap
  in kuat's readings of it is bridged by the meter's own counter, which ran on; the hours
  before the meter was first read, after it was last read, or across a reset are not backed.
  A site without a commercial meter has no backed energy. Unbacked energy is charged at the
  higher of the unmetered rate and its source's rate, and the report lists how many hours and
  kWh that is, so the owner can see what a missing meter costs;
* the fee per source and in all when every source used has a rate; otherwise which rates are
  missing (the fee is not guessed).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from kuat.agent.config import KuatConfig
from kuat.agent.i18n import Lang, has, message
from kuat.agent.ledger import EnergyLedger
from kuat.agent.reports import _num, label, source_name
from kuat.quota.clock import HOUR, hour_bounds
from kuat.quota.settlement import split_hour
from kuat.uplink.inventory import iso

__all__ = ["UNMETERED_RATE", "parse_quarter", "quarterly_csv", "quarterly_report", "render"]

UNMETERED_RATE = 25.0  # ₸/kWh without control metering devices (Tax Code, from 2023)


def _label(key: str, lang: Lang) -> str:
    # the fee report's own words are fee.* in the catalog (kuat.agent.i18n), the rest shared
    return message(f"fee.{key}", lang) if has(f"fee.{key}", lang) else label(key, lang)


_QUARTER = re.compile(r"^(\d{4})-?Q([1-4])$", re.IGNORECASE)


def parse_quarter(text: str) -> tuple[int, int]:
    """``2026-Q3`` (or ``2026Q3``) -> (2026, 3); ValueError saying the form otherwise."""
    m = _QUARTER.match(text.strip())
    if not m:
        raise ValueError(f"quarter must look like 2026-Q3, not {text!r}")
    return int(m.group(1)), int(m.group(2))


def quarter_days(year: int, q: int) -> tuple[date, date]:
    """First and last Astana date of the quarter."""
    first = date(year, 3 * q - 2, 1)
    nxt = date(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1)
    return first, nxt - timedelta(days=1)


def quarterly_report(
    ledger: EnergyLedger,
    cfg: KuatConfig,
    year: int,
    q: int,
    *,
    rates: Mapping[str, float] | None = None,
    unmetered_rate: float = UNMETERED_RATE,
    settled: Mapping[datetime, float] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``settled``: the commercial meter's load-profile kWh by hour start (the settlement book);
    where it covers an hour the fee is on that figure (split between on-grid sources in kuat's
    proportions, as the monthly report bills), not on kuat's own."""
    rates = dict(rates or {})
    first, last = quarter_days(year, q)
    start, end = hour_bounds(first, 1)[0], hour_bounds(last, 24)[1]
    roles = {m.name: m.role for m in cfg.meter}
    meters = sorted(set(ledger.meters()) | set(roles))
    basis_meters = [m for m in meters if roles.get(m) == "site"] or meters
    commercial = cfg.commercial_meter.name if cfg.commercial_meter else None

    by_meter: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    basis_hours: dict[tuple[datetime, str], float] = defaultdict(float)
    for meter in meters:
        for row in ledger.hourly(meter, start, end):
            by_meter[meter][row.source] += row.kwh
            if meter in basis_meters:
                basis_hours[(row.start_utc, row.source)] += row.kwh

    backed_hours: set[datetime] = set()
    if commercial is not None:
        t = start
        while t < end:
            if ledger.hour_kwh(commercial, t)[1]:
                backed_hours.add(t)
            t += HOUR

    # What each hour is billed on: the commercial meter's own figure where the book has it.
    billed_hours: dict[tuple[datetime, str], float] = dict(basis_hours)
    settled_kwh = 0.0
    for t, meter_kwh in (settled or {}).items():
        if not start <= t < end:
            continue
        ours = {s: k for (h, s), k in basis_hours.items() if h == t}
        for source, kwh in split_hour(meter_kwh, ours).items():
            billed_hours[(t, source)] = kwh
        settled_kwh += meter_kwh
        backed_hours.add(t)

    sources: dict[str, dict[str, Any]] = {}
    unbacked_hours: set[datetime] = set()
    for (t, source), kwh in sorted(billed_hours.items()):
        s = sources.setdefault(source, {"kwh": 0.0, "backed_kwh": 0.0, "unbacked_kwh": 0.0})
        s["kwh"] += kwh
        if t in backed_hours:
            s["backed_kwh"] += kwh
        elif kwh > 0:
            s["unbacked_kwh"] += kwh
            unbacked_hours.add(t)
    missing = sorted(s for s in sources if s not in rates)
    for source, s in sources.items():
        rate = rates.get(source)
        s["rate"] = rate
        # where several rates apply, the highest: unmetered energy never costs less than 25 ₸
        s["unbacked_rate"] = max(unmetered_rate, rate) if rate is not None else unmetered_rate
        s["tenge"] = (
            round(s["backed_kwh"] * rate + s["unbacked_kwh"] * s["unbacked_rate"], 2)
            if rate is not None
            else None
        )
        for k in ("kwh", "backed_kwh", "unbacked_kwh"):
            s[k] = round(s[k], 3)
    total_kwh = math.fsum(s["kwh"] for s in sources.values())
    unbacked_kwh = math.fsum(s["unbacked_kwh"] for s in sources.values())
    pay_month = date(year + (q == 4), 1 if q == 4 else 3 * q + 1, 20)
    return {
        "report": "quarterly-fee",
        "site": cfg.site.id,
        "owner_bin": cfg.site.owner_bin,
        "quarter": f"{year}-Q{q}",
        "from": first.isoformat(),
        "to": last.isoformat(),
        "period_utc": [iso(start), iso(end)],
        "pay_by": pay_month.isoformat(),
        "generated_at": iso(now or datetime.now(UTC)),
        "commercial_meter": commercial,
        "basis_meters": basis_meters,
        "meters": {
            m: {
                "role": roles.get(m, "unknown"),
                "kwh": {s: round(k, 3) for s, k in sorted(v.items())},
                "total_kwh": round(math.fsum(v.values()), 3),
            }
            for m, v in sorted(by_meter.items())
        },
        "sources": dict(sorted(sources.items())),
        "total_kwh": round(total_kwh, 3),
        "unbacked_kwh": round(unbacked_kwh, 3),
        "unbacked_hours": len(unbacked_hours),
        "settled_hours": sum(1 for t in (settled or {}) if start <= t < end),
        "settled_kwh": round(settled_kwh, 3),
        "unmetered_rate": unmetered_rate,
        "missing_rates": missing,
        "fee_total_tenge": (
            round(math.fsum(s["tenge"] for s in sources.values()), 2)
            if sources and not missing
            else None
        ),
    }


CSV_COLUMNS = ("source", "kwh", "backed_kwh", "unbacked_kwh", "rate", "unbacked_rate", "tenge")


def quarterly_csv(report: Mapping[str, Any]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for source, s in report["sources"].items():
        w.writerow([source, *("" if s[c] is None else s[c] for c in CSV_COLUMNS[1:])])
    return out.getvalue()


def render(report: Mapping[str, Any], lang: Lang) -> str:
    kwh, tenge, per = label("kwh", lang), label("tenge", lang), label("rate", lang)
    lines = [
        f"{_label('title', lang)} {report['quarter']} ({report['from']} — {report['to']})",
        f"{label('site', lang)}: {report['site']}",
        f"{label('owner_bin', lang)}: {report['owner_bin']}",
        f"{_label('pay_by', lang)}: {report['pay_by']}",
        "",
        f"{_label('meters', lang)}:",
    ]
    for meter, m in report["meters"].items():
        lines.append(f"  {meter}: {_num(m['total_kwh'], lang)}")
        for source, value in m["kwh"].items():
            lines.append(f"    {source_name(source, lang)}: {_num(value, lang)}")
    lines += ["", f"{_label('basis', lang)}: {_num(report['total_kwh'], lang)} {kwh}"]
    if report["commercial_meter"] is None:
        lines.append(_label("no_commercial", lang))
    for source, s in report["sources"].items():
        lines.append(f"  {source_name(source, lang)}: {_num(s['kwh'], lang)} {kwh}")
        lines.append(f"    {_label('backed', lang)}: {_num(s['backed_kwh'], lang)} {kwh}")
        if s["unbacked_kwh"]:
            lines.append(
                f"    {_label('unbacked', lang)}: {_num(s['unbacked_kwh'], lang)} {kwh} × "
                f"{_num(s['unbacked_rate'], lang, 2)} {per}"
            )
        if s["tenge"] is not None:
            lines.append(
                f"    {label('fee', lang)}: {_num(s['tenge'], lang, 2)} {tenge} "
                f"({_num(s['rate'], lang, 2)} {per})"
            )
    if report["unbacked_hours"]:
        lines.append(
            f"{_label('unbacked', lang)}: {_num(report['unbacked_kwh'], lang)} {kwh}, "
            f"{report['unbacked_hours']} {_label('hours', lang)}"
        )
    if report["missing_rates"]:
        names = ", ".join(report["missing_rates"])
        lines.append(f"{_label('missing_rates', lang)}: {names}")
    else:
        lines.append(
            f"{label('fee', lang)} — {label('total', lang)}: "
            f"{_num(report['fee_total_tenge'], lang, 2)} {tenge}"
        )
    return "\n".join(lines)
