"""The poller against the simulator over real sockets on 127.77.x.y."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest

from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.client import CgminerClient, Deadlines, exchange
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.readings import AsicReading, DeviceError, to_jsonable
from tests.collectors.cgminer.conftest import FarmFactory

PROBE_FIELDS = [
    "ip", "port", "taken_at", "vendor", "firmware_family", "model", "serial", "mac", "firmware",
    "hashrate_ths", "hashrate_nominal_ths", "power_w", "power_limit_w", "temps_c", "fans_rpm",
    "coolant_in_c", "coolant_out_c", "pools", "uptime_s", "state", "errors", "faults",
]  # fmt: skip


async def test_faulty_miners_cost_no_more_than_their_deadline(farm: FarmFactory) -> None:
    kinds = ["hang", "trickle", "flood", "garbage", "antminer", "whatsminer", "luxos", "braiins"]
    async with farm(len(kinds), kinds) as sim:
        poller = AsicPoller(timeout_s=1.0)
        start = time.monotonic()
        results = await poller.poll_many(sim.targets)
        took = time.monotonic() - start
    assert took < 1.6, f"cycle took {took:.2f} s with a 1.0 s deadline"
    by_kind = dict(zip(kinds, results, strict=True))
    causes = {k: r.cause for k, r in by_kind.items() if isinstance(r, DeviceError)}
    assert set(causes) == {"hang", "trickle", "flood", "garbage"}
    assert "waiting for the first byte" in causes["hang"]
    assert "reply incomplete" in causes["trickle"] and "too slowly" in causes["trickle"]
    assert "exceeds 65536 bytes" in causes["flood"]
    assert causes["garbage"].startswith("reply is not JSON at byte 0")
    for r in results:
        assert r.port == 4028
        if isinstance(r, DeviceError):
            assert "\n" not in r.describe()
    for k in ("antminer", "whatsminer", "luxos", "braiins"):
        r = by_kind[k]
        assert isinstance(r, AsicReading), k
        assert r.state == "mining" and r.hashrate_ths and r.hashrate_ths > 50


async def test_detects_each_personality_and_fills_fields(farm: FarmFactory) -> None:
    kinds = ["antminer", "whatsminer", "luxos", "braiins"]
    async with farm(4, kinds) as sim:
        poller = AsicPoller(timeout_s=2.0)
        first = await poller.poll_many(sim.targets)
        second = await poller.poll_many(sim.targets)  # cached family, firmware's own command set
        miners = sim.miners
    expect = {
        "antminer": ("bitmain", "Bitmain"),
        "whatsminer": ("whatsminer", "MicroBT"),
        "luxos": ("luxos", "Bitmain"),
        "braiins": ("braiins", "Bitmain"),
    }
    for results in (first, second):
        for m, r in zip(miners, results, strict=True):
            assert isinstance(r, AsicReading), r
            fam, vendor = expect[m.personality]
            assert (r.firmware_family, r.vendor) == (fam, vendor)
            assert r.model == m.model  # what the farm's inventory will show
            assert r.errors == (), r.errors
            assert r.pools[0].active and r.pools[0].user and r.pools[0].user.startswith("kzfarm.")
            assert r.temps_c.chip and r.fans_rpm and r.uptime_s
            assert r.hashrate_nominal_ths == pytest.approx(m.nominal_ths)
            probe = to_jsonable(r)
            assert list(probe) == PROBE_FIELDS
            assert list(probe["temps_c"]) == ["board", "chip", "inlet"]
            json.dumps(probe, allow_nan=False)
    by = {m.personality: r for m, r in zip(miners, second, strict=True)}
    wm, lux, bos = by["whatsminer"], by["luxos"], by["braiins"]
    assert isinstance(wm, AsicReading) and isinstance(lux, AsicReading)
    assert isinstance(bos, AsicReading)
    assert wm.serial == miners[1].serial and wm.mac == miners[1].mac.lower() and wm.power_w
    assert lux.serial == miners[2].serial and lux.mac == miners[2].mac.lower() and lux.power_w
    assert bos.power_w and bos.power_limit_w == miners[3].power_limit_w
    assert by["antminer"].power_w is None  # the stock API does not report watts
    assert [poller.family_of(*t) for t in sim.targets] == [
        "bitmain",
        "whatsminer",
        "luxos",
        "braiins",
    ]


async def test_numbers_vary_per_poll(farm: FarmFactory) -> None:
    async with farm(1, ["antminer"]) as sim:
        poller = AsicPoller()
        rates = {
            getattr(await poller.poll(*sim.targets[0]), "hashrate_ths", None) for _ in range(4)
        }
    assert len(rates) > 1 and None not in rates


async def test_repeated_pools_are_the_last_polls_objects(farm: FarmFactory) -> None:
    # a reading whose pools equal the last poll's carries the last poll's objects (no new
    # PoolInfo per miner per cycle for the collector to walk); a change gives the new ones
    async with farm(1, ["luxos"]) as sim:
        poller = AsicPoller()
        m = sim.miners[0]
        r1, r2 = [await poller.poll(*sim.targets[0]) for _ in range(2)]
        assert isinstance(r1, AsicReading) and isinstance(r2, AsicReading)
        assert r1.pools and r2.pools is r1.pools
        m.pool_active = 1
        r3 = await poller.poll(*sim.targets[0])
        assert isinstance(r3, AsicReading)
        assert r3.pools != r1.pools and r3.pools[1].active
        r4 = await poller.poll(*sim.targets[0])
        assert isinstance(r4, AsicReading) and r4.pools is r3.pools


async def test_a_repeated_serial_and_mac_are_the_last_polls_strings(farm: FarmFactory) -> None:
    # Whatsminer and LuxOS report serial and MAC in every reply: parsed anew each poll, they
    # would be new strings per miner per cycle (and the curtailer's and the inventory's keys,
    # made from earlier readings, copies of their own)
    async with farm(2, ["whatsminer", "luxos"]) as sim:
        poller = AsicPoller()
        for t in sim.targets:
            r1, r2, r3 = [await poller.poll(*t) for _ in range(3)]
            assert isinstance(r1, AsicReading) and isinstance(r2, AsicReading)
            assert isinstance(r3, AsicReading)
            assert r1.serial and r1.mac
            assert r2.serial is r1.serial and r3.serial is r1.serial
            assert r2.mac is r1.mac and r3.mac is r1.mac


async def test_equal_temperatures_are_one_float_object(farm: FarmFactory) -> None:
    # A float is 24 bytes and a reading carries 3-9 temperatures, whole or tenth degrees in a
    # narrow range: every miner's readings share one object per value (issue 15)
    kinds = ["luxos", "whatsminer", "braiins"] * 3
    async with farm(len(kinds), kinds) as sim:
        poller = AsicPoller()
        readings = [await poller.poll(*t) for t in sim.targets for _ in range(2)]
    temps = [
        v
        for r in readings
        if isinstance(r, AsicReading)
        for v in (*r.temps_c.board, *r.temps_c.chip, *r.temps_c.inlet)
    ]
    assert len(temps) > len(set(temps))  # values repeat, as on a farm
    first: dict[float, float] = {}
    assert all(first.setdefault(v, v) is v for v in temps)


async def test_an_identity_reply_alike_on_many_miners_is_kept_once(farm: FarmFactory) -> None:
    # LuxOS's profiles reply is the same on every box of a model: one bytes object kept for
    # all of them; a reply unique per box (Whatsminer's, with its MAC) is each box's own
    async with farm(4, ["luxos", "luxos", "whatsminer", "whatsminer"]) as sim:
        poller = AsicPoller()
        for t in sim.targets:
            assert isinstance(await poller.poll(*t), AsicReading)
        kept = [poller._memo[t].sticky for t in sim.targets]
    assert [[c for c, _ in k] for k in kept] == [["profiles"]] * 2 + [["get_miner_info"]] * 2
    assert kept[0][0][1] is kept[1][0][1]
    assert kept[2][0][1] != kept[3][0][1]


async def test_multi_command_fallback_is_remembered(farm: FarmFactory) -> None:
    async with farm(1, ["reject_multi"]) as sim:
        host, port = sim.targets[0]
        poller = AsicPoller(timeout_s=2.0)
        assert not poller.client.rejects_multi(host, port)
        r1 = await poller.poll(host, port)
        assert poller.client.rejects_multi(host, port)
        r2 = await poller.poll(host, port)
    for r in (r1, r2):
        assert isinstance(r, AsicReading), r
        assert r.firmware_family == "bitmain" and r.model == "Antminer S19 Pro"
        assert r.hashrate_ths and r.pools and r.temps_c.board
        assert r.errors == ()


async def test_reply_cap_is_configurable(farm: FarmFactory) -> None:
    async with farm(1, ["antminer"]) as sim:
        r = await AsicPoller(max_reply_bytes=1024).poll(*sim.targets[0])
    assert isinstance(r, DeviceError)
    assert "exceeds 1024 bytes" in r.cause


async def test_unreachable_and_refused() -> None:
    poller = AsicPoller(timeout_s=0.5)
    r = await poller.poll("127.77.254.254", 4028)  # nothing listens there
    assert isinstance(r, DeviceError)
    assert r.cause.startswith("connection refused on port 4028")
    assert r.describe() == f"asic 127.77.254.254:4028: {r.cause}"


async def test_a_connect_the_kernel_refuses_at_once_names_its_cause() -> None:
    # a TCP connect to a multicast address fails inside connect() itself (no handshake to wait
    # for): the cause is what a plain connect says, as when loop.sock_connect made it
    import socket

    with socket.socket() as s:
        try:
            s.connect(("224.0.0.1", 4028))
        except OSError as e:
            said = e.strerror
        else:
            pytest.skip("this kernel connects TCP to a multicast address")
    r = await AsicPoller(timeout_s=0.5).poll("224.0.0.1", 4029)  # no fallback to API v3
    assert isinstance(r, DeviceError)
    assert r.cause == f"cannot connect: {said}"


async def test_connect_deadline() -> None:
    # a listener whose backlog is full never completes new handshakes: a connect timeout
    import socket

    srv = socket.socket()
    srv.bind(("127.77.253.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(("127.77.253.1", port))
            fillers.append(s)
        loop = asyncio.get_running_loop()
        start = loop.time()
        d = Deadlines(connect_s=0.3, first_byte_s=1.0, total_s=1.0)
        with pytest.raises(Exception) as e:
            await exchange("127.77.253.1", port, b"{}", deadlines=d, deadline_at=start + 1.0)
        assert loop.time() - start < 0.8
        assert "connecting" in str(e.value) or "first byte" in str(e.value)
    finally:
        for s in fillers:
            s.close()
        srv.close()


async def test_poll_many_keeps_order_and_bounds_concurrency(farm: FarmFactory) -> None:
    async with farm(30) as sim:
        poller = AsicPoller(concurrency=4)
        results = await poller.poll_many(sim.targets)
    assert [(r.ip, r.port) for r in results] == sim.targets
    assert all(isinstance(r, AsicReading) for r in results)


async def test_default_mix_and_total_power(farm: FarmFactory) -> None:
    async with farm(20) as sim:
        kinds = {m.personality for m in sim.miners}
        assert kinds == {"antminer", "whatsminer", "luxos", "braiins"}
        assert len({ip for ip, _ in sim.targets}) == 20
        awake = sim.total_power_w()
        assert 20 * 2500 < awake < 20 * 3600
        sim.miners[0].sleeping = True
        assert sim.total_power_w() < awake - 2000


@pytest.mark.parametrize("personality", ["luxos", "whatsminer", "braiins"])
async def test_sleep_and_wake_confirmed(farm: FarmFactory, personality: str) -> None:
    async with farm(1, [personality]) as sim:
        host, port = sim.targets[0]
        m = sim.miners[0]
        family = {"luxos": "luxos", "whatsminer": "whatsminer", "braiins": "braiins"}[personality]
        res = await control.sleep(host, port, family, "quota 12 MW exceeded", confirm_s=2)
        assert res.outcome == "done", res
        assert m.sleeping
        r = await AsicPoller().poll(host, port)
        assert isinstance(r, AsicReading) and r.state == "sleeping"
        assert sim.total_power_w() < 20
        res = await control.wake(host, port, family, "quota restored", confirm_s=2)
        assert res.outcome == "done", res
        assert not m.sleeping


async def test_sleep_unsupported_on_stock(farm: FarmFactory) -> None:
    async with farm(1, ["antminer"]) as sim:
        res = await control.sleep(*sim.targets[0], "bitmain", "test")
    assert res.outcome == "unsupported"


async def test_client_command_reports_miner_errors(farm: FarmFactory) -> None:
    async with farm(1, ["antminer"]) as sim:
        body = await CgminerClient().command(*sim.targets[0], "nosuchcommand")
    assert body["STATUS"][0]["STATUS"] == "E"


async def test_sim_cli_runs_in_its_own_process() -> None:
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kuat.collectors.cgminer.sim",
        "--count",
        "3",
        "--first-ip",
        "127.77.252.1",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        assert line.startswith(b"ready 3 miners")
        results = await AsicPoller().poll_many([(f"127.77.252.{i}", 4028) for i in (1, 2, 3)])
        assert all(isinstance(r, AsicReading) for r in results)
    finally:
        proc.terminate()
        await proc.wait()


async def test_reflashed_miner_is_redetected(farm: FarmFactory) -> None:
    async with farm(1, ["antminer"]) as sim:
        host, port = sim.targets[0]
        poller = AsicPoller()
        r1 = await poller.poll(host, port)
        m = sim.miners[0]
        m.personality, m.model = "luxos", "Antminer S19k Pro"  # same box, LuxOS flashed
        r2 = await poller.poll(host, port)
        r3 = await poller.poll(host, port)
    assert isinstance(r1, AsicReading) and r1.firmware_family == "bitmain" and r1.serial is None
    for r in (r2, r3):
        assert isinstance(r, AsicReading) and r.firmware_family == "luxos"
        assert r.serial == m.serial and r.power_w and r.errors == ()
    assert poller.family_of(host, port) == "luxos"


async def test_reflash_to_a_derivative_is_seen_on_the_next_poll(farm: FarmFactory) -> None:
    # a known miner's firmware is not detected afresh while its version reply is the same; Vnish
    # answers every stock command and names itself only in its version's Type
    async with farm(1, ["antminer"]) as sim:
        host, port = sim.targets[0]
        poller = AsicPoller()
        before = [await poller.poll(host, port) for _ in range(3)]
        sim.miners[0].personality = "vnish"
        after = await poller.poll(host, port)
    assert [r.firmware_family for r in before] == ["bitmain"] * 3  # type: ignore[union-attr]
    assert isinstance(after, AsicReading) and after.firmware_family == "vnish"
    assert poller.family_of(host, port) == "vnish"


async def test_event_loop_stall_is_not_blamed_on_the_miner(
    farm: FarmFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kuat.collectors.cgminer import client

    begin = client._begin
    stalled: list[bool] = []

    def connect_then_stall(*args: object) -> None:
        if not stalled:
            # a neighbour blocks the loop past every deadline while connects are in flight
            stalled.append(True)
            asyncio.get_running_loop().call_soon(time.sleep, 0.8)
        begin(*args)  # type: ignore[arg-type]

    async with farm(8, ["antminer", "whatsminer", "luxos", "braiins"]) as sim:
        poller = AsicPoller(timeout_s=0.5)
        await poller.poll_many(sim.targets)  # detection done; next cycle is the steady one
        monkeypatch.setattr(client, "_begin", connect_then_stall)
        results = await poller.poll_many(sim.targets)
    assert stalled
    assert all(isinstance(r, AsicReading) for r in results), results


async def test_identity_reply_is_reused_until_the_box_changes(farm: FarmFactory) -> None:
    async with farm(1, ["whatsminer"]) as sim:
        host, port = sim.targets[0]
        m = sim.miners[0]
        poller = AsicPoller()
        first = [await poller.poll(host, port) for _ in range(4)]
        assert m.requests["get_miner_info"] == 1  # one extra connection, not one per poll
        assert m.requests["summary"] == 4
        assert {getattr(r, "serial", None) for r in first} == {m.serial}

        # another Whatsminer now answers on this IP (DHCP shuffle): new MAC in summary
        m.serial, m.mac = "HTM3NEWBOX0000001", "02:00:00:00:00:01"
        moved = await poller.poll(host, port)
        assert isinstance(moved, AsicReading)
        assert (moved.serial, moved.mac) == ("HTM3NEWBOX0000001", "02:00:00:00:00:01")
        assert m.requests["get_miner_info"] == 2

        # same box rebooted (uptime went backwards): identity is re-read too
        m.started = time.monotonic() + 40_000
        rebooted = await poller.poll(host, port)
        assert isinstance(rebooted, AsicReading) and rebooted.serial == m.serial
        assert m.requests["get_miner_info"] == 3


async def test_a_finished_exchange_is_freed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every poll's connection, protocol and reply buffer must go when the poll ends, by
    # reference counting: a reference cycle per exchange kept them (sockets, ~5 KB buffers)
    # until a rare full garbage collection, and the client's memory grew cycle after cycle.
    import gc
    import weakref

    from kuat.collectors.cgminer import client

    made: list[weakref.ref[client._Exchange]] = []

    class Watched(client._Exchange):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)  # type: ignore[arg-type]
            made.append(weakref.ref(self))

    monkeypatch.setattr(client, "_Exchange", Watched)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b'{"STATUS":[{"STATUS":"S"}],"id":1}\x00')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.77.250.1", 0)
    port = server.sockets[0].getsockname()[1]
    gc.disable()
    try:
        loop = asyncio.get_running_loop()
        d = Deadlines.from_timeout(2.0)
        raw = await exchange("127.77.250.1", port, b"{}", deadlines=d, deadline_at=loop.time() + 2)
        assert raw.startswith(b'{"STATUS"')
        for _ in range(5):  # the transport's close callbacks
            await asyncio.sleep(0)
        assert len(made) == 1
        assert made[0]() is None, gc.get_referrers(made[0]())
    finally:
        gc.enable()
        server.close()
        await server.wait_closed()
