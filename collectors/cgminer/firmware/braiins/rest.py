"""Braiins OS power target and pools through its public REST API (Braiins OS+ 25.07 and later).

The cgminer-compatible API on 4028 reads the tuner (``tunerstatus``) but cannot change it; the
REST API on the web port can (OpenAPI in Braiins' bos-plus-api; the same calls as the gRPC
``PerformanceService``):

- ``POST /api/v1/auth/login`` ``{"username", "password"}`` -> ``{"token", "timeout_s"}``; the token
  goes back verbatim in ``Authorization`` (no scheme word);
- ``GET /api/v1/configuration/constraints`` -> ``tuner_constraints.power_target`` with
  ``min``/``default``/``max`` each ``{"watt": N}`` (``GetConstraintsResponse`` of the OpenAPI
  document, the gRPC ``ConfigurationService.GetConstraints``; the shape as two independent public
  clients of the API read it, no capture from a real box here), read before every power target:
  a target above the max is sent as the max (still under the quota share), one below the min is
  not sent at all (``OutOfRange``: refused, as the tuner would, so the caller learns the floor).
  A build without the endpoint (HTTP 404) gets the target unchecked, as before;
- ``PUT /api/v1/performance/power-target`` ``{"watt": N}`` -> ``{"watt": N}`` as applied; a
  target the tuner cannot take is a 4xx with ``{"message": …}``;
- ``PUT /api/v1/pools/batch`` with a list of pool groups (``name``, ``pools`` of ``url``/``user``/
  ``password``/``enabled``, ``load_balance_strategy``) replaces every pool group and applies them,
  which restarts bosminer (the REST twin of gRPC ``PoolService.SetPoolGroups``; OpenAPI document
  of 25.07 in asic-rs meta/braiins/25.07/openapi.json, ``setBatchPools``) -> the groups as set.

The same API has the box's identity, which the 4028 API lacks (no serial, no MAC there):

- ``GET /api/v1/miner/details`` -> ``serial_number`` (null on many Antminers running Braiins OS),
  ``mac_address``, ``miner_identity.miner_model``, ``bos_version.current``, ``hostname``;
- ``GET /api/v1/network/`` -> ``mac_address`` again, asked only if the details lack it.

Older releases have no REST API (nothing listening, or HTTP 404): that is "unsupported", and the
quota engine sleeps such a miner instead. The password never appears in a returned cause.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any

import httpx

from kuat.collectors.cgminer.firmware.bitmain.web import (
    BitmainIdentity,
    identity_mac,
    identity_serial,
)
from kuat.collectors.cgminer.firmware.common import text
from kuat.collectors.cgminer.http_json import HttpFailure, request_json

LOGIN_PATH = "/api/v1/auth/login"
POWER_TARGET_PATH = "/api/v1/performance/power-target"
POOLS_BATCH_PATH = "/api/v1/pools/batch"
# the one pool group kuat writes: every pool in it, tried in order (quota 1 = all work from it)
POOL_GROUP_NAME = "kuat"
CONSTRAINTS_PATH = "/api/v1/configuration/constraints"
MINER_DETAILS_PATH = "/api/v1/miner/details"
NETWORK_PATH = "/api/v1/network/"
DEFAULT_WEB_PORT = 80


@dataclasses.dataclass(frozen=True, slots=True)
class OutOfRange:
    """A power target below the lowest the miner's tuner takes (``configuration/constraints``);
    nothing was sent."""

    watts: int
    low: int
    high: int


def power_target_range(doc: Any) -> tuple[int, int] | None:
    """(min, max) W of the tuner's power target from a ``configuration/constraints`` document,
    or None when it has no usable range."""
    tuner = doc.get("tuner_constraints") if isinstance(doc, dict) else None
    target = tuner.get("power_target") if isinstance(tuner, dict) else None
    if not isinstance(target, dict):
        return None
    edges = []
    for name in ("min", "max"):
        edge = target.get(name)
        watt = edge.get("watt") if isinstance(edge, dict) else None
        if isinstance(watt, bool) or not isinstance(watt, int | float) or not 0 < watt < 1e6:
            return None
        edges.append(int(watt))
    low, high = edges
    return (low, high) if low <= high else None


async def set_power_target(
    client: httpx.AsyncClient,
    host: str,
    watts: int,
    *,
    port: int = 80,
    username: str = "root",
    password: str = "",
    timeout_s: float = 5.0,
) -> int | HttpFailure | OutOfRange:
    """Log in, read the tuner's range and set its power target within it (above the max: the
    max; below the min: ``OutOfRange``, nothing sent); the watts the miner says it applied."""
    what = _what(port)
    deadline = asyncio.get_running_loop().time() + timeout_s
    token = await _login(client, host, port, username, password, deadline)
    if isinstance(token, HttpFailure):
        return token
    constraints = await request_json(
        client,
        "GET",
        host,
        port,
        CONSTRAINTS_PATH,
        what=what,
        deadline=deadline,
        headers={"Authorization": token},
    )
    # no range (a build without the endpoint, an unreadable reply): the miner itself checks
    span = None if isinstance(constraints, HttpFailure) else power_target_range(constraints)
    if span is not None:
        low, high = span
        if watts < low:
            return OutOfRange(int(watts), low, high)
        watts = min(int(watts), high)
    got = await request_json(
        client,
        "PUT",
        host,
        port,
        POWER_TARGET_PATH,
        what=what,
        deadline=deadline,
        body={"watt": int(watts)},
        headers={"Authorization": token},
    )
    if isinstance(got, HttpFailure):
        return got
    applied = got.get("watt") if isinstance(got, dict) else None
    if not isinstance(applied, int) or isinstance(applied, bool):
        return HttpFailure("reply", f"{what}: power-target reply has no watt")
    return applied


async def set_pool_group(
    client: httpx.AsyncClient,
    host: str,
    pools: Sequence[tuple[str, str, str]],
    *,
    port: int = DEFAULT_WEB_PORT,
    username: str = "root",
    password: str = "",
    timeout_s: float = 5.0,
) -> int | HttpFailure:
    """Log in and replace every pool group with one holding ``pools`` ((url, user, password), in
    priority order); how many pools the miner says it set."""
    what = _what(port)
    deadline = asyncio.get_running_loop().time() + timeout_s
    token = await _login(client, host, port, username, password, deadline)
    if isinstance(token, HttpFailure):
        return token
    group = {
        "name": POOL_GROUP_NAME,
        "pools": [
            {"url": url, "user": user, "password": pw, "enabled": True} for url, user, pw in pools
        ],
        "load_balance_strategy": {"quota": {"value": 1}},
    }
    got = await request_json(
        client,
        "PUT",
        host,
        port,
        POOLS_BATCH_PATH,
        what=what,
        deadline=deadline,
        body=[group],
        headers={"Authorization": token},
    )
    if isinstance(got, HttpFailure):
        return got
    groups = got if isinstance(got, list) else None
    first = groups[0] if groups and isinstance(groups[0], dict) else None
    written = first.get("pools") if first is not None else None
    if not isinstance(written, list):
        return HttpFailure("reply", f"{what}: pools/batch reply has no pool group")
    return len(written)


def identity_from_miner_details(doc: Any) -> BitmainIdentity | str:
    """A ``/api/v1/miner/details`` document -> identity, or a one-line cause why it is unusable.

    ``serial_number`` is null on many Antminers running Braiins OS (the control board never had
    one written): such a box is known by its MAC, as an older stock Antminer is.
    """
    if not isinstance(doc, dict):
        return f"miner details are a JSON {type(doc).__name__}, not an object"
    ident_doc = doc.get("miner_identity")
    version = doc.get("bos_version")
    model = None
    if isinstance(ident_doc, dict):
        model = text(ident_doc.get("miner_model")) or text(ident_doc.get("name"))
    ident = BitmainIdentity(
        serial=identity_serial(doc.get("serial_number")),
        mac=identity_mac(doc.get("mac_address")),
        model=model,
        firmware=text(version.get("current")) if isinstance(version, dict) else None,
        hostname=text(doc.get("hostname")),
    )
    if ident.serial is None and ident.mac is None:
        return "miner details have neither a serial (serial_number) nor a MAC (mac_address)"
    return ident


async def fetch_braiins_identity(
    client: httpx.AsyncClient,
    host: str,
    *,
    port: int = DEFAULT_WEB_PORT,
    username: str = "root",
    password: str = "",
    timeout_s: float = 5.0,
) -> BitmainIdentity | str:
    """Log in and read the box's serial/MAC/model; identity, or a one-line cause.

    ``timeout_s`` bounds the whole exchange (login and every GET): a slow web server must not
    hold a background fetch slot for long.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    token = await _login(client, host, port, username, password, deadline)
    if isinstance(token, HttpFailure):
        return _cause(token)
    auth = {"Authorization": token}
    what = _what(port)
    doc = await request_json(
        client, "GET", host, port, MINER_DETAILS_PATH, what=what, deadline=deadline, headers=auth
    )
    if isinstance(doc, HttpFailure):
        return _cause(doc)
    ident = identity_from_miner_details(doc)
    if isinstance(ident, BitmainIdentity) and ident.mac is not None:
        return ident
    # no MAC in the details (not seen on a real box, but the network page is where it lives)
    net = await request_json(
        client, "GET", host, port, NETWORK_PATH, what=what, deadline=deadline, headers=auth
    )
    mac = identity_mac(net.get("mac_address")) if isinstance(net, dict) else None
    if mac is None:
        return ident
    if isinstance(ident, str):
        return BitmainIdentity(serial=None, mac=mac)
    return dataclasses.replace(ident, mac=mac)


def _what(port: int) -> str:
    return f"Braiins OS REST API on port {port}"


def _cause(f: HttpFailure) -> str:
    if f.kind in ("missing", "unreachable", "protocol"):
        # the usual case on a farm: firmware older than the REST API
        return f"{f.detail} (Braiins OS before 25.07?)"
    return f.detail


async def _login(
    client: httpx.AsyncClient, host: str, port: int, username: str, password: str, deadline: float
) -> str | HttpFailure:
    """The session token, sent back verbatim in ``Authorization``."""
    what = _what(port)
    login = await request_json(
        client,
        "POST",
        host,
        port,
        LOGIN_PATH,
        what=what,
        deadline=deadline,
        body={"username": username, "password": password},
    )
    if isinstance(login, HttpFailure):
        if login.kind in ("auth", "rejected"):
            return HttpFailure("auth", f"{what} refused user {username!r} (wrong password?)")
        return login
    token = login.get("token") if isinstance(login, dict) else None
    if not isinstance(token, str) or not token:
        return HttpFailure("reply", f"{what}: login gave no token")
    return token
