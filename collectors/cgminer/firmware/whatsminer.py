"""MicroBT Whatsminer, btminer firmware (API v1/v2 on 4028).

summary carries almost everything (watts, limit, MAC, firmware); serial needs get_miner_info and
the sleep state needs status, both of which btminer refuses inside "a+b".
"""

from __future__ import annotations

from typing import Any

from collectors.cgminer.firmware.common import (
    Body,
    FirmwareSpec,
    Source,
    first_num,
    integer,
    item,
    mac,
    num,
    pools,
    positive,
    text,
)


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
    from collectors.readings import AsicTemps

    s = _s(summary)
    if not s:
        return None
    # summary has aggregates only: board = the board sensor, chip = hottest chip
    return AsicTemps(
        board=positive([s.get("Temperature")]),
        chip=positive([s.get("Chip Temp Max")]),
        inlet=tuple(t for t in [num(s.get("Env Temp"))] if t is not None),
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


def _errors(summary: Body | None) -> tuple[str, ...]:
    s = _s(summary)
    n = integer(s.get("Error Code Count")) or 0
    codes = [integer(s.get(f"Error Code {i}")) for i in range(min(n, 16))]
    return tuple(f"miner error code {c}" for c in codes if c is not None)


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
    "errors": Source(("summary",), _errors),
}

SPEC = FirmwareSpec(
    family="whatsminer",
    vendor="MicroBT",
    fields=FIELDS,
    alone=frozenset({"get_miner_info", "status"}),
    sticky=frozenset({"get_miner_info"}),
    sleep_command=("power_off", "respbefore=true"),
    wake_command=("power_on", None),
)


def fields_from_v3_device_info(reply: Body) -> dict[str, Any]:
    """API v3 ``get.device.info`` (port 4433, length-framed) -> identity fields.

    Not polled yet (v3 needs its own framing); kept so the identity mapping is fixed and tested.
    """
    msg = reply.get("msg") if isinstance(reply.get("msg"), dict) else {}
    miner = msg.get("miner") if isinstance(msg.get("miner"), dict) else {}
    net = msg.get("network") if isinstance(msg.get("network"), dict) else {}
    system = msg.get("system") if isinstance(msg.get("system"), dict) else {}
    model = text(miner.get("type"))
    return {
        "vendor": "MicroBT",
        "model": f"Whatsminer {model}" if model else None,
        "serial": text(miner.get("miner-sn")),
        "mac": mac(net.get("mac")),
        "firmware": text(system.get("fwversion")),
    }
