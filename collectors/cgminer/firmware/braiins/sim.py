"""Simulated Braiins OS (BOSer) on an Antminer: its cgminer-compatible API (with the tuner's
``tunerstatus``; ``pause``/``resume`` sleep and wake it) and, on the farm's web port, its public
REST API of 25.07+: login, ``miner/details`` with the MAC and, for every other miner, a serial
(real Braiins OS on an Antminer often has ``serial_number`` null), ``network/``, the tuner's
power target and ``PUT /api/v1/pools/batch`` (the OpenAPI document's shape; bosminer's restart is
at once here).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from kuat.collectors.cgminer.sim_replies import (
    Body,
    Personality,
    Reply,
    fans_body,
    http_api,
    json_body,
    ok,
    pools_body,
    status,
)

if TYPE_CHECKING:
    from kuat.collectors.cgminer.sim import SimMiner


BOSER_VERSION = "boser-buildroot 0.1.0-26ba61b9"


_BOS_DESC = f"BOSer {BOSER_VERSION}"


def _bos_summary(m: SimMiner) -> Body:
    mhs = m.hashrate_ths * 1e6
    return {
        "STATUS": status(11, "Summary", _BOS_DESC),
        "SUMMARY": [
            {
                "Elapsed": m.elapsed,
                "MHS av": round(mhs * 0.999, 3),
                "MHS 5s": round(mhs, 3),
                "MHS 1m": round(mhs * 1.001, 3),
                "MHS 5m": round(mhs, 3),
                "MHS 15m": round(mhs, 3),
                "Accepted": m.accepted,
                "Rejected": 18,
                "Hardware Errors": 0,
                "Utility": 4.1,
                "Stale": 0,
                "Best Share": 776342690,
                "Device Hardware%": 0.0,
            }
        ],
        "id": 1,
    }


def _bos_tuner(m: SimMiner) -> Body:
    per_chain = round(m.power_w / 3) if not m.sleeping else 0
    return {
        "STATUS": status(12, "Tuner Status", _BOS_DESC),
        "TUNERSTATUS": [
            {
                "ApproximateChainPowerConsumption": per_chain * 3,
                "ApproximateMinerPowerConsumption": round(m.power_w),
                "DynamicPowerScaling": "Disabled",
                "PowerLimit": m.power_limit_w,
                "TunerChainStatus": [
                    {
                        "ApproximatePowerConsumptionWatt": per_chain,
                        "HashchainIndex": i,
                        "Status": "Stable" if not m.sleeping else "Paused",
                    }
                    for i in range(3)
                ],
            }
        ],
        "id": 1,
    }


BRAIINS: dict[str, Reply] = {
    "summary": _bos_summary,
    "pools": lambda m: pools_body(m, _BOS_DESC),
    "version": lambda m: {
        "STATUS": status(22, "BOSer versions", _BOS_DESC),
        "VERSION": [{"BOSer": BOSER_VERSION, "API": "3.7"}],
        "id": 1,
    },
    "devdetails": lambda m: {
        "STATUS": status(69, "Device Details", _BOS_DESC),
        "DEVDETAILS": [
            {
                "DEVDETAILS": i,
                "Name": "Chain",
                "ID": i,
                "Driver": "bitmain",
                "Model": f"Bitmain {m.model}",
            }
            for i in range(3)
        ],
        "id": 1,
    },
    "temps": lambda m: {
        "STATUS": status(201, "3 Temp(s)", _BOS_DESC),
        "TEMPS": [
            {"TEMPS": i, "ID": i, "Board": float(b), "Chip": float(c)}
            for i, (b, c) in enumerate(m.chain_temps())
        ],
        "id": 1,
    },
    "fans": lambda m: fans_body(m, _BOS_DESC),
    "tunerstatus": _bos_tuner,
}


def bos_miner_details(m: SimMiner) -> Body:
    """REST ``/api/v1/miner/details``, shaped after the real reply in tests/fixtures/asic/
    braiins-s19xp-miner_details.json (Braiins OS+ 25.07 on an S19 XP)."""
    return {
        "bos_mode": 4,
        "bos_version": {
            "bos_plus": True,
            "current": "2025-08-06-0-3881c51d-25.07-plus",
            "major": "2022-09-13-0-11012d53-22.08-plus",
        },
        "bosminer_uptime_s": m.elapsed - 40,
        "hostname": "Antminer",
        "kernel_version": "4.9.113",
        "mac_address": m.mac.lower(),  # the real API's case; kuat upper-cases MACs
        "miner_identity": {"brand": 1, "miner_model": m.model, "model": 18, "name": m.model},
        "platform": 4,
        "serial_number": m.serial if m.bos_rest_serial else None,
        "status": 2,
        "sticker_hashrate": {"gigahash_per_second": m.nominal_ths * 1000.0},
        "system_uptime": m.elapsed,
        "system_uptime_s": m.elapsed,
        "uid": m.session_id[:16],
    }


def bos_network(m: SimMiner) -> Body:
    """REST ``/api/v1/network/`` (the real v25_07 reply's shape)."""
    return {
        "default_gateway": "10.20.0.1",
        "dns_servers": ["127.0.0.1"],
        "hostname": "Antminer",
        "mac_address": m.mac.lower(),
        "name": "eth0",
        "networks": [{"address": m.ip, "netmask": "255.255.255.0"}],
        "protocol": 1,
    }


def bos_power_range(m: SimMiner) -> tuple[int, int]:
    """The lowest and highest power target this miner's tuner takes, W."""
    return int(m.nominal_power_w * 0.4), int(m.factory_limit_w * 1.2)


def bos_constraints(m: SimMiner) -> Body | None:
    """REST ``/api/v1/configuration/constraints``: the tuner's ranges as the OpenAPI document's
    ``GetConstraintsResponse`` has them (``{min, default, max}`` of ``{"watt"}`` and
    ``{"terahash_per_second"}``); from the documentation, not a capture."""
    low, high = bos_power_range(m)
    ths = m.nominal_ths
    return {
        "tuner_constraints": {
            "enabled": {"default": True},
            "power_target": {
                "min": {"watt": low},
                "default": {"watt": int(m.nominal_power_w)},
                "max": {"watt": high},
            },
            "hashrate_target": {
                "min": {"terahash_per_second": round(ths * 0.4, 1)},
                "default": {"terahash_per_second": ths},
                "max": {"terahash_per_second": round(ths * 1.2, 1)},
            },
        },
        "cooling_constraints": None,
        "dps_constraints": None,
        "hashboards_constraints": None,
    }


# --- the REST API -------------------------------------------------------------------------


def _braiins_route(
    m: SimMiner, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, Any]:
    """Braiins OS 25.07+ public REST API: login, identity reads, the tuner's range and its power
    target. Every request is counted in ``m.requests`` as ``REST <method> <path>``."""
    m.requests[f"REST {method} {path}"] += 1
    if method == "POST" and path == "/api/v1/auth/login":
        req = json_body(body)
        if (
            not isinstance(req, dict)
            or req.get("username") != "root"
            or req.get("password") != m.web_password
        ):
            return 401, {"message": "Invalid username or password"}
        token = secrets.token_urlsafe(12)
        m.web_tokens.add(token)  # one token set per miner serves every web API here
        return 200, {"token": token, "timeout_s": 3600}
    reads = {
        "/api/v1/miner/details": bos_miner_details,
        "/api/v1/network/": bos_network,
        "/api/v1/configuration/constraints": bos_constraints,
    }
    writes = ("/api/v1/performance/power-target", "/api/v1/pools/batch")
    if path not in writes and path not in reads:
        return 404, {"message": "Not Found"}
    if headers.get("authorization", "") not in m.web_tokens:
        return 401, {"message": "Unauthorized"}
    if path in reads:
        doc = reads[path](m)
        if doc is None:  # a build without this endpoint
            return 404, {"message": "Not Found"}
        return (200, doc) if method == "GET" else (405, {"message": "Not Allowed"})
    req = json_body(body)
    if path == "/api/v1/pools/batch":
        return _bos_pool_groups(m, method, req)
    watt = req.get("watt") if isinstance(req, dict) else None
    if method != "PUT" or not isinstance(watt, int):
        return 400, {"message": "Invalid request body"}
    low, high = bos_power_range(m)
    if not low <= watt <= high:
        return 400, {"message": f"Power target {watt} W out of range {low}-{high} W"}

    def apply() -> None:
        m.power_limit_w = watt
        m.run_w = float(min(watt, m.nominal_power_w * 1.2))
        m.run_ths = m.nominal_ths * m.run_w / m.nominal_power_w

    m.limit_later(apply)
    return 200, {"watt": watt}


def _bos_pool_groups(m: SimMiner, method: str, groups: Any) -> tuple[int, Any]:
    """``PUT /api/v1/pools/batch`` (OpenAPI 25.07 ``setBatchPools``): the groups replace every
    group; the miner mines on the first group's pools, in order (bosminer restarts into them,
    at once here). The reply echoes the groups with the uids it gave them."""
    if method != "PUT":
        return 405, {"message": "Not Allowed"}
    if (
        not isinstance(groups, list)
        or not groups
        or not all(isinstance(g, dict) and isinstance(g.get("pools"), list) for g in groups)
        or not all(
            isinstance(p, dict) and isinstance(p.get("url"), str) and isinstance(p.get("user"), str)
            for g in groups
            for p in g["pools"]
        )
    ):
        return 400, {"message": "Invalid request body"}
    out = [
        {
            **g,
            "uid": f"group{gi}",
            "pools": [{**p, "uid": str(n)} for n, p in enumerate(g["pools"])],
        }
        for gi, g in enumerate(groups)
    ]
    m.pools = [
        {"url": p["url"], "user": p["user"], "pass": str(p.get("password") or "")}
        for p in groups[0]["pools"]
    ]
    m.pool_active = 0
    return 200, out


def _control(m: SimMiner, command: str, parameter: str, desc: str) -> Body | None:
    if command in ("pause", "resume"):
        m.sleeping = command == "pause"
        return ok(desc, "Paused" if m.sleeping else "Resumed")
    return None


# pause/resume and the tuner's power target act within a second or two, without restarting the
# miner (an assumption; Braiins OS can ramp slower in curtailments, its
# quick_ramping_time_up_s/_down_s in bos-plus-api performance.proto, configurable per box)
BRAIINS_SIM = Personality(
    name="braiins",
    models=(("Antminer S19 XP", 140.0, 3031.0, 3031),),
    desc=_BOS_DESC,
    replies=BRAIINS,
    control=_control,
    web=http_api(_braiins_route),
    serial_prefix="YNAH",
    web_password="",
    apply_s={"sleep": 1.0, "wake": 1.0, "limit": 1.0},
)
