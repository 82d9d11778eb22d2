"""Reports an owner files or shows an inspector: the monthly energy report, the compliance
report (checklist items 5 and 7, quota, register) and the register include/exclude list.

Pure functions over the ledger, the config and what the agent last stored (the retained
inventory and the outbox of the spool) or a fresh ``AgentState``: they return plain dicts (the
JSON a script reads) and render them as text in Kazakh, Russian or English with the terms of
regulation.md. Nothing here polls a device or writes a file.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from kuat.agent.config import KuatConfig
from kuat.agent.i18n import Lang, has, message, number, render, unit
from kuat.agent.ledger import EnergyLedger, month_bounds
from kuat.agent.settlement_report import render_settlement, settle_month
from kuat.collectors.readings import AsicReading, PoolInfo
from kuat.quota.checks import CheckStatus
from kuat.quota.clock import as_utc, hour_bounds, hour_of
from kuat.quota.grid import check_grid_connection
from kuat.quota.pools import check_pools
from kuat.quota.reasons import Code, Reason
from kuat.quota.schedule import EnergySource, ScheduleBook
from kuat.uplink.inventory import iso

PEAK_WINDOW = timedelta(days=30)  # how far back item 5's measured peak demand looks

# --- labels ---------------------------------------------------------------------------
# The texts are in the gettext catalog (kuat.agent.i18n) under report.* and source.*. These two
# dicts stay, empty, for labels added the old way while branches merge (`make messages-import`
# moves them into the catalog).

LABELS: dict[str, dict[Lang, str]] = {}
SOURCE_NAMES: dict[str, dict[Lang, str]] = {}


def label(key: str, lang: Lang, **params: Any) -> str:
    if not has(f"report.{key}", lang) and key in LABELS:
        return LABELS[key][lang]
    return message(f"report.{key}", lang, **params)


def source_name(source: str, lang: Lang) -> str:
    if has(f"source.{source}", lang):
        return message(f"source.{source}", lang)
    return SOURCE_NAMES.get(source, {}).get(lang, source)


def _num(value: float | None, lang: Lang, digits: int = 3) -> str:
    # kk and ru write 1 234,5 (no-break space, decimal comma): "2,072" reads as 2.072 there
    return "—" if value is None else number(value, lang, digits)


# --- monthly energy report --------------------------------------------------------------


def _due_by(month: str) -> date:
    first = date.fromisoformat(f"{month}-01")
    return date(first.year + first.month // 12, first.month % 12 + 1, 25)


def monthly_report(
    ledger: EnergyLedger,
    cfg: KuatConfig,
    month: str,
    *,
    rates: Mapping[str, float] | None = None,
    settled: Mapping[datetime, float] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """kWh per day, meter and source for an Astana month, with totals and the fee basis.

    ``settled`` (the commercial meter's load-profile kWh by hour, from the settlement book)
    makes the meter's figure the fee basis for the hours it covers (``settlement_report``).

    The fee basis is the site meter (``role = "site"``): submeters sit behind it and adding
    them would count the same kWh twice. Without a site meter every meter is summed. ``rates``
    (tenge per kWh, by source) turn the basis into a fee; the rates depend on the electricity
    price and source and change, so they are an input, not a constant here.
    """
    start, end = month_bounds(month)
    hours_in_month = int((end - start).total_seconds() // 3600)
    roles = {m.name: m.role for m in cfg.meter}
    meters = sorted(set(ledger.meters()) | set(roles))
    days: list[dict[str, Any]] = []
    by_meter: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    coverage: dict[str, dict[str, Any]] = {}
    for meter in meters:
        hours = ledger.hourly(meter, start, end)
        per_day: dict[tuple[date, str], float] = defaultdict(float)
        for h in hours:
            per_day[(h.day, h.source)] += h.kwh
            by_meter[meter][h.source] += h.kwh
        days += [
            {"date": d.isoformat(), "meter": meter, "source": s, "kwh": round(k, 3)}
            for (d, s), k in sorted(per_day.items())
        ]
        coverage[meter] = {
            "role": roles.get(meter, "unknown"),
            "hours_with_data": len({h.start_utc for h in hours if h.samples}),
            "hours_in_month": hours_in_month,
            "interpolated_kwh": round(math.fsum(h.interpolated_kwh for h in hours), 3),
            "resets": sum(h.resets for h in hours),
        }
    days.sort(key=lambda r: (r["date"], r["meter"], r["source"]))
    basis_meters = [m for m in meters if roles.get(m) == "site"] or meters
    basis: dict[str, float] = defaultdict(float)
    for meter in basis_meters:
        for source, kwh in by_meter[meter].items():
            basis[source] += kwh
    settlement = None
    if settled is not None and cfg.commercial_meter is not None:
        settlement = settle_month(
            ledger, basis_meters, start, end, settled, cfg.commercial_meter.name
        )
        basis = defaultdict(float, settlement["basis_kwh"])
    fee = None
    if rates:
        fee = {
            s: {"kwh": round(k, 3), "rate": rates[s], "tenge": round(k * rates[s], 2)}
            for s, k in sorted(basis.items())
            if s in rates
        }
    return {
        "report": "monthly-energy",
        "site": cfg.site.id,
        "site_name": cfg.site.name,
        "owner_bin": cfg.site.owner_bin,
        "month": month,
        "period_utc": [iso(start), iso(end)],
        "due_by": _due_by(month).isoformat(),
        "generated_at": iso(now or datetime.now(UTC)),
        "days": days,
        "totals": {
            "by_meter": {
                m: {s: round(k, 3) for s, k in sorted(v.items())} for m, v in by_meter.items()
            },
            "fee_basis_meters": basis_meters,
            "fee_basis_kwh": {s: round(k, 3) for s, k in sorted(basis.items())},
            "fee_basis_total_kwh": round(math.fsum(basis.values()), 3),
        },
        "fee": fee,
        "fee_total_tenge": round(sum(f["tenge"] for f in fee.values()), 2) if fee else None,
        "coverage": coverage,
        "settlement": settlement,
    }


def monthly_csv(report: Mapping[str, Any]) -> str:
    """The daily rows as CSV (date, meter, source, kwh): what a spreadsheet or an auditor reads."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["date", "meter", "source", "kwh"])
    for r in report["days"]:
        w.writerow([r["date"], r["meter"], r["source"], f"{r['kwh']:.3f}"])
    return out.getvalue()


def render_monthly(report: Mapping[str, Any], lang: Lang) -> str:
    kwh = label("kwh", lang)
    lines = [
        f"{label('monthly_title', lang)} — {report['month']}",
        f"{label('site', lang)}: {report['site']} {report['site_name']}".rstrip(),
        f"{label('owner_bin', lang)}: {report['owner_bin']}",
        f"{label('due_by', lang)}: {report['due_by']}",
        "",
    ]
    if not report["days"]:
        lines.append(label("no_data", lang))
    else:
        head = f"{label('date', lang):<10}  {label('meter', lang):<16}  {label('source', lang)}"
        lines.append(f"{head}  ({kwh})")
        for r in report["days"]:
            lines.append(
                f"{r['date']:<10}  {r['meter']:<16}  {source_name(r['source'], lang)}: "
                f"{_num(r['kwh'], lang)}"
            )
    lines.append("")
    lines.append(f"{label('total', lang)}:")
    for meter, per_source in report["totals"]["by_meter"].items():
        for source, value in per_source.items():
            lines.append(f"  {meter} — {source_name(source, lang)}: {_num(value, lang)} {kwh}")
    lines.append(
        f"{label('fee_basis', lang)}: {_num(report['totals']['fee_basis_total_kwh'], lang)} {kwh}"
    )
    for source, value in report["totals"]["fee_basis_kwh"].items():
        lines.append(f"  {source_name(source, lang)}: {_num(value, lang)} {kwh}")
    if report["fee"]:
        lines.append(f"{label('fee', lang)}:")
        for source, f in report["fee"].items():
            lines.append(
                f"  {source_name(source, lang)}: {_num(f['kwh'], lang)} {kwh} × "
                f"{_num(f['rate'], lang, 2)} {label('rate', lang)} = "
                f"{_num(f['tenge'], lang, 2)} {label('tenge', lang)}"
            )
        lines.append(
            f"  {label('total', lang)}: {_num(report['fee_total_tenge'], lang, 2)} "
            f"{label('tenge', lang)}"
        )
    lines.append(f"{label('coverage', lang)}:")
    for meter, c in report["coverage"].items():
        lines.append(
            f"  {meter}: {c['hours_with_data']}/{c['hours_in_month']} "
            f"{label('hours_with_data', lang)}, {label('interpolated', lang)} "
            f"{_num(c['interpolated_kwh'], lang)} {kwh}, {label('resets', lang)}: {c['resets']}"
        )
    lines += render_settlement(report.get("settlement"), lang, lambda v: _num(v, lang))
    return "\n".join(lines)


# --- compliance report ------------------------------------------------------------------


def _reason_json(reasons: Iterable[Reason], lang: Lang) -> list[dict[str, Any]]:
    return [
        {"code": str(r.code), "params": dict(r.params), "text": render(r, lang)} for r in reasons
    ]


def peak_demand_kw(
    ledger: EnergyLedger | None, meter: str | None, now: datetime
) -> tuple[float | None, str | None]:
    """The highest demand the site meter reported over ``PEAK_WINDOW``, else the highest hourly
    average power (kWh in a whole hour); with the basis it came from."""
    if ledger is None or meter is None:
        return None, None
    rows = ledger.hourly(meter, now - PEAK_WINDOW, now)
    demand = [r.peak_demand_kw for r in rows if r.peak_demand_kw is not None]
    if demand:
        return max(demand), "meter_demand"
    # A whole hour's energy is its average power; the running hour is not whole yet.
    current = hour_bounds(*hour_of(now))[0]
    hourly: dict[datetime, float] = defaultdict(float)
    for r in rows:
        if r.start_utc < current:
            hourly[r.start_utc] += r.kwh
    return (max(hourly.values()), "hourly_energy") if hourly else (None, None)


def _grid_section(
    cfg: KuatConfig, ledger: EnergyLedger | None, now: datetime, lang: Lang
) -> dict[str, Any]:
    g = cfg.grid
    site_meter = cfg.site_meter.name if cfg.site_meter else None
    peak, basis = peak_demand_kw(ledger, site_meter, now)
    if g is None:
        return {
            "item": "5",
            "status": CheckStatus.UNKNOWN.value,
            "record": None,
            "peak_demand_kw": peak,
            "peak_basis": basis,
            "reasons": [],
            "text": [label("grid_not_configured", lang)],
        }
    conn = g.connection()
    result = check_grid_connection(conn, peak)
    reasons = _reason_json(result.reasons, lang)
    return {
        "item": "5",
        "status": result.status.value,
        "record": {
            "tc_number": g.tc_number,
            "tc_date": g.tc_date.isoformat() if g.tc_date else None,
            "issuer": g.issuer,
            "substation": g.substation,
            "voltage_kv": g.voltage_kv,
            "permitted_mw": g.permitted_mw,
            "connected_on": g.connected_on.isoformat(),
            "off_grid": g.off_grid,
        },
        "peak_demand_kw": None if peak is None else round(peak, 1),
        "peak_basis": basis,
        "peak_window_days": PEAK_WINDOW.days,
        "reasons": reasons,
        "text": [r["text"] for r in reasons],
    }


def miners_from_inventory(inventory: Mapping[str, Any] | None) -> list[AsicReading]:
    """Readings as far as the item-7 check needs them, rebuilt from the stored inventory: an
    offline miner mines nowhere, the others mine on their recorded pool."""
    if not inventory:
        return []
    out = []
    for m in inventory.get("miners", []):
        at = datetime.fromisoformat(str(m["last_seen"]).replace("Z", "+00:00"))
        pools = (PoolInfo(m["pool"], active=True),) if m.get("pool") else ()
        state = m.get("state", "offline")
        out.append(
            AsicReading(
                m.get("ip", ""),
                int(m.get("port", 4028)),
                at,
                serial=m.get("serial"),
                mac=m.get("mac"),
                pools=pools if state != "offline" else (),
                state="error" if state == "offline" else state,
            )
        )
    return out


def _pools_section(
    cfg: KuatConfig, inventory: Mapping[str, Any] | None, fresh: Any, lang: Lang
) -> dict[str, Any]:
    result = fresh
    if result is None:
        result = check_pools(
            miners_from_inventory(inventory),
            cfg.compliance.accredited_pools,
            data_centre_registered=cfg.site.data_centre_registered,
            data_centre_id=cfg.site.data_centre_id,
        )
    reasons = _reason_json(result.reasons, lang)
    return {
        "item": "7",
        "status": result.status.value,
        "data_centre_id": cfg.site.data_centre_id or None,
        "data_centre_registered": cfg.site.data_centre_registered,
        "accredited_pools": list(cfg.compliance.accredited_pools),
        "miners_checked": result.miners_checked,
        "offenders": [
            {"device_id": o.device_id, "ip": o.ip, "pool": o.pool_host or o.pool_url}
            for o in result.offenders
        ],
        "reasons": reasons,
        "text": [r["text"] for r in reasons],
    }


def _quota_from_ledger(
    cfg: KuatConfig, ledger: EnergyLedger | None, book: ScheduleBook | None, now: datetime
) -> tuple[str, list[Reason], list[dict[str, Any]]]:
    """Today's Astana hours so far: metered kWh (grid) against the hour's allocation."""
    day, current = hour_of(now)
    meter = cfg.site_meter.name if cfg.site_meter else None
    alloc = book.get(cfg.site.id, day, EnergySource.GRID) if book else None
    used: dict[int, float] = defaultdict(float)
    if ledger is not None and meter is not None:
        for r in ledger.hourly(meter, hour_bounds(day, 1)[0], hour_bounds(day, current)[1]):
            if r.source == EnergySource.GRID.value:
                used[r.hour_ending] += r.kwh
    hours = []
    over: list[Reason] = []
    for he in range(1, current + 1):
        a = alloc.kwh(he) if alloc else None
        u = used.get(he)
        exceeded = a is not None and u is not None and u > a + cfg.quota.tolerance_kwh
        hours.append({"hour_ending": he, "allocation_kwh": a, "used_kwh": u, "over": exceeded})
        if exceeded:
            over.append(
                Reason.of(
                    Code.QUOTA_EXCEEDED,
                    hour_ending=he,
                    used_kwh=round(u or 0.0, 3),
                    allocation_kwh=round(a or 0.0, 3),
                )
            )
    if over:
        return "over", over, hours
    if alloc is None:
        params = {"date": day, "hour_ending": current, "site": cfg.site.id, "source": "grid"}
        return "no_allocation", [Reason.of(Code.QUOTA_NO_ALLOCATION, **params)], hours
    if current not in used:
        return "no_data", [Reason.of(Code.QUOTA_NO_DATA, hour_ending=current)], hours
    ok = Reason.of(
        Code.QUOTA_OK,
        hour_ending=current,
        used_kwh=round(used[current], 1),
        forecast_kwh=None,
        allocation_kwh=round(alloc.kwh(current), 1),
    )
    return "ok", [ok], hours


def _quota_section(
    cfg: KuatConfig,
    ledger: EnergyLedger | None,
    book: ScheduleBook | None,
    fresh: Any,
    now: datetime,
    lang: Lang,
    refused: Mapping[str, Iterable[Reason]],
) -> dict[str, Any]:
    status, reasons, hours = _quota_from_ledger(cfg, ledger, book, now)
    if fresh is not None:  # the agent's own evaluation, forecast included, wins for now
        status, reasons = fresh.status.value, [fresh.reason, *fresh.notes]
    out = _reason_json(reasons, lang)
    day, current = hour_of(now)
    return {
        "status": status,
        "operating_date": day.isoformat(),
        "hour_ending": current,
        "hours_today": hours,
        "hours_over_today": sum(1 for h in hours if h["over"]),
        "reasons": out,
        "text": [r["text"] for r in out],
        # allocation files (or pushed documents) refused: the previous schedule stays in force
        "refused_allocations": [
            {"source": source, "reasons": _reason_json(reasons, lang)}
            for source, reasons in sorted(refused.items())
        ],
    }


def _register_section(
    inventory: Mapping[str, Any] | None, outbox_pending: int | None, outbox_dead: int | None
) -> dict[str, Any]:
    if not inventory:
        return {
            "miners": None,
            "online": None,
            "generated_at": None,
            "seq": None,
            "outbox_pending": outbox_pending,
            "outbox_dead": outbox_dead,
        }
    totals = inventory.get("totals", {})
    return {
        "miners": inventory.get("count", len(inventory.get("miners", []))),
        "online": totals.get("online"),
        "rated_ths": totals.get("rated_ths"),
        "rated_w": totals.get("rated_w"),
        "generated_at": inventory.get("generated_at"),
        "seq": inventory.get("seq"),
        "outbox_pending": outbox_pending,
        "outbox_dead": outbox_dead,
    }


def compliance_report(
    cfg: KuatConfig,
    *,
    now: datetime,
    lang: Lang,
    ledger: EnergyLedger | None = None,
    inventory: Mapping[str, Any] | None = None,
    outbox_pending: int | None = None,
    outbox_dead: int | None = None,
    schedules: ScheduleBook | None = None,
    fresh_pools: Any = None,
    fresh_quota: Any = None,
    refused_allocations: Mapping[str, Iterable[Reason]] | None = None,
) -> dict[str, Any]:
    """Items 5 and 7, the quota and the register, from stored evidence (ledger, inventory,
    outbox) or, for items 7 and quota, a fresh poll's results when given. Item 5's peak demand
    always comes from the ledger: one poll cannot measure a demand interval.
    ``refused_allocations``: allocation documents refused, by source, with every reason."""
    now = as_utc(now)
    return {
        "report": "compliance",
        "site": cfg.site.id,
        "site_name": cfg.site.name,
        "owner_bin": cfg.site.owner_bin,
        "licence_number": cfg.site.licence_number,
        "licence_subtype": cfg.site.licence_subtype,
        "generated_at": iso(now),
        "evidence": "poll" if fresh_pools is not None or fresh_quota is not None else "stored",
        "lang": lang,
        "item5": _grid_section(cfg, ledger, now, lang),
        "item7": _pools_section(cfg, inventory, fresh_pools, lang),
        "quota": _quota_section(
            cfg, ledger, schedules, fresh_quota, now, lang, refused_allocations or {}
        ),
        "register": _register_section(inventory, outbox_pending, outbox_dead),
    }


def _status_word(status: str, lang: Lang) -> str:
    return label(status, lang) if has(f"report.{status}", lang) or status in LABELS else status


def _offender_line(offender: Mapping[str, Any], lang: Lang) -> str:
    key = "offender_pool" if offender.get("pool") else "offender_no_pool"
    return label(key, lang, **offender)


def render_compliance(report: Mapping[str, Any], lang: Lang) -> str:
    evidence = label("evidence_poll" if report["evidence"] == "poll" else "evidence_stored", lang)
    lines = [
        f"{label('compliance_title', lang)} — {report['site']} {report['site_name']}".rstrip(),
        f"{label('owner_bin', lang)}: {report['owner_bin']}",
        f"{label('generated_at', lang)}: {report['generated_at']} ({evidence})",
        "",
    ]
    i5 = report["item5"]
    lines.append(f"{label('item5', lang)}: {_status_word(i5['status'], lang)}")
    peak = _num(i5["peak_demand_kw"], lang, 1)
    lines.append(f"  {label('peak_demand', lang)}: {peak} {unit('kw', lang)}")
    lines += [f"  - {t}" for t in i5["text"]]
    i7 = report["item7"]
    lines.append(f"{label('item7', lang)}: {_status_word(i7['status'], lang)}")
    lines += [f"  - {t}" for t in i7["text"]]
    if i7["offenders"]:  # every miner, so an inspector can walk to it
        lines.append(f"  {label('offenders', lang)}:")
        lines += [f"    {_offender_line(o, lang)}" for o in i7["offenders"]]
    q = report["quota"]
    lines.append(f"{label('quota', lang)}: {_status_word(q['status'], lang)}")
    lines += [f"  - {t}" for t in q["text"]]
    for refused in q.get("refused_allocations", []):
        lines.append(f"  - {label('refused_from', lang, source=refused['source'])}")
        lines += [f"    {r['text']}" for r in refused["reasons"]]
    reg = report["register"]
    lines.append(f"{label('register', lang)}:")
    if reg["miners"] is None:
        lines.append(f"  {label('no_inventory', lang)}")
    else:
        lines.append(
            f"  {label('miners_in_inventory', lang)}: {reg['miners']} "
            f"({label('online', lang)}: {reg['online']}; {label('inventory_at', lang)} "
            f"{reg['generated_at']})"
        )
    pending = "—" if reg["outbox_pending"] is None else str(reg["outbox_pending"])
    lines.append(f"  {label('outbox_pending', lang)}: {pending}")
    return "\n".join(lines)
