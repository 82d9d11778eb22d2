"""Carrying out the quota engine's curtailment plans.

The plan is pure (``kuat.quota.curtail``); this module feeds it the miners as the agent last saw
them, remembers when each miner was switched (so minimum on/off times hold across cycles), and —
only with ``[quota] enforce = true`` — sends the sleep/wake commands through the collectors'
control side. Without enforcement the plan is logged and written to telemetry, nothing more.

The curtailer keeps one record per miner (:class:`MinerRecord`): its handle (what its
firmware offers, kuat.collectors.cgminer.handle), when kuat last switched or limited it, the
limit kuat set, what it learned from the miner's answers. Capabilities the planner is told
about, per miner, come from asking that handle where the decision is made:

- power limit: a ``PowerLimitable`` handle (firmware with a power target) and ``[quota]
  power_limit``; steps
  of ``power_limit_step_pct`` of its full power (what it draws before our first limit, or
  its profile's watts if lower: never a reading that shows a limit of ours) down to
  ``power_limit_min_pct``; a restore sets its limit back to what it was (profile watts). A limit
  the firmware refuses (below its minimum: some firmware takes a power target only within its
  tuner's range) is remembered: no step at or below it is planned again for that miner, and
  one refused at every step is slept instead. No power limit at all ("unsupported": a
  firmware version without the verb) turns limits off for that miner.
- sleep: a ``Sleepable`` handle (firmware not identified yet: assumed), until a sleep answers
  "unsupported" (remembered until its firmware changes: a stock Antminer without its web UI,
  say) or "failed" (remembered for ``SLEEP_RETRY_S``: a timeout may be passing).
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
as soon as the miner's handle says it is written; the confirmation goes on apart.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from kuat.agent.config import KuatConfig, PduConfig
from kuat.agent.i18n import message, render
from kuat.agent.state import SiteState
from kuat.collectors.capabilities import ActionResult, PowerLimitable, Sleepable
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.firmware.controls import apply_times
from kuat.collectors.cgminer.handle import MinerHandle, miner_handle
from kuat.collectors.cgminer.models import estimated_power_w
from kuat.collectors.readings import AsicReading
from kuat.collectors.snmp.collector import PduPoller
from kuat.quota.curtail import (
    Action,
    ActionKind,
    CurtailPlan,
    CurtailPolicy,
    MinerState,
    PlanSummary,
    calm,
    curtailable_w,
    stands,
)
from kuat.quota.evaluate import QuotaStatus
from kuat.quota.orders import CurtailmentOrder, OrderBook, limit_kw, limit_reason, tighter
from kuat.quota.plant import Plant, Verb, pending_for
from kuat.uplink.lineproto import encode_point

log = logging.getLogger("kuat.curtail")
H = TypeVar("H", bound=MinerHandle)

# Commands being sent at once: a burst of hundreds of TCP sessions is pointless on a farm LAN.
# A slot is held until its command is written (the miner's handle says so once only the
# confirmation is left) or the call ends (refused, unsupported, no answer in its timeout).
MAX_PARALLEL_ACTIONS = 32
# A miner's draw at full power is taken as changed (for its limit steps) beyond this share.
DRAW_BAND = 0.05
# Results kept for the status screens and tests.
MAX_RESULTS = 1000
# Actions confirmed this recently still shape the meter's readings (kuat.quota.evaluate's
# decision window restarts at the last of them).
RECENT_EFFECT = timedelta(minutes=5)
# A sleep that failed (timeout, no confirmation) may work next time: try again after this long.
SLEEP_RETRY_S = 3600.0
# A sleep answered "unsupported" is never tried again (no web UI, say): retry at the end of time.
NEVER = datetime.max.replace(tzinfo=UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False, slots=True)
class MinerRecord:
    """What the curtailer knows about one miner between plans."""

    device_id: str
    reading: AsicReading  # its latest (for a miner cut at its outlet: its last before the cut)
    handle: MinerHandle | None = None  # None: firmware not known yet, nothing to command
    # what it draws and makes when mining: waking it adds that, not its sleep figures
    mining_w: float | None = None
    mining_ths: float | None = None
    switched_at: datetime | None = None  # our last sleep, wake or outlet switch (timers)
    limited_at: datetime | None = None  # our last power-limit change (its hold)
    limit_w: float | None = None  # the limit we set and saw confirmed
    full_w: float | None = None  # a limitable miner's power before our first limit
    # what it drew then: the limit steps are shares of it (a reported limit may be its
    # PSU's 3600 W, well above the 3220 W it draws; 90 % of that limit would save nothing)
    full_draw_w: float | None = None
    sent_limit_w: float | None = None  # the target of the last limit we sent
    limit_refused: bool = False  # its firmware has no limit we can set
    # the firmware refused a limit below this (its minimum is higher): no step under it
    limit_floor_w: float | None = None
    sleep_retry_at: datetime | None = None  # a sleep failed: not tried before then
    outlet: tuple[PduConfig, int] | None = None  # the PDU outlet feeding it
    outlet_off: bool = False  # we switched that outlet off

    def can_limit(self) -> bool:
        return self.handle is not None and _offers(type(self.handle))[0] and not self.limit_refused

    def can_sleep(self, now: datetime) -> bool:
        # firmware not known yet: assumed (its outlet is cut only for a miner known not to)
        known_not = self.handle is not None and not _offers(type(self.handle))[1]
        if known_not or self.outlet_off:
            return False
        return self.sleep_retry_at is None or self.sleep_retry_at <= now


_OFFERS: dict[type, tuple[bool, bool]] = {}
# what a miner without a handle (firmware not known yet) is taken to offer: sleep, not limits
_NO_HANDLE = (False, True)


def _offers(kind: type) -> tuple[bool, bool]:
    """(power limit, sleep): what a miner handle's class offers. A handle offers what its
    class implements (kuat.collectors.cgminer.handle), so the protocol check is made once a
    class, not twice a miner at every meter reading (at 20,000 miners, 40,000 runtime
    protocol checks: half of a decision's time)."""
    got = _OFFERS.get(kind)
    if got is None:
        got = _OFFERS[kind] = (issubclass(kind, PowerLimitable), issubclass(kind, Sleepable))
    return got


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
        self.access = cfg.asic.miner_access()
        self.policy = CurtailPolicy(
            min_on_s=q.min_on_s,
            min_off_s=q.min_off_s,
            hysteresis_kw=q.hysteresis_kw,
            margin_kw=q.margin_kw,
            limit_hold_s=q.power_limit_hold_s,
            wake_min_run_s=q.wake_min_run_s,
        )
        # how long each firmware takes to act, as its backend declares: quota knows no firmware
        self.plant = Plant(overhead=q.overhead_factor, default_apply_s=apply_times())
        self.miners: dict[str, MinerRecord] = {}
        self._outlets = {
            target: (p, index)
            for p in reversed(cfg.pdu)
            for target, index in p.outlet_targets().items()
        }  # reversed: the first PDU naming a miner wins
        self._pdu = PduPoller()
        self._tasks: set[asyncio.Task[ActionResult]] = set()
        self._gate: asyncio.Semaphore | None = None
        self._last_logged: PlanSummary | None = None
        self._last_point: datetime | None = None
        self._point_key: tuple[int, ...] | None = None
        self.results: deque[ActionResult] = deque(maxlen=MAX_RESULTS)
        self.last_plan: CurtailPlan | None = None
        self._binding_order: tuple[str, str] | None = None
        self._present: list[MinerRecord] = []  # the miners of the latest plan
        self._present_families: frozenset[str | None] | None = None  # their firmware, once asked
        self._planned: list[MinerState] | None = None  # and how the planner saw them
        self._curtailable: float | None = None  # curtailable_kw of _planned, once asked
        # _planned is kept only once curtailable_kw is asked for (a shard's cluster job): held
        # for nobody, it was a MinerState and its power steps per miner between plans, and two
        # plans' worth while the next was made (issue 15: ~12 MB at 50,000 miners)
        self._planned_wanted = False
        # the latest full plan had nothing to do or wait for (quota.curtail.calm), in the hour
        # ending then: later readings within the limit need no new plan (run)
        self._calm = False
        self._calm_hour: datetime | None = None

    def _record(self, r: AsicReading) -> MinerRecord:
        """The miner's record, brought up to date with its latest reading."""
        rec = self.miners.get(r.device_id) or self._renamed(r)
        if rec is None:
            rec = self.miners[r.device_id] = MinerRecord(r.device_id, r)
        elif rec.reading is r or rec.outlet_off:
            # the reading the last plan saw (a miner is read once a cycle, planned at every
            # meter reading): its handle and outlet stand; or down, whatever a reading from
            # before the cut still says
            return rec
        rec.reading = r
        h = rec.handle
        fam = r.firmware_family
        if fam is None:
            rec.handle = None
        # (a StrEnum equals its value: no Enum.value lookup, no tuples, for every miner)
        elif h is None or h.firmware != fam or h.host != r.ip or h.port != r.port:
            rec.handle = miner_handle(r.ip, r.port, fam, access=self.access, poller=self.poller)
            rec.sleep_retry_at = None  # a new firmware: what it can do is asked again
        rec.outlet = self._outlets.get((r.ip, r.port))
        return rec

    def _renamed(self, r: AsicReading) -> MinerRecord | None:
        """A miner first known by its address, now by its serial or MAC (a firmware whose
        identity comes from a background read of its web API): the same miner, and
        what kuat did to it goes along — else the limit kuat set would be read as its full
        power, and its timers forgotten."""
        old_id = f"{r.ip}:{r.port}"
        rec = self.miners.pop(old_id, None) if old_id != r.device_id else None
        if rec is None:
            return None
        rec.device_id = r.device_id
        self.miners[r.device_id] = rec
        self.plant.rename(old_id, r.device_id)
        return rec

    def _miners(self, now: datetime) -> list[MinerState]:
        out: list[MinerState] = []
        q = self.cfg.quota
        # a miner not read lately (offline, say) is not planned; one we cut at its outlet is
        self._present = [self._record(r) for r in self.state.asic_readings()]
        self._present_families = None
        read = {rec.device_id for rec in self._present}
        self._present += [
            rec for rec in self.miners.values() if rec.outlet_off and rec.device_id not in read
        ]
        # at every meter reading, for every miner: the record's methods (can_limit, can_sleep)
        # inlined and the config read once (bench/agent_cycle.py)
        power_limit = q.power_limit
        step_pct, min_pct = q.power_limit_step_pct, q.power_limit_min_pct
        add = out.append
        for rec in self._present:
            r = rec.reading
            off = rec.outlet_off
            state = r.state
            # Stock Antminers report no power: plan with the spec-sheet figure scaled by hashrate.
            power_w = r.power_w or estimated_power_w(r.model, r.hashrate_ths)
            if state == "mining" and power_w and not off:
                rec.mining_w, rec.mining_ths = power_w, r.hashrate_ths
            asleep = off or state == "sleeping"
            power, hashrate = (
                (rec.mining_w, rec.mining_ths) if asleep else (power_w, r.hashrate_ths)
            )
            h = rec.handle
            # (power limit, sleep) its handle offers; firmware not known yet: sleep assumed
            limits, sleeps = _offers(type(h)) if h is not None else _NO_HANDLE
            steps: tuple[float, ...] = ()
            if power_limit and limits and not rec.limit_refused:
                if rec.limit_w is None and not asleep and not self._ours(rec, r):
                    # what it runs at before we limit it: the profile's watts, else its draw
                    rec.full_w = r.power_limit_w or power_w or rec.full_w
                    rec.full_draw_w = _steady(rec.full_draw_w, power_w)
                if rec.full_w:
                    base = min(rec.full_w, rec.full_draw_w or rec.full_w)
                    steps = _steps(base, step_pct, min_pct)
                    floor = rec.limit_floor_w
                    if floor is not None:
                        steps = tuple(s for s in steps if s >= floor)
            retry = rec.sleep_retry_at
            feed = rec.outlet
            # positional: keywords made the decision 1.18x slower (bench/agent_cycle.py --against,
            # 50,000 miners); the order is MinerState's, and a test sees every field as itself
            add(
                MinerState(
                    rec.device_id,
                    power,
                    hashrate,
                    asleep,
                    rec.switched_at,
                    steps,
                    rec.full_w if steps else None,
                    rec.limit_w,
                    rec.limited_at,
                    # MinerRecord.can_sleep
                    sleeps and not off and (retry is None or retry <= now),
                    f"{feed[0].name}/{feed[1]}" if feed is not None else None,
                    off,
                )
            )
        self._planned, self._curtailable = (out if self._planned_wanted else None), None
        return out

    def keep_plans(self) -> None:
        """Keep each plan's miner states from now on, for ``curtailable_kw`` (a shard's
        cluster job wires this at start: its first tick may come before it asks)."""
        self._planned_wanted = True

    def curtailable_kw(self) -> float | None:
        """What the latest plan's miners could shed (kW; ``curtailable_w``), None before the
        first plan. Read by a shard's cluster job: it does not plan again (planning updates
        each miner's record)."""
        self.keep_plans()
        if self._planned is None:
            return None
        if self._curtailable is None:  # once per plan, however often a cluster tick asks
            self._curtailable = sum(curtailable_w(m) for m in self._planned) / 1000
        return self._curtailable

    def planned_miners(self, now: datetime) -> list[tuple[AsicReading, MinerState]]:
        """The miners as the planner sees them now, each with the reading it comes from."""
        states = self._miners(now)
        return [(rec.reading, m) for rec, m in zip(self._present, states, strict=True)]

    def _ours(self, rec: MinerRecord, r: AsicReading) -> bool:
        """The reading shows a limit of ours (in flight, or sent and not confirmed), not the
        miner's own full power: a fast firmware reports a new target before kuat confirms it,
        and taken as full power it would shrink every later step (a miner limited to
        60 % of 60 %, under its firmware's minimum)."""
        p = (self.plant.pending or {}).get(rec.device_id)
        if p is not None and p.verb is Verb.LIMIT:
            return True
        sent, seen = rec.sent_limit_w, r.power_limit_w
        return sent is not None and seen is not None and abs(seen - sent) <= 1.0

    def _families(self) -> frozenset[str | None]:
        # asked at every meter reading (apply_s) and by each plan: one pass over the miners
        # a plan, not one per question
        if self._present_families is None:
            self._present_families = frozenset(rec.reading.firmware_family for rec in self._present)
        return self._present_families

    def apply_s(self) -> float:
        """How long the firmware present takes to act on a cut, as learned (plant)."""
        return self.plant.slowest_apply_s(self._families())

    def decision_since(self, now: datetime) -> datetime | None:
        """The last time our own actions changed what the meter reads."""
        return self.plant.last_confirmed_at(RECENT_EFFECT, now)

    def run(self, status: QuotaStatus, now: datetime, orders: OrderBook | None = None) -> list[str]:
        """Plan (and with enforcement, start carrying out) one decision; return telemetry
        lines (a ``curtail`` point when the plan changed, else once per quota interval)."""
        order_kw, order = limit_kw(orders, now) if orders is not None else (None, None)
        allowed = tighter(status.allowed_kw, order_kw)
        self._log_order(order if order_kw is not None and order_kw == allowed else None)
        # the next hour's allocation as mean power, under any order still in force then
        next_kw = status.next_allocation_kwh
        if orders is not None:
            next_kw = tighter(next_kw, limit_kw(orders, status.hour_end)[0])
        due = self._last_point is None or (now - self._last_point).total_seconds() >= (
            self.cfg.intervals.quota
        )
        load = status.decision_kw if status.decision_kw is not None else status.p_kw
        if (
            self._calm
            and not due
            and not self.plant.pending
            and status.hour_end == self._calm_hour
            and stands(load, allowed, next_kw)
        ):
            # Nothing material changed since a plan that had nothing to do: not planned again
            # over every miner on each meter reading (a third of a second at 50,000 miners).
            # A full plan still runs when the curtail point is due (every quota interval).
            return []
        miners = self._miners(now)
        p = self.plant.decide(
            status,
            miners,
            now,
            self.policy,
            # a reading newer than a confirmation shows the miner as it is: the plant lets go
            # (asked of the miners with an action of ours in flight: none, mostly)
            read_at=(
                {rec.device_id: rec.reading.taken_at for rec in self._present}
                if self.plant.pending
                else {}
            ),
            families=self._families(),
            meter_s=self.cfg.intervals.meter,
            allowed_kw=allowed,
            next_allowed_kw=next_kw,
            family_of={rec.device_id: rec.reading.firmware_family for rec in self._present},
        )
        self.last_plan = p
        self._calm = calm(p, miners)
        self._calm_hour = status.hour_end
        self._log_plan(p)
        if self.enforce and p.actions:
            planned = {m.device_id: m for m in self.plant.adjust(miners)}
            for a in p.actions:
                self._dispatch(a, self.miners[a.device_id], planned[a.device_id], now)
        count = {k: sum(1 for a in p.actions if a.kind == k) for k in ActionKind}
        key = tuple(count.values())
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
        changes materially (PlanSummary.differs_from)."""
        if not p.actions:
            if self.enforce:
                self._last_logged = None
            return
        summary = PlanSummary.of(p)
        if not self.enforce and not summary.differs_from(
            self._last_logged, self.policy.hysteresis_kw
        ):
            return
        self._last_logged = summary
        lang = self.lang
        line = message(
            "log.curtail_plan",
            lang,
            mode=message("log.mode.enforce" if self.enforce else "log.mode.dry_run", lang),
            actions="/".join(message(f"ui.act_{k}", lang) for k in sorted(summary.kinds)),
            miners=summary.miners,
            saved_kw=float(summary.kw),
            load_kw=float(p.load_kw),
            allowed_kw=float(p.allowed_kw or 0.0),
            reason=render(p.reason, lang),
        )
        log.warning("%s", line)

    def _dispatch(self, a: Action, rec: MinerRecord, m: MinerState, now: datetime) -> None:
        """Note the action as in flight and start sending it."""
        before = (rec.switched_at, rec.limited_at)
        limit = a.kind in (ActionKind.LIMIT_POWER, ActionKind.RESTORE_POWER)
        if limit:
            rec.limited_at = now
            rec.sent_limit_w = a.target_w
        else:
            rec.switched_at = now
        family = rec.reading.firmware_family
        self.plant.sent(pending_for(a, family, now, m.power_w or 0.0))
        task = asyncio.get_running_loop().create_task(self._one(a, rec, now, before))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _one(
        self,
        a: Action,
        rec: MinerRecord,
        sent_at: datetime,
        before: tuple[datetime | None, datetime | None],
    ) -> ActionResult:
        if self._gate is None:
            self._gate = asyncio.Semaphore(MAX_PARALLEL_ACTIONS)
        why = render(a.reason, self.lang)
        async with self._gate:
            written = asyncio.Event()
            command = asyncio.ensure_future(self._command(a, rec, why, written.set))
            told = asyncio.ensure_future(written.wait())
            try:
                await asyncio.wait({command, told}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                command.cancel()
                raise
            finally:
                told.cancel()
        try:
            res = await command  # the confirmation, outside the slot
        except asyncio.CancelledError:
            command.cancel()
            raise
        # the record's id, not the action's: the miner may have been renamed meanwhile
        self.plant.settled(rec.device_id, res.outcome == "done", self.clock())
        self._learn(a, res, rec, sent_at, before)
        if res.floor_w is not None and res.outcome == "refused":
            # expected, not an error: the firmware's range is learned and used from now on
            text = message("log.limit_floor", self.lang, device=a.device_id, floor_w=res.floor_w)
            log.info("%s (%s)", text, res.detail)
        else:
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
        self.results.append(res)
        return res

    async def _command(
        self, a: Action, rec: MinerRecord, why: str, sent: Callable[[], None]
    ) -> ActionResult:
        """Through the miner's handle: only what its firmware offers can be asked; ``sent``
        is called once the command is written and only its confirmation is left."""
        if a.kind in (ActionKind.OUTLET_OFF, ActionKind.OUTLET_ON):
            return await self._switch_outlet(a, rec, why)
        h = rec.handle
        if a.kind in (ActionKind.LIMIT_POWER, ActionKind.RESTORE_POWER):
            if not isinstance(h, PowerLimitable) or a.target_w is None:
                return ActionResult(a.device_id, a.kind.value, "unsupported", _none_of(h))
            h = self._confirming(h, Verb.LIMIT, sent)
            return await h.set_power_limit(int(a.target_w), why)
        if not isinstance(h, Sleepable):
            return ActionResult(a.device_id, a.kind.value, "unsupported", _none_of(h))
        if a.kind == ActionKind.SLEEP:
            return await self._confirming(h, Verb.SLEEP, sent).sleep(why)
        return await self._confirming(h, Verb.WAKE, sent).wake(why)

    def _confirming(self, h: H, verb: Verb, sent: Callable[[], None]) -> H:
        """The handle, waiting for a confirmation as long as the firmware declares, or three
        times what kuat has seen it take if longer, and telling ``sent`` once it is written."""
        limit = h.confirm_for(verb.value)
        confirm_s = max(limit, 3 * self.plant.apply_s(h.firmware.value, verb))
        return replace(h, confirm_s=confirm_s, sent=sent)

    async def _switch_outlet(self, a: Action, rec: MinerRecord, why: str) -> ActionResult:
        if rec.outlet is None:
            return ActionResult(a.device_id, a.kind.value, "unsupported", "no outlet known")
        pdu, index = rec.outlet
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
        rec: MinerRecord,
        now: datetime,
        before: tuple[datetime | None, datetime | None],
    ) -> None:
        """Remember what a result tells about the miner, for the next plans."""
        done = res.outcome == "done"
        limit = a.kind in (ActionKind.LIMIT_POWER, ActionKind.RESTORE_POWER)
        if not done and res.outcome in ("unsupported", "refused"):
            # nothing was switched: the timers must not hold the miner for it
            if limit:
                rec.limited_at = before[1]
            else:
                rec.switched_at = before[0]
        if limit:
            if done and a.target_w is not None:
                full = rec.full_w or 0.0
                # back at full power: no limit of ours
                rec.limit_w = (
                    None
                    if a.kind == ActionKind.RESTORE_POWER and a.target_w >= full
                    else a.target_w
                )
            elif res.outcome == "refused" and a.kind == ActionKind.LIMIT_POWER and a.target_w:
                # below the firmware's minimum (e.g. its tuner's power-target range): only
                # steps at or above the lowest it takes from now on (just above the refused
                # target when the firmware does not say); refused at every step, none is left
                floor = res.floor_w if res.floor_w is not None else a.target_w + 1.0
                rec.limit_floor_w = max(rec.limit_floor_w or 0.0, floor)
            elif res.outcome in ("unsupported", "refused"):
                rec.limit_refused = True
        elif a.kind == ActionKind.SLEEP and res.outcome in ("unsupported", "failed"):
            # "refused" (a wrong web password, say) is a setting to fix, not a reason to cut
            # the miner's power: it keeps being asked to sleep, and the error keeps showing
            failed = res.outcome == "failed"
            rec.sleep_retry_at = now + timedelta(seconds=SLEEP_RETRY_S) if failed else NEVER
        elif a.kind == ActionKind.OUTLET_OFF and done:
            rec.outlet_off = True
        elif a.kind == ActionKind.OUTLET_ON and done:
            rec.outlet_off = False

    async def wait(self) -> None:
        """Until every action sent so far is settled (confirmed or failed)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.wait()


def _none_of(h: MinerHandle | None) -> str:
    return "firmware not known" if h is None else f"not offered by {h.firmware.value} firmware"


def _steady(known: float | None, seen: float | None) -> float | None:
    """A miner's full draw, kept while readings stay within a few percent of it: its steps
    (and a floor learned from a refused one) do not move with every reading's noise."""
    if seen is None or (known is not None and abs(seen - known) <= DRAW_BAND * known):
        return known
    return seen


@functools.lru_cache(maxsize=4096)  # at every meter reading, for every limitable miner
def _steps(full_w: float, step_pct: float, min_pct: float) -> tuple[float, ...]:
    """Power targets below ``full_w``: every ``step_pct`` of it down to ``min_pct`` of it."""
    out: list[float] = []
    k = 1
    while (pct := 100.0 - k * step_pct) >= min_pct - 1e-9:
        out.append(float(round(full_w * pct / 100.0)))
        k += 1
    return tuple(out)
