"""Sleep, wake and power-limit a miner the way its firmware does it, confirmed by reading it back.

An action is "done" only when a fresh poll shows the new state: a firmware that says "OK" and
keeps hashing must not count as curtailed in the quota engine's books.

How each firmware is driven:

- LuxOS: ``logon`` for a session, then ``curtail <sid>,sleep|wakeup`` or ``profileset
  <sid>,<profile>``, then ``logoff`` (LuxOS allows one session at a time, and a session left
  open blocks the next action for a minute).
- Whatsminer ``power_off``/``power_on``, Braiins ``pause``/``resume``: plain API commands.
- Stock Antminer: bmminer's API has no sleep, so it goes through the web UI (HTTP digest):
  read ``get_miner_conf.cgi``, post it back to ``set_miner_conf.cgi`` with ``miner-mode`` 1/0,
  then confirm over the API (a sleeping stock miner hashes 0 with its fans stopped, see
  firmware/bitmain.py). Outcomes: 401 -> refused, the CGI saying no -> refused, no web UI
  (connection refused, 404) or a conf without a work mode (pre-S19 firmware) -> unsupported,
  timeouts and other errors -> failed.

Power limits: only LuxOS has a safe way here (profiles); the others say why not.

Not done here: btminer's API v2 wants power_off/power_on encrypted with the admin password
(token + AES); this sends them plain, which the simulator and unlocked firmware accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from collectors.capabilities import ActionResult
from collectors.cgminer.client import ApiError, CgminerClient, is_error_reply, status_of
from collectors.cgminer.collector import AsicPoller
from collectors.cgminer.firmware.luxos import profile_table
from collectors.cgminer.parsers import SPECS
from collectors.cgminer.web import (
    DEFAULT_WEB_PORT,
    WORK_MODE_NORMAL,
    WORK_MODE_SLEEP,
    WebFailure,
    conf_with_work_mode,
    read_miner_conf,
    work_mode,
    write_miner_conf,
)
from collectors.readings import AsicReading

log = logging.getLogger(__name__)

# Why a family has no power limit here; the quota engine falls back to sleeping such miners.
_NO_POWER_LIMIT = {
    "bitmain": "stock Antminer firmware has no watt limit, only work modes (normal/sleep, "
    "low power on some models) in its web UI",
    "whatsminer": "btminer sets a power limit only through its encrypted admin API "
    "(token + AES), and the change restarts mining; not implemented",
    "whatsminer_v3": "Whatsminer API v3 sets a power limit only with a signed set.* command "
    "(admin password + salt token), and the change restarts mining; not implemented",
    "braiins": "Braiins OS sets its power target through its gRPC API, not the cgminer API; "
    "not implemented",
    "avalon": "Avalon firmware has work-mode levels, not a watt target",
    "cgminer": "unknown cgminer firmware: no known power limit method",
}
# A profile's watts as LuxOS reports them back may differ from the table by rounding.
_WATTS_SLACK = 0.5


async def sleep(
    host: str,
    port: int,
    firmware_family: str,
    reason: str,
    *,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
    web_port: int = DEFAULT_WEB_PORT,
    web_username: str = "root",
    web_password: str = "root",
    web_timeout_s: float = 5.0,
) -> ActionResult:
    """``web_*``: the stock Antminer web UI, used only for ``firmware_family="bitmain"``."""
    web = _Web(web_port, web_username, web_password, web_timeout_s)
    return await _act(host, port, firmware_family, reason, True, timeout_s, confirm_s, web)


async def wake(
    host: str,
    port: int,
    firmware_family: str,
    reason: str,
    *,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
    web_port: int = DEFAULT_WEB_PORT,
    web_username: str = "root",
    web_password: str = "root",
    web_timeout_s: float = 5.0,
) -> ActionResult:
    """``web_*``: the stock Antminer web UI, used only for ``firmware_family="bitmain"``."""
    web = _Web(web_port, web_username, web_password, web_timeout_s)
    return await _act(host, port, firmware_family, reason, False, timeout_s, confirm_s, web)


async def set_power_limit(
    host: str,
    port: int,
    firmware_family: str,
    watts: int,
    reason: str,
    *,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
) -> ActionResult:
    """Run the miner at no more than ``watts``, the PowerLimitable capability's shape.

    LuxOS: the highest-power profile whose watts are <= ``watts`` (never above: the target is a
    quota share). No profile that low -> unsupported, so the caller sleeps the miner instead.
    Done when a poll shows that profile's watts as ``power_limit_w``.
    """
    action = "set_power_limit"
    device = f"{host}:{port}"
    if firmware_family != "luxos":
        why = _NO_POWER_LIMIT.get(firmware_family, f"no power limit method for {firmware_family}")
        return ActionResult(device, action, "unsupported", why)
    if watts <= 0:
        return ActionResult(device, action, "unsupported", "a 0 W limit is a sleep: use sleep()")
    log.info("asic %s: power limit %d W requested (%s)", device, watts, reason)
    client = CgminerClient(timeout_s=timeout_s)
    try:
        listing = await client.command(host, port, "profiles")
        if is_error_reply(listing):
            return ActionResult(device, action, "refused", f"miner says: {status_of(listing)[1]}")
        table = profile_table(listing)
        if not table:
            return ActionResult(device, action, "failed", "LuxOS listed no profiles with watts")
        fits = [(w, name) for name, w in table.items() if w <= watts]
        if not fits:
            low_w, low = min((w, name) for name, w in table.items())
            detail = f"lowest profile {low} draws {low_w:.0f} W, above {watts} W; sleep it instead"
            return ActionResult(device, action, "unsupported", detail)
        chosen_w, chosen = max(fits)
        reply = await _luxos_privileged(client, host, port, "profileset", chosen)
    except ApiError as e:
        return ActionResult(device, action, "failed", str(e))
    if reply is None:
        return ActionResult(device, action, "refused", "LuxOS gave no session id")
    if is_error_reply(reply):
        return ActionResult(device, action, "refused", f"miner says: {status_of(reply)[1]}")

    def applied(r: AsicReading) -> bool:
        return r.power_limit_w is not None and abs(r.power_limit_w - chosen_w) <= _WATTS_SLACK

    ok, seen = await _confirm(host, port, applied, _describe_limit, timeout_s, confirm_s)
    if ok:
        detail = f"confirmed profile {chosen} ({chosen_w:.0f} W <= {watts} W); reason: {reason}"
        return ActionResult(device, action, "done", detail)
    detail = f"miner accepted profileset {chosen} ({chosen_w:.0f} W) but reads {seen}"
    return ActionResult(device, action, "failed", detail)


@dataclass(frozen=True, slots=True)
class _Web:
    port: int
    username: str
    password: str
    timeout_s: float


async def _act(
    host: str,
    port: int,
    family: str,
    reason: str,
    to_sleep: bool,
    timeout_s: float,
    confirm_s: float,
    web: _Web,
) -> ActionResult:
    action = "sleep" if to_sleep else "wake"
    device = f"{host}:{port}"
    if family == "bitmain":
        return await _act_web(host, port, reason, to_sleep, timeout_s, confirm_s, web)
    spec = SPECS.get(family)
    cmd = None if spec is None else (spec.sleep_command if to_sleep else spec.wake_command)
    if cmd is None or family == "avalon":
        return ActionResult(device, action, "unsupported", f"no {action} over the API for {family}")
    log.info("asic %s: %s requested (%s)", device, action, reason)
    client = CgminerClient(timeout_s=timeout_s)
    command, parameter = cmd
    try:
        if family == "luxos":
            reply = await _luxos_privileged(client, host, port, command, parameter)
            if reply is None:
                return ActionResult(device, action, "refused", "LuxOS gave no session id")
        else:
            reply = await client.command(host, port, command, parameter)
    except ApiError as e:
        return ActionResult(device, action, "failed", str(e))
    if is_error_reply(reply):
        return ActionResult(device, action, "refused", f"miner says: {status_of(reply)[1]}")
    want = "sleeping" if to_sleep else "mining"
    ok, got = await _confirm_state(host, port, want, timeout_s, confirm_s)
    if ok:
        return ActionResult(device, action, "done", f"confirmed {want}; reason: {reason}")
    return ActionResult(device, action, "failed", f"miner accepted {command} but reads {got}")


async def _act_web(
    host: str,
    port: int,
    reason: str,
    to_sleep: bool,
    timeout_s: float,
    confirm_s: float,
    web: _Web,
) -> ActionResult:
    action = "sleep" if to_sleep else "wake"
    device = f"{host}:{port}"
    mode = WORK_MODE_SLEEP if to_sleep else WORK_MODE_NORMAL
    log.info("asic %s: %s requested (%s) via web UI port %d", device, action, reason, web.port)
    # no proxy from the environment (a site's HTTP_PROXY must not carry LAN miner traffic), no
    # pooled connections (one short exchange per action), lighttpd's self-signed TLS if any
    async with httpx.AsyncClient(
        trust_env=False, limits=httpx.Limits(max_keepalive_connections=0), verify=False
    ) as client:
        conf = await read_miner_conf(
            client,
            host,
            port=web.port,
            username=web.username,
            password=web.password,
            timeout_s=web.timeout_s,
        )
        if isinstance(conf, WebFailure):
            return _web_result(device, action, conf)
        current = work_mode(conf)
        if current is None:
            detail = "get_miner_conf shows no work mode: this firmware has no sleep mode"
            return ActionResult(device, action, "unsupported", detail)
        # already in that mode: writing again would only restart bmminer for nothing
        if current != mode:
            failed = await write_miner_conf(
                client,
                host,
                conf_with_work_mode(conf, mode),
                port=web.port,
                username=web.username,
                password=web.password,
                timeout_s=web.timeout_s,
            )
            if failed is not None:
                return _web_result(device, action, failed)
    want = "sleeping" if to_sleep else "mining"
    ok, got = await _confirm_state(host, port, want, timeout_s, confirm_s)
    if ok:
        detail = f"confirmed {want} (web UI work mode {mode}); reason: {reason}"
        return ActionResult(device, action, "done", detail)
    return ActionResult(device, action, "failed", f"web UI took work mode {mode} but reads {got}")


def _web_result(device: str, action: str, f: WebFailure) -> ActionResult:
    if f.kind in ("auth", "rejected"):
        return ActionResult(device, action, "refused", f.detail)
    if f.kind in ("unreachable", "missing"):
        why = f"{f.detail}; stock firmware sleeps only through its web UI"
        return ActionResult(device, action, "unsupported", why)
    return ActionResult(device, action, "failed", f.detail)


async def _luxos_privileged(
    client: CgminerClient, host: str, port: int, command: str, parameter: str | None
) -> dict[str, Any] | None:
    """One session command (``<sid>,<parameter>``); None if LuxOS gave no session."""
    session = await client.command(host, port, "logon")
    rows = session.get("SESSION")
    sid = rows[0].get("SessionID") if isinstance(rows, list) and rows else None
    if not isinstance(sid, str) or not sid:
        return None
    try:
        param = f"{sid},{parameter}" if parameter is not None else sid
        return await client.command(host, port, command, param)
    finally:
        # LuxOS has one session at a time: leaving ours open would make the next action's
        # logon fail for a minute. Best effort: the session expires on its own anyway.
        with contextlib.suppress(ApiError):
            await client.command(host, port, "logoff", sid)


async def _confirm_state(
    host: str, port: int, want: str, timeout_s: float, confirm_s: float
) -> tuple[bool, str]:
    return await _confirm(
        host, port, lambda r: r.state == want, lambda r: r.state, timeout_s, confirm_s
    )


def _describe_limit(r: AsicReading) -> str:
    limit = "no power limit" if r.power_limit_w is None else f"limit {r.power_limit_w:.0f} W"
    return f"{limit}, {r.state}"


async def _confirm(
    host: str,
    port: int,
    done: Callable[[AsicReading], bool],
    describe: Callable[[AsicReading], str],
    timeout_s: float,
    confirm_s: float,
) -> tuple[bool, str]:
    """Poll until ``done`` or ``confirm_s`` runs out; (done?, what the last poll showed)."""
    # web_port=None: the stock web identity fetch is of no use to a confirmation
    poller = AsicPoller(timeout_s=timeout_s, web_port=None)
    loop = asyncio.get_running_loop()
    until = loop.time() + confirm_s
    while True:
        r = await poller.poll(host, port)
        if isinstance(r, AsicReading):
            if done(r):
                return True, describe(r)
            seen = describe(r)
        else:
            seen = f"unreadable ({r.cause})"
        if loop.time() >= until:
            return False, seen
        await asyncio.sleep(min(1.0, max(0.0, until - loop.time())))
