"""Control verbs are declared by the firmware backends (firmware/<name>.py ``Controls``) and
control.py only dispatches: what a firmware declares is what a caller gets."""

from __future__ import annotations

import itertools

import pytest

from kuat.collectors.capabilities import PowerLimitable, Sleepable
from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.control import MinerAccess
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.controls import all_controls, controls_of
from kuat.collectors.cgminer.handle import miner_handle
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading

_ranges = itertools.count(1)
_ACCESS_FIELDS = MinerAccess.names()


@pytest.mark.parametrize("firmware", [f for f in Firmware if f is not Firmware.CGMINER])
def test_every_known_firmware_declares_its_controls(firmware: Firmware) -> None:
    c = controls_of(firmware)
    assert c is not None and c.firmware is firmware
    # a verb reading a credential MinerAccess lacks would fail on the first real action
    assert set(c.credentials) <= _ACCESS_FIELDS, set(c.credentials) - _ACCESS_FIELDS
    # a firmware without a watt target says why, for the operator reading the result
    assert c.power_target is not None or c.no_power_target


def test_unknown_firmware_has_no_controls() -> None:
    assert controls_of("some-new-firmware") is None
    assert (
        Firmware.CGMINER not in all_controls()
        or all_controls()[Firmware.CGMINER].sleep_wake is None
    )


async def test_no_power_target_is_unsupported_with_the_backends_reason() -> None:
    res = await control.set_power_limit("127.0.0.1", 9, "avalon", 1000, "quota")
    assert res.outcome == "unsupported"
    assert res.detail == controls_of(Firmware.AVALON).no_power_target  # type: ignore[union-attr]
    res = await control.sleep("127.0.0.1", 9, "some-new-firmware", "quota")
    assert res.outcome == "unsupported" and "some-new-firmware" in res.detail


def test_handle_waits_as_long_as_the_backend_says_a_real_box_takes() -> None:
    h = miner_handle("10.0.0.5", 4028, "bitmain")
    assert h.confirm_for("wake") == 180.0 and h.confirm_for("sleep") == 60.0
    assert miner_handle("10.0.0.5", 4028, "bitmain", confirm_s=3.0).confirm_for("wake") == 3.0


async def test_braiins_pause_resume_through_its_backend() -> None:
    sim = AsicFarmSimulator(
        1, first_ip=f"127.74.{next(_ranges)}.1", personalities=["braiins"], web_port=None
    )
    await sim.start()
    try:
        host, port = sim.targets[0]
        r = await AsicPoller(web_port=None).poll(host, port)
        assert isinstance(r, AsicReading)
        h = miner_handle(host, port, r.firmware_family or "", confirm_s=3.0)
        assert isinstance(h, Sleepable) and isinstance(h, PowerLimitable)
        res = await h.sleep("quota")
        assert res.outcome == "done", res
        assert sim.miners[0].sleeping
        res = await h.wake("quota back")
        assert res.outcome == "done", res
        assert not sim.miners[0].sleeping
    finally:
        await sim.stop()
