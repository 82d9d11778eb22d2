"""ePIC UMC/PowerPlay: the control declaration. Its reading (an HTTP API on the API port, not
cgminer's) and its write paths live in collectors/cgminer/epic.py; this module says what kuat
may do with it and what that needs."""

from __future__ import annotations

from kuat.collectors.capabilities import ActionResult
from kuat.collectors.cgminer import epic
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.controls import Act, Controls


async def _sleep_wake(act: Act, to_sleep: bool) -> ActionResult:
    """``POST /miner`` Stop / Autostart, confirmed by the summary's state."""
    verb = epic.sleep if to_sleep else epic.wake
    return await verb(
        act.host,
        act.reason,
        port=act.port,
        password=act.access.epic_password,
        timeout_s=act.timeout_s,
        confirm_s=act.confirm_s,
    )


async def _power_target(act: Act, watts: int) -> ActionResult:
    """The perpetual tuner's Power target, clamped to the box's range (epic.py)."""
    return await epic.set_power_limit(
        act.host,
        watts,
        act.reason,
        port=act.port,
        password=act.access.epic_password,
        timeout_s=act.timeout_s,
        confirm_s=act.confirm_s,
    )


CONTROLS = Controls(
    firmware=Firmware.EPIC,
    sleep_wake=_sleep_wake,
    power_target=_power_target,
    credentials=("epic_password",),
    # a real box takes minutes to initialise its boards after a wake
    confirm_s={"wake": 180.0, "limit": 120.0},
)
