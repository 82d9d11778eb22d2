"""Soft actions before hard ones, through the agent with real simulators: LuxOS miners (power
profiles) and a stock Antminer without a web UI (so it cannot sleep) fed by an APC PDU outlet
served by snmpsim. A dispatcher's order first asks for a little less power — the LuxOS miners
get lower power limits and keep mining — then for far less: the miners that can sleep sleep,
and the one that cannot is cut at its outlet. Without enforcement nothing changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.config import parse_config
from kuat.agent.demo import follow_farm
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.modbus.sim import MeterSimulator
from kuat.collectors.readings import PduReading
from kuat.collectors.snmp.collector import PduPoller, SnmpAuth
from kuat.collectors.snmp.sim import SimulatorError, SnmpSimulator
from kuat.quota.orders import sign_order
from tests.e2e.fake_site import write_day_files

pytestmark = pytest.mark.servers

KEY = "a-shared-secret-of-the-dispatcher"
APC = "apc_apdu9959eu3"
OUTLET = 2
FULL_LUX_W = 2760  # the simulated LuxOS S19k Pro at its default profile


@pytest.fixture
def pdu() -> Iterator[SnmpSimulator]:
    try:
        sim = SnmpSimulator(writable_outlets=True).start()
    except SimulatorError as e:
        pytest.skip(str(e))
    try:
        yield sim
    finally:
        sim.stop()


def order(target_mw: float, issued_ago_s: float) -> str:
    now = datetime.now(UTC)
    doc = {
        "id": "KEGOC-SOFT-1",
        "issuer": "kegoc",
        "site": "soft",
        "target_mw": target_mw,
        "start": (now - timedelta(minutes=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
        "issued_at": (now - timedelta(seconds=issued_ago_s)).isoformat(),
    }
    return sign_order(doc, KEY.encode())


async def outlet_state(sim: SnmpSimulator) -> str | None:
    r = await PduPoller(timeout_s=2).poll(sim.host, sim.port, auth=SnmpAuth(community=APC))
    assert isinstance(r, PduReading)
    return next(o.state for o in r.outlets if o.index == OUTLET)


def config(
    tmp_path: Path,
    asics: AsicFarmSimulator,
    meter: MeterSimulator,
    sim: SnmpSimulator,
    enforce: bool,
) -> str:
    full_kw = asics.total_power_w() / 1000
    schedules = tmp_path / "quota.d"
    schedules.mkdir()
    write_day_files(schedules, f"{full_kw * 3 / 1000:.3f}")  # ample allocation
    hosts = ", ".join(f'"{ip}"' for ip, _ in asics.targets)
    antminer = next(m for m in asics.miners if m.personality == "antminer")
    return f"""
[site]
id = "soft"
[agent]
state_dir = "{tmp_path}"
[intervals]
asic = 1
meter = 1
quota = 1
[asic]
timeout_s = 2
web_port = 0
[[asic.groups]]
hosts = [{hosts}]
[[meter]]
name = "main"
host = "{meter.host}"
port = {meter.port}
role = "site"
[[pdu]]
name = "rack-a"
host = "{sim.host}"
port = {sim.port}
community = "{APC}"
timeout_s = 2
outlets = {{ "{OUTLET}" = "{antminer.ip}:{antminer.port}" }}
[quota]
schedules = "{schedules}"
enforce = {"true" if enforce else "false"}
min_on_s = 0
min_off_s = 0
hysteresis_kw = 5
power_limit_hold_s = 0
[quota.orders]
directory = "{tmp_path / "orders.d"}"
[quota.orders.issuers]
kegoc = "{KEY}"
"""


@pytest.mark.parametrize("enforce", [True, False])
async def test_limits_first_then_sleep_then_the_outlet_of_the_unsleepable_miner(
    enforce: bool, pdu: SnmpSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kuat.curtail")
    asics = AsicFarmSimulator(
        4, first_ip="127.47.0.1", personalities=["luxos", "luxos", "luxos", "antminer"]
    )
    async with asics, MeterSimulator("schneider-pm5560") as meter:
        follower = asyncio.create_task(follow_farm(asics, meter))
        await asyncio.sleep(0.6)
        lux = [m for m in asics.miners if m.personality == "luxos"]
        assert await outlet_state(pdu) == "on"
        full_kw = asics.total_power_w() / 1000
        orders = tmp_path / "orders.d"
        orders.mkdir()
        # 1.5 kW below the load: three LuxOS miners can give that by power limits alone
        (orders / "order.json").write_text(order((full_kw - 1.5) / 1000, 60))
        agent = Agent(parse_config(config(tmp_path, asics, meter, pdu, enforce)))
        task = asyncio.create_task(agent.run())
        try:
            await asyncio.sleep(6)
            limits_1 = [m.power_limit_w for m in lux]
            asleep_1 = [m.sleeping for m in asics.miners]
            outlet_1 = await outlet_state(pdu)
            plan_1 = agent.curtailer.last_plan
            # then far below: only sleeping and, for the one that cannot, the outlet will do
            (orders / "order.json").write_text(order(0.0005, 5))
            await asyncio.sleep(9)
            outlet_2 = await outlet_state(pdu)
            plan_2 = agent.curtailer.last_plan
        finally:
            agent.request_stop()
            await asyncio.wait_for(task, 20)
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    limits_2 = [m.power_limit_w for m in lux]
    if not enforce:
        assert plan_1 is not None and plan_1.actions  # planned and logged, not carried out
        assert plan_2 is not None and plan_2.actions
        assert limits_1 == limits_2 == [FULL_LUX_W] * 3
        assert not any(m.sleeping for m in asics.miners)
        assert outlet_1 == outlet_2 == "on"
        return
    # stage 1: soft — lower limits, everyone still mining, the outlet untouched
    assert any(w < FULL_LUX_W for w in limits_1), limits_1
    assert not any(asleep_1) and outlet_1 == "on"
    # stage 2: the LuxOS miners sleep (keeping their lower limits), the stock Antminer's sleep
    # is unsupported (no web UI) and its outlet is switched off as the last resort
    assert all(m.sleeping for m in lux)
    assert any(w < FULL_LUX_W for w in limits_2), limits_2
    assert outlet_2 == "off"
    said = [r.getMessage() for r in caplog.records if r.name == "kuat.curtail"]
    assert any(t.startswith("limit_power ") and ": done" in t for t in said), said
    assert any(t.startswith("sleep ") and ": unsupported" in t for t in said), said
    assert any(t.startswith("outlet_off ") and ": done" in t for t in said), said
