"""The plant model: actions in flight, learned latencies and the site's overhead."""

from datetime import UTC, datetime, timedelta

import pytest

from kuat.quota.curtail import CurtailPolicy, MinerState, plan
from kuat.quota.plant import FALLBACK_APPLY_S, Pending, Plant, Verb

T = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
S = timedelta(seconds=1)


def sleep(did: str, w: float = 3000.0, at: datetime = T, family: str = "bitmain") -> Pending:
    return Pending(did, Verb.SLEEP, family, at, before_w=w, after_w=0.0)


def test_a_sleep_in_flight_counts_until_a_reading_after_its_confirmation() -> None:
    plant = Plant(overhead=1.06)
    plant.sent(sleep("a"))
    # the meter read at T+5 s does not contain it: 3 kW x 1.06 come off what it shows
    assert plant.in_flight_kw(T + 5 * S) == pytest.approx(-3.18)
    plant.settled("a", True, T + 15 * S)
    # a reading stamped the instant it was confirmed was asked for before: not in it
    assert plant.in_flight_kw(T + 15 * S) == pytest.approx(-3.18)
    assert plant.in_flight_kw(T + 16 * S) == 0.0
    # still planned as asleep (its last miner reading predates the sleep) until read again
    miner = MinerState("a", 3000.0, 100.0, asleep=False)
    [seen] = plant.adjust([miner])
    assert seen.asleep and seen.power_w == 3000.0 and seen.last_switched == T
    plant.readings_seen({"a": T + 10 * S})  # a poll from before the confirmation: kept
    assert plant.adjust([miner])[0].asleep
    plant.readings_seen({"a": T + 16 * S})
    assert plant.adjust([miner]) == [miner]


# what the agent passes in from the firmware backends' declarations (the plant knows none)
DECLARED = {("bitmain", "sleep"): 15.0, ("bitmain", "wake"): 15.0}


def test_a_failed_action_is_forgotten_and_teaches_nothing() -> None:
    plant = Plant(default_apply_s=DECLARED)
    plant.sent(sleep("a"))
    plant.settled("a", False, T + 60 * S)
    assert plant.in_flight_kw(T) == 0.0
    assert plant.apply_s("bitmain", Verb.SLEEP) == 15.0


def test_a_firmware_nobody_declared_a_time_for_acts_within_a_poll() -> None:
    assert Plant().apply_s("bitmain", Verb.SLEEP) == FALLBACK_APPLY_S
    assert Plant(default_apply_s=DECLARED).slowest_apply_s(["x"]) == FALLBACK_APPLY_S


def test_latency_is_learned_per_family_and_verb() -> None:
    plant = Plant(default_apply_s=DECLARED)
    assert plant.apply_s("luxos", Verb.SLEEP) == FALLBACK_APPLY_S
    plant.sent(sleep("a", family="luxos"))
    plant.settled("a", True, T + 4 * S)
    assert plant.apply_s("luxos", Verb.SLEEP) == 4.0
    plant.readings_seen({"a": T + 5 * S})
    plant.sent(sleep("a", at=T + 100 * S, family="luxos"))
    plant.settled("a", True, T + 102 * S)
    assert plant.apply_s("luxos", Verb.SLEEP) == pytest.approx(4.0 + 0.3 * (2.0 - 4.0))
    assert plant.apply_s("luxos", Verb.WAKE) == FALLBACK_APPLY_S
    assert plant.slowest_apply_s(["luxos", "bitmain"]) == 15.0


def test_overhead_is_learned_in_a_steady_state_only_and_bounded() -> None:
    plant = Plant()
    assert plant.overhead_factor == 1.0
    plant.observe_overhead(106.0, 100.0)
    assert plant.overhead_factor == pytest.approx(1.06)
    plant.sent(sleep("a"))
    plant.observe_overhead(300.0, 100.0)  # in flight: the two sides do not match yet
    assert plant.overhead_factor == pytest.approx(1.06)
    plant.settled("a", False, T)
    plant.observe_overhead(300.0, 100.0)  # beyond the band: clamped, and learned slowly
    assert 1.06 < plant.overhead_factor < 1.1
    with pytest.raises(ValueError, match="overhead"):
        Plant(overhead=0.5)
    assert Plant(overhead=1.2).overhead_factor == 1.2


def test_planning_with_actions_in_flight_cuts_only_what_is_left() -> None:
    """The plan after a batch of slow sleeps, from a reading taken before they acted, adds
    nothing: the batch already reaches the target (issue: 39 more miners limited)."""
    fleet = [MinerState(f"m{i}", 3000.0, 100.0 - i, asleep=False) for i in range(10)]
    policy = CurtailPolicy(min_on_s=0, min_off_s=0, hysteresis_kw=2)
    first = plan(20.0, fleet, T, policy, load_kw=30.0)
    assert len(first.actions) == 4  # 30 -> 18 kW
    plant = Plant(overhead=1.0)
    for a in first.actions:
        plant.sent(Pending(a.device_id, Verb.SLEEP, "bitmain", T, a.power_w, 0.0))
    # 5 s later the meter still reads 30 kW: the sleeps have not acted yet
    load = 30.0 + plant.in_flight_kw(T + 5 * S)
    again = plan(20.0, plant.adjust(fleet), T + 5 * S, policy, load_kw=load)
    assert again.actions == ()
    # the agent plans no restore while cuts are still to act, though the load will be low
    low = plan(25.0, plant.adjust(fleet), T + 5 * S, policy, load_kw=load, restore=False)
    assert low.actions == ()
    # ... and no second command crosses an unconfirmed one: those miners are busy
    assert plan(25.0, plant.adjust(fleet), T + 5 * S, policy, load_kw=load).actions == ()
    for a in first.actions:
        plant.settled(a.device_id, True, T + 15 * S)
    assert plan(25.0, plant.adjust(fleet), T + 16 * S, policy, load_kw=load).actions


def test_overhead_counts_in_the_plan() -> None:
    """A 3 kW miner saves 3.18 kW at a meter with 6 % overhead: a cut of 6.2 kW at the meter
    needs two 3 kW miners with it counted, three without (the issue: every cut ~2.4 % low)."""
    fleet = [MinerState(f"m{i}", 3000.0, 100.0 - i, asleep=False) for i in range(10)]
    policy = CurtailPolicy(min_on_s=0, min_off_s=0)
    assert len(plan(25.6, fleet, T, policy, load_kw=31.8, overhead_factor=1.06).actions) == 2
    assert len(plan(25.6, fleet, T, policy, load_kw=31.8).actions) == 3


def test_an_action_may_be_in_a_reading_until_one_meter_interval_after_its_confirmation() -> None:
    """A fast firmware acts before kuat's re-read confirms it, and a meter averages over its
    interval: until a reading comes more than an interval after the confirmation, the
    action may be counted twice. A cut there would look like headroom (no restore may use
    it); a restore like an excess (a cut must be larger than it)."""
    plant = Plant(overhead=1.0)
    plant.sent(sleep("a"))
    plant.sent(Pending("b", Verb.WAKE, "luxos", T, before_w=0.0, after_w=2000.0))
    assert plant.settling(T + 5 * S, 1.0) == (True, 2.0)
    plant.settled("a", True, T + 15 * S)
    plant.settled("b", True, T + 15 * S)
    assert plant.settling(T + 15 * S, 1.0) == (True, 2.0)
    assert plant.settling(T + 16 * S, 1.0) == (True, 2.0)
    assert plant.settling(T + 17 * S, 1.0) == (False, 0.0)


def test_a_cut_needs_an_excess_beyond_restores_that_may_be_counted_twice() -> None:
    fleet = [MinerState("a", 3000.0, 100.0, False), MinerState("b", 3000.0, 100.0, False)]
    policy = CurtailPolicy(hysteresis_kw=0.0)
    assert plan(4.0, fleet, T, policy, load_kw=6.0, settling_kw=3.0).actions == ()
    assert len(plan(4.0, fleet, T, policy, load_kw=6.0, settling_kw=1.0).actions) == 1


def test_the_energy_budget_counts_commands_landing_within_it() -> None:
    """A sleep of 3 kW sent 5 s ago to a firmware that acts in 15 s lands 10 s from now:
    of a 16 s actuation budget, the present load runs 10 s and 3 kW less the other 6."""
    plant = Plant(overhead=1.0, default_apply_s=DECLARED)
    plant.sent(sleep("a", at=T))
    assert plant.landing(T + 5 * S, T + 5 * S) == [(10.0, -3.0)]
    plant.settled("a", True, T + 15 * S)
    assert plant.landing(T + 15 * S, T + 15 * S) == [(0.0, -3.0)]
    assert plant.landing(T + 16 * S, T + 16 * S) == []  # the reading shows it


def test_a_firmware_faster_than_the_default_is_budgeted_at_its_own_time_once_seen() -> None:
    """kuat assumes 20 s for a Whatsminer's limit; this one takes 5 s. After its first limit
    is confirmed, every later decision budgets 5 s (how far ahead the quota engine counts
    energy, when a pending limit is expected to land), not 20 s."""
    plant = Plant(default_apply_s={("whatsminer", "limit"): 20.0})  # what btminer declares
    assert plant.slowest_apply_s(["whatsminer"]) == 20.0
    first = Pending("a", Verb.LIMIT, "whatsminer", T, 3600.0, 2160.0, target_w=2160.0)
    plant.sent(first)
    assert plant.landing(T, None) == [(20.0, pytest.approx(-1.44))]
    plant.settled("a", True, T + 5 * S)  # the control side's re-read saw it 5 s after send
    assert plant.apply_s("whatsminer", Verb.LIMIT) == 5.0
    assert plant.slowest_apply_s(["whatsminer"]) == 5.0
    plant.sent(Pending("b", Verb.LIMIT, "whatsminer", T + 10 * S, 3600.0, 2160.0, 2160.0))
    due = dict((round(kw, 2), s) for s, kw in plant.landing(T + 10 * S, T + 9 * S))
    assert due[-1.44] == 5.0  # b lands 5 s after it was sent
