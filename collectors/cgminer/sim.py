"""A farm of simulated cgminer-API miners, each on its own 127.x.y.z address.

Used by the tests, ``kuat demo`` and the benchmarks. Healthy personalities answer like the real
firmware in tests/fixtures/asic (stock Antminer, Whatsminer btminer, LuxOS, Braiins OS) with
numbers that move a little per request; fault personalities misbehave on purpose:

- ``hang``: accepts, never answers;   - ``trickle``: a valid reply, 1 byte every 0.5 s;
- ``flood``: bytes without end;        - ``garbage``: an HTML error page, not JSON;
- ``reject_multi``: stock Antminer that answers "Invalid command" to ``a+b``.

``whatsminer_v3``: new btminer (M60S) that answers only Whatsminer API v3, length-framed JSON on
``v3_port`` (4433 by default), from the real ``get.device.info`` with this miner's serial, MAC
and numbers; nothing listens on its 4028, so a poller must fall back to 4433. Not in the default
mix: existing farms are unchanged. ``set.*`` commands are refused ("no permission"), as on a
miner whose write API was never unlocked.

With ``web_port`` set, stock Antminers (``antminer``, ``reject_multi``) also serve their web UI's
``/cgi-bin/get_system_info.cgi`` (serial, MAC, model), ``get_miner_conf.cgi`` and
``set_miner_conf.cgi`` behind HTTP digest auth, as lighttpd on the real box does;
``SimMiner.web_password`` and ``web_hang`` let tests break it.

Sleep/wake as the firmware does it: LuxOS ``logon`` + ``curtail`` ``<sid>,sleep|wakeup``,
Whatsminer ``power_off``/``power_on``, Braiins ``pause``/``resume``, stock Antminer a
``set_miner_conf.cgi`` with ``miner-mode`` 1/0 (applied after ``web_apply_delay_s``, as bmminer
restarts into the new mode). A sleeping stock miner hashes 0 with its fans stopped, at ~10 W.
LuxOS power profiles: ``profiles`` and ``logon`` + ``profileset`` ``<sid>,<name>``; the miner
then runs at that profile's watts and hashrate.

    python -m collectors.cgminer.sim --count 500 --first-ip 127.20.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import ipaddress
import json
import random
import secrets
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from collectors.cgminer import sim_replies as R

HEALTHY = ("antminer", "whatsminer", "luxos", "braiins", "whatsminer_v3")
FAULTS = ("hang", "trickle", "flood", "garbage", "reject_multi")
PERSONALITIES = HEALTHY + FAULTS
# stock Antminers have the web UI; the other firmwares report identity on their own API
WEB_PERSONALITIES = ("antminer", "reject_multi")
# Default mix, roughly a Kazakh hosting site: mostly stock S19s, then Whatsminers, some LuxOS
# and Braiins; weights per 20 miners.
_MIX = ("antminer",) * 10 + ("whatsminer",) * 5 + ("luxos",) * 3 + ("braiins",) * 2

# model, nominal TH/s, nominal W, power limit W
_MODELS: dict[str, tuple[tuple[str, float, float, int], ...]] = {
    "antminer": (
        ("Antminer S19 Pro", 110.0, 3250.0, 3250),
        ("Antminer S19j Pro", 100.0, 3050.0, 3050),
        ("Antminer S19 XP", 140.0, 3010.0, 3010),
    ),
    # as the reading names them; the API itself says "M31S" (sim_replies strips the maker)
    "whatsminer": (
        ("Whatsminer M31S", 76.0, 3220.0, 3600),
        ("Whatsminer M30S++", 112.0, 3472.0, 3600),
    ),
    # nominal: the fixture's three boards' detect-hash-rate, 61.4+53.9+65.7 TH/s
    "whatsminer_v3": (("Whatsminer M60S_VK40", 181.0, 3344.0, 3600),),
    "luxos": (("Antminer S19k Pro", 121.8, 2760.0, 2760),),
    "braiins": (("Antminer S19 XP", 140.0, 3031.0, 3031),),
    "reject_multi": (("Antminer S19 Pro", 110.0, 3250.0, 3250),),
}
SLEEP_POWER_W = 10.0


@dataclass(slots=True)
class SimMiner:
    ip: str
    port: int
    personality: str
    model: str
    serial: str
    mac: str
    nominal_ths: float
    nominal_power_w: float
    power_limit_w: int
    rng: random.Random
    sleeping: bool = False
    pools: list[dict[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    accepted: int = 0
    session_id: str = ""
    hashrate_ths: float = 0.0
    power_w: float = 0.0
    fans_rpm: tuple[int, ...] = ()
    _temps: tuple[tuple[int, int], ...] = ()
    # every command this miner was asked, for tests that check what a poll sends
    requests: Counter[str] = field(default_factory=Counter)
    # web UI: HTTP statuses sent (200 = an authenticated page), and how to misbehave
    web_requests: Counter[int] = field(default_factory=Counter)
    web_password: str = "root"
    web_hang: bool = False
    web_nonces: deque[str] = field(default_factory=lambda: deque(maxlen=64))
    # stock web UI config: the saved work mode (0 normal, 1 sleep), every document posted to
    # set_miner_conf.cgi, and how long bmminer takes to come back in the new mode
    work_mode: int = 0
    conf_writes: list[dict[str, Any]] = field(default_factory=list)
    web_apply_delay_s: float = 0.0
    # LuxOS: the profile in use and what it makes the miner run at (0 = nameplate)
    profile: str = R.LUX_DEFAULT_PROFILE
    run_ths: float = 0.0
    run_w: float = 0.0

    @property
    def firmware_personality(self) -> str:
        # fault personalities misbehave on the wire; what they would say is a stock Antminer's
        return self.personality if self.personality in HEALTHY else "antminer"

    @property
    def serves_web(self) -> bool:
        return self.personality in WEB_PERSONALITIES

    @property
    def elapsed(self) -> int:
        return int(time.monotonic() - self.started) + 50474

    def tick(self) -> None:
        """New live numbers: every poll sees a slightly different miner, as in the field."""
        r = self.rng
        if self.sleeping:
            self.hashrate_ths = 0.0
            self.power_w = SLEEP_POWER_W + r.uniform(-1.0, 1.0)
            self.fans_rpm = (0,) * len(self.fans_rpm or (0, 0, 0, 0))
            self._temps = tuple((22, 22) for _ in range(3))
            return
        self.hashrate_ths = (self.run_ths or self.nominal_ths) * r.uniform(0.97, 1.03)
        self.power_w = (self.run_w or self.nominal_power_w) * r.uniform(0.985, 1.015)
        n_fans = 2 if self.firmware_personality.startswith("whatsminer") else 4
        self.fans_rpm = tuple(int(r.uniform(5000, 6000)) for _ in range(n_fans))
        self._temps = tuple((int(r.uniform(58, 74)), int(r.uniform(66, 82))) for _ in range(3))
        self.accepted += r.randint(1, 6)

    def chain_temps(self) -> tuple[tuple[int, int], ...]:
        """(board, hottest chip) per chain, °C."""
        return self._temps

    def chain_rates_ghs(self) -> list[float]:
        per = self.hashrate_ths * 1e3 / 3
        return [per * f for f in (1.01, 0.98, 1.01)]

    # --- the API ---------------------------------------------------------------------------

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        command = str(request.get("command", ""))
        parameter = request.get("parameter")
        self.requests.update(command.split("+"))
        table, desc = R.FIRMWARE_REPLIES[self.firmware_personality]
        self.tick()
        if "+" in command:
            if self.personality == "reject_multi":
                return R.invalid(desc)
            out: dict[str, Any] = {}
            for part in dict.fromkeys(command.split("+")):
                if self.personality == "whatsminer" and part in R.WHATSMINER_ALONE:
                    out[part] = [R.invalid(desc)]
                else:
                    out[part] = [self._single(part, parameter, table, desc)]
            out["id"] = 1
            return out
        return self._single(command, parameter, table, desc)

    def answer_v3(self, request: dict[str, Any]) -> dict[str, Any]:
        """One Whatsminer API v3 request -> its reply (``code`` 0 or an error code)."""
        cmd = str(request.get("cmd", ""))
        param = request.get("param")
        self.requests[f"{cmd}:{param}" if param is not None else cmd] += 1
        self.tick()
        if cmd == "get.device.info":
            return R.wm_v3_device_info(self, param)
        if cmd == "get.miner.status":
            return R.wm_v3_miner_status(self, param)
        if cmd.startswith("set."):
            return R.v3_reply(cmd, "no permission", R.V3_NO_PERMISSION)
        return R.v3_reply(cmd, "invalid command", R.V3_INVALID_COMMAND)

    def _single(
        self, command: str, parameter: Any, table: dict[str, Any], desc: str
    ) -> dict[str, Any]:
        control = self._control(command, str(parameter) if parameter is not None else "", desc)
        if control is not None:
            return control
        fn = table.get(command)
        return fn(self) if fn is not None else R.invalid(desc)

    def set_work_mode(self, mode: int) -> None:
        """What set_miner_conf.cgi does: save the mode, bmminer restarts into it."""
        self.work_mode = mode

        def apply() -> None:
            if self.work_mode == mode:  # a later write wins, as the last restart does
                self.sleeping = mode == 1

        if self.web_apply_delay_s > 0:
            asyncio.get_running_loop().call_later(self.web_apply_delay_s, apply)
        else:
            apply()

    def _control(self, command: str, parameter: str, desc: str) -> dict[str, Any] | None:
        fw = self.firmware_personality
        if fw == "luxos" and command == "curtail":
            sid, _, action = parameter.partition(",")
            if sid != self.session_id or action not in ("sleep", "wakeup"):
                return {"STATUS": R._status(45, "Access denied", desc, "E"), "id": 1}
            self.sleeping = action == "sleep"
            return R.ok(desc, f"Curtail {action}")
        if fw == "luxos" and command == "profileset":
            sid, _, name = parameter.partition(",")
            if sid != self.session_id:
                return {"STATUS": R._status(45, "Access denied", desc, "E"), "id": 1}
            table = R.lux_profiles(self)
            if name not in table:
                return {"STATUS": R._status(322, f"Invalid profile {name}", desc, "E"), "id": 1}
            self.profile = name
            self.run_ths, watts = table[name]
            self.run_w = float(watts)
            self.power_limit_w = watts
            return {
                "PROFILE": [{"Board": 0, "FrequencyStep": 5, "Profile": name, "VoltageStep": 0.05}],
                "STATUS": R._status(321, "Profile Set", desc),
                "id": 1,
            }
        if fw == "luxos" and command == "logoff":
            return R.ok(desc, "Session closed")
        if fw == "whatsminer" and command in ("power_off", "power_on"):
            self.sleeping = command == "power_off"
            return {"STATUS": "S", "When": int(time.time()), "Code": 131, "Msg": "API command OK"}
        if fw == "braiins" and command in ("pause", "resume"):
            self.sleeping = command == "pause"
            return R.ok(desc, "Paused" if self.sleeping else "Resumed")
        return None


def encode(miner: SimMiner, body: dict[str, Any], glue_stats: bool) -> bytes:
    text = json.dumps(body, separators=(",", ":"))
    if glue_stats:
        # bmminer's own bug, kept on some stock miners: '}{' between the STATS objects
        text = text.replace('},{"STATS":0', '}{"STATS":0', 1)
    return text.encode() + b"\x00"


class _MinerProtocol(asyncio.Protocol):
    def __init__(self, miner: SimMiner, glue_stats: bool) -> None:
        self.miner = miner
        self.glue_stats = glue_stats
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.handles: list[asyncio.TimerHandle] = []
        self.paused = False
        self.flooding = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            request = json.loads(self.buf)
        except ValueError:
            if len(self.buf) > 8192:
                self._close()
            return  # wait for the rest of the request
        self.buf.clear()
        self.respond(request if isinstance(request, dict) else {})

    def respond(self, request: dict[str, Any]) -> None:
        p = self.miner.personality
        assert self.transport is not None
        if p == "hang":
            return
        if p == "garbage":
            self.transport.write(b"<html><body>502 Bad Gateway</body></html>\r\n")
            self._close()
            return
        if p == "flood":
            self.flooding = True
            self._flood()
            return
        reply = encode(self.miner, self.miner.answer(request), self.glue_stats)
        if p == "trickle":
            self._trickle(reply, 0)
            return
        self.transport.write(reply)
        self._close()

    def _trickle(self, reply: bytes, i: int) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(reply[i : i + 1])
        if i + 1 >= len(reply):
            self._close()
            return
        loop = asyncio.get_running_loop()
        self.handles.append(loop.call_later(0.5, self._trickle, reply, i + 1))

    _CHUNK = b'{"STATS":[' + b"1," * 8000

    def _flood(self) -> None:
        while self.transport is not None and not self.transport.is_closing() and not self.paused:
            self.transport.write(self._CHUNK)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.flooding:
            self._flood()

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        for h in self.handles:
            h.cancel()
        self.transport = None


class _V3Protocol(asyncio.Protocol):
    """Whatsminer API v3 framing: 4-byte little-endian length, then JSON, both ways.

    Like the real firmware the connection stays open for more requests (the client closes it);
    zero-length frames are heartbeats and get no reply; a frame longer than 64 KiB is not a
    request and closes the connection.
    """

    _MAX_REQUEST = 64 * 1024

    def __init__(self, miner: SimMiner) -> None:
        self.miner = miner
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 4 and self.transport is not None:
            n = int.from_bytes(self.buf[:4], "little")
            if n > self._MAX_REQUEST:
                self.transport.close()
                return
            if len(self.buf) < 4 + n:
                return
            raw = bytes(self.buf[4 : 4 + n])
            del self.buf[: 4 + n]
            if n == 0:
                continue  # heartbeat
            try:
                request = json.loads(raw)
            except ValueError:
                request = None
            if isinstance(request, dict):
                reply = self.miner.answer_v3(request)
            else:
                reply = R.v3_reply("", "invalid json", R.V3_INVALID_ITEM)
            body = json.dumps(reply, separators=(",", ":")).encode()
            self.transport.write(len(body).to_bytes(4, "little") + body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


# --- the stock web UI -----------------------------------------------------------------------

WEB_USER = "root"
_MAX_HEAD = 8192
_MAX_POST = 64 * 1024


async def _serve_web(
    miner: SimMiner, reader: asyncio.StreamReader, w: asyncio.StreamWriter
) -> None:
    """One request per connection (``Connection: close``): enough for httpx's digest handshake."""
    try:
        head = await _read_head(reader)
        if head is None:
            return
        length = head[2].get("content-length", "0")
        if not length.isdigit() or int(length) > _MAX_POST:
            return
        # read the body even when the answer is a 401: closing with unread bytes sends an RST,
        # and the client would lose the challenge it needs for the digest handshake
        body = await reader.readexactly(int(length))
        if miner.web_hang:
            # a wedged CGI: the request is read, nothing comes back until the client gives up
            while await reader.read(1024):
                pass
            return
        w.write(_web_response(miner, *head, body))
        await w.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        w.close()


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    """(method, path, lower-cased headers) of one request, or None if it is not HTTP."""
    raw = await reader.readuntil(b"\r\n\r\n")
    if len(raw) > _MAX_HEAD:
        return None
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


def _web_response(
    miner: SimMiner, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    if not _digest_ok(miner, method, headers.get("authorization", "")):
        nonce = secrets.token_hex(16)
        miner.web_nonces.append(nonce)
        challenge = f'Digest realm="{R.BM_WEB_REALM}", nonce="{nonce}", qop="auth"'
        return _http(
            miner, 401, b"401 - Unauthorized", "text/html", {"WWW-Authenticate": challenge}
        )
    route = (method, path.split("?")[0])
    if route == ("GET", "/cgi-bin/get_system_info.cgi"):
        doc: dict[str, Any] = R.bm_system_info(miner)
    elif route == ("GET", "/cgi-bin/get_miner_conf.cgi"):
        doc = R.bm_miner_conf(miner)
    elif route == ("POST", "/cgi-bin/set_miner_conf.cgi"):
        doc = R.bm_set_result(_set_miner_conf(miner, body))
    else:
        return _http(miner, 404, b"404 - Not Found", "text/html", {})
    return _http(miner, 200, json.dumps(doc).encode(), "application/json", {})


def _set_miner_conf(miner: SimMiner, body: bytes) -> bool:
    """Apply a posted config as the firmware does: the whole config is replaced, pools included,
    so a client that forgot to send the pools leaves the miner with none."""
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    raw = doc.get("miner-mode", doc.get("bitmain-work-mode"))
    mode = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    if isinstance(raw, str) and raw.strip().isdigit():
        mode = int(raw)
    if mode not in (0, 1, 2, 3):
        return False
    miner.conf_writes.append(doc)
    pools = doc.get("pools")
    miner.pools = [
        {"url": str(p["url"]), "user": str(p.get("user", "")), "pass": str(p.get("pass", ""))}
        for p in (pools if isinstance(pools, list) else [])
        if isinstance(p, dict) and p.get("url")
    ]
    miner.set_work_mode(mode)
    return True


def _http(miner: SimMiner, status: int, body: bytes, ctype: str, extra: dict[str, str]) -> bytes:
    miner.web_requests[status] += 1
    reason = {200: "OK", 401: "Unauthorized", 404: "Not Found"}[status]
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}"]
    head += [f"Content-Length: {len(body)}", "Connection: close", "Server: lighttpd/1.4.48"]
    head += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _digest_params(header: str) -> dict[str, str]:
    """``Digest k="v", k2=v2`` -> dict; values never contain commas in what httpx sends."""
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "digest":
        return {}
    out = {}
    for part in rest.split(","):
        k, sep, v = part.strip().partition("=")
        if sep:
            out[k.strip().lower()] = v.strip().strip('"')
    return out


def _md5(s: str) -> str:
    return hashlib.md5(s.encode(), usedforsecurity=False).hexdigest()


def _digest_ok(miner: SimMiner, method: str, header: str) -> bool:
    """RFC 2617 digest, MD5, qop=auth, as lighttpd's mod_auth checks it."""
    p = _digest_params(header)
    needed = ("username", "realm", "nonce", "uri", "response", "nc", "cnonce", "qop")
    if any(k not in p for k in needed) or p["qop"] != "auth":
        return False
    if (
        p["username"] != WEB_USER
        or p["realm"] != R.BM_WEB_REALM
        or p["nonce"] not in miner.web_nonces
    ):
        return False
    ha1 = _md5(f"{WEB_USER}:{R.BM_WEB_REALM}:{miner.web_password}")
    ha2 = _md5(f"{method}:{p['uri']}")
    expect = _md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{ha2}")
    return secrets.compare_digest(expect, p["response"])


def _addresses(first_ip: str, count: int) -> list[str]:
    ip = ipaddress.IPv4Address(first_ip)
    if not ip.is_loopback:
        raise ValueError(f"simulated miners stay on 127.0.0.0/8, got {first_ip}")
    out: list[str] = []
    while len(out) < count:
        last = int(ip) & 0xFF
        if last not in (0, 255):  # skip network/broadcast-looking addresses
            out.append(str(ip))
        ip += 1
        if not ip.is_loopback:
            raise ValueError(f"{count} miners from {first_ip} run past 127.255.255.255")
    return out


class AsicFarmSimulator:
    def __init__(
        self,
        count: int,
        *,
        first_ip: str = "127.10.0.1",
        port: int = 4028,
        seed: int = 1,
        personalities: Sequence[str] | None = None,
        web_port: int | None = None,
        v3_port: int = 4433,
    ) -> None:
        """``personalities``: one per miner, cycled if shorter; default the site mix.

        ``web_port``: where stock Antminers serve their web UI; None serves none.
        ``v3_port``: where ``whatsminer_v3`` miners serve API v3 (their ``port`` stays closed).
        """
        self._rng = random.Random(seed)
        self.web_port = web_port
        self.v3_port = v3_port
        mix = tuple(personalities) if personalities else _MIX
        for p in mix:
            if p not in PERSONALITIES:
                raise ValueError(f"unknown personality {p!r}; choose from {PERSONALITIES}")
        self._miners: list[SimMiner] = []
        for i, ip in enumerate(_addresses(first_ip, count)):
            personality = mix[i % len(mix)]
            self._miners.append(self._make(i, ip, port, personality))
        self._servers: list[asyncio.Server] = []

    def _make(self, i: int, ip: str, port: int, personality: str) -> SimMiner:
        r = random.Random(self._rng.random())
        models = _MODELS.get(personality, _MODELS["antminer"])
        model, ths, watts, limit = models[i % len(models)]
        prefix = {
            "whatsminer": "HTM3",
            "whatsminer_v3": "BTM3CS40HD240831",  # the fixture's 33-character shape
            "luxos": "JYZZ",
            "braiins": "YNAH",
        }.get(personality, "JYZZ")
        n = 33 - len(prefix) if personality == "whatsminer_v3" else 13
        serial = prefix + "".join(r.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(n))
        mac = "02:" + ":".join(f"{r.randrange(256):02X}" for _ in range(5))
        worker = f"kuat{i:05d}"
        miner = SimMiner(
            ip=ip,
            port=port,
            personality=personality,
            model=model,
            serial=serial,
            mac=mac,
            nominal_ths=ths,
            nominal_power_w=watts,
            power_limit_w=limit,
            rng=r,
            pools=[
                {"url": "stratum+tcp://btc.f2pool.com:1314", "user": f"kzfarm.{worker}"},
                {"url": "stratum+tcp://btc-asia.f2pool.com:1314", "user": f"kzfarm.{worker}"},
                {"url": "stratum+tcp://ss.antpool.com:3333", "user": f"kzbackup.{worker}"},
            ],
            session_id=f"{r.getrandbits(48):012x}",
        )
        miner.tick()
        return miner

    @property
    def miners(self) -> list[SimMiner]:
        return self._miners

    @property
    def targets(self) -> list[tuple[str, int]]:
        return [(m.ip, m.port) for m in self._miners]

    def total_power_w(self) -> float:
        return sum(SLEEP_POWER_W if m.sleeping else m.power_w for m in self._miners)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for i, m in enumerate(self._miners):
            if m.personality == "whatsminer_v3":
                v3 = await loop.create_server(
                    lambda m=m: _V3Protocol(m),
                    host=m.ip,
                    port=self.v3_port,
                    reuse_address=True,
                    backlog=64,
                )
                self._servers.append(v3)
                continue
            glue = m.personality == "antminer" and i % 5 == 0
            server = await loop.create_server(
                lambda m=m, glue=glue: _MinerProtocol(m, glue),
                host=m.ip,
                port=m.port,
                reuse_address=True,
                backlog=64,
            )
            self._servers.append(server)
            if self.web_port is not None and m.serves_web:
                web = await asyncio.start_server(
                    lambda r, w, m=m: _serve_web(m, r, w),
                    host=m.ip,
                    port=self.web_port,
                    reuse_address=True,
                    backlog=64,
                    limit=_MAX_HEAD,
                )
                self._servers.append(web)

    async def stop(self) -> None:
        for s in self._servers:
            s.close()
        # close_clients is 3.13+; hung/trickle connections are closed by the client side
        for s in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.wait_closed(), 0.5)
        self._servers.clear()

    async def __aenter__(self) -> AsicFarmSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _serve(args: argparse.Namespace) -> None:
    farm = AsicFarmSimulator(
        args.count,
        first_ip=args.first_ip,
        port=args.port,
        seed=args.seed,
        personalities=args.personality or None,
        web_port=args.web_port,
        v3_port=args.v3_port,
    )
    await farm.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # one line on stdout says "ready" so a benchmark or script can start polling
    print(
        f"ready {len(farm.targets)} miners {farm.targets[0][0]}..{farm.targets[-1][0]}", flush=True
    )
    await stop.wait()
    await farm.stop()


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--first-ip", default="127.10.0.1")
    ap.add_argument("--port", type=int, default=4028)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--web-port", type=int, default=None, help="serve stock Antminers' web UI")
    ap.add_argument("--v3-port", type=int, default=4433, help="whatsminer_v3 miners' API v3 port")
    ap.add_argument(
        "--personality",
        action="append",
        choices=PERSONALITIES,
        help="repeat to build a cycle; default is the site mix",
    )
    args = ap.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
