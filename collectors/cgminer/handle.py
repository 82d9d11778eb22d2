"""A miner handle: what the curtailment side holds per miner, offering only what its firmware can.

``miner_handle(host, port, firmware)`` returns an object that implements the capability protocols
of ``kuat.collectors.capabilities`` its firmware supports, and no others, so a caller asks
``isinstance(h, PowerLimitable)`` instead of keeping its own firmware tables:

    h = miner_handle("10.0.0.5", 4028, reading.firmware_family, access=access)
    if isinstance(h, PowerLimitable):
        await h.set_power_limit(2800, "quota 80 %")
    elif isinstance(h, Sleepable):
        await h.sleep("quota 80 %")

The actions are control.py's (confirmed by reading the miner back); ``CAPABILITIES`` is the one
table of which firmware offers which. ``control.sleep``/``wake``/``set_power_limit`` keep their
signatures for existing callers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from kuat.collectors.capabilities import ActionResult
from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.control import MinerAccess
from kuat.collectors.cgminer.firmware import Firmware


class Capability(enum.StrEnum):
    SLEEP = "sleep"  # Sleepable: sleep/wake, confirmed
    POWER_LIMIT = "power_limit"  # PowerLimitable: a watt target, confirmed


_SLEEP = frozenset({Capability.SLEEP})
_BOTH = frozenset({Capability.SLEEP, Capability.POWER_LIMIT})
# Which firmware offers what through kuat's control paths (control.py, the firmware docs).
CAPABILITIES: dict[Firmware, frozenset[Capability]] = {
    Firmware.BITMAIN: _SLEEP,  # web UI sleep mode; work modes only, no watt target
    Firmware.AVALON: _SLEEP,  # soft-off; work-mode levels, no watt target
    Firmware.WHATSMINER: _BOTH,
    Firmware.WHATSMINER_V3: _BOTH,
    Firmware.LUXOS: _BOTH,  # profiles at or below the target
    Firmware.BRAIINS: _BOTH,  # REST power target (25.07+)
    Firmware.VNISH: _BOTH,  # presets at or below the target
    Firmware.EPIC: _BOTH,
    Firmware.AURADINE: _BOTH,  # FluxOS HTTP API: sleep on/off, custom power target
    Firmware.CGMINER: frozenset(),  # unknown derivative: nothing kuat can trust
}


@dataclass(frozen=True, slots=True)
class MinerHandle:
    """One miner and how to reach its write paths. Subclasses add the capabilities."""

    host: str
    port: int
    firmware: Firmware
    access: MinerAccess = field(default_factory=MinerAccess)
    timeout_s: float = 3.0
    confirm_s: float = 10.0

    @property
    def device(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def capabilities(self) -> frozenset[Capability]:
        return CAPABILITIES.get(self.firmware, frozenset())


class _Sleep:
    __slots__ = ()

    async def sleep(self: MinerHandle, reason: str) -> ActionResult:  # type: ignore[misc]
        return await control.sleep(
            self.host,
            self.port,
            self.firmware,
            reason,
            timeout_s=self.timeout_s,
            confirm_s=self.confirm_s,
            access=self.access,
        )

    async def wake(self: MinerHandle, reason: str) -> ActionResult:  # type: ignore[misc]
        return await control.wake(
            self.host,
            self.port,
            self.firmware,
            reason,
            timeout_s=self.timeout_s,
            confirm_s=self.confirm_s,
            access=self.access,
        )


class _PowerLimit:
    __slots__ = ()

    async def set_power_limit(  # type: ignore[misc]
        self: MinerHandle, watts: int, reason: str
    ) -> ActionResult:
        return await control.set_power_limit(
            self.host,
            self.port,
            self.firmware,
            watts,
            reason,
            timeout_s=self.timeout_s,
            confirm_s=self.confirm_s,
            access=self.access,
        )


@dataclass(frozen=True, slots=True)
class SleepableMiner(_Sleep, MinerHandle):
    pass


@dataclass(frozen=True, slots=True)
class CurtailableMiner(_Sleep, _PowerLimit, MinerHandle):
    pass


_CLASSES: dict[frozenset[Capability], type[MinerHandle]] = {
    frozenset(): MinerHandle,
    _SLEEP: SleepableMiner,
    _BOTH: CurtailableMiner,
}


def miner_handle(
    host: str,
    port: int,
    firmware: Firmware | str,
    *,
    access: MinerAccess | None = None,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
) -> MinerHandle:
    """The handle for a miner of ``firmware`` (a Firmware or its string, as readings carry it).

    An unknown firmware string gives a plain handle: it can do nothing, and says so by not
    being Sleepable or PowerLimitable."""
    try:
        fw = Firmware(firmware)
    except ValueError:
        fw = Firmware.CGMINER
    cls = _CLASSES[CAPABILITIES.get(fw, frozenset())]
    return cls(host, port, fw, access or MinerAccess(), timeout_s, confirm_s)
