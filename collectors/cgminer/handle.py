"""A miner handle: what the curtailment side holds per miner, offering only what its firmware can.

``miner_handle(host, port, firmware)`` returns an object that implements the capability protocols
of ``kuat.collectors.capabilities`` its firmware supports, and no others, so a caller asks
``isinstance(h, PowerLimitable)`` instead of keeping its own firmware tables:

    h = miner_handle("10.0.0.5", 4028, reading.firmware_family, access=access)
    if isinstance(h, PowerLimitable):
        await h.set_power_limit(2800, "quota 80 %")
    elif isinstance(h, Sleepable):
        await h.sleep("quota 80 %")

The actions are control.py's (confirmed by reading the miner back); ``CAPABILITIES`` says which
firmware offers which, derived from the backends' ``Controls``. ``control.sleep``/``wake``/
``set_power_limit`` keep their signatures for existing callers.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kuat.collectors.capabilities import ActionResult, PoolTarget
from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.control import MinerAccess
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.controls import (
    DEFAULT_CONFIRM_S,
    Controls,
    Verb,
    controls_of,
)

if TYPE_CHECKING:
    from kuat.collectors.cgminer.collector import AsicPoller


class Capability(enum.StrEnum):
    SLEEP = "sleep"  # Sleepable: sleep/wake, confirmed
    POWER_LIMIT = "power_limit"  # PowerLimitable: a watt target, confirmed
    POOLS = "pools"  # PoolConfigurable: the pool list replaced, confirmed


def _offers(c: Controls | None) -> frozenset[Capability]:
    if c is None:
        return frozenset()
    caps = {Capability.SLEEP} if c.sleep_wake is not None else set()
    if c.power_target is not None:
        caps.add(Capability.POWER_LIMIT)
    if c.set_pools is not None:
        caps.add(Capability.POOLS)
    return frozenset(caps)


# Which firmware offers what, from each backend's declared verbs (firmware/<name>.py CONTROLS);
# a firmware without a declaration (an unknown cgminer derivative) offers nothing.
CAPABILITIES: dict[Firmware, frozenset[Capability]] = {
    fw: _offers(controls_of(fw)) for fw in Firmware
}


@dataclass(frozen=True, slots=True)
class MinerHandle:
    """One miner and how to reach its write paths. Subclasses add the capabilities."""

    host: str
    port: int
    firmware: Firmware
    access: MinerAccess = field(default_factory=MinerAccess)
    timeout_s: float = 3.0
    # None: as long as the backend says a real box takes for that verb (Controls.confirm_s)
    confirm_s: float | None = None
    # The agent's own poller: a confirmation re-reads through it, inside its shared limit on
    # concurrent polls (None: the action polls with a short-lived poller of its own).
    poller: AsicPoller | None = None
    # Told once a command is written and only its confirmation is left (control.py ``sent``):
    # the curtailer frees its command slot then.
    sent: Callable[[], None] | None = None

    @property
    def device(self) -> str:
        return f"{self.host}:{self.port}"

    def confirm_for(self, verb: Verb) -> float:
        if self.confirm_s is not None:
            return self.confirm_s
        c = controls_of(self.firmware)
        return c.confirm_for(verb) if c is not None else DEFAULT_CONFIRM_S

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
            confirm_s=self.confirm_for("sleep"),
            access=self.access,
            poller=self.poller,
            sent=self.sent,
        )

    async def wake(self: MinerHandle, reason: str) -> ActionResult:  # type: ignore[misc]
        return await control.wake(
            self.host,
            self.port,
            self.firmware,
            reason,
            timeout_s=self.timeout_s,
            confirm_s=self.confirm_for("wake"),
            access=self.access,
            poller=self.poller,
            sent=self.sent,
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
            confirm_s=self.confirm_for("limit"),
            access=self.access,
            poller=self.poller,
            sent=self.sent,
        )


class _Pools:
    __slots__ = ()

    async def set_pools(  # type: ignore[misc]
        self: MinerHandle, pools: Sequence[PoolTarget], reason: str
    ) -> ActionResult:
        return await control.set_pools(
            self.host,
            self.port,
            self.firmware,
            pools,
            reason,
            timeout_s=self.timeout_s,
            confirm_s=self.confirm_for("pools"),
            access=self.access,
            poller=self.poller,
            sent=self.sent,
        )


_MIXINS: dict[Capability, type] = {
    Capability.SLEEP: _Sleep,
    Capability.POWER_LIMIT: _PowerLimit,
    Capability.POOLS: _Pools,
}


def _handle_class(caps: frozenset[Capability]) -> type[MinerHandle]:
    """A handle class with exactly the mixins of ``caps`` (isinstance on the protocols then
    tells a caller what the miner offers)."""
    if not caps:
        return MinerHandle
    bases = tuple(_MIXINS[c] for c in Capability if c in caps)
    name = "".join(c.value.title().replace("_", "") for c in Capability if c in caps) + "Miner"
    return dataclass(frozen=True, slots=True)(type(name, (*bases, MinerHandle), {}))


_CLASSES: dict[frozenset[Capability], type[MinerHandle]] = {
    caps: _handle_class(caps) for caps in set(CAPABILITIES.values())
}


def miner_handle(
    host: str,
    port: int,
    firmware: Firmware | str,
    *,
    access: MinerAccess | None = None,
    timeout_s: float = 3.0,
    confirm_s: float | None = None,
    poller: AsicPoller | None = None,
) -> MinerHandle:
    """The handle for a miner of ``firmware`` (a Firmware or its string, as readings carry it).

    An unknown firmware string gives a plain handle: it can do nothing, and says so by not
    being Sleepable, PowerLimitable or PoolConfigurable."""
    try:
        fw = Firmware(firmware)
    except ValueError:
        fw = Firmware.CGMINER
    cls = _CLASSES.get(CAPABILITIES.get(fw, frozenset()), MinerHandle)
    return cls(host, port, fw, access or MinerAccess(), timeout_s, confirm_s, poller)
