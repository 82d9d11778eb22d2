"""Auradine (FluxOS) against the simulator: detected from its replies, read over the cgminer-style
API without credentials, identity from ipreport; sleep, wake, a power target and pools over
FluxOS's HTTP API with a token, each confirmed by reading the miner back."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kuat.collectors.capabilities import PoolConfigurable, PoolTarget
from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.control import MinerAccess
from kuat.collectors.cgminer.handle import miner_handle
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading

_ranges = itertools.count(1)
WEB_PORT = 18094
ACCESS = MinerAccess(auradine_web_port=WEB_PORT)


@asynccontextmanager
async def farm(count: int) -> AsyncIterator[AsicFarmSimulator]:
    sim = AsicFarmSimulator(
        count, first_ip=f"127.87.{next(_ranges)}.1", personalities=["auradine"], web_port=WEB_PORT
    )
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


async def test_auradine_sleeps_wakes_and_takes_a_power_target_over_fluxos() -> None:
    async with farm(1) as sim:
        host, port = sim.targets[0]
        m = sim.miners[0]
        res = await control.sleep(host, port, "auradine", "quota", access=ACCESS, confirm_s=3)
        assert res.outcome == "done", res
        assert m.sleeping
        r = await AsicPoller(web_port=None).poll(host, port)
        assert isinstance(r, AsicReading) and r.state == "sleeping"  # mode: Sleep "on"
        res = await control.wake(host, port, "auradine", "quota", access=ACCESS, confirm_s=3)
        assert res.outcome == "done" and not m.sleeping, res
        res = await control.set_power_limit(
            host, port, "auradine", 4000, "quota", access=ACCESS, confirm_s=3
        )
        assert res.outcome == "done", res
        assert m.power_limit_w == 4000 and m.power_w < 4000


async def test_auradine_wrong_password_is_refused_and_nothing_changes() -> None:
    async with farm(1) as sim:
        host, port = sim.targets[0]
        bad = MinerAccess(auradine_web_port=WEB_PORT, auradine_password="guess")
        res = await control.sleep(host, port, "auradine", "quota", access=bad, confirm_s=1)
        assert res.outcome == "refused" and "token" in res.detail, res
        assert "guess" not in res.detail  # secrets never in a message
        assert not sim.miners[0].sleeping


ACCREDITED = (
    PoolTarget("stratum+tcp://pool.kz.example:3333", "kzfarm.w1", "x"),
    PoolTarget("stratum+tcp://backup.pool.kz.example:443", "kzfarm.w1", "x"),
)


async def test_auradine_pools_are_written_over_fluxos_and_read_back() -> None:
    async with farm(1) as sim:
        host, port = sim.targets[0]
        m = sim.miners[0]
        h = miner_handle(host, port, "auradine", access=ACCESS, confirm_s=3.0)
        assert isinstance(h, PoolConfigurable)
        res = await h.set_pools(ACCREDITED, "item 7")
        assert res.outcome == "done", res
        assert m.requests["updatepools"] == 1
        assert [(p["url"], p["user"]) for p in m.pools] == [(p.url, p.user) for p in ACCREDITED]
        r = await AsicPoller(web_port=None).poll(host, port)
        assert isinstance(r, AsicReading)
        assert [p.url for p in r.pools] == [p.url for p in ACCREDITED]


async def test_auradine_pools_with_a_wrong_password_are_refused_and_kept() -> None:
    async with farm(1) as sim:
        host, port = sim.targets[0]
        before = list(sim.miners[0].pools)
        bad = MinerAccess(auradine_web_port=WEB_PORT, auradine_password="guess")
        res = await control.set_pools(host, port, "auradine", ACCREDITED, "t", access=bad)
        assert res.outcome == "refused" and "guess" not in res.detail, res
        assert sim.miners[0].pools == before
        assert sim.miners[0].requests["updatepools"] == 0
