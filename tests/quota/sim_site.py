"""An in-process site for the controller's closed-loop tests (tests/quota/test_closed_loop.py).

Simulated miners act on a command after their firmware's apply time; a site meter reads
Σ miners × the site's overhead plus any other load, its import counter integrated second by
second; and the agent's decision step runs on each reading: ``evaluate`` (the quota, its
filtered decision load, the allowed power) → ``Plant.decide`` (the plan with every action in
flight counted) → the commands, noted in the plant as the agent notes them
(``pending_for``), confirmed by the control side's once-a-second re-read after they act. The
miners are re-read every ``asic_s`` as the agent's miner job does; between two reads the plan
sees the last reading and the plant's pending actions. One fake clock, no sockets, no agent:
a ten-minute run takes a fraction of a second.

What the agent adds around this step and the harness leaves out: the real commands and
their failures (tests/e2e/test_curtailment*.py), orders, outlets, the telemetry.
"""

from __future__ import annotations

import functools
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from kuat.collectors.cgminer.firmware.controls import apply_times
from kuat.quota.clock import hour_bounds, hour_of
from kuat.quota.curtail import ActionKind, CurtailPlan, CurtailPolicy, MinerState, plan
from kuat.quota.evaluate import MeterSample, QuotaPolicy, QuotaStatus, evaluate
from kuat.quota.plant import Plant, pending_for
from kuat.quota.schedule import HourlyAllocation, ScheduleBook

SITE = "sim"
SLEEP_W = 10.0
OVERHEAD = 1.06
COUNTER_KWH = 1_284_000.0
# Firmware with a power target (their handles are PowerLimitable); the rest can only sleep.
LIMITABLE = frozenset({"luxos", "braiins", "whatsminer"})
MIX = ("bitmain", "whatsminer", "luxos", "braiins")
# How long each firmware takes to act, as its backend declares (the agent hands the plant this)
DECLARED_APPLY_S = apply_times()
# The agent's default power-limit steps: 10 % of full power down to 60 %.
STEP_PCT = (90, 80, 70, 60)
RECENT_S = 20  # the filter's window is 10 s
COARSE_S = 60
# A day with no hour change near it: the run ends ``lead_s`` after it starts, at an hour's end.
HOUR_END = hour_bounds(*hour_of(datetime(2026, 11, 25, 9, 30, tzinfo=UTC)))[1]


@dataclass
class SimMiner:
    device_id: str
    family: str
    full_w: float
    ths: float
    apply: dict[str, float]  # seconds from a command to its effect, by verb
    asleep: bool = False
    limit_w: float | None = None
    due: tuple[float, ActionKind, float | None] | None = None  # (at, what, target)

    @property
    def draw_w(self) -> float:
        if self.asleep:
            return SLEEP_W
        return min(self.full_w, self.limit_w) if self.limit_w is not None else self.full_w

    @property
    def hashrate(self) -> float:
        return self.ths * self.draw_w / self.full_w if not self.asleep else 0.0

    def steps(self) -> tuple[float, ...]:
        if self.family not in LIMITABLE:
            return ()
        return _steps(self.full_w)

    def apply_s(self, kind: ActionKind) -> float:
        verb = {ActionKind.SLEEP: "sleep", ActionKind.RESTORE: "wake"}.get(kind, "limit")
        return self.apply.get(verb, 0.0)

    def act(self) -> None:
        assert self.due is not None
        _, kind, target = self.due
        self.due = None
        if kind is ActionKind.SLEEP:
            self.asleep = True
        elif kind is ActionKind.RESTORE:
            self.asleep = False
        else:
            self.limit_w = None if target is not None and target >= self.full_w else target


@functools.cache
def _steps(full_w: float) -> tuple[float, ...]:
    return tuple(float(round(full_w * p / 100)) for p in STEP_PCT)


def farm(
    n: int, families: tuple[str, ...] = MIX, slow: dict[str, float] | None = None
) -> list[SimMiner]:
    """``n`` miners of 3.0–3.6 kW at 20–38 J/TH, the families in turn. Each acts after the
    time kuat assumes for its firmware until it learns better (its backend's apply_s: a stock
    Antminer's sleep 15 s, a Whatsminer's limit 20 s), the rest at once; ``slow``: every verb
    of a family takes that long instead."""
    out = []
    for i in range(n):
        fam = families[i % len(families)]
        w = 3000.0 + (i * 37) % 600
        jth = 20.0 + (i * 7) % 19
        if slow is not None and fam in slow:
            apply = dict.fromkeys(("sleep", "wake", "limit"), slow[fam])
        else:
            apply = {v: s for (f, v), s in DECLARED_APPLY_S.items() if f == fam}
        out.append(SimMiner(f"m{i:03d}", fam, w, w / jth, apply))
    return out


@dataclass
class Run:
    """A scenario's timeline (seconds from the start; the hour ends at ``lead_s``)."""

    miners: list[SimMiner]
    share: float  # this hour's allocation for the rest of the hour, as a share of full load
    next_share: float = 1.5  # the next hour's, likewise
    lead_s: int = 600
    after_s: int = 30  # run on into the next hour
    # (at, new share of full load for the rest of the hour): a new schedule version
    cuts: tuple[tuple[int, float], ...] = ()
    extra_kw: Callable[[int], float] = lambda t: 0.0  # other site load (not miners)
    enforce: bool = True
    # kuat has seen these firmwares act before (the plant knows their apply times); else it
    # starts from its defaults and learns from the first commands
    learned: bool = False
    meter_s: int = 1
    asic_s: int = 30
    noise: float = 0.002  # the meter's reading error, a share of the reading (uniform)
    seed: int = 0
    policy: CurtailPolicy = field(
        default_factory=lambda: CurtailPolicy(
            min_on_s=300, min_off_s=300, hysteresis_kw=5, limit_hold_s=60
        )
    )
    quota: QuotaPolicy = field(default_factory=lambda: QuotaPolicy(tolerance_kwh=1.0))

    @property
    def full_kw(self) -> float:
        return sum(m.full_w for m in self.miners) / 1000 * OVERHEAD


@dataclass
class Trace:
    readings: list[tuple[int, float, float | None]] = field(default_factory=list)  # t, kW, allowed
    actions: list[tuple[int, str, ActionKind]] = field(default_factory=list)
    plans: list[CurtailPlan] = field(default_factory=list)
    statuses: list[QuotaStatus] = field(default_factory=list)
    hour_kwh: float = 0.0
    allocation_kwh: float = 0.0

    def switches(self, before: int | None = None) -> int:
        return sum(1 for t, _, _ in self.actions if before is None or t < before)


def schedule(start: datetime, kwh_this: float, kwh_next: float, version: int) -> ScheduleBook:
    """This hour's allocation and the next's (version ``version``), every other hour none."""
    by_day: dict[date, dict[int, float]] = {}
    for at, kwh in ((start, kwh_this), (HOUR_END, kwh_next)):
        day, he = hour_of(at)
        by_day.setdefault(day, {})[he] = kwh
    book = ScheduleBook()
    for day, hours in by_day.items():
        mwh = tuple(hours.get(h, 0.0) / 1000 for h in range(1, 25))
        book.add(HourlyAllocation(SITE, day, mwh, version=version))
    return book


def simulate(run: Run) -> Trace:
    rng = random.Random(run.seed)
    start = HOUR_END - timedelta(seconds=run.lead_s)
    hour_start = HOUR_END - timedelta(hours=1)
    full_kw = run.full_kw
    used0 = full_kw * (start - hour_start).total_seconds() / 3600  # full load until now
    counter = COUNTER_KWH
    counter_h0 = counter - used0

    def book_for(share: float, used: float, left_s: float, version: int) -> ScheduleBook:
        return schedule(
            start, used + share * full_kw * left_s / 3600, run.next_share * full_kw, version
        )

    book = book_for(run.share, used0, run.lead_s, 1)
    cuts = list(run.cuts)
    plant = Plant(default_apply_s=DECLARED_APPLY_S)  # as the agent's curtailer builds it
    if run.learned:
        assert plant.apply_learned is not None
        for m in run.miners:
            for verb in ("sleep", "wake", "limit"):
                plant.apply_learned[(m.family, verb)] = m.apply.get(verb, 0.0)
    # The meter history: the hour's start (the agent's history goes back before it), then a
    # sample every COARSE_S, then every reading of the last RECENT_S. What a decision reads
    # is all there: the hour's energy from the import counter, the present load and the short
    # window of the filter; the thinning keeps evaluate's cost flat as a run goes on.
    coarse = [MeterSample(hour_start, full_kw, counter_h0)]
    recent: deque[MeterSample] = deque()
    trace = Trace()
    by_id = {m.device_id: m for m in run.miners}
    family_of = {m.device_id: m.family for m in run.miners}
    seen: dict[str, MinerState] = {}  # the last miner readings
    read_at: dict[str, datetime] = {}
    switched: dict[str, datetime] = {}
    limited: dict[str, datetime] = {}
    ours: dict[str, float] = {}  # limits we set and saw confirmed
    confirming: dict[str, tuple[float, ActionKind, float | None]] = {}  # did -> (at, kind, target)
    version = 1
    miners: list[MinerState] = []
    dirty = True  # what the controller knows of the miners changed: rebuild their states
    for t in range(run.lead_s + run.after_s + 1):
        now = start + timedelta(seconds=t)
        if now == HOUR_END:
            trace.hour_kwh = counter - counter_h0
            trace.allocation_kwh = _allocation(book, now - timedelta(seconds=1))
        for m in run.miners:
            if m.due is not None and m.due[0] <= t:
                m.act()
        # the control side re-reads a commanded miner once a second: confirmed once it shows
        for did, (at, kind, target) in list(confirming.items()):
            if by_id[did].due is None and t > at:
                del confirming[did]
                plant.settled(did, True, now)
                dirty = True
                if kind in (ActionKind.LIMIT_POWER, ActionKind.RESTORE_POWER):
                    full = by_id[did].full_w
                    if target is None or target >= full:
                        ours.pop(did, None)
                    else:
                        ours[did] = target
        while cuts and cuts[0][0] <= t:
            version += 1
            _, share = cuts.pop(0)
            book = book_for(share, counter - counter_h0, (HOUR_END - now).total_seconds(), version)
        true_kw = sum(m.draw_w for m in run.miners) / 1000 * OVERHEAD + run.extra_kw(t)
        if t % run.asic_s == 0:
            for m in run.miners:
                seen[m.device_id] = _reading(m, seen.get(m.device_id))
                read_at[m.device_id] = now
            dirty = True
        if t % run.meter_s == 0:
            shown = true_kw * (1 + rng.uniform(-run.noise, run.noise))
            recent.append(MeterSample(now, shown, counter))
            while (now - recent[0].taken_at).total_seconds() > RECENT_S:
                old = recent.popleft()
                if int((old.taken_at - start).total_seconds()) % COARSE_S == 0:
                    coarse.append(old)
            samples = [*coarse, *recent]
            trace.statuses.append(status := _evaluate(run, plant, book, samples, now, read_at))
            if dirty:
                miners = [
                    _known(seen[d], switched.get(d), limited.get(d), ours.get(d), by_id[d])
                    for d in seen
                ]
                dirty = False
            p = plant.decide(
                status,
                miners,
                now,
                run.policy,
                read_at=read_at,
                families={m.family for m in run.miners},
                meter_s=run.meter_s,
                allowed_kw=status.allowed_kw,
                next_allowed_kw=status.next_allocation_kwh,
                family_of=family_of,
            )
            trace.plans.append(p)
            trace.readings.append((t, shown, status.allowed_kw))
            if run.enforce:
                planned = {m.device_id: m for m in plant.adjust(miners)}
                for a in p.actions:
                    m = by_id[a.device_id]
                    assert m.due is None and a.device_id not in confirming, a
                    if a.kind in (ActionKind.LIMIT_POWER, ActionKind.RESTORE_POWER):
                        limited[a.device_id] = now
                    else:
                        switched[a.device_id] = now
                    plant.sent(pending_for(a, m.family, now, planned[a.device_id].power_w or 0.0))
                    m.due = (t + m.apply_s(a.kind), a.kind, a.target_w)
                    confirming[a.device_id] = m.due
                    trace.actions.append((t, a.device_id, a.kind))
                    dirty = True
                    if m.apply_s(a.kind) == 0:
                        m.act()
        counter += true_kw / 3600
    return trace


def _allocation(book: ScheduleBook, at: datetime) -> float:
    day, he = hour_of(at)
    alloc = book.get(SITE, day)
    assert alloc is not None
    return alloc.kwh(he) or 0.0


def _evaluate(
    run: Run,
    plant: Plant,
    book: ScheduleBook,
    samples: list[MeterSample],
    now: datetime,
    read_at: dict[str, datetime],
) -> QuotaStatus:
    """As the agent's quota job: actuation = a meter interval + the slowest apply time."""
    families = {m.family for m in run.miners}
    policy = replace(run.quota, actuation_s=run.meter_s + plant.slowest_apply_s(families))
    since = plant.last_confirmed_at(timedelta(minutes=5), now)
    landing = plant.landing(now, samples[-1].taken_at)
    return evaluate(book, samples, now, policy, site=SITE, decision_since=since, landing=landing)


def _reading(m: SimMiner, last: MinerState | None) -> MinerState:
    """The miner as a poll reads it (a sleeping one: its mining figures, as the agent keeps)."""
    if m.asleep:
        power = last.power_w if last is not None else m.full_w
        ths = last.hashrate_ths if last is not None else m.ths
        return MinerState(m.device_id, power, ths, True)
    return MinerState(m.device_id, m.draw_w, m.hashrate, False, power_limit_w=m.limit_w)


def _known(
    r: MinerState,
    switched: datetime | None,
    limited: datetime | None,
    ours: float | None,
    m: SimMiner,
) -> MinerState:
    """The reading with what the agent remembers (its MinerRecord) and the handle's offer."""
    steps = m.steps()
    return MinerState(
        r.device_id,
        r.power_w,
        r.hashrate_ths,
        r.asleep,
        switched,
        power_steps_w=steps,
        full_power_w=m.full_w if steps else None,
        power_limit_w=ours,
        last_limited=limited,
    )


def effective_allowed_kw(run: Run, share: float, cut_at: int, full_until: int) -> float:
    """The power the rest of the hour allows once a cut acts: an allocation of ``share`` of
    full load from ``cut_at`` to the hour's end, less what the farm draws at full load until
    ``full_until`` (no command acts sooner than a meter interval plus its apply time)."""
    left, acting = run.lead_s - cut_at, full_until - cut_at
    return (share * run.full_kw * left - run.full_kw * acting) / (left - acting)


def minimum_switches(run: Run, levels: list[float], extra_kw: float = 0.0) -> tuple[int, int]:
    """The fewest (cuts, switches) possible under the agent's constraints (``run.policy``):
    one plan on the true plant per allowed level in turn
    (each change of the allowance is a decision of its own: the controller cannot know the
    next one), then at an ample next hour each miner changed brought back (a wake, a limit
    raised, or both);
    with a tight next hour, one more plan to its allowance instead."""
    fresh = [SimMiner(m.device_id, m.family, m.full_w, m.ths, m.apply) for m in run.miners]
    if run.next_share < 1:
        levels = [*levels, run.next_share * run.full_kw]
    cuts = sum(_apply_ideal(fresh, allowed, extra_kw, run.policy) for allowed in levels)
    restores = 0
    if run.next_share >= 1:
        # a wake and a limit raised are two commands for one miner
        restores = sum(m.asleep + (m.limit_w is not None) for m in fresh)
    return cuts, cuts + restores


def _apply_ideal(
    miners: list[SimMiner], allowed_kw: float, extra_kw: float, policy: CurtailPolicy
) -> int:
    states = [
        MinerState(
            m.device_id,
            m.full_w if m.asleep else m.draw_w,
            m.ths,
            m.asleep,
            power_steps_w=m.steps(),
            full_power_w=m.full_w if m.steps() else None,
            power_limit_w=m.limit_w,
        )
        for m in miners
    ]
    load = sum(m.draw_w for m in miners) / 1000 * OVERHEAD + extra_kw
    # the agent's own policy (its hysteresis decides when limits alone will do)
    p = plan(allowed_kw, states, HOUR_END, policy, load_kw=load, overhead_factor=OVERHEAD)
    by_id = {m.device_id: m for m in miners}
    for a in p.actions:
        m = by_id[a.device_id]
        if a.kind is ActionKind.SLEEP:
            m.asleep = True
        elif a.kind is ActionKind.LIMIT_POWER:
            m.limit_w = a.target_w
    return len(p.actions)


def seconds_to_allowed(trace: Trace, since: int, slack_kw: float) -> int | None:
    """From ``since`` to the first reading after it at or below the allowed power (within
    ``slack_kw``: the meter's noise and the planner's deadband)."""
    for t, kw, allowed in trace.readings:
        if t > since and allowed is not None and kw <= allowed + slack_kw:
            return t - since
    return None
