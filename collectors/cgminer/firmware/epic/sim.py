"""Simulated ePIC UMC / PowerPlay: no cgminer API, its HTTP JSON API on the API port (a
cgminer-style request gets the 400 an HTTP server sends to anything that is not HTTP, as ePIC's
4028 does): ``/summary``, ``/capabilities``, ``/network``; ``/miner`` Stop/Autostart,
``/perpetualtune/algo`` Power targets and ``/coin`` pools, each with the web password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kuat.collectors.cgminer.sim_replies import Body, Personality, Ports, json_body, start_http

if TYPE_CHECKING:
    import asyncio

    from kuat.collectors.cgminer.sim import SimMiner


EPIC_SOFTWARE = "PowerPlay-BMS v1.5.13"


# the Power algorithm's range, as capabilities.PerpetualTune lists it
EPIC_POWER_RANGE = (1500, 3300)


def epic_summary(m: SimMiner) -> Body:
    """GET /summary, shaped after asic-rs's epic test summary.json (ePIC UMC 1.30 schema)."""
    per_board = m.chain_rates_ghs()
    hbs = [
        {
            "Core Clock": [],
            "Core Clock Avg": 487.5,
            "Hashrate": [round(ghs * 1e3, 1), 103.1, 0.8],
            "Index": i,
            "Input Current": 0.0,
            "Input Power": 0.0,
            "Input Voltage": 12.6,
            "Output Current": 0.0,
            "Output Power": 0.0,
            "Output Voltage": 0.0,
            "Temperature": float(board),
        }
        for i, (ghs, (board, _)) in enumerate(zip(per_board, m.chain_temps(), strict=True))
    ]
    fans: dict[str, int | None] = {f"Fans Speed {i}": None for i in range(1, 13)}
    for i, rpm in enumerate(m.fans_rpm, 1):
        fans[f"Fans Speed {i}"] = rpm
    algo: Body = {
        "VoltageOptimizer": {"Optimized": True, "Target": 140, "Unit": "TH/s"},
    }
    if m.power_target:
        algo = {"Power": {"Optimized": True, "Target": m.power_target, "Unit": "W"}}
    return {
        "Fans Rpm": fans,
        "HBStatus": [{"Detected": True, "Enabled": not m.sleeping, "Index": i} for i in range(3)],
        "HBs": [] if m.sleeping else hbs,
        "Hostname": f"epic-{m.serial[-6:].lower()}",
        "Misc": {"Critical Temp": 100.0, "Locate Miner State": False, "Shutdown Temp": 85.0},
        "OS Type": "umcOS",
        "PerpetualTune": {"Algorithm": algo, "Running": True},
        "Power Supply Stats": {
            "Input Current": 0.0,
            "Input Power": round(m.power_w, 4),
            "Input Voltage": 0.0,
            "Output Voltage": 12.595,
        },
        "Session": {
            "Accepted": m.accepted,
            "Active HBs": 0 if m.sleeping else 3,
            "Rejected": 2,
            "Uptime": m.elapsed,
        },
        "Software": EPIC_SOFTWARE,
        "Status": {
            "Last Command": None,
            "Last Command Result": None,
            "Last Error": None,
            "Operating State": "Idling" if m.sleeping else "Mining",
        },
        "Stratum": {
            "Config Id": 0,
            "Current Pool": m.pools[0]["url"].split("//")[-1],
            "Current User": m.pools[0]["user"],
            "IsPoolConnected": not m.sleeping,
        },
        "StratumConfigs": [
            {"login": p["user"], "password": "x", "pool": p["url"]} for p in m.pools
        ],
    }


def epic_capabilities(m: SimMiner) -> Body:
    lo, hi = EPIC_POWER_RANGE
    return {
        "Board Serial Numbers": [f"{m.serial}B{i}" for i in range(3)],
        "Chip Type": "BM1366",
        "Control Board Version": {"cpuHardware": "STM32", "cpuSerial": m.serial.lower()},
        "Default Hashrate": int(m.nominal_ths),
        "Max HBs": 3,
        "Miner Serial Number": m.serial,
        "Model": m.model.replace("Antminer", "AntMiner"),
        "Model Subtype": "BHB56801",
        "PerpetualTune": [
            {"algorithm": "VoltageOptimizer", "name": "Voltage Optimizer", "min": 60, "max": 300},
            {"algorithm": "Power", "name": "Power", "min": lo, "max": hi},
        ],
    }


def epic_network(m: SimMiner) -> Body:
    return {
        "dhcp": {
            "address": m.ip,
            "dns": "8.8.8.8",
            "gateway": "10.20.0.1",
            "mac_address": m.mac,
            "netmask": "255.255.255.0",
        }
    }


def _epic_route(
    m: SimMiner, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, Any]:
    gets = {"/summary": epic_summary, "/capabilities": epic_capabilities}
    if method == "GET" and path in gets:
        return 200, gets[path](m)
    if method == "GET" and path == "/network":
        return 200, epic_network(m)
    if method != "POST" or path not in ("/miner", "/perpetualtune/algo", "/coin"):
        return 404, None
    m.requests[f"HTTP POST {path}"] += 1  # what was written, for tests: nothing below the range
    req = json_body(body)
    if not isinstance(req, dict) or "param" not in req:
        return 200, {"result": False, "error": "MissingParam"}
    if req.get("password") != m.web_password:
        return 200, {"result": False, "error": "BadPassword"}
    param = req["param"]
    if path == "/coin":
        return 200, _epic_coin(m, param)
    if path == "/miner" and param in ("Stop", "Autostart"):
        m.sleeping = param == "Stop"
        return 200, {"result": True, "error": None}
    lo, hi = EPIC_POWER_RANGE
    if path == "/perpetualtune/algo" and isinstance(param, dict) and param.get("algo") == "Power":
        target = param.get("target")
        if isinstance(target, int) and lo <= target <= hi:

            def apply() -> None:
                m.power_target = m.power_limit_w = target
                m.run_w = float(target)
                m.run_ths = m.nominal_ths * target / m.nominal_power_w

            m.limit_later(apply)
            return 200, {"result": True, "error": None}
    return 200, {"result": False, "error": "MissingParam"}


def _epic_coin(m: SimMiner, param: Any) -> dict[str, Any]:
    """``/coin``: up to three stratum_configs replace the pools (ePIC's OpenAPI document)."""
    configs = param.get("stratum_configs") if isinstance(param, dict) else None
    if (
        not isinstance(configs, list)
        or not 1 <= len(configs) <= 3
        or not all(isinstance(c, dict) and isinstance(c.get("pool"), str) for c in configs)
    ):
        return {"result": False, "error": "InvalidStratumConfigs"}
    m.pools = [
        {"url": c["pool"], "user": str(c.get("login", "")), "pass": str(c.get("password", ""))}
        for c in configs
    ]
    return {"result": True, "error": None}


async def _listen(m: SimMiner, ports: Ports) -> list[asyncio.Server]:
    return [await start_http(m, m.port, _epic_route)]


# perpetualtune retunes the chips: assumed 20 s, as kuat's plant default
EPIC_SIM = Personality(
    name="epic",
    models=(("Antminer S19 XP", 140.0, 3010.0, 3010),),
    listen=_listen,
    web_password="letmein",
    apply_s={"sleep": 1.0, "wake": 1.0, "limit": 20.0},
)
