"""Braiins OS power target through its public REST API (Braiins OS+ 25.07 and later).

The cgminer-compatible API on 4028 reads the tuner (``tunerstatus``) but cannot change it; the
REST API on the web port can (OpenAPI in Braiins' bos-plus-api; the same calls as the gRPC
``PerformanceService``):

- ``POST /api/v1/auth/login`` ``{"username", "password"}`` -> ``{"token", "timeout_s"}``; the token
  goes back verbatim in ``Authorization`` (no scheme word);
- ``PUT /api/v1/performance/power-target`` ``{"watt": N}`` -> ``{"watt": N}`` as applied; a
  target the tuner cannot take is a 4xx with ``{"message": …}``.

Older releases have no REST API (nothing listening, or HTTP 404): that is "unsupported", and the
quota engine sleeps such a miner instead. The password never appears in a returned cause.
"""

from __future__ import annotations

import asyncio

import httpx

from collectors.cgminer.http_json import HttpFailure, request_json

LOGIN_PATH = "/api/v1/auth/login"
POWER_TARGET_PATH = "/api/v1/performance/power-target"


async def set_power_target(
    client: httpx.AsyncClient,
    host: str,
    watts: int,
    *,
    port: int = 80,
    username: str = "root",
    password: str = "",
    timeout_s: float = 5.0,
) -> int | HttpFailure:
    """Log in and set the tuner's power target; the watts the miner says it applied."""
    what = f"Braiins OS REST API on port {port}"
    deadline = asyncio.get_running_loop().time() + timeout_s
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
