"""Curtailment as an operator sees it: with an allocation far below the load, a dry run only
logs its plan, and enforcement puts miners to sleep until the metered load comes down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.config import parse_config
from kuat.agent.demo import follow_farm
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.modbus.sim import MeterSimulator
from kuat.quota.clock import current_hour_bounds
from kuat.quota.curtail import ActionKind, CurtailPlan
from kuat.quota.reasons import Code
from tests.e2e.fake_site import agent_toml, operating_days, schedule_csv

MINERS = 9


@pytest.fixture
async def farm() -> AsyncIterator[tuple[AsicFarmSimulator, MeterSimulator]]:
    asics = AsicFarmSimulator(
        MINERS, first_ip="127.42.0.1", personalities=["whatsminer", "luxos", "braiins"]
    )
    meter = MeterSimulator("schneider-pm5560")
    await asics.start()
    await meter.start()
    follower = asyncio.create_task(follow_farm(asics, meter))
    await asyncio.sleep(0.6)
    try:
        yield asics, meter
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await asics.stop()
        await meter.stop()


def config(tmp_path: Path, asics: AsicFarmSimulator, meter: MeterSimulator, enforce: bool) -> str:
    schedules = tmp_path / "quota.d"
    schedules.mkdir()
    # 1 Wh an hour (the files' least: 0.000001 MWh) against a load of tens of kW: the
    # allocation is gone at once. 1 kWh was not in an hour's first two minutes: an agent
    # started then takes the hour so far at the present load, under 1 kWh.
    for day in operating_days():
        text = schedule_csv("curtail", day, dict.fromkeys(range(1, 25), 0.001))
        (schedules / f"{day}.csv").write_text(text)
    quota = {"schedules": schedules, "enforce": enforce, "min_on_s": 0, "min_off_s": 0}
    return agent_toml(
        site="curtail",
        state_dir=tmp_path,
        farm=asics,
        meter=meter,
        quota=quota,
        intervals={"asic": 1, "meter": 1, "quota": 1},
    )


async def run_for(agent: Agent, seconds: float) -> None:
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(seconds)
    agent.request_stop()
    await asyncio.wait_for(task, 20)


def one_minute_into_the_hour() -> Callable[[], datetime]:
    """The agent's clock, running from one minute into this hour: the plans are made where the
    hour's energy so far is least (so the allocation least spent), at whatever time the test
    runs (it failed at xx:02 when the allocation was 1 kWh: 2 minutes at 29 kW had not spent it)."""
    start = current_hour_bounds(datetime.now(UTC))[0] + timedelta(minutes=1)
    t0 = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - t0)


async def test_dry_run_logs_the_plan_and_switches_nothing(
    farm: tuple[AsicFarmSimulator, MeterSimulator], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    asics, meter = farm
    caplog.set_level(logging.WARNING, logger="kuat.curtail")
    agent = Agent(
        parse_config(config(tmp_path, asics, meter, enforce=False)),
        clock=one_minute_into_the_hour(),
    )
    plans: dict[int, CurtailPlan] = {}  # every plan the run made, sampled as it goes

    async def watch() -> None:
        while True:
            if (p := agent.curtailer.last_plan) is not None:
                plans[id(p)] = p
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        await run_for(agent, 5)
    finally:
        watcher.cancel()
    assert not any(m.sleeping for m in asics.miners)
    seen = {d: getattr(r, "state", repr(r)) for d, r in agent.state.asics.items()}
    # (a plan before the first meter reading has no allowed power yet)
    limited = [p for p in plans.values() if p.allowed_kw is not None]
    assert limited, (list(plans.values()), seen)
    for p in limited:
        # every plan keeps the hour inside its (spent) allocation, by sleeps alone
        assert p.allowed_kw == 0.0 and p.reason.code is not Code.CURTAIL_SHORTFALL, (p, seen)
        assert p.actions and {a.kind for a in p.actions} == {ActionKind.SLEEP}, (p, seen)
    # Away from the hour's end, that takes every miner. In its last minutes fewer may do: the
    # fast firmware's sleeps land well before the slowest's, and the energy they save pays for
    # one miner running on to the end (quota.curtail, "A cut that acts sooner"; seen 8 of 9 at
    # xx:58 in two full runs). A plan covers the miners read at its meter reading, so one
    # that missed a poll under load sits out that plan alone: some plan must take all nine.
    early = [p for p in limited if (current_hour_bounds(p.at)[1] - p.at) > timedelta(minutes=10)]
    if early:
        acted = [{a.device_id for a in p.actions} for p in early]
        assert max(map(len, acted)) == MINERS, (acted, seen, early[-1])
    assert any("dry run" in r.getMessage() for r in caplog.records)


async def test_enforcement_sleeps_miners_and_the_meter_sees_it(
    farm: tuple[AsicFarmSimulator, MeterSimulator], tmp_path: Path
) -> None:
    asics, meter = farm
    before_kw = asics.total_power_w() / 1000
    agent = Agent(parse_config(config(tmp_path, asics, meter, enforce=True)))
    await run_for(agent, 9)
    assert all(m.sleeping for m in asics.miners)
    assert {r.outcome for r in agent.curtailer.results} == {"done"}
    # the agent's own latest view: miners read back asleep, the site meter reads the drop
    assert {r.state for r in agent.state.asic_readings()} == {"sleeping"}
    last = agent.state.site_meter_history[-1]
    assert last.p_kw is not None and last.p_kw < before_kw * 0.1


async def test_enforcement_sleeps_stock_antminers_through_their_web_ui(tmp_path: Path) -> None:
    # Stock firmware reports no power: the plan uses spec-sheet figures, the commands go to the
    # web UI (digest auth), and the miners are confirmed asleep over the cgminer API.
    asics = AsicFarmSimulator(4, first_ip="127.42.1.1", personalities=["antminer"], web_port=8081)
    async with asics, MeterSimulator("schneider-pm5560") as meter:
        follower = asyncio.create_task(follow_farm(asics, meter))
        await asyncio.sleep(0.6)
        text = config(tmp_path, asics, meter, enforce=True).replace(
            "[asic]\n", "[asic]\nweb_port = 8081\n"
        )
        agent = Agent(parse_config(text))
        try:
            await run_for(agent, 10)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    assert all(m.sleeping for m in asics.miners)
    assert {r.outcome for r in agent.curtailer.results} == {"done"}
    assert all(r.serial for r in agent.state.asic_readings())  # identities from the web UI


async def test_decisions_follow_each_reading_and_slow_miners_are_commanded_once(
    tmp_path: Path,
) -> None:
    """Whatsminers that take 3 s to act on power_off: the agent decides on every meter
    reading (not at the 10 s quota interval), keeps re-planning while they confirm, and sends
    each miner exactly one sleep — the ones in flight count as asleep already."""
    asics = AsicFarmSimulator(
        6,
        first_ip="127.42.2.1",
        personalities=["whatsminer"],
        apply_delay_s={"whatsminer": 3.0},
    )
    async with asics, MeterSimulator("schneider-pm5560") as meter:
        follower = asyncio.create_task(follow_farm(asics, meter))
        await asyncio.sleep(0.6)
        text = config(tmp_path, asics, meter, enforce=True).replace("quota = 1", "quota = 10")
        agent = Agent(parse_config(text))
        try:
            await run_for(agent, 9)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    assert all(m.sleeping for m in asics.miners)
    assert [m.requests["power_off"] for m in asics.miners] == [1] * 6
    # a decision per meter reading (1 s), each within a fraction of a second of its poll
    assert len(agent.decision_ages_s) >= 6
    assert sorted(agent.decision_ages_s)[len(agent.decision_ages_s) // 2] < 0.2
