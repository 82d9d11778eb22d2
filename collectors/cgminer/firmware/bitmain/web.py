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

Stock firmware also sleeps and wakes only through this UI (bmminer's API has no such command):
``get_miner_conf.cgi`` reads the saved config, ``set_miner_conf.cgi`` writes it back with
``miner-mode`` 1 (sleep) or 0 (normal); bmminer restarts into the new mode. See
``conf_with_work_mode`` for what is posted and why.

Nothing here raises on a device's account: a failure is returned as a one-line cause.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from kuat.collectors.cgminer.firmware.common import mac as norm_mac
from kuat.collectors.cgminer.firmware.common import text
from kuat.collectors.cgminer.http_json import connect_cause, read_capped
from kuat.collectors.cgminer.ports import DEFAULT_WEB_PORT

SYSTEM_INFO_PATH = "/cgi-bin/get_system_info.cgi"
MINER_CONF_PATH = "/cgi-bin/get_miner_conf.cgi"
SET_MINER_CONF_PATH = "/cgi-bin/set_miner_conf.cgi"
# work mode names: what get_miner_conf shows, and what the UI's own save posts (see
# conf_with_work_mode); values 0 normal, 1 sleep
READ_MODE_KEY = "bitmain-work-mode"
WRITE_MODE_KEY = "miner-mode"
WORK_MODE_NORMAL = 0
WORK_MODE_SLEEP = 1
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


def identity_serial(v: Any) -> str | None:
    """A serial as a register key: None for a missing one or a placeholder."""
    serial = text(v)
    if serial is not None and serial.lower() in _NO_SERIAL:
        return None
    return serial


def identity_mac(v: Any) -> str | None:
    """A MAC as a register key, normalised; None for a missing or unprogrammed one."""
    mac = norm_mac(v)
    # an unprogrammed EEPROM: every such box would share one identity
    return None if mac == _NO_MAC else mac


def _identity(doc: dict[str, Any]) -> BitmainIdentity:
    return BitmainIdentity(
        serial=identity_serial(doc.get("serinum")),
        mac=identity_mac(doc.get("macaddr")),
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
    got = await _exchange(
        client,
        "GET",
        host,
        port,
        SYSTEM_INFO_PATH,
        username=username,
        password=password,
        timeout_s=timeout_s,
        max_bytes=max_bytes,
    )
    if isinstance(got, WebFailure):
        return got.detail
    return parse_system_info(got)


# --- work mode (sleep / normal) -----------------------------------------------------------------

WebFailureKind = Literal["auth", "rejected", "timeout", "unreachable", "missing", "http", "reply"]


@dataclass(frozen=True, slots=True)
class WebFailure:
    """Why a web UI exchange did not give a usable answer.

    ``kind`` lets control.py map it to an outcome: ``auth`` (HTTP 401) and ``rejected`` (the
    CGI answered but refused the change) are the miner saying no;
    ``unreachable`` (connection refused) and ``missing`` (HTTP 404) mean this box has no such
    web UI (unsupported); the rest are failures worth retrying.
    """

    kind: WebFailureKind
    detail: str


async def read_miner_conf(
    client: httpx.AsyncClient,
    host: str,
    *,
    port: int = DEFAULT_WEB_PORT,
    username: str,
    password: str,
    timeout_s: float,
    max_bytes: int = MAX_BODY_BYTES,
) -> dict[str, Any] | WebFailure:
    """GET get_miner_conf.cgi: the miner's saved configuration as a JSON object."""
    got = await _exchange(
        client,
        "GET",
        host,
        port,
        MINER_CONF_PATH,
        username=username,
        password=password,
        timeout_s=timeout_s,
        max_bytes=max_bytes,
    )
    if isinstance(got, WebFailure):
        return got
    doc = _json_object(got)
    if isinstance(doc, str):
        return WebFailure("reply", f"get_miner_conf: {doc}")
    return doc


def work_mode(conf: dict[str, Any]) -> int | None:
    """The work mode a miner conf says (0 normal, 1 sleep, 2/3 low power), or None.

    S19-era firmware reads it back as ``bitmain-work-mode`` ("0"/"1", a string); some builds
    only have the older ``miner-mode`` name.
    """
    for key in (READ_MODE_KEY, WRITE_MODE_KEY):
        v = conf.get(key)
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            return v
        if isinstance(v, str) and v.strip().isdigit():
            return int(v.strip())
    return None


def conf_with_work_mode(conf: dict[str, Any], mode: int) -> dict[str, Any]:
    """The document the stock web UI's own "Save" posts, built from the conf it read.

    The firmware rewrites its whole config from what is posted, so everything the UI would send
    comes from what was just read: a write that dropped the pools would leave the miner with
    none. The mode goes in under both names: S19-era firmware reads ``bitmain-work-mode`` but
    only acts on ``miner-mode`` (an int) in a write, older builds use their read name.
    """
    pools = [
        {
            "url": str(p.get("url", "")),
            "user": str(p.get("user", "")),
            "pass": str(p.get("pass", "")),
        }
        for p in conf.get("pools") or ()
        if isinstance(p, dict)
    ]
    doc: dict[str, Any] = {
        "bitmain-fan-ctrl": conf.get("bitmain-fan-ctrl", False),
        "bitmain-fan-pwm": conf.get("bitmain-fan-pwm", "100"),
        "freq-level": conf.get("bitmain-freq-level", conf.get("freq-level", "100")),
        WRITE_MODE_KEY: mode,
        READ_MODE_KEY: str(mode),
        "pools": pools,
    }
    return doc


async def write_miner_conf(
    client: httpx.AsyncClient,
    host: str,
    doc: dict[str, Any],
    *,
    port: int = DEFAULT_WEB_PORT,
    username: str,
    password: str,
    timeout_s: float,
    max_bytes: int = MAX_BODY_BYTES,
) -> WebFailure | None:
    """POST set_miner_conf.cgi; None when the firmware says ``"stats": "success"``."""
    got = await _exchange(
        client,
        "POST",
        host,
        port,
        SET_MINER_CONF_PATH,
        username=username,
        password=password,
        timeout_s=timeout_s,
        max_bytes=max_bytes,
        body=json.dumps(doc, separators=(",", ":")).encode(),
    )
    if isinstance(got, WebFailure):
        return got
    reply = _json_object(got)
    if isinstance(reply, str):
        return WebFailure("reply", f"set_miner_conf: {reply}")
    stats = str(reply.get("stats", "")).lower()
    if stats != "success":
        msg = " ".join(str(reply.get("msg") or reply.get("code") or "no reason given").split())
        return WebFailure("rejected", f"set_miner_conf says {stats or 'nothing'}: {msg[:120]}")
    return None


def _json_object(body: bytes) -> dict[str, Any] | str:
    try:
        doc = json.loads(body)
    except ValueError as e:
        pos = getattr(e, "pos", None)
        return f"reply is not JSON{f' at byte {pos}' if pos is not None else ''}"
    if not isinstance(doc, dict):
        return f"reply is a JSON {type(doc).__name__}, not an object"
    return doc


async def _exchange(
    client: httpx.AsyncClient,
    method: str,
    host: str,
    port: int,
    path: str,
    *,
    username: str,
    password: str,
    timeout_s: float,
    max_bytes: int,
    body: bytes | None = None,
) -> bytes | WebFailure:
    """One digest-authenticated request; the body (capped), or why there is none.

    ``timeout_s`` bounds the whole exchange, both digest legs and the body included.
    """
    url = f"http://{host}:{port}{path}"
    auth = httpx.DigestAuth(username, password)
    # the stock UI's own requests: some CGI builds look at these before parsing the body
    headers = {"X-Requested-With": "XMLHttpRequest"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream(
                method, url, auth=auth, timeout=timeout_s, content=body, headers=headers
            ) as resp:
                if resp.status_code == 401:
                    detail = f"web UI on port {port} refused user {username!r} (wrong password?)"
                    return WebFailure("auth", detail)
                if resp.status_code == 404:
                    return WebFailure("missing", f"web UI on port {port} has no {path}")
                if resp.status_code != 200:
                    return WebFailure(
                        "http", f"web UI on port {port} answered HTTP {resp.status_code}"
                    )
                got = await read_capped(resp, max_bytes)
    except (TimeoutError, httpx.TimeoutException):
        return WebFailure("timeout", f"web UI on port {port} timed out after {timeout_s:.1f} s")
    except httpx.ConnectError as e:
        cause = connect_cause(e)
        kind: WebFailureKind = "unreachable" if cause == "connection refused" else "http"
        return WebFailure(kind, f"web UI on port {port}: {cause}")
    except httpx.HTTPError as e:
        return WebFailure("http", f"web UI on port {port}: {_one_line(type(e).__name__, e)}")
    if isinstance(got, str):
        return WebFailure("reply", got)
    return got


def _one_line(prefix: str, e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{prefix}: {msg}" if msg else prefix
