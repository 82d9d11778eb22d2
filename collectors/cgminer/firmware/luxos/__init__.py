"""LuxOS (Luxor) on Antminers: cgminer-compatible API plus ``config`` (identity) and ``power``.

Privileged commands (curtail, profileset) need a session from ``logon``; the session id is the
first parameter: ``{"command": "curtail", "parameter": "<sid>,sleep"}``.

Power is set by profile, not by watts: ``profiles`` lists what the machine can run
(``{"PROFILES": [{"Profile Name": "290MHz", "Watts": 2760, "Hashrate": 121.8, ...}]}``) and
``config`` names the one in use (``Profile``), so ``power_limit_w`` is that profile's watts.
The table only changes with the firmware, so it is a sticky reply (re-read every STICKY_POLLS
polls and after a reboot), not one more command in every poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from kuat.collectors.capabilities import ActionResult, PoolTarget
from kuat.collectors.cgminer.client import ApiError, CgminerClient, is_error_reply, status_of
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.common import (
    Body,
    FirmwareSpec,
    Source,
    fans_rows,
    first_num,
    integer,
    item,
    items,
    mac,
    num,
    pools,
    status_description,
    temps_rows,
    text,
)
from kuat.collectors.cgminer.firmware.controls import (
    Act,
    Controls,
    api_sleep_wake,
    comma_in,
    session_send,
)

log = logging.getLogger(__name__)


def _cfg(config: Body | None) -> dict[str, Any]:
    return item(config, "CONFIG") or {}


def _firmware(version: Body | None, config: Body | None) -> str | None:
    v = item(version, "VERSION") or {}
    fw = text(v.get("LUXminer")) or text(v.get("Miner"))
    if fw:
        return fw
    # every LuxOS reply signs itself "LUXminer <version>"
    for body in (version, config):
        desc = status_description(body)
        if desc.startswith("LUXminer "):
            return text(desc.split(" ", 1)[1])
    return None


def _hashrate(summary: Body | None) -> float | None:
    v = first_num(item(summary, "SUMMARY"), "GHS 5s", "GHS av")
    return v / 1e3 if v is not None else None


def _state(config: Body | None) -> str | None:
    mode = text(_cfg(config).get("CurtailMode"))
    if mode is None:
        return None
    return "mining" if mode.lower() == "none" else "sleeping"


def profile_table(profiles: Body | None) -> dict[str, float]:
    """``profiles`` reply -> {profile name: watts}; rows without a name or watts are skipped."""
    out: dict[str, float] = {}
    for row in items(profiles, "PROFILES"):
        name = text(row.get("Profile Name"))
        watts = num(row.get("Watts"))
        if name is not None and watts is not None and watts > 0:
            out[name] = watts
    return out


def _power_limit(config: Body | None, profiles: Body | None) -> float | None:
    name = text(_cfg(config).get("Profile"))
    if name is None:
        return None
    return profile_table(profiles).get(name)


FIELDS: dict[str, Source] = {
    "model": Source(("config",), lambda c: text(_cfg(c).get("Model"))),
    "serial": Source(("config",), lambda c: text(_cfg(c).get("SerialNumber"))),
    "mac": Source(("config",), lambda c: mac(_cfg(c).get("MACAddr"))),
    "firmware": Source(("version", "config"), _firmware),
    "hashrate_ths": Source(("summary",), _hashrate),
    "hashrate_nominal_ths": Source(("config",), lambda c: num(_cfg(c).get("NameplateTHS"))),
    "power_w": Source(("power",), lambda p: num((item(p, "POWER") or {}).get("Watts"))),
    "power_limit_w": Source(("config", "profiles"), _power_limit),
    "temps_c": Source(("temps",), temps_rows),
    "fans_rpm": Source(("fans",), fans_rows),
    "pools": Source(("pools",), pools),
    "uptime_s": Source(("summary",), lambda s: integer((item(s, "SUMMARY") or {}).get("Elapsed"))),
    "state": Source(("config",), _state),
}

SPEC = FirmwareSpec(
    family=Firmware.LUXOS,
    detect=lambda c: "luxminer" in c.vkeys or "luxminer" in c.descriptions,
    detect_rank=20,
    vendor="Bitmain",
    fields=FIELDS,
    sleep_command=("curtail", "sleep"),
    wake_command=("curtail", "wakeup"),
    sticky=frozenset({"profiles"}),
)


# --- control: one session per action (logon, <sid>,<parameter>, logoff) ----------------------


async def _sleep_wake(act: Act, to_sleep: bool) -> ActionResult:
    """``curtail <sid>,sleep|wakeup``; LuxOS allows one session at a time, so it is closed."""
    cmd = SPEC.sleep_command if to_sleep else SPEC.wake_command
    assert cmd is not None
    return await api_sleep_wake(act, to_sleep, cmd, send=session_send)


async def _power_target(act: Act, watts: int) -> ActionResult:
    """The highest-power profile whose watts are <= ``watts`` (never above: the target is a
    quota share); no profile that low -> refused without sending anything (its lowest profile
    is the miner's floor: the curtailer learns it and plans only steps above it, where
    "unsupported" would turn limits off for the miner). Done when a poll shows that profile's
    watts as ``power_limit_w``."""
    action = "set_power_limit"
    log.info("asic %s: power limit %d W requested (%s)", act.device, watts, act.reason)
    client = CgminerClient(timeout_s=act.timeout_s)
    try:
        listing = await client.command(act.host, act.port, "profiles")
        if is_error_reply(listing):
            return act.result(action, "refused", f"miner says: {status_of(listing)[1]}")
        table = profile_table(listing)
        if not table:
            return act.result(action, "failed", "LuxOS listed no profiles with watts")
        fits = [(w, name) for name, w in table.items() if w <= watts]
        if not fits:
            low_w, low = min((w, name) for name, w in table.items())
            detail = f"lowest profile {low} draws {low_w:.0f} W, above {watts} W; not sent"
            return act.result(action, "refused", detail, floor_w=low_w)
        chosen_w, chosen = max(fits)
        reply = await session_send(client, act.host, act.port, "profileset", chosen)
    except ApiError as e:
        return act.result(action, "failed", str(e))
    if isinstance(reply, str):
        return act.result(action, "refused", reply)
    if is_error_reply(reply):
        return act.result(action, "refused", f"miner says: {status_of(reply)[1]}")
    ok, seen = await act.confirm_limit(chosen_w)
    if ok:
        detail = f"confirmed profile {chosen} ({chosen_w:.0f} W <= {watts} W); reason: {act.reason}"
        return act.result(action, "done", detail)
    detail = f"miner accepted profileset {chosen} ({chosen_w:.0f} W) but reads {seen}"
    return act.result(action, "failed", detail)


# --- pools: addpool, switchpool, removepool (no session: LuxOS's api.json, logon_required false)


def _pool_ids(listing: Body | None) -> list[int]:
    """The ``POOL`` numbers of a ``pools`` reply, in its order."""
    return [i for row in items(listing, "POOLS") if (i := integer(row.get("POOL"))) is not None]


async def _set_pools(act: Act, pools: tuple[PoolTarget, ...]) -> ActionResult:
    """``addpool <url>,<user>,<pass>`` for the first pool and ``switchpool`` to it, then
    ``removepool`` every pool that was there before (highest number first, so the numbers still
    to remove stay put), then ``addpool`` the rest: the list never holds more than one pool
    beyond what it had, should the firmware cap it. LuxOS applies each at once, without a
    restart, so a sleeping miner stays asleep. Confirmed by the pools the API then lists:
    exactly these, in this order."""
    action = "set_pools"
    log.info("asic %s: pools requested (%s)", act.device, act.reason)
    bad = comma_in(pools)
    if bad is not None:
        return act.result(action, "refused", bad)
    client = CgminerClient(timeout_s=act.timeout_s)

    async def send(command: str, parameter: str | None = None, shown: str = "") -> Body | str:
        """The reply, or what the miner said when it refused (``shown`` names the request)."""
        reply = await client.command(act.host, act.port, command, parameter)
        if not is_error_reply(reply):
            return reply
        asked = shown or (f"{command} {parameter}" if parameter is not None else command)
        return _no_password(f"{asked}: miner says: {status_of(reply)[1]}", pools)

    def add(p: PoolTarget) -> Awaitable[Body | str]:
        # the password travels in the parameter: a refusal names the URL only
        return send("addpool", f"{p.url},{p.user},{p.password}", f"addpool {p.url}")

    try:
        before = await send("pools")
        if isinstance(before, str) and "no pools" in before.lower():
            before = {}  # cgminer's "No pools" is an error reply: nothing to remove
        if isinstance(before, str):
            return act.result(action, "refused", before)
        first = await add(pools[0])
        if isinstance(first, str):
            return act.result(action, "refused", first)
        after = await send("pools")
        if isinstance(after, str):
            return act.result(action, "refused", after)
        old = _pool_ids(before)
        new = [i for i in _pool_ids(after) if i not in old]
        if len(new) != 1:
            return act.result(action, "failed", f"LuxOS lists {len(new)} new pools after addpool")
        steps = [("switchpool", str(new[0]))] + [("removepool", str(i)) for i in sorted(old)[::-1]]
        for command, parameter in steps:
            done = await send(command, parameter)
            if isinstance(done, str) and command == "removepool" and "active" in done.lower():
                await asyncio.sleep(ACTIVE_RETRY_S)  # the switch not yet taken: once more
                done = await send(command, parameter)
            if isinstance(done, str):
                return act.result(action, "refused", done)
        for p in pools[1:]:
            added = await add(p)
            if isinstance(added, str):
                return act.result(action, "refused", added)
    except ApiError as e:
        return act.result(action, "failed", str(e))
    ok, seen = await act.confirm_pools(pools)
    if ok:
        return act.result(action, "done", f"confirmed {len(pools)} pools; reason: {act.reason}")
    return act.result(action, "failed", f"LuxOS took the pools but the miner reads {seen}")


# a removepool refused as "active" right after a switchpool is asked once more after this
ACTIVE_RETRY_S = 1.0


def _no_password(said: str, pools: tuple[PoolTarget, ...]) -> str:
    """A refusal as a result may say it: a pool password it echoes masked (cgminer's "Invalid
    addpool details '<url>,<user>,<pass>'" repeats the whole parameter)."""
    for p in pools:
        if p.password:
            said = said.replace(f"{p.user},{p.password}", f"{p.user},***")
    return said


CONTROLS = Controls(
    firmware=Firmware.LUXOS,
    sleep_wake=_sleep_wake,
    power_target=_power_target,
    set_pools=_set_pools,
    credentials=(),  # LuxOS's API hands a session to anyone on the LAN
    # LuxOS applies pool changes without a restart; the switch shows within a poll or two
    confirm_s={"pools": 30.0},
)
