"""What the page's new sections show, as plain values for the template: the miners table (with
its sort, filter and page links), the hour, power explained and the curtailment plan. Every
label comes from the i18n catalogue; device-supplied text stays text (the template escapes it).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from kuat.agent.dashboard_curtail import CurtailmentView
from kuat.agent.dashboard_format import NONE, num, site_hm
from kuat.agent.dashboard_hour import HourView
from kuat.agent.dashboard_miners import (
    CURTAIL_STATES,
    SOURCES,
    STATES,
    MinerPage,
    MinerRow,
)
from kuat.agent.dashboard_power import PowerExplained
from kuat.agent.i18n import Lang, render, t

# Rows of the plan's actions and of the curtailed miners on the page; /api/curtailment has all.
PLAN_ROWS = 200
COLUMNS = (
    ("id", "miner"),
    ("ip", "address"),
    ("state", "state"),
    ("model", "model"),
    ("firmware", "firmware"),
    ("hashrate", "col_hashrate"),
    ("power", "power"),
    ("efficiency", "efficiency"),
    ("temp", "temp"),
    ("pool", "pool"),
    ("faults", "faults"),
    ("curtailment", "curtailment"),
)
_STATE_CLASS = {"mining": "good", "sleeping": "warn", "error": "bad", "down": "bad"}


def href(lang: Lang, params: Mapping[str, str]) -> str:
    return "?" + urlencode({"lang": lang, **params})


def miners_context(page: MinerPage, lang: Lang) -> dict[str, Any]:
    q = page.query
    head = []
    for key, label in COLUMNS:
        current = q.sort == key
        desc = not q.descending if current else key in ("hashrate", "power", "temp", "faults")
        head.append(
            {
                "key": key,
                "label": t(label, lang),
                "href": href(lang, q.params(sort=key, order="desc" if desc else "", page="")),
                "arrow": ("▼" if q.descending else "▲") if current else "",
                "aria": ("descending" if q.descending else "ascending") if current else "none",
            }
        )
    keep = {k: v for k, v in q.params().items() if k in ("sort", "order", "per_page")}
    return {
        "head": head,
        "rows": [_row(r, lang) for r in page.rows],
        "total": page.total,
        "matched": page.matched,
        "page": q.page,
        "pages": page.pages,
        "prev": href(lang, q.params(page=str(q.page - 1) if q.page > 2 else ""))
        if q.page > 1
        else None,
        "next": href(lang, q.params(page=str(q.page + 1))) if q.page < page.pages else None,
        "query": q,
        "keep": keep,
        "states": [(s, t(f"st_{s}", lang)) for s in STATES],
        "sources": [(s, t(f"src_{s}", lang)) for s in SOURCES],
        "curtail_states": [(s, t(f"cs_{s}", lang)) for s in CURTAIL_STATES],
        "reset": href(lang, {}),
    }


def _row(r: MinerRow, lang: Lang) -> dict[str, Any]:
    c = r.curtail
    curtail = t(f"cs_{c.state}", lang)
    if c.state == "limited" and c.limit_w is not None:
        curtail += f" {num(c.limit_w, 'W', digits=0, lang=lang)}"
    if c.since is not None:
        curtail += f" ({t('since', lang)} {site_hm(c.since)})"
    planned = None
    if c.planned is not None:
        planned = f"{t('planned', lang)}: {t('act_' + c.planned.kind.value, lang)}"
    a = r.reading
    faults = list(r.errors)
    if a is not None:
        faults += [f"{f.code}: {f.text}" for f in a.faults]
    return {
        "id": r.id,
        "address": f"{r.ip}:{r.port}",
        "state": t(f"st_{r.state}", lang),
        "state_key": r.state,
        "state_cls": _STATE_CLASS.get(r.state, ""),
        "model": (a.model if a else None) or NONE,
        "firmware": " ".join(x for x in (a.firmware_family, a.firmware) if x) if a else NONE,
        "hashrate": num(a.hashrate_ths if a else None, "TH/s", lang=lang),
        "power": num(r.power_w, "W", digits=0, lang=lang),
        "source": t(f"src_{r.power_source or 'none'}", lang),
        "source_key": r.power_source or "none",
        "efficiency": num(r.j_per_th, "J/TH", lang=lang),
        "temp": num(r.temp_max_c, "°C", digits=0, lang=lang),
        "pool": r.pool or NONE,
        "faults": faults,
        "curtail": curtail,
        "curtail_key": c.state,
        "planned": planned,
    }


def hour_context(h: HourView, lang: Lang) -> dict[str, Any]:
    return {
        "status": t(h.status, lang) if h.status else t("no_data", lang),
        "status_cls": {"ok": "good", "warn": "warn", "over": "bad"}.get(h.status or "", "none"),
        "hour_ending": h.hour_ending,
        "used": num(h.used_kwh, "kWh", lang=lang),
        "allocation": num(h.allocation_kwh, "kWh", lang=lang),
        "forecast": num(h.forecast_kwh, "kWh", lang=lang),
        "remaining": num(h.remaining_kwh, "kWh", lang=lang),
        "allowed": num(h.allowed_kw, "kW", lang=lang),
        "minutes_left": NONE if h.minutes_left is None else f"{h.minutes_left:.0f}",
    }


def power_context(p: PowerExplained, lang: Lang) -> dict[str, Any]:
    levels = []
    for lv in p.levels:
        remainder = lv.remainder_kw
        levels.append(
            {
                "name": t(f"sum_{lv.name}", lang),
                "key": lv.name,
                "kw": num(lv.kw, "kW", lang=lang),
                "overhead": num(lv.overhead_kw, "kW", lang=lang),
                "accounted": num(lv.accounted_kw, "kW", lang=lang),
                "remainder": NONE
                if remainder is None
                else ("+" if remainder >= 0 else "") + num(remainder, "kW", lang=lang),
                "compared": lv.compared,
            }
        )
    reasons = [render(r, lang) for r in p.result.reasons] if p.result is not None else []
    return {
        "meter": num(p.meter_kw, "kW", lang=lang),
        "levels": levels,
        "unreported": p.miners_unreported,
        "status": t(p.status, lang) if p.status else t("no_data", lang),
        "status_cls": {"ok": "good", "check": "warn", "alarm": "bad"}.get(p.status or "", "none"),
        "reasons": reasons,
    }


def curtail_context(
    v: CurtailmentView, held_now: Mapping[str, list[dict[str, Any]]], lang: Lang
) -> dict[str, Any]:
    """``held_now``: /api/curtailment's asleep, limited and outlets_off lists."""
    p = v.plan
    actions = []
    if p is not None:
        for a in p.actions[:PLAN_ROWS]:
            actions.append(
                {
                    "device": a.device_id,
                    "action": t(f"act_{a.kind.value}", lang),
                    "kw": num(a.power_w, "kW", 1000, lang=lang),
                    "reason": render(a.reason, lang),
                }
            )
    now: list[dict[str, str]] = []
    for key, state in (("asleep", "asleep"), ("limited", "limited"), ("outlets_off", "outlet_off")):
        for m in held_now[key]:
            text = t(f"cs_{state}", lang)
            if m.get("limit_w") is not None:
                text += f" {num(m['limit_w'], 'W', digits=0, lang=lang)}"
            since = m["since"]
            at = site_hm(datetime.fromisoformat(since)) if since else NONE
            now.append({"device": m["device_id"], "state": text, "since": at})
    now.sort(key=lambda x: x["device"])
    return {
        "mode": t("mode_enforce" if v.enforce else "mode_dry_run", lang),
        "mode_key": "enforce" if v.enforce else "dry_run",
        "plan": None
        if p is None
        else {
            "allowed": num(p.allowed_kw, "kW", lang=lang),
            "load": num(p.load_kw, "kW", lang=lang),
            "planned_load": num(p.planned_load_kw, "kW", lang=lang),
            "reason": render(p.reason, lang),
            "held": [render(r, lang) for r in p.held],
        },
        "actions": actions,
        "actions_more": max(0, len(p.actions) - PLAN_ROWS) if p is not None else 0,
        "now": now[:PLAN_ROWS],
        "now_more": max(0, len(now) - PLAN_ROWS),
    }
