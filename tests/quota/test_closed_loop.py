"""The quota engine in closed loop: ``evaluate`` → ``plan`` → a simulated farm → its meter → …

A plant of N miners (2–4 kW each, 15–45 J/TH, 10 W when asleep) is read by an accurate meter
whose import counter integrates the plant's power step by step. Every step (10–30 s) the engine
evaluates the meter history and plans; as with ``[quota] enforce = true`` its commands take
effect at the *next* step (the agent's cycle plus the miners' reaction). The loop runs from the
moment the agent starts — at the hour start in most cases, sometimes after a restart mid-hour,
the farm having mined at full load until then — to the end of the Astana hour, and checks what
an operator is promised:

(a) a feasible allocation is not exceeded beyond the configured tolerance;
(b) no miner is switched faster than its minimum on/off times allow;
(c) with an ample allocation nothing is ever put to sleep.

Feasible (precondition of (a), ``Scenario.feasible_kwh``): the allocation covers the energy
already used when the agent starts (full load since the hour start), full load until its first
command takes effect *and one step more*, and every miner asleep (10 W each) for the rest of the
hour. The first command takes effect one step after the first plan with a limit; that plan
comes at the agent's first step, or one step later when the agent starts exactly on the hour
(nothing of the hour is metered yet, ``evaluate`` answers NO_DATA). The extra step is the
engine's actuation delay: a command acts one step after the plan. The engine budgets for it
(``QuotaPolicy.actuation_s``, the agent's quota interval), so at the bare edge the hour still
closes inside (``test_actuation_delay_at_the_feasibility_edge``). From the second plan on,
feedback absorbs any remaining error. Timers need no term of their own: miners start free
(never switched by us), and a miner is woken only while the load stays below the allowed
power, which then only grows, so min_on rarely holds one that must go back to sleep.

Ample (precondition of (c)): the allocation covers full load for the whole hour.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kuat.quota.clock import hour_bounds
from kuat.quota.curtail import EDGE_S, ActionKind, CurtailPolicy, MinerState, PlanSummary, plan
from kuat.quota.evaluate import MeterSample, QuotaPolicy, evaluate
from kuat.quota.schedule import HourlyAllocation
from tests.quota import sim_site as sim

DAY = date(2026, 11, 25)
HOUR_ENDING = 14  # 13:00–14:00 Astana, 08:00–09:00 UTC
HOUR_S = 3600
SLEEP_KW = 0.010
COUNTER_AT_START = 1_284_000.0  # the meter was not installed yesterday
# Float noise on an energy comparison: a counter near 1.3 GWh summed over hundreds of steps
# carries ~1e-8 kWh of rounding; a milliwatt-hour is far below anything that matters.
EPS_KWH = 1e-6


@dataclass
class Miner:
    device_id: str
    power_w: float  # when mining
    hashrate_ths: float
    asleep: bool = False

    @property
    def draw_kw(self) -> float:
        return SLEEP_KW if self.asleep else self.power_w / 1000.0


@dataclass(frozen=True)
class Scenario:
    miners: tuple[tuple[float, float], ...]  # (power W when mining, J/TH)
    allocation_kwh: float
    start_offset_s: int  # the agent starts this long after the hour start
    step_s: int
    min_on_s: float
    min_off_s: float
    hysteresis_kw: float
    margin_kw: float
    tolerance_kwh: float

    @property
    def full_kw(self) -> float:
        return sum(w for w, _ in self.miners) / 1000.0

    @property
    def floor_kw(self) -> float:
        return len(self.miners) * SLEEP_KW

    def first_effect_s(self) -> int:
        """Seconds after the hour start at which the engine's first command takes effect.

        At the very hour start no energy of the hour is metered yet (``evaluate`` answers
        NO_DATA, so ``plan`` has no limit): the first plan with a limit comes one step later.
        Either way its commands act one step after the plan.
        """
        steps = 2 if self.start_offset_s == 0 else 1
        return min(self.start_offset_s + steps * self.step_s, HOUR_S)

    def feasible_kwh(self) -> float:
        """The least allocation the engine is promised to keep (see the module docstring):
        full load until one step after the first command takes effect, then all asleep."""
        at = min(self.first_effect_s() + self.step_s, HOUR_S)
        return (self.full_kw * at + self.floor_kw * (HOUR_S - at)) / HOUR_S

    def ample_kwh(self) -> float:
        """Full load the whole hour (before and after the agent starts)."""
        return self.full_kw


@dataclass
class Outcome:
    hour_kwh: float = 0.0  # what the meter counted from the hour start to its end
    sleeps: int = 0
    switches: dict[str, list[tuple[datetime, ActionKind]]] = field(default_factory=dict)


def simulate(s: Scenario) -> Outcome:
    start, end = hour_bounds(DAY, HOUR_ENDING)
    plant = {f"m{i:03d}": Miner(f"m{i:03d}", w, w / jth) for i, (w, jth) in enumerate(s.miners)}
    # as the agent does: a decision acts one quota interval (here one step) later
    qpolicy = QuotaPolicy(tolerance_kwh=s.tolerance_kwh, actuation_s=s.step_s)
    cpolicy = CurtailPolicy(
        min_on_s=s.min_on_s,
        min_off_s=s.min_off_s,
        hysteresis_kw=s.hysteresis_kw,
        margin_kw=s.margin_kw,
    )
    mwh = tuple(s.allocation_kwh / 1000.0 if h == HOUR_ENDING else 0.0 for h in range(1, 25))
    allocation = HourlyAllocation("site", DAY, mwh)

    t = start + timedelta(seconds=s.start_offset_s)
    counter = COUNTER_AT_START + s.full_kw * s.start_offset_s / HOUR_S  # mined until now
    samples: list[MeterSample] = []
    switched: dict[str, datetime] = {}
    out = Outcome(switches={k: [] for k in plant})
    pending: list[tuple[str, ActionKind]] = []
    while t < end:
        for device_id, kind in pending:  # last step's commands land
            plant[device_id].asleep = kind is ActionKind.SLEEP
        pending = []
        p_kw = sum(m.draw_kw for m in plant.values())
        samples.append(MeterSample(t, p_kw, counter))
        # the history thinned out past its last few samples, keeping its first: the hour's
        # energy comes from the import counter (its deltas add up the same), the decision
        # from the newest samples, and evaluate's cost stays flat over the hour
        if len(samples) > 8:
            samples = [samples[0], *samples[1:-6:5], *samples[-6:]]
        status = evaluate(allocation, samples, t, qpolicy)
        miners = [
            MinerState(m.device_id, m.power_w, m.hashrate_ths, m.asleep, switched.get(m.device_id))
            for m in plant.values()
        ]
        # the horizon as the agent gives it (kuat.quota.plant): a decision at every step,
        # acting one step later
        p = plan(
            status.allowed_kw,
            miners,
            t,
            cpolicy,
            load_kw=status.p_kw,
            hour_left_s=(end - t).total_seconds(),
            actuation_s=s.step_s,
            decision_s=s.step_s,
        )
        for a in p.actions:
            assert plant[a.device_id].asleep is (a.kind is ActionKind.RESTORE)
            switched[a.device_id] = t
            out.switches[a.device_id].append((t, a.kind))
            out.sleeps += a.kind is ActionKind.SLEEP
            pending.append((a.device_id, a.kind))
        nxt = min(t + timedelta(seconds=s.step_s), end)
        counter += p_kw * (nxt - t).total_seconds() / HOUR_S
        t = nxt
    out.hour_kwh = counter - COUNTER_AT_START
    return out


def assert_timers_held(s: Scenario, out: Outcome) -> None:
    for device_id, events in out.switches.items():
        for (t0, k0), (t1, _) in itertools.pairwise(events):
            # after a sleep the miner stays off min_off; after a restore it stays on min_on
            needed = s.min_off_s if k0 is ActionKind.SLEEP else s.min_on_s
            gap = (t1 - t0).total_seconds()
            assert gap >= needed, f"{device_id} switched {gap:g} s after a {k0}, {needed:g} s due"


@st.composite
def scenarios(draw: st.DrawFn, *, max_miners: int = 30) -> Scenario:
    """A farm, timers and tolerance; ``allocation_kwh`` is 0 here, each test sizes it."""
    return Scenario(
        miners=tuple(
            draw(
                st.lists(
                    st.tuples(st.floats(2000, 4000), st.floats(15, 45)),
                    min_size=1,
                    max_size=max_miners,
                )
            )
        ),
        allocation_kwh=0.0,
        # usually the agent starts with the hour; sometimes it is restarted mid-hour
        start_offset_s=draw(st.one_of(st.just(0), st.integers(1, 1800))),
        step_s=draw(st.integers(10, 30)),
        min_on_s=draw(st.sampled_from([0.0, 60.0, 300.0, 600.0, 900.0])),
        min_off_s=draw(st.sampled_from([0.0, 60.0, 300.0, 600.0, 900.0])),
        hysteresis_kw=draw(st.sampled_from([0.0, 1.0, 5.0, 20.0])),
        margin_kw=draw(st.sampled_from([0.0, 0.5, 2.0])),
        tolerance_kwh=draw(st.sampled_from([0.0, 0.5, 2.0])),
    )


# A large farm at the feasibility edge: 300 miners, the agent starting with the hour.
BIG_FARM = tuple((2000.0 + (i * 37) % 2000, 15.0 + (i * 7) % 30) for i in range(300))
BIG = Scenario(BIG_FARM, 0.0, 0, 29, 600.0, 900.0, 5.0, 0.0, 0.0)


@settings(max_examples=60, deadline=None)
@given(s=scenarios(), headroom=st.one_of(st.just(0.0), st.floats(0.0, 1.0)))
@example(s=BIG, headroom=0.0)
def test_feasible_allocation_is_kept(s: Scenario, headroom: float) -> None:
    """(a) + (b): from the precondition's edge (``feasible_kwh``) up to 20% above full load."""
    low = s.feasible_kwh()
    s = replace(s, allocation_kwh=low + headroom * (1.2 * s.full_kw - low))
    out = simulate(s)
    assert out.hour_kwh <= s.allocation_kwh + s.tolerance_kwh + EPS_KWH, (
        f"hour ended at {out.hour_kwh:.4f} kWh, allocation {s.allocation_kwh:.4f} kWh "
        f"+ tolerance {s.tolerance_kwh} kWh"
    )
    assert_timers_held(s, out)


# The last decision that acts inside the hour let a 3.6 W excess pass as noise: it ran on to
# the hour's end, 0.02 Wh over the allocation (found by this test).
LAST_CALL = Scenario(((2000.0, 15.0),), 0.0, 0, 10, 0.0, 0.0, 1.0, 0.0, 0.0)


@settings(max_examples=40, deadline=None)
@given(s=scenarios(), share=st.floats(0.0, 1.3))
@example(s=LAST_CALL, share=0.99999)
def test_timers_hold_whatever_the_allocation(s: Scenario, share: float) -> None:
    """(b) for any allocation, infeasible ones included: below the sleeping floor, around the
    load, above it."""
    s = replace(s, allocation_kwh=share * s.full_kw)
    out = simulate(s)
    assert_timers_held(s, out)
    if s.allocation_kwh < s.feasible_kwh():
        return
    assert out.hour_kwh <= s.allocation_kwh + s.tolerance_kwh + EPS_KWH


@settings(max_examples=30, deadline=None)
@given(s=scenarios(), extra=st.floats(1e-6, 0.5))
def test_ample_allocation_sleeps_nothing(s: Scenario, extra: float) -> None:
    """(c) an allocation covering the farm's full load all hour never puts a miner to sleep."""
    s = replace(s, allocation_kwh=s.ample_kwh() * (1.0 + extra))
    out = simulate(s)
    assert out.sleeps == 0
    assert out.hour_kwh <= s.allocation_kwh


def test_actuation_delay_at_the_feasibility_edge() -> None:
    """At the bare edge — full load until the first command lands, then all asleep — the hour
    closes inside its allocation, because ``allowed_kw`` budgets the energy drawn while the
    first commands take effect (``actuation_s``)."""
    at = BIG.first_effect_s()
    edge = (BIG.full_kw * at + BIG.floor_kw * (HOUR_S - at)) / HOUR_S
    s = replace(BIG, allocation_kwh=edge)
    out = simulate(s)
    assert out.sleeps > 0
    assert out.hour_kwh <= edge + 1e-6


# --- The controller in closed loop: the bench's scenarios on a simulated plant --------------
#
# tests/quota/sim_site.py runs the agent's decision step (evaluate -> Plant.decide, actions in
# flight, learned apply times and overhead) against simulated miners that act after their
# firmware's apply time, read by a site meter once a second (Σ miners × 1.06 + other load,
# ±0.3 % noise) on a fake clock: the scenarios of bench/closed_loop.py, ten minutes before an
# hour's end with the change a minute in, without the sockets. Promised in every one:
#
# (1) the hour closes within its tolerance;
# (2) no minimum on/off time (nor a limit's hold) is broken;
# (3) switches ≤ 1.1 × the fewest possible: one plan's cut on the true plant (its energy
#     until a command can act counted) and, at an ample next hour, the same miners back;
# (4) metered power at or below the allowed power (within the planner's deadband and the
#     meter's noise) within one meter interval plus the firmware's apply time of the change —
#     for a change in the load itself, after ``spike_s`` more: until then it cannot be told
#     from a spike, which must not act;
# (5) with slow miners, no unneeded action: no more cuts than the fewest possible, and no
#     cut after a restore in the same hour (a correction).

NOISE = 0.003
MIX_60 = sim.farm(60)
MIX_APPLY_S = 20.0  # the slowest firmware of the mix: a Whatsminer's limit


def _timers_held(run: sim.Run, trace: sim.Trace) -> None:
    by_miner: dict[str, list[tuple[int, ActionKind]]] = {}
    for t, did, kind in trace.actions:
        by_miner.setdefault(did, []).append((t, kind))
    pol = run.policy
    limit_kinds = (ActionKind.LIMIT_POWER, ActionKind.RESTORE_POWER)
    for did, events in by_miner.items():
        switches = [e for e in events if e[1] not in limit_kinds]
        for (t0, k0), (t1, _) in itertools.pairwise(switches):
            needed = pol.min_off_s if k0 is ActionKind.SLEEP else pol.min_on_s
            assert t1 - t0 >= needed, f"{did} switched {t1 - t0} s after a {k0}, {needed} s due"
        limits = [t for t, k in events if k in limit_kinds]
        for t0, t1 in itertools.pairwise(limits):
            assert t1 - t0 >= pol.limit_hold_s, f"{did}'s limit changed {t1 - t0} s apart"


def _slack_kw(run: sim.Run, allowed_kw: float) -> float:
    deadband = min(run.policy.hysteresis_kw / 4, 0.02 * allowed_kw)
    return deadband + NOISE * 1.2 * run.full_kw


def _cuts(trace: sim.Trace, before: int) -> list[tuple[int, str, ActionKind]]:
    cut = (ActionKind.SLEEP, ActionKind.LIMIT_POWER)
    return [a for a in trace.actions if a[0] < before and a[2] in cut]


def _no_correction(trace: sim.Trace, hour_end: int) -> None:
    restored = [t for t, _, k in trace.actions if t < hour_end and k not in _CUT_KINDS]
    if restored:
        late = [a for a in _cuts(trace, hour_end) if a[0] > min(restored)]
        assert not late, f"cut again after a restore at {min(restored)} s: {late}"


_CUT_KINDS = (ActionKind.SLEEP, ActionKind.LIMIT_POWER)


def _deeper(trace: sim.Trace, did: str) -> bool:
    """A miner cut twice only as a limit then a sleep (the allowance fell again), never the
    same cut sent twice."""
    kinds = [k for _, d, k in trace.actions if d == did and k in _CUT_KINDS]
    return kinds == [ActionKind.LIMIT_POWER, ActionKind.SLEEP]


@dataclass(frozen=True)
class Case:
    run: sim.Run
    # the allocation's changes (at, share of full load) the fewest switches are counted for
    shares: tuple[tuple[int, float], ...]
    change_at: int  # the last change: a new allocation or the load's step
    apply_s: float  # the slowest true apply time among the miners that act
    load_change: bool = False  # the load changed (told from a spike only after spike_s)
    extra_kw: float = 0.0
    slow: bool = False  # every command takes 15 s or more: promise (5)


def _case(name: str) -> Case:
    full = sim.Run(MIX_60, 1.0).full_kw
    fresh = functools.partial(sim.farm, 60)
    if name == "allocation_cut":
        run = sim.Run(fresh(), 1.5, cuts=((60, 0.75),), noise=NOISE)
        return Case(run, run.cuts, 60, MIX_APPLY_S)
    if name == "load_step":
        step = 0.10 * full
        run = sim.Run(fresh(), 1.04, extra_kw=lambda t: step if t >= 60 else 0.0, noise=NOISE)
        return Case(run, ((60, 1.04),), 60, MIX_APPLY_S, load_change=True, extra_kw=step)
    if name == "small_cut":
        run = sim.Run(fresh(("luxos", "braiins", "whatsminer")), 1.5, cuts=((60, 0.95),))
        return Case(replace(run, noise=NOISE), run.cuts, 60, MIX_APPLY_S)
    if name == "slow_15":
        miners = fresh(("bitmain",), {"bitmain": 15.0})
        run = sim.Run(miners, 1.5, cuts=((60, 0.70),), noise=NOISE)
        return Case(run, run.cuts, 60, 15.0, slow=True)
    if name == "slow_20":
        miners = fresh(("whatsminer",), {"whatsminer": 20.0})
        run = sim.Run(miners, 1.5, cuts=((60, 0.75), (70, 0.60)), noise=NOISE)
        return Case(run, run.cuts, 70, 20.0, slow=True)
    if name == "spike":
        spike = 0.12 * full
        run = sim.Run(fresh(), 1.03, extra_kw=lambda t: spike if 60 <= t < 62 else 0.0)
        return Case(replace(run, noise=NOISE), (), 60, 0.0, load_change=True)
    if name == "tight_next_hour":
        run = sim.Run(fresh(), 0.8, next_share=0.7, lead_s=720, after_s=360, noise=NOISE)
        return Case(run, ((0, 0.8),), 0, MIX_APPLY_S)
    assert name == "dry_run"
    run = sim.Run(fresh(), 1.5, cuts=((60, 0.75),), enforce=False, noise=NOISE)
    return Case(run, (), 60, 0.0)


def _fewest(case: Case) -> tuple[int, int]:
    """The fewest (cuts, switches) (promises 3 and 5): each allowance as it comes, its
    energy until a command can act (a meter interval plus the apply time) counted; a load
    step: the allowance against the miners plus the new load."""
    run = case.run
    levels = []
    for at, share in case.shares:
        if case.load_change:
            levels.append(share * run.full_kw)
            continue
        acting = case.shares[0][0] + run.meter_s + math.ceil(case.apply_s)
        levels.append(sim.effective_allowed_kw(run, share, at, max(acting, at + run.meter_s)))
    return sim.minimum_switches(run, levels, case.extra_kw)


def _check_closed_loop(case: Case, trace: sim.Trace, spare: int = 0) -> None:
    """Promises (1)-(5); ``spare``: switches allowed beyond 1.1 × the fewest (a small farm,
    where one miner is more than 10 %)."""
    run = case.run
    hour_end = run.lead_s
    # (1)
    closed = trace.hour_kwh <= trace.allocation_kwh + run.quota.tolerance_kwh
    assert closed, (trace.hour_kwh, trace.allocation_kwh)
    # (2)
    _timers_held(run, trace)
    if not case.shares:  # a spike: let pass, nothing switched
        assert trace.actions == []
        return
    # (3)
    cuts, fewest = _fewest(case)
    assert len(trace.actions) <= max(1.1 * fewest, fewest + spare), (len(trace.actions), fewest)
    # (4)
    target = run.meter_s + case.apply_s + (run.quota.spike_s if case.load_change else 0.0)
    last_kw = case.shares[-1][1] * run.full_kw
    took = sim.seconds_to_allowed(trace, case.change_at, _slack_kw(run, last_kw))
    assert took is not None and took <= target, (took, target)
    # (5)
    if case.slow:
        made = _cuts(trace, hour_end)
        # one more than the plan on the true plant: the meter's noise and the overhead
        # learned from it may round a cut up by one miner
        assert len(made) <= cuts + 1, (len(made), cuts)
        twice = [did for did, n in Counter(did for _, did, k in made).items() if n > 1]
        assert not twice or all(_deeper(trace, did) for did in twice), twice
        _no_correction(trace, hour_end)


SCENARIOS = [
    "allocation_cut",
    "load_step",
    "small_cut",
    "slow_15",
    "slow_20",
    "spike",
    "tight_next_hour",
    "dry_run",
]


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_bench_scenarios_in_closed_loop(name: str) -> None:
    case = _case(name)
    run = case.run
    trace = sim.simulate(run)
    if run.enforce:
        _check_closed_loop(case, trace)
        if not case.shares:
            assert any(s.spike_ignored for s in trace.statuses)
        return
    # a dry run sends nothing (the hour goes over), and says its plan again only when it
    # changes materially, not at every reading
    _timers_held(run, trace)
    assert trace.actions == []
    said = 0
    last: PlanSummary | None = None
    for p in trace.plans:
        summary = PlanSummary.of(p)
        if p.actions and summary.differs_from(last, run.policy.hysteresis_kw):
            said, last = said + 1, summary
    planned = sum(1 for p in trace.plans if p.actions)
    assert 1 <= said <= planned // 20, (said, planned)


def test_a_mixed_fleets_first_cut_is_not_given_back() -> None:
    """The allocation cut on the mixed fleet: its Whatsminers' limits (20 s) set how long the
    allowed power budgets the present load for, while most of the cut is LuxOS and Braiins
    limits acting in a second. The cut counts the energy it saves by acting sooner
    (kuat.quota.curtail), so it is no deeper than the hour needs and nothing is raised again
    before the hour's last minute (counted as acting in 21 s, it went ~3 % deep: two limits
    raised back at 474 s and 513 s of 600, two switches more than needed)."""
    case = _case("allocation_cut")
    trace = sim.simulate(case.run)
    before_edge = case.run.lead_s - EDGE_S
    raised = [a for a in trace.actions if a[0] < before_edge and a[2] not in _CUT_KINDS]
    assert raised == []
    assert trace.hour_kwh <= trace.allocation_kwh + case.run.quota.tolerance_kwh


@dataclass(frozen=True)
class Farm:
    """A small farm (one miner can be more than 10 % of it), five minutes before an hour's
    end, and one change at ``at``: an allocation cut to ``size`` of full load, a step of
    ``size`` of full load in the other load, or a spike as large for 2 s (< ``spike_s``).
    kuat knows how long its firmware takes (it learns that from its first commands: until
    then a firmware slower than kuat assumes draws full power longer than budgeted, and
    that energy costs an extra cut — the fixed scenarios above start from the defaults)."""

    families: tuple[str, ...]
    slow_s: float | None
    miners: int
    noise: float
    seed: int
    at: int
    kind: str
    size: float

    def case(self) -> Case:
        slow = dict.fromkeys(self.families, self.slow_s) if self.slow_s is not None else None
        miners = sim.farm(self.miners, self.families, slow)
        apply_s = max(max(m.apply.values(), default=0.0) for m in miners)
        policy = CurtailPolicy(min_on_s=240, min_off_s=240, hysteresis_kw=5, limit_hold_s=60)
        base = sim.Run(
            miners,
            1.5,
            lead_s=300,
            after_s=30,
            policy=policy,
            noise=self.noise,
            seed=self.seed,
            learned=True,
        )
        at, is_slow = self.at, self.slow_s is not None
        if self.kind == "cut":
            run = replace(base, cuts=((at, self.size),))
            return Case(run, run.cuts, at, apply_s, slow=is_slow)
        kw = self.size * base.full_kw
        if self.kind == "step":
            run = replace(base, share=1.02, extra_kw=lambda t: kw if t >= at else 0.0)
            return Case(run, ((at, 1.02),), at, apply_s, load_change=True, extra_kw=kw)
        run = replace(base, share=1.03, extra_kw=lambda t: kw if at <= t < at + 2 else 0.0)
        return Case(run, (), at, apply_s, load_change=True)


farms = st.builds(
    Farm,
    families=st.lists(st.sampled_from(sim.MIX), min_size=1, max_size=4, unique=True).map(tuple),
    slow_s=st.sampled_from([None, 15.0, 20.0]),
    miners=st.integers(6, 30),
    noise=st.sampled_from([0.0, NOISE]),
    seed=st.integers(0, 2**16),
    at=st.integers(20, 60),
    kind=st.sampled_from(["cut", "step", "spike"]),
    size=st.floats(0.05, 0.15),
).map(lambda f: replace(f, size=1 - 5 * f.size) if f.kind == "cut" else f)


@settings(max_examples=12, deadline=None)
@given(farm=farms)
# slow Whatsminers: a second command crossed an unconfirmed one (a limit then a sleep to one
# miner), and the actuation budget counted the present load though the batch was landing
@example(farm=Farm(("whatsminer",), 15.0, 6, 0.0, 0, 40, "cut", 0.375))
@example(farm=Farm(("whatsminer",), 15.0, 6, 0.0, 20, 30, "cut", 0.3987))
def test_the_controller_keeps_its_promises_on_any_small_farm(farm: Farm) -> None:
    """Promises (1)-(5) on random farms and changes, two miners of slack on (3): on a farm
    of six, one miner round trip is more than the 10 %."""
    case = farm.case()
    _check_closed_loop(case, sim.simulate(case.run), spare=2)
