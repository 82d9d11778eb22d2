"""Miner handles offer exactly their firmware's capabilities (collectors/capabilities.py), and
act through the firmware's own write path, confirmed, against the simulator."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace

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


async def test_a_handle_says_when_its_command_is_written_before_the_miner_shows_it() -> None:
    """A Whatsminer restarts mining under a new limit (20 s on real boxes): the handle tells
    its caller once the command is written, while the confirmation is still to come (the
    curtailer frees a command slot then, not when the miner confirms)."""
    now = [0.0]  # the miner's clock: it acts on the limit only when the test moves it on
    sim = AsicFarmSimulator(
        1,
        first_ip=f"127.88.{next(_ranges)}.1",
        personalities=["whatsminer"],
        web_port=None,
        apply_delay_s={"whatsminer": 20.0},
        clock=lambda: now[0],
    )
    await sim.start()
    try:
        host, port = sim.targets[0]
        written = asyncio.Event()
        h = replace(miner_handle(host, port, "whatsminer", confirm_s=30.0), sent=written.set)
        assert isinstance(h, PowerLimitable)
        action = asyncio.create_task(h.set_power_limit(2400, "quota"))
        await asyncio.wait(
            {action, asyncio.create_task(written.wait())},
            timeout=10,
            return_when=asyncio.FIRST_COMPLETED,
        )
        assert written.is_set() and not action.done()
        m = sim.miners[0]
        assert m.limit_due is not None and m.power_limit_w != 2400  # received, not acted on
        now[0] = 21.0
        res = await action
        assert res.outcome == "done" and m.power_limit_w == 2400
    finally:
        await sim.stop()
