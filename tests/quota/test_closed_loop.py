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

import itertools
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from kuat.quota.clock import hour_bounds
from kuat.quota.curtail import ActionKind, CurtailPolicy, MinerState, plan
from kuat.quota.evaluate import MeterSample, QuotaPolicy, evaluate
from kuat.quota.schedule import HourlyAllocation

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
        status = evaluate(allocation, samples, t, qpolicy)
        miners = [
            MinerState(m.device_id, m.power_w, m.hashrate_ths, m.asleep, switched.get(m.device_id))
            for m in plant.values()
        ]
        p = plan(status.allowed_kw, miners, t, cpolicy, load_kw=status.p_kw)
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


@settings(max_examples=40, deadline=None)
@given(s=scenarios(), share=st.floats(0.0, 1.3))
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
