"""Canaan Avalon: real replies (an Avalon Q soft-off, a mining AvalonMiner 1246) read as a person
reads them, and soft-off/soft-on against the simulator."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.client import decode_reply
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.parsers import detect_family, parse_replies
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading, AsicTemps, PoolInfo

FIX = Path(__file__).parents[2] / "fixtures" / "asic"
T = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)


def load(name: str) -> dict:
    return decode_reply((FIX / name).read_bytes())


def reading(bodies: dict) -> AsicReading:
    r = parse_replies("10.1.2.3", 4028, T, bodies)
    assert r is not None
    return r


def avalon_q() -> dict:
    return {
        "version": load("avalon-q-version.json"),
        "summary": load("avalon-q-summary.json"),
        "stats": load("avalon-q-stats-softoff.json"),
        "pools": load("avalon-q-pools.json"),
    }


def test_avalon_q_soft_off_reads_as_sleeping() -> None:
    bodies = avalon_q()
    assert detect_family(bodies) == "avalon"
    r = reading(bodies)
    assert (r.vendor, r.model, r.firmware_family) == ("Canaan", "Avalon Q", "avalon")
    assert r.mac == "AA:BB:CC:DD:EE:FF"
    assert r.firmware == "Q-25052801_14a19a2"
    # SoftOFF[4], SYSTEMSTATU[Work: In Idle]: asleep on purpose, not broken
    assert r.state == "sleeping" and r.errors == ()
    assert r.hashrate_ths == 0.0  # MHS 5s 0.0
    assert r.hashrate_nominal_ths == 90.0  # model table: Avalon Q 90 TH/s
    assert r.power_w == 0.0  # PS[0 1222 4 0 0 …]: 0 W out of the PSU
    assert r.power_limit_w == 800.0  # MPO[800]
    # ITemp[26] inlet, HBOTemp[27] board outlet; TMax[0] is "no chip reading", not 0 °C
    assert r.temps_c == AsicTemps(board=(27.0,), chip=(), inlet=(26.0,))
    assert r.fans_rpm == (0, 0, 0, 0)
    assert r.uptime_s == 37714
    assert r.pools == (PoolInfo("stratum+tcp://pool.example.com:4444", "worker1", "Alive", True),)


def test_avalon_1246_stats_alone() -> None:
    bodies = {"stats": load("avalon-1246-stats.json")}
    assert detect_family(bodies) == "avalon"  # "MM ID0" without a version reply
    r = reading(bodies)
    assert r.model == "AvalonMiner 1246"  # from Ver[1246-83-…]
    assert r.hashrate_ths == pytest.approx(81.07268, rel=1e-5)  # GHSspd[81072.68]
    assert r.power_w == 3189.0  # PS[0 1214 1316 242 3189 1320 3504]
    assert r.power_limit_w == 3200.0
    assert r.temps_c == AsicTemps(board=(66.0, 65.0, 64.0), chip=(77.0, 77.0, 76.0), inlet=(30.0,))
    assert r.fans_rpm == (5344, 5392, 5349, 5309)
    assert r.uptime_s == 24684
    assert r.state == "mining"


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
        assert r.mac == sim.miners[0].mac  # the A-series writes it bare; read back with colons
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
