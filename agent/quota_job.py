"""The quota job: the I/O around the pure ``quota`` package.

It reads allocation files when they change (a new schedule takes effect without a restart, a
refused one keeps the previous and says why), hands the site meter's history to ``evaluate``,
runs the checklist checks, logs status changes in the operator's language and returns the
``quota``/``compliance`` points for the telemetry spool.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from kuat.agent.config import KuatConfig
from kuat.agent.i18n import render
from kuat.agent.order_book import PersistentOrderBook
from kuat.agent.state import SiteState
from kuat.collectors.readings import MeterReading, PduReading
from kuat.quota.balance import (
    AlarmFilter,
    BalancePolicy,
    BalanceState,
    balance_from_readings,
)
from kuat.quota.checks import CheckStatus
from kuat.quota.clock import hour_of
from kuat.quota.energy import MeterSample
from kuat.quota.evaluate import QuotaPolicy, QuotaState, QuotaStatus, evaluate, reads_since
from kuat.quota.grid import check_grid_connection
from kuat.quota.orders import OrderOutcome
from kuat.quota.pools import check_pools
from kuat.quota.reasons import Reason
from kuat.quota.schedule import BookOutcome, ScheduleBook
from kuat.uplink.lineproto import encode_point

log = logging.getLogger("kuat.quota")

SCHEDULE_SUFFIXES = {".csv": "csv", ".json": "json"}
_STATE_CODE = {
    QuotaState.OK: 0,
    QuotaState.WARN: 1,
    QuotaState.OVER: 2,
    QuotaState.NO_ALLOCATION: 3,
    QuotaState.NO_DATA: 4,
}
_BALANCE_CODE = {
    BalanceState.OK: 0,
    BalanceState.CHECK: 1,
    BalanceState.ALARM: 2,
    BalanceState.UNKNOWN: 3,
}
_CHECK_CODE = {
    CheckStatus.PASS: 0,
    CheckStatus.EXEMPT: 1,
    CheckStatus.FAIL: 2,
    CheckStatus.UNKNOWN: 3,
}


def readings_from(history: Iterable[MeterReading], since: datetime) -> list[MeterReading]:
    """The readings taken at or after ``since`` and the last one before it (a step that
    straddles it), in the history's order; a reading without a time zone is kept (evaluate
    drops it, as it would from the whole history)."""
    before: MeterReading | None = None
    out: list[MeterReading] = []
    for r in history:
        if r.taken_at.utcoffset() is None or r.taken_at >= since:
            out.append(r)
        elif before is None or r.taken_at >= before.taken_at:
            before = r
    return out if before is None else [before, *out]


class QuotaJob:
    def __init__(self, cfg: KuatConfig, state: SiteState, state_dir: Path) -> None:
        self.cfg = cfg
        self.state = state
        self.lang = cfg.agent.language
        self.book = ScheduleBook()
        # actuation_s: a decision follows the site meter's reading, so the present draw goes
        # on for one meter interval plus the firmware's apply time (the agent passes the
        # latter, learned, to each evaluation)
        self.policy = QuotaPolicy(
            warn_fraction=cfg.quota.warn_fraction,
            tolerance_kwh=cfg.quota.tolerance_kwh,
            actuation_s=cfg.intervals.meter,
            decision_window_s=cfg.quota.decision_window_s,
            spike_kwh=cfg.quota.spike_kwh,
            spike_s=cfg.quota.spike_s,
        )
        self.grid = cfg.grid.connection() if cfg.grid else None
        b = cfg.balance
        self.balance_policy = BalancePolicy(
            overhead_kw=b.overhead_kw,
            overhead_fraction=b.overhead_fraction,
            tolerance_kw=b.tolerance_kw,
            tolerance_fraction=b.tolerance_fraction,
        )
        self.balance_alarm = AlarmFilter(b.alarm_after_s)
        self._seen: dict[Path, float] = {}
        # On disk: a withdrawn order replayed after a restart must stay withdrawn.
        self.orders = PersistentOrderBook(state_dir / "orders.db")
        o = cfg.quota.orders
        self._order_secrets = o.issuer_keys()
        self._order_limits = {
            "max_ahead": timedelta(hours=o.max_ahead_h),
            "max_skew": timedelta(seconds=o.max_skew_s),
        }
        self._last_status: dict[str, str] = {}
        self._peak_demand_kw: float | None = None
        # Allocation documents refused, by source, with every reason: until the source sends
        # one that is accepted, the report and the dashboard show it (not only the journal).
        self.refused: dict[str, tuple[Reason, ...]] = {}

    # --- schedules ----------------------------------------------------------------------

    def schedule_files(self) -> list[Path]:
        path = self.cfg.quota.schedules
        if path is None:
            return []
        if path.is_dir():
            return sorted(p for p in path.iterdir() if p.suffix.lower() in SCHEDULE_SUFFIXES)
        return [path]

    def reload_schedules(self) -> None:
        for path in self.schedule_files():
            try:
                mtime = path.stat().st_mtime
            except OSError as exc:
                self._note(f"file:{path}", "error", f"allocation file {path}: {exc.strerror}")
                continue
            if self._seen.get(path) == mtime:
                continue
            self._seen[path] = mtime
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                log.error("allocation file %s unreadable: %s", path, exc)
                continue
            self.offer_schedule(text, SCHEDULE_SUFFIXES[path.suffix.lower()], str(path))

    def reload_orders(self, now: datetime) -> None:
        directory = self.cfg.quota.orders.directory
        if directory is None:
            return
        try:
            paths = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".json")
        except OSError as exc:
            self._note(f"dir:{directory}", "error", f"orders directory {directory}: {exc}")
            return
        for path in paths:
            try:
                mtime = path.stat().st_mtime
                if self._seen.get(path) == mtime:
                    continue
                self._seen[path] = mtime
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                log.error("order file %s unreadable: %s", path, exc)
                continue
            self.offer_order(text, str(path), now)

    def offer_schedule(self, text: str, fmt: str, source: str) -> None:
        """A schedule text from anywhere (file, HTTP, MQTT); logged with its source."""
        kwargs: dict[str, object] = {"site": self.cfg.site.id, "description": source}
        if self.grid is not None:
            kwargs["max_mwh_per_hour"] = self.grid.permitted_mw
        change = self.book.offer(text, fmt, **kwargs)
        reasons = "; ".join(render(r, self.lang) for r in change.reasons)
        if change.outcome == BookOutcome.REFUSED:
            self.refused[source] = tuple(change.reasons)
            log.error("allocation %s refused, previous kept: %s", source, reasons)
        else:
            self.refused.pop(source, None)
            if change.outcome != BookOutcome.UNCHANGED:
                log.info("allocation %s: %s", source, reasons)

    def offer_order(self, text: str, source: str, now: datetime) -> None:
        """A curtailment order text; verified (HMAC) before it can limit anything."""
        change = self.orders.offer(
            text, self._order_secrets, now=now, site=self.cfg.site.id, **self._order_limits
        )
        reasons = "; ".join(render(r, self.lang) for r in change.reasons)
        if change.outcome == OrderOutcome.REFUSED:
            log.error("curtailment order from %s refused: %s", source, reasons)
        elif change.changed:
            log.warning("curtailment order from %s: %s", source, reasons)

    # --- evaluation ---------------------------------------------------------------------

    def evaluate_now(
        self,
        now: datetime,
        *,
        apply_s: float = 0.0,
        decision_since: datetime | None = None,
        landing: Sequence[tuple[float, float]] = (),
    ) -> QuotaStatus:
        """The quota against the freshest meter history: what a curtailment decision needs,
        run as each site-meter reading lands. ``apply_s``: how long the firmware present
        takes to act; ``decision_since``: when kuat's own actions last changed the plant;
        ``landing``: the commands in flight (kuat.quota.evaluate)."""
        # as each reading lands: only what this evaluation reads (reads_since), not the whole
        # two hours of history, rebuilt every second
        since = reads_since(now, self.policy)
        samples = [
            MeterSample.from_reading(r) for r in readings_from(self.state.site_meter_history, since)
        ]
        policy = replace(self.policy, actuation_s=self.policy.actuation_s + apply_s)
        status = evaluate(
            self.book,
            samples,
            now,
            policy,
            site=self.cfg.site.id,
            decision_since=decision_since,
            landing=landing,
        )
        self.state.quota = status
        self._note("quota", status.status.value, render(status.reason, self.lang))
        return status

    def run(
        self, now: datetime, *, apply_s: float = 0.0, decision_since: datetime | None = None
    ) -> list[str]:
        self.reload_schedules()
        self.reload_orders(now)
        day, _ = hour_of(now)
        self.book.prune(day - timedelta(days=1))
        for reason in self.orders.prune(now):
            log.info("%s", render(reason, self.lang))
        status = self.evaluate_now(now, apply_s=apply_s, decision_since=decision_since)
        # Only complete demand intervals count: a running one just after its start overstates.
        d = status.last_demand_kw
        if d is not None and (self._peak_demand_kw is None or d > self._peak_demand_kw):
            self._peak_demand_kw = d
        if self.grid is not None:
            self.state.grid = check_grid_connection(self.grid, self._peak_demand_kw)
        self.state.pools = check_pools(
            self.state.asic_readings(),
            self.cfg.compliance.accredited_pools,
            data_centre_registered=self.cfg.site.data_centre_registered,
            data_centre_id=self.cfg.site.data_centre_id,
        )
        meter = self.state.site_meter_history[-1] if self.state.site_meter_history else None
        pdus = [p for p in self.state.pdus.values() if isinstance(p, PduReading)]
        self.state.balance = self.balance_alarm(
            balance_from_readings(
                meter,
                pdus if self.cfg.balance.pdus_cover_site else [],
                self.state.asic_readings(),
                self.balance_policy,
            ),
            now,
        )
        self._log_changes(status)
        return self._points(status, now)

    def _log_changes(self, status: QuotaStatus) -> None:
        self._note("quota", status.status.value, render(status.reason, self.lang))
        checks = (
            ("grid", self.state.grid),
            ("pools", self.state.pools),
            ("balance", self.state.balance),
        )
        for name, result in checks:
            if result is not None:
                text = "; ".join(render(r, self.lang) for r in result.reasons)
                self._note(name, result.status.value, text)

    def _note(self, key: str, value: str, text: str) -> None:
        """Log a status only when it changes: the journal must stay readable for a year."""
        if self._last_status.get(key) == value:
            return
        self._last_status[key] = value
        level = (
            logging.WARNING
            if value in ("warn", "over", "fail", "error", "alarm", "check")
            else logging.INFO
        )
        log.log(level, "%s: %s — %s", key, value, text)

    def _points(self, s: QuotaStatus, now: datetime) -> list[str]:
        site = self.cfg.site.id
        lines = [
            encode_point(
                "quota",
                {"site": site, "source": s.source.value},
                {
                    "status_code": _STATE_CODE[s.status],
                    "hour_ending": s.hour_ending,
                    "allocation_kwh": s.allocation_kwh,
                    "used_kwh": s.used_kwh,
                    "forecast_kwh": s.forecast_kwh,
                    "remaining_kwh": s.remaining_kwh,
                    "allowed_kw": s.allowed_kw,
                    "margin_kwh": s.margin_kwh,
                    "p_kw": s.p_kw,
                    "demand_kw": s.demand_kw,
                    "under_use": int(s.under_use),
                },
                now,
            )
        ]
        for item, result in (("5", self.state.grid), ("7", self.state.pools)):
            if result is None:
                continue
            fields: dict[str, float | int | None] = {"status_code": _CHECK_CODE[result.status]}
            if item == "5":
                fields["peak_demand_kw"] = self._peak_demand_kw
            else:
                fields["offenders"] = len(result.offenders)
                fields["miners_checked"] = result.miners_checked
            lines.append(encode_point("compliance", {"site": site, "item": item}, fields, now))
        b = self.state.balance
        if b is not None:
            lines.append(
                encode_point(
                    "balance",
                    {"site": site},
                    {
                        "status_code": _BALANCE_CODE[b.status],
                        "meter_kw": b.meter_kw,
                        "pdu_kw": b.pdu_kw,
                        "miners_kw": b.miners_kw,
                        "miners_unreported": b.miners_unreported,
                    },
                    now,
                )
            )
        return [line for line in lines if line]
