"""Power limits through the real agent on Braiins OS miners, whose tuner takes a power target
only inside its range (the simulator's: 40 % of nominal and up, as Braiins OS's
``/api/v1/configuration/constraints`` gives per model; kuat reads it and refuses anything
lower without sending it, as the tuner's HTTP 400 would); the floor case on the other firmware
with a lowest limit too (LuxOS's lowest profile, ePIC's Power range, Vnish's lowest preset).

- Every step kuat plans is a share of the miner's own full power — never a share of a limit of
  kuat's own that a reading showed before its confirmation came back, or once the miner's
  serial came in and it was known by another id (it was: a second cut then asked for 60 % of
  60 %, under the firmware's minimum, was refused, and the miners were slept instead).
- A limit the firmware refuses is remembered with the minimum the refusal names: that miner is
  not asked for anything lower again, and can still be limited at a step it takes (it was: one
  refusal turned limits off for that miner, and it could only be slept; on LuxOS, ePIC and
  Vnish a target below the range came back "unsupported", which did the same)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.config import parse_config
from kuat.agent.runtime import Agent
from kuat.collectors.capabilities import ActionResult
from kuat.collectors.cgminer.firmware.epic.sim import EPIC_POWER_RANGE
from kuat.collectors.cgminer.firmware.vnish.sim import VNISH_PRESETS
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.modbus.sim import MeterSimulator
from kuat.quota.clock import hour_bounds, hour_of
from tests.e2e.fake_site import (
    FollowedMeter,
    SteppedClock,
    agent_toml,
    poll_asics_on,
    schedule_csv,
)

pytestmark = pytest.mark.servers

MINERS = 4
STEP_S = 0.5


@dataclass(frozen=True)
class Firmware:
    personality: str
    full_w: float  # the simulated model's nameplate
    floor_w: int  # the lowest limit its firmware takes
    asic: Mapping[str, object]  # the agent's extra [asic] keys


WEB = {"web_port": 8080}
# the simulated S19 XP: its tuner's floor is 40 % of it
BRAIINS = Firmware("braiins", 3031.0, 1212, {**WEB, "credentials": {"braiins": WEB}})
FIRMWARE = {
    "braiins": BRAIINS,
    # an S19k Pro: its lowest profile, 190MHz, draws 1593 W (luxos/sim.py)
    "luxos": Firmware("luxos", 2760.0, 1593, {}),
    "epic": Firmware("epic", 3010.0, EPIC_POWER_RANGE[0], {}),
    "vnish": Firmware("vnish", 3050.0, min(VNISH_PRESETS), WEB),
}
FULL_W = BRAIINS.full_w


@dataclass
class Outcome:
    limits: list[ActionResult]
    lowest_w: int  # the lowest power target any mining miner ran at
    sleeping: int
    limitable: set[str]  # the miners the curtailer still plans power limits for


async def run(
    tmp_path: Path,
    net: int,
    quota: Mapping[str, object],
    cuts: Mapping[float, float],
    identified: bool = True,
    fw: Firmware = BRAIINS,
) -> Outcome:
    """Four miners of ``fw`` whose limit shows 2 s after it is sent, read every 2 s (so a reading
    lands before a confirmation), two fake minutes from ten before an hour's end; ``cuts``:
    at t seconds, the rest of the hour's allocation as a share of full load; ``identified``
    false: the first plan comes before the miners' serials and MACs (a background read of
    Braiins OS's REST API), known until then by their address."""
    day, he = hour_of(datetime.now(UTC))
    h0, h1 = hour_bounds(day, he)
    start = h1 - timedelta(seconds=600)
    clock = SteppedClock(start)
    farm = AsicFarmSimulator(
        MINERS,
        first_ip=f"127.44.{net}.1",
        personalities=[fw.personality],
        web_port=8080,
        apply_delay_s={fw.personality: {"limit": 2.0}},
        clock=clock.seconds,
    )
    meter = MeterSimulator("schneider-pm5560", host=f"127.44.{net + 100}.1")
    full_kw = MINERS * fw.full_w / 1000
    site = FollowedMeter(meter, full_kw, 48_000.0)
    counter_h0 = site.import_kwh - full_kw * (start - h0).total_seconds() / 3600
    lowest: list[int] = []
    async with farm, meter:
        base = {"enforce": True, "min_on_s": 0, "min_off_s": 0, "hysteresis_kw": 0.2}
        text = agent_toml(
            site="floor",
            state_dir=tmp_path,
            farm=farm,
            meter=meter,
            quota={**base, "power_limit_hold_s": 0, "tolerance_kwh": 0.1, **quota},
            intervals={"asic": 30, "meter": 1, "quota": 5},
            asic=fw.asic,
        )
        agent = Agent(parse_config(text), clock=clock)
        await poll_asics_on(agent, clock)
        if identified:
            await asyncio.sleep(0.5)  # the miners' identities (REST miner/details) come in
            await poll_asics_on(agent, clock)
        by_address = any(r.device_id.startswith("127.") for r in agent.state.asic_readings())
        assert by_address is not identified
        try:
            for i in range(240):
                t = i * STEP_S
                if t in cuts:
                    used = site.import_kwh - counter_h0
                    left_h = (h1 - clock.now).total_seconds() / 3600
                    kwh = used + cuts[t] * full_kw * left_h
                    # the next hour ample: near an hour's end the planner also sees the next
                    # one, and one without an allocation would make it sleep rather than limit
                    ample = full_kw * 1.2
                    hours = {he: kwh, he + 1: ample} if he < 24 else {he: kwh}
                    csv = schedule_csv("floor", day, hours, int(t) + 1)
                    agent.quota.offer_schedule(csv, "csv", f"at {t}")
                    if he == 24:
                        nxt = schedule_csv("floor", day + timedelta(days=1), {1: ample}, int(t) + 1)
                        agent.quota.offer_schedule(nxt, "csv", f"next day at {t}")
                clock.advance(timedelta(seconds=STEP_S))
                site.advance(timedelta(seconds=STEP_S))
                if i % 2 == 0:
                    site.publish()
                    await agent.poll_meters()
                if i % 4 == 1:
                    await poll_asics_on(agent, clock)
                await asyncio.sleep(0.05)
                site.p_kw = farm.total_power_w() / 1000
                lowest.append(min(m.power_limit_w for m in farm.miners if not m.sleeping))
        finally:
            await agent.curtailer.cancel()
            await agent._shutdown(asyncio.get_running_loop())
    limits = [r for r in agent.curtailer.results if r.action == "set_power_limit"]
    limitable = {  # by address, as the results name them
        f"{rec.reading.ip}:{rec.reading.port}"
        for rec in agent.curtailer.miners.values()
        if rec.can_limit()
    }
    return Outcome(limits, min(lowest), sum(m.sleeping for m in farm.miners), limitable)


@pytest.mark.parametrize("identified", [True, False])
async def test_a_limit_read_back_before_its_confirmation_is_not_taken_as_full_power(
    tmp_path: Path, identified: bool
) -> None:
    # 62 %: every miner to its lowest step (60 %); then 45 %: limits give no more, sleeps
    out = await run(tmp_path, 0 if identified else 1, {}, {0.0: 0.62, 60.0: 0.45}, identified)
    assert out.limits and all(r.outcome == "done" for r in out.limits), out.limits
    assert out.lowest_w >= 0.6 * 0.985 * FULL_W  # 60 % of its draw (±1.5 % per reading)
    assert out.sleeping


@pytest.mark.parametrize("firmware", list(FIRMWARE))
async def test_a_refused_limit_is_never_asked_again_and_the_miner_is_still_limited(
    tmp_path: Path, firmware: str, caplog: pytest.LogCaptureFixture
) -> None:
    # steps down to 30 % of full power, under every firmware's floor; a cut to 55 % asks for it
    caplog.set_level(logging.INFO, logger="kuat.curtail")
    fw = FIRMWARE[firmware]
    net = 2 + list(FIRMWARE).index(firmware)
    out = await run(tmp_path, net, {"power_limit_min_pct": 30}, {0.0: 0.55}, fw=fw)
    refused: dict[str, list[int]] = {}  # the targets each miner refused, in order
    for r in out.limits:
        if r.outcome == "refused":
            asked = re.search(r"above (\d+) W", r.detail)
            assert asked, r  # every backend names the target it would not take
            refused.setdefault(r.device_id, []).append(int(asked[1]))
    assert refused, out.limits
    for targets in refused.values():
        # refused once, below its floor: the refusal names the firmware's lowest, which is
        # learned at once (Vnish's lowest preset is 69 % of full power: three steps under it
        # each cost a refusal while only the refused target was learned)
        assert len(targets) == 1 and targets[0] < fw.floor_w, out.limits
    floors = [r.floor_w for r in out.limits if r.outcome == "refused"]
    assert floors == [pytest.approx(fw.floor_w, abs=1)] * len(floors), out.limits
    assert refused.keys() <= out.limitable  # limits not given up on for a refusal
    # an expected refusal is said as the floor learned, not as an error in the journal
    said = [r for r in caplog.records if r.name == "kuat.curtail"]
    assert not [r.getMessage() for r in said if r.levelno >= logging.ERROR]
    learned = [r.getMessage() for r in said if "takes no power limit below" in r.getMessage()]
    assert len(learned) == len(refused), learned
    later = {r.device_id for r in out.limits if r.outcome == "done"} & refused.keys()
    # limited again at a step its firmware takes — or, where even every miner at its floor
    # cannot reach the cut (Vnish's 69 %), some sleep and the plan needs no limit
    assert later or (out.sleeping and 4 * fw.floor_w > 0.55 * 4 * fw.full_w), out.limits
    assert out.lowest_w >= fw.floor_w
