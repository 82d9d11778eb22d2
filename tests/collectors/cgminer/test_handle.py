"""Miner handles offer exactly their firmware's capabilities (collectors/capabilities.py), and
act through the firmware's own write path, confirmed, against the simulator."""

from __future__ import annotations

import itertools

import pytest

from kuat.collectors.capabilities import PowerLimitable, Sleepable
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.handle import CAPABILITIES, Capability, miner_handle
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading

_ranges = itertools.count(1)


@pytest.mark.parametrize("firmware", list(Firmware))
def test_handle_is_what_its_firmware_can_do(firmware: Firmware) -> None:
    h = miner_handle("10.0.0.5", 4028, firmware.value)  # the reading's plain string works
    caps = CAPABILITIES[firmware]
    assert isinstance(h, Sleepable) == (Capability.SLEEP in caps)
    assert isinstance(h, PowerLimitable) == (Capability.POWER_LIMIT in caps)
    assert h.firmware is firmware and h.capabilities == caps


def test_stock_antminer_sleeps_but_has_no_watt_target() -> None:
    h = miner_handle("10.0.0.5", 4028, "bitmain")
    assert isinstance(h, Sleepable) and not isinstance(h, PowerLimitable)


def test_unknown_firmware_can_do_nothing() -> None:
    h = miner_handle("10.0.0.5", 4028, "some-new-firmware")
    assert not isinstance(h, Sleepable) and not isinstance(h, PowerLimitable)


async def test_luxos_handle_limits_power_and_sleeps_through_the_firmware() -> None:
    sim = AsicFarmSimulator(
        1, first_ip=f"127.88.{next(_ranges)}.1", personalities=["luxos"], web_port=None
    )
    await sim.start()
    try:
        host, port = sim.targets[0]
        r = await AsicPoller(web_port=None).poll(host, port)
        assert isinstance(r, AsicReading)
        h = miner_handle(host, port, r.firmware_family or "", confirm_s=3.0)
        assert isinstance(h, PowerLimitable) and isinstance(h, Sleepable)
        res = await h.set_power_limit(2400, "quota")
        assert res.outcome == "done", res
        assert sim.miners[0].power_limit_w <= 2400
        res = await h.sleep("quota")
        assert res.outcome == "done" and sim.miners[0].sleeping
        res = await h.wake("quota back")
        assert res.outcome == "done" and not sim.miners[0].sleeping
    finally:
        await sim.stop()
