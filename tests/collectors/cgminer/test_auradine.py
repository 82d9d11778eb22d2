"""Auradine (FluxOS) against the simulator: detected from its replies, read over the cgminer-style
API without credentials, identity from ipreport; control is not driven yet and says so."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading

_ranges = itertools.count(1)


@asynccontextmanager
async def farm(count: int) -> AsyncIterator[AsicFarmSimulator]:
    sim = AsicFarmSimulator(count, first_ip=f"127.87.{next(_ranges)}.1", personalities=["auradine"])
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def test_simulated_auradine_reads_like_the_real_one() -> None:
    async with farm(2) as sim:
        poller = AsicPoller(web_port=None)
        for _ in range(2):
            for m, r in zip(sim.miners, await poller.poll_many(sim.targets), strict=True):
                assert isinstance(r, AsicReading), r
                assert (r.vendor, r.firmware_family, r.model) == ("Auradine", "auradine", m.model)
                assert (r.serial, r.mac) == (m.serial, m.mac.lower())
                assert r.hashrate_nominal_ths == 260.0  # models.toml: AT2880
                assert r.power_w is not None and abs(r.power_w - m.power_w) < 0.01
                assert len(r.temps_c.board) == 3 and len(r.fans_rpm) == 4
                assert r.state == "mining" and r.errors == ()
        await poller.aclose()


async def test_auradine_control_is_unsupported_not_a_crash() -> None:
    async with farm(1) as sim:
        host, port = sim.targets[0]
        res = await control.sleep(host, port, "auradine", "quota")
        assert res.outcome == "unsupported"
        assert not sim.miners[0].sleeping
