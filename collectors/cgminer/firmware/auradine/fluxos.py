"""Auradine FluxOS's HTTP API (port 8080, token auth): sleep, wake, the power target, pools.

    POST /token {"command": "token", "user": U, "password": P} -> {"Token": [{"Token": "…"}]}
    POST /mode  (header ``Token``) {"sleep": "on" | "off"}
    POST /mode  (header ``Token``) {"mode": "custom", "tune": "power", "power": W}
    POST /updatepools (header ``Token``) {"command": "updatepools",
                                          "pools": [{"url", "user", "pass"}, …at most 3]}

The shapes are those pyasic's Auradine backend sends (UpstreamData/pyasic, pyasic/web/auradine.py,
Apache-2.0; ``update_pools`` for the pools), and asic-rs's sends the same ``updatepools`` (its
asic-rs-firmwares/auradine backend: url/user/pass, the first three pools); Auradine's own API
document was not found in any public source searched, and no real box has been driven here.
Every action is confirmed by reading the miner back over its cgminer-style API (``mode``: Sleep
and Power, firmware/auradine/__init__.py), as every other firmware's action is.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kuat.collectors.cgminer.http_json import HttpFailure, http_client, request_json

log = logging.getLogger(__name__)

DEFAULT_WEB_PORT = 8080
DEFAULT_USER = "admin"
DEFAULT_PASSWORD = "admin"


async def _token(
    client: Any, host: str, port: int, user: str, password: str, deadline: float
) -> str | HttpFailure:
    what = f"FluxOS API on port {port}"
    doc = await request_json(
        client,
        "POST",
        host,
        port,
        "/token",
        what=what,
        deadline=deadline,
        body={"command": "token", "user": user, "password": password},
    )
    if isinstance(doc, HttpFailure):
        return doc
    rows = doc.get("Token") if isinstance(doc, dict) else None
    token = (
        rows[0].get("Token")
        if isinstance(rows, list) and rows and isinstance(rows[0], dict)
        else None
    )
    if not isinstance(token, str) or not token:
        return HttpFailure("auth", f"{what} gave no token (wrong user or password?)")
    return token


async def set_mode(
    host: str,
    body: dict[str, Any],
    *,
    port: int = DEFAULT_WEB_PORT,
    user: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    timeout_s: float = 5.0,
) -> HttpFailure | None:
    """One ``/mode`` write with a fresh token; None when the miner accepted it."""
    return await _write(host, "/mode", body, port, user, password, timeout_s)


async def update_pools(
    host: str,
    pools: list[tuple[str, str, str]],
    *,
    port: int = DEFAULT_WEB_PORT,
    user: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    timeout_s: float = 5.0,
) -> HttpFailure | None:
    """``/updatepools`` with ``pools`` ((url, user, password), in priority order; the clients
    above send at most three) and a fresh token; None when the miner accepted it."""
    body = {
        "command": "updatepools",
        "pools": [{"url": u, "user": w, "pass": p} for u, w, p in pools],
    }
    return await _write(host, "/updatepools", body, port, user, password, timeout_s)


async def _write(
    host: str,
    path: str,
    body: dict[str, Any],
    port: int,
    user: str,
    password: str,
    timeout_s: float,
) -> HttpFailure | None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with http_client() as client:
        token = await _token(client, host, port, user, password, deadline)
        if isinstance(token, HttpFailure):
            return token
        doc = await request_json(
            client,
            "POST",
            host,
            port,
            path,
            what=f"FluxOS API on port {port}",
            deadline=deadline,
            body=body,
            headers={"Token": token},
        )
    if isinstance(doc, HttpFailure):
        return doc
    status = (doc.get("STATUS") if isinstance(doc, dict) else None) or [{}]
    first = status[0] if isinstance(status, list) and status and isinstance(status[0], dict) else {}
    if str(first.get("STATUS", "S")).upper() in ("E", "F"):
        return HttpFailure("rejected", f"FluxOS refused {path}: {str(first.get('Msg', ''))[:120]}")
    return None
