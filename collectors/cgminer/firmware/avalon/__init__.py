"""Canaan AvalonMiner (cgminer 4.11 + Avalon driver).

``stats`` packs the controller's readings into one string of ``Key[value]`` brackets, under
``MM ID0`` (A-series: 1246, 1366…) or ``MM ID0:Summary`` (Avalon Q, which wraps it as
``'STATS':{…}`` and moves the per-chip arrays to ``HBinfo``). Real replies of both are case
folders in tests/cases/asic/avalon/.

Pools: ``setpool <web user>,<web password>,<slot 0-2>,<url>,<user>,<pass>`` saves one of the
three slots, checked against the web UI's login, and the firmware applies them at its next start
(its reply ends "Please reboot miner to make config work"); ``ascset 0,reboot,0`` is that start.
Source: Canaan's cgminer fork for the Avalon Nano 3/Q (api.c ``setpool``: 5 or 6 comma-separated
fields, ``Pool set error: username err|userpass err`` with code 132, ``Pool set info`` with 133),
AvalonPS7's Set-AvalonMinerPoolConfig.ps1 and AvalonMinerTools' API document (``setpool``,
``ascset 0,reboot,<delay>``). No capture of these replies: the simulator follows that source.

Sleep is "soft off": ``ascset 0,softoff,1:<unix time>`` (``softon`` to wake), which the firmware
acknowledges with ``ASC 0 set info: success softoff:<time>``. A soft-off miner shows
``SoftOFF[n]`` with n > 0 and ``SYSTEMSTATU[Work: In Idle…]``, fans stopped, 0 hashrate.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from kuat.collectors.capabilities import ActionResult, PoolTarget
from kuat.collectors.cgminer.client import ApiError, CgminerClient, is_error_reply, status_of
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.common import (
    Body,
    Clues,
    Credential,
    FirmwareSpec,
    Source,
    first_num,
    integer,
    item,
    items,
    mac,
    num,
    pools,
    positive,
    text,
)
from kuat.collectors.cgminer.firmware.controls import (
    Act,
    Controls,
    api_sleep_wake,
    asleep_for_a_restart,
    comma_in,
)

log = logging.getLogger(__name__)

_BRACKET = re.compile(r"(\w[\w ]*?)\[([^\]]*)\]")


def parse_mm(s: str) -> dict[str, str]:
    """'Ver[1246-83] Temp[25] Fan1[4000]' -> {'Ver': '1246-83', 'Temp': '25', 'Fan1': '4000'}."""
    return {k.strip(): v for k, v in _BRACKET.findall(s)}


def _mm(stats: Body | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for row in items(stats, "STATS"):
        for k, v in row.items():
            if k.startswith("MM ID") and isinstance(v, str):
                out.update(parse_mm(v))
    return out


def _list(value: str | None) -> list[float]:
    """'77 77 76' -> [77.0, 77.0, 76.0]; per-board values are space-separated."""
    if not value:
        return []
    return [f for f in (num(x) for x in value.split()) if f is not None]


def _model(version: Body | None, stats: Body | None) -> str | None:
    v = item(version, "VERSION") or {}
    prod = text(v.get("PROD"))
    if prod:
        return prod
    if text(v.get("MODEL")):
        return f"AvalonMiner {v['MODEL']}"
    # without a version reply, "Ver[1246-83-…]" starts with the model number
    ver = _mm(stats).get("Ver", "")
    head = ver.split("-", 1)[0]
    return f"AvalonMiner {head}" if head.isdigit() else None


def _hashrate(summary: Body | None, stats: Body | None) -> float | None:
    v = first_num(item(summary, "SUMMARY"), "MHS 5s", "MHS 1m")
    if v is not None:
        return v / 1e6
    # GHSspd is the current speed; GHSmm is the controller's expected maximum, not a rate
    g = first_num(_mm(stats), "GHSspd", "GHSavg")
    return g / 1e3 if g is not None else None


def _temps(stats: Body | None) -> Any:
    from kuat.collectors.readings import AsicTemps

    mm = _mm(stats)
    if not mm:
        return None
    board = positive(_list(mm.get("MTavg"))) or positive([mm.get("HBOTemp")])
    chip = positive(_list(mm.get("MTmax"))) or positive([mm.get("TMax")])
    inlet = positive([mm.get("Temp") or mm.get("ITemp")])
    return AsicTemps(board=board, chip=chip, inlet=inlet)


def _fans(stats: Body | None) -> tuple[int, ...] | None:
    mm = _mm(stats)
    fans = [integer(mm.get(f"Fan{i}")) for i in range(1, 9) if f"Fan{i}" in mm]
    out = tuple(f for f in fans if f is not None)
    return out or None


def _power(stats: Body | None) -> float | None:
    mm = _mm(stats)
    wall = num(mm.get("WALLPOWER"))
    if wall is not None:
        return wall
    # PS[err vcntl vout iout pout … pin]: the fifth value is the PSU's output watts on both the
    # A-series and the Q (3189 W on the mining 1246 capture, 0 on the soft-off Q); the seventh
    # its input, the wall watts (WALLPOWER's 3731 on the A15 capture). The Nano 3s, fed by an
    # external adapter, leaves the output at 0 while it mines at PS[6] = MPO = 133 W (its
    # capture): a working miner's 0 W output is no reading, and its input is the figure.
    ps = _list(mm.get("PS"))
    if len(ps) <= 4:
        return None
    if ps[4] == 0 and len(ps) > 6 and ps[6] > 0 and _state(stats) is None:
        return ps[6]
    return ps[4]


def _state(stats: Body | None) -> str | None:
    mm = _mm(stats)
    soft_off = integer(mm.get("SoftOFF"))
    if soft_off is not None and soft_off > 0:
        return "sleeping"
    if "in idle" in mm.get("SYSTEMSTATU", "").lower():
        return "sleeping"
    return None


# --- faults: what the MM controller string itself flags ----------------------------------------
#
# ECMM[n] is the controller (MM) board's error code, ECHU[a b c] one code per hash board
# (ECHU[n] on one-board models). Canaan's log description for the A10-A12 generation says no
# more than: ECMM 0 is normal, anything else a controller fault or a bad contact with the hash
# boards; ECHU 0 or 512 is normal, any other value (513…) an abnormal hash board. So 512 (a
# status bit, no fault) is masked, and the rest named by board with its raw value; bit 0, the
# one bit Canaan's example shows abnormal (513 = 512 + 1), is the board's communication. PS's
# first value is the PSU's error code (0: none), FanErr (Avalon Q, Nano) the fan module's.
_ECHU_STATUS_BIT = 512


def _avalon_faults(stats: Body | None) -> tuple[Any, ...]:
    from kuat.collectors.readings import FaultSeverity, FirmwareFault

    mm = _mm(stats)
    out: list[FirmwareFault] = []
    ecmm = integer(mm.get("ECMM"))
    if ecmm:
        text_ = (
            f"controller (MM) board error {ecmm}: the MM board or its contact with the hash boards"
        )
        out.append(FirmwareFault(f"ECMM:{ecmm}", text_, "warning"))
    for board, raw in enumerate(_list(mm.get("ECHU"))[:16], start=1):
        code = int(raw) & ~_ECHU_STATUS_BIT if 0 <= raw < 2**32 else 0
        if code:
            # a board the controller cannot talk to hashes nothing; other codes degrade it
            lost = bool(code & 1)
            what = "communication failure" if lost else f"error {code}"
            text_ = f"hash board {board}: {what} (ECHU {int(raw)})"
            severity: FaultSeverity = "critical" if lost else "warning"
            out.append(FirmwareFault(f"ECHU{board}:{int(raw)}", text_, severity))
    ps = _list(mm.get("PS"))
    if ps and ps[0] > 0:
        out.append(
            FirmwareFault(f"PS:{int(ps[0])}", f"power supply error {int(ps[0])}", "critical")
        )
    fan_err = integer(mm.get("FanErr"))
    if fan_err:
        out.append(FirmwareFault(f"FanErr:{fan_err}", f"fan error {fan_err}", "warning"))
    return tuple(out)


def _uptime(summary: Body | None, stats: Body | None) -> int | None:
    up = integer((item(summary, "SUMMARY") or {}).get("Elapsed"))
    return up if up is not None else integer(_mm(stats).get("Elapsed"))


FIELDS: dict[str, Source] = {
    "model": Source(("version", "stats"), _model),
    "mac": Source(("version",), lambda v: mac((item(v, "VERSION") or {}).get("MAC"))),
    "firmware": Source(("stats",), lambda s: text(_mm(s).get("Ver"))),
    "hashrate_ths": Source(("summary", "stats"), _hashrate),
    "power_w": Source(("stats",), _power),
    "power_limit_w": Source(("stats",), lambda s: num(_mm(s).get("MPO"))),
    "temps_c": Source(("stats",), _temps),
    "fans_rpm": Source(("stats",), _fans),
    "pools": Source(("pools",), pools),
    "uptime_s": Source(("summary", "stats"), _uptime),
    "state": Source(("stats",), _state),
    "faults": Source(("stats",), _avalon_faults),
}


def _detect(c: Clues) -> bool:
    if str(c.version.get("PROD", "")).lower().startswith("avalon"):
        return True
    rows = (c.bodies.get("stats") or {}).get("STATS")
    if isinstance(rows, list):
        for r in rows:  # a loop, not any(): this runs on every poll of every miner
            # "MM ID0" on the A-series, "MM ID0:Summary" on the Avalon Q
            if isinstance(r, dict) and ("MM ID0" in r or "MM ID0:Summary" in r):
                return True
    return False


SPEC = FirmwareSpec(
    family=Firmware.AVALON,
    detect=_detect,
    detect_rank=50,
    vendor="Canaan",
    fields=FIELDS,
    # the parameter gets ",1:<unix time>" appended when sent (_sleep_wake): the firmware acts at
    # that time, so "now" means at once
    sleep_command=("ascset", "0,softoff"),
    wake_command=("ascset", "0,softon"),
)


# --- control: soft-off/soft-on; work-mode levels only, no watt target ------------------------


async def _sleep_wake(act: Act, to_sleep: bool) -> ActionResult:
    """``ascset 0,softoff,1:<unix time>`` / ``softon``: an Avalon Q may restart without
    answering a softon, so a wake with no reply is judged by the re-read."""
    cmd = SPEC.sleep_command if to_sleep else SPEC.wake_command
    assert cmd is not None
    return await api_sleep_wake(act, to_sleep, cmd, at_time=True, wake_may_not_answer=True)


# --- pools: setpool per slot, then the restart that applies them ----------------------------

# the web UI's login, which setpool checks (the firmware's factory account is admin)
USERNAME = Credential(
    "avalon_username",
    "admin",
    firmware=Firmware.AVALON,
    key="username",
    doc="User of the Avalon web UI, which its setpool command checks (factory default admin).",
)
PASSWORD = Credential(
    "avalon_password",
    "admin",
    secret=True,
    firmware=Firmware.AVALON,
    key="password",
    doc="Password of the Avalon web UI, for setpool (a secret; factory default admin).",
)
SLOTS = 3  # setpool takes slots 0-2 and cannot empty one
REBOOT = ("ascset", "0,reboot,0")


async def _set_pools(act: Act, pools: tuple[PoolTarget, ...]) -> ActionResult:
    """``setpool`` into all three slots (the last pool repeated into slots left over: a slot
    cannot be emptied, and a foreign pool must not stay behind as a failover), then
    ``ascset 0,reboot,0``, the restart the firmware applies them at; confirmed by the pools
    the API lists once it is back. A miner asleep for the quota is left alone (the restart
    would wake it)."""
    a, action = act.access, "set_pools"
    log.info("asic %s: pools requested (%s)", act.device, act.reason)
    bad = comma_in(pools)
    if bad is not None:
        return act.result(action, "refused", bad)
    held = await asleep_for_a_restart(act, "rebooting")
    if held is not None:
        return held
    slots = tuple(pools[min(i, len(pools) - 1)] for i in range(SLOTS))
    client = CgminerClient(timeout_s=act.timeout_s)
    try:
        for i, p in enumerate(slots):
            param = f"{a.avalon_username},{a.avalon_password},{i},{p.url},{p.user},{p.password}"
            reply = await client.command(act.host, act.port, "setpool", param)
            if is_error_reply(reply):
                said = status_of(reply)[1]
                if "invalid command" in said.lower():
                    detail = "this Avalon firmware has no setpool command (Nano 3/Q-era has)"
                    return act.result(action, "unsupported", detail)
                return act.result(action, "refused", f"setpool slot {i}: miner says: {said}")
    except ApiError as e:
        return act.result(action, "failed", str(e))
    try:
        reply = await client.command(act.host, act.port, *REBOOT)
        if is_error_reply(reply):
            said = status_of(reply)[1]
            detail = f"pools saved, but the reboot that applies them was refused: {said}"
            return act.result(action, "refused", detail)
    except ApiError:
        pass  # a box going down may close the connection before it answers
    ok, seen = await act.confirm_pools(slots)
    if ok:
        extra = f" (slot {len(pools) + 1}+ repeats the last)" if len(pools) < SLOTS else ""
        detail = f"confirmed {len(pools)} pools{extra} after a reboot; reason: {act.reason}"
        return act.result(action, "done", detail)
    return act.result(action, "failed", f"Avalon saved the pools and rebooted but reads {seen}")


CONTROLS = Controls(
    firmware=Firmware.AVALON,
    sleep_wake=_sleep_wake,
    set_pools=_set_pools,
    credentials=("avalon_username", "avalon_password"),
    # a reboot: the controller boots, cgminer starts and reconnects within a few minutes
    confirm_s={"pools": 240.0},
    no_power_target="Avalon firmware has work-mode levels (ascset worklevel), not a watt target",
)
