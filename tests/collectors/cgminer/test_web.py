"""Stock Antminer identity from the web UI: the parser on a real-shaped body, the digest fetch
against the simulator's web server, and the poller's background fetch, over real sockets on
127.78.N.0/24 (apart from test_poller's 127.77 ranges)."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.firmware.bitmain.web import (
    BitmainIdentity,
    fetch_bitmain_identity,
    parse_system_info,
)
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading

FIX = Path(__file__).parents[2] / "fixtures" / "asic"
WEB_PORT = 18080
_ranges = itertools.count(1)

WebFarm = Callable[..., AbstractAsyncContextManager[AsicFarmSimulator]]

# as an S19 Pro on 2022 stock firmware sends it (lighttpd, get_system_info.cgi)
S19_BODY = b"""{
"minertype":"Antminer S19 Pro",
"nettype":"DHCP",
"netdevice":"eth0",
"macaddr":"3c:a3:08:1a:2b:3c",
"hostname":"Antminer",
"ipaddress":"10.20.0.17",
"netmask":"255.255.255.0",
"gateway":"10.20.0.1",
"dnsservers":"10.20.0.1",
"system_mode":"GNU/Linux",
"system_kernel_version":"Linux 4.9.38 #1 SMP PREEMPT Tue Dec 6 16:03:04 CST 2022",
"system_filesystem_version":"Tue Dec  6 16:12:30 CST 2022",
"firmware_type":"Release",
"serinum":"JYZZD2KBCJJBG04L9"
}"""


@pytest.fixture
def web_farm() -> WebFarm:
    @asynccontextmanager
    async def make(
        count: int, personalities: Sequence[str] | None = None
    ) -> AsyncIterator[AsicFarmSimulator]:
        sim = AsicFarmSimulator(
            count,
            first_ip=f"127.78.{next(_ranges) % 250}.1",
            personalities=personalities or ["antminer"],
            web_port=WEB_PORT,
        )
        await sim.start()
        try:
            yield sim
        finally:
            await sim.stop()

    return make


async def until(cond: Callable[[], bool], within_s: float = 3.0) -> None:
    """Wait for a background effect, without a fixed sleep that is either flaky or slow."""
    end = time.monotonic() + within_s
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.01)


# --- the parser -------------------------------------------------------------------------------


def test_parses_a_real_shaped_body() -> None:
    ident = parse_system_info(S19_BODY)
    assert ident == BitmainIdentity(
        serial="JYZZD2KBCJJBG04L9",
        mac="3c:a3:08:1a:2b:3c",  # one spelling for every firmware: the register's
        model="Antminer S19 Pro",
        firmware="Tue Dec  6 16:12:30 CST 2022",
        hostname="Antminer",
        ip="10.20.0.17",
    )


def test_older_firmware_without_serial_is_known_by_mac() -> None:
    doc = json.loads(S19_BODY)
    del doc["serinum"]
    ident = parse_system_info(json.dumps(doc))
    assert isinstance(ident, BitmainIdentity)
    assert (ident.serial, ident.mac) == (None, "3c:a3:08:1a:2b:3c")


@pytest.mark.parametrize("serial", ["", "  ", "0", "unknown", None])
def test_placeholder_serial_is_no_serial(serial: str | None) -> None:
    doc = json.loads(S19_BODY)
    doc["serinum"] = serial
    ident = parse_system_info(json.dumps(doc))
    assert isinstance(ident, BitmainIdentity) and ident.serial is None


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (b"<html>404</html>", "web UI reply is not JSON at byte 0"),
        (b"[1, 2]", "web UI reply is a JSON list, not an object"),
        (
            b'{"minertype": "Antminer S9", "macaddr": "00:00:00:00:00:00", "serinum": ""}',
            "web UI reply has neither a serial (serinum) nor a MAC (macaddr)",
        ),
        (b'{"macaddr": "not-a-mac"}', "web UI reply has neither a serial"),
    ],
)
def test_unusable_bodies_give_one_line_causes(body: bytes, cause: str) -> None:
    got = parse_system_info(body)
    assert isinstance(got, str) and got.startswith(cause) and "\n" not in got


# --- the fetch against the simulator's web UI --------------------------------------------------


async def test_fetch_with_digest_auth(web_farm: WebFarm) -> None:
    async with web_farm(1) as sim, httpx.AsyncClient(trust_env=False) as client:
        m = sim.miners[0]
        ident = await fetch_bitmain_identity(
            client, m.ip, port=WEB_PORT, username="root", password="root", timeout_s=2.0
        )
    assert isinstance(ident, BitmainIdentity), ident
    assert (ident.serial, ident.mac, ident.model) == (m.serial, m.mac.lower(), m.model)
    assert m.web_requests == {401: 1, 200: 1}  # challenge, then the authenticated request


async def test_fetch_failures_are_one_line_causes(web_farm: WebFarm) -> None:
    async with web_farm(2) as sim, httpx.AsyncClient(trust_env=False) as client:
        good, hung = sim.miners
        hung.web_hang = True

        async def fetch(ip: str, port: int = WEB_PORT, **kw: object) -> BitmainIdentity | str:
            args: dict = {"username": "root", "password": "root", "timeout_s": 0.5, **kw}
            return await fetch_bitmain_identity(client, ip, port=port, **args)

        wrong = await fetch(good.ip, password="admin")
        refused = await fetch(good.ip, port=WEB_PORT + 1)
        capped = await fetch(good.ip, max_bytes=100)
        start = time.monotonic()
        hang = await fetch(hung.ip)
        hang_took = time.monotonic() - start
    assert wrong == f"web UI on port {WEB_PORT} refused user 'root' (wrong password?)"
    assert refused == f"web UI on port {WEB_PORT + 1}: connection refused"
    assert isinstance(capped, str) and "exceeds 100 bytes" in capped
    assert hang == f"web UI on port {WEB_PORT} timed out after 0.5 s"
    assert hang_took < 0.8


# --- the poller ------------------------------------------------------------------------------


async def test_identity_is_fetched_in_background_and_merged(web_farm: WebFarm) -> None:
    async with web_farm(2, ["antminer", "whatsminer"]) as sim:
        stock, wm = sim.miners
        poller = AsicPoller(timeout_s=2.0, web_port=WEB_PORT)
        first = await poller.poll(stock.ip, stock.port)
        # the poll did not wait for the web UI: no serial yet, the fetch runs behind it
        assert isinstance(first, AsicReading) and first.serial is None
        await until(lambda: poller.identity_of(stock.ip, stock.port) is not None)
        second = await poller.poll(stock.ip, stock.port)
        other = await poller.poll(wm.ip, wm.port)
        await poller.aclose()
    assert isinstance(second, AsicReading)
    assert (second.serial, second.mac) == (stock.serial, stock.mac.lower())
    assert second.device_id == stock.serial
    assert second.hashrate_ths and second.firmware_family == "bitmain"
    # firmwares that report their own identity never cost a web request
    assert isinstance(other, AsicReading) and other.serial == wm.serial
    assert poller.identity_of(wm.ip, wm.port) is None
    assert poller.identity_error(wm.ip, wm.port) is None


async def test_probe_can_wait_for_identity_within_its_deadline(web_farm: WebFarm) -> None:
    async with web_farm(1) as sim:
        m = sim.miners[0]
        r = await AsicPoller(timeout_s=2.0, web_port=WEB_PORT).poll(
            m.ip, m.port, wait_identity=True
        )
    assert isinstance(r, AsicReading) and r.device_id == m.serial


async def test_web_fetch_once_per_interval_not_per_poll(web_farm: WebFarm) -> None:
    async with web_farm(3) as sim:
        poller = AsicPoller(timeout_s=2.0, web_port=WEB_PORT, identity_interval_s=0.5)
        for _ in range(5):
            await poller.poll_many(sim.targets)
        await until(lambda: all(m.web_requests[200] == 1 for m in sim.miners))
        results = await poller.poll_many(sim.targets)
        assert [getattr(r, "serial", None) for r in results] == [m.serial for m in sim.miners]
        assert all(m.web_requests[200] == 1 for m in sim.miners)  # cached, not re-read
        assert all(m.requests["summary"] == 6 for m in sim.miners)

        await asyncio.sleep(0.6)  # the interval has passed: one more read each, no more
        for _ in range(3):
            await poller.poll_many(sim.targets)
        await until(lambda: all(m.web_requests[200] == 2 for m in sim.miners))
        await poller.aclose()
    assert all(m.web_requests[200] == 2 for m in sim.miners)


async def test_reboot_triggers_early_refetch(web_farm: WebFarm) -> None:
    async with web_farm(1) as sim:
        m = sim.miners[0]
        host, port = m.ip, m.port
        poller = AsicPoller(timeout_s=2.0, web_port=WEB_PORT)
        r1 = await poller.poll(host, port, wait_identity=True)
        assert isinstance(r1, AsicReading) and r1.serial == m.serial

        # a box swapped in on this IP, seen as a reboot (uptime went backwards): the old serial
        # must not be kept, and the new one is read without waiting out the hour
        m.serial, m.mac = "JYZZNEWBOX0000001", "02:00:00:00:00:01"
        m.started = time.monotonic() + 40_000
        r2 = await poller.poll(host, port)
        assert isinstance(r2, AsicReading) and r2.serial is None
        await until(lambda: m.web_requests[200] == 2)
        r3 = await poller.poll(host, port)
        await poller.aclose()
    assert isinstance(r3, AsicReading) and (r3.serial, r3.mac) == (m.serial, m.mac.lower())
    assert m.web_requests[200] == 2


async def test_wrong_password_gives_cause_and_poll_still_reads(
    web_farm: WebFarm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kuat.collectors.cgminer.collector")
    async with web_farm(1) as sim:
        m = sim.miners[0]
        m.web_password = "s3cret"  # the site changed it; our config did not
        poller = AsicPoller(timeout_s=2.0, web_port=WEB_PORT, identity_interval_s=0.2)
        r = await poller.poll(m.ip, m.port, wait_identity=True)
        await asyncio.sleep(0.25)
        await poller.poll(m.ip, m.port, wait_identity=True)  # the next interval's retry
        await poller.aclose()
    assert isinstance(r, AsicReading) and r.hashrate_ths and r.pools
    assert r.serial is None and r.device_id == f"{m.ip}:{m.port}"
    cause = poller.identity_error(m.ip, m.port)
    assert cause == f"web UI on port {WEB_PORT} refused user 'root' (wrong password?)"
    assert m.web_requests[200] == 0 and m.web_requests[401] >= 4  # two tries, two legs each
    logged = [rec for rec in caplog.records if cause in rec.getMessage()]
    assert [rec.levelno for rec in logged] == [logging.WARNING, logging.DEBUG]  # warned once


async def test_hung_web_ui_never_delays_the_poll(web_farm: WebFarm) -> None:
    async with web_farm(4) as sim:
        for m in sim.miners:
            m.web_hang = True
        poller = AsicPoller(timeout_s=1.0, web_port=WEB_PORT, web_timeout_s=30.0)
        start = time.monotonic()
        results = await poller.poll_many(sim.targets)
        cycle = time.monotonic() - start
        # even a probe that asks to wait stops at its own poll deadline
        start = time.monotonic()
        probe = await poller.poll(*sim.targets[0], wait_identity=True)
        probe_took = time.monotonic() - start
        await poller.aclose()
    assert cycle < 0.5, f"cycle took {cycle:.2f} s behind a hung web UI"
    assert 0.5 < probe_took < 1.3, probe_took
    assert all(isinstance(r, AsicReading) and r.hashrate_ths for r in results)
    assert isinstance(probe, AsicReading) and probe.serial is None


async def test_web_identity_can_be_turned_off(web_farm: WebFarm) -> None:
    async with web_farm(1) as sim:
        m = sim.miners[0]
        poller = AsicPoller(web_port=None)
        r = await poller.poll(m.ip, m.port, wait_identity=True)
        await asyncio.sleep(0.05)
    assert isinstance(r, AsicReading) and r.serial is None
    assert not m.web_requests and poller.identity_of(m.ip, m.port) is None


def test_s21_era_system_info_is_known_by_serial_when_its_mac_is_no_mac() -> None:
    # a stock S21 (FR-1.12, Oct 2025) as asic-rs keeps it, its MAC anonymised to non-hex upstream
    body = (FIX / "bitmain-s21-get_system_info.json").read_bytes()
    ident = parse_system_info(body)
    assert isinstance(ident, BitmainIdentity), ident
    assert (ident.serial, ident.model) == ("THQING0BDJAB024NF", "Antminer S21")
    assert ident.firmware == "FR-1.12(251009-S21)"
    assert ident.mac is None  # "02:55:97:22:3M:72" is no MAC: never an identity
