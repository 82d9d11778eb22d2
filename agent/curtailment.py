"""Carrying out the quota engine's curtailment plans.

The plan is pure (``kuat.quota.curtail``); this module feeds it the miners as the agent last saw
them, remembers when each miner was switched (so minimum on/off times hold across cycles), and —
only with ``[quota] enforce = true`` — sends the sleep/wake commands through the collectors'
control side. Without enforcement the plan is logged and written to telemetry, nothing more.

Capabilities the planner is told about, per miner:

- power limit: firmware with a power target (LuxOS today) and ``[quota] power_limit``; steps
  of ``power_limit_step_pct`` of its full power (its draw, or profile watts, before our first
  limit) down to ``power_limit_min_pct``. A limit the firmware cannot run at ("unsupported",
  "refused") turns limits off for that miner, so it is slept instead.
- sleep: assumed until a sleep answers "unsupported" (remembered for good) or "failed"
  (remembered for ``SLEEP_RETRY_S``: a timeout may be passing).
- outlet: from ``[[pdu]] outlets``; only a miner that cannot sleep is ever cut there. A miner
  whose outlet we switched off is planned as down (whatever a stale reading says) until we
  switch it on again.

All of this memory lives in the process: after a restart, limits and outlets we set stay as they
are on the devices but are no longer known to be ours (not restored automatically).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from kuat.agent.config import KuatConfig, PduConfig
from kuat.agent.state import SiteState
from kuat.collectors.capabilities import ActionResult
from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.models import estimated_power_w
from kuat.collectors.readings import AsicReading
from kuat.collectors.snmp.collector import PduPoller
from kuat.quota.curtail import Action, ActionKind, CurtailPlan, CurtailPolicy, MinerState, plan
from kuat.quota.evaluate import QuotaStatus
from kuat.quota.messages import render
from kuat.quota.orders import CurtailmentOrder, OrderBook, limit_kw, limit_reason, tighter
from kuat.uplink.lineproto import encode_point

log = logging.getLogger("kuat.curtail")

# Commands sent at once: a burst of hundreds of TCP sessions is pointless when each miner
# needs seconds to confirm anyway.
MAX_PARALLEL_ACTIONS = 32
# A sleep that failed (timeout, no confirmation) may work next time: try again after this long.
SLEEP_RETRY_S = 3600.0
# Firmware families with a power target the control side can set.
POWER_LIMIT_FAMILIES = frozenset(
    {"luxos", "whatsminer", "whatsminer_v3", "braiins", "epic", "vnish"}
)
# How long a control action may take to show on the miner, by family: btminer restarts mining to
# apply a limit; stock bmminer restarts into a work mode, and hashes again minutes after a wake.
CONFIRM_S: dict[tuple[str, str], float] = {
    ("bitmain", "sleep"): 60.0,
    ("bitmain", "wake"): 180.0,
    ("whatsminer", "limit"): 120.0,
    ("whatsminer_v3", "limit"): 120.0,
    ("whatsminer", "wake"): 120.0,
    ("whatsminer_v3", "wake"): 120.0,
    ("epic", "wake"): 180.0,
    ("epic", "limit"): 120.0,
    ("vnish", "limit"): 120.0,
    ("vnish", "wake"): 120.0,
    ("braiins", "limit"): 60.0,
}
DEFAULT_CONFIRM_S = 10.0


class Curtailer:
    def __init__(self, cfg: KuatConfig, state: SiteState) -> None:
        q = cfg.quota
        self.cfg = cfg
        self.state = state
        self.enforce = q.enforce
        self.lang = cfg.agent.language
        c = cfg.asic
        self.access = control.MinerAccess(
            web_port=c.web_port or 80,
            web_username=c.web_username,
            web_password=c.web_password.get(),
            whatsminer_password=c.whatsminer_password.get(),
            whatsminer_v3_account=c.whatsminer_v3_account,
            braiins_password=c.braiins_password.get(),
            braiins_web_port=c.braiins_web_port,
            epic_password=c.epic_password.get(),
            vnish_password=c.vnish_password.get(),
        )
        self.policy = CurtailPolicy(
            min_on_s=q.min_on_s,
            min_off_s=q.min_off_s,
            hysteresis_kw=q.hysteresis_kw,
            margin_kw=q.margin_kw,
            limit_hold_s=q.power_limit_hold_s,
        )
        self.switched: dict[str, datetime] = {}
        self.limited_at: dict[str, datetime] = {}
        self._limits: dict[str, float] = {}  # limits we set and saw confirmed
        self._full: dict[str, float] = {}  # a limitable miner's power before our first limit
        self._no_limit: set[str] = set()
        self._no_sleep: dict[str, datetime | None] = {}  # None: for good; else retry after
        self._outlet_off: dict[str, AsicReading] = {}  # its last reading before the cut
        self._outlet_of: dict[str, tuple[PduConfig, int]] = {}
        self._outlets = {
            target: (p, index)
            for p in reversed(cfg.pdu)
            for target, index in p.outlet_targets().items()
        }  # reversed: the first PDU naming a miner wins
        self._pdu = PduPoller()
        # What a miner draws and makes when mining: waking it adds that, not its sleep figures.
        self._mining: dict[str, tuple[float | None, float | None]] = {}
        self._executing: asyncio.Task[list[ActionResult]] | None = None
        self._last_logged: tuple[tuple[str, str], ...] | None = None
        self.results: list[ActionResult] = []
        self.last_plan: CurtailPlan | None = None
        self._binding_order: tuple[str, str] | None = None

    def _miners(self, now: datetime) -> tuple[list[MinerState], dict[str, AsicReading]]:
        out: list[MinerState] = []
        by_id: dict[str, AsicReading] = {}
        q = self.cfg.quota
        readings = {r.device_id: r for r in self.state.asic_readings()}
        # a miner we cut is down, whatever a reading from before the cut still says
        readings.update(self._outlet_off)
        for did, r in readings.items():
            by_id[did] = r
            # Stock Antminers report no power: plan with the spec-sheet figure scaled by hashrate.
            power_w = r.power_w or estimated_power_w(r.model, r.hashrate_ths)
            off = did in self._outlet_off
            if r.state == "mining" and power_w and not off:
                self._mining[did] = (power_w, r.hashrate_ths)
            asleep = off or r.state == "sleeping"
            power, hashrate = (
                self._mining.get(did, (None, None)) if asleep else (power_w, r.hashrate_ths)
            )
            steps: tuple[float, ...] = ()
            full: float | None = None
            if (
                q.power_limit
                and r.firmware_family in POWER_LIMIT_FAMILIES
                and did not in self._no_limit
            ):
                if did not in self._limits and not asleep:
                    # what it runs at before we limit it: the profile's watts, else its draw
                    seen = r.power_limit_w or power_w
                    if seen:
                        self._full[did] = seen
                full = self._full.get(did)
                if full:
                    steps = _steps(full, q.power_limit_step_pct, q.power_limit_min_pct)
            retry = self._no_sleep.get(did, now)
            can_sleep = did not in self._no_sleep or (retry is not None and retry <= now)
            if can_sleep:
                self._no_sleep.pop(did, None)
            feed = self._outlets.get((r.ip, r.port))
            if feed is not None:
                self._outlet_of[did] = feed
            out.append(
                MinerState(
                    did,
                    power,
                    hashrate,
                    asleep,
                    self.switched.get(did),
                    power_steps_w=steps,
                    full_power_w=full,
                    power_limit_w=self._limits.get(did),
                    last_limited=self.limited_at.get(did),
                    can_sleep=can_sleep and not off,
                    outlet=f"{feed[0].name}/{feed[1]}" if feed is not None else None,
                    outlet_off=off,
                )
            )
        return out, by_id

    def run(self, status: QuotaStatus, now: datetime, orders: OrderBook | None = None) -> list[str]:
        """Plan (and with enforcement, start carrying out) one cycle; return telemetry lines."""
        if self._executing is not None and not self._executing.done():
            return []  # the previous plan's commands are still being confirmed
        miners, by_id = self._miners(now)
        order_kw, order = limit_kw(orders, now) if orders is not None else (None, None)
        allowed = tighter(status.allowed_kw, order_kw)
        self._log_order(order if order_kw is not None and order_kw == allowed else None)
        p = plan(allowed, miners, now, self.policy, load_kw=status.p_kw)
        self.last_plan = p
        self._log_plan(p)
        if self.enforce and p.actions:
            before = {
                a.device_id: (self.switched.get(a.device_id), self.limited_at.get(a.device_id))
                for a in p.actions
            }
            for a in p.actions:
                if a.kind in (ActionKind.LIMIT_POWER, ActionKind.RESTORE_POWER):
                    self.limited_at[a.device_id] = now
                else:
                    self.switched[a.device_id] = now
            self._executing = asyncio.get_running_loop().create_task(
                self._execute(p, by_id, now, before)
            )
        count = {k: sum(1 for a in p.actions if a.kind == k) for k in ActionKind}
        line = encode_point(
            "curtail",
            {"site": self.cfg.site.id, "mode": "enforce" if self.enforce else "dry_run"},
            {
                "allowed_kw": p.allowed_kw,
                "order_kw": order_kw,
                "load_kw": p.load_kw,
                "planned_load_kw": p.planned_load_kw,
                "sleep_actions": count[ActionKind.SLEEP],
                "restore_actions": count[ActionKind.RESTORE],
                "limit_actions": count[ActionKind.LIMIT_POWER],
                "restore_power_actions": count[ActionKind.RESTORE_POWER],
                "outlet_off_actions": count[ActionKind.OUTLET_OFF],
                "outlet_on_actions": count[ActionKind.OUTLET_ON],
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

    async def _execute(
        self,
        p: CurtailPlan,
        by_id: dict[str, AsicReading],
        now: datetime,
        before: dict[str, tuple[datetime | None, datetime | None]],
    ) -> list[ActionResult]:
        gate = asyncio.Semaphore(MAX_PARALLEL_ACTIONS)

        async def one(a: Action, why: str) -> ActionResult:
            r = by_id.get(a.device_id)
            if a.kind in (ActionKind.OUTLET_OFF, ActionKind.OUTLET_ON):
                return await self._switch_outlet(a, why, gate)
            if r is None or r.firmware_family is None:
                return ActionResult(a.device_id, a.kind.value, "unsupported", "firmware not known")
            family = r.firmware_family
            if a.kind in (ActionKind.LIMIT_POWER, ActionKind.RESTORE_POWER):
                assert a.target_w is not None
                async with gate:
                    return await control.set_power_limit(
                        r.ip,
                        r.port,
                        family,
                        int(a.target_w),
                        why,
                        access=self.access,
                        confirm_s=CONFIRM_S.get((family, "limit"), DEFAULT_CONFIRM_S),
                    )
            act = control.sleep if a.kind == ActionKind.SLEEP else control.wake
            verb = "sleep" if a.kind == ActionKind.SLEEP else "wake"
            async with gate:
                return await act(
                    r.ip,
                    r.port,
                    family,
                    why,
                    access=self.access,
                    confirm_s=CONFIRM_S.get((family, verb), DEFAULT_CONFIRM_S),
                )

        whys = [render(a.reason, self.lang) for a in p.actions]
        results = await asyncio.gather(*(one(a, w) for a, w in zip(p.actions, whys, strict=True)))
        for a, res, why in zip(p.actions, results, whys, strict=True):
            self._learn(a, res, by_id.get(a.device_id), now, before.get(a.device_id))
            level = logging.INFO if res.outcome == "done" else logging.ERROR
            log.log(
                level,
                "%s %s: %s (%s) — %s",
                a.kind.value,
                a.device_id,
                res.outcome,
                res.detail,
                why,
            )
        self.results = list(results)
        return self.results

    async def _switch_outlet(self, a: Action, why: str, gate: asyncio.Semaphore) -> ActionResult:
        feed = self._outlet_of.get(a.device_id)
        if feed is None:
            return ActionResult(a.device_id, a.kind.value, "unsupported", "no outlet known")
        pdu, index = feed
        from kuat.agent.runtime import _snmp_auth  # runtime imports this module: import late

        async with gate:
            return await self._pdu.switch_outlet(
                pdu.host,
                pdu.port,
                auth=_snmp_auth(pdu),
                index=index,
                on=a.kind == ActionKind.OUTLET_ON,
                reason=why,
                profile=pdu.profile,
            )

    def _learn(
        self,
        a: Action,
        res: ActionResult,
        reading: AsicReading | None,
        now: datetime,
        before: tuple[datetime | None, datetime | None] | None,
    ) -> None:
        """Remember what a result tells about the miner, for the next plans."""
        did, done = a.device_id, res.outcome == "done"
        limit = a.kind in (ActionKind.LIMIT_POWER, ActionKind.RESTORE_POWER)
        if not done and before is not None and res.outcome in ("unsupported", "refused"):
            # nothing was switched: the timers must not hold the miner for it
            stamps = (self.limited_at, before[1]) if limit else (self.switched, before[0])
            if stamps[1] is None:
                stamps[0].pop(did, None)
            else:
                stamps[0][did] = stamps[1]
        if limit:
            if done and a.target_w is not None:
                if a.kind == ActionKind.RESTORE_POWER and a.target_w >= self._full.get(did, 0.0):
                    self._limits.pop(did, None)  # back at full power: no limit of ours
                else:
                    self._limits[did] = a.target_w
            elif res.outcome in ("unsupported", "refused"):
                self._no_limit.add(did)
        elif a.kind == ActionKind.SLEEP and res.outcome in ("unsupported", "failed"):
            # "refused" (a wrong web password, say) is a setting to fix, not a reason to cut
            # the miner's power: it keeps being asked to sleep, and the error keeps showing
            retry = now + timedelta(seconds=SLEEP_RETRY_S) if res.outcome == "failed" else None
            self._no_sleep[did] = retry
        elif a.kind == ActionKind.OUTLET_OFF and done and reading is not None:
            self._outlet_off[did] = reading
        elif a.kind == ActionKind.OUTLET_ON and done:
            self._outlet_off.pop(did, None)

    async def wait(self) -> None:
        if self._executing is not None:
            await asyncio.gather(self._executing, return_exceptions=True)

    async def cancel(self) -> None:
        if self._executing is not None and not self._executing.done():
            self._executing.cancel()
        await self.wait()


def _steps(full_w: float, step_pct: float, min_pct: float) -> tuple[float, ...]:
    """Power targets below ``full_w``: every ``step_pct`` of it down to ``min_pct`` of it."""
    out: list[float] = []
    k = 1
    while (pct := 100.0 - k * step_pct) >= min_pct - 1e-9:
        out.append(float(round(full_w * pct / 100.0)))
        k += 1
    return tuple(out)
