"""Carrying out the quota engine's curtailment plans.

The plan is pure (``quota.curtail``); this module feeds it the miners as the agent last saw
them, remembers when each miner was switched (so minimum on/off times hold across cycles), and —
only with ``[quota] enforce = true`` — sends the sleep/wake commands through the collectors'
control side. Without enforcement the plan is logged and written to telemetry, nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from agent.config import KuatConfig
from agent.state import SiteState
from collectors.capabilities import ActionResult
from collectors.cgminer import control
from collectors.cgminer.models import estimated_power_w
from collectors.readings import AsicReading
from quota.curtail import ActionKind, CurtailPlan, CurtailPolicy, MinerState, plan
from quota.evaluate import QuotaStatus
from quota.messages import render
from quota.orders import CurtailmentOrder, OrderBook, limit_kw, limit_reason, tighter
from uplink.lineproto import encode_point

log = logging.getLogger("kuat.curtail")

# Commands sent at once: a burst of hundreds of TCP sessions is pointless when each miner
# needs seconds to confirm anyway.
MAX_PARALLEL_ACTIONS = 32


class Curtailer:
    def __init__(self, cfg: KuatConfig, state: SiteState) -> None:
        q = cfg.quota
        self.cfg = cfg
        self.state = state
        self.enforce = q.enforce
        self.lang = cfg.agent.language
        self.policy = CurtailPolicy(
            min_on_s=q.min_on_s,
            min_off_s=q.min_off_s,
            hysteresis_kw=q.hysteresis_kw,
            margin_kw=q.margin_kw,
        )
        self.switched: dict[str, datetime] = {}
        # What a miner draws and makes when mining: waking it adds that, not its sleep figures.
        self._mining: dict[str, tuple[float | None, float | None]] = {}
        self._executing: asyncio.Task[list[ActionResult]] | None = None
        self._last_logged: tuple[tuple[str, str], ...] | None = None
        self.results: list[ActionResult] = []
        self.last_plan: CurtailPlan | None = None
        self._binding_order: tuple[str, str] | None = None

    def _miners(self) -> tuple[list[MinerState], dict[str, AsicReading]]:
        out: list[MinerState] = []
        by_id: dict[str, AsicReading] = {}
        for r in self.state.asic_readings():
            did = r.device_id
            by_id[did] = r
            # Stock Antminers report no power: plan with the spec-sheet figure scaled by hashrate.
            power_w = r.power_w or estimated_power_w(r.model, r.hashrate_ths)
            if r.state == "mining" and power_w:
                self._mining[did] = (power_w, r.hashrate_ths)
            asleep = r.state == "sleeping"
            power, hashrate = (
                self._mining.get(did, (None, None)) if asleep else (power_w, r.hashrate_ths)
            )
            out.append(MinerState(did, power, hashrate, asleep, self.switched.get(did)))
        return out, by_id

    def run(self, status: QuotaStatus, now: datetime, orders: OrderBook | None = None) -> list[str]:
        """Plan (and with enforcement, start carrying out) one cycle; return telemetry lines."""
        if self._executing is not None and not self._executing.done():
            return []  # the previous plan's commands are still being confirmed
        miners, by_id = self._miners()
        order_kw, order = limit_kw(orders, now) if orders is not None else (None, None)
        allowed = tighter(status.allowed_kw, order_kw)
        self._log_order(order if order_kw is not None and order_kw == allowed else None)
        p = plan(allowed, miners, now, self.policy, load_kw=status.p_kw)
        self.last_plan = p
        self._log_plan(p)
        if self.enforce and p.actions:
            for a in p.actions:
                self.switched[a.device_id] = now
            self._executing = asyncio.get_running_loop().create_task(self._execute(p, by_id))
        sleeps = sum(1 for a in p.actions if a.kind == ActionKind.SLEEP)
        line = encode_point(
            "curtail",
            {"site": self.cfg.site.id, "mode": "enforce" if self.enforce else "dry_run"},
            {
                "allowed_kw": p.allowed_kw,
                "order_kw": order_kw,
                "load_kw": p.load_kw,
                "planned_load_kw": p.planned_load_kw,
                "sleep_actions": sleeps,
                "restore_actions": len(p.actions) - sleeps,
                "held": len(p.held),
                "miners_asleep": sum(1 for m in miners if m.asleep),
            },
            now,
        )
        return [line] if line else []

    def _log_order(self, order: CurtailmentOrder | None) -> None:
        """Say once when an external order starts (or stops) being the binding limit."""
        key = order.key if order is not None else None
        if key == self._binding_order:
            return
        self._binding_order = key
        if order is not None:
            log.warning("%s", render(limit_reason(order), self.lang))
        else:
            log.info("no curtailment order binds any more")

    def _log_plan(self, p: CurtailPlan) -> None:
        key = tuple((a.device_id, a.kind.value) for a in p.actions)
        if key == self._last_logged:
            return
        self._last_logged = key
        if not p.actions:
            return
        mode = "enforcing" if self.enforce else "dry run ([quota] enforce = false)"
        kw = sum(a.power_w for a in p.actions) / 1000
        kinds = {a.kind.value for a in p.actions}
        log.warning(
            "curtailment plan, %s: %s %d miners (%.1f kW); load %.1f kW, allowed %.1f kW — %s",
            mode,
            "/".join(sorted(kinds)),
            len(p.actions),
            kw,
            p.load_kw,
            p.allowed_kw or 0.0,
            render(p.reason, self.lang),
        )

    async def _execute(self, p: CurtailPlan, by_id: dict[str, AsicReading]) -> list[ActionResult]:
        gate = asyncio.Semaphore(MAX_PARALLEL_ACTIONS)

        async def one(device_id: str, kind: ActionKind, why: str) -> ActionResult:
            r = by_id.get(device_id)
            if r is None or r.firmware_family is None:
                return ActionResult(device_id, kind.value, "unsupported", "firmware not known")
            act = control.sleep if kind == ActionKind.SLEEP else control.wake
            extra: dict[str, object] = {}
            if r.firmware_family == "bitmain":
                # Stock firmware switches through its web UI and restarts its miner process:
                # sleeping takes tens of seconds, hashing again after a wake takes minutes.
                a = self.cfg.asic
                extra = {
                    "web_port": a.web_port or 80,
                    "web_username": a.web_username,
                    "web_password": a.web_password.get(),
                    "confirm_s": 60.0 if kind == ActionKind.SLEEP else 180.0,
                }
            async with gate:
                return await act(r.ip, r.port, r.firmware_family, why, **extra)

        results = await asyncio.gather(
            *(one(a.device_id, a.kind, render(a.reason, self.lang)) for a in p.actions)
        )
        for a, res in zip(p.actions, results, strict=True):
            level = logging.INFO if res.outcome == "done" else logging.ERROR
            log.log(level, "%s %s: %s (%s)", a.kind.value, a.device_id, res.outcome, res.detail)
        self.results = list(results)
        return self.results

    async def wait(self) -> None:
        if self._executing is not None:
            await asyncio.gather(self._executing, return_exceptions=True)

    async def cancel(self) -> None:
        if self._executing is not None and not self._executing.done():
            self._executing.cancel()
        await self.wait()
