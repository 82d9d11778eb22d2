"""Simulated Vnish on an Antminer: bmminer's cgminer API with the firmware named in ``Type``,
and on the farm's web port its web API (unlock with the password, ``info``, ``summary``,
``perf-summary``, ``autotune/presets``, ``mining/stop|start|restart``, ``settings`` for a preset
or pools, which apply at the next mining restart). ``SimMiner.api_stops_asleep``: the cgminer
API goes quiet while mining is stopped, as some builds do.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from kuat.collectors.cgminer.firmware.bitmain.sim import BITMAIN, BM_DESC, bm_stats, bm_version
from kuat.collectors.cgminer.sim_replies import Body, Personality, Reply, http_api, json_body

if TYPE_CHECKING:
    from kuat.collectors.cgminer.sim import SimMiner


VNISH_VERSION = "1.2.6"


def _vnish_type(m: SimMiner) -> str:
    return f"{m.model} (Vnish {VNISH_VERSION})"


def _vn_version(m: SimMiner) -> Body:
    body = bm_version(m)
    body["VERSION"][0]["Type"] = _vnish_type(m)
    return body


def _vn_stats(m: SimMiner) -> Body:
    body = bm_stats(m)
    body["STATS"][0]["Type"] = _vnish_type(m)
    return body


VNISH: dict[str, Reply] = {
    **BITMAIN,
    "version": _vn_version,
    "stats": _vn_stats,
}


# numeric presets as Vnish lists them for an S19j Pro; "disabled" runs stock clocks
VNISH_PRESETS = (2100, 2350, 2620, 2950, 3200)


def vnish_info(m: SimMiner) -> Body:
    """/api/v1/info, shaped after Vnish 1.2.7's OpenAPI InfoJson."""
    return {
        "miner": m.model,
        "model": m.model.split(" ", 1)[-1].lower().replace(" ", ""),
        "fw_name": "Vnish",
        "fw_version": VNISH_VERSION,
        "build_uuid": "5b50805f-a372-4f07-bbc2-5020aa03321a",
        "build_name": "vnishnet",
        "platform": "xil",
        "install_type": "nand",
        "build_time": "2025-05-29 19:22:26+00:00",
        "algorithm": "sha256d",
        "hr_measure": "GH/s",
        "system": {
            "os": "GNU/Linux",
            "miner_name": "s19jpro",
            "file_system_version": "",
            "mem_total": 233712,
            "mem_free": 173956,
            "network_status": {
                "mac": m.mac,
                "dhcp": True,
                "ip": m.ip,
                "netmask": "255.255.255.0",
                "gateway": "10.20.0.1",
                "dns": ["10.20.0.1"],
                "hostname": "antminer",
            },
            "uptime": f"{m.elapsed // 3600}:{m.elapsed % 3600 // 60:02d}",
        },
        "serial": m.serial,
    }


def vnish_summary(m: SimMiner) -> Body:
    """/api/v1/summary (``miner`` part of Vnish 1.2.7's AntmMinerStats, the fields we read)."""
    ghs = m.hashrate_ths * 1e3
    state = "stopped" if m.sleeping else "mining"
    return {
        "miner": {
            "miner_status": {"miner_state": state, "miner_state_time": 3600},
            "miner_type": _vnish_type(m),
            "hr_stock": round(m.nominal_ths * 1e3, 2),
            "hr_realtime": round(ghs, 2),
            "hr_nominal": round(m.nominal_ths * 1e3, 2),
            "hr_average": round(ghs, 2),
            "pcb_temp": {"min": 40, "max": max((b for b, _ in m.chain_temps()), default=0)},
            "chip_temp": {"min": 50, "max": max((c for _, c in m.chain_temps()), default=0)},
            "power_consumption": round(m.power_w),
            "power_usage": round(m.power_w),
            "power_efficiency": round(m.power_w / max(m.hashrate_ths, 0.001), 1),
            "hw_errors_percent": 0.0,
            "hr_error": 0.0,
            "hw_errors": 0,
            "devfee_percent": 2.8,
            "devfee": 0.0,
            "pools": [
                {
                    "id": i,
                    "url": p["url"],
                    "pool_type": "UserPool",
                    "user": p["user"],
                    "status": "active" if i == 0 else "working",
                    "asic_boost": True,
                    "diff": "65K",
                    "accepted": m.accepted if i == 0 else 0,
                    "rejected": 0,
                    "stale": 0,
                    "ls_diff": 65536.0,
                    "ls_time": "0:00:03",
                    "diffa": 0.0,
                    "ping": 12,
                }
                for i, p in enumerate(m.pools)
            ],
            "cooling": {
                "fan_num": len(m.fans_rpm),
                "fans": [
                    {"id": i, "rpm": rpm, "status": "ok", "max_rpm": 6000}
                    for i, rpm in enumerate(m.fans_rpm)
                ],
                "settings": {"mode": {"name": "auto"}},
                "fan_duty": 60,
            },
            "chains": [],
            "found_blocks": 0,
            "best_share": 0,
        }
    }


def vnish_perf_summary(m: SimMiner) -> Body:
    name = m.preset
    pretty = "Disabled" if name == "disabled" else f"{name} watt"
    return {
        "current_preset": {"name": name, "pretty": pretty, "status": "tuned"},
        "preset_switcher": {"enabled": False, "top_preset": None},
    }


def presets() -> list[Body]:
    rows: list[Body] = [{"name": "disabled", "pretty": "Disabled", "status": "untuned"}]
    for w in VNISH_PRESETS:
        rows.append({"name": str(w), "pretty": f"{w} watt", "status": "tuned"})
    for r in rows:
        r["modded_psu_required"] = False
    return rows


# --- the web API --------------------------------------------------------------------------


def _vnish_route(
    m: SimMiner, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, Any]:
    if method == "GET" and path == "/api/v1/info":
        return 200, vnish_info(m)
    if method == "GET" and path == "/api/v1/summary":
        return 200, vnish_summary(m)
    if method == "GET" and path == "/api/v1/perf-summary":
        return 200, vnish_perf_summary(m)
    if method == "POST" and path == "/api/v1/unlock":
        req = json_body(body)
        if not isinstance(req, dict) or req.get("pw") != m.web_password:
            return 403, {"unlock_timeout": None}
        token = secrets.token_urlsafe(24)
        m.web_tokens.add(token)
        return 200, {"token": token}
    writes = (
        "/api/v1/mining/stop",
        "/api/v1/mining/start",
        "/api/v1/settings",
        "/api/v1/mining/restart",
    )
    if path not in writes and path != "/api/v1/autotune/presets":
        return 404, None
    if method == "POST":
        m.requests[f"HTTP POST {path}"] += 1  # what was written, for tests
    auth = headers.get("authorization", "")
    if not auth.startswith("Bearer ") or auth[7:] not in m.web_tokens:
        return 401, None
    if method == "GET" and path == "/api/v1/autotune/presets":
        return 200, presets()
    if method == "POST" and path in writes[:2]:
        m.sleeping = path.endswith("/stop")
        return 200, None
    if method == "POST" and path == "/api/v1/mining/restart":
        # bmminer restarts with the saved settings: saved pools take effect now
        if m.saved_pools is not None:
            m.pools, m.saved_pools = m.saved_pools, None
        return 200, None
    if method == "POST" and path == "/api/v1/settings":
        req = json_body(body)
        pools = ((req or {}).get("miner") or {}).get("pools")
        if pools is not None:
            return _vnish_pools(m, pools)
        preset = (((req or {}).get("miner") or {}).get("overclock") or {}).get("preset")
        if not isinstance(preset, str) or not (preset == "disabled" or preset.isdigit()):
            return 500, {"err": "invalid preset"}
        watts = int(preset) if preset.isdigit() else int(m.nominal_power_w)

        def apply() -> None:
            m.preset = preset
            m.run_w, m.power_limit_w = float(watts), watts
            m.run_ths = m.nominal_ths * watts / m.nominal_power_w

        m.limit_later(apply)
        return 200, {"restart_required": False, "reboot_required": False}
    return 404, None


def _vnish_pools(m: SimMiner, pools: Any) -> tuple[int, Any]:
    """Saved, applied at the next mining restart (the answer says one is needed), as Vnish
    does with a new pool list; at most three url/user/pass entries (its OpenAPI schema)."""
    if (
        not isinstance(pools, list)
        or not 1 <= len(pools) <= 3
        or not all(isinstance(p, dict) and {"url", "user", "pass"} <= p.keys() for p in pools)
    ):
        return 500, {"err": "invalid pools"}
    m.saved_pools = [
        {"url": str(p["url"]), "user": str(p["user"]), "pass": str(p["pass"])} for p in pools
    ]
    return 200, {"restart_required": True, "reboot_required": False}


# presets retune the chips: assumed 10 s, as kuat's plant default
VNISH_SIM = Personality(
    name="vnish",
    models=(("Antminer S19j Pro", 100.0, 3050.0, 3050),),
    desc=BM_DESC,
    replies=VNISH,
    web=http_api(_vnish_route),
    web_password="admin",
    apply_s={"sleep": 1.0, "wake": 1.0, "limit": 10.0},
)
