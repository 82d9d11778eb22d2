"""Simulated Auradine Teraflux on FluxOS: its cgminer-style API (ipreport, psu, temperature, fan,
mode beside summary/pools/version) as in the asic-rs captures; on the farm's web port its HTTP
API (``/token`` for admin + ``web_password``, then ``/mode`` sleep on/off or a power target, and
``/updatepools`` with one to three url/user/pass pools, which the miner then mines on; its reply
text is not known from any source, only its STATUS shape).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from kuat.collectors.cgminer.sim_replies import (
    Body,
    Personality,
    Reply,
    http_api,
    json_body,
    pools_body,
    status,
)

if TYPE_CHECKING:
    from kuat.collectors.cgminer.sim import SimMiner


# --- Auradine FluxOS (cgminer-style API) -------------------------------------------------------
#
# Shaped after the asic-rs captures in tests/cases/asic/auradine/at1500-rpc.
_AURA_DESC = "FluxOS-2023-12.27-9bf070ee4408866329c93a70f2dfdc6248938aaa"


def _aura(code: int, msg: str, key: str, rows: list[Body]) -> Body:
    return {"STATUS": status(code, msg, _AURA_DESC), key: rows, "id": 1}


def _aura_summary(m: SimMiner) -> Body:
    mhs = m.hashrate_ths * 1e6
    row = {"Elapsed": m.elapsed, "MHS av": round(mhs * 0.998, 3), "MHS 5s": round(mhs, 3)}
    row |= {"MHS 1m": round(mhs * 1.001, 3), "Accepted": m.accepted, "Rejected": 1}
    return _aura(11, "Summary", "SUMMARY", [row])


def _aura_ipreport(m: SimMiner) -> Body:
    row = {
        "command": "ipreport",
        "SerialNo": m.serial,
        "ip": m.ip,
        "mac": m.mac.lower(),
        "model": m.model.removeprefix("Auradine "),
        "version": "2023-12.27",
        "hostname": f"teraflux-{m.ip.rsplit('.', 1)[-1]}",
    }
    return _aura(620, "IP Report", "IPReport", [row])


def _aura_temperature(m: SimMiner) -> Body:
    rows: list[Body] = [
        {"ID": 0, "Name": "Control Board", "BoardTemp": [{"ID": 0, "Temperature": 31.5}]}
    ]
    for i, (board, chip) in enumerate(m.chain_temps(), 1):
        rows.append(
            {
                "ID": i,
                "Name": f"Hash Board {i}",
                "BoardTemp": [{"ID": j, "Temperature": float(board - 3 * j)} for j in range(3)],
                "ChipTemp": [{"ID": j, "Temperature": chip - 1.5 * j} for j in range(3)],
            }
        )
    return _aura(590, "System temperature", "Temperature", rows)


def _aura_psu(m: SimMiner) -> Body:
    row = {"Vin": "245.00V", "PowerIn": f"{m.power_w:.2f}W", "PoutMax": "5000.00W"}
    return _aura(570, "PSU status", "PSU", [row])


def _aura_fan(m: SimMiner) -> Body:
    rows = [
        {"ID": i, "Speed": rpm, "Target": 7000, "Max": 7700} for i, rpm in enumerate(m.fans_rpm, 1)
    ]
    return _aura(510, f"Total fans: {len(rows)}", "Fan", rows)


def _aura_mode(m: SimMiner) -> Body:
    row = {"Mode": "normal", "Sleep": "on" if m.sleeping else "off", "Power": m.power_limit_w}
    return _aura(540, "Operating mode", "Mode", [row])


AURADINE: dict[str, Reply] = {
    "summary": _aura_summary,
    "pools": lambda m: pools_body(m, _AURA_DESC),
    "version": lambda m: _aura(
        22, "GCMiner versions", "VERSION", [{"GCMiner": "0.5", "API": "1.0"}]
    ),
    "ipreport": _aura_ipreport,
    "temperature": _aura_temperature,
    "psu": _aura_psu,
    "fan": _aura_fan,
    "mode": _aura_mode,
}


# --- the HTTP API -------------------------------------------------------------------------


def _auradine_route(
    m: SimMiner, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, Any]:
    """FluxOS's HTTP API as pyasic drives it: a token for user/password, then /mode and
    /updatepools writes (each, and every token asked for, counted in ``m.requests`` by name)."""
    req = json_body(body)
    if method == "POST" and path == "/token":
        m.requests["token"] += 1
        if not isinstance(req, dict) or (req.get("user"), req.get("password")) != (
            "admin",
            m.web_password,
        ):
            return 200, {"STATUS": [{"STATUS": "E", "Msg": "Invalid user or password"}]}
        token = secrets.token_urlsafe(12)
        m.web_tokens.add(token)  # one token set per miner serves every web API here
        return 200, {"STATUS": [{"STATUS": "S", "Msg": "Token"}], "Token": [{"Token": token}]}
    if path not in ("/mode", "/updatepools"):
        return 404, {"STATUS": [{"STATUS": "E", "Msg": "Not found"}]}
    if headers.get("token", "") not in m.web_tokens:
        return 401, {"STATUS": [{"STATUS": "E", "Msg": "Unauthorized"}]}
    if method != "POST" or not isinstance(req, dict):
        return 400, {"STATUS": [{"STATUS": "E", "Msg": "Bad request"}]}
    m.requests[path.lstrip("/")] += 1
    if path == "/updatepools":
        return 200, _update_pools(m, req.get("pools"))
    if req.get("sleep") in ("on", "off"):
        m.sleeping = req["sleep"] == "on"
    elif req.get("tune") == "power" and isinstance(req.get("power"), int):
        if not 0 < req["power"] <= m.factory_limit_w:
            return 200, {"STATUS": [{"STATUS": "E", "Msg": "Power out of range"}]}
        m.apply_power_limit(req["power"])
    else:
        return 200, {"STATUS": [{"STATUS": "E", "Msg": "Invalid mode"}]}
    return 200, {"STATUS": [{"STATUS": "S", "Msg": "Mode set"}]}


def _update_pools(m: SimMiner, pools: Any) -> Body:
    """One to three url/user/pass pools replace the miner's, which mines on the first."""
    if (
        not isinstance(pools, list)
        or not 1 <= len(pools) <= 3
        or not all(isinstance(p, dict) and isinstance(p.get("url"), str) for p in pools)
    ):
        return {"STATUS": [{"STATUS": "E", "Msg": "Invalid pools"}]}
    m.pools = [
        {"url": p["url"], "user": str(p.get("user", "")), "pass": str(p.get("pass", ""))}
        for p in pools
    ]
    m.pool_active = 0
    return {"STATUS": [{"STATUS": "S", "Msg": "Pools updated"}]}


AURADINE_SIM = Personality(
    name="auradine",
    models=(("Auradine AT2880", 260.0, 4680.0, 4680),),
    desc=_AURA_DESC,
    replies=AURADINE,
    web=http_api(_auradine_route),
    serial_prefix="AU",
    web_password="admin",
)
