"""Right after the agent starts, `kuat compliance report` says what the running agent has
already found: item 7 failing, not "unknown" until the first inventory interval has passed.

The report reads the inventory the agent keeps in its spool (it must not poll the site beside a
running agent). The agent used to skip its first inventory (no miner had answered yet) and wait a
whole interval (5 minutes by default) for the next, while its own item-7 check had long failed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kuat.agent.config import parse_config
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.quota.checks import CheckStatus

MINERS = 3


@pytest.fixture
async def asics() -> AsyncIterator[AsicFarmSimulator]:
    sim = AsicFarmSimulator(MINERS, first_ip="127.41.0.1", seed=5)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def config_text(asics: AsicFarmSimulator, state_dir: Path) -> str:
    hosts = ", ".join(f'"{ip}"' for ip, _ in asics.targets)
    return f"""
[site]
id = "start-site"
owner_bin = "230140000077"
data_centre_registered = true
data_centre_id = "DC-1"

[agent]
state_dir = "{state_dir}"

[intervals]
asic = 2
quota = 1

[dashboard]
listen = ""

[asic]
timeout_s = 2.0
[[asic.groups]]
hosts = [{hosts}]

[compliance]
accredited_pools = ["pool.kz"]
"""


async def _report(cfg_path: Path) -> tuple[dict[str, Any], str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kuat.agent.cli",
        "compliance",
        "report",
        "-c",
        str(cfg_path),
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return json.loads(out), err.decode()


async def test_the_report_reflects_what_the_running_agent_found(
    asics: AsicFarmSimulator, tmp_path: Path
) -> None:
    cfg_path = tmp_path / "kuat.toml"
    cfg_path.write_text(config_text(asics, tmp_path / "state"))
    agent = Agent(parse_config(cfg_path.read_text()))
    assert agent.cfg.intervals.inventory >= 300  # the default: far longer than this test
    task = asyncio.create_task(agent.run())
    try:
        for _ in range(200):  # until the agent's own item-7 check has judged the miners
            pools = agent.state.pools
            if pools is not None and pools.status is CheckStatus.FAIL:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the agent never judged item 7")
        # The inventory lands with the miner poll that completes it (identities fetched): a few
        # asic intervals (2 s here) at most, never the inventory interval (300 s by default).
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            report, err = await _report(cfg_path)
            if report["item7"]["status"] != "unknown":
                break
            assert asyncio.get_running_loop().time() < deadline, report["item7"]
            await asyncio.sleep(1)
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 15)
    assert report["item7"]["status"] == "fail", err
    assert len(report["item7"]["offenders"]) == MINERS
    assert {o["ip"] for o in report["item7"]["offenders"]} == {ip for ip, _ in asics.targets}
