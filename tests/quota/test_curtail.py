import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.readings import to_jsonable
from quota.curtail import ActionKind, CurtailPolicy, MinerState, plan
from quota.reasons import Code

T = datetime(2026, 11, 25, 4, tzinfo=UTC)
LONG_AGO = T - timedelta(hours=2)
POLICY = CurtailPolicy(min_on_s=600, min_off_s=600, hysteresis_kw=5)


def m(
    dev: str, w: float, ths: float | None, asleep: bool = False, switched: datetime | None = None
) -> MinerState:
    return MinerState(dev, w, ths, asleep, switched)


FLEET = [
    m("s19", 3250, 95),  # 34.2 J/TH
    m("s21", 3500, 200),  # 17.5 J/TH
    m("s9", 1400, 13.5),  # 103.7 J/TH
    m("dead", 3000, 0),  # no hashrate: first to go
    m("m30", 3400, 100),  # 34 J/TH
]


def test_sleeps_least_efficient_first() -> None:
    p = plan(10.0, FLEET, T, POLICY)  # load 14.55 kW
    assert [(a.device_id, a.kind) for a in p.actions] == [
        ("dead", ActionKind.SLEEP),
        ("s9", ActionKind.SLEEP),
        ("s19", ActionKind.SLEEP),
    ]
    assert p.planned_load_kw == pytest.approx(6.9)
    assert p.actions[1].reason.params == {"device_id": "s9", "power_w": 1400, "j_per_th": 103.7}
    assert p.actions[0].reason.params["j_per_th"] is None
    json.dumps(to_jsonable(p))


def test_min_on_time_holds_and_shortfall() -> None:
    fleet = [replace(x, last_switched=T - timedelta(seconds=100)) for x in FLEET]
    p = plan(10.0, fleet, T, POLICY)
    assert p.actions == ()
    assert p.held[0] == p.held[0].of(Code.CURTAIL_HOLD_MIN_ON, device_id="dead", wait_s=500)
    assert p.reason.code == Code.CURTAIL_SHORTFALL


def test_within_limit_and_no_limit() -> None:
    assert plan(20.0, FLEET, T, POLICY).reason.code == Code.CURTAIL_WITHIN_LIMIT
    assert plan(None, FLEET, T, POLICY).reason.code == Code.CURTAIL_NO_LIMIT
    assert plan(14.0, FLEET, T, POLICY, load_kw=13.0).actions == ()


def test_restore_most_efficient_first_with_hysteresis() -> None:
    fleet = [
        replace(x, asleep=True, last_switched=LONG_AGO)
        if x.device_id in ("s21", "s9", "s19")
        else x
        for x in FLEET
    ]
    # awake: dead 3.0 + m30 3.4 = 6.4 kW
    p = plan(15.0, fleet, T, POLICY)  # ceiling 10 kW: s21 (3.5) fits, s19 (3.25) would not
    assert [(a.device_id, a.kind) for a in p.actions] == [("s21", ActionKind.RESTORE)]
    p = plan(11.0, fleet, T, POLICY)  # ceiling 6 kW < 6.4: inside the band
    assert p.actions == () and p.reason.code == Code.CURTAIL_HYSTERESIS
    p = plan(16.5, fleet, T, POLICY)  # ceiling 11.5: s21, s19 too big, then s9 (1.4) fits
    assert [a.device_id for a in p.actions] == ["s21", "s9"]


def test_min_off_time() -> None:
    fleet = [m("a", 3000, 100, asleep=True, switched=T - timedelta(seconds=30))]
    p = plan(100.0, fleet, T, POLICY)
    assert p.actions == () and p.held[0].code == Code.CURTAIL_HOLD_MIN_OFF


def test_bad_policy() -> None:
    with pytest.raises(ValueError):
        CurtailPolicy(min_on_s=-1)


@settings(max_examples=150, deadline=None)
@given(
    powers=st.lists(
        st.tuples(st.floats(500, 5000), st.one_of(st.none(), st.floats(0, 300))),
        min_size=1,
        max_size=12,
    ),
    limits=st.lists(st.one_of(st.none(), st.floats(0, 60)), min_size=1, max_size=40),
    steps=st.lists(st.integers(5, 400), min_size=40, max_size=40),
    min_on=st.integers(0, 900),
    min_off=st.integers(0, 900),
)
def test_no_miner_switches_faster_than_its_timers(
    powers: list[tuple[float, float | None]],
    limits: list[float | None],
    steps: list[int],
    min_on: int,
    min_off: int,
) -> None:
    policy = CurtailPolicy(min_on_s=min_on, min_off_s=min_off, hysteresis_kw=1)
    fleet = {f"m{i}": MinerState(f"m{i}", w, h, False, None) for i, (w, h) in enumerate(powers)}
    switches: dict[str, list[tuple[datetime, ActionKind]]] = {k: [] for k in fleet}
    now = T
    for limit, step in zip(limits, steps, strict=False):
        now += timedelta(seconds=step)
        p = plan(limit, list(fleet.values()), now, policy)
        for a in p.actions:
            before = fleet[a.device_id]
            assert before.asleep == (a.kind is ActionKind.RESTORE)
            fleet[a.device_id] = replace(
                before, asleep=a.kind is ActionKind.SLEEP, last_switched=now
            )
            switches[a.device_id].append((now, a.kind))
    for events in switches.values():
        for (t0, k0), (t1, _) in itertools.pairwise(events):
            # after a sleep the miner stayed off min_off; after a restore it stayed on min_on
            needed = min_off if k0 is ActionKind.SLEEP else min_on
            assert (t1 - t0).total_seconds() >= needed
