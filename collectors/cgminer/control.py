"""Sleep, wake and power-limit a miner the way its firmware does it, confirmed by reading it back.

An action is "done" only when a fresh poll shows the new state: a firmware that says "OK" and
keeps hashing must not count as curtailed in the quota engine's books.

How each firmware is driven:

- LuxOS: ``logon`` for a session, then ``curtail <sid>,sleep|wakeup`` or ``profileset
  <sid>,<profile>``, then ``logoff`` (LuxOS allows one session at a time, and a session left
  open blocks the next action for a minute).
- Whatsminer, btminer API v2 (TCP 4028): ``get_token``, then ``power_off`` (with
  ``respbefore``), ``power_on`` or ``adjust_power_limit`` encrypted with a key derived from the
  admin password (btminer_auth.py). A plain write command is refused by real firmware.
- Whatsminer API v3 (TCP 4433, M6x and newer): the salt from ``get.device.info``, then a signed
  ``set.miner.service`` ``stop``/``start`` or ``set.miner.power_limit`` as account ``super``.
  Outcomes for both: the miner saying no (a wrong password: "check token error" on v2, "no
  permission" on v3, also what a miner whose write API is switched off says) -> refused, with the
  miner's words and a hint; no answer or an undecryptable reply -> failed. The admin password
  never goes into a log line or a result.
- Braiins ``pause``/``resume``: plain API commands.
- Canaan Avalon: ``ascset 0,softoff,1:<unix time>`` / ``softon`` (the firmware acts at that
  time, so now means at once); an Avalon Q may restart without answering a softon, so a wake
  with no reply is judged by the re-read.
- ePIC (HTTP API on the API port) and Vnish (web API): their own modules, epic.py and
  vnish_web.py, with their passwords.
- Stock Antminer: bmminer's API has no sleep, so it goes through the web UI (HTTP digest):
  read ``get_miner_conf.cgi``, post it back to ``set_miner_conf.cgi`` with ``miner-mode`` 1/0,
  then confirm over the API (a sleeping stock miner hashes 0 with its fans stopped, see
  firmware/bitmain.py). Outcomes: 401 -> refused, the CGI saying no -> refused, no web UI
  (connection refused, 404) or a conf without a work mode (pre-S19 firmware) -> unsupported,
  timeouts and other errors -> failed.

Power limits: LuxOS profiles; Whatsminer ``adjust_power_limit`` (v2) or
``set.miner.power_limit`` (v3), after which btminer restarts mining at the new limit; Braiins OS
25.07+ ``PUT /api/v1/performance/power-target`` on its REST API (braiins_rest.py); ePIC's tuner
target; Vnish presets. Each is confirmed when the miner reports the limit. Stock Antminers and
Avalons have no watt target (work modes only) and say so.

Every password comes in through ``MinerAccess`` and never reaches a log line or a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from kuat.collectors.capabilities import ActionResult
from kuat.collectors.cgminer import braiins_rest, epic, fluxos, vnish_web
from kuat.collectors.cgminer.btminer_auth import (
    AuthError,
    V2Token,
    v2_open_reply,
    v2_request,
    v2_session,
)
from kuat.collectors.cgminer.client import (
    ApiError,
    CgminerClient,
    decode_reply,
    exchange,
    is_error_reply,
    status_of,
)
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.luxos import profile_table
from kuat.collectors.cgminer.http_json import HttpFailure, http_client
from kuat.collectors.cgminer.parsers import SPECS
from kuat.collectors.cgminer.v3 import V3_PORT, V3Client
from kuat.collectors.cgminer.web import (
    DEFAULT_WEB_PORT,
    WORK_MODE_NORMAL,
    WORK_MODE_SLEEP,
    WebFailure,
    conf_with_work_mode,
    read_miner_conf,
    work_mode,
    write_miner_conf,
)
from kuat.collectors.readings import AsicReading

log = logging.getLogger(__name__)

# Why a family has no power limit here; the quota engine falls back to sleeping such miners.
_NO_POWER_LIMIT = {
    Firmware.BITMAIN: "stock Antminer firmware has no watt limit, only work modes (normal/sleep, "
    "low power on some models) in its web UI",
    Firmware.AVALON: "Avalon firmware has work-mode levels (ascset worklevel), not a watt target",
    Firmware.CGMINER: "unknown cgminer firmware: no known power limit method",
}
# A profile's watts as LuxOS reports them back may differ from the table by rounding.
_WATTS_SLACK = 0.5
BTMINER_FAMILIES = (Firmware.WHATSMINER, Firmware.WHATSMINER_V3)
# the write commands; v2 per "WhatsMiner API V2.0.x", v3 per MicroBT's API v3 documentation
_V2_SLEEP = ("power_off", {"respbefore": "true"})  # answer first, then cut the hashboards
_V2_WAKE = ("power_on", {})
_V3_SERVICE = "set.miner.service"
_V3_POWER_LIMIT = "set.miner.power_limit"
# what a refusal most likely means, appended to the miner's own words
_BTMINER_HINT = (
    "check the admin password given to kuat and that the miner's write API is enabled "
    "(WhatsMinerTool: change the default password, then switch the API on)"
)


@dataclass(frozen=True, slots=True)
class MinerAccess:
    """How kuat may act on each firmware's miners; the passwords stay out of every repr.

    Factory defaults throughout, so a site overrides only what it changed (``[asic]`` in the
    config). Used only when enforcement is on.
    """

    web_port: int = DEFAULT_WEB_PORT  # stock Antminer web UI (sleep mode), Vnish web API
    web_username: str = "root"
    web_password: str = field(default="root", repr=False)
    web_timeout_s: float = 5.0
    whatsminer_password: str = field(default="admin", repr=False)
    whatsminer_v3_account: str = "super"
    v3_port: int = V3_PORT
    braiins_username: str = "root"
    braiins_password: str = field(default="", repr=False)
    braiins_web_port: int = DEFAULT_WEB_PORT
    epic_password: str = field(default=epic.DEFAULT_PASSWORD, repr=False)
    vnish_password: str = field(default=vnish_web.DEFAULT_PASSWORD, repr=False)
    auradine_web_port: int = fluxos.DEFAULT_WEB_PORT  # FluxOS's HTTP API (token auth)
    auradine_username: str = fluxos.DEFAULT_USER
    auradine_password: str = field(default=fluxos.DEFAULT_PASSWORD, repr=False)


def _access(
    access: MinerAccess | None,
    web_port: int,
    web_username: str,
    web_password: str,
    web_timeout_s: float,
    admin_password: str,
    v3_account: str,
    v3_port: int,
) -> MinerAccess:
    # the keyword arguments predate MinerAccess; an access bundle, when given, wins
    if access is not None:
        return access
    return MinerAccess(
        web_port=web_port,
        web_username=web_username,
        web_password=web_password,
        web_timeout_s=web_timeout_s,
        whatsminer_password=admin_password,
        whatsminer_v3_account=v3_account,
        v3_port=v3_port,
    )


async def sleep(
    host: str,
    port: int,
    firmware_family: str,
    reason: str,
    *,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
    access: MinerAccess | None = None,
    web_port: int = DEFAULT_WEB_PORT,
    web_username: str = "root",
    web_password: str = "root",
    web_timeout_s: float = 5.0,
    admin_password: str = "admin",
    v3_account: str = "super",
    v3_port: int = V3_PORT,
) -> ActionResult:
    """Put the miner to sleep the way its firmware does (module docstring), confirmed.

    ``access``: passwords and ports per firmware. The older keywords (``web_*`` for stock
    Antminers, ``admin_password``/``v3_*`` for Whatsminers) apply when ``access`` is None.
    """
    a = _access(
        access,
        web_port,
        web_username,
        web_password,
        web_timeout_s,
        admin_password,
        v3_account,
        v3_port,
    )
    return await _act(host, port, firmware_family, reason, True, timeout_s, confirm_s, a)


async def wake(
    host: str,
    port: int,
    firmware_family: str,
    reason: str,
    *,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
    access: MinerAccess | None = None,
    web_port: int = DEFAULT_WEB_PORT,
    web_username: str = "root",
    web_password: str = "root",
    web_timeout_s: float = 5.0,
    admin_password: str = "admin",
    v3_account: str = "super",
    v3_port: int = V3_PORT,
) -> ActionResult:
    """As ``sleep``, the other way."""
    a = _access(
        access,
        web_port,
        web_username,
        web_password,
        web_timeout_s,
        admin_password,
        v3_account,
        v3_port,
    )
    return await _act(host, port, firmware_family, reason, False, timeout_s, confirm_s, a)


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
    admin_password: str = "admin",
    v3_account: str = "super",
    v3_port: int = V3_PORT,
) -> ActionResult:
    """Run the miner at no more than ``watts``, the PowerLimitable capability's shape.

    LuxOS: the highest-power profile whose watts are <= ``watts`` (never above: the target is a
    quota share). No profile that low -> unsupported, so the caller sleeps the miner instead.
    Done when a poll shows that profile's watts as ``power_limit_w``.

    Whatsminer: ``watts`` itself as btminer's power limit; the miner restarts mining to apply
    it, so give ``confirm_s`` a minute or more on real hardware. Braiins OS (25.07+): the
    tuner's power target over its REST API. ePIC: the tuner's Power target; Vnish: the highest
    preset at or below ``watts``. Done when a poll shows the new limit.
    """
    a = _access(access, DEFAULT_WEB_PORT, "root", "root", 5.0, admin_password, v3_account, v3_port)
    action = "set_power_limit"
    device = f"{host}:{port}"
    supported = (
        Firmware.LUXOS,
        Firmware.BRAIINS,
        Firmware.VNISH,
        Firmware.EPIC,
        Firmware.AURADINE,
        *BTMINER_FAMILIES,
    )
    if firmware_family not in supported:
        why = _NO_POWER_LIMIT.get(firmware_family, f"no power limit method for {firmware_family}")
        return ActionResult(device, action, "unsupported", why)
    if watts <= 0:
        return ActionResult(device, action, "unsupported", "a 0 W limit is a sleep: use sleep()")
    if firmware_family == Firmware.BRAIINS:
        return await _braiins_limit(host, port, watts, reason, timeout_s, confirm_s, a)
    if firmware_family == Firmware.AURADINE:
        return await _fluxos_act(host, port, reason, None, watts, timeout_s, confirm_s, a)
    if firmware_family == Firmware.EPIC:
        return await epic.set_power_limit(
            host,
            watts,
            reason,
            port=port,
            password=a.epic_password,
            timeout_s=timeout_s,
            confirm_s=confirm_s,
        )
    if firmware_family == Firmware.VNISH:
        got = await vnish_web.set_power_limit(
            host,
            watts,
            reason,
            web_port=a.web_port,
            password=a.vnish_password,
            timeout_s=a.web_timeout_s,
            confirm_s=confirm_s,
        )
        return dataclasses.replace(got, device_id=device)
    if firmware_family in BTMINER_FAMILIES:
        bt = _Btminer(a.whatsminer_password, a.whatsminer_v3_account, a.v3_port)
        return await _btminer_limit(
            host, port, firmware_family, watts, reason, timeout_s, confirm_s, bt
        )
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


@dataclass(frozen=True, slots=True)
class _Btminer:
    """Whatsminer write access; the password stays out of any repr that reaches a log."""

    password: str = field(repr=False)
    v3_account: str
    v3_port: int


# --- Whatsminer (btminer) -------------------------------------------------------------------


async def _act_btminer(
    host: str,
    port: int,
    family: str,
    reason: str,
    to_sleep: bool,
    timeout_s: float,
    confirm_s: float,
    bt: _Btminer,
) -> ActionResult:
    action = "sleep" if to_sleep else "wake"
    device = f"{host}:{port}"
    log.info("asic %s: %s requested (%s)", device, action, reason)
    try:
        if family == Firmware.WHATSMINER:
            cmd, params = _V2_SLEEP if to_sleep else _V2_WAKE
            reply = await _v2_write(host, port, timeout_s, bt.password, cmd, **params)
        else:
            cmd = _V3_SERVICE
            param = "stop" if to_sleep else "start"
            reply = await V3Client(timeout_s=timeout_s).set_command(
                host, bt.v3_port, cmd, param, account=bt.v3_account, password=bt.password
            )
    except (ApiError, AuthError) as e:
        return ActionResult(device, action, "failed", str(e))
    if is_error_reply(reply):
        return ActionResult(device, action, "refused", _btminer_refusal(cmd, reply))
    want = "sleeping" if to_sleep else "mining"
    ok, got = await _confirm(
        host,
        port,
        lambda r: r.state == want,
        lambda r: r.state,
        timeout_s,
        confirm_s,
        v3_port=bt.v3_port,
    )
    if ok:
        return ActionResult(device, action, "done", f"confirmed {want}; reason: {reason}")
    return ActionResult(device, action, "failed", f"miner accepted {cmd} but reads {got}")


async def _btminer_limit(
    host: str,
    port: int,
    family: str,
    watts: int,
    reason: str,
    timeout_s: float,
    confirm_s: float,
    bt: _Btminer,
) -> ActionResult:
    action = "set_power_limit"
    device = f"{host}:{port}"
    log.info("asic %s: power limit %d W requested (%s)", device, watts, reason)
    try:
        if family == Firmware.WHATSMINER:
            cmd = "adjust_power_limit"  # API v2.0.5 and later
            reply = await _v2_write(host, port, timeout_s, bt.password, cmd, power_limit=str(watts))
        else:
            cmd = _V3_POWER_LIMIT
            reply = await V3Client(timeout_s=timeout_s).set_command(
                host, bt.v3_port, cmd, watts, account=bt.v3_account, password=bt.password
            )
    except (ApiError, AuthError) as e:
        return ActionResult(device, action, "failed", str(e))
    if is_error_reply(reply):
        return ActionResult(device, action, "refused", _btminer_refusal(cmd, reply))

    def applied(r: AsicReading) -> bool:
        return r.power_limit_w is not None and abs(r.power_limit_w - watts) <= _WATTS_SLACK

    ok, seen = await _confirm(
        host, port, applied, _describe_limit, timeout_s, confirm_s, v3_port=bt.v3_port
    )
    if ok:
        return ActionResult(device, action, "done", f"confirmed limit {watts} W; reason: {reason}")
    detail = f"miner accepted {cmd} {watts} W but reads {seen}"
    return ActionResult(device, action, "failed", detail)


async def _v2_write(
    host: str, port: int, timeout_s: float, password: str, cmd: str, **params: str
) -> dict[str, Any]:
    """One btminer API v2 write command: a fresh token, then the command encrypted with it.

    Returns the decrypted reply, or the miner's plain error (a refused token, say) as it came.
    """
    client = CgminerClient(timeout_s=timeout_s)
    deadline_at = client.deadline()
    # a token per command: they expire in 30 min and a miner hands out 32 per client IP
    got = await client.command(host, port, "get_token", deadline_at=deadline_at)
    if is_error_reply(got):
        return got
    session = v2_session(password, V2Token.from_reply(got))
    raw = await exchange(
        host,
        port,
        v2_request(session, cmd, **params),
        deadlines=client.deadlines,
        deadline_at=deadline_at,
        max_reply_bytes=client.max_reply_bytes,
    )
    return v2_open_reply(session, decode_reply(raw))


def _btminer_refusal(cmd: str, reply: dict[str, Any]) -> str:
    _, msg, _ = status_of(reply)
    text = f"miner refused {cmd}: {msg or 'error without a message'}"
    return f"{text}; {_BTMINER_HINT}" if _is_auth_refusal(reply, msg) else text


def _is_auth_refusal(reply: dict[str, Any], msg: str) -> bool:
    """v2 45 "can't access write cmd" / 135 "check token error", v3 -4 "no permission"."""
    code = reply.get("Code", reply.get("code"))
    words = ("token", "permission", "write cmd")
    return code in (45, 135, -4) or any(w in msg.lower() for w in words)


async def _act(
    host: str,
    port: int,
    family: str,
    reason: str,
    to_sleep: bool,
    timeout_s: float,
    confirm_s: float,
    a: MinerAccess,
) -> ActionResult:
    action = "sleep" if to_sleep else "wake"
    device = f"{host}:{port}"
    if family == Firmware.BITMAIN:
        web = _Web(a.web_port, a.web_username, a.web_password, a.web_timeout_s)
        return await _act_web(host, port, reason, to_sleep, timeout_s, confirm_s, web)
    if family in BTMINER_FAMILIES:
        bt = _Btminer(a.whatsminer_password, a.whatsminer_v3_account, a.v3_port)
        return await _act_btminer(host, port, family, reason, to_sleep, timeout_s, confirm_s, bt)
    if family == Firmware.AURADINE:
        return await _fluxos_act(host, port, reason, to_sleep, None, timeout_s, confirm_s, a)
    if family == Firmware.EPIC:
        act = epic.sleep if to_sleep else epic.wake
        return await act(
            host,
            reason,
            port=port,
            password=a.epic_password,
            timeout_s=timeout_s,
            confirm_s=confirm_s,
        )
    if family == Firmware.VNISH:
        vact = vnish_web.sleep if to_sleep else vnish_web.wake
        got = await vact(
            host,
            reason,
            web_port=a.web_port,
            password=a.vnish_password,
            timeout_s=a.web_timeout_s,
            confirm_s=confirm_s,
        )
        return dataclasses.replace(got, device_id=device)
    spec = SPECS.get(family)
    cmd = None if spec is None else (spec.sleep_command if to_sleep else spec.wake_command)
    if cmd is None:
        return ActionResult(device, action, "unsupported", f"no {action} over the API for {family}")
    log.info("asic %s: %s requested (%s)", device, action, reason)
    client = CgminerClient(timeout_s=timeout_s)
    command, parameter = cmd
    if family == Firmware.AVALON:
        # "1:<unix time>": the firmware acts at that time; now means at once
        parameter = f"{parameter},1:{int(time.time())}"
    try:
        if family == Firmware.LUXOS:
            reply = await _luxos_privileged(client, host, port, command, parameter)
            if reply is None:
                return ActionResult(device, action, "refused", "LuxOS gave no session id")
        else:
            reply = await client.command(host, port, command, parameter)
    except ApiError as e:
        if family != "avalon" or to_sleep:
            return ActionResult(device, action, "failed", str(e))
        # An Avalon Q may restart its miner on softon without answering: the re-read decides.
        reply = None
    if reply is not None and is_error_reply(reply):
        return ActionResult(device, action, "refused", f"miner says: {status_of(reply)[1]}")
    want = "sleeping" if to_sleep else "mining"
    ok, got = await _confirm_state(host, port, want, timeout_s, confirm_s)
    if ok:
        return ActionResult(device, action, "done", f"confirmed {want}; reason: {reason}")
    return ActionResult(device, action, "failed", f"miner accepted {command} but reads {got}")


async def _braiins_limit(
    host: str,
    port: int,
    watts: int,
    reason: str,
    timeout_s: float,
    confirm_s: float,
    a: MinerAccess,
) -> ActionResult:
    """The tuner's power target over the REST API, confirmed by ``tunerstatus`` on the API."""
    action = "set_power_limit"
    device = f"{host}:{port}"
    log.info("asic %s: power target %d W requested (%s)", device, watts, reason)
    async with http_client() as client:
        got = await braiins_rest.set_power_target(
            client,
            host,
            watts,
            port=a.braiins_web_port,
            username=a.braiins_username,
            password=a.braiins_password,
            timeout_s=a.web_timeout_s,
        )
    if isinstance(got, HttpFailure):
        if got.kind in ("auth", "rejected"):
            return ActionResult(device, action, "refused", got.detail)
        if got.kind in ("missing", "unreachable", "protocol"):
            why = f"{got.detail}; the power target needs Braiins OS 25.07 or later"
            return ActionResult(device, action, "unsupported", why)
        return ActionResult(device, action, "failed", got.detail)

    def applied(r: AsicReading) -> bool:
        return r.power_limit_w is not None and abs(r.power_limit_w - got) <= _WATTS_SLACK

    ok, seen = await _confirm(host, port, applied, _describe_limit, timeout_s, confirm_s)
    if ok:
        return ActionResult(device, action, "done", f"confirmed target {got} W; reason: {reason}")
    return ActionResult(device, action, "failed", f"miner took target {got} W but reads {seen}")


async def _fluxos_act(
    host: str,
    port: int,
    reason: str,
    to_sleep: bool | None,
    watts: int | None,
    timeout_s: float,
    confirm_s: float,
    a: MinerAccess,
) -> ActionResult:
    """Auradine: sleep/wake (``to_sleep``) or a power target (``watts``) over FluxOS's HTTP
    API, confirmed by the ``mode`` reply on the cgminer-style API."""
    device = f"{host}:{port}"
    if watts is not None:
        action, body = "set_power_limit", {"mode": "custom", "tune": "power", "power": watts}
    else:
        action = "sleep" if to_sleep else "wake"
        body = {"sleep": "on" if to_sleep else "off"}
    log.info("asic %s: %s requested over FluxOS (%s)", device, action, reason)
    got = await fluxos.set_mode(
        host,
        body,
        port=a.auradine_web_port,
        user=a.auradine_username,
        password=a.auradine_password,
        timeout_s=a.web_timeout_s,
    )
    if got is not None:
        if got.kind in ("auth", "rejected"):
            return ActionResult(device, action, "refused", got.detail)
        if got.kind in ("missing", "unreachable", "protocol"):
            return ActionResult(device, action, "unsupported", got.detail)
        return ActionResult(device, action, "failed", got.detail)
    if watts is not None:

        def applied(r: AsicReading) -> bool:
            return r.power_limit_w is not None and abs(r.power_limit_w - watts) <= _WATTS_SLACK

        ok, seen = await _confirm(host, port, applied, _describe_limit, timeout_s, confirm_s)
        if ok:
            return ActionResult(device, action, "done", f"confirmed {watts} W; reason: {reason}")
        return ActionResult(device, action, "failed", f"miner took {watts} W but reads {seen}")
    want = "sleeping" if to_sleep else "mining"
    ok, state = await _confirm_state(host, port, want, timeout_s, confirm_s)
    if ok:
        return ActionResult(device, action, "done", f"confirmed {want}; reason: {reason}")
    return ActionResult(device, action, "failed", f"miner accepted the mode but reads {state}")


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
    *,
    v3_port: int = V3_PORT,
) -> tuple[bool, str]:
    """Poll until ``done`` or ``confirm_s`` runs out; (done?, what the last poll showed)."""
    # no identity fetches (stock web UI, Braiins REST): of no use to a confirmation
    poller = AsicPoller(timeout_s=timeout_s, web_port=None, braiins_web_port=None, v3_port=v3_port)
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
