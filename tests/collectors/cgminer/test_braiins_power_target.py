"""Braiins OS power target over its REST API (25.07+), confirmed through ``tunerstatus`` on the
cgminer API; against the simulator on 127.83.N.1, whose web port serves the REST API."""

from __future__ import annotations

import itertools
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.firmware.braiins import sim as braiins_sim
from kuat.collectors.cgminer.firmware.braiins.rest import power_target_range
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading

_ranges = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def braiins(web: bool = True) -> AsyncIterator[tuple[AsicFarmSimulator, int]]:
    port = _free_port()
    sim = AsicFarmSimulator(
        1,
        first_ip=f"127.83.{next(_ranges)}.1",
        personalities=["braiins"],
        web_port=port if web else None,
    )
    await sim.start()
    try:
        yield sim, port
    finally:
        await sim.stop()


async def limit_of(host: str, port: int) -> float | None:
    r = await AsicPoller(web_port=None).poll(host, port)
    assert isinstance(r, AsicReading), r
    return r.power_limit_w


async def test_power_target_is_set_and_read_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with braiins() as (sim, web_port):
        host, port = sim.targets[0]
        sim.miners[0].web_password = "s3cret-pw"
        assert await limit_of(host, port) == 3031.0  # tunerstatus PowerLimit, nameplate
        access = control.MinerAccess(braiins_web_port=web_port, braiins_password="s3cret-pw")
        res = await control.set_power_limit(
            host, port, "braiins", 2400, "quota share", access=access, confirm_s=3.0
        )
        assert res.outcome == "done", res
        assert "2400 W" in res.detail
        assert await limit_of(host, port) == 2400.0
        assert "s3cret-pw" not in caplog.text and "s3cret-pw" not in repr(access)


async def test_wrong_password_is_refused_and_nothing_changes() -> None:
    async with braiins() as (sim, web_port):
        host, port = sim.targets[0]
        access = control.MinerAccess(braiins_web_port=web_port, braiins_password="guess")
        res = await control.set_power_limit(host, port, "braiins", 2400, "q", access=access)
        assert res.outcome == "refused" and "root" in res.detail and "guess" not in res.detail
        assert await limit_of(host, port) == 3031.0


PUT_TARGET = "REST PUT /api/v1/performance/power-target"


async def test_target_below_the_miners_minimum_is_not_sent() -> None:
    async with braiins() as (sim, web_port):
        host, port = sim.targets[0]
        access = control.MinerAccess(braiins_web_port=web_port)
        res = await control.set_power_limit(host, port, "braiins", 400, "q", access=access)
        # configuration/constraints: min 1212 W (40 % of the nameplate 3031 W); refused, as the
        # tuner would, so the curtailer learns the floor (unsupported would turn limits off)
        assert res.outcome == "refused", res
        assert "1212 W" in res.detail and "not sent" in res.detail
        assert sim.miners[0].requests["REST GET /api/v1/configuration/constraints"] == 1
        assert sim.miners[0].requests[PUT_TARGET] == 0
        assert await limit_of(host, port) == 3031.0


async def test_target_above_the_miners_maximum_is_clamped_to_it() -> None:
    async with braiins() as (sim, web_port):
        host, port = sim.targets[0]
        access = control.MinerAccess(braiins_web_port=web_port)
        res = await control.set_power_limit(
            host, port, "braiins", 5000, "q", access=access, confirm_s=3.0
        )
        assert res.outcome == "done", res
        assert "3637 W" in res.detail  # the max, 120 % of the factory limit
        assert await limit_of(host, port) == 3637.0


async def test_build_without_constraints_gets_the_miners_own_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(braiins_sim, "bos_constraints", lambda m: None)  # HTTP 404
    async with braiins() as (sim, web_port):
        host, port = sim.targets[0]
        access = control.MinerAccess(braiins_web_port=web_port)
        res = await control.set_power_limit(host, port, "braiins", 400, "q", access=access)
        assert res.outcome == "refused" and "out of range" in res.detail
        assert sim.miners[0].requests[PUT_TARGET] == 1


def test_constraints_document_gives_the_power_target_range() -> None:
    doc = {
        "tuner_constraints": {
            "power_target": {
                "min": {"watt": 1200},
                "default": {"watt": 3010},
                "max": {"watt": 3600},
            }
        },
        "cooling_constraints": None,
    }
    assert power_target_range(doc) == (1200, 3600)
    for bad in (
        None,
        {},
        {"tuner_constraints": None},
        {"tuner_constraints": {"power_target": {"min": {"watt": 1200}}}},
        {"tuner_constraints": {"power_target": {"min": {"watt": True}, "max": {"watt": 9}}}},
        {"tuner_constraints": {"power_target": {"min": {"watt": 9e999}, "max": {"watt": 9}}}},
        {"tuner_constraints": {"power_target": {"min": {"watt": 3600}, "max": {"watt": 1200}}}},
        {"tuner_constraints": {"power_target": {"min": {"watt": "1200"}, "max": {"watt": 9}}}},
    ):
        assert power_target_range(bad) is None, bad


async def test_firmware_without_the_rest_api_is_unsupported() -> None:
    async with braiins(web=False) as (sim, _):
        host, port = sim.targets[0]
        access = control.MinerAccess(braiins_web_port=_free_port(), web_timeout_s=1.0)
        res = await control.set_power_limit(host, port, "braiins", 2400, "q", access=access)
        # nothing listens: the caller sleeps this miner instead of limiting it
        assert res.outcome == "unsupported" and "25.07" in res.detail
