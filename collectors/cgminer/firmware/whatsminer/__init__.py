"""MicroBT Whatsminer, btminer firmware: API v1/v2 on 4028 (SPEC), API v3 on 4433 (SPEC_V3).

summary carries almost everything (watts, limit, MAC, firmware); serial needs get_miner_info and
the sleep state needs status, both of which btminer refuses inside "a+b".
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from kuat.collectors.capabilities import ActionResult, PoolTarget
from kuat.collectors.cgminer.client import (
    ApiError,
    CgminerClient,
    decode_reply,
    exchange,
    is_error_reply,
    status_of,
)
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
    mac,
    num,
    one_temp,
    pools,
    positive,
    text,
)
from kuat.collectors.cgminer.firmware.controls import Act, Controls
from kuat.collectors.cgminer.firmware.whatsminer import v3
from kuat.collectors.cgminer.firmware.whatsminer.btminer_auth import (
    AuthError,
    V2Token,
    v2_open_reply,
    v2_request,
    v2_session,
)
from kuat.collectors.cgminer.firmware.whatsminer.v3 import V3Client
from kuat.collectors.readings import FaultSeverity, FirmwareFault

log = logging.getLogger(__name__)


def _s(summary: Body | None) -> dict[str, Any]:
    return item(summary, "SUMMARY") or {}


def _msg(body: Body | None) -> dict[str, Any]:
    m = body.get("Msg") if body else None
    return m if isinstance(m, dict) else {}


def _hashrate(summary: Body | None) -> float | None:
    # 1m rather than 5s: btminer's 5s figure swings ±20 % around the real rate
    v = first_num(_s(summary), "MHS 1m", "MHS 5s", "MHS av")
    return v / 1e6 if v is not None else None


def _nominal(summary: Body | None) -> float | None:
    v = num(_s(summary).get("Factory GHS"))
    return v / 1e3 if v else None


def _model(devdetails: Body | None) -> str | None:
    m = text((item(devdetails, "DEVDETAILS") or {}).get("Model"))
    if m is None:
        return None
    return m if m.lower().startswith("whatsminer") else f"Whatsminer {m}"


def _mac(summary: Body | None, info: Body | None) -> str | None:
    return mac(_s(summary).get("MAC")) or mac(_msg(info).get("mac"))


def _temps(summary: Body | None) -> Any:
    from kuat.collectors.readings import AsicTemps

    s = _s(summary)
    if not s:
        return None
    # summary has aggregates only: board = the board sensor, chip = hottest chip
    return AsicTemps(
        board=positive([s.get("Temperature")]),
        chip=positive([s.get("Chip Temp Max")]),
        inlet=one_temp(s.get("Env Temp")),
    )


def _fans(summary: Body | None) -> tuple[int, ...] | None:
    s = _s(summary)
    vals = [integer(s.get(k)) for k in ("Fan Speed In", "Fan Speed Out")]
    out = tuple(v for v in vals if v is not None)
    return out or None


def _state(summary: Body | None, status: Body | None) -> str | None:
    m = _msg(status)
    if str(m.get("mineroff", "")).lower() == "true" or str(m.get("btmineroff", "")) == "true":
        return "sleeping"
    return None


# MicroBT's error codes are grouped by their leading digits (code // 100: 1xx fans, 2xx power,
# 20xx pools…; six-digit codes by their first two). Per group: what it is about, and how soon a
# person should look (readings.FirmwareFault). Coarse on purpose: the firmware's own reason text,
# where it sends one (API v3), is kept as the fault's text.
_MICROBT_GROUPS: dict[int, tuple[str, FaultSeverity]] = {
    1: ("fan speed error", "warning"),
    2: ("power supply error", "critical"),
    3: ("temperature sensor or protection", "critical"),
    4: ("hash board EEPROM error", "warning"),
    5: ("hash board error", "critical"),
    6: ("environment temperature too high", "critical"),
    7: ("control board error", "warning"),
    8: ("firmware checksum error", "warning"),
    9: ("power rate error", "warning"),
    20: ("pool error", "warning"),
    21: ("factory test step failed", "info"),
    23: ("hashrate too low", "warning"),
    50: ("chip voltage, temperature or coolant flow error", "critical"),
    51: ("hash board frequency error", "warning"),
    52: ("chip error", "warning"),
    53: ("chip error", "warning"),
    54: ("chip temperature protection", "warning"),
    55: ("chip error", "warning"),
    56: ("chip error", "warning"),
}


def microbt_fault(code: Any, reason: str | None = None) -> FirmwareFault | None:
    """One MicroBT error code (110, "2010", 531…) as a FirmwareFault; None if not a code."""
    n = integer(code)
    if n is None or n < 0:
        return None
    group = n // 10000 if n >= 100_000 else n // 100
    what, severity = _MICROBT_GROUPS.get(group, ("firmware error", "info"))
    return FirmwareFault(str(n), reason or f"{what} (code {n})", severity)


def _faults(summary: Body | None) -> tuple[FirmwareFault, ...]:
    s = _s(summary)
    n = integer(s.get("Error Code Count")) or 0
    codes = [s.get(f"Error Code {i}") for i in range(min(n, 16))]
    return tuple(f for c in codes if (f := microbt_fault(c)) is not None)


FIELDS: dict[str, Source] = {
    "model": Source(("devdetails",), _model),
    "serial": Source(("get_miner_info",), lambda info: text(_msg(info).get("minersn"))),
    "mac": Source(("summary", "get_miner_info"), _mac),
    "firmware": Source(("summary",), lambda s: text(_s(s).get("Firmware Version"))),
    "hashrate_ths": Source(("summary",), _hashrate),
    "hashrate_nominal_ths": Source(("summary",), _nominal),
    "power_w": Source(("summary",), lambda s: first_num(_s(s), "Power", "Power_RT")),
    "power_limit_w": Source(("summary",), lambda s: num(_s(s).get("Power Limit"))),
    "temps_c": Source(("summary",), _temps),
    "fans_rpm": Source(("summary",), _fans),
    "pools": Source(("pools",), pools),
    "uptime_s": Source(("summary",), lambda s: integer(_s(s).get("Elapsed"))),
    "state": Source(("summary", "status"), _state),
    "faults": Source(("summary",), _faults),
}


def _detect(c: Clues) -> bool:
    return "btminer" in c.descriptions or "btminer" in str(c.version.get("Miner", "")).lower()


SPEC = FirmwareSpec(
    family=Firmware.WHATSMINER,
    detect=_detect,
    detect_rank=10,
    vendor="MicroBT",
    fields=FIELDS,
    alone=frozenset({"get_miner_info", "status"}),
    sticky=frozenset({"get_miner_info"}),
    # what btminer calls them; _v2_write sends them encrypted (btminer_auth.py), never plain
    sleep_command=("power_off", "respbefore=true"),
    wake_command=("power_on", None),
)


# --- API v3 (port 4433, length-framed; v3.py in this folder) -----------------------------
#
# Two reply bodies: ``get.device.info`` (msg.miner/network/system/power, identity) and
# ``get.miner.status`` (msg.summary/msg.pools, the live numbers; hashrates in TH/s, watts in W).
# Key names as in MicroBT's API v3 documentation and the real M60S reply in
# tests/cases/asic/whatsminer_v3/.


def _section(body: Body | None, *path: str) -> dict[str, Any]:
    cur: Any = body
    for p in ("msg", *path):
        cur = cur.get(p) if isinstance(cur, dict) else None
    return cur if isinstance(cur, dict) else {}


def _v3_summary(status: Body | None) -> dict[str, Any]:
    return _section(status, "summary")


def _v3_model(info: Body | None) -> str | None:
    # the full type (M60S_VK40): the board variant tells two M60S generations apart, and
    # models.normalise() strips it for the nameplate lookup
    m = text(_section(info, "miner").get("type"))
    if m is None:
        return None
    return m if m.lower().startswith("whatsminer") else f"Whatsminer {m}"


def _v3_hashrate(status: Body | None) -> float | None:
    # 1 min rather than realtime, for the reason the v2 parser takes "MHS 1m"
    return first_num(_v3_summary(status), "hash-1min", "hash-realtime", "hash-average")


def _v3_power(status: Body | None, info: Body | None) -> float | None:
    s = _v3_summary(status)
    # the PSU's own output reading (power.pin) only when btminer gives no figure
    v = first_num(s, "power-realtime", "power-5min")
    return v if v is not None else num(_section(info, "power").get("pin"))


def _v3_limit(status: Body | None, info: Body | None) -> float | None:
    v = num(_v3_summary(status).get("power-limit"))
    if v is None:
        v = num(_section(info, "miner").get("power-limit-set"))
    return v if v is not None and v > 0 else None


def _v3_temps(status: Body | None) -> Any:
    from kuat.collectors.readings import AsicTemps

    s = _v3_summary(status)
    if not s:
        return None
    boards = s.get("board-temperature")
    return AsicTemps(
        board=positive(boards if isinstance(boards, list) else []),
        chip=positive([s.get("chip-temp-max")]),
        inlet=one_temp(s.get("environment-temperature")),
    )


def _v3_fans(status: Body | None) -> tuple[int, ...] | None:
    s = _v3_summary(status)
    # the two case fans, as v2 reports them; the PSU fan (power.fanspeed) is not a case fan
    out = tuple(
        v for k in ("fan-speed-in", "fan-speed-out") if (v := integer(s.get(k))) is not None
    )
    return out or None


def _v3_pools(status: Body | None) -> tuple[Any, ...] | None:
    from kuat.collectors.readings import PoolInfo

    msg = status.get("msg") if status else None
    if not isinstance(msg, dict) or not isinstance(msg.get("pools"), list):
        return None
    rows = [p for p in msg["pools"] if isinstance(p, dict) and text(p.get("url"))]
    active = next((i for i, p in enumerate(rows) if p.get("stratum-active") is True), None)
    if active is None:
        # no stratum-active flag: the first alive pool in failover order is the one mining
        active = next(
            (i for i, p in enumerate(rows) if str(p.get("status", "")).lower() == "alive"), None
        )
    return tuple(
        PoolInfo(
            url=str(text(p.get("url"))),
            user=text(p.get("account")) or text(p.get("user")),
            status=text(p.get("status")),
            active=i == active,
        )
        for i, p in enumerate(rows)
    )


def _v3_state(info: Body | None) -> str | None:
    # "working": "false" is btminer stopped (set.miner.service stop, or power off): asleep
    working = str(_section(info, "miner").get("working", "")).lower()
    return "sleeping" if working == "false" else None


def _v3_faults(info: Body | None) -> tuple[FirmwareFault, ...]:
    # [{"531": "<when>", "reason": "Slot1 not found."}, …]: the code is the one other key
    rows = _section(info).get("error-code") if info else None
    out = []
    for row in rows[:64] if isinstance(rows, list) else []:
        if isinstance(row, int | str) and not isinstance(row, bool):
            fault = microbt_fault(row)  # a bare code, as some builds list them
        elif isinstance(row, dict):
            codes = [k for k in row if k != "reason"]
            fault = microbt_fault(codes[0], text(row.get("reason"))) if codes else None
        else:
            continue
        if fault is not None:
            out.append(fault)
    return tuple(out)


FIELDS_V3: dict[str, Source] = {
    "model": Source(("get.device.info",), _v3_model),
    "serial": Source(("get.device.info",), lambda i: text(_section(i, "miner").get("miner-sn"))),
    "mac": Source(("get.device.info",), lambda i: mac(_section(i, "network").get("mac"))),
    "firmware": Source(
        ("get.device.info",), lambda i: text(_section(i, "system").get("fwversion"))
    ),
    "hashrate_ths": Source(("get.miner.status",), _v3_hashrate),
    "hashrate_nominal_ths": Source(
        ("get.miner.status",), lambda s: num(_v3_summary(s).get("factory-hash")) or None
    ),
    "power_w": Source(("get.miner.status", "get.device.info"), _v3_power),
    "power_limit_w": Source(("get.miner.status", "get.device.info"), _v3_limit),
    "temps_c": Source(("get.miner.status",), _v3_temps),
    "fans_rpm": Source(("get.miner.status",), _v3_fans),
    "pools": Source(("get.miner.status",), _v3_pools),
    "uptime_s": Source(("get.miner.status",), lambda s: integer(_v3_summary(s).get("elapsed"))),
    "state": Source(("get.device.info",), _v3_state),
    "faults": Source(("get.device.info",), _v3_faults),
}

# No sleep/wake commands here: API v3 stops btminer only through a signed set.miner.service
# (admin password + the salt of get.device.info), which control.py sends itself.
PASSWORD = Credential(
    "whatsminer_password",
    "admin",
    secret=True,
    firmware=Firmware.WHATSMINER,
    key="password",
    doc="Admin password of the Whatsminer write API (API v2 token, API v3 signatures; a secret;"
    " factory default admin).",
)
V3_ACCOUNT = Credential(
    "whatsminer_v3_account",
    "super",
    firmware=Firmware.WHATSMINER,
    key="v3_account",
    doc="Whatsminer API v3 account that signs write commands.",
)
V3_PORT = Credential(
    "v3_port",
    v3.V3_PORT,
    firmware=Firmware.WHATSMINER,
    key="v3_port",
    doc="Port of Whatsminer API v3 (M6x, M7x).",
    port="api",
)
SPEC_V3 = FirmwareSpec(
    family=Firmware.WHATSMINER_V3,
    vendor="MicroBT",
    fields=FIELDS_V3,
    # length-framed JSON on its own port; tried when 4028 gives no answer on a box not known
    # as another firmware, or last seen as btminer v2 (collector.py)
    transport="v3",
    api_port=V3_PORT.name,
    fallback_from=frozenset({Firmware.WHATSMINER}),
)


def fields_from_v3_device_info(reply: Body) -> dict[str, Any]:
    """API v3 ``get.device.info`` -> identity fields (the same extractors the poller uses)."""
    return {
        "vendor": "MicroBT",
        "model": _v3_model(reply),
        "serial": FIELDS_V3["serial"].extract(reply),
        "mac": FIELDS_V3["mac"].extract(reply),
        "firmware": FIELDS_V3["firmware"].extract(reply),
    }


# --- control ---------------------------------------------------------------------------------
# v2 (4028): get_token, then power_off (respbefore), power_on or adjust_power_limit encrypted
# with a key derived from the admin password (btminer_auth.py); a plain write is refused by real
# firmware. v3 (4433): the salt from get.device.info, then a signed set.miner.service stop/start
# or set.miner.power_limit as account "super". The miner saying no (a wrong password: "check
# token error" on v2, "no permission" on v3, also what a miner whose write API is off says) ->
# refused, with its words and a hint; no answer or an undecryptable reply -> failed. The admin
# password never goes into a log line or a result.

_V2_SLEEP = ("power_off", {"respbefore": "true"})  # answer first, then cut the hashboards
_V2_WAKE: tuple[str, dict[str, str]] = ("power_on", {})
_V2_POWER_LIMIT = "adjust_power_limit"  # API v2.0.5 and later
_V3_SERVICE = "set.miner.service"
_V3_POWER_LIMIT = "set.miner.power_limit"
_V3_POOLS = "set.miner.pools"
_HINT = (
    "check the admin password given to kuat and that the miner's write API is enabled "
    "(WhatsMinerTool: change the default password, then switch the API on)"
)
_CREDENTIALS = ("whatsminer_password",)
_CREDENTIALS_V3 = ("whatsminer_password", "whatsminer_v3_account", "v3_port")
# btminer restarts mining to apply a limit, and after a wake; a power_off is quicker, but a
# sleep given up on too soon is marked failed (not retried for an hour) while the miner goes
# to sleep anyway, and the plan no longer counts it: as long as a stock Antminer's
_CONFIRM_S = {"sleep": 60.0, "limit": 120.0, "wake": 120.0}
# btminer restarts mining to apply a limit, and takes a while to start again on wake
_APPLY_S = {"limit": 20.0, "wake": 10.0}


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


def _refusal(cmd: str, reply: dict[str, Any]) -> str:
    _, msg, _ = status_of(reply)
    text = f"miner refused {cmd}: {msg or 'error without a message'}"
    # v2 45 "can't access write cmd" / 135 "check token error", v3 -4 "no permission"
    code = reply.get("Code", reply.get("code"))
    auth = code in (45, 135, -4) or any(
        w in msg.lower() for w in ("token", "permission", "write cmd")
    )
    return f"{text}; {_HINT}" if auth else text


async def _write(act: Act, action: str, cmd: str, send: Any) -> ActionResult | None:
    """Send one write; the refusal or failure as a result, None when the miner took it."""
    try:
        reply = await send
    except (ApiError, AuthError) as e:
        return act.result(action, "failed", str(e))
    if is_error_reply(reply):
        return act.result(action, "refused", _refusal(cmd, reply))
    return None


def _v3_write(act: Act, cmd: str, param: Any) -> Coroutine[Any, Any, dict[str, Any]]:
    """One signed API v3 ``set.*`` command as the access says (account, admin password)."""
    a = act.access
    return V3Client(timeout_s=act.timeout_s).set_command(
        act.host,
        a.v3_port,
        cmd,
        param,
        account=a.whatsminer_v3_account,
        password=a.whatsminer_password,
    )


async def _sleep_wake(act: Act, to_sleep: bool) -> ActionResult:
    a = act.access
    action = "sleep" if to_sleep else "wake"
    log.info("asic %s: %s requested (%s)", act.device, action, act.reason)
    if act.firmware == Firmware.WHATSMINER:
        cmd, params = _V2_SLEEP if to_sleep else _V2_WAKE
        send = _v2_write(act.host, act.port, act.timeout_s, a.whatsminer_password, cmd, **params)
    else:
        cmd = _V3_SERVICE
        send = _v3_write(act, cmd, "stop" if to_sleep else "start")
    failed = await _write(act, action, cmd, send)
    if failed is not None:
        return failed
    want = "sleeping" if to_sleep else "mining"
    ok, got = await act.confirm_state(want)
    if ok:
        return act.result(action, "done", f"confirmed {want}; reason: {act.reason}")
    return act.result(action, "failed", f"miner accepted {cmd} but reads {got}")


async def _power_target(act: Act, watts: int) -> ActionResult:
    """``watts`` itself as btminer's power limit; the miner restarts mining to apply it."""
    a = act.access
    action = "set_power_limit"
    log.info("asic %s: power limit %d W requested (%s)", act.device, watts, act.reason)
    if act.firmware == Firmware.WHATSMINER:
        cmd = _V2_POWER_LIMIT
        send = _v2_write(
            act.host, act.port, act.timeout_s, a.whatsminer_password, cmd, power_limit=str(watts)
        )
    else:
        cmd = _V3_POWER_LIMIT
        send = _v3_write(act, cmd, watts)
    failed = await _write(act, action, cmd, send)
    if failed is not None:
        return failed
    ok, seen = await act.confirm_limit(watts)
    if ok:
        return act.result(action, "done", f"confirmed limit {watts} W; reason: {act.reason}")
    return act.result(action, "failed", f"miner accepted {cmd} {watts} W but reads {seen}")


async def _set_pools(act: Act, pools: tuple[PoolTarget, ...]) -> ActionResult:
    """API v2 ``update_pools`` (pool1..3, worker1..3, passwd1..3; unused slots empty),
    encrypted like every v2 write; API v3 ``set.miner.pools`` (a list of pool/worker/passwd,
    the param encrypted under the command's token digest, btminer_auth.V3_ENCRYPTED). Either
    is confirmed by the pools the miner then reports."""
    a = act.access
    action = "set_pools"
    log.info("asic %s: pools requested (%s)", act.device, act.reason)
    if act.firmware == Firmware.WHATSMINER:
        cmd = "update_pools"
        params: dict[str, str] = {}
        for i in range(1, 4):
            p = pools[i - 1] if i <= len(pools) else None
            params[f"pool{i}"] = p.url if p else ""
            params[f"worker{i}"] = p.user if p else ""
            params[f"passwd{i}"] = p.password if p else ""
        send = _v2_write(act.host, act.port, act.timeout_s, a.whatsminer_password, cmd, **params)
    else:
        cmd = _V3_POOLS
        rows = [{"pool": p.url, "worker": p.user, "passwd": p.password} for p in pools]
        send = _v3_write(act, cmd, rows)
    failed = await _write(act, action, cmd, send)
    if failed is not None:
        return failed
    ok, seen = await act.confirm_pools(pools)
    if ok:
        return act.result(action, "done", f"confirmed {len(pools)} pools; reason: {act.reason}")
    return act.result(action, "failed", f"miner accepted {cmd} but reads {seen}")


CONTROLS = Controls(
    firmware=Firmware.WHATSMINER,
    sleep_wake=_sleep_wake,
    power_target=_power_target,
    set_pools=_set_pools,
    credentials=_CREDENTIALS,
    confirm_s=_CONFIRM_S,
    apply_s=_APPLY_S,
)
CONTROLS_V3 = Controls(
    firmware=Firmware.WHATSMINER_V3,
    sleep_wake=_sleep_wake,
    power_target=_power_target,
    set_pools=_set_pools,
    credentials=_CREDENTIALS_V3,
    confirm_s=_CONFIRM_S,
    apply_s=_APPLY_S,
)
