"""Backpressure on the miner polls: the window of polls in flight follows the loop's lag."""

from __future__ import annotations

import asyncio

from kuat.agent.backpressure import LAG_HIGH_S, LAG_LOW_S, PollGate


def test_the_window_halves_on_lag_down_to_its_floor_and_widens_one_at_a_time() -> None:
    gate = PollGate(100, floor=8)
    assert gate.window == 100
    gate.observe(LAG_HIGH_S * 2)
    assert gate.window == 50
    for _ in range(10):
        gate.observe(1.0)
    assert gate.window == 8  # never under the floor
    gate.observe((LAG_LOW_S + LAG_HIGH_S) / 2)  # between: left as it is
    assert gate.window == 8
    gate.observe(0.0)
    gate.observe(0.0)
    assert gate.window == 10
    for _ in range(500):
        gate.observe(0.0)
    assert gate.window == 100  # never over the poller's own limit


def test_polls_wait_while_the_window_is_full_and_go_when_it_widens() -> None:
    async def main() -> None:
        gate = PollGate(4, floor=1)
        gate.observe(1.0)
        gate.observe(1.0)  # window 1
        release = asyncio.Event()
        running: list[int] = []
        most = 0

        async def poll(i: int) -> None:
            nonlocal most
            async with gate.admit():
                running.append(i)
                most = max(most, len(running))
                await release.wait()
                running.remove(i)

        tasks = [asyncio.create_task(poll(i)) for i in range(6)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(running) == 1 and gate.in_flight == 1
        gate.observe(0.0)
        gate.observe(0.0)  # window 3: two more go at once
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(running) == 3
        release.set()
        await asyncio.gather(*tasks)
        assert most == 3 and gate.in_flight == 0

    asyncio.run(main())


def test_a_cancelled_wait_gives_its_place_to_the_next_poll() -> None:
    async def main() -> None:
        gate = PollGate(1)
        hold = asyncio.Event()

        async def poll(done: list[str], name: str) -> None:
            async with gate.admit():
                done.append(name)
                await hold.wait()

        done: list[str] = []
        first = asyncio.create_task(poll(done, "first"))
        await asyncio.sleep(0)
        second = asyncio.create_task(poll(done, "second"))
        third = asyncio.create_task(poll(done, "third"))
        await asyncio.sleep(0)
        second.cancel()
        hold.set()
        await asyncio.gather(first, third)
        assert done == ["first", "third"] and gate.in_flight == 0

    asyncio.run(main())
