"""What the simulated firmwares share: the ``Personality`` each backend folder declares in its
own ``sim.py`` (collectors/cgminer/firmware/<name>/sim.py), the cgminer-style reply pieces
several of them use, and the small HTTP/JSON server their web and REST APIs run on. Reply
bodies are shaped after the real replies in tests/cases/asic and tests/fixtures/asic (key names,
value types, quirks), filled with one miner's live numbers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kuat.collectors.cgminer.sim import SimMiner

Body = dict[str, Any]
Reply = Callable[["SimMiner"], Any]
# (miner, command, parameter, STATUS description) -> the reply to a write or session command,
# or None when the command is none of those
Control = Callable[["SimMiner", str, str, str], Body | None]
# (miner, method, path, lower-cased headers, body) -> (HTTP status, JSON document or None)
Route = Callable[["SimMiner", str, str, dict[str, str], bytes], tuple[int, Any]]
Model = tuple[str, float, float, int]  # model, nominal TH/s, nominal W, power limit W


@dataclass(frozen=True, slots=True)
class Ports:
    """Where a farm's miners listen: the cgminer API, the web port (None: no web), API v3."""

    api: int
    web: int | None
    v3: int


def _four_fans(m: SimMiner) -> int:
    return 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Personality:
    """One simulated firmware, declared beside its backend (firmware/<name>/sim.py); the farm
    (sim.py) finds every one there and names none.

    ``replies``: cgminer API command -> reply body, ``desc`` its STATUS description; ``new_api``:
    the table for requests with ``"new_api": true``; ``control``: write and session commands;
    ``intercept``: sees each raw request first (btminer's token and encrypted writes); ``alone``:
    commands refused inside a joined ``a+b`` request, ``joins=False`` refuses every joined one.
    ``listen``: serves the miner instead of a cgminer API on the API port (API v3, HTTP-only
    firmware); ``web``: what answers on the farm's web port, ``web_ui`` when that is the stock
    web UI. ``models`` are taken in turn; ``apply_s``: seconds from a command to its effect per
    verb on the real firmware (sim.REAL_APPLY_S); ``setup``: a new miner's initial state.
    """

    name: str
    models: tuple[Model, ...]
    desc: str = ""
    replies: Mapping[str, Reply] = field(default_factory=dict)
    new_api: Mapping[str, Reply] | None = None
    control: Control | None = None
    intercept: Callable[[SimMiner, dict[str, Any]], Body | None] | None = None
    alone: frozenset[str] = frozenset()
    joins: bool = True
    listen: Callable[[SimMiner, Ports], Awaitable[list[asyncio.Server]]] | None = None
    web: Callable[[SimMiner, int], Awaitable[asyncio.Server]] | None = None
    web_ui: bool = False
    glued_stats: bool = False  # one miner in five sends bmminer's glued '}{' STATS
    fans: Callable[[SimMiner], int] = _four_fans
    serial_prefix: str = "JYZZ"
    serial_len: int = 13
    web_password: str = "root"
    apply_s: Mapping[str, float] = field(default_factory=dict)
    setup: Callable[[SimMiner], None] | None = None
    fault: bool = False  # misbehaves on purpose (not one of sim.HEALTHY)


def status(code: int, msg: str, desc: str, letter: str = "S") -> list[dict[str, Any]]:
    return [
        {"STATUS": letter, "When": int(time.time()), "Code": code, "Msg": msg, "Description": desc}
    ]


def invalid(desc: str) -> Body:
    return {"STATUS": status(14, "Invalid command", desc, "E"), "id": 1}


def ok(desc: str, msg: str) -> Body:
    return {"STATUS": status(0, msg, desc), "id": 1}


def pools_body(m: SimMiner, desc: str) -> Body:
    rows = []
    # the pool it mines on: the first, unless a switchpool (LuxOS) chose another
    active = m.pool_active if m.pool_active < len(m.pools) else 0
    for i, p in enumerate(m.pools):
        rows.append(
            {
                "POOL": i,
                "URL": p["url"],
                "Status": "Alive",
                "Priority": i,
                "Quota": 1,
                "Long Poll": "N",
                "Getworks": 1200 + i,
                "Accepted": 0 if i else m.accepted,
                "Rejected": 0 if i else m.accepted // 900,
                "Works": 0 if i else m.accepted * 60,
                "Discarded": 0,
                "Stale": 0,
                "Get Failures": 0,
                "Remote Failures": 0,
                "User": p["user"],
                "Last Share Time": int(time.time()) - 3 if i == 0 else 0,
                "Diff1 Shares": 0,
                "Proxy Type": "",
                "Proxy": "",
                "Difficulty Accepted": float(m.accepted * 65536) if i == 0 else 0.0,
                "Difficulty Rejected": 0.0,
                "Difficulty Stale": 0.0,
                "Last Share Difficulty": 65536.0,
                "Work Difficulty": 65536.0,
                "Has Stratum": True,
                "Stratum Active": i == active,
                "Stratum URL": p["url"].split("//")[-1].split(":")[0],
                "Stratum Difficulty": 65536.0,
                "Has Vmask": True,
                "Has GBT": False,
                "Best Share": 1320888597,
                "Pool Rejected%": 0.0,
                "Pool Stale%": 0.0,
                "Bad Work": 3,
                "Current Block Height": 871234,
                "Current Block Version": 536870912,
            }
        )
    return {"STATUS": status(7, f"{len(rows)} Pool(s)", desc), "POOLS": rows, "id": 1}


def fans_body(m: SimMiner, desc: str) -> Body:
    rows = [
        {"FANS": i, "ID": i, "RPM": rpm, "Speed": 0 if m.sleeping else 70}
        for i, rpm in enumerate(m.fans_rpm)
    ]
    return {"STATUS": status(202, f"{len(rows)} Fan(s)", desc), "FANS": rows, "id": 1}


# --- the HTTP/JSON APIs (web and REST) ---------------------------------------------------------

MAX_HEAD = 8192
MAX_POST = 64 * 1024


def parse_head(raw: bytes) -> tuple[str, str, dict[str, str]] | None:
    """(method, path, lower-cased headers) of one request's head, or None if it is not HTTP."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


async def start_http(m: SimMiner, port: int, route: Route) -> asyncio.Server:
    return await asyncio.start_server(
        lambda r, w: _serve_http(m, r, w, route),
        host=m.ip,
        port=port,
        reuse_address=True,
        backlog=64,
        limit=MAX_HEAD,
    )


async def _serve_http(
    m: SimMiner, reader: asyncio.StreamReader, w: asyncio.StreamWriter, route: Route
) -> None:
    """One request per connection. A cgminer-style request (``{"command": ...}``) gets the
    400 an HTTP server sends to anything that is not HTTP, as ePIC's 4028 does."""
    try:
        first = await reader.readexactly(1)
        if first in (b"{", b"["):
            w.write(_json_http(m, 400, None, reason="Bad Request"))
            await w.drain()
            return
        head = parse_head(first + await reader.readuntil(b"\r\n\r\n"))
        if head is None:
            return
        method, path, headers = head
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_POST:
            return
        body = await reader.readexactly(int(length))
        if m.web_hang:
            while await reader.read(1024):
                pass
            return
        if m.http_garbage:
            page = b"<html><body>502 Bad Gateway</body></html>"
            top = f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {len(page)}"
            w.write(f"{top}\r\nConnection: close\r\n\r\n".encode() + page)
            await w.drain()
            return
        m.tick()
        status, doc = route(m, method, path.split("?")[0], headers, body)
        w.write(_json_http(m, status, doc))
        await w.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        w.close()


def _json_http(m: SimMiner, status: int, doc: Any, reason: str = "") -> bytes:
    m.web_requests[status] += 1
    body = b"" if doc is None else json.dumps(doc).encode()
    head = [f"HTTP/1.1 {status} {reason or 'OK'}", "Content-Type: application/json"]
    head += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def http_api(route: Route) -> Callable[[SimMiner, int], Awaitable[asyncio.Server]]:
    """A ``Personality.web``: ``route`` served on the port it is given."""

    async def start(m: SimMiner, port: int) -> asyncio.Server:
        return await start_http(m, port, route)

    return start
