"""Sleep and wake a miner the way its firmware does it, confirmed by reading the miner back.

An action is "done" only when a fresh poll shows the new state: a firmware that says "OK" and
keeps hashing must not count as curtailed in the quota engine's books.

Not done here: btminer's API v2 wants power_off/power_on encrypted with the admin password
(token + AES); this sends them plain, which the simulator and unlocked firmware accept.
"""

from __future__ import annotations

import asyncio
import logging

from collectors.capabilities import ActionResult
from collectors.cgminer.client import ApiError, CgminerClient, is_error_reply, status_of
from collectors.cgminer.collector import AsicPoller
from collectors.cgminer.parsers import SPECS
from collectors.readings import AsicReading

log = logging.getLogger(__name__)


async def sleep(
    host: str,
    port: int,
    firmware_family: str,
    reason: str,
    *,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
) -> ActionResult:
    return await _act(host, port, firmware_family, reason, True, timeout_s, confirm_s)


async def wake(
    host: str,
    port: int,
    firmware_family: str,
    reason: str,
    *,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
) -> ActionResult:
    return await _act(host, port, firmware_family, reason, False, timeout_s, confirm_s)


async def _act(
    host: str,
    port: int,
    family: str,
    reason: str,
    to_sleep: bool,
    timeout_s: float,
    confirm_s: float,
) -> ActionResult:
    action = "sleep" if to_sleep else "wake"
    device = f"{host}:{port}"
    spec = SPECS.get(family)
    cmd = None if spec is None else (spec.sleep_command if to_sleep else spec.wake_command)
    if cmd is None or family == "avalon":
        return ActionResult(device, action, "unsupported", f"no {action} over the API for {family}")
    log.info("asic %s: %s requested (%s)", device, action, reason)
    client = CgminerClient(timeout_s=timeout_s)
    command, parameter = cmd
    try:
        if family == "luxos":
            # privileged LuxOS commands carry a session id as their first parameter
            session = await client.command(host, port, "logon")
            rows = session.get("SESSION")
            sid = rows[0].get("SessionID") if isinstance(rows, list) and rows else None
            if not isinstance(sid, str) or not sid:
                return ActionResult(device, action, "refused", "LuxOS gave no session id")
            parameter = f"{sid},{parameter}"
        reply = await client.command(host, port, command, parameter)
    except ApiError as e:
        return ActionResult(device, action, "failed", str(e))
    if is_error_reply(reply):
        return ActionResult(device, action, "refused", f"miner says: {status_of(reply)[1]}")
    want = "sleeping" if to_sleep else "mining"
    got = await _confirm(host, port, want, timeout_s, confirm_s)
    if got == want:
        return ActionResult(device, action, "done", f"confirmed {want}; reason: {reason}")
    return ActionResult(device, action, "failed", f"miner accepted {command} but reads {got}")


async def _confirm(host: str, port: int, want: str, timeout_s: float, confirm_s: float) -> str:
    poller = AsicPoller(timeout_s=timeout_s)
    loop = asyncio.get_running_loop()
    until = loop.time() + confirm_s
    state = "unreadable"
    while True:
        r = await poller.poll(host, port)
        state = r.state if isinstance(r, AsicReading) else f"unreadable ({r.cause})"
        if state == want or loop.time() >= until:
            return state
        await asyncio.sleep(min(1.0, max(0.0, until - loop.time())))
