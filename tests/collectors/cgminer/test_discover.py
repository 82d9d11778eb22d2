"""Discovery over real sockets: simulated miners on 127.44.N.x with empty addresses around them
(loopback refuses a connect to an address nobody listens on at once, so empty space is fast)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from kuat.agent.config import expand_hosts, parse_config
from kuat.collectors.cgminer import discover as discover_mod
from kuat.collectors.cgminer.discover import (
    compact_ranges,
    config_fragment,
    discover,
    iter_addresses,
    merge_spans,
    parse_entry,
)
from kuat.collectors.cgminer.sim import AsicFarmSimulator

# one /24 per farm, so no test meets a previous test's closing sockets
_blocks = itertools.count(1)
WEB_PORT = 18044  # the stock Antminers' web UI; port 80 would need root
PORTS = [4028, 4433, WEB_PORT]
SITE = '[site]\nid = "test-site"\n\n'


def _block() -> str:
    return f"127.44.{next(_blocks)}"


@pytest.mark.parametrize(
    "entry",
    [
        "127.44.0.7",
        "127.44.0.0/24",
        "127.44.0.0/30",
        "127.44.0.4/31",
        "127.44.0.9/32",
        "127.44.0.250-127.44.1.3",
        " 127.44.0.1 - 127.44.0.1 ",
        "::1",
        "fd00::/126",
        "fd00::/127",
    ],
)
def test_entries_expand_exactly_as_the_config_does(entry: str) -> None:
    assert list(iter_addresses([parse_entry(entry)])) == expand_hosts(entry)


@pytest.mark.parametrize(
    "entry", ["10.0.0.0/33", "10.0.0.9-10.0.0.1", "10.0.0.0/8", "10.0.0.1-::2", "miner7", ""]
)
def test_bad_entries_are_refused_naming_the_entry(entry: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_entry(entry)
    with pytest.raises(ValueError) as config_exc:
        expand_hosts(entry)
    assert str(exc.value) == str(config_exc.value)
    assert repr(entry.strip()) in str(exc.value)


def test_overlapping_entries_are_scanned_once() -> None:
    spans = merge_spans(["10.0.0.0/24", "10.0.0.7", "10.0.0.250-10.0.1.5", "10.0.2.1"])
    addresses = list(iter_addresses(spans))
    assert (
        len(addresses) == len(set(addresses)) == 254 + 7 + 1
    )  # the range adds .255 and 10.0.1.0-5
    assert addresses[0] == "10.0.0.1" and addresses[-1] == "10.0.2.1"


def test_compact_ranges_merge_consecutive_addresses_only() -> None:
    ips = ["10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.9", "10.0.0.255", "10.0.1.0", "10.0.0.2"]
    assert compact_ranges(ips) == ["10.0.0.1-10.0.0.3", "10.0.0.9", "10.0.0.255-10.0.1.0"]


async def test_finds_exactly_the_miners_with_their_serials() -> None:
    block = _block()
    # two farms with a gap between them, and a stretch of empty addresses after
    a = AsicFarmSimulator(
        3,
        first_ip=f"{block}.10",
        personalities=["antminer", "whatsminer", "luxos"],
        web_port=WEB_PORT,
        seed=7,
    )
    # (not braiins: its API has no serial to find)
    b = AsicFarmSimulator(2, first_ip=f"{block}.20", personalities=["luxos", "whatsminer"], seed=8)
    async with a, b:
        calls: list[tuple[int, int]] = []
        found = await discover(
            [f"{block}.1-{block}.40"],
            PORTS,
            timeout_s=1.0,
            concurrency=16,
            on_progress=lambda done, total: calls.append((done, total)),
            web_port=WEB_PORT,
        )
    miners = {m.ip: m for m in (*a.miners, *b.miners)}
    api = [f for f in found if f.port == 4028]
    assert [f.ip for f in api] == sorted(miners, key=lambda ip: int(ip.rsplit(".", 1)[1]))
    for f in api:
        m = miners[f.ip]
        assert f.identified and f.serial == m.serial, f  # the stock Antminer's via its web UI
        assert f.mac is not None and f.mac.upper() == m.mac.upper()
        assert f.model == m.model and f.hashrate_ths is not None and f.hashrate_ths > 0
    assert {f.vendor for f in api} == {"Bitmain", "MicroBT"}
    # the web port is open on the stock Antminer only, and recorded as just that
    web = [f for f in found if f.port == WEB_PORT]
    assert [(f.ip, f.note) for f in web] == [(f"{block}.10", "web UI port open")]
    assert not web[0].identified and web[0].serial is None
    assert not [f for f in found if f.port == 4433]
    # progress counts addresses, from (0, 40) to (40, 40), never backwards
    assert calls[0] == (0, 40) and calls[-1] == (40, 40)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


async def test_open_port_without_a_usable_api_is_reported_not_identified() -> None:
    block = _block()
    farm = AsicFarmSimulator(
        3, first_ip=f"{block}.1", personalities=["garbage", "antminer", "braiins"]
    )
    async with farm:
        found = await discover([f"{block}.0/29"], [4028], timeout_s=1.0, concurrency=8)
    assert [f.ip for f in found] == [f"{block}.1", f"{block}.2", f"{block}.3"]
    garbage, stock, braiins = found
    assert not garbage.identified and "no usable cgminer API reply" in garbage.note
    # without the web port in the scan, a miner whose identity lives on its web API says why
    # it is known by its address alone, naming that API
    assert stock.identified and stock.serial is None and stock.mac is None
    assert stock.note.endswith("; no serial or MAC from the web UI (port 80 not scanned)")
    assert braiins.serial is None and braiins.mac is None
    assert "; no serial or MAC from the Braiins OS REST API (" in braiins.note, braiins.note


async def test_whatsminer_api_v3_port_is_recorded_open() -> None:
    block = _block()
    # anything listening on 4433 stands in for a Whatsminer's API v3: discovery only connects
    server = await asyncio.start_server(lambda r, w: w.close(), host=f"{block}.5", port=4433)
    async with server:
        found = await discover([f"{block}.1-{block}.8"], PORTS, timeout_s=1.0, concurrency=8)
    assert [(f.ip, f.port, f.identified) for f in found] == [(f"{block}.5", 4433, False)]
    assert "Whatsminer API v3" in found[0].note


async def test_a_24_with_five_miners_takes_seconds_not_minutes() -> None:
    block = _block()
    farm = AsicFarmSimulator(5, first_ip=f"{block}.100", web_port=WEB_PORT, seed=3)
    async with farm:
        started = time.monotonic()
        found = await discover([f"{block}.0/24"], PORTS, timeout_s=1.0, web_port=WEB_PORT)
        elapsed = time.monotonic() - started
    api = [f for f in found if f.identified]
    assert sorted(f.serial for f in api) == sorted(m.serial for m in farm.miners)
    assert elapsed < 5.0, elapsed


async def test_concurrency_bounds_connections_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    block = _block()
    # miners that accept and never answer: each poll holds its connection until its deadline,
    # so connections open at once on the server side is what the scan keeps in flight
    monkeypatch.setattr(discover_mod, "MIN_IDENTIFY_TIMEOUT_S", 0.3)
    in_flight = peak = 0

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            while await reader.read(4096):  # until the client gives up and closes
                pass
        finally:
            in_flight -= 1
            writer.close()

    servers = [
        await asyncio.start_server(hang, host=f"{block}.{i}", port=4028) for i in range(1, 13)
    ]
    try:
        found = await discover([f"{block}.1-{block}.12"], [4028], timeout_s=0.3, concurrency=4)
    finally:
        for s in servers:
            s.close()
        for s in servers:
            await s.wait_closed()
    assert len(found) == 12 and not any(f.identified for f in found)
    assert all("no usable cgminer API reply" in f.note for f in found)
    assert 2 <= peak <= 4, peak


async def test_written_fragment_parses_as_config() -> None:
    block = _block()
    a = AsicFarmSimulator(3, first_ip=f"{block}.1", personalities=["whatsminer", "luxos"])
    b = AsicFarmSimulator(1, first_ip=f"{block}.7", personalities=["braiins"])
    c = AsicFarmSimulator(2, first_ip=f"{block}.30", port=4029, personalities=["whatsminer"])
    async with a, b, c:
        found = await discover([f"{block}.0/26"], [4028, 4029], timeout_s=1.0)
    fragment = config_fragment(found, "kuat discover test\nsecond header line")
    assert f'hosts = ["{block}.1-{block}.3", "{block}.7"]' in fragment
    assert f'port = 4029\nhosts = ["{block}.30-{block}.31"]' in fragment
    for base in (SITE, SITE + "[asic]\ntimeout_s = 2.0\n\n"):
        cfg = parse_config(base + fragment)
        assert set(cfg.asic_targets()) == {(f.ip, f.port) for f in found}


def test_fragment_lists_hosts_without_api_in_a_comment_only() -> None:
    from kuat.collectors.cgminer.discover import Found

    miner = Found("10.0.0.1", 4028, "MicroBT", "Whatsminer M31S", "whatsminer", "S", None, 1.0, "")
    web = Found("10.0.0.2", 80, None, None, None, None, None, None, "web UI port open")
    fragment = config_fragment([miner, web])
    cfg = parse_config(SITE + fragment)
    assert cfg.asic_targets() == [("10.0.0.1", 4028)]
    assert "#   10.0.0.2" in fragment


def test_long_host_lists_are_one_entry_a_line() -> None:
    from kuat.collectors.cgminer.discover import Found

    found = [
        Found(f"10.0.0.{i}", 4028, None, None, "cgminer", None, None, None, "")
        for i in range(1, 40, 2)
    ]
    fragment = config_fragment(found)
    assert '    "10.0.0.1",\n    "10.0.0.3",' in fragment
    assert len(parse_config(SITE + fragment).asic_targets()) == 20
