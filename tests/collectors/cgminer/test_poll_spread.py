"""A cycle's polls spread over ``spread_s`` instead of leaving at once, on a fake clock."""

from __future__ import annotations

import asyncio

from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading
from tests.collectors.cgminer.conftest import FarmFactory


class FakeClock:
    """Time moves only when the poller waits; each wait notes how many miners were asked."""

    def __init__(self, sim: AsicFarmSimulator) -> None:
        self.sim = sim
        self.now = 0.0
        self.asked_at: list[tuple[float, int]] = []  # (fake time, miners asked so far)
        self.delivered: list[int] = []  # indices handed to on_result, in order
        self.delivered_at: list[int] = []  # how many had been handed over at each wait

    def __call__(self) -> float:
        return self.now

    async def sleep(self, s: float) -> None:
        self.asked_at.append((self.now, sum(1 for m in self.sim.miners if m.requests)))
        self.delivered_at.append(len(self.delivered))
        self.now += s
        await asyncio.sleep(0)


async def test_polls_start_one_step_apart_over_the_spread(farm: FarmFactory) -> None:
    async with farm(10) as sim:
        clock = FakeClock(sim)
        # one worker: the fake clock is the only time that passes between two polls
        poller = AsicPoller(timeout_s=2.0, concurrency=1)
        results = await poller.poll_many(
            sim.targets,
            spread_s=50.0,
            clock=clock,
            sleep=clock.sleep,
            on_result=lambda i, r: clock.delivered.append(i),
        )
        asked = sum(1 for m in sim.miners if m.requests)
    assert all(isinstance(r, AsicReading) for r in results)
    assert asked == 10
    # miner i is asked at 5 s × i, never sooner: one more miner per step, not ten at the start
    assert clock.asked_at == [(5.0 * i, i + 1) for i in range(9)]
    assert clock.now == 45.0  # the last poll starts inside the 50 s
    # each reading is handed over when its poll ends, not when the last one does
    assert clock.delivered_at == list(range(1, 10))
    assert clock.delivered == list(range(10))


async def test_no_spread_polls_without_waiting(farm: FarmFactory) -> None:
    async with farm(6) as sim:
        clock = FakeClock(sim)
        poller = AsicPoller(timeout_s=2.0, concurrency=2)
        results = await poller.poll_many(sim.targets, clock=clock, sleep=clock.sleep)
    assert [(r.ip, r.port) for r in results] == sim.targets
    assert clock.asked_at == []  # nobody waited
