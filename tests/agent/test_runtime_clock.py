"""The agent's jobs run on real time whatever clock stamps its readings.

Tests, the closed-loop bench and a replay give the agent a clock of their own; the job scheduler
was started at that clock's time, so a clock in the past made apscheduler walk every interval
missed since then before it ran anything (a month behind held the event loop ~20 s on a loaded
machine, and the quota-results contract test timed out).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.config import parse_config
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator


@pytest.fixture
async def farm() -> AsyncIterator[AsicFarmSimulator]:
    sim = AsicFarmSimulator(2, first_ip="127.47.0.1", seed=3)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def test_an_agent_on_a_clock_a_year_behind_polls_at_once(
    farm: AsicFarmSimulator, tmp_path: Path
) -> None:
    hosts = ", ".join(f'"{ip}"' for ip, _ in farm.targets)
    cfg = parse_config(
        f'[site]\nid = "clock"\n[agent]\nstate_dir = "{tmp_path}"\n[dashboard]\nlisten = ""\n'
        f"[intervals]\nasic = 1\nquota = 1\n[[asic.groups]]\nhosts = [{hosts}]\n"
    )
    year_ago = datetime.now(UTC) - timedelta(days=365)
    agent = Agent(cfg, clock=lambda: year_ago)
    task = asyncio.create_task(agent.run())
    try:
        deadline = time.monotonic() + 30
        while min(m.requests["summary"] for m in farm.miners) < 2:
            assert not task.done(), "the agent stopped by itself"
            await asyncio.sleep(0.1)
            assert time.monotonic() < deadline, "the agent did not poll its miners twice"
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 30)
