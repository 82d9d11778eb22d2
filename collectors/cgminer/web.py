"""Identity of stock Antminers from their web UI.

bmminer's 4028 API has no serial and no MAC, so a stock Antminer's reading would be known only by
its IP:port, and an IP change would look like a new miner. The web UI (lighttpd on port 80, HTTP
digest auth, ``root``/``root`` out of the box, realm "antMiner Configuration") has both in
``/cgi-bin/get_system_info.cgi``::

    {"minertype": "Antminer S19 Pro", "nettype": "DHCP", "netdevice": "eth0",
     "macaddr": "02:1A:2B:3C:4D:5E", "hostname": "Antminer", "ipaddress": "10.20.0.17",
     "netmask": "255.255.255.0", "gateway": "10.20.0.1", "dnsservers": "10.20.0.1",
     "system_mode": "GNU/Linux", "system_kernel_version": "Linux 4.9.38 ...",
     "system_filesystem_version": "Tue Dec  6 16:12:30 CST 2022", "firmware_type": "Release",
     "serinum": "JYZZ..."}

``serinum`` exists on newer firmware only (S19 generation on); older boxes are known by MAC.
Nothing here raises on a device's account: a failure is returned as a one-line cause.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx

from collectors.cgminer.firmware.common import mac as norm_mac
from collectors.cgminer.firmware.common import text

SYSTEM_INFO_PATH = "/cgi-bin/get_system_info.cgi"
DEFAULT_WEB_PORT = 80
# The real page is ~600 bytes; anything near this cap is not the page we asked for.
MAX_BODY_BYTES = 64 * 1024
# Placeholders some firmware builds put in serinum instead of leaving it out.
_NO_SERIAL = frozenset({"", "0", "null", "none", "unknown", "n/a"})
_NO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True, slots=True)
class BitmainIdentity:
    """What the web UI says about the box. ``serial`` or ``mac`` is always set."""

    serial: str | None
    mac: str | None
    model: str | None = None
    firmware: str | None = None
    hostname: str | None = None
    ip: str | None = None


def parse_system_info(body: bytes | str) -> BitmainIdentity | str:
    """The body of get_system_info.cgi -> identity, or a one-line cause why it is unusable."""
    try:
        doc = json.loads(body)
    except ValueError as e:
        pos = getattr(e, "pos", None)
        return f"web UI reply is not JSON{f' at byte {pos}' if pos is not None else ''}"
    if not isinstance(doc, dict):
        return f"web UI reply is a JSON {type(doc).__name__}, not an object"
    ident = _identity(doc)
    if ident.serial is None and ident.mac is None:
        return "web UI reply has neither a serial (serinum) nor a MAC (macaddr)"
    return ident


def _identity(doc: dict[str, Any]) -> BitmainIdentity:
    serial = text(doc.get("serinum"))
    if serial is not None and serial.lower() in _NO_SERIAL:
        serial = None
    mac = norm_mac(doc.get("macaddr"))
    if mac == _NO_MAC:  # an unprogrammed EEPROM: every such box would share one identity
        mac = None
    return BitmainIdentity(
        serial=serial,
        mac=mac,
        model=text(doc.get("minertype")),
        firmware=text(doc.get("system_filesystem_version")),
        hostname=text(doc.get("hostname")),
        ip=text(doc.get("ipaddress")),
    )


async def fetch_bitmain_identity(
    client: httpx.AsyncClient,
    host: str,
    *,
    port: int = DEFAULT_WEB_PORT,
    username: str,
    password: str,
    timeout_s: float,
    max_bytes: int = MAX_BODY_BYTES,
) -> BitmainIdentity | str:
    """GET get_system_info.cgi with digest auth; identity, or a one-line cause.

    ``timeout_s`` bounds the whole exchange (both legs of the digest handshake and the body),
    not each socket operation as httpx's own timeout does: a CGI that dribbles bytes must not
    hold a fetch slot for minutes.
    """
    url = f"http://{host}:{port}{SYSTEM_INFO_PATH}"
    auth = httpx.DigestAuth(username, password)
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream("GET", url, auth=auth, timeout=timeout_s) as resp:
                if resp.status_code == 401:
                    return f"web UI on port {port} refused user {username!r} (wrong password?)"
                if resp.status_code != 200:
                    return f"web UI on port {port} answered HTTP {resp.status_code}"
                body = await _read_capped(resp, max_bytes)
    except TimeoutError:
        return f"web UI on port {port} timed out after {timeout_s:.1f} s"
    except httpx.TimeoutException:
        return f"web UI on port {port} timed out after {timeout_s:.1f} s"
    except httpx.ConnectError as e:
        return f"web UI on port {port}: {_connect_cause(e)}"
    except httpx.HTTPError as e:
        return f"web UI on port {port}: {_one_line(type(e).__name__, e)}"
    if isinstance(body, str):
        return body
    return parse_system_info(body)


async def _read_capped(resp: httpx.Response, max_bytes: int) -> bytes | str:
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        return f"web UI reply of {declared} bytes exceeds {max_bytes} bytes"
    buf = bytearray()
    async for chunk in resp.aiter_bytes():
        buf += chunk
        if len(buf) > max_bytes:
            return f"web UI reply exceeds {max_bytes} bytes"
    return bytes(buf)


def _connect_cause(e: httpx.ConnectError) -> str:
    # httpx -> httpcore -> anyio's "All connection attempts failed" -> the real OSError
    inner: BaseException | None = e
    for _ in range(8):  # a bounded walk: chains are short, but never trust them to end
        if inner is None:
            break
        if isinstance(inner, ConnectionRefusedError):
            return "connection refused"
        if isinstance(inner, OSError) and inner.errno is not None:
            return _one_line("cannot connect", inner)
        inner = inner.__cause__ or inner.__context__
    return _one_line("cannot connect", e)


def _one_line(prefix: str, e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{prefix}: {msg}" if msg else prefix
