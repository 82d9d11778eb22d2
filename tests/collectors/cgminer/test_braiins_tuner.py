"""Braiins OS+ ``tunerstatus``: the tuner's power target and watts, over real sockets."""

from __future__ import annotations

from typing import Any

import pytest

from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.firmware.braiins import sim as R
from kuat.collectors.cgminer.parsers import parse_replies
from kuat.collectors.cgminer.sim_replies import invalid
from kuat.collectors.readings import AsicReading
from tests.collectors.cgminer.conftest import FarmFactory


async def test_power_limit_and_watts_come_from_tunerstatus(farm: FarmFactory) -> None:
    async with farm(1, ["braiins"]) as sim:
        m = sim.miners[0]
        poller = AsicPoller(timeout_s=2.0, web_port=None)
        r1 = await poller.poll(*sim.targets[0])
        m.power_limit_w = 2500  # the tuner's target changed (set through gRPC / web UI)
        r2 = await poller.poll(*sim.targets[0])
        asked = m.requests["tunerstatus"]
    assert isinstance(r1, AsicReading) and isinstance(r2, AsicReading)
    assert r1.power_limit_w == 3031 and r2.power_limit_w == 2500
    # whole-miner estimate (ApproximateMinerPowerConsumption), around the nominal 3031 W
    assert r1.power_w is not None and r1.power_w == pytest.approx(3031, rel=0.02)
    assert r1.errors == () and r2.errors == ()
    assert asked == 2


async def test_build_without_the_tuner_is_no_error(
    farm: FarmFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Braiins OS (not OS+) has no autotuner and refuses the command
    monkeypatch.setitem(R.BRAIINS, "tunerstatus", lambda m: invalid(R.BRAIINS_SIM.desc))
    async with farm(1, ["braiins"]) as sim:
        r = await AsicPoller(timeout_s=2.0, web_port=None).poll(*sim.targets[0])
    assert isinstance(r, AsicReading), r
    assert r.firmware_family == "braiins" and r.hashrate_ths
    assert r.power_w is None and r.power_limit_w is None
    assert r.errors == ()


def _tuner(**row: Any) -> dict[str, Any]:
    return {
        "STATUS": [{"STATUS": "S", "Code": 203, "Msg": "Tuner Status", "Description": "BOSer"}],
        "TUNERSTATUS": [row],
        "id": 1,
    }


def test_documented_shape_and_zero_target() -> None:
    version = {"STATUS": [{"STATUS": "S", "Description": "BOSer x"}], "VERSION": [{"BOSer": "x"}]}
    doc = _tuner(
        ApproximateChainPowerConsumption=1344,
        ApproximateMinerPowerConsumption=1419,
        DynamicPowerScaling="Disabled",
        PowerLimit=1420,
    )
    r = parse_replies("h", 4028, None, {"version": version, "tunerstatus": doc})  # type: ignore[arg-type]
    assert r is not None and (r.power_w, r.power_limit_w) == (1419, 1420)
    # tuner off / hashrate-target mode: PowerLimit 0 is no watt limit
    off = _tuner(ApproximateMinerPowerConsumption=1400, PowerLimit=0)
    r = parse_replies("h", 4028, None, {"version": version, "tunerstatus": off})  # type: ignore[arg-type]
    assert r is not None and r.power_w == 1400 and r.power_limit_w is None
