"""Energy balance: load the meter sees that no registered miner explains raises the alarm."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from kuat.agent.config import parse_config
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.modbus.sim import MeterSimulator


@pytest.mark.parametrize(("hidden_kw", "expected"), [(0.0, "ok"), (60.0, "alarm")])
async def test_hidden_load_raises_unregistered_load_alarm(
    hidden_kw: float, expected: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kuat.quota")
    farm = AsicFarmSimulator(6, first_ip="127.46.0.1", personalities=["whatsminer", "luxos"])
    async with farm, MeterSimulator("schneider-pm5560") as meter:
        # the registered miners plus 3 % losses, plus whatever hides behind the same meter
        meter.set(p_kw=farm.total_power_w() / 1000 * 1.03 + hidden_kw, import_kwh=10_000.0)
        hosts = ", ".join(f'"{ip}"' for ip, _ in farm.targets)
        cfg = parse_config(
            f'[site]\nid = "bal"\n[agent]\nstate_dir = "{tmp_path}"\n'
            f"[intervals]\nasic = 1\nmeter = 1\nquota = 1\n"
            f"[[asic.groups]]\nhosts = [{hosts}]\n"
            f'[[meter]]\nname = "main"\nhost = "{meter.host}"\nport = {meter.port}\n'
            f'role = "site"\n'
        )
        agent = Agent(cfg)
        task = asyncio.create_task(agent.run())
        await asyncio.sleep(3.5)
        agent.request_stop()
        await asyncio.wait_for(task, 15)
    assert agent.state.balance is not None
    assert agent.state.balance.status == expected
    alarms = [r for r in caplog.records if r.getMessage().startswith("balance: alarm")]
    assert bool(alarms) == (expected == "alarm")
