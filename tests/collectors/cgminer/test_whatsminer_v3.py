"""Whatsminer API v3 (length-framed JSON, port 4433): client, parser, fallback from 4028.

Real sockets on 127.80.x.y: one /24 per test (itertools counter), so no two tests share an
address while a previous test's sockets are still closing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kuat.collectors.cgminer.client import ApiError, NoAnswer, Replies, frame
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.firmware.whatsminer import sim as R
from kuat.collectors.cgminer.firmware.whatsminer.v3 import V3Client
from kuat.collectors.cgminer.parsers import SPECS, build_reading
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading, DeviceError, FirmwareFault

FIXTURE = (
    Path(__file__).parents[2] / "cases/asic/whatsminer_v3/m60s-device-info/get.device.info.json"
)
# The documented get.miner.status summary example (MicroBT API v3 docs), pools as documented.
STATUS = {
    "code": 0,
    "when": 1692685476,
    "msg": {
        "summary": {
            "elapsed": 1074,
            "bootup-time": 1175,
            "factory-hash": 101.366,
            "hash-average": 101.847,
            "hash-1min": 102.072,
            "hash-realtime": 101.847,
            "power-5min": 3247.641,
            "power-realtime": 3268,
            "environment-temperature": 34.8,
            "board-temperature": [69.6, 70.1, 72.3],
            "chip-temp-min": 83.2,
            "chip-temp-avg": 92.9,
            "chip-temp-max": 100.3,
            "power-limit": 3500,
            "fan-speed-in": 4980,
            "fan-speed-out": 5070,
        },
        "pools": [
            {
                "id": 1,
                "url": "stratum+tcp://a.example:3333",
                "account": "acct.w1",
                "status": "alive",
            },
            {
                "id": 2,
                "url": "stratum+tcp://b.example:3333",
                "account": "acct.w2",
                "status": "alive",
                "stratum-active": True,
            },
        ],
    },
    "desc": "get.miner.status",
}

_nets = itertools.count(1)


def _net() -> str:
    return f"127.80.{next(_nets) % 250}"


def fixture() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(host: str, port: int, handler: Handler) -> AsyncIterator[list[int]]:
    """A TCP server running ``handler`` per connection; yields a one-item connection count."""
    count = [0]
    writers: list[asyncio.StreamWriter] = []

    async def run(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        count[0] += 1
        writers.append(w)
        try:
            await handler(r, w)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()

    srv = await asyncio.start_server(run, host, port, reuse_address=True)
    try:
        yield count
    finally:
        srv.close()
        for w in writers:
            w.close()
        await asyncio.wait_for(srv.wait_closed(), 1.0)


async def read_request(r: asyncio.StreamReader) -> dict[str, Any]:
    n = int.from_bytes(await r.readexactly(4), "little")
    return json.loads(await r.readexactly(n))


def replying(replies: dict[str, bytes]) -> Handler:
    """Answer each framed request with the framed body stored for its cmd."""

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        req = await read_request(r)
        w.write(frame(replies[req["cmd"]]))
        await w.drain()
        await r.read()  # the client closes once it has the frame

    return handle


# --- parser --------------------------------------------------------------------------------


def test_simulator_serves_the_real_fixture() -> None:
    assert fixture() == R.WM_V3_DEVICE_INFO


def test_reading_from_the_real_reply() -> None:
    replies = Replies(bodies={"get.device.info": fixture(), "get.miner.status": STATUS})
    r = build_reading("127.0.0.1", 4433, datetime.now(UTC), SPECS["whatsminer_v3"], replies)
    assert (r.vendor, r.firmware_family) == ("MicroBT", "whatsminer_v3")
    assert r.model == "Whatsminer M60S_VK40"
    assert r.serial == "BTM3CS40HD24083100000000000000000"
    assert r.mac == "ce:02:01:00:8c:36"
    assert r.firmware == "20251209.16.Rel2"
    assert r.hashrate_ths == 102.072 and r.hashrate_nominal_ths == 101.366
    assert r.power_w == 3268 and r.power_limit_w == 3500
    assert r.temps_c.board == (69.6, 70.1, 72.3) and r.temps_c.chip == (100.3,)
    assert r.temps_c.inlet == (34.8,)
    assert r.fans_rpm == (4980, 5070)
    assert r.uptime_s == 1074 and r.state == "mining" and r.errors == ()
    assert [(p.user, p.active) for p in r.pools] == [("acct.w1", False), ("acct.w2", True)]


def test_stopped_miner_and_error_codes() -> None:
    info = fixture()
    info["msg"]["miner"]["working"] = "false"
    info["msg"]["error-code"] = [{"531": "2025-03-12 14:52:35", "reason": "Slot1 not found."}]
    status = json.loads(json.dumps(STATUS))
    status["msg"]["summary"].update({"hash-1min": 0, "power-realtime": 18})
    replies = Replies(bodies={"get.device.info": info, "get.miner.status": status})
    r = build_reading("h", 4433, datetime.now(UTC), SPECS["whatsminer_v3"], replies)
    assert r.state == "sleeping"
    assert r.errors == ()  # the firmware's codes are faults, not kuat's notes
    assert r.faults == (FirmwareFault("531", "Slot1 not found.", "critical"),)


def test_error_codes_given_as_bare_codes_are_faults_too() -> None:
    # Some v3 builds list bare codes beside the {code: when, reason} rows (the shapes pyasic's
    # test_v3_error_mapping feeds its BTMinerV3, Apache-2.0); junk entries are skipped.
    info = fixture()
    info["msg"]["error-code"] = ["2010", 541, {"5032": "2025-03-12 14:52:35"}, "not-a-code", None]
    replies = Replies(bodies={"get.device.info": info, "get.miner.status": STATUS})
    r = build_reading("h", 4433, datetime.now(UTC), SPECS["whatsminer_v3"], replies)
    assert [(f.code, f.severity) for f in r.faults] == [
        ("2010", "warning"),
        ("541", "critical"),
        ("5032", "critical"),
    ]


# --- client on real sockets ---------------------------------------------------------------


async def test_poll_port_4433_reads_the_real_fixture_over_the_wire() -> None:
    host = f"{_net()}.1"
    fx = FIXTURE.read_bytes()
    st = json.dumps(STATUS).encode()
    async with server(host, 4433, replying({"get.device.info": fx, "get.miner.status": st})):
        r = await AsicPoller(timeout_s=2.0, web_port=None).poll(host, 4433)
    assert isinstance(r, AsicReading), r
    assert r.port == 4433 and r.firmware_family == "whatsminer_v3"
    assert r.serial == "BTM3CS40HD24083100000000000000000" and r.mac == "ce:02:01:00:8c:36"
    assert r.power_w == 3268 and r.hashrate_ths == 102.072 and len(r.pools) == 2


async def _hang(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await r.read()


async def _trickle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_request(r)
    for b in frame(b'{"code":0,"msg":{}}'):
        w.write(bytes([b]))
        await w.drain()
        await asyncio.sleep(0.3)


async def _oversize(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_request(r)
    w.write((1 << 30).to_bytes(4, "little") + b"{")
    await w.drain()
    await r.read()


async def _cut(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_request(r)
    w.write((100).to_bytes(4, "little") + b'{"code":0')


async def _heartbeats_then_reply(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_request(r)
    w.write(b"\x00\x00\x00\x00" * 3 + frame(b'{"code":0,"msg":{"x":1},"desc":"get.device.info"}'))
    await w.drain()
    await r.read()


@pytest.mark.parametrize(
    ("handler", "cause", "kind", "max_s"),
    [
        (_hang, "waiting for the first byte", NoAnswer, 1.3),
        (_trickle, "reply incomplete", ApiError, 1.3),
        (_oversize, "length prefix says 1073741824 bytes", ApiError, 0.5),
        (_cut, "closed the connection mid-reply (9 of 100 bytes)", ApiError, 0.5),
    ],
)
async def test_client_deadlines_and_caps(
    handler: Handler, cause: str, kind: type[ApiError], max_s: float
) -> None:
    host = f"{_net()}.1"
    async with server(host, 4433, handler):
        start = time.monotonic()
        with pytest.raises(ApiError) as err:
            await V3Client(timeout_s=1.0).command(host, 4433, "get.device.info")
        took = time.monotonic() - start
    assert cause in str(err.value) and "\n" not in str(err.value)
    assert type(err.value) is kind
    assert took < max_s, f"{took:.2f} s"
    if kind is not NoAnswer:
        assert not isinstance(err.value, NoAnswer)  # an answer, however bad: no fallback


async def test_heartbeat_frames_are_skipped() -> None:
    host = f"{_net()}.1"
    async with server(host, 4433, _heartbeats_then_reply):
        body = await V3Client(timeout_s=1.0).command(host, 4433, "get.device.info")
    assert body["msg"] == {"x": 1}


async def test_refused_joined_status_filter_is_split_and_remembered() -> None:
    host = f"{_net()}.1"
    seen: list[Any] = []
    st = STATUS["msg"]

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        req = await read_request(r)
        seen.append(req.get("param"))
        if req["cmd"] == "get.device.info":
            body: dict[str, Any] = fixture()
        elif req["param"] in ("summary", "pools"):
            body = {"code": 0, "msg": {req["param"]: st[req["param"]]}}  # type: ignore[index]
        else:
            body = {"code": -3, "msg": "invalid json item", "desc": "get.miner.status"}
        w.write(frame(json.dumps(body).encode()))
        await w.drain()
        await r.read()

    async with server(host, 4433, handle):
        client = V3Client(timeout_s=2.0)
        first = await client.query(host, 4433)
        assert client.splits_status(host, 4433)
        seen.clear()
        second = await client.query(host, 4433)
    for rep in (first, second):
        assert rep.errors == {}
        assert set(rep.bodies["get.miner.status"]["msg"]) == {"summary", "pools"}
    assert sorted(p for p in seen if p) == ["pools", "summary"]  # no joined attempt again


# --- fallback from 4028 ---------------------------------------------------------------------


async def test_fallback_from_4028_is_remembered_and_keeps_the_target_port() -> None:
    first_ip = f"{_net()}.1"
    async with AsicFarmSimulator(2, first_ip=first_ip, personalities=["whatsminer_v3"]) as sim:
        poller = AsicPoller(timeout_s=2.0, web_port=None)
        r1 = await poller.poll_many(sim.targets)
        r2 = await poller.poll_many(sim.targets)
        miners = sim.miners
    for results in (r1, r2):
        for m, r in zip(miners, results, strict=True):
            assert isinstance(r, AsicReading), r
            assert (r.ip, r.port, r.firmware_family) == (m.ip, 4028, "whatsminer_v3")
            assert r.serial == m.serial and r.mac == m.mac.lower() and r.model == m.model
            assert r.power_limit_w == 3600 and r.power_w and r.hashrate_ths and r.pools
            assert r.temps_c.board and r.fans_rpm and r.errors == ()
    assert len({r.serial for r in r1}) == 2  # values vary per miner
    assert poller.family_of(miners[0].ip) == "whatsminer_v3" and poller.uses_v3(miners[0].ip)


async def test_remembered_v3_goes_straight_to_4433() -> None:
    host = f"{_net()}.1"
    fx, st = FIXTURE.read_bytes(), json.dumps(STATUS).encode()
    poller = AsicPoller(timeout_s=2.0, web_port=None)
    async with server(host, 4433, replying({"get.device.info": fx, "get.miner.status": st})):
        assert isinstance(await poller.poll(host, 4028), AsicReading)
        # now 4028 listens, counting: a remembered miner must not be asked there
        async with server(host, 4028, _hang) as on_4028:
            r = await poller.poll(host, 4028)
        assert on_4028 == [0]
    assert isinstance(r, AsicReading) and r.firmware_family == "whatsminer_v3"


async def test_v3_gone_is_forgotten_and_4028_polled_in_the_same_poll() -> None:
    first_ip = f"{_net()}.1"
    poller = AsicPoller(timeout_s=2.0, web_port=None)
    async with AsicFarmSimulator(1, first_ip=first_ip, personalities=["whatsminer_v3"]) as sim:
        r1 = await poller.poll(*sim.targets[0])
    assert isinstance(r1, AsicReading) and r1.firmware_family == "whatsminer_v3"
    # the same address now answers v2 btminer on 4028 only (re-flashed / another box)
    async with AsicFarmSimulator(1, first_ip=first_ip, personalities=["whatsminer"]) as sim:
        r2 = await poller.poll(*sim.targets[0])
    assert isinstance(r2, AsicReading), r2
    assert r2.firmware_family == "whatsminer" and r2.serial == sim.miners[0].serial


async def test_known_other_firmware_never_tries_4433() -> None:
    first_ip = f"{_net()}.1"
    poller = AsicPoller(timeout_s=1.0, web_port=None)
    async with AsicFarmSimulator(1, first_ip=first_ip, personalities=["antminer"]) as sim:
        target = sim.targets[0]
        assert isinstance(await poller.poll(*target), AsicReading)
    async with server(first_ip, 4433, _hang) as on_4433:
        r = await poller.poll(*target)
    assert isinstance(r, DeviceError) and "refused" in r.cause
    assert on_4433 == [0]


async def test_nothing_anywhere_names_both_ports_within_the_deadline() -> None:
    host = f"{_net()}.9"
    start = time.monotonic()
    r = await AsicPoller(timeout_s=1.0, web_port=None).poll(host, 4028)
    assert time.monotonic() - start < 1.2
    assert isinstance(r, DeviceError)
    assert "port 4028" in r.cause and "API v3 on port 4433" in r.cause and "\n" not in r.cause


async def test_silent_4028_tries_4433_first_on_the_next_poll() -> None:
    first_ip = f"{_net()}.1"
    poller = AsicPoller(timeout_s=0.6, web_port=None)
    async with (
        AsicFarmSimulator(1, first_ip=first_ip, personalities=["hang"]) as hang,
        AsicFarmSimulator(1, first_ip=first_ip, personalities=["whatsminer_v3"]),
    ):
        target = hang.targets[0]
        r1 = await poller.poll(*target)  # 4028 used the whole deadline: no time for 4433
        r2 = await poller.poll(*target)
    assert isinstance(r1, DeviceError) and "first byte" in r1.cause
    assert isinstance(r2, AsicReading) and r2.firmware_family == "whatsminer_v3"
    assert r2.port == 4028


async def test_fallback_can_be_turned_off() -> None:
    first_ip = f"{_net()}.1"
    async with AsicFarmSimulator(1, first_ip=first_ip, personalities=["whatsminer_v3"]) as sim:
        r = await AsicPoller(timeout_s=1.0, web_port=None, v3_port=None).poll(*sim.targets[0])
    assert isinstance(r, DeviceError) and "4433" not in r.cause


async def test_v3_control_sends_only_signed_set_commands() -> None:
    """Sleep and a power limit go to 4433 as signed set.* commands, whatever port the reading
    names; the salt comes from get.device.info (more in test_whatsminer_control.py)."""
    from kuat.collectors.cgminer import control

    first_ip = f"{_net()}.1"
    async with AsicFarmSimulator(1, first_ip=first_ip, personalities=["whatsminer_v3"]) as sim:
        host, port = sim.targets[0]
        m = sim.miners[0]
        res = await control.sleep(host, port, "whatsminer_v3", "test")
        lim = await control.set_power_limit(host, port, "whatsminer_v3", 3000, "test")
        assert m.requests["set.miner.service:stop"] == 1
        assert m.requests["set.miner.power_limit:3000"] == 1
        assert m.requests["get.device.info:salt"] == 2
    assert res.outcome == "done" and lim.outcome == "done"
