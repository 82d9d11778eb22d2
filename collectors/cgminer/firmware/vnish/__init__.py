"""Vnish (AnthillOS) on Antminers: bmminer's cgminer API, with the firmware named in ``Type``.

``version``/``stats`` answer like stock bmminer, except that ``Type`` carries the firmware:
``"Antminer S19 (Vnish 1.2.6)"``, ``"Antminer S9 (vnish 3.8.6)"`` (the case varies by release).
Everything the API reports is read as on stock firmware (firmware/bitmain/); the model drops
the suffix so models.toml finds it, and the firmware is the Vnish version.

What the API lacks (serial, MAC, watts, the power preset, and whether mining was stopped on
purpose) comes from Vnish's own web API (web.py beside this module): those fields name its
endpoints, read within the poll after the API answered (watts and state are live numbers a quota
engine plans on; a small GET to a miner already answering costs far less than a background
queue). ``/api/v1/info`` (identity) is re-read like any sticky reply. The API's own values win.
A failing web API is a note in the reading, never a lost reading. If a Vnish box stops its
cgminer API while mining is stopped, the web API alone gives the reading (``WebApi.alone``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from typing import Any

from kuat.collectors.capabilities import ActionResult, PoolTarget
from kuat.collectors.cgminer.firmware import Firmware, bitmain
from kuat.collectors.cgminer.firmware.common import (
    Body,
    Clues,
    Credential,
    FirmwareSpec,
    Source,
    WebApi,
    item,
    text,
)
from kuat.collectors.cgminer.firmware.controls import Act, Controls, http_result
from kuat.collectors.cgminer.firmware.vnish import web as vnish_web
from kuat.collectors.cgminer.http_json import HttpFailure, http_client, request_json

log = logging.getLogger(__name__)

FAMILY = Firmware.VNISH
_SUFFIX = re.compile(r"\s*\((vnish)\s*([^)]*)\)\s*$", re.IGNORECASE)


def _type(version: Body | None, stats: Body | None) -> str | None:
    head = item(version, "VERSION") or item(stats, "STATS") or {}
    return text(head.get("Type"))


def split_type(kind: str | None) -> tuple[str | None, str | None]:
    """'Antminer S19 (Vnish 1.2.6)' -> ('Antminer S19', '1.2.6'); no suffix -> (kind, None)."""
    if kind is None:
        return None, None
    m = _SUFFIX.search(kind)
    if m is None:
        return kind, None
    return text(kind[: m.start()]), text(m.group(2))


def is_vnish_type(kind: str | None) -> bool:
    return kind is not None and _SUFFIX.search(kind) is not None


def _model(version: Body | None, stats: Body | None) -> str | None:
    return split_type(_type(version, stats))[0]


def _firmware(version: Body | None, stats: Body | None) -> str | None:
    v = split_type(_type(version, stats))[1]
    return f"Vnish {v}" if v else None


INFO, SUMMARY, PERF = vnish_web.INFO, vnish_web.SUMMARY, vnish_web.PERF
# the web API's port, for reads and writes alike (a site's one web port setting)
WEB_PORT = Credential("web_port", vnish_web.DEFAULT_WEB_PORT, port="web")  # [asic] web_port
PASSWORD = Credential(
    "vnish_password",
    vnish_web.DEFAULT_PASSWORD,
    secret=True,
    firmware=FAMILY,
    key="password",
    doc="Password of the Vnish web API, on [asic] web_port (a secret; factory default admin).",
)
WEB_TIMEOUT = Credential("web_timeout_s", 5.0)


def _ident(info: Body | None) -> vnish_web.VnishIdentity | None:
    return vnish_web.parse_info(info) if info is not None else None


def _power(stats: Body | None, summary: Body | None) -> float | None:
    w = bitmain.FIELDS["power_w"].extract(stats) if stats is not None else None
    if w is None and summary is not None:
        live = vnish_web.parse_live(summary, None).power_w
        w = live if live is not None and live > 0 else None
    return w


def _state(summary: Body | None) -> str | None:
    # stopped on purpose is "sleeping", not a fault; None: the engine decides from the hashrate
    return vnish_web.state_of(summary)


def _notes(summary: Body | None) -> tuple[str, ...] | None:
    failure = vnish_web.parse_live(summary, None).failure
    return (f"vnish: {failure}",) if failure else None


def _alone(docs: Any) -> dict[str, Any] | None:
    """The cgminer API is down: only a miner stopped on purpose reads from the web API alone."""
    live = vnish_web.parse_live(docs.get(SUMMARY), None)
    if live.miner_state not in ("stopped", "shutting-down"):
        return None
    return {
        "hashrate_ths": 0.0,
        "state": "sleeping",
        "errors": ("cgminer API down while mining is stopped; read from the web API",),
    }


FIELDS: dict[str, Source] = {
    **bitmain.FIELDS,
    "model": Source(("version", "stats"), _model),
    "firmware": Source(
        ("version", "stats", INFO),
        lambda v, s, i: _firmware(v, s) or ((x := _ident(i)) and x.firmware),
    ),
    "serial": Source((INFO,), lambda i: (x := _ident(i)) and x.serial),
    "mac": Source((INFO,), lambda i: (x := _ident(i)) and x.mac),
    "power_w": Source(("stats", SUMMARY), _power),
    "power_limit_w": Source((PERF,), vnish_web.preset_watts),
    "state": Source((SUMMARY,), _state),
    "errors": Source((SUMMARY,), _notes),
}


def _detect(c: Clues) -> bool:
    return "vnish" in c.kind or "vnish" in c.descriptions


SPEC = FirmwareSpec(
    family=FAMILY,
    vendor="Bitmain",
    fields=FIELDS,
    # bmminer with "(Vnish x.y.z)" in Type: tried before the stock rule, which it also fits
    detect=_detect,
    detect_rank=60,
    ghs_keys_may_be_mh=True,
    web=WebApi("the Vnish web API", WEB_PORT.name, vnish_web.fetch, alone=_alone),
    sticky=frozenset({INFO}),
)


# --- control: Vnish's web API (web.py): mining stop/start, presets at or below a target --


async def _sleep_wake(act: Act, to_sleep: bool) -> ActionResult:
    a = act.access
    verb = vnish_web.sleep if to_sleep else vnish_web.wake
    got = await verb(
        act.host,
        act.reason,
        web_port=a.web_port,
        password=a.vnish_password,
        timeout_s=a.web_timeout_s,
        confirm_s=act.confirm_s,
    )
    # vnish_web names the web port; the caller knows the miner by its API target
    return dataclasses.replace(got, device_id=act.device)


async def _power_target(act: Act, watts: int) -> ActionResult:
    a = act.access
    got = await vnish_web.set_power_limit(
        act.host,
        watts,
        act.reason,
        web_port=a.web_port,
        password=a.vnish_password,
        timeout_s=a.web_timeout_s,
        confirm_s=act.confirm_s,
    )
    return dataclasses.replace(got, device_id=act.device)


RESTART = "/api/v1/mining/restart"
_HINT = "is this Vnish firmware?"


async def _set_pools(act: Act, pools: tuple[PoolTarget, ...]) -> ActionResult:
    """``POST /api/v1/settings`` ``{"miner": {"pools": [{url, user, pass}, …]}}`` (at most three:
    Vnish's OpenAPI document 1.2.7, MinerConfigRaw.pools, in asic-rs meta/vnish/), then
    ``mining/restart`` when the answer says ``restart_required``; confirmed by the pools the
    cgminer API then shows. A save that needs a reboot is not done: kuat reboots no miner."""
    a, action = act.access, "set_pools"
    port, what = a.web_port, f"Vnish web API on port {a.web_port}"
    log.info("asic %s: pools requested (%s) via Vnish web port %d", act.device, act.reason, port)
    loop = asyncio.get_running_loop()
    async with http_client() as client:
        token = await vnish_web.unlock(
            client, act.host, port, a.vnish_password, loop.time() + a.web_timeout_s
        )
        if isinstance(token, HttpFailure):
            return http_result(act, action, token, unsupported_hint=_HINT)
        auth = {"Authorization": f"Bearer {token}"}
        body = {
            "miner": {"pools": [{"url": p.url, "user": p.user, "pass": p.password} for p in pools]}
        }
        saved = await request_json(
            client,
            "POST",
            act.host,
            port,
            vnish_web.SETTINGS,
            what=what,
            deadline=loop.time() + a.web_timeout_s,
            headers=auth,
            body=body,
        )
        if isinstance(saved, HttpFailure):
            return http_result(act, action, saved, unsupported_hint=_HINT)
        if isinstance(saved, dict) and saved.get("reboot_required") is True:
            detail = (
                "Vnish saved the pools but applies them only after a reboot, which kuat never does"
            )
            return act.result(action, "failed", detail)
        if isinstance(saved, dict) and saved.get("restart_required") is True:
            restarted = await request_json(
                client,
                "POST",
                act.host,
                port,
                RESTART,
                what=what,
                deadline=loop.time() + a.web_timeout_s,
                headers=auth,
            )
            if isinstance(restarted, HttpFailure):
                return http_result(act, action, restarted, unsupported_hint=_HINT)
    ok, seen = await act.confirm_pools(pools)
    if ok:
        return act.result(action, "done", f"confirmed {len(pools)} pools; reason: {act.reason}")
    return act.result(action, "failed", f"Vnish saved the pools but the miner reads {seen}")


CONTROLS = Controls(
    firmware=FAMILY,
    sleep_wake=_sleep_wake,
    power_target=_power_target,
    set_pools=_set_pools,
    credentials=("web_port", "vnish_password", "web_timeout_s"),
    confirm_s={"limit": 120.0, "wake": 120.0, "pools": 120.0},
    apply_s={"limit": 10.0},  # a preset change re-clocks the boards
)
