"""Braiins OS (BOSminer / BOSer) through its cgminer-compatible API on 4028.

No serial or MAC on this API (the poller reads them from the REST API in the background:
rest.py in this folder). Watts and the power limit come from ``tunerstatus``
(Braiins OS+ autotuner; shape as in the Braiins OS docs' example and pyasic's BOSminer parser):
``TUNERSTATUS[0].PowerLimit`` is the tuner's power target, ``ApproximateMinerPowerConsumption`` its
estimate for the whole miner (chains + control board + fans), the better figure for the site
balance than ``ApproximateChainPowerConsumption`` (chains only). Builds without the tuner
(Braiins OS, not OS+) refuse the command: those fields stay None and the reading has no error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kuat.collectors.capabilities import ActionResult, PoolTarget
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.braiins import rest as braiins_rest
from kuat.collectors.cgminer.firmware.common import (
    Body,
    Clues,
    Credential,
    FirmwareSpec,
    Source,
    WebApi,
    fans_rows,
    first_num,
    integer,
    item,
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
    asleep_for_a_restart,
    http_result,
)
from kuat.collectors.cgminer.http_json import HttpFailure, http_client

log = logging.getLogger(__name__)
T = TypeVar("T")


def _model(devdetails: Body | None) -> str | None:
    m = text((item(devdetails, "DEVDETAILS") or {}).get("Model"))
    if m and m.lower().startswith("bitmain "):
        m = m[len("bitmain ") :]
    return m


def _firmware(version: Body | None) -> str | None:
    v = item(version, "VERSION") or {}
    for key in ("BOSer", "BOSminer"):
        if text(v.get(key)):
            return text(v.get(key))
    desc = status_description(version)
    return text(desc.split(" ", 1)[1]) if " " in desc else None


def _hashrate(summary: Body | None) -> float | None:
    v = first_num(item(summary, "SUMMARY"), "MHS 5s", "MHS 1m", "MHS av")
    return v / 1e6 if v is not None else None


def _tuner(t: Body | None) -> dict[str, Any]:
    return item(t, "TUNERSTATUS") or {}


def _power_limit(t: Body | None) -> float | None:
    # 0 (or absent) when the tuner is off or tunes to a hashrate target: no watt limit then
    v = num(_tuner(t).get("PowerLimit"))
    return v if v is not None and v > 0 else None


FIELDS: dict[str, Source] = {
    "model": Source(("devdetails",), _model),
    "firmware": Source(("version",), _firmware),
    "hashrate_ths": Source(("summary",), _hashrate),
    "power_w": Source(
        ("tunerstatus",), lambda t: num(_tuner(t).get("ApproximateMinerPowerConsumption"))
    ),
    "power_limit_w": Source(("tunerstatus",), _power_limit),
    "temps_c": Source(("temps",), temps_rows),
    "fans_rpm": Source(("fans",), fans_rows),
    "pools": Source(("pools",), pools),
    "uptime_s": Source(("summary",), lambda s: integer((item(s, "SUMMARY") or {}).get("Elapsed"))),
}


def _detect(c: Clues) -> bool:
    d = c.descriptions
    return "bosminer" in c.vkeys or "boser" in c.vkeys or "bosminer" in d or "boser" in d


# The REST API (25.07+): serial and MAC (the 4028 API has neither), and the power target.
WEB_PORT = Credential(
    "braiins_web_port",
    braiins_rest.DEFAULT_WEB_PORT,
    firmware=Firmware.BRAIINS,
    key="web_port",
    doc="Port of the Braiins OS REST API (25.07+).",
    port="web",
)
USERNAME = Credential(
    "braiins_username",
    "root",
    firmware=Firmware.BRAIINS,
    key="username",
    doc="User of the Braiins OS REST API.",
)
PASSWORD = Credential(
    "braiins_password",
    "",
    secret=True,
    firmware=Firmware.BRAIINS,
    key="password",
    doc="Password of the Braiins OS REST API user (a secret; none out of the box).",
)
WEB_TIMEOUT = Credential("web_timeout_s", 5.0)
DETAILS = braiins_rest.MINER_DETAILS_PATH


async def _read_rest_identity(
    client: Any, host: str, port: int, access: Any, paths: tuple[str, ...], deadline: float
) -> tuple[dict[str, Any], dict[str, str]]:
    left = max(0.0, deadline - asyncio.get_running_loop().time())
    got = await braiins_rest.fetch_braiins_identity(
        client,
        host,
        port=port,
        username=access.braiins_username,
        password=access.braiins_password,
        timeout_s=left,
    )
    return ({}, {DETAILS: got}) if isinstance(got, str) else ({DETAILS: got}, {})


SPEC = FirmwareSpec(
    detect=_detect,
    detect_rank=30,
    family=Firmware.BRAIINS,
    vendor="Bitmain",
    fields={
        **FIELDS,
        # the REST API's identity (a web.BitmainIdentity), read in the background
        "serial": Source((DETAILS,), lambda i: i.serial),
        "mac": Source((DETAILS,), lambda i: i.mac),
    },
    web=WebApi("the Braiins OS REST API", WEB_PORT.name, _read_rest_identity, background=True),
    sleep_command=("pause", None),
    wake_command=("resume", None),
    optional=frozenset({"tunerstatus"}),
)


def fields_from_rest_miner_stats(reply: Body) -> dict[str, float | None]:
    """Braiins OS REST ``GET /api/v1/miner/stats`` -> hashrate, nominal and watts.

    Not polled by this collector (REST needs a login); kept so the mapping is fixed and tested.
    """

    def ghs(*path: str) -> float | None:
        cur: Any = reply
        for p in path:
            cur = cur.get(p) if isinstance(cur, dict) else None
        v = num(cur)
        return v / 1e3 if v is not None else None

    power = reply.get("power_stats")
    watts = None
    if isinstance(power, dict) and isinstance(power.get("approximated_consumption"), dict):
        watts = num(power["approximated_consumption"].get("watt"))
    return {
        "hashrate_ths": ghs("miner_stats", "real_hashrate", "last_5s", "gigahash_per_second"),
        "hashrate_nominal_ths": ghs("miner_stats", "nominal_hashrate", "gigahash_per_second"),
        "power_w": watts,
    }


# --- control: pause/resume on the API, the tuner's power target over REST (25.07+) -----------


async def _sleep_wake(act: Act, to_sleep: bool) -> ActionResult:
    cmd = SPEC.sleep_command if to_sleep else SPEC.wake_command
    assert cmd is not None
    return await api_sleep_wake(act, to_sleep, cmd)


async def _rest_write(act: Act, write: Callable[..., Awaitable[T]], value: Any) -> T:
    """One REST write (rest.py) to this miner, with its login and port."""
    a = act.access
    async with http_client() as client:
        return await write(
            client,
            act.host,
            value,
            port=a.braiins_web_port,
            username=a.braiins_username,
            password=a.braiins_password,
            timeout_s=a.web_timeout_s,
        )


async def _power_target(act: Act, watts: int) -> ActionResult:
    """``PUT /api/v1/performance/power-target`` (rest.py) within the range the miner's
    ``configuration/constraints`` gives (clamped to its max; below its min: refused without
    sending, as the tuner would refuse it), confirmed by ``tunerstatus``."""
    action = "set_power_limit"
    log.info("asic %s: power target %d W requested (%s)", act.device, watts, act.reason)
    got = await _rest_write(act, braiins_rest.set_power_target, watts)
    if isinstance(got, braiins_rest.OutOfRange):
        # refused, as the tuner itself would: the curtailer learns this miner's floor from it
        detail = f"lowest power target is {got.low} W (configuration/constraints), above {watts} W"
        return act.result(action, "refused", f"{detail}; not sent", floor_w=float(got.low))
    if isinstance(got, HttpFailure):
        hint = "the power target needs Braiins OS 25.07 or later"
        return http_result(act, action, got, unsupported_hint=hint)
    ok, seen = await act.confirm_limit(got)
    if ok:
        detail = f"confirmed target {got} W (<= {watts} W); reason: {act.reason}"
        return act.result(action, "done", detail)
    return act.result(action, "failed", f"miner took target {got} W but reads {seen}")


async def _set_pools(act: Act, pools: tuple[PoolTarget, ...]) -> ActionResult:
    """``PUT /api/v1/pools/batch`` (rest.py): one pool group holding exactly these pools
    replaces every group, and bosminer restarts to apply it; confirmed by the pools the 4028
    API then shows. A miner asleep for the quota is left alone (a restart would wake it)."""
    action = "set_pools"
    log.info("asic %s: pools requested (%s) via the Braiins OS REST API", act.device, act.reason)
    held = await asleep_for_a_restart(act, "restarting bosminer")
    if held is not None:
        return held
    got = await _rest_write(
        act, braiins_rest.set_pool_group, [(p.url, p.user, p.password) for p in pools]
    )
    if isinstance(got, HttpFailure):
        hint = "pool groups over REST need Braiins OS 25.07 or later"
        return http_result(act, action, got, unsupported_hint=hint)
    ok, seen = await act.confirm_pools(pools)
    if ok:
        return act.result(action, "done", f"confirmed {len(pools)} pools; reason: {act.reason}")
    detail = f"Braiins OS took the pool group but the miner reads {seen}"
    return act.result(action, "failed", detail)


CONTROLS = Controls(
    firmware=Firmware.BRAIINS,
    sleep_wake=_sleep_wake,
    power_target=_power_target,
    set_pools=_set_pools,
    credentials=("braiins_web_port", "braiins_username", "braiins_password", "web_timeout_s"),
    # bosminer restarts to apply pools: a minute for it to come back and connect
    confirm_s={"limit": 60.0, "pools": 90.0},
)
