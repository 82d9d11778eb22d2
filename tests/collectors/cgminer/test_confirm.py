"""A control action is confirmed by re-reading the miner through the caller's poller (the
agent's own): inside that poller's concurrency limit, with what it knows of the miner. An action
given no poller confirms through one of its own."""

from __future__ import annotations

import asyncio

from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import DeviceError


async def _silent_miner(host: str) -> asyncio.Server:
    """A miner that accepts and never answers: a poll of it holds its slot until the timeout."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()

    return await asyncio.start_server(hold, host, 0)


async def test_confirmation_rereads_through_the_given_poller_inside_its_limit() -> None:
    sim = AsicFarmSimulator(1, first_ip="127.89.1.1", personalities=["braiins"], web_port=None)
    await sim.start()
    silent = await _silent_miner("127.89.2.1")
    try:
        host, port = sim.targets[0]
        silent_port = silent.sockets[0].getsockname()[1]
        # one miner at a time, and a poll cycle holding that one slot for a second
        poller = AsicPoller(timeout_s=1.0, concurrency=1, web_port=None, v3_port=None)
        cycle = asyncio.create_task(poller.poll_many([("127.89.2.1", silent_port)]))
        await asyncio.sleep(0.05)
        assert not cycle.done()
        res = await control.sleep(host, port, "braiins", "quota", confirm_s=5.0, poller=poller)
        assert res.outcome == "done", res
        assert sim.miners[0].sleeping
        # the confirmation waited for the slot the cycle held: never two miners in flight
        assert cycle.done() and isinstance(cycle.result()[0], DeviceError)
        # and it read the miner through this poller, which now knows its firmware
        assert poller.family_of(host, port) == "braiins"
        await poller.aclose()
    finally:
        silent.close()
        await sim.stop()


async def test_an_action_without_a_poller_confirms_through_its_own() -> None:
    sim = AsicFarmSimulator(1, first_ip="127.89.3.1", personalities=["braiins"], web_port=None)
    await sim.start()
    try:
        host, port = sim.targets[0]
        res = await control.sleep(host, port, "braiins", "quota", confirm_s=5.0)
        assert res.outcome == "done", res
        assert sim.miners[0].sleeping
        res = await control.wake(host, port, "braiins", "quota back", confirm_s=5.0)
        assert res.outcome == "done", res
        assert not sim.miners[0].sleeping
    finally:
        await sim.stop()
