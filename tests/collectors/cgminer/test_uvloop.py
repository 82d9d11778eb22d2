"""The miner poller on uvloop's event loop (kuat[uvloop], measured by bench/farm_scale.py
--uvloop): uvloop's transports are not asyncio.Transport subclasses, and every poll failed."""

from __future__ import annotations

import asyncio

import pytest

from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading

uvloop = pytest.importorskip("uvloop")


def test_polls_read_every_miner_on_uvloop() -> None:
    async def cycle() -> list[object]:
        sim = AsicFarmSimulator(8, first_ip="127.77.251.1", seed=3)
        await sim.start()
        try:
            return list(await AsicPoller(timeout_s=2.0).poll_many(sim.targets))
        finally:
            await sim.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        results = runner.run(cycle())
    assert len(results) == 8
    assert all(isinstance(r, AsicReading) for r in results), results
