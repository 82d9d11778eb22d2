"""JSON over HTTP to LAN miners (the web and REST APIs firmware backends read and write): one
request, bounded in time and size, and a one-line cause instead of an exception when there is
no usable answer.

Nothing here raises on a device's account. ``HttpFailure.kind`` lets a caller map a failure to
an action outcome: ``auth``/``rejected`` the miner said no; ``missing``/``unreachable``/
``protocol`` this box has no such API; the rest are failures worth retrying.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

# Miners' JSON replies are a few KB; anything near this is not the reply we asked for.
MAX_BODY_BYTES = 256 * 1024

HttpFailureKind = Literal[
    "auth", "rejected", "timeout", "unreachable", "missing", "http", "reply", "protocol"
]


@dataclass(frozen=True, slots=True)
class HttpFailure:
    """Why an HTTP exchange gave no usable answer. ``protocol``: whatever answers is not HTTP
    (a cgminer API on the port, say); ``auth``/``rejected``: the miner said no."""

    kind: HttpFailureKind
    detail: str


def http_client() -> httpx.AsyncClient:
    """A client for LAN miners: no proxy from the environment (a site's HTTP_PROXY must not
    carry miner traffic), no pooled idle connections (thousands of hosts, one poll a minute)."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    return httpx.AsyncClient(trust_env=False, limits=limits, verify=False)


async def request_json(
    client: httpx.AsyncClient,
    method: str,
    host: str,
    port: int,
    path: str,
    *,
    what: str,
    deadline: float,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    max_bytes: int = MAX_BODY_BYTES,
) -> Any | HttpFailure:
    """One request; the decoded JSON (None for an empty 200 body), or why there is none.

    ``deadline`` is event-loop time and bounds the whole exchange (connect, headers, body):
    httpx's own timeouts are per socket operation, and a miner that dribbles bytes must not
    outlive its poll. ``what`` names the API in causes ("ePIC API on port 4028").
    """
    loop = asyncio.get_running_loop()
    left = deadline - loop.time()
    if left <= 0:
        return HttpFailure("timeout", f"{what}: no time left in the poll for {path}")
    url = f"http://{host}:{port}{path}"
    content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
    hdrs = dict(headers or {})
    if content is not None:
        hdrs["Content-Type"] = "application/json"
    start = loop.time()
    try:
        async with asyncio.timeout_at(deadline):
            async with client.stream(
                method, url, content=content, headers=hdrs, timeout=left
            ) as resp:
                raw = await read_capped(resp, max_bytes)
                status = resp.status_code
    except (TimeoutError, httpx.TimeoutException):
        return HttpFailure("timeout", f"{what} timed out after {loop.time() - start:.1f} s")
    except httpx.ConnectError as e:
        cause = connect_cause(e)
        kind: HttpFailureKind = "unreachable" if cause == "connection refused" else "http"
        return HttpFailure(kind, f"{what}: {cause}")
    except httpx.RemoteProtocolError as e:
        return HttpFailure("protocol", f"{what}: not an HTTP answer ({one_line(e)})")
    except httpx.HTTPError as e:
        return HttpFailure("http", f"{what}: {type(e).__name__}: {one_line(e)}")
    if isinstance(raw, str):
        return HttpFailure("reply", f"{what}: {raw}")
    return _decoded(status, raw, what, path)


def _decoded(status: int, raw: bytes, what: str, path: str) -> Any | HttpFailure:
    doc: Any = None
    bad_json: str | None = None
    if raw.strip():
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as e:
            pos = getattr(e, "pos", None)
            bad_json = f"{path} reply is not JSON{f' at byte {pos}' if pos is not None else ''}"
    if status in (401, 403):
        return HttpFailure("auth", f"{what} refused {path} (HTTP {status}; wrong password?)")
    if status == 404:
        return HttpFailure("missing", f"{what} has no {path}")
    if status != 200:
        err = (doc.get("err") or doc.get("message")) if isinstance(doc, dict) else None
        why = f": {one_line(err)[:160]}" if err else ""
        # a 4xx is the miner refusing this request (a value out of range, say); 5xx a failure
        kind: HttpFailureKind = "rejected" if 400 <= status < 500 else "http"
        return HttpFailure(kind, f"{what} answered HTTP {status} to {path}{why}")
    if bad_json is not None:
        return HttpFailure("reply", f"{what}: {bad_json}")
    return doc


async def read_capped(resp: httpx.Response, max_bytes: int) -> bytes | str:
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        return f"reply of {declared} bytes exceeds {max_bytes} bytes"
    buf = bytearray()
    async for chunk in resp.aiter_raw():
        buf += chunk
        if len(buf) > max_bytes:
            return f"reply exceeds {max_bytes} bytes"
    return bytes(buf)


def connect_cause(e: BaseException) -> str:
    # httpx -> httpcore -> the OSError that says what really happened; a bounded walk
    inner: BaseException | None = e
    for _ in range(8):
        if inner is None:
            break
        if isinstance(inner, ConnectionRefusedError):
            return "connection refused"
        if isinstance(inner, OSError) and inner.errno is not None:
            return f"cannot connect: {one_line(inner)}"
        inner = inner.__cause__ or inner.__context__
    return f"cannot connect: {one_line(e)}"


def one_line(e: object) -> str:
    return " ".join(str(e).split()) or type(e).__name__
