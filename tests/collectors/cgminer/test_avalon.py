"""Canaan Avalon: soft-off/soft-on replies and control against the simulator. The readings of the
real captures (an Avalon Q soft-off, a mining AvalonMiner 1246) are case folders in
tests/cases/asic/avalon (test_cases.py)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.client import decode_reply
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading

FIX = Path(__file__).parents[2] / "fixtures" / "asic"
T = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)


def load(name: str) -> dict:
    return decode_reply((FIX / name).read_bytes())


def test_softoff_acknowledgement_is_not_an_error_reply() -> None:
    from kuat.collectors.cgminer.client import is_error_reply, status_of

    for name, word in (
        ("avalon-q-ascset-softoff.json", "softoff"),
        ("avalon-q-ascset-softon.json", "softon"),
    ):
        body = load(name)
        assert not is_error_reply(body)  # STATUS "I" (info) is the firmware's yes
        assert f"success {word}" in status_of(body)[1]


# --- against the simulator: soft-off and soft-on, read back ----------------------------------

_ranges = itertools.count(1)


@asynccontextmanager
async def avalon_farm(count: int = 1) -> AsyncIterator[AsicFarmSimulator]:
    sim = AsicFarmSimulator(
        count, first_ip=f"127.82.{next(_ranges)}.1", personalities=["avalon"], web_port=None
    )
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def test_simulated_avalon_reads_like_the_real_one() -> None:
    async with avalon_farm() as sim:
        host, port = sim.targets[0]
        r = await AsicPoller(web_port=None).poll(host, port)
        assert isinstance(r, AsicReading), r
        assert (r.firmware_family, r.model, r.state) == ("avalon", "AvalonMiner 1246", "mining")
        # the A-series writes it bare; read back with colons
        assert r.mac == sim.miners[0].mac.lower()
        assert r.power_w is not None and r.power_w > 3000
        assert r.power_limit_w == 3200.0 and len(r.temps_c.board) == 3


async def test_avalon_soft_off_and_on_are_confirmed() -> None:
    async with avalon_farm() as sim:
        host, port = sim.targets[0]
        res = await control.sleep(host, port, "avalon", "quota 80 %", confirm_s=3.0)
        assert res.outcome == "done", res
        assert sim.miners[0].sleeping
        assert sim.miners[0].requests["ascset"] == 1
        r = await AsicPoller(web_port=None).poll(host, port)
        assert isinstance(r, AsicReading) and r.state == "sleeping" and r.hashrate_ths == 0.0

        res = await control.wake(host, port, "avalon", "quota back", confirm_s=3.0)
        assert res.outcome == "done", res
        assert not sim.miners[0].sleeping


async def test_avalon_has_no_watt_target() -> None:
    async with avalon_farm() as sim:
        host, port = sim.targets[0]
        res = await control.set_power_limit(host, port, "avalon", 2500, "quota")
        assert res.outcome == "unsupported" and "work-mode" in res.detail
        assert sim.miners[0].requests["ascset"] == 0  # nothing was sent
