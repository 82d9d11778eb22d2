"""Auradine Teraflux on FluxOS: a cgminer-style API on 4028 (GCMiner), read without credentials.

Besides summary/pools/version, FluxOS answers ``ipreport`` (serial, MAC, model, FluxOS version:
the identity, re-read like a sticky reply), ``psu`` (wall watts as "58.94W" strings),
``temperature`` (per hash board a list of board and chip sensors, plus the control board's),
``fan`` and ``mode`` (the operating mode, ``Sleep`` "on"/"off" and its ``Power`` target in W).
Key names and value shapes are those of the asic-rs captures in tests/cases/asic/auradine/.

Sleep, wake and power targets go through FluxOS's HTTP API with a token (user and password):
collectors/cgminer/fluxos.py, confirmed by reading ``mode`` back here.
"""

from __future__ import annotations

import logging
from typing import Any

from kuat.collectors.capabilities import ActionResult, PoolTarget
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.auradine import fluxos
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
    text,
)
from kuat.collectors.cgminer.firmware.controls import Act, Controls, http_result

log = logging.getLogger(__name__)

FAMILY = Firmware.AURADINE


def _ip(ipreport: Body | None) -> dict[str, Any]:
    return item(ipreport, "IPReport") or {}


def _model(ipreport: Body | None) -> str | None:
    m = text(_ip(ipreport).get("model"))
    return f"Auradine {m}" if m and not m.lower().startswith("auradine") else m


def _watts(v: Any) -> float | None:
    if isinstance(v, str):
        v = v.strip().removesuffix("W").strip()
    f = num(v)
    return f if f is not None and f >= 0 else None


def _hashrate(summary: Body | None) -> float | None:
    # MH/s in the keys; 5 s is what the other firmwares report as "now"
    v = first_num(item(summary, "SUMMARY"), "MHS 5s", "MHS 1m", "MHS av")
    return v / 1e6 if v is not None and v >= 0 else None


def _power(psu: Body | None) -> float | None:
    rows = list(items(psu, "PSU"))
    vals = [w for r in rows if (w := _watts(r.get("PowerIn"))) is not None]
    return sum(vals) if vals else None


def _limit(mode: Body | None) -> float | None:
    w = num((item(mode, "Mode") or {}).get("Power"))
    return w if w is not None and w > 0 else None


def _temps(temperature: Body | None) -> Any:
    from kuat.collectors.readings import AsicTemps

    board: list[float] = []
    chip: list[float] = []
    for b in items(temperature, "Temperature"):
        if "hash" not in str(b.get("Name", "")).lower():
            continue  # the control board is not a hash board
        for key, out in (("BoardTemp", board), ("ChipTemp", chip)):
            sensors = b.get(key)
            vals = [
                t
                for s in (sensors if isinstance(sensors, list) else [])[:64]
                if isinstance(s, dict) and (t := num(s.get("Temperature"))) is not None and t > 0
            ]
            if vals:
                out.append(round(max(vals), 2))
    if temperature is None or "Temperature" not in temperature:
        return None
    return AsicTemps(board=tuple(board), chip=tuple(chip))


def _fans(fan: Body | None) -> tuple[int, ...] | None:
    rows = list(items(fan, "Fan"))
    if not rows:
        return None
    return tuple(v for r in rows[:32] if (v := integer(r.get("Speed"))) is not None and v >= 0)


def _state(mode: Body | None) -> str | None:
    sleep = str((item(mode, "Mode") or {}).get("Sleep", "")).strip().lower()
    return "sleeping" if sleep in ("on", "true", "1") else None


FIELDS: dict[str, Source] = {
    "model": Source(("ipreport",), _model),
    "serial": Source(("ipreport",), lambda r: text(_ip(r).get("SerialNo"))),
    "mac": Source(("ipreport",), lambda r: mac(_ip(r).get("mac"))),
    "firmware": Source(("ipreport",), lambda r: text(_ip(r).get("version"))),
    "hashrate_ths": Source(("summary",), _hashrate),
    "power_w": Source(("psu",), _power),
    "power_limit_w": Source(("mode",), _limit),
    "temps_c": Source(("temperature",), _temps),
    "fans_rpm": Source(("fan",), _fans),
    "pools": Source(("pools",), pools),
    "uptime_s": Source(("summary",), lambda s: integer((item(s, "SUMMARY") or {}).get("Elapsed"))),
    "state": Source(("mode",), _state),
}


def _detect(c: Clues) -> bool:
    # FluxOS signs its replies "GCMiner-<date>-<hash>" or "FluxOS-<date>-<hash>"
    return "gcminer" in c.vkeys or "gcminer" in c.descriptions or "fluxos" in c.descriptions


WEB_PORT = Credential(
    "auradine_web_port",
    fluxos.DEFAULT_WEB_PORT,
    firmware=FAMILY,
    key="web_port",
    doc="Port of the Auradine FluxOS HTTP API.",
    port="web",
)
USERNAME = Credential(
    "auradine_username",
    fluxos.DEFAULT_USER,
    firmware=FAMILY,
    key="username",
    doc="User of the Auradine FluxOS HTTP API.",
)
PASSWORD = Credential(
    "auradine_password",
    fluxos.DEFAULT_PASSWORD,
    secret=True,
    firmware=FAMILY,
    key="password",
    doc="Password of the Auradine FluxOS HTTP API user (a secret; factory default admin).",
)
WEB_TIMEOUT = Credential("web_timeout_s", 5.0)

SPEC = FirmwareSpec(
    family=FAMILY,
    detect=_detect,
    detect_rank=40,
    vendor="Auradine",
    fields=FIELDS,
    sticky=frozenset({"ipreport"}),
)


# --- control: FluxOS's HTTP API (fluxos.py, token auth), confirmed by the API's ``mode`` ------


async def _mode(act: Act, action: str, body: dict[str, Any]) -> ActionResult | None:
    """One ``/mode`` write; the failure as a result, None when FluxOS took it."""
    a = act.access
    log.info("asic %s: %s requested over FluxOS (%s)", act.device, action, act.reason)
    got = await fluxos.set_mode(
        act.host,
        body,
        port=a.auradine_web_port,
        user=a.auradine_username,
        password=a.auradine_password,
        timeout_s=a.web_timeout_s,
    )
    return None if got is None else http_result(act, action, got)


async def _sleep_wake(act: Act, to_sleep: bool) -> ActionResult:
    action = "sleep" if to_sleep else "wake"
    failed = await _mode(act, action, {"sleep": "on" if to_sleep else "off"})
    if failed is not None:
        return failed
    want = "sleeping" if to_sleep else "mining"
    ok, state = await act.confirm_state(want)
    if ok:
        return act.result(action, "done", f"confirmed {want}; reason: {act.reason}")
    return act.result(action, "failed", f"miner accepted the mode but reads {state}")


async def _power_target(act: Act, watts: int) -> ActionResult:
    action = "set_power_limit"
    body = {"mode": "custom", "tune": "power", "power": watts}
    failed = await _mode(act, action, body)
    if failed is not None:
        return failed
    ok, seen = await act.confirm_limit(watts)
    if ok:
        return act.result(action, "done", f"confirmed {watts} W; reason: {act.reason}")
    return act.result(action, "failed", f"miner took {watts} W but reads {seen}")


async def _set_pools(act: Act, pools: tuple[PoolTarget, ...]) -> ActionResult:
    """``/updatepools`` (fluxos.py; at most three pools, as control.set_pools keeps them),
    confirmed by the pools the cgminer-style API then shows."""
    action = "set_pools"
    a = act.access
    log.info("asic %s: pools requested over FluxOS (%s)", act.device, act.reason)
    got = await fluxos.update_pools(
        act.host,
        [(p.url, p.user, p.password) for p in pools],
        port=a.auradine_web_port,
        user=a.auradine_username,
        password=a.auradine_password,
        timeout_s=a.web_timeout_s,
    )
    if got is not None:
        return http_result(act, action, got)
    ok, seen = await act.confirm_pools(pools)
    if ok:
        return act.result(action, "done", f"confirmed {len(pools)} pools; reason: {act.reason}")
    return act.result(action, "failed", f"FluxOS took the pools but the miner reads {seen}")


CONTROLS = Controls(
    firmware=FAMILY,
    sleep_wake=_sleep_wake,
    power_target=_power_target,
    set_pools=_set_pools,
    credentials=("auradine_web_port", "auradine_username", "auradine_password", "web_timeout_s"),
)
