"""Vnish's web API (``/api/v1/...`` on the web port, 80 out of the box): identity, watts, control.

Shapes from Vnish's OpenAPI document ("xminer-api", Vnish 1.2.7, kept in 256foundation/asic-rs as
meta/vnish/v1.2.7/api-doc.json) and how asic-rs (asic-rs-firmwares/vnish/src/backends/v1_2_0)
and pyasic (pyasic/web/vnish.py, pyasic/miners/backends/vnish.py) read it:

- ``GET /api/v1/info`` (no auth): ``serial``, ``fw_version``, ``miner`` ("Antminer S19"),
  ``system.network_status.{mac,hostname}``. ``serial`` is "N/A" on boxes without one.
- ``GET /api/v1/summary`` (auth optional): ``miner.power_consumption`` (W),
  ``miner.miner_status.miner_state`` (mining, auto-tuning, initializing, starting, restarting,
  shutting-down, stopped, failure), ``miner.miner_type`` ("Antminer S19 (Vnish 1.2.6)").
- ``GET /api/v1/perf-summary`` (no auth): ``current_preset.name``, the autotune preset in use:
  its watts ("3200") or "disabled".
- ``POST /api/v1/unlock`` ``{"pw": ...}`` -> ``{"token": ...}``, 403 for a wrong password.
  Writes carry ``Authorization: Bearer <token>``: ``POST /api/v1/mining/stop`` and ``/start``
  (200, empty body; 500 ``{"err": ...}`` when the miner cannot), ``GET /api/v1/autotune/presets``
  (``[{"name": "3200", "pretty": "3200 watt ~ 102 TH", "status": "tuned"}, ...]``) and
  ``POST /api/v1/settings`` ``{"miner": {"overclock": {"preset": "3200"}}}``.

Sleep is ``mining/stop`` rather than ``mining/pause``: stop powers the hashboards down, which is
what a power quota needs; pause only holds work. Nothing here raises for a device's sake.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from kuat.collectors.capabilities import ActionResult
from kuat.collectors.cgminer.firmware.common import integer, mac, num, text
from kuat.collectors.cgminer.http_json import HttpFailure, http_client, request_json

log = logging.getLogger(__name__)

DEFAULT_WEB_PORT = 80
# What Vnish ships (its docs' own unlock example); owners are told to change it.
DEFAULT_PASSWORD = "admin"
INFO, SUMMARY, PERF = "/api/v1/info", "/api/v1/summary", "/api/v1/perf-summary"
UNLOCK, STOP, START = "/api/v1/unlock", "/api/v1/mining/stop", "/api/v1/mining/start"
PRESETS, SETTINGS = "/api/v1/autotune/presets", "/api/v1/settings"

# miner_state -> reading state; the rest (initializing, starting, ...) are on their way.
_STATES = {
    "mining": "mining",
    "auto-tuning": "mining",
    "stopped": "sleeping",
    "shutting-down": "sleeping",
    "failure": "error",
}
_NO_SERIAL = frozenset({"", "n/a", "na", "none", "null", "unknown", "0"})


@dataclass(frozen=True, slots=True)
class VnishIdentity:
    serial: str | None
    mac: str | None
    hostname: str | None = None
    firmware: str | None = None


@dataclass(frozen=True, slots=True)
class VnishLive:
    """What the web API says now, beside the cgminer API."""

    power_w: float | None = None
    power_limit_w: float | None = None
    miner_state: str | None = None
    failure: str | None = None


# --- parsing (pure) --------------------------------------------------------------------------


def _d(doc: Any, key: str) -> dict[str, Any]:
    v = doc.get(key) if isinstance(doc, dict) else None
    return v if isinstance(v, dict) else {}


def parse_info(doc: Any) -> VnishIdentity | None:
    """/api/v1/info -> identity; None if it names neither a serial nor a MAC."""
    if not isinstance(doc, dict):
        return None
    serial = text(doc.get("serial"))
    if serial is not None and serial.lower() in _NO_SERIAL:
        serial = None
    net = _d(_d(doc, "system"), "network_status")
    found = mac(net.get("mac"))
    if found == "00:00:00:00:00:00":
        found = None
    if serial is None and found is None:
        return None
    version = text(doc.get("fw_version"))
    return VnishIdentity(
        serial=serial,
        mac=found,
        hostname=text(net.get("hostname")),
        firmware=f"Vnish {version}" if version else None,
    )


def parse_live(summary: Any, perf: Any) -> VnishLive:
    """/api/v1/summary and /api/v1/perf-summary (either may be None) -> live numbers."""
    miner = _d(summary, "miner")
    status = _d(miner, "miner_status")
    state = text(status.get("miner_state"))
    failure = text(status.get("description")) if state == "failure" else None
    return VnishLive(
        power_w=num(miner.get("power_consumption")) if miner else None,
        power_limit_w=preset_watts(perf),
        miner_state=state.lower() if state else None,
        failure=failure,
    )


def preset_watts(perf: Any) -> float | None:
    """The autotune preset in use as watts; None when presets are off ("disabled")."""
    name = text(_d(perf, "current_preset").get("name"))
    w = integer(name) if name and name.isdigit() else None
    return float(w) if w else None


def state_of(summary: Any) -> str | None:
    """The reading's state by what the web API says the miner is doing; None on its way."""
    live = parse_live(summary, None)
    return _STATES.get(live.miner_state or "")


# --- reading (I/O) ---------------------------------------------------------------------------


def _what(port: int) -> str:
    return f"Vnish web API on port {port}"


async def fetch(
    client: httpx.AsyncClient,
    host: str,
    port: int,
    access: Any,
    paths: tuple[str, ...],
    deadline: float,
) -> tuple[dict[str, Any], dict[str, str]]:
    """GET the endpoints at once (no auth: info, summary and perf-summary are open);
    (documents by path, causes by path). An info page naming no serial or MAC is a cause."""
    got = await asyncio.gather(
        *(
            request_json(client, "GET", host, port, p, what=_what(port), deadline=deadline)
            for p in paths
        )
    )
    bodies: dict[str, Any] = {}
    causes: dict[str, str] = {}
    for p, d in zip(paths, got, strict=True):
        if isinstance(d, HttpFailure):
            causes[p] = d.detail
        elif p == INFO and parse_info(d) is None:
            causes[p] = f"{_what(port)}: {INFO} names no serial or MAC"
        else:
            bodies[p] = d
    return bodies, causes


# --- control ---------------------------------------------------------------------------------


async def unlock(
    client: httpx.AsyncClient, host: str, port: int, password: str, deadline: float
) -> str | HttpFailure:
    """A bearer token for writes, or why not (``auth`` for a wrong password)."""
    got = await request_json(
        client,
        "POST",
        host,
        port,
        UNLOCK,
        what=_what(port),
        deadline=deadline,
        body={"pw": password},
    )
    if isinstance(got, HttpFailure):
        if got.kind == "auth":
            return HttpFailure("auth", f"{_what(port)} refused the password (unlock: HTTP 403)")
        return got
    token = text(got.get("token")) if isinstance(got, dict) else None
    if token is None:
        return HttpFailure("reply", f"{_what(port)}: unlock gave no token")
    return token


async def sleep(
    host: str,
    reason: str,
    *,
    web_port: int = DEFAULT_WEB_PORT,
    password: str = DEFAULT_PASSWORD,
    timeout_s: float = 5.0,
    confirm_s: float = 10.0,
) -> ActionResult:
    """``mining/stop``; done when the web summary reads "stopped". ``host``'s device id in the
    result is ``host:web_port``; the caller may rename it to its API target."""
    return await _mining(host, web_port, password, True, reason, timeout_s, confirm_s)


async def wake(
    host: str,
    reason: str,
    *,
    web_port: int = DEFAULT_WEB_PORT,
    password: str = DEFAULT_PASSWORD,
    timeout_s: float = 5.0,
    confirm_s: float = 10.0,
) -> ActionResult:
    """``mining/start``; done when the web summary reads "mining" (or "auto-tuning")."""
    return await _mining(host, web_port, password, False, reason, timeout_s, confirm_s)


async def set_power_limit(
    host: str,
    watts: int,
    reason: str,
    *,
    web_port: int = DEFAULT_WEB_PORT,
    password: str = DEFAULT_PASSWORD,
    timeout_s: float = 5.0,
    confirm_s: float = 10.0,
) -> ActionResult:
    """The highest autotune preset at or below ``watts`` (never above: the target is a quota
    share). No preset that low -> refused without writing anything (the lowest preset is the
    miner's floor: the curtailer learns it; "unsupported" would turn limits off for the miner).
    Done when perf-summary shows that preset in use. An untuned preset is allowed: Vnish tunes
    it first, at or below its watts, which the detail says."""
    action, device = "set_power_limit", f"{host}:{web_port}"
    if watts <= 0:
        return ActionResult(device, action, "unsupported", "a 0 W limit is a sleep: use sleep()")
    loop = asyncio.get_running_loop()
    async with http_client() as client:
        token = await unlock(client, host, web_port, password, loop.time() + timeout_s)
        if isinstance(token, HttpFailure):
            return _result(device, action, token)
        auth = {"Authorization": f"Bearer {token}"}
        listing = await request_json(
            client,
            "GET",
            host,
            web_port,
            PRESETS,
            what=_what(web_port),
            deadline=loop.time() + timeout_s,
            headers=auth,
        )
        if isinstance(listing, HttpFailure):
            return _result(device, action, listing)
        table = preset_table(listing)
        if not table:
            return ActionResult(device, action, "unsupported", "Vnish lists no watt presets")
        fits = [(w, name) for name, (w, _) in table.items() if w <= watts]
        if not fits:
            low = min(w for w, _ in table.values())
            detail = f"lowest preset draws {low:.0f} W, above {watts} W; not sent"
            return ActionResult(device, action, "refused", detail, floor_w=float(low))
        chosen_w, chosen = max(fits)
        log.info("asic %s: Vnish preset %s requested (%s)", device, chosen, reason)
        body = {"miner": {"overclock": {"preset": chosen}}}
        wrote = await request_json(
            client,
            "POST",
            host,
            web_port,
            SETTINGS,
            what=_what(web_port),
            deadline=loop.time() + timeout_s,
            headers=auth,
            body=body,
        )
        if isinstance(wrote, HttpFailure):
            return _result(device, action, wrote)
        ok, seen = await _confirm(
            client,
            host,
            web_port,
            PERF,
            lambda p: preset_watts(p) == chosen_w,
            _describe_preset,
            timeout_s,
            confirm_s,
        )
    if ok:
        tuned = "" if table[chosen][1] else " (untuned: Vnish tunes it first)"
        detail = f"confirmed preset {chosen} W (<= {watts} W){tuned}; reason: {reason}"
        return ActionResult(device, action, "done", detail)
    return ActionResult(device, action, "failed", f"miner took preset {chosen} but reads {seen}")


def preset_table(listing: Any) -> dict[str, tuple[float, bool]]:
    """/autotune/presets -> {name: (watts, tuned?)}; "disabled" and odd rows are skipped."""
    rows = listing.get("presets") if isinstance(listing, dict) else listing
    out: dict[str, tuple[float, bool]] = {}
    for row in rows if isinstance(rows, list) else ():
        name = text(row.get("name")) if isinstance(row, dict) else None
        if name is None or not name.isdigit() or int(name) <= 0:
            continue
        out[name] = (float(name), row.get("status") == "tuned")
    return out


async def _mining(
    host: str,
    port: int,
    password: str,
    to_sleep: bool,
    reason: str,
    timeout_s: float,
    confirm_s: float,
) -> ActionResult:
    action, device = ("sleep" if to_sleep else "wake"), f"{host}:{port}"
    path = STOP if to_sleep else START
    want = "sleeping" if to_sleep else "mining"
    log.info("asic %s: Vnish %s requested (%s)", device, action, reason)
    loop = asyncio.get_running_loop()
    async with http_client() as client:
        token = await unlock(client, host, port, password, loop.time() + timeout_s)
        if isinstance(token, HttpFailure):
            return _result(device, action, token)
        got = await request_json(
            client,
            "POST",
            host,
            port,
            path,
            what=_what(port),
            deadline=loop.time() + timeout_s,
            headers={"Authorization": f"Bearer {token}"},
        )
        if isinstance(got, HttpFailure):
            return _result(device, action, got)
        ok, seen = await _confirm(
            client,
            host,
            port,
            SUMMARY,
            lambda s: _STATES.get(parse_live(s, None).miner_state or "") == want,
            lambda s: parse_live(s, None).miner_state or "no miner_state",
            timeout_s,
            confirm_s,
        )
    if ok:
        return ActionResult(device, action, "done", f"confirmed {want}; reason: {reason}")
    return ActionResult(device, action, "failed", f"miner accepted {path} but reads {seen}")


def _result(device: str, action: str, f: HttpFailure) -> ActionResult:
    if f.kind in ("auth", "rejected"):
        return ActionResult(device, action, "refused", f.detail)
    if f.kind in ("missing", "unreachable", "protocol"):
        return ActionResult(device, action, "unsupported", f"{f.detail}; is this Vnish firmware?")
    return ActionResult(device, action, "failed", f.detail)


def _describe_preset(p: Any) -> str:
    w = preset_watts(p)
    return "presets disabled" if w is None else f"preset {w:.0f} W"


async def _confirm(
    client: httpx.AsyncClient,
    host: str,
    port: int,
    path: str,
    done: Callable[[Any], bool],
    describe: Callable[[Any], str],
    timeout_s: float,
    confirm_s: float,
) -> tuple[bool, str]:
    """Re-read ``path`` until ``done`` or ``confirm_s`` runs out; (done?, what it showed)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + confirm_s
    while True:
        got = await request_json(
            client, "GET", host, port, path, what=_what(port), deadline=loop.time() + timeout_s
        )
        if isinstance(got, HttpFailure):
            seen = f"unreadable ({got.detail})"
        elif done(got):
            return True, describe(got)
        else:
            seen = describe(got)
        if loop.time() >= until:
            return False, seen
        await asyncio.sleep(min(0.5, max(0.0, until - loop.time())))
