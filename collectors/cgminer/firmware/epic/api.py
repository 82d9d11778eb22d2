"""ePIC "UMC" / PowerPlay firmware: an HTTP/JSON API on the miner's port 4028, no cgminer API.

Shapes from ePIC's published OpenAPI document ("ePIC UMC API" 1.30.0, kept in 256foundation/asic-rs
as meta/epic/1.30.0/powerplay.json) and the replies asic-rs tests against
(asic-rs-firmwares/epic/src/test/json/v1/*.json):

- ``GET /summary``: live state. ``HBs[].Hashrate`` is ``[MH/s, % of ideal, ...]`` per board,
  ``HBs[].Temperature`` the board temperature, ``"Power Supply Stats"."Input Power"`` watts,
  ``"Fans Rpm"`` ``{"Fans Speed 1": 5971, "Fans Speed 2": null, ...}`` (null = no fan there),
  ``Session.Uptime`` seconds, ``Status."Operating State"`` ("Mining", "Idling" after a stop,
  "Initializing", ...), ``Stratum`` the connected pool, ``StratumConfigs`` the configured ones,
  ``PerpetualTune.Algorithm.<name>.Target`` what the tuner aims at, in ``Unit``.
- ``GET /capabilities``: ``Model`` ("AntMiner S19 XP"), ``Miner Serial Number`` (newer builds),
  ``Control Board Version.cpuSerial``, ``Default Hashrate`` (TH/s), and ``PerpetualTune``: the
  tuning algorithms this box offers, each with its ``min``/``max`` target.
- ``GET /network``: ``{"dhcp": {"mac_address": ...}}`` or ``{"static": {...}}``.
- ``POST /miner`` ``{"param": "Stop" | "Autostart", "password": ...}``: stop mining (the miner
  idles, boards off) or start it. ``POST /perpetualtune/algo`` ``{"param": {"algo": "Power",
  "target": <W>}, "password": ...}``: run the tuner at a power target. Writes answer
  ``{"result": true}`` or ``{"result": false, "error": "BadPassword"}``, always HTTP 200.

Identity (capabilities, network) never changes on a running box, so the poller reads it on the
first poll and again every STICKY_POLLS polls or when the uptime goes backwards; the summary is
read every poll. Parsing is pure (``SPEC`` on the shared field engine); the HTTP here bounds
every exchange by the poll's deadline and the reply size, and never raises for a device's sake.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from kuat.collectors.capabilities import ActionResult
from kuat.collectors.cgminer.client import ApiError, NoAnswer, Replies, WrongFirmware
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.common import (
    Body,
    Source,
    integer,
    mac,
    num,
    positive,
    text,
)
from kuat.collectors.cgminer.http_json import HttpFailure, http_client, request_json
from kuat.collectors.readings import AsicReading, AsicTemps, PoolInfo

log = logging.getLogger(__name__)

FAMILY = Firmware.EPIC
DEFAULT_PORT = 4028
# What ePIC ships: the web UI and the API share this password until the owner changes it.
DEFAULT_PASSWORD = "letmein"
SUMMARY, CAPABILITIES, NETWORK = "summary", "capabilities", "network"
# Identity replies: read on the first poll, then every STICKY_POLLS polls (collector.py).
STICKY = (CAPABILITIES, NETWORK)

# "Operating State" -> reading state; a state not listed leaves it to the hashrate rule.
_STATES = {"mining": "mining", "idling": "sleeping", "stopping": "sleeping"}
_VENDORS = {"antminer": "Bitmain", "whatsminer": "MicroBT", "volcminer": "VolcMiner"}


# --- parsing (pure) --------------------------------------------------------------------------


def _d(body: Body | None, key: str) -> dict[str, Any]:
    v = body.get(key) if body else None
    return v if isinstance(v, dict) else {}


def _boards(summary: Body | None) -> list[dict[str, Any]]:
    rows = summary.get("HBs") if summary else None
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _hashrate(summary: Body | None) -> float | None:
    if summary is None or "HBs" not in summary:
        return None
    total = 0.0
    for hb in _boards(summary):
        rate = hb.get("Hashrate")
        mhs = num(rate[0]) if isinstance(rate, list) and rate else None
        total += mhs or 0.0
    # no boards hashing (idle, all disabled) is 0 TH/s, not "unknown"
    return total / 1e6


def _temps(summary: Body | None) -> AsicTemps | None:
    boards = _boards(summary)
    if not boards:
        return None
    return AsicTemps(board=positive(hb.get("Temperature") for hb in boards))


def _fans(summary: Body | None) -> tuple[int, ...] | None:
    rpm = _d(summary, "Fans Rpm")
    if not rpm:
        return None

    def slot(key: str) -> int:
        tail = key.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 999

    # a null slot has no fan; a 0 beside spinning fans is a dead fan, worth showing
    return tuple(v for k in sorted(rpm, key=slot) if (v := integer(rpm[k])) is not None and v >= 0)


def _pools(summary: Body | None) -> tuple[PoolInfo, ...] | None:
    if summary is None:
        return None
    stratum = _d(summary, "Stratum")
    active_id = integer(stratum.get("Config Id"))
    connected = stratum.get("IsPoolConnected")
    configs = summary.get("StratumConfigs")
    out: list[PoolInfo] = []
    for i, cfg in enumerate(configs if isinstance(configs, list) else ()):
        url = text(cfg.get("pool")) if isinstance(cfg, dict) else None
        if url is None:
            continue
        active = i == active_id and connected is True
        status = ("Alive" if connected else "Dead") if i == active_id else None
        out.append(PoolInfo(url=url, user=text(cfg.get("login")), status=status, active=active))
    if not out and text(stratum.get("Current Pool")):
        out.append(
            PoolInfo(
                url=str(text(stratum.get("Current Pool"))),
                user=text(stratum.get("Current User")),
                status="Alive" if connected else "Dead",
                active=connected is True,
            )
        )
    return tuple(out)


def _state(summary: Body | None) -> str | None:
    op = text(_d(summary, "Status").get("Operating State"))
    return _STATES.get(op.lower()) if op else None


def _errors(summary: Body | None) -> tuple[str, ...] | None:
    err = _d(summary, "Status").get("Last Error")
    if err is None:
        return None
    # MinerError is a name ("NoHashboardsEnabled") or a one-key object ({"UartReadError": 3})
    shown = err if isinstance(err, str) else json.dumps(err, separators=(",", ":"))
    return (f"miner reports: {shown[:160]}",)


def _power_limit(summary: Body | None) -> float | None:
    tune = _d(summary, "PerpetualTune")
    if tune.get("Running") is not True:
        return None
    for name, stats in _d(tune, "Algorithm").items():
        if name == "Power" and isinstance(stats, dict):
            unit = str(stats.get("Unit", "W")).strip().upper()
            if unit == "W":
                return num(stats.get("Target"))
    return None


def _firmware(summary: Body | None) -> str | None:
    # "PowerPlay-BMS v1.5.13", "UMC v1.2.3": the whole string, as the UI shows it
    return text(summary.get("Software")) if summary else None


def _model(caps: Body | None) -> str | None:
    m = text(caps.get("Model")) if caps else None
    if m is None or m.lower() == "undefined":
        return None
    # ePIC writes "AntMiner"; the rest of the farm (and models.toml) says "Antminer"
    return re.sub(r"(?i)^antminer\b", "Antminer", m)


def _serial(caps: Body | None) -> str | None:
    if caps is None:
        return None
    sn = text(caps.get("Miner Serial Number"))
    if sn and sn.lower() not in ("n/a", "none", "null", "0"):
        return sn
    # older builds: the control board's CPU serial, the only per-box id they report
    return text(_d(caps, "Control Board Version").get("cpuSerial"))


def _mac(network: Body | None) -> str | None:
    if not network:
        return None
    for key in ("dhcp", "static"):
        found = mac(_d(network, key).get("mac_address"))
        if found and found != "00:00:00:00:00:00":
            return found
    return None


def _uptime(summary: Body | None) -> int | None:
    return integer(_d(summary, "Session").get("Uptime"))


FIELDS: dict[str, Source] = {
    "model": Source((CAPABILITIES,), _model),
    "serial": Source((CAPABILITIES,), _serial),
    "mac": Source((NETWORK,), _mac),
    "firmware": Source((SUMMARY,), _firmware),
    "hashrate_ths": Source((SUMMARY,), _hashrate),
    "hashrate_nominal_ths": Source((CAPABILITIES,), lambda c: num(c.get("Default Hashrate"))),
    "power_w": Source((SUMMARY,), lambda s: num(_d(s, "Power Supply Stats").get("Input Power"))),
    "power_limit_w": Source((SUMMARY,), _power_limit),
    "temps_c": Source((SUMMARY,), _temps),
    "fans_rpm": Source((SUMMARY,), _fans),
    "pools": Source((SUMMARY,), _pools),
    "uptime_s": Source((SUMMARY,), _uptime),
    "state": Source((SUMMARY,), _state),
    "errors": Source((SUMMARY,), _errors),
}


def vendor_of(model: str | None) -> str | None:
    """ePIC runs on other makers' machines: the vendor is the hardware's, from the model."""
    first = model.split(" ", 1)[0].lower() if model else ""
    return _VENDORS.get(first)


def build_epic_reading(
    host: str, port: int, taken_at: datetime, bodies: Mapping[str, Body], errors: Mapping[str, str]
) -> AsicReading:
    """Replies by endpoint name (summary, capabilities, network) -> reading. Pure."""
    from kuat.collectors.cgminer.parsers import (
        SPECS,
        build_reading,  # parsers imports firmware modules
    )

    replies = Replies(bodies=dict(bodies), errors=dict(errors))
    return build_reading(host, port, taken_at, SPECS[FAMILY], replies)


def capability_range(caps: Body | None, algo: str) -> tuple[float, float] | None:
    """(min, max) target of one perpetual-tune algorithm, if this box offers it."""
    rows = caps.get("PerpetualTune") if caps else None
    for row in rows if isinstance(rows, list) else ():
        if isinstance(row, dict) and row.get("algorithm") == algo:
            lo, hi = num(row.get("min")), num(row.get("max"))
            if lo is not None and hi is not None and lo <= hi:
                return lo, hi
    return None


# --- polling ---------------------------------------------------------------------------------


def _what(port: int) -> str:
    return f"ePIC API on port {port}"


async def fetch(
    client: httpx.AsyncClient, host: str, port: int, paths: tuple[str, ...], deadline: float
) -> tuple[dict[str, Body], dict[str, str], list[HttpFailure]]:
    """GET the named endpoints at once; (bodies, errors by name, failures)."""
    results = await asyncio.gather(
        *(
            request_json(client, "GET", host, port, f"/{p}", what=_what(port), deadline=deadline)
            for p in paths
        )
    )
    bodies: dict[str, Body] = {}
    errors: dict[str, str] = {}
    failures: list[HttpFailure] = []
    for p, got in zip(paths, results, strict=True):
        if isinstance(got, HttpFailure):
            errors[p] = got.detail
            failures.append(got)
        elif isinstance(got, dict):
            bodies[p] = got
        else:
            errors[p] = f"{_what(port)}: /{p} reply is a JSON {type(got).__name__}, not an object"
    return bodies, errors, failures


class NotEpic(WrongFirmware):
    """What answers on the port is not HTTP: the box was re-flashed, or another box is here."""


async def read(
    client: httpx.AsyncClient,
    host: str,
    port: int,
    access: Any,
    paths: tuple[str, ...],
    deadline: float,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The transport of the ePIC backend (__init__.py here): the endpoints at once, raising as a
    cgminer client does when the summary, without which there is no reading, did not come."""
    bodies, errors, failures = await fetch(client, host, port, paths, deadline)
    if SUMMARY in paths:
        raise_for_summary(errors, failures, port, SUMMARY in bodies)
    return dict(bodies), errors


def raise_for_summary(
    errors: Mapping[str, str], failures: list[HttpFailure], port: int, summary_ok: bool
) -> None:
    """No summary, no reading: raise the cause a person can act on."""
    if summary_ok:
        return
    if any(f.kind == "protocol" for f in failures):
        raise NotEpic(errors.get(SUMMARY, f"{_what(port)}: not an HTTP answer"))
    if any(f.kind in ("unreachable", "timeout") for f in failures) and len(failures) == len(errors):
        raise NoAnswer(errors.get(SUMMARY, next(iter(errors.values()))))
    raise ApiError(errors.get(SUMMARY, f"{_what(port)}: no summary"))


# --- control ---------------------------------------------------------------------------------


async def sleep(
    host: str,
    reason: str,
    *,
    port: int = DEFAULT_PORT,
    password: str = DEFAULT_PASSWORD,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
) -> ActionResult:
    """Stop mining (``POST /miner`` "Stop"); done when the summary reads Idling."""
    return await _run_state(host, port, password, True, reason, timeout_s, confirm_s)


async def wake(
    host: str,
    reason: str,
    *,
    port: int = DEFAULT_PORT,
    password: str = DEFAULT_PASSWORD,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
) -> ActionResult:
    """Start mining (``POST /miner`` "Autostart"); done when the summary reads Mining.

    A real box takes a while to initialise its boards: give ``confirm_s`` a few minutes there.
    """
    return await _run_state(host, port, password, False, reason, timeout_s, confirm_s)


async def set_power_limit(
    host: str,
    watts: int,
    reason: str,
    *,
    port: int = DEFAULT_PORT,
    password: str = DEFAULT_PASSWORD,
    timeout_s: float = 3.0,
    confirm_s: float = 10.0,
) -> ActionResult:
    """Run the perpetual tuner's "Power" algorithm at no more than ``watts``.

    Only boxes whose capabilities list the Power algorithm can; a target above its max is
    clamped to the max (still under the quota share), one below its min is refused without
    sending it (the curtailer learns the miner's floor from it; "unsupported" would turn limits
    off for the miner). Done when the summary shows the tuner at that target.
    """
    action, device = "set_power_limit", f"{host}:{port}"
    if watts <= 0:
        return ActionResult(device, action, "unsupported", "a 0 W limit is a sleep: use sleep()")
    loop = asyncio.get_running_loop()
    async with http_client() as client:
        caps = await request_json(
            client,
            "GET",
            host,
            port,
            f"/{CAPABILITIES}",
            what=_what(port),
            deadline=loop.time() + timeout_s,
        )
        if isinstance(caps, HttpFailure):
            return _failure_result(device, action, caps)
        span = capability_range(caps if isinstance(caps, dict) else None, "Power")
        if span is None:
            why = "this ePIC build offers no Power tuning algorithm (capabilities.PerpetualTune)"
            return ActionResult(device, action, "unsupported", why)
        lo, hi = span
        if watts < lo:
            detail = f"lowest power target is {lo:.0f} W (capabilities), above {watts} W; not sent"
            return ActionResult(device, action, "refused", detail, floor_w=float(lo))
        target = int(min(watts, hi))
        log.info("asic %s: ePIC power target %d W requested (%s)", device, target, reason)
        param = {"algo": "Power", "target": target}
        refused = await _post(client, host, port, "/perpetualtune/algo", param, password, timeout_s)
        if refused is not None:
            return _failure_result(device, action, refused)

        def applied(s: Body) -> bool:
            limit = _power_limit(s)
            return limit is not None and abs(limit - target) < 0.5

        ok, seen = await _confirm(
            client, host, port, applied, _describe_limit, timeout_s, confirm_s
        )
    if ok:
        detail = f"confirmed power target {target} W (<= {watts} W); reason: {reason}"
        return ActionResult(device, action, "done", detail)
    return ActionResult(device, action, "failed", f"miner took target {target} W but reads {seen}")


async def _run_state(
    host: str,
    port: int,
    password: str,
    to_sleep: bool,
    reason: str,
    timeout_s: float,
    confirm_s: float,
) -> ActionResult:
    action, device = ("sleep" if to_sleep else "wake"), f"{host}:{port}"
    want = "sleeping" if to_sleep else "mining"
    log.info("asic %s: ePIC %s requested (%s)", device, action, reason)
    async with http_client() as client:
        param = "Stop" if to_sleep else "Autostart"
        refused = await _post(client, host, port, "/miner", param, password, timeout_s)
        if refused is not None:
            return _failure_result(device, action, refused)
        ok, seen = await _confirm(
            client, host, port, lambda s: _state(s) == want, _describe_state, timeout_s, confirm_s
        )
    if ok:
        return ActionResult(device, action, "done", f"confirmed {want}; reason: {reason}")
    return ActionResult(device, action, "failed", f"miner accepted {param} but reads {seen}")


async def _post(
    client: httpx.AsyncClient,
    host: str,
    port: int,
    path: str,
    param: Any,
    password: str,
    timeout_s: float,
) -> HttpFailure | None:
    """One privileged write; None when the miner says ``"result": true``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    got = await request_json(
        client,
        "POST",
        host,
        port,
        path,
        what=_what(port),
        deadline=deadline,
        body={"param": param, "password": password},
    )
    if isinstance(got, HttpFailure):
        return got
    if not isinstance(got, dict):
        return HttpFailure("reply", f"{_what(port)}: {path} reply is not a JSON object")
    if got.get("result") is True:
        return None
    err = got.get("error")
    if err == "BadPassword":
        return HttpFailure("auth", f"{_what(port)} refused the password (BadPassword)")
    shown = err if isinstance(err, str) else json.dumps(err, separators=(",", ":"))
    return HttpFailure("rejected", f"{_what(port)} refused {path}: {shown[:120]}")


async def write(
    host: str, port: int, path: str, param: Any, password: str, timeout_s: float
) -> HttpFailure | None:
    """One privileged POST on a client of its own (a control verb's single write); None when
    the miner says ``"result": true``."""
    async with http_client() as client:
        return await _post(client, host, port, path, param, password, timeout_s)


def _failure_result(device: str, action: str, f: HttpFailure) -> ActionResult:
    if f.kind in ("auth", "rejected"):
        return ActionResult(device, action, "refused", f.detail)
    if f.kind in ("missing", "protocol", "unreachable"):
        return ActionResult(device, action, "unsupported", f"{f.detail}; is this an ePIC miner?")
    return ActionResult(device, action, "failed", f.detail)


def _describe_state(s: Body) -> str:
    op = text(_d(s, "Status").get("Operating State")) or "no operating state"
    return f"{_state(s) or 'not settled'} ({op})"


def _describe_limit(s: Body) -> str:
    limit = _power_limit(s)
    return "no power target" if limit is None else f"power target {limit:.0f} W"


async def _confirm(
    client: httpx.AsyncClient,
    host: str,
    port: int,
    done: Any,
    describe: Any,
    timeout_s: float,
    confirm_s: float,
) -> tuple[bool, str]:
    """Re-read the summary until ``done`` or ``confirm_s`` runs out; (done?, what it showed)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + confirm_s
    seen = "nothing"
    while True:
        got = await request_json(
            client,
            "GET",
            host,
            port,
            f"/{SUMMARY}",
            what=_what(port),
            deadline=loop.time() + timeout_s,
        )
        if isinstance(got, dict):
            if done(got):
                return True, describe(got)
            seen = describe(got)
        else:
            seen = f"unreadable ({got.detail if isinstance(got, HttpFailure) else 'no object'})"
        if loop.time() >= until:
            return False, seen
        await asyncio.sleep(min(0.5, max(0.0, until - loop.time())))
