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

A controller, not a batch job: the agent calls :meth:`Curtailer.run` as each site-meter
reading lands. Every command sent is an action in flight in the plant model
(kuat.quota.plant) until it is confirmed and a fresh reading of its miner shows it; planning
goes on meanwhile and counts it (the miner as it will be, the load as it will be), so a slow
firmware's batch is neither cut twice nor undone. No restore is planned while a cut is still
to act. A command slot (``MAX_PARALLEL_ACTIONS``) is held while the command is sent and freed
then; the confirmation goes on apart.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from kuat.agent.config import KuatConfig, PduConfig
from kuat.agent.i18n import render
from kuat.agent.state import SiteState
from kuat.collectors.capabilities import ActionResult
from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.firmware.controls import controls_of
from kuat.collectors.cgminer.models import estimated_power_w
from kuat.collectors.readings import AsicReading
from kuat.collectors.snmp.collector import PduPoller
from kuat.quota.curtail import Action, ActionKind, CurtailPlan, CurtailPolicy, MinerState, plan
from kuat.quota.evaluate import QuotaStatus
from kuat.quota.orders import CurtailmentOrder, OrderBook, limit_kw, limit_reason, tighter
from kuat.quota.plant import Pending, Plant, Verb
from kuat.uplink.lineproto import encode_point

log = logging.getLogger("kuat.curtail")

# Commands being sent at once: a burst of hundreds of TCP sessions is pointless on a farm LAN.
MAX_PARALLEL_ACTIONS = 32
# A slot is held until its command is sent. The control side sends and then confirms in one
# call, so "sent" is taken as: the call returned, or this long passed (a command's exchange on
# a LAN takes milliseconds; past this, only confirmation or a dead miner's deadline is left).
SEND_S = 1.0
# Results kept for the status screens and tests.
MAX_RESULTS = 1000
# Actions confirmed this recently still shape the meter's readings (kuat.quota.evaluate's
# decision window restarts at the last of them).
RECENT_EFFECT = timedelta(minutes=5)
# A sleep that failed (timeout, no confirmation) may work next time: try again after this long.
SLEEP_RETRY_S = 3600.0
# What a miner can do and how long it takes to show are the firmware backend's declarations
# (kuat.collectors.cgminer.firmware.controls): a new firmware needs nothing here.
DEFAULT_CONFIRM_S = 10.0


def _has_power_target(family: str | None) -> bool:
    c = controls_of(family) if family else None
    return c is not None and c.power_target is not None


def _declared_confirm_s(family: str, verb: Verb) -> float:
    c = controls_of(family)
    return c.confirm_for(verb.value) if c is not None else DEFAULT_CONFIRM_S


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Curtailer:
    def __init__(
        self,
        cfg: KuatConfig,
        state: SiteState,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        q = cfg.quota
        self.cfg = cfg
        self.state = state
        self.clock = clock
        # the agent's own poller (runtime.py sets it): an action's confirmation re-reads the
        # miner through it, inside its concurrency limit; None: each action uses its own
        self.poller: AsicPoller | None = None
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
            auradine_password=c.auradine_password.get(),
        )
        self.policy = CurtailPolicy(
            min_on_s=q.min_on_s,
            min_off_s=q.min_off_s,
            hysteresis_kw=q.hysteresis_kw,
            margin_kw=q.margin_kw,
            limit_hold_s=q.power_limit_hold_s,
            wake_min_run_s=q.wake_min_run_s,
        )
        self.plant = Plant(overhead=q.overhead_factor)
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
        self._tasks: set[asyncio.Task[ActionResult]] = set()
        self._gate: asyncio.Semaphore | None = None
        self._last_logged: tuple[frozenset[str], int, float] | None = None
        self._last_point: datetime | None = None
        self._point_key: tuple[int, ...] | None = None
        self.results: deque[ActionResult] = deque(maxlen=MAX_RESULTS)
        self.last_plan: CurtailPlan | None = None
        self._binding_order: tuple[str, str] | None = None
        self._families: set[str | None] = set()

    def _miners(self, now: datetime) -> tuple[list[MinerState], dict[str, AsicReading]]:
        out: list[MinerState] = []
        by_id: dict[str, AsicReading] = {}
        q = self.cfg.quota
        readings = {r.device_id: r for r in self.state.asic_readings()}
        # a miner we cut is down, whatever a reading from before the cut still says
        readings.update(self._outlet_off)
        self._families = {r.firmware_family for r in readings.values()}
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
            if q.power_limit and _has_power_target(r.firmware_family) and did not in self._no_limit:
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

    def apply_s(self) -> float:
        """How long the firmware present takes to act on a cut, as learned (plant)."""
        return self.plant.slowest_apply_s(self._families)

    def decision_since(self, now: datetime) -> datetime | None:
        """The last time our own actions changed what the meter reads."""
        return self.plant.last_confirmed_at(RECENT_EFFECT, now)

    def run(self, status: QuotaStatus, now: datetime, orders: OrderBook | None = None) -> list[str]:
        """Plan (and with enforcement, start carrying out) one decision; return telemetry
        lines (a ``curtail`` point when the plan changed, else once per quota interval)."""
        miners, by_id = self._miners(now)
        # a reading newer than a confirmation shows the miner as it is: the plant lets go
        self.plant.readings_seen({did: r.taken_at for did, r in by_id.items()})
        load = status.decision_kw if status.decision_kw is not None else status.p_kw
        awake_w = sum((m.power_w or 0.0) for m in miners if not m.asleep)
        self.plant.observe_overhead(load, awake_w / 1000.0)
        planned = self.plant.adjust(miners)
        order_kw, order = limit_kw(orders, now) if orders is not None else (None, None)
        allowed = tighter(status.allowed_kw, order_kw)
        self._log_order(order if order_kw is not None and order_kw == allowed else None)
        # the next hour's allocation as mean power, under any order still in force then
        next_kw = status.next_allocation_kwh
        if orders is not None:
            next_kw = tighter(next_kw, limit_kw(orders, status.hour_end)[0])
        expected = None if load is None else load + self.plant.in_flight_kw(status.used_until)
        p = plan(
            allowed,
            planned,
            now,
            self.policy,
            load_kw=expected,
            overhead_factor=self.plant.overhead_factor,
            hour_left_s=(status.hour_end - now).total_seconds(),
            next_allowed_kw=next_kw,
            restore=self.plant.unconfirmed(Verb.SLEEP, Verb.LIMIT) == 0,
            actuation_s=self.cfg.intervals.meter + self.apply_s(),
        )
        self.last_plan = p
        self._log_plan(p)
        if self.enforce and p.actions:
            states = {m.device_id: m for m in planned}
            for a in p.actions:
                self._dispatch(a, by_id.get(a.device_id), states.get(a.device_id), now)
        count = {k: sum(1 for a in p.actions if a.kind == k) for k in ActionKind}
        key = tuple(count.values())
        due = self._last_point is None or (now - self._last_point).total_seconds() >= (
            self.cfg.intervals.quota
        )
        if not due and key == self._point_key:
            return []
        self._last_point, self._point_key = now, key
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
        """Enforcing, every plan with actions is logged (each is a batch of commands). A dry
        run repeats its plan at every reading (nothing acts), so it is logged only when it
        changes materially: other kinds of action, or the number of miners or the kW they
        move changing by more than 10 % (and more than one miner, or the hysteresis)."""
        if not p.actions:
            if self.enforce:
                self._last_logged = None
            return
        kw = sum(a.power_w for a in p.actions) / 1000
        key = (frozenset(a.kind.value for a in p.actions), len(p.actions), kw)
        last = self._last_logged
        if not self.enforce and last is not None and last[0] == key[0]:
            n_same = abs(key[1] - last[1]) <= max(1, math.floor(0.1 * last[1]))
            kw_same = abs(key[2] - last[2]) <= max(self.policy.hysteresis_kw, 0.1 * last[2])
            if n_same and kw_same:
                return
        self._last_logged = key
        mode = "enforcing" if self.enforce else "dry run ([quota] enforce = false)"
        kinds = key[0]
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

    def _dispatch(
        self, a: Action, r: AsicReading | None, m: MinerState | None, now: datetime
    ) -> None:
        """Note the action as in flight and start sending it."""
        did = a.device_id
        before = (self.switched.get(did), self.limited_at.get(did))
        limit = a.kind in (ActionKind.LIMIT_POWER, ActionKind.RESTORE_POWER)
        if limit:
            self.limited_at[did] = now
        else:
            self.switched[did] = now
        power = (m.power_w if m is not None else None) or 0.0
        family = r.firmware_family if r is not None else None
        outlet = a.kind in (ActionKind.OUTLET_OFF, ActionKind.OUTLET_ON)
        if a.kind in (ActionKind.SLEEP, ActionKind.OUTLET_OFF):
            pending = Pending(did, Verb.SLEEP, family, now, a.power_w, 0.0, outlet=outlet)
        elif a.kind in (ActionKind.RESTORE, ActionKind.OUTLET_ON):
            pending = Pending(did, Verb.WAKE, family, now, 0.0, a.power_w, outlet=outlet)
        else:
            after = power - a.power_w if a.kind is ActionKind.LIMIT_POWER else power + a.power_w
            pending = Pending(did, Verb.LIMIT, family, now, power, after, target_w=a.target_w)
        if outlet:
            pending = Pending(
                did, pending.verb, None, now, pending.before_w, pending.after_w, outlet=True
            )
        self.plant.sent(pending)
        task = asyncio.get_running_loop().create_task(self._one(a, r, now, before))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _one(
        self,
        a: Action,
        r: AsicReading | None,
        sent_at: datetime,
        before: tuple[datetime | None, datetime | None],
    ) -> ActionResult:
        if self._gate is None:
            self._gate = asyncio.Semaphore(MAX_PARALLEL_ACTIONS)
        why = render(a.reason, self.lang)
        async with self._gate:
            command = asyncio.ensure_future(self._command(a, r, why))
            try:
                await asyncio.wait({command}, timeout=SEND_S)
            except asyncio.CancelledError:
                command.cancel()
                raise
        try:
            res = await command  # the confirmation, outside the slot
        except asyncio.CancelledError:
            command.cancel()
            raise
        self.plant.settled(a.device_id, res.outcome == "done", self.clock())
        self._learn(a, res, r, sent_at, before)
        level = logging.INFO if res.outcome == "done" else logging.ERROR
        log.log(
            level, "%s %s: %s (%s) — %s", a.kind.value, a.device_id, res.outcome, res.detail, why
        )
        self.results.append(res)
        return res

    async def _command(self, a: Action, r: AsicReading | None, why: str) -> ActionResult:
        if a.kind in (ActionKind.OUTLET_OFF, ActionKind.OUTLET_ON):
            return await self._switch_outlet(a, why)
        if r is None or r.firmware_family is None:
            return ActionResult(a.device_id, a.kind.value, "unsupported", "firmware not known")
        family = r.firmware_family
        if a.kind in (ActionKind.LIMIT_POWER, ActionKind.RESTORE_POWER):
            assert a.target_w is not None
            return await control.set_power_limit(
                r.ip,
                r.port,
                family,
                int(a.target_w),
                why,
                access=self.access,
                poller=self.poller,
                confirm_s=self._confirm_s(family, Verb.LIMIT),
            )
        to_sleep = a.kind == ActionKind.SLEEP
        act = control.sleep if to_sleep else control.wake
        verb = Verb.SLEEP if to_sleep else Verb.WAKE
        return await act(
            r.ip,
            r.port,
            family,
            why,
            access=self.access,
            poller=self.poller,
            confirm_s=self._confirm_s(family, verb),
        )

    def _confirm_s(self, family: str, verb: Verb) -> float:
        """The firmware's limit, or three times what kuat has seen it take if longer."""
        limit = _declared_confirm_s(family, verb)
        return max(limit, 3 * self.plant.apply_s(family, verb))

    async def _switch_outlet(self, a: Action, why: str) -> ActionResult:
        feed = self._outlet_of.get(a.device_id)
        if feed is None:
            return ActionResult(a.device_id, a.kind.value, "unsupported", "no outlet known")
        pdu, index = feed
        from kuat.agent.runtime import _snmp_auth  # runtime imports this module: import late

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
        """Until every action sent so far is settled (confirmed or failed)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.wait()


def _steps(full_w: float, step_pct: float, min_pct: float) -> tuple[float, ...]:
    """Power targets below ``full_w``: every ``step_pct`` of it down to ``min_pct`` of it."""
    out: list[float] = []
    k = 1
    while (pct := 100.0 - k * step_pct) >= min_pct - 1e-9:
        out.append(float(round(full_w * pct / 100.0)))
        k += 1
    return tuple(out)
