"""Curtailment planner: which miners to slow down, put to sleep or cut off (and bring back) so
the site keeps to the power allowed for the rest of the hour. It returns a plan with a reason for
every decision and executes nothing; the agent carries the plan out through the collectors'
control side.

When over the limit, soft actions come before hard ones:

1. Power limits, where the firmware has a power target (or profiles of watts): the least efficient
   (highest J/TH) first, each down to the step that just reaches the target, else its lowest.
   Used only when limits *alone* reach the target with room to spare ("Limits or sleeps"
   below): a limited miner still hashes, but if the site needs more than limits can give,
   sleeping the least efficient saves far more per command, and limiting miners that must
   then be slept anyway is wasted churn.
2. Sleep, the least efficient first: the hashrate lost per kW saved is smallest. A mining miner
   reporting no hashrate is pure cost and goes first.
3. Still over: miners that could not be slept (held by their minimum on time, or unable to
   sleep) are limited to their lowest step — still soft, and not a power cycle.
4. Last resort: the PDU outlet of a miner that *cannot* sleep (no sleep in its firmware, or its
   last sleep failed) is switched off. Cutting power under load is hard on PSUs and the miner
   takes minutes to boot, so never for a miner that a sleep command can stop.

Limits or sleeps: what limits alone can reach (every limitable miner free of its hold at its
lowest step) must cover the cut plus a quarter of the hysteresis (at most 2 % of the allowed
power, the cut's deadband), else the plan sleeps. That reach is known only as well as the
readings behind it: each miner's power reading (its steps are shares of it), the learned
overhead, firmware that runs under its limit. A plan made on one side of that edge while the
plant is on the other makes many limits where a few sleeps do, or limits that fall short and
are followed by sleeps of the same miners. So within ``LIMIT_NOISE`` (5 %) of the reach beyond
the deadband, the choice counts switches: both plans are made on scratch copies and the one
with fewer actions wins (limits on a tie, and limits when the sleeps fall short, held by their
timers). Sleeps nearly always take fewer actions (a sleep saves a whole miner, a limit at most
40 % of one), so in effect limits alone need ``need + deadband + 5 % of reach <= reach``; past
that margin limits are made however many they are (a small cut keeps every miner hashing).
The edge itself remains, 5 % further on: a plant right there can still be read on its other
side. The horizon: a cut planned less than ``wake_min_run_s`` before the hour's end, when the
next hour's allocation (as mean power, less ``margin_kw``) is deeper than this hour's target,
tests the limits against that deeper cut: limits that make this hour's cut but not the next
hour's would be followed at the boundary by sleeps, of the same least efficient miners first
(a limit and a sleep each). The plan itself is still sized to this hour's target.

Restoring goes in reverse and only while the load stays ``hysteresis_kw`` below the limit, so a
site hovering at its limit does not flap: outlets on first (those miners are the furthest from
normal), then wakes, then power limits raised — the most efficient first in each group.

Timers: power-cycling hashboards and PSUs too often wears them and a miner needs minutes to
reach full hashrate, so minimum on and off times hold sleeps, wakes *and* outlet switches (an
outlet switch is a power cycle of the same miner). A power-limit change only retunes clocks and
voltages, so it has its own shorter hold (``limit_hold_s``) between any two changes of one
miner's limit; that alone stops a limit from see-sawing between two steps. A switch the timers
forbid is held, and said so.

The hour's edge: allowed power is the hour's remaining energy over its remaining time, so it
climbs steeply in the last minutes of an hour that was cut. A wake (outlet on, limit raised)
then pays its switching cost for a minute of mining and is undone at the boundary if the next
hour is tight. The rule: a restore planned less than ``wake_min_run_s`` before the hour's end
is made only if the load with it also fits the next hour (``next_allowed_kw``, the next
hour's allocation as mean power, less the hysteresis); otherwise it is held and said so. With
``wake_min_run_s`` at least ``min_on_s``, every miner woken in an hour is free to sleep again
at its end, so the boundary never has to sleep efficient miners while inefficient ones are held.
In the same last ``wake_min_run_s``, a power limit that the next hour lets run at full power
is raised all the way or not at all: raised part way, it would be raised again as that hour
starts, two changes where one does (``curtail_hold_partial``).

Past the hour's end: a decision made less than ``actuation_s`` (a meter interval plus the
firmware's apply time) before the hour ends acts only in the next hour, so it is planned
against the next hour's allowed power when that is known. (Allowed power itself, the hour's
remaining energy over its last seconds, swings wildly there.)

In the minute before that (``EDGE_S``) nothing is restored: the headroom there is the
hour's last few kWh over a few seconds and swings with every reading.

A cut is planned only when the load is over the allowed power by more than a quarter of the
hysteresis (at most 2 % of the allowed power): a smaller excess is meter noise, and if real, its
energy lowers the allowed power until the excess is larger. That needs a later decision that
still acts inside the hour: the last decision, the one whose successor (``decision_s`` later)
would act only after the hour's end, cuts on any excess.

A restore plan that would bring back less than half the hysteresis is not made, unless it
restores everything: headroom that grows a little at a time (an hour closing under its
allocation) would otherwise bring miners back one small step per cycle.

Site overhead: the meter sees the miners times the site's overhead (losses, fans, lights), so a
miner's watts count ``overhead_factor`` times in the planned load (kuat.quota.plant learns it).

A cut that acts sooner than budgeted: the allowed power budgets the present load to go on for
``actuation_s`` (a meter interval plus the slowest firmware present's apply time), and a cut
that acts after ``d`` seconds (``plan``'s ``acts_in_s``, its own firmware's) saves that energy
too. With ``L`` seconds left in the hour and ``A`` = ``actuation_s``, each kW it cuts counts
``(L − d) / (L − A)`` kW against the allowed power (at least 1, and 1 within ``EDGE_S`` of the
budget's end, where allowed power swings). Counted at 1, a mixed fleet's first cut by fast
firmware went deeper than the hour needed and was given back a few readings later, once the
actions in flight were counted as landing when they do. ``planned_load_kw`` stays what the
meter will show. Restores count at 1: a wake that acts early only makes them more cautious.

With no capabilities given (no power steps, ``can_sleep`` true, no outlet) the plan is exactly
the sleep/wake plan of earlier versions.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from kuat.quota.clock import as_utc
from kuat.quota.reasons import Code, Reason

# The last seconds before a decision stops acting within the hour: no restores there.
EDGE_S = 60.0
# A plan names at most this many held switches: at 50,000 miners a full list would be noise.
MAX_HELD = 100
# What power limits reach is known to this share of itself (module docstring, "Limits or
# sleeps"): within it of the cut, the plan with fewer actions is made.
LIMIT_NOISE = 0.05


@dataclass(frozen=True, slots=True)
class MinerState:
    """A miner as the planner sees it. For a sleeping miner, ``power_w`` and ``hashrate_ths``
    are what it draws and makes when mining (its last or nominal figures), since that is what
    waking it would add.

    Capabilities (all optional):

    - ``power_steps_w``: power targets (W) its firmware can run it at below ``full_power_w``;
      empty: no power limit. ``full_power_w``: its draw without our limit (None: ``power_w``).
      ``power_limit_w``: the limit we set and is in force (None: none of ours).
      ``last_limited``: when we last changed its limit.
    - ``can_sleep``: false when its firmware has no sleep or its last sleep failed.
    - ``outlet``: the PDU outlet feeding it (any label the agent understands), and
      ``outlet_off``: that outlet is off (then ``asleep`` is true as well).
    """

    device_id: str
    power_w: float | None
    hashrate_ths: float | None
    asleep: bool
    last_switched: datetime | None = None  # None: not switched by us, free to switch
    power_steps_w: tuple[float, ...] = ()
    full_power_w: float | None = None
    power_limit_w: float | None = None
    last_limited: datetime | None = None
    can_sleep: bool = True
    outlet: str | None = None
    outlet_off: bool = False
    # a command of ours to it is not confirmed yet: no other is sent until it is (it counts
    # as done in the load; kuat.quota.plant)
    busy: bool = False

    @property
    def j_per_th(self) -> float:
        if self.power_w is None or not self.hashrate_ths or self.hashrate_ths <= 0:
            return math.inf
        return self.power_w / self.hashrate_ths

    @property
    def min_power_w(self) -> float | None:
        return min(self.power_steps_w) if self.power_steps_w else None


@dataclass(frozen=True, slots=True)
class CurtailPolicy:
    min_on_s: float = 600.0
    min_off_s: float = 600.0
    hysteresis_kw: float = 20.0
    margin_kw: float = 0.0  # aim this far below the allowed power when curtailing
    limit_hold_s: float = 120.0  # between two power-limit changes of one miner
    # a restore this close to the hour's end must fit the next hour too (module docstring)
    wake_min_run_s: float = 600.0

    def __post_init__(self) -> None:
        values = (self.min_on_s, self.min_off_s, self.hysteresis_kw, self.margin_kw)
        if min(*values, self.limit_hold_s, self.wake_min_run_s) < 0:
            raise ValueError("curtailment times and margins must be >= 0")


class ActionKind(enum.StrEnum):
    SLEEP = "sleep"
    RESTORE = "restore"
    LIMIT_POWER = "limit_power"
    RESTORE_POWER = "restore_power"
    OUTLET_OFF = "outlet_off"
    OUTLET_ON = "outlet_on"


@dataclass(frozen=True, slots=True)
class Action:
    """``power_w``: what the action saves (or adds back), in W. ``target_w``: the new power
    limit for LIMIT_POWER / RESTORE_POWER (equal to the full power: remove our limit).
    ``outlet``: the outlet for OUTLET_OFF / OUTLET_ON."""

    device_id: str
    kind: ActionKind
    power_w: float
    reason: Reason
    target_w: float | None = None
    outlet: str | None = None


@dataclass(frozen=True, slots=True)
class CurtailPlan:
    at: datetime
    allowed_kw: float | None
    load_kw: float
    planned_load_kw: float
    actions: tuple[Action, ...]
    held: tuple[Reason, ...]  # switches the timers forbade
    reason: Reason


@dataclass(frozen=True, slots=True)
class PlanSummary:
    """What a plan does, as an operator reads it: which kinds of action, how many miners,
    how many kW they move."""

    kinds: frozenset[str]
    miners: int
    kw: float

    @classmethod
    def of(cls, p: CurtailPlan) -> PlanSummary:
        kw = sum(a.power_w for a in p.actions) / 1000
        return cls(frozenset(a.kind.value for a in p.actions), len(p.actions), kw)

    def differs_from(self, last: PlanSummary | None, hysteresis_kw: float) -> bool:
        """Materially: other kinds of action, or the number of miners or the kW changing by
        more than 10 % (and more than one miner, or the hysteresis). A dry run repeats its
        plan at every reading, and small noise reorders the miners: only this is news."""
        if last is None or last.kinds != self.kinds:
            return True
        n_same = abs(self.miners - last.miners) <= max(1, math.floor(0.1 * last.miners))
        kw_same = abs(self.kw - last.kw) <= max(hysteresis_kw, 0.1 * last.kw)
        return not (n_same and kw_same)


def _jth(m: MinerState) -> float | None:
    j = m.j_per_th
    return None if math.isinf(j) else round(j, 1)


def _level(m: MinerState) -> float:
    """The power a limitable miner is set to now: our limit, else its full power."""
    if m.power_limit_w is not None:
        return m.power_limit_w
    return m.full_power_w if m.full_power_w is not None else (m.power_w or 0.0)


# indexes into plan's acts_in_s
_SLEEP, _LIMIT = 0, 1


class _Planner:
    def __init__(
        self,
        now: datetime,
        policy: CurtailPolicy,
        planned: float,
        overhead: float = 1.0,
        budget: tuple[float | None, float] = (None, 0.0),
        acts_in_s: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        self.now = now
        self.policy = policy
        self.planned = planned  # what the meter will show, kW
        self.k = overhead  # kW at the meter per kW at the miners
        # (seconds left in the hour, seconds the allowed power budgets the present load for)
        self.left_s, self.budget_s = budget
        self.acts_in_s = acts_in_s or {}
        # kW the cuts so far count beyond their own: the energy of acting sooner than budgeted
        self.early = 0.0
        self.actions: list[Action] = []
        self.held: list[Reason] = []

    def fork(self) -> _Planner:
        """A scratch copy with nothing planned yet, to count what a plan would take."""
        budget = (self.left_s, self.budget_s)
        out = _Planner(self.now, self.policy, self.planned, self.k, budget, self.acts_in_s)
        out.early = self.early
        return out

    @property
    def effective(self) -> float:
        """The planned load as the allowed power's budget sees it (module docstring)."""
        return self.planned - self.early

    def gain(self, m: MinerState, verb: int) -> float:
        """kW a cut of 1 kW at miner ``m`` counts for against the allowed power."""
        acts = self.acts_in_s.get(m.device_id)
        if acts is None or self.left_s is None:
            return self.k
        room = self.left_s - self.budget_s
        if room < EDGE_S:
            return self.k
        return self.k * max(1.0, (self.left_s - acts[verb]) / room)

    def since(self, t: datetime | None) -> float:
        return math.inf if t is None else (self.now - as_utc(t)).total_seconds()

    def hold(self, code: Code, m: MinerState, wait: float) -> None:
        if len(self.held) < MAX_HELD:
            self.held.append(Reason.of(code, device_id=m.device_id, wait_s=math.ceil(wait)))

    def waits(self, m: MinerState, code: Code, minimum: float, last: datetime | None) -> bool:
        """True (and the hold noted) if ``m`` must wait ``minimum`` since ``last``."""
        wait = minimum - self.since(last)
        if wait > 0:
            self.hold(code, m, wait)
            return True
        return False

    def add(self, action: Action, delta_kw: float, gain: float | None = None) -> None:
        """``delta_kw`` at the miners; the meter sees it times the overhead, the budget
        ``gain`` times (a cut: :meth:`gain`)."""
        self.planned += delta_kw * self.k
        if gain is not None:
            self.early -= delta_kw * (gain - self.k)
        self.actions.append(action)

    def drop(self, action: Action, gain: float) -> None:
        """Take back a cut planned above (``gain`` as it was added with)."""
        self.actions.remove(action)
        self.planned += self.k * action.power_w / 1000
        self.early -= (gain - self.k) * action.power_w / 1000

    def limit(self, m: MinerState, target_w: float) -> None:
        power = m.power_w or 0.0
        saved = max(power - target_w, 0.0)
        reason = Reason.of(
            Code.CURTAIL_LIMIT_POWER,
            device_id=m.device_id,
            from_w=round(_level(m)),
            to_w=round(target_w),
            saved_w=round(saved),
            j_per_th=_jth(m),
        )
        action = Action(m.device_id, ActionKind.LIMIT_POWER, saved, reason, target_w)
        self.add(action, -saved / 1000, self.gain(m, _LIMIT))


def _steps_below(m: MinerState) -> list[float]:
    """Steps that lower the miner's draw, highest first."""
    top = min(_level(m), m.power_w or 0.0)
    return sorted((s for s in m.power_steps_w if 0 < s < top), reverse=True)


def curtailable_w(m: MinerState) -> float:
    """What a plan could take off this miner now (W): all its draw when it can be slept or its
    outlet cut, its draw above its lowest power step when it can only be limited, nothing when
    it is asleep already or can be neither. A shard of a split site reports the sum, so that
    the controller never asks a hall to shed load it cannot (kuat.quota.shard_caps)."""
    if m.asleep or not m.power_w:
        return 0.0
    if m.can_sleep or m.outlet is not None:
        return m.power_w
    if m.power_steps_w:
        return max(0.0, m.power_w - min(m.power_steps_w))
    return 0.0


def _least_efficient_first(miners: Sequence[MinerState]) -> list[MinerState]:
    return sorted(miners, key=lambda m: (-m.j_per_th, -(m.power_w or 0.0), m.device_id))


def _limits_alone(
    pl: _Planner,
    awake: Sequence[MinerState],
    limitable: Sequence[MinerState],
    target: float,
    allowed_kw: float,
    deeper: float | None,
) -> bool:
    """Do power limits alone make this cut (module docstring, "Limits or sleeps")? Near
    the edge the choice is made by counting each plan's actions (on scratch planners)."""
    policy = pl.policy
    free_to_limit = [m for m in limitable if pl.since(m.last_limited) >= policy.limit_hold_s]
    reach = (
        sum(pl.gain(m, _LIMIT) * ((m.power_w or 0.0) - _steps_below(m)[-1]) for m in free_to_limit)
        / 1000
    )
    # the cut to make: this hour's, or near its end the next hour's when that is deeper
    need = pl.effective - (target if deeper is None else min(target, deeper))
    spare = min(policy.hysteresis_kw / 4, 0.02 * max(allowed_kw, 0.0))
    if reach < need + spare:
        return False
    if reach >= need + spare + LIMIT_NOISE * reach:
        return True
    # within the readings' noise of the edge: the plan with fewer actions, limits on a tie
    by_limits, by_sleeps = pl.fork(), pl.fork()
    _by_limits(by_limits, limitable, target)
    _by_sleeps(by_sleeps, awake, limitable, target)
    if by_sleeps.effective > target:
        return True  # sleeps fall short (timers): the limits that reach
    return len(by_limits.actions) <= len(by_sleeps.actions)


def _by_limits(pl: _Planner, limitable: Sequence[MinerState], target: float) -> None:
    """1. power limits, least efficient first, each to the step that is just enough."""
    for m in limitable:
        if pl.effective <= target:
            break
        if pl.waits(m, Code.CURTAIL_HOLD_LIMIT, pl.policy.limit_hold_s, m.last_limited):
            continue
        steps = _steps_below(m)
        need_w = (pl.effective - target) * 1000 / pl.gain(m, _LIMIT)
        enough = [s for s in steps if (m.power_w or 0.0) - s >= need_w]
        pl.limit(m, enough[0] if enough else steps[-1])


def _by_sleeps(
    pl: _Planner, awake: Sequence[MinerState], limitable: Sequence[MinerState], target: float
) -> None:
    """2. sleeps, 3. lowest steps for what could not sleep, 4. outlets."""
    policy = pl.policy
    # 2. sleep, least efficient first
    acted: set[str] = set()
    for m in awake:
        if pl.effective <= target:
            break
        if not m.can_sleep:
            continue
        if pl.waits(m, Code.CURTAIL_HOLD_MIN_ON, policy.min_on_s, m.last_switched):
            continue
        power = m.power_w or 0.0
        reason = Reason.of(
            Code.CURTAIL_SLEEP, device_id=m.device_id, power_w=round(power), j_per_th=_jth(m)
        )
        action = Action(m.device_id, ActionKind.SLEEP, power, reason)
        pl.add(action, -power / 1000, pl.gain(m, _SLEEP))
        acted.add(m.device_id)
    # 3. what could not sleep goes to its lowest power step: soft, and not a power cycle
    limited: dict[str, Action] = {}
    for m in limitable:
        if pl.effective <= target:
            break
        if m.device_id in acted:
            continue
        if pl.waits(m, Code.CURTAIL_HOLD_LIMIT, policy.limit_hold_s, m.last_limited):
            continue
        pl.limit(m, _steps_below(m)[-1])
        limited[m.device_id] = pl.actions[-1]
    # 4. last resort: cut the outlet of a miner no sleep command can stop
    for m in awake:
        if pl.effective <= target:
            break
        if m.can_sleep or m.outlet is None or m.device_id in acted:
            continue
        if pl.waits(m, Code.CURTAIL_HOLD_MIN_ON, policy.min_on_s, m.last_switched):
            continue
        if (dropped := limited.pop(m.device_id, None)) is not None:
            # the outlet supersedes the limit planned just above for the same miner
            pl.drop(dropped, pl.gain(m, _LIMIT))
        power = m.power_w or 0.0
        reason = Reason.of(
            Code.CURTAIL_OUTLET_OFF,
            device_id=m.device_id,
            outlet=m.outlet,
            power_w=round(power),
            j_per_th=_jth(m),
        )
        action = Action(m.device_id, ActionKind.OUTLET_OFF, power, reason, outlet=m.outlet)
        pl.add(action, -power / 1000)


def _curtail(
    pl: _Planner,
    miners: Sequence[MinerState],
    target: float,
    allowed_kw: float,
    load: float,
    deeper: float | None = None,
) -> CurtailPlan:
    """``deeper``: the next hour's cut target when the horizon rule applies (plan)."""
    awake = _least_efficient_first([m for m in miners if not m.asleep and (m.power_w or 0) > 0])
    limitable = [m for m in awake if _steps_below(m)]
    if limitable and _limits_alone(pl, awake, limitable, target, allowed_kw, deeper):
        _by_limits(pl, limitable, target)
    else:
        _by_sleeps(pl, awake, limitable, target)
    if pl.effective > allowed_kw:
        reason = Reason.of(Code.CURTAIL_SHORTFALL, excess_kw=round(pl.effective - allowed_kw, 1))
    elif pl.actions:
        reason = pl.actions[0].reason
    else:
        reason = Reason.of(
            Code.CURTAIL_WITHIN_LIMIT, load_kw=round(load, 1), allowed_kw=round(allowed_kw, 1)
        )
    return CurtailPlan(
        pl.now, allowed_kw, load, pl.planned, tuple(pl.actions), tuple(pl.held), reason
    )


def _restore(
    pl: _Planner,
    miners: Sequence[MinerState],
    allowed_kw: float,
    load: float,
    horizon: tuple[float | None, float | None],
) -> CurtailPlan:
    policy = pl.policy
    ceiling = allowed_kw - policy.hysteresis_kw
    left_s, next_kw = horizon

    def too_late(m: MinerState, added_kw: float) -> bool:
        """The horizon rule (module docstring); the hold is noted."""
        if left_s is None or left_s >= policy.wake_min_run_s:
            return False
        if next_kw is not None and pl.planned + added_kw <= next_kw - policy.hysteresis_kw:
            return False
        if len(pl.held) < MAX_HELD:
            pl.held.append(
                Reason.of(
                    Code.CURTAIL_HOLD_HORIZON,
                    device_id=m.device_id,
                    left_s=math.floor(left_s),
                    next_kw=None if next_kw is None else round(next_kw, 1),
                )
            )
        return True

    def part_way_too_late(m: MinerState, full_kw: float) -> bool:
        """Near the hour's end, a limit the next hour lets run at full power is raised all
        the way or not yet: part way, it would be raised again as that hour starts."""
        if left_s is None or left_s >= policy.wake_min_run_s or next_kw is None:
            return False
        if pl.planned + full_kw > next_kw - policy.hysteresis_kw:
            return False
        if len(pl.held) < MAX_HELD:
            reason = Reason.of(
                Code.CURTAIL_HOLD_PARTIAL, device_id=m.device_id, left_s=math.floor(left_s)
            )
            pl.held.append(reason)
        return True

    def most_efficient_first(ms: list[MinerState]) -> list[MinerState]:
        return sorted(ms, key=lambda m: (m.j_per_th, m.power_w, m.device_id))

    down = [m for m in miners if m.asleep and m.power_w is not None and m.power_w > 0]
    # 1. outlets back on, then 2. wakes: the same timers and the same headroom test
    for group, kind, code in (
        ([m for m in down if m.outlet_off], ActionKind.OUTLET_ON, Code.CURTAIL_OUTLET_ON),
        ([m for m in down if not m.outlet_off], ActionKind.RESTORE, Code.CURTAIL_RESTORE),
    ):
        for m in most_efficient_first(group):
            power = m.power_w or 0.0
            if pl.planned + pl.k * power / 1000.0 > ceiling:
                continue  # a smaller, less efficient one further on may still fit
            if pl.waits(m, Code.CURTAIL_HOLD_MIN_OFF, policy.min_off_s, m.last_switched):
                continue
            if too_late(m, pl.k * power / 1000.0):
                continue
            params: dict[str, object] = {"device_id": m.device_id}
            if kind is ActionKind.OUTLET_ON:
                params["outlet"] = m.outlet
            reason = Reason.of(code, **params, power_w=round(power), j_per_th=_jth(m))
            outlet = m.outlet if kind is ActionKind.OUTLET_ON else None
            pl.add(Action(m.device_id, kind, power, reason, outlet=outlet), power / 1000)
    # 3. power limits raised, to the highest level the headroom allows
    limited = [
        m
        for m in miners
        if not m.asleep and m.power_limit_w is not None and m.power_limit_w < _full(m)
    ]
    for m in most_efficient_first(limited):
        power = m.power_w or 0.0
        levels = sorted({*(s for s in m.power_steps_w if s > _level(m)), _full(m)}, reverse=True)
        fits = [lv for lv in levels if pl.planned + pl.k * max(lv - power, 0.0) / 1000 <= ceiling]
        if not fits:
            continue
        if pl.waits(m, Code.CURTAIL_HOLD_LIMIT, policy.limit_hold_s, m.last_limited):
            continue
        added = max(fits[0] - power, 0.0)
        to_full_kw = pl.k * max(_full(m) - power, 0.0) / 1000
        if fits[0] < _full(m) and part_way_too_late(m, to_full_kw):
            continue
        if too_late(m, pl.k * added / 1000):
            continue
        reason = Reason.of(
            Code.CURTAIL_RESTORE_POWER,
            device_id=m.device_id,
            from_w=round(_level(m)),
            to_w=round(fits[0]),
            j_per_th=_jth(m),
        )
        pl.add(Action(m.device_id, ActionKind.RESTORE_POWER, added, reason, fits[0]), added / 1000)
    gained = pl.planned - load
    everything = len(pl.actions) == len(down) + len(limited)
    if pl.actions and gained < policy.hysteresis_kw / 2 and not everything:
        # Headroom that grows a little at a time (an hour closing under its allocation) would
        # bring miners back one small step per cycle: wait until a step is worth its switching.
        pl.actions.clear()
        pl.planned = load
    if pl.actions:
        reason = pl.actions[0].reason
    elif (down or limited) and not pl.held:
        reason = Reason.of(
            Code.CURTAIL_HYSTERESIS,
            headroom_kw=round(allowed_kw - load, 1),
            hysteresis_kw=policy.hysteresis_kw,
        )
    else:
        reason = Reason.of(
            Code.CURTAIL_WITHIN_LIMIT, load_kw=round(load, 1), allowed_kw=round(allowed_kw, 1)
        )
    return CurtailPlan(
        pl.now, allowed_kw, load, pl.planned, tuple(pl.actions), tuple(pl.held), reason
    )


def _full(m: MinerState) -> float:
    return m.full_power_w if m.full_power_w is not None else (m.power_w or 0.0)


def plan(
    allowed_kw: float | None,
    miners: Sequence[MinerState],
    now: datetime,
    policy: CurtailPolicy = CurtailPolicy(),  # frozen: a shared default is safe
    *,
    load_kw: float | None = None,
    overhead_kw: float = 0.0,
    overhead_factor: float = 1.0,
    hour_left_s: float | None = None,
    next_allowed_kw: float | None = None,
    restore: bool = True,
    actuation_s: float = 0.0,
    settling_kw: float = 0.0,
    acts_in_s: Mapping[str, tuple[float, float]] | None = None,
    decision_s: float = 0.0,
) -> CurtailPlan:
    """``load_kw`` is the site's present draw (the meter's, with actions in flight counted:
    kuat.quota.plant); without it, Σ awake miners × ``overhead_factor`` + ``overhead_kw``.
    ``allowed_kw`` comes from :func:`kuat.quota.evaluate.evaluate`. ``hour_left_s`` and
    ``next_allowed_kw`` (the next hour's allocation as mean kW, None: unknown) feed the
    horizon rule; None for ``hour_left_s`` turns it off. ``restore`` false: no restore is
    planned (the agent's choice while cuts it sent are still to act). ``actuation_s``: how long
    a decision takes to act (module docstring, "Past the hour's end"). ``settling_kw``: restores
    the load counts that the meter may already show (kuat.quota.plant): a cut needs the load
    over allowed by this much more. ``acts_in_s``: by device id, the seconds until a sleep
    and a power limit sent now show at the meter (module docstring, "A cut that acts sooner";
    a miner not in it: ``actuation_s``). ``decision_s``: how long until the next decision (the
    agent decides at every site-meter reading): the last decision that still acts inside the
    hour cuts on any excess (module docstring, "the last decision")."""
    now = as_utc(now)
    if hour_left_s is not None and hour_left_s <= actuation_s and next_allowed_kw is not None:
        allowed_kw, hour_left_s = next_allowed_kw, None
    elif hour_left_s is not None and hour_left_s < actuation_s + EDGE_S:
        restore = False  # it would run a few seconds of this hour on unsteady headroom
    if not overhead_factor > 0:
        raise ValueError("overhead_factor must be > 0")
    awake_kw = sum((m.power_w or 0.0) for m in miners if not m.asleep) / 1000.0
    load = load_kw if load_kw is not None else awake_kw * overhead_factor + overhead_kw
    if allowed_kw is None:
        return CurtailPlan(now, None, load, load, (), (), Reason.of(Code.CURTAIL_NO_LIMIT))
    pl = _Planner(now, policy, load, overhead_factor, (hour_left_s, actuation_s), acts_in_s)
    miners = [m for m in miners if not m.busy]
    # A cut needs the load above allowed by more than a quarter of the hysteresis (at most
    # 2 % of allowed): a smaller excess is meter noise, or allowed power drifting with the
    # hour's books while a batch lands. If it is real, its energy makes allowed drop until
    # the excess is larger; cutting on noise would cut one miner too many, and the hour
    # closing under would bring restores (twice the switches).
    deadband = min(policy.hysteresis_kw / 4, 0.02 * max(allowed_kw, 0.0))
    if hour_left_s is not None and hour_left_s <= actuation_s + decision_s:
        # ... unless no later decision acts inside the hour: the excess let pass now would
        # run to the hour's end (one 2 kW miner, 10 s steps: 0.02 Wh over a 1.99998 kWh hour)
        deadband = 0.0
    if load > allowed_kw + deadband + settling_kw:
        # the horizon: the next hour's cut, when its start is near (module docstring)
        near = hour_left_s is not None and hour_left_s < policy.wake_min_run_s
        deeper = None
        if near and next_allowed_kw is not None:
            deeper = next_allowed_kw - policy.margin_kw
        target = allowed_kw - policy.margin_kw
        return _curtail(pl, miners, target, allowed_kw, load, deeper)
    if not restore:
        reason = Reason.of(
            Code.CURTAIL_WITHIN_LIMIT, load_kw=round(load, 1), allowed_kw=round(allowed_kw, 1)
        )
        return CurtailPlan(now, allowed_kw, load, load, (), (), reason)
    return _restore(pl, miners, allowed_kw, load, (hour_left_s, next_allowed_kw))


# --- a plan that still stands --------------------------------------------------------------


def calm(p: CurtailPlan, miners: Sequence[MinerState]) -> bool:
    """``p``, made for ``miners``, left nothing to do and nothing to wait for: no action,
    nothing held by a timer, and no miner down (asleep, outlet off) or under a power limit,
    so nothing a later headroom could bring back. Actions in flight are the plant's to tell."""
    if p.actions or p.held or p.allowed_kw is None:
        return False
    return not any(
        m.asleep
        or m.outlet_off
        or m.busy
        or (m.power_limit_w is not None and m.power_limit_w < _full(m))
        for m in miners
    )


def stands(load_kw: float | None, allowed_kw: float | None, next_allowed_kw: float | None) -> bool:
    """After a :func:`calm` plan with nothing in flight since, whether a new plan would still
    do nothing: the load is within this hour's allowed power and the next hour's allocation
    (which rules the plan's last moments of the hour), so there is nothing to cut; and as no
    miner was down or limited, nothing to restore. What this cannot see is a miner read down
    or limited since the calm plan (by its own doing, not kuat's): it waits for the next full
    plan (the agent makes one at least every quota interval)."""
    if load_kw is None or allowed_kw is None or load_kw > allowed_kw:
        return False
    return next_allowed_kw is None or load_kw <= next_allowed_kw
