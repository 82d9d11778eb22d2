"""Backpressure on the miner polls: the window of polls in flight follows the loop's lag."""

from __future__ import annotations

import asyncio

from kuat.agent.backpressure import LAG_HIGH_S, LAG_LOW_S, PollGate


def test_the_window_starts_small_widens_by_an_eighth_and_halves_on_lag() -> None:
    gate = PollGate(1000, floor=8, start=64)
    assert gate.window == 64  # not a thousand connections before the first lag sample
    gate.observe(0.0)
    assert gate.window == 72
    gate.observe((LAG_LOW_S + LAG_HIGH_S) / 2)  # between: left as it is
    assert gate.window == 72
    gate.observe(LAG_HIGH_S * 2)
    assert gate.window == 36
    for _ in range(10):
        gate.observe(1.0)
    assert gate.window == 8  # never under the floor
    gate.observe(0.0)
    assert gate.window == 9  # at least one wider
    for _ in range(200):
        gate.observe(0.0)
    assert gate.window == 1000  # never over the poller's own limit
    assert PollGate(10).window == 10  # nor does it start over it


def test_polls_wait_while_the_window_is_full_and_go_when_it_widens() -> None:
    async def main() -> None:
        gate = PollGate(4, floor=1, start=1)
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
        assert gate.window == 3
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


def test_background_reads_wait_until_no_poll_waits_for_a_place() -> None:
    # a first cycle queues every poll at once: the identity reads come after them, not between
    async def main() -> None:
        gate = PollGate(2, floor=1, start=1)
        order: list[str] = []
        release = asyncio.Event()

        async def work(name: str, admit: object) -> None:
            async with admit():  # type: ignore[operator]
                order.append(name)
                await release.wait()

        tasks = [asyncio.create_task(work("poll-1", gate.admit))]
        await asyncio.sleep(0)  # poll-1 holds the only place
        tasks.append(asyncio.create_task(work("identity", gate.admit_background)))
        tasks += [asyncio.create_task(work(f"poll-{i}", gate.admit)) for i in (2, 3)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert order == ["poll-1"]
        release.set()
        await asyncio.gather(*tasks)
        assert order == ["poll-1", "poll-2", "poll-3", "identity"]
        assert gate.in_flight == 0

    asyncio.run(main())
