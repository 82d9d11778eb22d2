"""The inventory republished after a miner cycle that left it incomplete (miners not yet
identified) runs beside the miner job, not inside it, and never two publishes at once.

At 50,000 miners that publish took 2-10 s in its worker thread; every miner cycle awaiting it
overran its interval while identities were still being read (bench/farm_scale.py --phases).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from kuat.agent.config import parse_config
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading

MINERS = 3


def agent(tmp_path: Path, sim: AsicFarmSimulator) -> Agent:
    hosts = ", ".join(f'"{ip}"' for ip, _ in sim.targets)
    return Agent(
        parse_config(
            f'[site]\nid = "s"\nowner_bin = "230140000077"\n[agent]\nstate_dir = "{tmp_path}"\n'
            f'[dashboard]\nlisten = ""\n[asic]\ntimeout_s = 2.0\nweb_port = 0\n'
            f"[[asic.groups]]\nhosts = [{hosts}]\n"
        )
    )


async def _turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_miner_cycle_does_not_wait_for_its_inventory_republish(tmp_path: Path) -> None:
    sim = AsicFarmSimulator(MINERS, first_ip="127.77.251.1", seed=3)
    await sim.start()
    a = agent(tmp_path, sim)
    published: list[int] = []
    entered, release = asyncio.Event(), asyncio.Event()

    async def held_publish(readings: Iterable[AsicReading], now: datetime) -> None:
        published.append(len(list(readings)))
        entered.set()
        await release.wait()

    a.uplinks.publish_inventory = held_publish  # type: ignore[method-assign]
    try:
        # the inventory job before any miner answered: nothing published, the inventory is
        # incomplete, so the first miner cycle asks for it again
        await a.publish_inventory()
        assert published == []
        cycle = asyncio.create_task(a.poll_asics())
        await entered.wait()
        await _turns()
        cycle_done = cycle.done()
        # the inventory job while that publish is held: it waits for it, not a second one
        job = asyncio.create_task(a.publish_inventory())
        await _turns()
        job_waits = not job.done()
        after_job_asked = list(published)
        release.set()
        await asyncio.gather(cycle, job)
    finally:
        release.set()
        await sim.stop()
        await a.uplinks.stop()
    assert cycle_done, "the miner cycle waited for the inventory publish"
    assert job_waits and after_job_asked == [MINERS]
    assert published == [MINERS]


async def test_the_inventory_job_just_after_a_republish_makes_no_second_snapshot(
    tmp_path: Path,
) -> None:
    sim = AsicFarmSimulator(MINERS, first_ip="127.77.251.1", seed=3)
    await sim.start()
    a = agent(tmp_path, sim)
    published: list[int] = []

    async def publish(readings: Iterable[AsicReading], now: datetime) -> None:
        published.append(len(list(readings)))

    a.uplinks.publish_inventory = publish  # type: ignore[method-assign]
    try:
        await a.publish_inventory()  # before any miner answered: incomplete, nothing published
        await a.poll_asics()  # ... so the cycle republishes, beside it
        assert a._inventory_task is not None
        await a._inventory_task
        # the job due seconds later: the miners were read just now, no second snapshot
        await a.publish_inventory()
        after_republish = list(published)
        assert after_republish == [MINERS], "the inventory job made the snapshot again"
        # half an interval after that read (the scheduled job an interval later), it publishes
        assert a._inventory_read_at is not None
        a._inventory_read_at -= a.cfg.intervals.inventory / 2
        await a.publish_inventory()
    finally:
        await sim.stop()
        await a.uplinks.stop()
    assert published == [MINERS, MINERS]
