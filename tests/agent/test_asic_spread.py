"""The scheduled miner job spreads a cycle's polls over [asic] spread of its interval, and
never so far that the last poll would lose its deadline to the next cycle."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kuat.agent import runtime
from kuat.agent.config import parse_config
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator


def agent(
    tmp_path: Path,
    interval: float,
    timeout: float,
    spread: float | None = None,
    hosts: str = '"127.0.0.1"',
) -> Agent:
    share = "" if spread is None else f"spread = {spread}\n"
    return Agent(
        parse_config(
            f'[site]\nid = "s"\n[agent]\nstate_dir = "{tmp_path}"\n[dashboard]\nlisten = ""\n'
            f"[intervals]\nasic = {interval}\n"
            f"[asic]\ntimeout_s = {timeout}\nweb_port = 0\n{share}"
            f"[[asic.groups]]\nhosts = [{hosts}]\n"
        )
    )


@pytest.mark.parametrize(
    ("interval", "timeout", "spread", "expected"),
    [
        (60, 3, None, 48.0),  # the default: 80 % of the minute
        (60, 3, 0.5, 30.0),
        (60, 3, 0, 0.0),  # off: every miner at the cycle's start
        (10, 5, None, 3.0),  # 8 s would leave the last miner 2 s of its 5 s deadline, and the
        # run is cut 1 s before its next start (runtime.SCHEDULE_MARGIN_S)
        (2, 3, None, 0.0),  # no room at all: no spreading
    ],
)
def test_spread_is_a_share_of_the_interval_that_leaves_the_deadline(
    tmp_path: Path, interval: float, timeout: float, spread: float | None, expected: float
) -> None:
    assert agent(tmp_path, interval, timeout, spread).asic_spread_s == expected


async def test_readings_are_spooled_as_they_arrive_not_at_the_cycle_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "RECORD_CHUNK", 1)
    sim = AsicFarmSimulator(4, first_ip="127.77.250.1", seed=2)
    await sim.start()
    try:
        a = agent(tmp_path, 60, 2, hosts=", ".join(f'"{ip}"' for ip, _ in sim.targets))
        # the last of 4 miners starts 4.5 s in: the cycle is still running when the first lands
        cycle = asyncio.create_task(a.poll_asics(spread_s=6.0))
        for _ in range(3000):
            if a.state.asics or cycle.done():
                break
            await asyncio.sleep(0.01)
        in_state = len(a.state.asics)
        spooled = a.uplinks.spool.counts().pending
        running = not cycle.done()
        await cycle
        total = a.uplinks.spool.counts().pending
    finally:
        await sim.stop()
        await a.uplinks.stop()
    assert running, "the cycle ended before its first reading was seen"
    assert 1 <= in_state < 4
    assert spooled >= 1  # the first miner's line is on disk while the others are still polled
    assert total >= 4
