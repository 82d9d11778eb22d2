"""Simulated Whatsminers (MicroBT btminer): ``whatsminer`` on API v2 (4028) and
``whatsminer_v3`` (new btminer, M60S) that answers only API v3, length-framed JSON on the farm's
v3 port (4433 by default), from the real ``get.device.info`` with this miner's serial, MAC and
numbers; nothing listens on its 4028, so a poller must fall back to 4433.

API v2 write commands (``power_off``/``power_on``/``adjust_power_limit``/``update_pools``) work
only encrypted after ``get_token``, as on real btminer (btminer_auth.py in this folder); in plain
text they get "can't access write cmd", with a wrong password "check token error". API v3
``set.*`` commands must carry the documented signed token (account ``super``/``user1-3``,
``ts``, sha256 of command + ``admin_password`` + salt + ts): ``set.miner.service``
stop/start/restart, ``set.miner.power_limit`` and ``set.miner.pools`` (its param encrypted under
the token's digest); anything unsigned or wrongly signed gets "no permission". A power limit is
reported back and the miner then draws under it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from kuat.collectors.cgminer.firmware.whatsminer import btminer_auth as auth
from kuat.collectors.cgminer.sim_replies import Body, Personality, Ports, Reply, pools_body, status

if TYPE_CHECKING:
    from kuat.collectors.cgminer.sim import SimMiner


# --- API v2 (4028) ---------------------------------------------------------------------------


def _wm_summary(m: SimMiner) -> Body:
    mhs = m.hashrate_ths * 1e6
    board, chip = m.chain_temps()[0]
    return {
        "STATUS": status(11, "Summary", "btminer"),
        "SUMMARY": [
            {
                "Elapsed": m.elapsed,
                "MHS av": round(mhs * 0.998, 2),
                "MHS 5s": round(mhs * 1.05, 2),
                "MHS 1m": round(mhs, 2),
                "MHS 5m": round(mhs * 1.001, 2),
                "MHS 15m": round(mhs * 0.999, 2),
                "HS RT": round(mhs, 2),
                "Accepted": m.accepted,
                "Rejected": 1,
                "Hardware Errors": 0,
                "Temperature": float(board),
                "freq_avg": 710,
                "Fan Speed In": m.fans_rpm[0],
                "Fan Speed Out": m.fans_rpm[1],
                "Voltage": 1206,
                "Power": round(m.power_w),
                "Power_RT": round(m.power_w) - 1,
                "Power Rate": 46.31,
                "Uptime": m.elapsed + 1372427,
                "Power Current": 276.6,
                "Power Fanspeed": 7608,
                "Error Code Count": len(m.error_codes),
                **{f"Error Code {i}": c for i, c in enumerate(m.error_codes)},
                "Factory Error Code Count": 0,
                "Security Mode": 0,
                "Liquid Cooling": False,
                "Hash Stable": True,
                "Target Freq": 652,
                "Target MHS": round(m.nominal_ths * 1e6 * 0.95),
                "Env Temp": 7.0,
                "Power Mode": "Normal",
                "Firmware Version": "'20201202.22.REL'",
                "CB Platform": "ALLWINNER_H6OS",
                "CB Version": "V10",
                "MAC": m.mac,
                "Factory GHS": round(m.nominal_ths * 1e3),
                "Power Limit": m.power_limit_w,
                "Chip Temp Min": float(chip - 40),
                "Chip Temp Max": float(chip),
                "Chip Temp Avg": float(chip - 15),
            }
        ],
        "id": 1,
    }


def _wm_msg(m: SimMiner, msg: Any) -> Body:
    return {"STATUS": "S", "When": int(time.time()), "Code": 131, "Msg": msg, "Description": ""}


def _wm_devdetails(m: SimMiner) -> Body:
    rows = [
        {
            "DEVDETAILS": i,
            "Name": "SM",
            "ID": i,
            "Driver": "bitmicro",
            "Kernel": "",
            "Model": m.model.removeprefix("Whatsminer "),
        }
        for i in range(3)
    ]
    return {"STATUS": status(69, "Device Details", "btminer"), "DEVDETAILS": rows, "id": 1}


WHATSMINER: dict[str, Reply] = {
    "summary": _wm_summary,
    "pools": lambda m: pools_body(m, "btminer"),
    "devdetails": _wm_devdetails,
    "get_miner_info": lambda m: _wm_msg(
        m,
        {
            "ip": m.ip,
            "proto": "dhcp",
            "netmask": "255.0.0.0",
            "gateway": "127.0.0.1",
            "dns": "127.0.0.1",
            "hostname": "WhatsMiner",
            "mac": m.mac,
            "ledstat": "auto",
            "minersn": m.serial,
        },
    ),
    "status": lambda m: _wm_msg(
        m,
        {
            "mineroff": "true" if m.sleeping else "false",
            "mineroff_reason": "api" if m.sleeping else "",
            "FirmwareVersion": "'20201202.22.REL'",
        },
    ),
}


WHATSMINER_ALONE = frozenset(
    {"get_miner_info", "status", "get_token", "power_off", "power_on", "adjust_power_limit"}
)


# btminer API v2 message codes ("WhatsMiner API V2.0.x", "Message Code")
WM_DENIED = 45


WM_CMD_OK = 131


WM_CMD_ERROR = 132


WM_TOKEN_OK = 134


WM_BAD_TOKEN = 135


# what the simulator's btminer accepts encrypted and refuses in plain text
WM_WRITE_COMMANDS = frozenset({"power_off", "power_on", "adjust_power_limit", "restart_btminer"})


def wm_status(code: int, msg: Any, letter: str = "S") -> Body:
    """btminer's own reply shape for its v2 commands: STATUS at the top level, not a list."""
    return {"STATUS": letter, "When": int(time.time()), "Code": code, "Msg": msg, "Description": ""}


def _btminer_v2(m: SimMiner, request: dict[str, Any]) -> dict[str, Any] | None:
    """get_token and the write commands of btminer API v2; None for everything else."""
    if "enc" in request:
        m.requests["enc"] += 1
        return _btminer_encrypted(m, request)
    command = str(request.get("command", request.get("cmd", "")))
    if command == "get_token":
        m.requests[command] += 1
        return _btminer_token(m)
    if command in WM_WRITE_COMMANDS:
        m.requests[command] += 1
        return wm_status(WM_DENIED, "can't access write cmd", "E")
    return None


def _btminer_token(m: SimMiner) -> dict[str, Any]:
    token = auth.V2Token(
        time=f"{int(time.time()) % 10000:04d}",
        salt=m.v2_salt,
        newsalt="".join(secrets.choice("0123456789abcdefghjkmnpqrstuvwxyz") for _ in range(8)),
    )
    session = auth.v2_session(m.admin_password, token)
    m.v2_tokens[session.sign] = session.key
    while len(m.v2_tokens) > 32:
        del m.v2_tokens[next(iter(m.v2_tokens))]
    msg = {"time": token.time, "salt": token.salt, "newsalt": token.newsalt}
    return wm_status(WM_TOKEN_OK, msg)


def _btminer_encrypted(m: SimMiner, request: dict[str, Any]) -> dict[str, Any]:
    # the miner knows its password: its key is what a client with the right one derives
    key = auth.md5_crypt_body(m.admin_password, m.v2_salt)
    data = request.get("data")
    try:
        plain = json.loads(auth.v2_decrypt(key, data if isinstance(data, str) else ""))
    except (ValueError, UnicodeDecodeError):
        plain = None
    sign = plain.get("token") if isinstance(plain, dict) else None
    if not isinstance(plain, dict) or m.v2_tokens.get(str(sign)) != key:
        return wm_status(WM_BAD_TOKEN, "check token error", "E")
    command = str(plain.get("cmd", plain.get("command", "")))
    m.requests[command] += 1
    reply = _btminer_write(m, command, plain)
    body = json.dumps(reply, separators=(",", ":")).encode()
    return {"enc": auth.v2_encrypt(key, body)}


def _btminer_write(m: SimMiner, command: str, req: dict[str, Any]) -> dict[str, Any]:
    if command in ("power_off", "power_on"):
        m.sleeping = command == "power_off"
        return wm_status(WM_CMD_OK, "API command OK")
    if command == "adjust_power_limit":
        raw = str(req.get("power_limit", ""))
        if not raw.isdigit() or not 0 < int(raw) <= m.factory_limit_w:
            return wm_status(WM_CMD_ERROR, "command error", "E")
        m.apply_power_limit(int(raw))
        return wm_status(WM_CMD_OK, "API command OK")
    if command == "update_pools":
        # API v2: pool1..3 with worker/passwd; an empty slot is no pool
        m.pools = [
            {
                "url": str(req.get(f"pool{i}", "")),
                "user": str(req.get(f"worker{i}", "")),
                "pass": str(req.get(f"passwd{i}", "")),
            }
            for i in range(1, 4)
            if req.get(f"pool{i}")
        ]
        return wm_status(WM_CMD_OK, "API command OK")
    if command == "restart_btminer":
        return wm_status(WM_CMD_OK, "API command OK")
    return wm_status(14, "invalid cmd", "E")


# --- API v3 (4433) ---------------------------------------------------------------------------


# The real get.device.info of a Whatsminer M60S_VK40 (tests/cases/asic/whatsminer_v3/
# m60s-device-info/get.device.info.json, from asic-rs, Apache-2.0; test_whatsminer_v3 checks
# the two agree).
# Kept here rather than read from tests/ because the simulator ships with the agent (kuat demo).
WM_V3_DEVICE_INFO: Body = {
    "code": 0,
    "desc": "get.device.info",
    "msg": {
        "miner": {
            "board-num": "3",
            "chipdata0": "K8EC374-2426 BINVE6-197806A",
            "chipdata1": "K8EC371-2426 BINVE6-197806A",
            "chipdata2": "K8EA379-2426 BINVE6-197806A",
            "detect-hash-rate": "61434:53890:65727",
            "fast-boot": "disable",
            "hash-board": "K40",
            "hash-percent": "0",
            "miner-sn": "BTM3CS40HD24083100000000000000000",
            "pcbsn0": "BKM3CSE1404807K42757",
            "pcbsn1": "BKM3CSE1404812K43675",
            "pcbsn2": "BKM3CSE1404807K42762",
            "pool-strategy": "FAILOVER",
            "type": "M60S_VK40",
            "working": "true",
        },
        "network": {
            "dns": "172.16.2.1",
            "gateway": "172.16.2.1",
            "hostname": "WhatsMiner",
            "ip": "172.16.2.58",
            "mac": "CE:02:01:00:8C:36",
            "netmask": "255.255.255.0",
            "proto": "dhcp",
        },
        "power": {
            "fanspeed": 6344,
            "hwversion": "RT0159",
            "mode": "1",
            "model": "P221B",
            "sn": "1436B2429603097",
            "swversion": "230224.220429",
            "type": "P221B",
            "vendor": "1",
        },
        "salt": "uhCiDyVj",
        "system": {
            "api": "3.0.2",
            "apiswitch": "1",
            "control-board-version": "CB6V10",
            "fwversion": "20251209.16.Rel2",
            "ledstatus": "auto",
            "platform": "H616",
        },
    },
    "when": 1773869570,
}


WM_V3_SECTIONS = ("miner", "network", "power", "salt", "system")


# API v3 'code' values (MicroBT's documentation)
V3_FAIL = -1


V3_INVALID_COMMAND = -2


V3_INVALID_ITEM = -3


V3_NO_PERMISSION = -4


def v3_reply(cmd: str, msg: Any, code: int = 0) -> Body:
    return {"code": code, "when": int(time.time()), "msg": msg, "desc": cmd}


def wm_v3_device_info(m: SimMiner, param: Any) -> Body:
    """The real reply with this miner's identity and state; ``param`` filters one section."""
    msg = copy.deepcopy(WM_V3_DEVICE_INFO["msg"])
    miner, net = msg["miner"], msg["network"]
    miner["miner-sn"] = m.serial
    miner["working"] = "false" if m.sleeping else "true"
    for i in range(3):
        miner[f"pcbsn{i}"] = f"BKM3CSE1404{i}{m.serial[-8:]}"
    net.update(ip=m.ip, mac=m.mac, gateway="127.0.0.1", dns="127.0.0.1", netmask="255.0.0.0")
    miner["type"] = m.model.removeprefix("Whatsminer ")
    msg["salt"] = m.v3_salt
    if param is None:
        return v3_reply("get.device.info", msg)
    if param not in WM_V3_SECTIONS:
        return v3_reply("get.device.info", "invalid param", V3_INVALID_ITEM)
    return v3_reply("get.device.info", {param: msg[param]})


def _wm_v3_summary(m: SimMiner) -> Body:
    ths = m.hashrate_ths
    temps = m.chain_temps()
    chips = [c for _, c in temps]
    return {
        "elapsed": m.elapsed,
        "bootup-time": m.elapsed + 101,
        "freq-avg": 0 if m.sleeping else 595,
        "target-freq": 0,
        "factory-hash": round(m.nominal_ths, 3),
        "hash-average": round(ths * 0.999, 3),
        "hash-1min": round(ths, 3),
        "hash-15min": round(ths * 1.001, 3),
        "hash-realtime": round(ths * 1.04, 3),
        "power-rate": round(m.power_w / ths, 3) if ths else 0.0,
        "power-5min": round(m.power_w * 1.002, 3),
        "power-realtime": round(m.power_w),
        "environment-temperature": 21.5,
        "board-temperature": [float(b) for b, _ in temps],
        "chip-temp-min": float(min(chips) - 12),
        "chip-temp-avg": float(sum(chips) / len(chips)),
        "chip-temp-max": float(max(chips)),
        "power-limit": m.power_limit_w,
        "up-freq-finish": 1,
        "fan-speed-in": m.fans_rpm[0],
        "fan-speed-out": m.fans_rpm[1],
    }


def _wm_v3_pools(m: SimMiner) -> list[Body]:
    return [
        {
            "id": i + 1,
            "url": p["url"],
            "status": "alive",
            "account": p["user"],
            "stratum-active": i == 0,
            "reject-rate": 0.0,
            "last-share-time": int(time.time()) - 3 if i == 0 else 0,
        }
        for i, p in enumerate(m.pools)
    ]


_WM_V3_STATUS: dict[str, Callable[[SimMiner], Any]] = {
    "summary": _wm_v3_summary,
    "pools": _wm_v3_pools,
    "edevs": lambda m: [
        {"id": i, "chip-temp-max": float(c), "hash-average": round(m.hashrate_ths / 3, 3)}
        for i, (_, c) in enumerate(m.chain_temps())
    ],
}


def wm_v3_miner_status(m: SimMiner, param: Any) -> Body:
    """``param`` is one section or several joined by '+', as the documentation allows."""
    parts = str(param).split("+") if isinstance(param, str) and param else []
    if not parts or any(p not in _WM_V3_STATUS for p in parts):
        return v3_reply("get.miner.status", "invalid param", V3_INVALID_ITEM)
    return v3_reply("get.miner.status", {p: _WM_V3_STATUS[p](m) for p in dict.fromkeys(parts)})


def answer_v3(m: SimMiner, request: dict[str, Any]) -> dict[str, Any]:
    """One Whatsminer API v3 request -> its reply (``code`` 0 or an error code)."""
    cmd = str(request.get("cmd", ""))
    param = request.get("param")
    # an encrypted param is counted by its command: its ciphertext differs every time
    plain = param is not None and cmd not in auth.V3_ENCRYPTED
    m.requests[f"{cmd}:{param}" if plain else cmd] += 1
    m.tick()
    if cmd == "get.device.info":
        return wm_v3_device_info(m, param)
    if cmd == "get.miner.status":
        return wm_v3_miner_status(m, param)
    if cmd.startswith("set."):
        return _v3_set(m, cmd, request)
    return v3_reply(cmd, "invalid command", V3_INVALID_COMMAND)


def _v3_set(m: SimMiner, cmd: str, request: dict[str, Any]) -> dict[str, Any]:
    ts = request.get("ts")
    signed = (
        request.get("account") in auth.V3_ACCOUNTS
        and isinstance(ts, int)
        and request.get("token") == auth.v3_token(cmd, m.admin_password, m.v3_salt, ts)
    )
    if not signed or not isinstance(ts, int):
        return v3_reply(cmd, "no permission", V3_NO_PERMISSION)
    param = request.get("param")
    if cmd == "set.miner.service" and param in ("stop", "start", "restart"):
        m.sleeping = param == "stop"
        return v3_reply(cmd, "ok")
    if cmd == "set.miner.power_limit" and isinstance(param, int):
        if not 0 < param <= m.factory_limit_w:
            return v3_reply(cmd, "fail", V3_FAIL)
        m.apply_power_limit(param)
        return v3_reply(cmd, "ok")
    if cmd == "set.miner.pools" and isinstance(param, str):
        pools = _v3_pools_param(m, cmd, param, ts)
        if pools is None:
            return v3_reply(cmd, "invalid param", V3_INVALID_ITEM)
        m.pools = pools
        return v3_reply(cmd, "ok")
    if cmd in ("set.miner.service", "set.miner.power_limit", "set.miner.pools"):
        return v3_reply(cmd, "invalid param", V3_INVALID_ITEM)
    return v3_reply(cmd, "invalid command", V3_INVALID_COMMAND)


def _v3_pools_param(m: SimMiner, cmd: str, param: str, ts: int) -> list[dict[str, str]] | None:
    """set.miner.pools' encrypted list of {pool, worker, passwd}, as btminer keeps it (its
    first three); None when it does not decrypt or is not that shape."""
    key = auth.v3_digest(cmd, m.admin_password, m.v3_salt, ts)
    try:
        rows = auth.v3_decrypt_param(key, param)
    except auth.AuthError:
        return None
    if not isinstance(rows, list) or not rows:
        return None
    out = []
    for row in rows[:3]:
        if not isinstance(row, dict) or not isinstance(row.get("pool"), str):
            return None
        out.append(
            {
                "url": row["pool"],
                "user": str(row.get("worker", "")),
                "pass": str(row.get("passwd", "")),
            }
        )
    return out


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
        # uvloop's TCPTransport is no asyncio.Transport subclass (client.py says the same)
        self.transport = cast(asyncio.Transport, transport)

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
                reply = answer_v3(self.miner, request)
            else:
                reply = v3_reply("", "invalid json", V3_INVALID_ITEM)
            body = json.dumps(reply, separators=(",", ":")).encode()
            self.transport.write(len(body).to_bytes(4, "little") + body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def _listen_v3(m: SimMiner, ports: Ports) -> list[asyncio.Server]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _V3Protocol(m), host=m.ip, port=ports.v3, reuse_address=True, backlog=64
    )
    return [server]


def _two_fans(m: SimMiner) -> int:
    return 2


# set.miner.power_limit / adjust_power_limit: "the device will restart to apply the new
# setting" (Whatsminer API v3 documentation, apidoc.whatsminer.com, btminer_set_power_limit);
# power_on restarts mining too. The restart's length (20 s a limit, 10 s a wake) is an
# assumption, the same as kuat's plant default; power_off stops mining within a couple of
# seconds (an assumption).
_APPLY_S = {"sleep": 2.0, "wake": 10.0, "limit": 20.0}
WHATSMINER_V2 = Personality(
    name="whatsminer",
    # as the reading names them; the API itself says "M31S" (the maker is stripped)
    models=(
        ("Whatsminer M31S", 76.0, 3220.0, 3600),
        ("Whatsminer M30S++", 112.0, 3472.0, 3600),
    ),
    desc="btminer",
    replies=WHATSMINER,
    intercept=_btminer_v2,
    alone=WHATSMINER_ALONE,
    fans=_two_fans,
    serial_prefix="HTM3",
    apply_s=_APPLY_S,
)
WHATSMINER_V3 = Personality(
    name="whatsminer_v3",
    # nominal: the fixture's three boards' detect-hash-rate, 61.4+53.9+65.7 TH/s
    models=(("Whatsminer M60S_VK40", 181.0, 3344.0, 3600),),
    desc="btminer",
    listen=_listen_v3,
    fans=_two_fans,
    serial_prefix="BTM3CS40HD240831",  # the fixture's 33-character shape
    serial_len=17,
    apply_s=_APPLY_S,
)
