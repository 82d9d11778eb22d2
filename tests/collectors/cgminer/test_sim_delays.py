"""The farm simulator's apply delays: per firmware and per verb, on the caller's clock, as the
closed-loop benchmark uses them (a Whatsminer's limit shows only once btminer has restarted
under it; its power_off is quicker)."""

from __future__ import annotations

from kuat.collectors.cgminer.sim import REAL_APPLY_S, AsicFarmSimulator


def test_each_verb_acts_after_its_own_delay_on_the_given_clock() -> None:
    now = [1000.0]
    farm = AsicFarmSimulator(
        2,
        first_ip="127.94.0.1",
        personalities=["whatsminer", "luxos"],
        apply_delay_s=REAL_APPLY_S,
        clock=lambda: now[0],
    )
    wm, lux = farm.miners
    full = wm.power_limit_w
    wm.apply_power_limit(2400)
    now[0] += REAL_APPLY_S["whatsminer"]["limit"] - 0.5
    wm.tick()
    assert wm.power_limit_w == full and wm.power_w > 3000  # still restarting under it
    now[0] += 1.0
    wm.tick()
    assert wm.power_limit_w == 2400 and wm.power_w < 2400

    wm.sleeping = True
    now[0] += REAL_APPLY_S["whatsminer"]["sleep"]
    assert wm.sleeping
    wm.sleeping = False
    now[0] += REAL_APPLY_S["whatsminer"]["wake"] - 1.0
    assert wm.sleeping  # a wake takes longer than a sleep
    now[0] += 1.0
    assert not wm.sleeping

    lux.sleeping = True  # LuxOS acts within a second
    assert not lux.sleeping
    now[0] += REAL_APPLY_S["luxos"]["sleep"]
    assert lux.sleeping


def test_one_figure_delays_every_verb_and_none_acts_at_once() -> None:
    now = [0.0]
    farm = AsicFarmSimulator(
        2,
        first_ip="127.94.1.1",
        personalities=["whatsminer", "braiins"],
        apply_delay_s={"whatsminer": 3.0},
        clock=lambda: now[0],
    )
    wm, bos = farm.miners
    wm.apply_power_limit(2400)
    wm.sleeping = True
    assert wm.power_limit_w != 2400 and not wm.sleeping
    now[0] = 3.0
    assert wm.sleeping and wm.power_limit_w == 2400
    bos.sleeping = True  # not delayed: at once
    assert bos.sleeping
