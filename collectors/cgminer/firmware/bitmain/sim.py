"""Simulated stock Antminers (bmminer / cgminer 4.x): ``antminer`` (S19 generation),
``antminer_s21`` (S21-era: ``stats`` sent with ``"new_api": true`` gets the new shape with watts,
and the Hydro's coolant in/out and no fans; the same request without it the old shape) and the
fault ``reject_multi`` (answers "Invalid command" to ``a+b``).

With a web port they serve the web UI as lighttpd on the real box does: ``/cgi-bin/
get_system_info.cgi`` (serial, MAC, model), ``get_miner_conf.cgi`` and ``set_miner_conf.cgi``
behind HTTP digest auth; ``SimMiner.web_password`` and ``web_hang`` let tests break it. Sleep and
wake are a ``set_miner_conf.cgi`` with ``miner-mode`` 1/0, applied after ``web_apply_delay_s``
(bmminer restarts into the new mode); a sleeping miner hashes 0 with its fans stopped, at ~10 W.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

from kuat.collectors.cgminer.sim_replies import (
    MAX_HEAD,
    MAX_POST,
    Body,
    Personality,
    Reply,
    parse_head,
    pools_body,
    status,
)

if TYPE_CHECKING:
    from kuat.collectors.cgminer.sim import SimMiner


# --- the cgminer API --------------------------------------------------------------------------


BM_DESC = "cgminer 1.0.0"


def bm_summary(m: SimMiner) -> Body:
    ghs = m.hashrate_ths * 1e3
    return {
        "STATUS": status(11, "Summary", BM_DESC),
        "SUMMARY": [
            {
                "Elapsed": m.elapsed,
                "GHS 5s": round(ghs, 2),
                "GHS av": round(m.nominal_ths * 1e3 * 1.01, 2) if not m.sleeping else 0.0,
                "GHS 30m": round(ghs * 0.999, 2),
                "Found Blocks": 0,
                "Getworks": 3012,
                "Accepted": m.accepted,
                "Rejected": m.accepted // 900,
                "Hardware Errors": 562,
                "Utility": 4.2,
                "Discarded": 96312,
                "Stale": 0,
                "Get Failures": 0,
                "Local Work": 1603446,
                "Remote Failures": 0,
                "Network Blocks": 170,
                "Total MH": 5.6e12,
                "Work Utility": 1543210.5,
                "Difficulty Accepted": float(m.accepted * 65536),
                "Difficulty Rejected": 262144.0,
                "Difficulty Stale": 0.0,
                "Best Share": 1320888597,
                "Device Hardware%": 0.0001,
                "Device Rejected%": 0.0445,
                "Pool Rejected%": 0.0445,
                "Pool Stale%": 0.0,
                "Last getwork": int(time.time()),
            }
        ],
        "id": 1,
    }


def bm_stats(m: SimMiner) -> Body:
    chains = m.chain_rates_ghs()
    data: dict[str, Any] = {
        "STATS": 0,
        "ID": "BTM_SOC0",
        "Elapsed": m.elapsed,
        "Calls": 0,
        "Wait": 0,
        "Max": 0,
        "Min": 99999999,
        "GHS 5s": round(m.hashrate_ths * 1e3, 2),
        "GHS av": round(m.nominal_ths * 1e3 * 1.01, 2) if not m.sleeping else 0.0,
        "rate_30m": round(m.hashrate_ths * 1e3, 2),
        "Mode": 2,
        "miner_count": 3,
        "frequency": 525,
        "fan_num": 4,
    }
    for i, rpm in enumerate(m.fans_rpm, 1):
        data[f"fan{i}"] = rpm
    data["temp_num"] = 3
    for i, (board, chip) in enumerate(m.chain_temps(), 1):
        data[f"temp{i}"] = board
        data[f"temp2_{i}"] = chip
    data["temp_max"] = 0
    data["total_acn"] = 342
    data["total_rateideal"] = round(m.nominal_ths * 1e3, 1)
    data["total_freqavg"] = 525
    data["total rate"] = round(m.hashrate_ths * 1e3, 2)
    data["rate_unit"] = "GH"
    for i, ((board, chip), rate) in enumerate(zip(m.chain_temps(), chains, strict=True), 1):
        data[f"chain_acn{i}"] = 114
        data[f"chain_acs{i}"] = " ooo" * 38
        data[f"chain_hw{i}"] = 183 + i
        data[f"chain_rate{i}"] = f"{rate:.2f}"
        data[f"freq{i}"] = 525
        data[f"temp_pcb{i}"] = f"{board}-{board - 28}-{board - 9}-{board - 8}"
        data[f"temp_chip{i}"] = f"{chip}-{chip - 28}-{chip - 9}-{chip - 8}"
        data[f"temp_pic{i}"] = f"{board - 10}-{board - 38}-{board - 19}-{board - 18}"
    data["chain_acn4"] = 0
    data["chain_acs4"] = ""
    data["chain_rate4"] = ""
    data["temp_pcb4"] = data["temp_chip4"] = data["temp_pic4"] = "0-0-0-0"
    data["miner_version"] = "49.0.1.3"
    data["miner_id"] = m.serial[-16:].lower()
    data["no_matching_work"] = 562
    head = {
        "BMMiner": "1.0.0",
        "Miner": "49.0.1.3",
        "CompileTime": "Tue Dec  6 16:12:30 CST 2022",
        "Type": m.model,
    }
    return {"STATUS": status(70, "CGMiner stats", BM_DESC), "STATS": [head, data], "id": 1}


def bm_version(m: SimMiner) -> Body:
    return {
        "STATUS": status(22, "BMMiner versions", BM_DESC),
        "VERSION": [
            {
                "BMMiner": "1.0.0",
                "API": "3.1",
                "Miner": "49.0.1.3",
                "CompileTime": "Tue Dec  6 16:12:30 CST 2022",
                "Type": m.model,
            }
        ],
        "id": 1,
    }


BITMAIN: dict[str, Reply] = {
    "summary": bm_summary,
    "stats": bm_stats,
    "pools": lambda m: pools_body(m, BM_DESC),
    "version": bm_version,
}


# --- S21-era stock Antminer: stats with new_api ------------------------------------------------
#
# Shaped after the real S23 Hyd. capture (tests/cases/asic/bitmain/s23-hydro-new-api): an INFO
# header, one STATS row with a chain list, rate_unit "GH/s", watts under "watt"; for the S21+ Hyd.
# the documented sensor layout (temp_pcb [coolant in, board, coolant out, board], temp_pic [chip,
# board, board, board]). Numbers are sent as strings here and there, as S21-era builds do.
S21_COMPILE_TIME = "Thu Jan  8 15:44:15 CST 2026"


def is_hydro(m: SimMiner) -> bool:
    return "hyd" in m.model.lower()


def coolant_c(m: SimMiner) -> tuple[float, float]:
    """(in, out) °C: the loop's supply, warmer on the way out by what the boards put in."""
    rise = 0.0 if m.sleeping else 10.0 * m.power_w / max(m.nominal_power_w, 1.0)
    return 32.0, round(32.0 + rise, 1)


def bm_stats_new_api(m: SimMiner) -> Body:
    cin, cout = coolant_c(m)
    chains = []
    per_chain = zip(m.chain_temps(), m.chain_rates_ghs(), strict=True)
    for i, ((board, chip), rate) in enumerate(per_chain):
        chain: dict[str, Any] = {
            "index": i,
            "asic_num": 91,
            "freq_avg": 490,
            "rate_ideal": round(m.nominal_ths * 1e3 / 3, 1),
            "rate_real": f"{rate:.2f}",
            "sn": f"{m.serial}{i}",
        }
        if is_hydro(m):
            chain["temp_pcb"] = [cin, board - 6, cout, board - 5]
            chain["temp_pic"] = [chip, board - 8, board - 7, board - 9]
        else:
            chain["temp_pcb"] = [board - 12, board - 10, board, board - 1]
            chain["temp_chip"] = [chip - 12, chip - 10, chip, chip - 1]
        chains.append(chain)
    row: dict[str, Any] = {
        "elapsed": m.elapsed,
        "rate_5s": f"{m.hashrate_ths * 1e3:.2f}",
        "rate_avg": round(m.hashrate_ths * 1e3 * 0.999, 2),
        "rate_ideal": round(m.nominal_ths * 1e3, 1),
        "rate_unit": "GH/s",
        "chain_num": len(chains),
        "fan_num": 0 if is_hydro(m) else len(m.fans_rpm),
        "fan": [] if is_hydro(m) else list(m.fans_rpm),
        "watt": str(round(m.power_w)),
        "chain": chains,
    }
    return {
        "STATUS": {"STATUS": "S", "when": int(time.time()), "Msg": "stats", "api_version": "1.0.0"},
        "INFO": {
            "miner_version": "71.0.1.3",
            "CompileTime": S21_COMPILE_TIME,
            "type": m.model,
        },
        "STATS": [row],
    }


def _s21_version(m: SimMiner) -> Body:
    body = bm_version(m)
    body["VERSION"][0].update({"Miner": "71.0.1.3", "CompileTime": S21_COMPILE_TIME})
    return body


BITMAIN_S21 = {**BITMAIN, "version": _s21_version}


# --- the web UI -----------------------------------------------------------------------------


BM_WEB_REALM = "antMiner Configuration"


def bm_miner_conf(m: SimMiner) -> Body:
    """/cgi-bin/get_miner_conf.cgi of an S19-era stock Antminer: the mode reads back as a
    string under ``bitmain-work-mode``; pool passwords are included, as the real CGI does."""
    return {
        "pools": [
            {"url": p["url"], "user": p["user"], "pass": p.get("pass", "x")} for p in m.pools
        ],
        "api-listen": True,
        "api-network": True,
        "api-groups": "A:stats:pools:devs:summary:version",
        "api-allow": "A:0/0,W:*",
        "bitmain-fan-ctrl": False,
        "bitmain-fan-pwm": "100",
        "bitmain-use-vil": True,
        "bitmain-freq": "675",
        "bitmain-voltage": "1400",
        "bitmain-ccdelay": "0",
        "bitmain-pwth": "0",
        "bitmain-work-mode": str(m.work_mode),
        "bitmain-freq-level": "100",
    }


def bm_set_result(ok: bool) -> Body:
    if ok:
        return {"stats": "success", "code": "M000", "msg": "OK!"}
    return {"stats": "error", "code": "M001", "msg": "Illegal parameters!"}


def bm_system_info(m: SimMiner) -> Body:
    """/cgi-bin/get_system_info.cgi of a stock Antminer (S19-era firmware, with ``serinum``)."""
    return {
        "minertype": m.model,
        "nettype": "DHCP",
        "netdevice": "eth0",
        "macaddr": m.mac,
        "hostname": "Antminer",
        "ipaddress": m.ip,
        "netmask": "255.0.0.0",
        "gateway": "127.0.0.1",
        "dnsservers": "127.0.0.1",
        "system_mode": "GNU/Linux",
        "system_kernel_version": "Linux 4.9.38 #1 SMP PREEMPT Tue Dec 6 16:03:04 CST 2022",
        "system_filesystem_version": "Tue Dec  6 16:12:30 CST 2022",
        "firmware_type": "Release",
        "serinum": m.serial,
    }


WEB_USER = "root"


async def _serve_web(
    miner: SimMiner, reader: asyncio.StreamReader, w: asyncio.StreamWriter
) -> None:
    """One request per connection (``Connection: close``): enough for httpx's digest handshake."""
    try:
        head = await _read_head(reader)
        if head is None:
            return
        length = head[2].get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_POST:
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
    return parse_head(raw) if len(raw) <= MAX_HEAD else None


def _web_response(
    miner: SimMiner, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    if not _digest_ok(miner, method, headers.get("authorization", "")):
        nonce = secrets.token_hex(16)
        miner.web_nonces.append(nonce)
        challenge = f'Digest realm="{BM_WEB_REALM}", nonce="{nonce}", qop="auth"'
        return _http(
            miner, 401, b"401 - Unauthorized", "text/html", {"WWW-Authenticate": challenge}
        )
    route = (method, path.split("?")[0])
    if route == ("GET", "/cgi-bin/get_system_info.cgi"):
        doc: dict[str, Any] = bm_system_info(miner)
    elif route == ("GET", "/cgi-bin/get_miner_conf.cgi"):
        doc = bm_miner_conf(miner)
    elif route == ("POST", "/cgi-bin/set_miner_conf.cgi"):
        doc = bm_set_result(_set_miner_conf(miner, body))
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
        or p["realm"] != BM_WEB_REALM
        or p["nonce"] not in miner.web_nonces
    ):
        return False
    ha1 = _md5(f"{WEB_USER}:{BM_WEB_REALM}:{miner.web_password}")
    ha2 = _md5(f"{method}:{p['uri']}")
    expect = _md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{ha2}")
    return secrets.compare_digest(expect, p["response"])


async def _web(m: SimMiner, port: int) -> asyncio.Server:
    return await asyncio.start_server(
        functools.partial(_serve_web, m),
        host=m.ip,
        port=port,
        reuse_address=True,
        backlog=64,
        limit=MAX_HEAD,
    )


def _fans_unless_hydro(m: SimMiner) -> int:
    return 0 if is_hydro(m) else 4  # water-cooled: no fans at all


# The web UI's work-mode write (set_miner_conf.cgi) restarts bmminer into the new mode, sleep or
# normal; ~15 s on an S19 is kuat's working figure (issue 16, its plant default), not a
# measurement on record here.
_WORK_MODE_S = {"sleep": 15.0, "wake": 15.0}
_S19 = (
    ("Antminer S19 Pro", 110.0, 3250.0, 3250),
    ("Antminer S19j Pro", 100.0, 3050.0, 3050),
    ("Antminer S19 XP", 140.0, 3010.0, 3010),
)
NEW_API: dict[str, Reply] = {**BITMAIN_S21, "stats": bm_stats_new_api}
ANTMINER = Personality(
    name="antminer",
    models=_S19,
    desc=BM_DESC,
    replies=BITMAIN,
    web=_web,
    web_ui=True,
    glued_stats=True,
    apply_s=_WORK_MODE_S,
)
ANTMINER_S21 = Personality(
    name="antminer_s21",
    models=(
        ("Antminer S21", 200.0, 3500.0, 3500),
        ("Antminer S21 XP", 270.0, 3645.0, 3645),
        ("Antminer T21", 190.0, 3610.0, 3610),
        ("Antminer S21+ Hyd.", 319.0, 4785.0, 4785),
    ),
    desc=BM_DESC,
    replies=BITMAIN_S21,
    new_api=NEW_API,
    web=_web,
    web_ui=True,
    fans=_fans_unless_hydro,
    apply_s=_WORK_MODE_S,
)
REJECT_MULTI = Personality(
    name="reject_multi",
    models=_S19[:1],
    desc=BM_DESC,
    replies=BITMAIN,
    joins=False,
    web=_web,
    web_ui=True,
    apply_s=_WORK_MODE_S,
    fault=True,
)
