"""S21-era stock Antminers against the simulator: the poll asks ``stats`` with ``new_api`` and so
reads the watts the old shape never had (and a Hydro's coolant), from the first poll on; sleep
and wake go through the web UI's set_miner_conf as on older stock firmware."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.control import MinerAccess
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading

WEB_PORT = 18093
WEB = MinerAccess(web_port=WEB_PORT)  # the stock web UI where the simulator serves it
_ranges = itertools.count(1)


@asynccontextmanager
async def s21_farm(count: int = 4) -> AsyncIterator[AsicFarmSimulator]:
    sim = AsicFarmSimulator(
        count,
        first_ip=f"127.86.{next(_ranges) % 99 + 1}.1",
        personalities=["antminer_s21"],
        web_port=WEB_PORT,
    )
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def test_first_and_later_polls_read_watts_and_hydro_coolant() -> None:
    async with s21_farm() as sim:
        poller = AsicPoller(web_port=None)
        for _ in range(2):  # the first poll detects, the second uses the remembered firmware
            results = await poller.poll_many(sim.targets)
            for m, r in zip(sim.miners, results, strict=True):
                assert isinstance(r, AsicReading), r
                assert (r.firmware_family, r.model, r.state) == ("bitmain", m.model, "mining")
                assert r.power_w is not None and abs(r.power_w - m.power_w) <= 1
                assert r.hashrate_ths is not None and r.hashrate_ths > 150
                assert r.temps_c.board and r.temps_c.chip and r.errors == ()
                if "Hyd" in m.model:
                    assert r.fans_rpm == () and r.coolant_in_c == 32.0
                    assert r.coolant_out_c is not None and r.coolant_out_c > 40
                else:
                    assert len(r.fans_rpm) == 4 and r.coolant_in_c is None
        await poller.aclose()


async def test_hydro_sleeps_and_wakes_through_set_miner_conf() -> None:
    async with s21_farm() as sim:
        (i, m) = next((i, m) for i, m in enumerate(sim.miners) if "Hyd" in m.model)
        host, port = sim.targets[i]
        res = await control.sleep(host, port, "bitmain", "quota", confirm_s=3, access=WEB)
        assert res.outcome == "done", res
        assert m.sleeping and m.conf_writes[-1]["miner-mode"] == 1
        r = await AsicPoller(web_port=None).poll(host, port)
        # no fans to stop on a water-cooled box: asleep by hashing 0 at control-board watts
        assert isinstance(r, AsicReading) and r.state == "sleeping" and r.errors == ()
        assert r.power_w is not None and r.power_w < 20
        res = await control.wake(host, port, "bitmain", "quota", confirm_s=3, access=WEB)
        assert res.outcome == "done", res
        assert not m.sleeping


async def test_discovery_asks_stats_again_with_new_api_only_where_it_may_answer() -> None:
    """A farm's first cycle asks ``stats`` a second time, with ``new_api``, of every stock
    Antminer whose build may answer it (S21-era, hydro, models kuat does not know); not of the
    air-cooled generations before it (S19 and older): one connection each for nothing."""
    async with (
        s21_farm(4) as new,
        AsicFarmSimulator(
            3, first_ip=f"127.86.{next(_ranges) % 99 + 1}.1", personalities=["antminer"]
        ) as old,
    ):
        poller = AsicPoller(web_port=None)
        asked: list[tuple[str, str]] = []
        command = poller.client.command

        async def counted(host: str, port: int, cmd: str, **kw: object) -> object:
            asked.append((host, cmd))
            return await command(host, port, cmd, **kw)  # type: ignore[arg-type]

        poller.client.command = counted  # type: ignore[method-assign]
        results = await poller.poll_many([*new.targets, *old.targets])
        await poller.aclose()
    assert all(isinstance(r, AsicReading) for r in results)
    for host, _ in new.targets:  # the S21 family: discovery, then stats with new_api
        assert [c for h, c in asked if h == host] == ["summary+stats+pools+version", "stats"]
    for host, _ in old.targets:  # S19s: discovery alone
        assert [c for h, c in asked if h == host] == ["summary+stats+pools+version"]
