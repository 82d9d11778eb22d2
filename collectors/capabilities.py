"""Small capability interfaces (evcc style): a device offers what it can, nothing more.

The quota engine plans against these; the agent executes through them, and only when
enforcement is switched on. Miners: ``kuat.collectors.cgminer.handle.miner_handle`` gives a handle
that implements exactly the protocols its firmware supports; PDUs switch outlets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from kuat.collectors.readings import PollResult

ActionOutcome = Literal["done", "refused", "unsupported", "failed"]


@dataclass(frozen=True, slots=True)
class ActionResult:
    device_id: str
    action: str
    outcome: ActionOutcome
    detail: str = ""
    #: a power limit refused as below the firmware's range: the lowest it takes, when known
    #: (its lowest profile or preset, its tuner's minimum), so the caller learns the miner's
    #: floor from one refusal rather than one per step under it
    floor_w: float | None = None


@runtime_checkable
class Pollable(Protocol):
    """Anything the scheduler can poll: one call, one result, never raises."""

    async def poll(self) -> PollResult: ...


@runtime_checkable
class Sleepable(Protocol):
    async def sleep(self, reason: str) -> ActionResult: ...

    async def wake(self, reason: str) -> ActionResult: ...


@runtime_checkable
class PowerLimitable(Protocol):
    async def set_power_limit(self, watts: int, reason: str) -> ActionResult: ...


@dataclass(frozen=True, slots=True)
class PoolTarget:
    """One pool to write to a miner, in priority order (the first is the one it mines on)."""

    url: str
    user: str
    password: str = field(default="x", repr=False)  # most pools ignore it; some use it


@runtime_checkable
class PoolConfigurable(Protocol):
    """The miner's pool list can be replaced through its firmware's own write path, confirmed
    by reading the pools back (checklist item 7's fix)."""

    async def set_pools(self, pools: Sequence[PoolTarget], reason: str) -> ActionResult: ...


@runtime_checkable
class OutletSwitchable(Protocol):
    async def switch_outlet(self, index: int, on: bool, reason: str) -> ActionResult: ...
