"""Stock Antminer sleep/wake through the web UI, over real sockets on 127.79.1-99.N: the miner
conf is read and written back with digest auth, and the new state is confirmed on the API."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.client import decode_reply
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.control import MinerAccess
from kuat.collectors.cgminer.firmware.bitmain import sim as R
from kuat.collectors.cgminer.firmware.bitmain.web import conf_with_work_mode, work_mode
from kuat.collectors.cgminer.parsers import parse_replies
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading

WEB_PORT = 18091
WEB = MinerAccess(web_port=WEB_PORT)  # the stock web UI where the simulator serves it
_ranges = itertools.count(1)

WebFarm = Callable[..., AbstractAsyncContextManager[AsicFarmSimulator]]
CASES = Path(__file__).parents[2] / "cases" / "asic"


@pytest.fixture
def web_farm() -> WebFarm:
    @asynccontextmanager
    async def make(
        count: int = 1, personalities: Sequence[str] | None = None, web: bool = True
    ) -> AsyncIterator[AsicFarmSimulator]:
        sim = AsicFarmSimulator(
            count,
            first_ip=f"127.79.{next(_ranges) % 99 + 1}.1",
            personalities=personalities or ["antminer"],
            web_port=WEB_PORT if web else None,
        )
        await sim.start()
        try:
            yield sim
        finally:
            await sim.stop()

    return make


async def poll(host: str, port: int) -> AsicReading:
    r = await AsicPoller(web_port=None).poll(host, port)
    assert isinstance(r, AsicReading), r
    return r


# --- the whole round trip ---------------------------------------------------------------------


@pytest.mark.parametrize("personality", ["antminer", "reject_multi"])
async def test_sleep_and_wake_through_the_web_ui(web_farm: WebFarm, personality: str) -> None:
    async with web_farm(1, [personality]) as sim:
        host, port = sim.targets[0]
        m = sim.miners[0]
        pools_before = [(p["url"], p["user"]) for p in m.pools]
        assert (await poll(host, port)).state == "mining"

        res = await control.sleep(
            host,
            port,
            "bitmain",
            "quota 12 MW exceeded",
            confirm_s=3,
            access=WEB,
        )
        assert res.outcome == "done", res
        assert res.action == "sleep" and res.device_id == f"{host}:{port}"
        assert "quota 12 MW exceeded" in res.detail
        assert m.sleeping and m.work_mode == 1
        # what the web UI's own save posts: the mode as an int, the pools kept
        assert m.conf_writes[-1]["miner-mode"] == 1
        assert [(p["url"], p["user"]) for p in m.pools] == pools_before
        r = await poll(host, port)
        assert r.state == "sleeping" and r.hashrate_ths == 0
        assert r.fans_rpm and not any(r.fans_rpm)
        assert r.errors == ()
        assert sim.total_power_w() < 20

        res = await control.wake(host, port, "bitmain", "quota restored", access=WEB)
        assert res.outcome == "done", res
        assert not m.sleeping and m.work_mode == 0
        assert m.conf_writes[-1]["miner-mode"] == 0
        assert [(p["url"], p["user"]) for p in m.pools] == pools_before
        r = await poll(host, port)
        assert r.state == "mining" and (r.hashrate_ths or 0) > 50


async def test_confirmation_waits_for_bmminer_to_restart(web_farm: WebFarm) -> None:
    async with web_farm() as sim:
        host, port = sim.targets[0]
        m = sim.miners[0]
        m.web_apply_delay_s = 0.4  # the write is accepted at once, the mode changes later
        res = await control.sleep(host, port, "bitmain", "test", confirm_s=5, access=WEB)
        assert res.outcome == "done", res
        assert m.sleeping


async def test_write_accepted_but_miner_keeps_mining_is_failed(web_farm: WebFarm) -> None:
    async with web_farm() as sim:
        host, port = sim.targets[0]
        m = sim.miners[0]
        m.web_apply_delay_s = 30  # bmminer never comes back asleep within the window
        res = await control.sleep(host, port, "bitmain", "test", confirm_s=0.3, access=WEB)
        assert res.outcome == "failed", res
        assert "reads mining" in res.detail


async def test_already_asleep_is_not_written_again(web_farm: WebFarm) -> None:
    async with web_farm() as sim:
        host, port = sim.targets[0]
        m = sim.miners[0]
        first = await control.sleep(host, port, "bitmain", "a", confirm_s=2, access=WEB)
        again = await control.sleep(host, port, "bitmain", "b", confirm_s=2, access=WEB)
        assert (first.outcome, again.outcome) == ("done", "done")
        assert len(m.conf_writes) == 1  # a second write would only restart bmminer


# --- what goes wrong ------------------------------------------------------------------------


async def test_wrong_password_is_refused_and_the_miner_keeps_mining(web_farm: WebFarm) -> None:
    async with web_farm() as sim:
        host, port = sim.targets[0]
        m = sim.miners[0]
        m.web_password = "changed-by-the-site"
        res = await control.sleep(host, port, "bitmain", "test", access=WEB)
        assert res.outcome == "refused", res
        assert "'root'" in res.detail and "wrong password" in res.detail
        assert m.conf_writes == [] and not m.sleeping
        assert (await poll(host, port)).state == "mining"
        # with the site's password it works
        res = await control.sleep(
            host,
            port,
            "bitmain",
            "test",
            confirm_s=2,
            access=MinerAccess(web_port=WEB_PORT, web_password="changed-by-the-site"),
        )
        assert res.outcome == "done", res


async def test_hung_web_ui_fails_within_the_timeout(web_farm: WebFarm) -> None:
    async with web_farm() as sim:
        host, port = sim.targets[0]
        sim.miners[0].web_hang = True
        res = await control.sleep(
            host, port, "bitmain", "test", access=MinerAccess(web_port=WEB_PORT, web_timeout_s=0.3)
        )
        assert res.outcome == "failed", res
        assert "timed out" in res.detail
        assert not sim.miners[0].sleeping


async def test_no_web_ui_is_unsupported(web_farm: WebFarm) -> None:
    async with web_farm(web=False) as sim:
        host, port = sim.targets[0]
        res = await control.sleep(host, port, "bitmain", "test", access=WEB)
        assert res.outcome == "unsupported", res
        assert "connection refused" in res.detail and "web UI" in res.detail


async def test_conf_without_work_mode_is_unsupported(
    web_farm: WebFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = R.bm_miner_conf

    def old_firmware(m: Any) -> dict[str, Any]:  # an S9-era conf: no work mode at all
        conf = real(m)
        del conf["bitmain-work-mode"]
        return conf

    monkeypatch.setattr(R, "bm_miner_conf", old_firmware)
    async with web_farm() as sim:
        host, port = sim.targets[0]
        res = await control.sleep(host, port, "bitmain", "test", access=WEB)
        assert res.outcome == "unsupported", res
        assert "no work mode" in res.detail
        assert sim.miners[0].conf_writes == []


async def test_cgi_that_says_no_is_refused(
    web_farm: WebFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = R.bm_set_result
    monkeypatch.setattr(R, "bm_set_result", lambda ok: real(False))
    async with web_farm() as sim:
        host, port = sim.targets[0]
        res = await control.sleep(host, port, "bitmain", "test", access=WEB)
        assert res.outcome == "refused", res
        assert "Illegal parameters" in res.detail


# --- the pieces -----------------------------------------------------------------------------


def test_work_mode_reads_both_names_and_types() -> None:
    assert work_mode({"bitmain-work-mode": "1"}) == 1
    assert work_mode({"bitmain-work-mode": " 0 "}) == 0
    assert work_mode({"miner-mode": 1}) == 1
    assert work_mode({"miner-mode": True}) is None  # a bool is not a mode
    assert work_mode({"bitmain-work-mode": ""}) is None
    assert work_mode({}) is None


def test_write_document_keeps_pools_and_sets_both_mode_names() -> None:
    conf = {
        "pools": [
            {"url": "stratum+tcp://a:3333", "user": "u.1", "pass": "x"},
            {"url": "stratum+tcp://b:3333", "user": "u.1", "pass": "123", "extra": "?"},
            "not a pool",
        ],
        "bitmain-fan-ctrl": True,
        "bitmain-fan-pwm": "80",
        "bitmain-freq-level": "95",
        "bitmain-work-mode": "0",
        "api-allow": "A:0/0,W:*",
    }
    doc = conf_with_work_mode(copy.deepcopy(conf), 1)
    assert doc["miner-mode"] == 1 and doc["bitmain-work-mode"] == "1"
    assert doc["pools"] == [
        {"url": "stratum+tcp://a:3333", "user": "u.1", "pass": "x"},
        {"url": "stratum+tcp://b:3333", "user": "u.1", "pass": "123"},
    ]
    assert (doc["bitmain-fan-ctrl"], doc["bitmain-fan-pwm"], doc["freq-level"]) == (
        True,
        "80",
        "95",
    )
    json.dumps(doc)  # it is posted as JSON


T = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)


def _s19(**changes: Any) -> dict[str, Any]:
    """The real S19 Pro stats fixture with some of its data keys changed."""
    stats = decode_reply((CASES / "bitmain" / "s19pro-stock-stats" / "stats.json").read_bytes())
    stats["STATS"][1].update(changes)
    return stats


@pytest.mark.parametrize(
    ("changes", "state"),
    [
        ({}, "mining"),
        # asleep: nothing hashed, fans stopped
        ({"GHS 5s": 0, "GHS av": 0, "fan1": 0, "fan2": 0, "fan3": 0, "fan4": 0}, "sleeping"),
        # not hashing with fans at full speed is a fault (or a start), never a sleep
        ({"GHS 5s": 0, "GHS av": 0}, "error"),
        # builds that echo the work mode in stats say so outright
        ({"GHS 5s": 0, "GHS av": 0, "miner-mode": 1}, "sleeping"),
        ({"GHS 5s": 0, "GHS av": 0, "bitmain-work-mode": "1"}, "sleeping"),
    ],
)
def test_stock_sleep_rule(changes: dict[str, Any], state: str) -> None:
    r = parse_replies("10.1.2.3", 4028, T, {"stats": _s19(**changes)}, "bitmain")
    assert r is not None and r.state == state, r


def test_plain_cgminer_does_not_get_the_stock_sleep_rule() -> None:
    stats = _s19(**{"GHS 5s": 0, "GHS av": 0, "fan1": 0, "fan2": 0, "fan3": 0, "fan4": 0})
    r = parse_replies("10.1.2.3", 4028, T, {"stats": stats}, "cgminer")
    assert r is not None and r.state == "error"
