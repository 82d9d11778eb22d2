"""Acceptance: the real agent keeps a simulated farm inside its hourly allocation for a whole
Astana hour, on an accelerated clock.

No scheduler: the test steps a fake clock a minute at a time through one hour and a few minutes
of the next. Each step the substation meter's registers are set from the farm's power integrated
over fake time, then the agent's own jobs run in order — miners polled, meter polled, quota
evaluated — and the curtailer's real sleep/wake commands to the simulated miners are awaited.
The hour's allocation is about 70% of the farm's full load; the next hour's is ample.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.config import parse_config
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.modbus.sim import MeterSimulator
from kuat.quota.clock import hour_bounds, hour_of
from tests.e2e.fake_site import FollowedMeter, SteppedClock, agent_toml, schedule_csv

MINERS = 24
STEP = timedelta(seconds=60)
HOUR_STEPS = 60
AFTER_STEPS = 5  # into the next hour: its first step is blind (nothing of it metered yet)
TIGHT_SHARE = 0.70  # of the farm's full load over the hour
AMPLE_SHARE = 2.0
TOLERANCE_KWH = 0.5
COUNTER_AT_START_KWH = 48_000.0


@pytest.fixture
async def farm() -> AsyncIterator[tuple[AsicFarmSimulator, MeterSimulator]]:
    asics = AsicFarmSimulator(
        MINERS, first_ip="127.43.0.1", personalities=["whatsminer", "luxos", "braiins"]
    )
    meter = MeterSimulator("schneider-pm5560", host="127.43.1.1")
    await asics.start()
    await meter.start()
    try:
        yield asics, meter
    finally:
        await asics.stop()
        await meter.stop()


def write_allocations(directory: Path, site: str, tight: tuple[date, int], kw: float) -> None:
    """Today's and tomorrow's (Astana) allocations: the tight hour at TIGHT_SHARE of ``kw``,
    every other hour at AMPLE_SHARE."""
    directory.mkdir()
    day = tight[0]
    for d in (day, day + timedelta(days=1)):
        kwh = {h: kw * (TIGHT_SHARE if (d, h) == tight else AMPLE_SHARE) for h in range(1, 25)}
        (directory / f"{d.isoformat()}-grid.csv").write_text(schedule_csv(site, d, kwh))


def config(tmp_path: Path, asics: AsicFarmSimulator, meter: MeterSimulator) -> str:
    quota = {
        "schedules": tmp_path / "quota.d",
        "tolerance_kwh": TOLERANCE_KWH,
        "enforce": True,
        "min_on_s": 120,
        "min_off_s": 120,
        "hysteresis_kw": 5,
    }
    return agent_toml(
        site="hour-sim", state_dir=tmp_path / "state", farm=asics, meter=meter, quota=quota
    )


async def test_agent_keeps_a_simulated_farm_inside_its_hour(
    farm: tuple[AsicFarmSimulator, MeterSimulator],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    asics, meter = farm
    caplog.set_level(logging.INFO, logger="kuat.curtail")
    # the commands sent: each firmware backend logs its own (kuat.collectors.cgminer.firmware.*)
    caplog.set_level(logging.INFO, logger="kuat.collectors.cgminer")
    full_kw = asics.total_power_w() / 1000
    # the start of the Astana hour we are in: today's allocation file covers it
    tight = hour_of(datetime.now(UTC))
    hour_start, hour_end = hour_bounds(*tight)
    write_allocations(tmp_path / "quota.d", "hour-sim", tight, full_kw)
    allocation_kwh = full_kw * TIGHT_SHARE

    clock = SteppedClock(hour_start)
    agent = Agent(parse_config(config(tmp_path, asics, meter)), clock=clock)
    site = FollowedMeter(meter, full_kw, COUNTER_AT_START_KWH)  # drawing full load so far
    statuses: list[str] = []
    asleep_by_step: list[int] = []
    try:
        for step in range(HOUR_STEPS + AFTER_STEPS + 1):
            if step:
                clock.advance(STEP)
                site.advance(STEP)
            site.publish()
            await agent.poll_asics()
            await agent.poll_meters()
            await agent.evaluate_quota()
            await agent.curtailer.wait()
            site.p_kw = asics.total_power_w() / 1000  # what the farm draws until the next step
            q = agent.state.quota
            statuses.append(f"{q.status.value}" if q is not None else "-")
            asleep_by_step.append(sum(m.sleeping for m in asics.miners))
    finally:
        await agent._shutdown(asyncio.get_running_loop())

    # the meter readings the agent took follow the fake clock
    history = list(agent.state.site_meter_history)
    assert [r.taken_at for r in history] == [
        hour_start + i * STEP for i in range(HOUR_STEPS + AFTER_STEPS + 1)
    ]
    # energy the meter counted over the hour: its import counter at the hour's two ends
    at = {r.taken_at: r for r in history}
    first, last = at[hour_start], at[hour_end]
    assert first.import_kwh is not None and last.import_kwh is not None
    hour_kwh = last.import_kwh - first.import_kwh
    assert hour_kwh <= allocation_kwh + TOLERANCE_KWH, (
        f"the hour used {hour_kwh:.2f} kWh of {allocation_kwh:.2f} kWh "
        f"(+{TOLERANCE_KWH} tolerance); miners asleep per step {asleep_by_step}"
    )
    # ... and curtailment was needed and used the allocation, not far less
    assert hour_kwh > allocation_kwh * 0.9, f"only {hour_kwh:.2f} of {allocation_kwh:.2f} kWh"

    # miners were put to sleep with real commands, and the log says why
    assert max(asleep_by_step[:HOUR_STEPS]) > 0
    curtail_log = [r.getMessage() for r in caplog.records if r.name == "kuat.curtail"]
    plans = [m for m in curtail_log if m.startswith("curtailment plan, enforcing: sleep")]
    assert any("least efficient first" in m for m in plans), curtail_log
    assert any(" done (confirmed sleeping; reason: Sleep " in m for m in curtail_log), curtail_log
    miner_log = "kuat.collectors.cgminer."
    commands = [r.getMessage() for r in caplog.records if r.name.startswith(miner_log)]
    assert any(": sleep requested (Sleep " in m for m in commands), commands

    # the next hour's ample allocation brought every miner back
    assert asleep_by_step[-1] == 0, asleep_by_step
    assert not any(m.sleeping for m in asics.miners)
    readings = agent.state.asic_readings()
    assert len(readings) == MINERS and {r.state for r in readings} == {"mining"}
    assert statuses[-1] == "ok", statuses
