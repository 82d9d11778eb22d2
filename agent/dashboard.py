"""The agent's own web server: a page for the farm's operators (status, the hour, power
explained, the curtailment plan, every miner), the same as JSON (/api/status, /api/miners,
/api/curtailment), a health check for systemd/monitoring, and Prometheus metrics.

Read-only by design: no handler changes anything. Who may read it is the guard's
(agent.dashboard_guard): only the Host names it is reached by (against DNS rebinding), and a
token whenever it listens beyond loopback. It runs on the agent's event loop and reads what the
jobs already keep (``SiteState``, the curtailer's plan, the spool's counters, the ledger); a
request never polls a device. Every device-supplied string reaches the page through Jinja2
autoescaping. The page's sections live in the agent/dashboard_*.py modules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from kuat.agent.dashboard_charts import day_chart, hour_chart, power_chart
from kuat.agent.dashboard_curtail import (
    CurtailmentView,
    curtailment_json,
    curtailment_view,
    held_now,
)
from kuat.agent.dashboard_format import iso_utc, site_time
from kuat.agent.dashboard_guard import Guard
from kuat.agent.dashboard_hour import HourView, history
from kuat.agent.dashboard_miners import (
    Fleet,
    MinerPage,
    MinerQuery,
    QueryError,
    outlet_watts,
    page_json,
    parse_query,
    select,
)
from kuat.agent.dashboard_page import (
    curtail_context,
    hour_context,
    href,
    miners_context,
    power_context,
)
from kuat.agent.dashboard_power import PowerExplained, explain
from kuat.agent.i18n import (
    LANGS,
    Lang,
    device_kind,
    fault_cause,
    job_name,
    message,
    number,
    quantity,
    t,
)
from kuat.agent.i18n import labels as ui_labels
from kuat.agent.i18n import render as render_reason
from kuat.agent.metrics import metrics_text
from kuat.agent.state import StatusSnapshot, snapshot
from kuat.collectors.readings import DeviceError, PduReading
from kuat.quota.clock import ASTANA
from kuat.quota.reasons import Reason
from kuat.quota.schedule import EnergySource
from kuat.uplink.spool import SpoolStats

if TYPE_CHECKING:
    from kuat.agent.runtime import Agent

log = logging.getLogger("kuat.dashboard")

REFRESH_S = 10
# A job is stale when it has not completed for this many of its intervals: one late cycle is
# normal (a slow poll, a coalesced run); three in a row means the job is stuck or failing.
STALE_AFTER_INTERVALS = 3
# A hall losing its switch can put thousands of miners in the table; the page shows the first
# ones, /api/status lists them all.
PAGE_ROWS = 200
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LANG_NAMES: dict[Lang, str] = {"kk": "Қазақша", "ru": "Русский", "en": "English"}
_STATUS_CLASS = {
    "ok": "good",
    "pass": "good",
    "exempt": "good",
    "warn": "warn",
    "check": "warn",
    "no_allocation": "warn",
    "over": "bad",
    "fail": "bad",
    "alarm": "bad",
}

_templates = Environment(
    loader=PackageLoader("kuat.agent", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


# --- what a request sees ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobHealth:
    name: str
    interval_s: float
    cycles: int
    last_success: datetime | None
    last_error: str | None
    state: str  # "ok", "starting" (first cycle not done yet) or "stale"

    def age_s(self, now: datetime) -> float | None:
        return (now - self.last_success).total_seconds() if self.last_success else None


@dataclass(frozen=True, slots=True)
class View:
    """Everything one response shows, gathered once so the page, JSON and metrics agree."""

    now: datetime
    snap: StatusSnapshot
    spool: SpoolStats
    down: list[DeviceError]
    jobs: list[JobHealth]
    offenders: tuple[Any, ...]  # quota.pools.PoolOffender
    # allocation documents refused, by source, with their reasons (QuotaJob.refused)
    refused: Mapping[str, tuple[Reason, ...]] = dataclasses.field(default_factory=dict)

    @property
    def health(self) -> str:
        states = {j.state for j in self.jobs}
        if "stale" in states:
            return "stale"
        return "starting" if "starting" in states or not self.jobs else "ok"


def job_health(agent: Agent, now: datetime) -> list[JobHealth]:
    started = agent.started_at or now
    out = []
    for spec in agent.jobs():
        last = agent.job_success_at.get(spec.name)
        limit = STALE_AFTER_INTERVALS * spec.interval_s
        if last is not None:
            state = "ok" if (now - last).total_seconds() <= limit else "stale"
        else:
            # Never completed: only a problem once it has had three intervals to do so.
            state = "starting" if (now - started).total_seconds() <= limit else "stale"
        out.append(
            JobHealth(
                spec.name,
                spec.interval_s,
                agent.state.cycles.get(spec.name, 0),
                last,
                agent.state.last_errors.get(spec.name),
                state,
            )
        )
    return out


async def gather(agent: Agent) -> View:
    # The spool counts are SQLite queries behind a lock a flush may hold: off the event loop.
    counts = await asyncio.to_thread(agent.uplinks.spool.counts)
    now = agent.clock()
    state = agent.state
    snap = snapshot(state, now, spool_pending=counts.pending, outbox_pending=counts.outbox)
    down = sorted(state.down_devices(), key=lambda e: (str(e.kind), e.device_id))
    offenders = tuple(getattr(state.pools, "offenders", ()))
    refused = dict(agent.quota.refused)
    return View(now, snap, counts, down, job_health(agent, now), offenders, refused)


@dataclass(frozen=True, slots=True)
class Detail:
    """The hour and power explained: for the page and /api/status alike."""

    hour: HourView
    power: PowerExplained


async def gather_detail(agent: Agent, v: View) -> Detail:
    state = agent.state
    meter = agent.cfg.site_meter
    source = state.quota.source if state.quota is not None else EnergySource.GRID
    # the ledger is SQLite behind a lock the meter job's writes take: off the event loop
    bars = await asyncio.to_thread(
        history,
        agent.ledger,
        meter.name if meter is not None else None,
        agent.quota.book,
        agent.cfg.site.id,
        source,
        v.now,
    )
    pdus = [p for p in state.pdus.values() if isinstance(p, PduReading)]
    power = explain(
        v.snap.metered_kw,
        pdus,
        state.asic_readings(),
        agent.quota.balance_policy,
        pdus_cover_site=agent.cfg.balance.pdus_cover_site,
        result=state.balance,
    )
    return Detail(HourView.of(state.quota, bars, v.now), power)


def miner_page(agent: Agent, cv: CurtailmentView, q: MinerQuery) -> MinerPage:
    """One page of the miners table: every miner filtered and sorted, one page of rows."""
    state = agent.state
    return select(Fleet(state.asics, outlet_watts(agent.cfg, state.pdus), cv), q)


# --- language ---------------------------------------------------------------------------


def choose_lang(query: str | None, accept: str | None, default: Lang) -> Lang:
    """?lang= first, then the browser's Accept-Language, then the config's language."""
    if query in LANGS:
        return query
    best: tuple[float, int, Lang] | None = None
    for order, part in enumerate((accept or "").split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGS:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and (best is None or (q, -order) > (best[0], best[1])):
            best = (q, -order, primary)
    return best[2] if best else default


# --- formatting -------------------------------------------------------------------------


def _status(code: str | None, lang: Lang) -> dict[str, str]:
    if code is None:
        return {"text": t("no_data", lang), "cls": "none"}
    return {"text": t(code, lang), "cls": _STATUS_CLASS.get(code, "")}


def _num(v: float | None, unit: str, lang: Lang, scale: float = 1.0) -> str:
    # grouped the reader's way: "2,072" reads as 2.072 in Russian
    return quantity(None if v is None else v / scale, unit, lang, 1)


def page_rows(v: View, lang: Lang) -> list[dict[str, Any]]:
    s = v.snap
    sleeping = (
        f" (+{message('ui.sleeping_count', lang, count=s.miners_sleeping)})"
        if s.miners_sleeping
        else ""
    )
    pools = _status(s.pools_status, lang)
    if s.pools_offenders:
        count = message("ui.offenders_count", lang, count=s.pools_offenders)
        pools = {**pools, "text": f"{pools['text']} ({count})"}
    stale = [job_name(j.name, lang) for j in v.jobs if j.state == "stale"]
    jobs = {
        "ok": {"text": t("ok", lang), "cls": "good"},
        "starting": {"text": t("starting", lang), "cls": "warn"},
        "stale": {"text": f"{t('stale', lang)}: {', '.join(stale)}", "cls": "bad"},
    }[v.health]
    plain = [
        ("miners_up", f"{s.miners_up} / {s.miners_total}{sleeping}"),
        ("hashrate", _num(s.hashrate_ths, "ths", lang)),
        ("miners_power", _num(s.miners_power_w, "kw", lang, 1000)),
        ("pdu_power", _num(s.pdu_power_w, "kw", lang, 1000)),
        ("metered_power", _num(s.metered_kw, "kw", lang)),
        (
            "energy_hour",
            f"{_num(s.energy_hour_kwh, 'kwh', lang)} / {_num(s.allocation_kwh, 'kwh', lang)}",
        ),
        ("forecast", _num(s.forecast_kwh, "kwh", lang)),
    ]
    rows: list[dict[str, Any]] = [{"label": t(k, lang), "text": val, "cls": ""} for k, val in plain]
    rows += [
        {"label": t("quota_status", lang), **_status(s.quota_status, lang)},
        {"label": t("grid_status", lang), **_status(s.grid_status, lang)},
        {"label": t("pool_status", lang), **pools},
        {"label": t("balance", lang), **_status(s.balance_status, lang)},
        {
            "label": t("devices_down", lang),
            "text": str(s.devices_down),
            "cls": "bad" if s.devices_down else "",
        },
        {
            "label": t("uplink", lang),
            "text": f"{t('telemetry', lang)} {number(s.spool_pending, lang)} · "
            f"{t('register', lang)} {number(s.outbox_pending, lang)}",
            "cls": "",
        },
        {"label": t("jobs", lang), **jobs},
    ]
    # an allocation file refused shows here with its reasons, not only in the journal
    for source, reasons in sorted(v.refused.items()):
        text = "; ".join(render_reason(r, lang) for r in reasons)
        rows.append(
            {"label": t("allocation_refused", lang), "text": f"{source}: {text}", "cls": "bad"}
        )
    return rows


def render_page(
    agent: Agent,
    v: View,
    lang: Lang,
    detail: Detail,
    miners: MinerPage,
    cv: CurtailmentView,
    *,
    bad_query: str | None = None,
) -> str:
    labels = ui_labels(lang)
    down = [
        {
            "kind": device_kind(str(e.kind), lang),
            "device": e.device_id,
            "cause": fault_cause(e.cause, lang),
            "at": site_time(e.taken_at),
        }
        for e in v.down[:PAGE_ROWS]
    ]
    offenders = [
        {
            "device": o.device_id,
            "pool": o.pool_url or "—",
            "reason": render_reason(o.reason, lang),
        }
        for o in v.offenders[:PAGE_ROWS]
    ]
    holding = held_now(cv, agent.state.asic_readings())
    here = miners.query.params()
    return _templates.get_template("dashboard.html").render(
        lang=lang,
        langs=[(code, LANG_NAMES[code], href(code, here)) for code in LANGS],
        t=labels,
        site=agent.cfg.site,
        updated=site_time(v.snap.at),
        refresh_s=REFRESH_S,
        rows=page_rows(v, lang),
        down=down,
        down_more=max(0, len(v.down) - PAGE_ROWS),
        offenders=offenders,
        offenders_more=max(0, len(v.offenders) - PAGE_ROWS),
        offenders_count=message("ui.offenders_count", lang, count=len(v.offenders)),
        hour=hour_context(detail.hour, lang),
        hour_svg=hour_chart(detail.hour, labels, lang),
        day_svg=day_chart(detail.hour.bars, labels, lang),
        power=power_context(detail.power, lang),
        power_svg=power_chart(detail.power, labels, lang),
        curtail=curtail_context(cv, holding, lang),
        miners=miners_context(miners, lang),
        bad_query=bad_query,
    )


# --- JSON -------------------------------------------------------------------------------


def status_json(agent: Agent, v: View, detail: Detail | None = None) -> dict[str, Any]:
    """/api/status: the snapshot's fields under their own names, then the lists behind them,
    then the hour and power explained as the page shows them."""
    s = v.snap
    out: dict[str, Any] = {
        "site": agent.cfg.site.id,
        "at": iso_utc(s.at),
        "at_site": s.at.astimezone(ASTANA).isoformat(timespec="seconds"),
    }
    for f in dataclasses.fields(StatusSnapshot):
        if f.name != "at":
            out[f.name] = getattr(s, f.name)
    out["health"] = v.health
    out["down"] = [
        {
            "kind": str(e.kind),
            "device_id": e.device_id,
            "host": e.host,
            "port": e.port,
            "cause": e.cause,
            "at": iso_utc(e.taken_at),
        }
        for e in v.down
    ]
    out["allocations_refused"] = [
        {
            "source": source,
            "reasons": [{"code": str(r.code), "params": dict(r.params)} for r in reasons],
        }
        for source, reasons in sorted(v.refused.items())
    ]
    out["pool_offenders"] = [
        {
            "device_id": o.device_id,
            "ip": o.ip,
            "pool_url": o.pool_url,
            "reason": str(o.reason.code),
        }
        for o in v.offenders
    ]
    if detail is not None:
        out["hour"] = detail.hour.json()
        out["power_explained"] = detail.power.json()
    return out


def health_json(v: View) -> dict[str, Any]:
    return {
        "status": v.health,
        "at": iso_utc(v.now),
        "stale": [j.name for j in v.jobs if j.state == "stale"],
        "jobs": {
            j.name: {
                "state": j.state,
                "interval_s": j.interval_s,
                "cycles": j.cycles,
                "last_success": iso_utc(j.last_success),
                "age_s": None if j.last_success is None else round(j.age_s(v.now) or 0.0, 3),
                "last_error": j.last_error,
            }
            for j in v.jobs
        },
    }


# --- server -----------------------------------------------------------------------------


def make_app(agent: Agent, guard: Guard) -> web.Application:
    default_lang: Lang = agent.cfg.agent.language

    def lang_of(request: web.Request) -> Lang:
        return choose_lang(
            request.query.get("lang"), request.headers.get("Accept-Language"), default_lang
        )

    async def page(request: web.Request) -> web.Response:
        lang = lang_of(request)
        bad = None
        try:
            q = parse_query(request.query, strict=False)
        except QueryError as exc:
            # a hand-edited address still shows the page, with what was not understood
            q, bad = MinerQuery(), str(exc)
        v = await gather(agent)
        cv = curtailment_view(agent.curtailer)
        html = render_page(
            agent,
            v,
            lang,
            await gather_detail(agent, v),
            miner_page(agent, cv, q),
            cv,
            bad_query=bad,
        )
        return web.Response(
            text=html,
            content_type="text/html",
            charset="utf-8",
            headers={
                "Content-Language": lang,
                "Cache-Control": "no-store",
                "Vary": "Accept-Language",
            },
        )

    async def api_status(request: web.Request) -> web.Response:
        v = await gather(agent)
        return web.json_response(status_json(agent, v, await gather_detail(agent, v)), dumps=_dumps)

    async def api_miners(request: web.Request) -> web.Response:
        try:
            q = parse_query(request.query)
        except QueryError as exc:
            return web.json_response(
                {"error": str(exc), "param": exc.param}, status=400, dumps=_dumps
            )
        page = miner_page(agent, curtailment_view(agent.curtailer), q)
        return web.json_response(page_json(page, lang_of(request)), dumps=_dumps)

    async def api_curtailment(request: web.Request) -> web.Response:
        body = curtailment_json(
            curtailment_view(agent.curtailer), agent.state.asic_readings(), lang_of(request)
        )
        return web.json_response(body, dumps=_dumps)

    async def healthz(request: web.Request) -> web.Response:
        v = await gather(agent)
        return web.json_response(
            health_json(v), status=200 if v.health == "ok" else 503, dumps=_dumps
        )

    async def metrics(request: web.Request) -> web.Response:
        body = metrics_text(agent, await gather(agent))
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    # The guard runs first: a request for a foreign Host or without the token sees nothing.
    app = web.Application(middlewares=[guard.middleware(lang_of)])
    # GET only (aiohttp answers HEAD for GET routes): nothing here changes the agent.
    app.router.add_get("/", page)
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/api/miners", api_miners)
    app.router.add_get("/api/curtailment", api_curtailment)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


class Dashboard:
    def __init__(self, agent: Agent, host: str, port: int, *, guard: Guard | None = None) -> None:
        """``guard``: who may read it; by default from ``[dashboard]`` for ``host`` (tests pass
        their own to check the rules of an address they do not bind)."""
        self.agent = agent
        self.host = host
        self.port = port
        guard = guard if guard is not None else Guard.for_listen(host, agent.cfg.dashboard)
        # access_log=None: a page refreshing every 10 s and a scraper would flood the journal
        # (and a ?token= sign-in must never reach a log).
        # shutdown_timeout: a browser's keep-alive must not hold up the agent's stop.
        self._runner = web.AppRunner(make_app(agent, guard), access_log=None, shutdown_timeout=1.0)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        if self.port == 0:  # tests ask the OS for a free port
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        await self._runner.cleanup()


async def start_dashboard(agent: Agent) -> Dashboard | None:
    """Start the dashboard if configured. A port in use (or any other failure) is logged once and
    the agent runs on without it: monitoring the farm matters more than the page."""
    address = agent.cfg.dashboard.address()
    if address is None:
        return None
    host, port = address
    dashboard = Dashboard(agent, host, port)
    try:
        await dashboard.start()
    except OSError as exc:
        log.error(
            "dashboard not started: cannot listen on %s:%d (%s); the agent runs on without it",
            host,
            port,
            exc.strerror or exc,
        )
        return None
    except Exception:
        log.exception("dashboard not started on %s:%d; the agent runs on without it", host, port)
        return None
    log.info("dashboard on %s", dashboard.url)
    return dashboard
