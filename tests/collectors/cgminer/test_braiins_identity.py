"""Braiins OS identity (serial, MAC) from its REST API, fetched in the background as the stock
Antminer's web UI is: the real reply in tests/fixtures/asic, then the simulator on 127.84.N.1,
whose web port serves the REST API."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.firmware.bitmain.web import BitmainIdentity
from kuat.collectors.cgminer.firmware.braiins.rest import identity_from_miner_details
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading

FIX = Path(__file__).parents[2] / "fixtures" / "asic"
_ranges = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def braiins(count: int = 2, web: bool = True) -> AsyncIterator[tuple[AsicFarmSimulator, int]]:
    port = _free_port()
    sim = AsicFarmSimulator(
        count,
        first_ip=f"127.84.{next(_ranges)}.1",
        personalities=["braiins"],
        web_port=port if web else None,
    )
    await sim.start()
    try:
        yield sim, port
    finally:
        await sim.stop()


def _details() -> dict[str, Any]:
    return json.loads((FIX / "braiins-s19xp-miner_details.json").read_bytes())


# --- the parser, on the real reply ----------------------------------------------------------


def test_real_miner_details_give_mac_and_model_but_no_serial() -> None:
    ident = identity_from_miner_details(_details())
    assert isinstance(ident, BitmainIdentity)
    assert ident.serial is None  # null on this unit: known by its MAC
    assert ident.mac == "02:ee:da:a9:b6:4a"
    assert ident.model == "Antminer S19 XP"
    assert ident.firmware == "2025-08-06-0-3881c51d-25.07-plus"


@pytest.mark.parametrize("serial", ["", "  ", "0", "null", "N/A", None])
def test_placeholder_serial_is_no_serial(serial: str | None) -> None:
    ident = identity_from_miner_details(_details() | {"serial_number": serial})
    assert isinstance(ident, BitmainIdentity) and ident.serial is None


def test_a_serial_is_kept() -> None:
    ident = identity_from_miner_details(_details() | {"serial_number": "YNAHEAUBCJCBA03GL"})
    assert isinstance(ident, BitmainIdentity) and ident.serial == "YNAHEAUBCJCBA03GL"


@pytest.mark.parametrize(
    ("doc", "cause"),
    [
        ([1, 2], "JSON list"),
        ({"serial_number": None, "mac_address": "00:00:00:00:00:00"}, "neither a serial"),
        ({"hostname": "Antminer"}, "neither a serial"),
    ],
)
def test_unusable_details_give_one_line_causes(doc: Any, cause: str) -> None:
    got = identity_from_miner_details(doc)
    assert isinstance(got, str) and cause in got and "\n" not in got


# --- the poller, against the simulator ------------------------------------------------------


async def test_identity_is_fetched_in_background_and_merged() -> None:
    async with braiins(2) as (sim, web_port):
        poller = AsicPoller(timeout_s=2.0, web_port=None, braiins_web_port=web_port)
        try:
            for m in sim.miners:
                first = await poller.poll(m.ip, m.port)
                # the fetch is only queued by the poll: provisional (ip:port) until it lands
                assert isinstance(first, AsicReading) and first.firmware_family == "braiins"
                assert first.mac is None and first.serial is None
                r = await poller.poll(m.ip, m.port, wait_identity=True)
                assert isinstance(r, AsicReading), r
                assert r.mac == m.mac.lower()  # the register's spelling, as the API has it
                # the sim, as real Braiins on an Antminer, has serial_number null on some boxes
                assert r.serial == (m.serial if m.bos_rest_serial else None)
                assert poller.identity_error(m.ip, m.port) is None
                assert poller.identity_of(m.ip, m.port) is not None
            assert {m.bos_rest_serial for m in sim.miners} == {True, False}
        finally:
            await poller.aclose()


async def test_rest_identity_is_read_once_per_interval_not_per_poll() -> None:
    async with braiins(1) as (sim, web_port):
        m = sim.miners[0]
        poller = AsicPoller(timeout_s=2.0, web_port=None, braiins_web_port=web_port)
        try:
            await poller.poll(m.ip, m.port, wait_identity=True)
            after_first = m.web_requests[200]
            assert after_first == 2  # login + miner/details
            for _ in range(5):
                r = await poller.poll(m.ip, m.port)
                assert isinstance(r, AsicReading) and r.mac == m.mac.lower()
            assert m.web_requests[200] == after_first
        finally:
            await poller.aclose()


async def test_wrong_password_keeps_reading_provisional_and_remembers_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with braiins(1) as (sim, web_port):
        m = sim.miners[0]
        m.web_password = "s3cret-pw"
        poller = AsicPoller(
            timeout_s=2.0, web_port=None, braiins_web_port=web_port, braiins_password="guess"
        )
        try:
            r = await poller.poll(m.ip, m.port, wait_identity=True)
            assert isinstance(r, AsicReading) and r.hashrate_ths is not None
            assert r.mac is None and r.serial is None
            cause = poller.identity_error(m.ip, m.port)
            assert cause is not None and "refused user 'root'" in cause
            assert "guess" not in cause and "guess" not in caplog.text
            assert "Braiins OS REST API" in caplog.text
        finally:
            await poller.aclose()


async def test_no_rest_api_costs_the_poll_nothing() -> None:
    # Braiins OS before 25.07: nothing listens on the web port
    async with braiins(1, web=False) as (sim, _):
        m = sim.miners[0]
        poller = AsicPoller(timeout_s=2.0, web_port=None, braiins_web_port=_free_port())
        try:
            t0 = time.perf_counter()
            r = await poller.poll(m.ip, m.port)
            assert time.perf_counter() - t0 < 1.0
            assert isinstance(r, AsicReading) and r.firmware_family == "braiins"
            r = await poller.poll(m.ip, m.port, wait_identity=True)
            assert isinstance(r, AsicReading) and r.mac is None
            cause = poller.identity_error(m.ip, m.port)
            assert cause is not None and "connection refused" in cause and "25.07" in cause
        finally:
            await poller.aclose()


async def test_hung_rest_api_never_delays_the_poll() -> None:
    async with braiins(1) as (sim, web_port):
        m = sim.miners[0]
        m.web_hang = True
        poller = AsicPoller(
            timeout_s=1.0, web_port=None, braiins_web_port=web_port, web_timeout_s=30.0
        )
        try:
            t0 = time.perf_counter()
            r = await poller.poll(m.ip, m.port)
            assert time.perf_counter() - t0 < 0.9
            assert isinstance(r, AsicReading)
            # a probe may wait for the identity, but only within its own deadline
            t0 = time.perf_counter()
            r = await poller.poll(m.ip, m.port, wait_identity=True)
            assert time.perf_counter() - t0 < 1.5
            assert isinstance(r, AsicReading) and r.mac is None
        finally:
            await poller.aclose()


async def test_rest_identity_can_be_turned_off() -> None:
    async with braiins(1) as (sim, _):
        m = sim.miners[0]
        poller = AsicPoller(web_port=None, braiins_web_port=None)
        r = await poller.poll(m.ip, m.port, wait_identity=True)
        assert isinstance(r, AsicReading) and r.mac is None
        assert poller.identity_error(m.ip, m.port) is None
        assert not poller.fetches_identity("braiins")
        assert m.web_requests.total() == 0


async def test_agent_keeps_a_braiins_miner_out_of_the_register_until_identified(
    tmp_path: Path,
) -> None:
    from kuat.agent.config import parse_config
    from kuat.agent.runtime import Agent

    async with braiins(2) as (sim, web_port):
        cfg = parse_config(
            f"""
[site]
id = "ekibastuz-1"
name = "Hall A"
[agent]
state_dir = "{tmp_path}"
[compliance]
accredited_pools = ["btc.f2pool.com"]
[asic]
web_port = 0
braiins_web_port = {web_port}
"""
        )
        agent = Agent(cfg)
        good, locked = sim.miners
        locked.web_password = "s3cret-pw"  # the agent has the default: empty
        try:
            r = await agent._asic.poll(good.ip, good.port)
            agent.state.asics[(good.ip, good.port)] = r
            # fetch under way: as ip:port it would enter the register, then reappear by MAC
            assert agent._identified_miners() == []
            for m in (good, locked):
                r = await agent._asic.poll(m.ip, m.port, wait_identity=True)
                agent.state.asics[(m.ip, m.port)] = r
            got = {(r.ip, r.mac) for r in agent._identified_miners()}
            # the locked box is published as ip:port, its cause remembered, not held back forever
            assert got == {(good.ip, good.mac.lower()), (locked.ip, None)}
        finally:
            await agent._asic.aclose()
            agent.ledger.close()


async def test_a_farm_without_the_api_logs_a_few_warnings_not_one_per_miner(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from kuat.collectors.cgminer import collector as C

    async def no_api(client: object, host: str) -> str:
        return "no REST API /api/v1/auth/login on port 80 (Braiins OS before 25.07?)"

    fetcher = C._IdentityFetcher(no_api, source="the REST API", interval_s=3600)
    caplog.set_level(logging.DEBUG, logger="kuat.collectors.cgminer.collector")
    for i in range(1, 61):
        key = (f"127.84.250.{i}", 4028)
        fetcher.observe(key, model=None, uptime_s=None)
        await fetcher.wait(key, asyncio.get_running_loop().time() + 2)
    await fetcher.aclose()
    warnings = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == C.IDENTITY_WARNINGS + 1  # 20 miners, then one line saying so
    assert "further failures are logged at debug level" in warnings[-1].getMessage()
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and "no identity" in r.msg]
    assert len(debug) == 60 - C.IDENTITY_WARNINGS


async def test_a_queued_identity_read_holds_no_event_until_someone_waits_for_it() -> None:
    from kuat.collectors.cgminer import collector as C

    release = asyncio.Event()

    async def held(client: object, host: str) -> dict[str, object]:
        await release.wait()
        return {}

    fetcher = C._IdentityFetcher(held, source="the REST API", interval_s=3600)
    polled, probed = ("127.84.251.1", 4028), ("127.84.251.2", 4028)
    try:
        fetcher.observe(polled, model=None, uptime_s=None)
        fetcher.observe(probed, model=None, uptime_s=None)
        # the agent's polls queue reads and never wait: no Event (~0.4 KB) per queued miner
        unwaited = fetcher._state[polled].done
        # a probe waiting for its miner's read is woken when it ends, not at its deadline
        probe = asyncio.create_task(fetcher.wait(probed, asyncio.get_running_loop().time() + 60))
        for _ in range(20):
            await asyncio.sleep(0)
        waiting = not probe.done()
        release.set()
        for _ in range(50):
            if probe.done():
                break
            await asyncio.sleep(0)
        woken = probe.done()
    finally:
        release.set()
        await fetcher.aclose()
    assert unwaited is None
    assert waiting and woken
