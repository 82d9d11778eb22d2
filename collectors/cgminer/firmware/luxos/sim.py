"""Simulated LuxOS (Luxor's firmware on Antminers): its cgminer API with ``config``, ``power``,
``temps``, ``fans`` and power profiles. Sleep/wake: ``logon`` + ``curtail`` ``<sid>,sleep|
wakeup``; power profiles: ``profiles`` and ``logon`` + ``profileset`` ``<sid>,<name>``, the miner
then runs at that profile's watts and hashrate. Pool writes ``addpool``/``switchpool``/
``removepool`` need no session (replies with cgminer api.c's codes and texts, which LuxOS's
documentation does not print); ``pools`` marks the pool ``pool_active`` names as the one mining.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kuat.collectors.cgminer.firmware.bitmain.sim import bm_summary
from kuat.collectors.cgminer.sim_replies import (
    Body,
    Personality,
    Reply,
    fans_body,
    ok,
    pools_body,
    status,
)

if TYPE_CHECKING:
    from kuat.collectors.cgminer.sim import SimMiner


LUX_VERSION = "2025.4.8.220305-57b389c7"


_LUX_DESC = f"LUXminer {LUX_VERSION}"


def _lux_config(m: SimMiner) -> Body:
    return {
        "CONFIG": [
            {
                "ASC Count": 3,
                "ControlBoardType": "cvitek",
                "Cooling": "Air",
                "CurtailMode": "Sleep" if m.sleeping else "None",
                "DHCP": True,
                "Hostname": f"lux-{m.serial[-6:]}",
                "IPAddr": m.ip,
                "IsAtmEnabled": True,
                "IsPowerSupplyOn": not m.sleeping,
                "MACAddr": m.mac.lower(),
                "Model": m.model,
                "NameplateTHS": m.nominal_ths,
                "OS": "LuxOS",
                "PSULabel": "APW121215e",
                "Pool Count": len(m.pools),
                "Profile": m.profile,
                "SerialNumber": m.serial,
                "Strategy": "Failover",
                "SystemStatus": "Normal",
            }
        ],
        "STATUS": status(33, "LUXminer config", _LUX_DESC),
        "id": 1,
    }


def _lux_summary(m: SimMiner) -> Body:
    body = bm_summary(m)
    body["STATUS"] = status(11, "Summary", _LUX_DESC)
    return body


def _lux_temps(m: SimMiner) -> Body:
    rows = [
        {"TEMPS": i, "ID": i, "Board": float(b), "Chip": float(c)}
        for i, (b, c) in enumerate(m.chain_temps())
    ]
    return {"STATUS": status(201, "3 Temp(s)", _LUX_DESC), "TEMPS": rows, "id": 1}


# LuxOS names its profiles by chip clock; the 290 MHz one is the nameplate (default) setting.
LUX_DEFAULT_PROFILE = "290MHz"


_LUX_FREQS = (190, 215, 240, 265, 290, 315, 340)


def lux_profiles(m: SimMiner) -> dict[str, tuple[float, int]]:
    """{name: (TH/s, watts)}: power grows faster than clock, as the voltage steps up with it."""
    out = {}
    for f in _LUX_FREQS:
        k = f / 290
        out[f"{f}MHz"] = (round(m.nominal_ths * k, 1), round(m.nominal_power_w * k**1.3))
    return out


def _lux_profiles_body(m: SimMiner) -> Body:
    rows = [
        {
            "Profile Name": name,
            "Frequency": int(name.removesuffix("MHz")),
            "Hashrate": ths,
            "IsDynamic": False,
            "Step": str((int(name.removesuffix("MHz")) - 290) // 25),
            "Voltage": round(12.8 + (int(name.removesuffix("MHz")) - 290) / 100, 2),
            "Watts": watts,
        }
        for name, (ths, watts) in lux_profiles(m).items()
    ]
    return {"PROFILES": rows, "STATUS": status(320, "Profiles", _LUX_DESC), "id": 1}


LUXOS: dict[str, Reply] = {
    "config": _lux_config,
    "summary": _lux_summary,
    "stats": lambda m: {
        "STATUS": status(70, "CGMiner stats", _LUX_DESC),
        "STATS": [{"LUXminer": LUX_VERSION, "Type": m.model}],
        "id": 1,
    },
    "pools": lambda m: pools_body(m, _LUX_DESC),
    "version": lambda m: {
        "STATUS": status(22, "LUXminer versions", _LUX_DESC),
        "VERSION": [{"API": "3.7", "LUXminer": LUX_VERSION, "Miner": LUX_VERSION, "Type": m.model}],
        "id": 1,
    },
    "power": lambda m: {
        "POWER": [{"PSU": False, "Watts": round(m.power_w)}],
        "STATUS": status(311, "Power usage", _LUX_DESC),
        "id": 1,
    },
    "temps": _lux_temps,
    "fans": lambda m: fans_body(m, _LUX_DESC),
    "logon": lambda m: {
        "SESSION": [{"SessionID": m.session_id}],
        "STATUS": status(310, "Session created", _LUX_DESC),
        "id": 1,
    },
    "profiles": _lux_profiles_body,
}


def _lux_pools(m: SimMiner, command: str, parameter: str, desc: str) -> dict[str, Any]:
    """cgminer's pool commands as LuxOS answers them, without a session (the codes and
    texts are cgminer api.c's: 55 added, 27 switching, 68 removed; 26 bad id, 67 active)."""

    def err(code: int, msg: str) -> dict[str, Any]:
        return {"STATUS": status(code, msg, desc, "E"), "id": 1}

    if command == "addpool":
        parts = parameter.split(",")
        if len(parts) < 2 or not parts[0] or not parts[1]:
            return err(53, f"Invalid addpool details '{parameter}'")
        m.pools.append({"url": parts[0], "user": parts[1], "pass": ",".join(parts[2:3])})
        n = len(m.pools) - 1
        return {"STATUS": status(55, f"Added pool {n}: '{parts[0]}'", desc), "id": 1}
    n = int(parameter) if parameter.isdigit() else -1
    if not 0 <= n < len(m.pools):
        return err(26, f"Invalid pool id {n} - range is 0 - {len(m.pools) - 1}")
    url = m.pools[n]["url"]
    if command == "switchpool":
        m.pool_active = n
        return {"STATUS": status(27, f"Switching to pool {n}:'{url}'", desc), "id": 1}
    active = m.pool_active if m.pool_active < len(m.pools) else 0
    if n == active:
        return err(67, f"Cannot remove active pool {n}:'{url}'")
    del m.pools[n]
    if n < active:
        m.pool_active = active - 1
    return {"STATUS": status(68, f"Removed pool {n}:'{url}'", desc), "id": 1}


def _control(m: SimMiner, command: str, parameter: str, desc: str) -> Body | None:
    if command == "curtail":
        sid, _, action = parameter.partition(",")
        if sid != m.session_id or action not in ("sleep", "wakeup"):
            return {"STATUS": status(45, "Access denied", desc, "E"), "id": 1}
        m.sleeping = action == "sleep"
        return ok(desc, f"Curtail {action}")
    if command == "profileset":
        sid, _, name = parameter.partition(",")
        if sid != m.session_id:
            return {"STATUS": status(45, "Access denied", desc, "E"), "id": 1}
        table = lux_profiles(m)
        if name not in table:
            return {"STATUS": status(322, f"Invalid profile {name}", desc, "E"), "id": 1}
        ths, watts = table[name]

        def apply() -> None:
            m.profile, m.run_ths = name, ths
            m.run_w, m.power_limit_w = float(watts), watts

        m.limit_later(apply)
        return {
            "PROFILE": [{"Board": 0, "FrequencyStep": 5, "Profile": name, "VoltageStep": 0.05}],
            "STATUS": status(321, "Profile Set", desc),
            "id": 1,
        }
    if command == "logoff":
        return ok(desc, "Session closed")
    if command in ("addpool", "switchpool", "removepool"):
        return _lux_pools(m, command, parameter, desc)
    return None


def _setup(m: SimMiner) -> None:
    m.profile = LUX_DEFAULT_PROFILE


# curtail and profileset act within a second or two, without restarting the miner (an
# assumption)
LUXOS_SIM = Personality(
    name="luxos",
    models=(("Antminer S19k Pro", 121.8, 2760.0, 2760),),
    desc=_LUX_DESC,
    replies=LUXOS,
    control=_control,
    apply_s={"sleep": 1.0, "wake": 1.0, "limit": 1.0},
    setup=_setup,
)
