"""Sleep, wake and power-limit a miner the way its firmware does it, confirmed by reading it back.

An action is "done" only when a fresh poll shows the new state: a firmware that says "OK" and
keeps hashing must not count as curtailed in the quota engine's books.

This module is the dispatcher. How each firmware is driven lives in its backend
(collectors/cgminer/firmware/<name>.py, a ``Controls`` declaration: its verbs, the credentials
they read from ``MinerAccess``, how long a real box takes); here are the public entry points,
the checks every firmware shares, and the confirmation re-read through the poller. Outcomes:
done (confirmed), refused (the miner said no), unsupported (no such write path: the caller
sleeps the miner instead of limiting it, or leaves it), failed (no answer, or no confirmation).

Every password comes in through ``MinerAccess`` (access.py: the credentials the backends
declare) and never reaches a log line or a result.

``poller``: the agent's own AsicPoller. A confirmation re-reads through it, inside its shared
concurrency limit (a curtailment burst cannot put more miners in flight than the poll cycle
may), with its memo of each miner's firmware. Without one, the action makes a poller of its own
for its confirmation and closes it when done. ``sent``: called once the command is written and
only its confirmation is left (a caller sending many at once frees a slot then).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from kuat.collectors.capabilities import ActionResult, PoolTarget
from kuat.collectors.cgminer.access import MinerAccess
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.firmware.controls import Act, controls_of
from kuat.collectors.readings import AsicReading

__all__ = ["MinerAccess", "set_pools", "set_power_limit", "sleep", "wake"]


async def sleep(
    host: str,
    port: int,
    firmware_family: str,
    reason: str,
    *,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
    access: MinerAccess | None = None,
    poller: AsicPoller | None = None,
    sent: Callable[[], None] | None = None,
) -> ActionResult:
    """Put the miner to sleep the way its firmware does (module docstring), confirmed.
    ``access``: passwords and ports per firmware (None: every default)."""
    a = access or MinerAccess()
    return await _act(
        host, port, firmware_family, reason, True, timeout_s, confirm_s, a, poller, sent
    )


async def wake(
    host: str,
    port: int,
    firmware_family: str,
    reason: str,
    *,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
    access: MinerAccess | None = None,
    poller: AsicPoller | None = None,
    sent: Callable[[], None] | None = None,
) -> ActionResult:
    """As ``sleep``, the other way."""
    a = access or MinerAccess()
    return await _act(
        host, port, firmware_family, reason, False, timeout_s, confirm_s, a, poller, sent
    )


async def set_power_limit(
    host: str,
    port: int,
    firmware_family: str,
    watts: int,
    reason: str,
    *,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
    access: MinerAccess | None = None,
    poller: AsicPoller | None = None,
    sent: Callable[[], None] | None = None,
) -> ActionResult:
    """Run the miner at no more than ``watts``, the PowerLimitable capability's shape.

    The firmware's backend sets its own kind of target (a profile or preset at or below
    ``watts``, or ``watts`` itself) and is done when a poll shows the new limit; a firmware with
    no watt target is unsupported, so the caller sleeps the miner instead; a target below the
    lowest the firmware takes (its lowest profile or preset, its tuner's minimum) is refused,
    not sent where the range is known beforehand, so the caller learns the miner's floor and
    keeps limiting it above it. Some firmware restarts mining to apply a limit: on real
    hardware give ``confirm_s`` what the backend's ``Controls.confirm_s`` says.
    """
    a = access or MinerAccess()
    action = "set_power_limit"
    device = f"{host}:{port}"
    controls = controls_of(firmware_family)
    if controls is None or controls.power_target is None:
        why = (controls.no_power_target if controls else "") or (
            f"no power limit method for {firmware_family}"
        )
        return ActionResult(device, action, "unsupported", why)
    if watts <= 0:
        return ActionResult(device, action, "unsupported", "a 0 W limit is a sleep: use sleep()")
    act = _make_act(host, port, firmware_family, reason, timeout_s, confirm_s, a, poller, sent)
    return await controls.power_target(act, watts)


async def set_pools(
    host: str,
    port: int,
    firmware_family: str,
    pools: Sequence[PoolTarget],
    reason: str,
    *,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
    access: MinerAccess | None = None,
    poller: AsicPoller | None = None,
    sent: Callable[[], None] | None = None,
) -> ActionResult:
    """Replace the miner's pools with ``pools`` (priority order) through its firmware's own
    write path, the PoolConfigurable capability's shape; done when a poll shows exactly these
    pools (url and user, in order). A firmware keeps at most ``Controls.max_pools`` (3 on
    today's firmware): the rest are not written, and the result says so. No pools at all is
    refused here: writing none would leave the miner with nothing to mine on.
    """
    a = access or MinerAccess()
    action = "set_pools"
    device = f"{host}:{port}"
    controls = controls_of(firmware_family)
    if controls is None or controls.set_pools is None:
        why = f"no pool write path kuat knows for {firmware_family}"
        return ActionResult(device, action, "unsupported", why)
    if not pools:
        return ActionResult(device, action, "refused", "no pools given: the miner would stop")
    kept = tuple(pools[: controls.max_pools])
    act = _make_act(host, port, firmware_family, reason, timeout_s, confirm_s, a, poller, sent)
    got = await controls.set_pools(act, kept)
    if len(kept) < len(pools) and got.outcome == "done":
        dropped = len(pools) - len(kept)
        detail = f"{got.detail}; {dropped} more not written (the firmware keeps {len(kept)})"
        return ActionResult(got.device_id, got.action, got.outcome, detail)
    return got


async def _act(
    host: str,
    port: int,
    family: str,
    reason: str,
    to_sleep: bool,
    timeout_s: float,
    confirm_s: float,
    a: MinerAccess,
    poller: AsicPoller | None,
    sent: Callable[[], None] | None = None,
) -> ActionResult:
    controls = controls_of(family)
    if controls is None or controls.sleep_wake is None:
        action = "sleep" if to_sleep else "wake"
        detail = f"no {action} over the API for {family}"
        return ActionResult(f"{host}:{port}", action, "unsupported", detail)
    act = _make_act(host, port, family, reason, timeout_s, confirm_s, a, poller, sent)
    return await controls.sleep_wake(act, to_sleep)


def _make_act(
    host: str,
    port: int,
    family: str,
    reason: str,
    timeout_s: float,
    confirm_s: float,
    a: MinerAccess,
    poller: AsicPoller | None,
    sent: Callable[[], None] | None = None,
) -> Act:
    async def confirm(
        done: Callable[[AsicReading], bool], describe: Callable[[AsicReading], str]
    ) -> tuple[bool, str]:
        if poller is not None:
            return await _confirm(poller, host, port, done, describe, confirm_s)
        # no poller of the caller's: one for this confirmation, without background identity
        # reads (of no use to it), closed when it is done so no HTTP client outlives it
        own = AsicPoller(timeout_s=timeout_s, access=a, background_identity=False)
        try:
            return await _confirm(own, host, port, done, describe, confirm_s)
        finally:
            await own.aclose()

    return Act(host, port, family, reason, a, timeout_s, confirm_s, confirm, sent)


async def _confirm(
    poller: AsicPoller,
    host: str,
    port: int,
    done: Callable[[AsicReading], bool],
    describe: Callable[[AsicReading], str],
    confirm_s: float,
) -> tuple[bool, str]:
    """Poll until ``done`` or ``confirm_s`` runs out; (done?, what the last poll showed)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + confirm_s
    while True:
        r = await poller.guarded_poll(host, port)
        if isinstance(r, AsicReading):
            if done(r):
                return True, describe(r)
            seen = describe(r)
        else:
            seen = f"unreadable ({r.cause})"
        if loop.time() >= until:
            return False, seen
        await asyncio.sleep(min(1.0, max(0.0, until - loop.time())))
