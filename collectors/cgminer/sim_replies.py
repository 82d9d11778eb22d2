"""Reply bodies of the simulated firmwares, shaped after the real replies in
tests/cases/asic and tests/fixtures/asic (key names, value types, quirks), filled with one
miner's live numbers.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kuat.collectors.cgminer.firmware.avalon import sim as _avalon

if TYPE_CHECKING:
    from kuat.collectors.cgminer.sim import SimMiner

Body = dict[str, Any]

LUX_VERSION = "2025.4.8.220305-57b389c7"
BOSER_VERSION = "boser-buildroot 0.1.0-26ba61b9"


def _status(code: int, msg: str, desc: str, letter: str = "S") -> list[dict[str, Any]]:
    return [
        {"STATUS": letter, "When": int(time.time()), "Code": code, "Msg": msg, "Description": desc}
    ]


def invalid(desc: str) -> Body:
    return {"STATUS": _status(14, "Invalid command", desc, "E"), "id": 1}


def _pools(m: SimMiner, desc: str) -> Body:
    rows = []
    # the pool it mines on: the first, unless a switchpool (LuxOS) chose another
    active = m.pool_active if m.pool_active < len(m.pools) else 0
    for i, p in enumerate(m.pools):
        rows.append(
            {
                "POOL": i,
                "URL": p["url"],
                "Status": "Alive",
                "Priority": i,
                "Quota": 1,
                "Long Poll": "N",
                "Getworks": 1200 + i,
                "Accepted": 0 if i else m.accepted,
                "Rejected": 0 if i else m.accepted // 900,
                "Works": 0 if i else m.accepted * 60,
                "Discarded": 0,
                "Stale": 0,
                "Get Failures": 0,
                "Remote Failures": 0,
                "User": p["user"],
                "Last Share Time": int(time.time()) - 3 if i == 0 else 0,
                "Diff1 Shares": 0,
                "Proxy Type": "",
                "Proxy": "",
                "Difficulty Accepted": float(m.accepted * 65536) if i == 0 else 0.0,
                "Difficulty Rejected": 0.0,
                "Difficulty Stale": 0.0,
                "Last Share Difficulty": 65536.0,
                "Work Difficulty": 65536.0,
                "Has Stratum": True,
                "Stratum Active": i == active,
                "Stratum URL": p["url"].split("//")[-1].split(":")[0],
                "Stratum Difficulty": 65536.0,
                "Has Vmask": True,
                "Has GBT": False,
                "Best Share": 1320888597,
                "Pool Rejected%": 0.0,
                "Pool Stale%": 0.0,
                "Bad Work": 3,
                "Current Block Height": 871234,
                "Current Block Version": 536870912,
            }
        )
    return {"STATUS": _status(7, f"{len(rows)} Pool(s)", desc), "POOLS": rows, "id": 1}


# --- Bitmain stock ---------------------------------------------------------------------------

_BM_DESC = "cgminer 1.0.0"


def _bm_summary(m: SimMiner) -> Body:
    ghs = m.hashrate_ths * 1e3
    return {
        "STATUS": _status(11, "Summary", _BM_DESC),
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


def _bm_stats(m: SimMiner) -> Body:
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
    return {"STATUS": _status(70, "CGMiner stats", _BM_DESC), "STATS": [head, data], "id": 1}


def _bm_version(m: SimMiner) -> Body:
    return {
        "STATUS": _status(22, "BMMiner versions", _BM_DESC),
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


BITMAIN: dict[str, Callable[[SimMiner], Body]] = {
    "summary": _bm_summary,
    "stats": _bm_stats,
    "pools": lambda m: _pools(m, _BM_DESC),
    "version": _bm_version,
}


# --- Whatsminer btminer ----------------------------------------------------------------------


def _wm_summary(m: SimMiner) -> Body:
    mhs = m.hashrate_ths * 1e6
    board, chip = m.chain_temps()[0]
    return {
        "STATUS": _status(11, "Summary", "btminer"),
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
    return {"STATUS": _status(69, "Device Details", "btminer"), "DEVDETAILS": rows, "id": 1}


WHATSMINER: dict[str, Callable[[SimMiner], Body]] = {
    "summary": _wm_summary,
    "pools": lambda m: _pools(m, "btminer"),
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


# --- LuxOS -----------------------------------------------------------------------------------

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
        "STATUS": _status(33, "LUXminer config", _LUX_DESC),
        "id": 1,
    }


def _lux_summary(m: SimMiner) -> Body:
    body = _bm_summary(m)
    body["STATUS"] = _status(11, "Summary", _LUX_DESC)
    return body


def _lux_temps(m: SimMiner) -> Body:
    rows = [
        {"TEMPS": i, "ID": i, "Board": float(b), "Chip": float(c)}
        for i, (b, c) in enumerate(m.chain_temps())
    ]
    return {"STATUS": _status(201, "3 Temp(s)", _LUX_DESC), "TEMPS": rows, "id": 1}


def _fans(m: SimMiner, desc: str) -> Body:
    rows = [
        {"FANS": i, "ID": i, "RPM": rpm, "Speed": 0 if m.sleeping else 70}
        for i, rpm in enumerate(m.fans_rpm)
    ]
    return {"STATUS": _status(202, f"{len(rows)} Fan(s)", desc), "FANS": rows, "id": 1}


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
    return {"PROFILES": rows, "STATUS": _status(320, "Profiles", _LUX_DESC), "id": 1}


LUXOS: dict[str, Callable[[SimMiner], Body]] = {
    "config": _lux_config,
    "summary": _lux_summary,
    "stats": lambda m: {
        "STATUS": _status(70, "CGMiner stats", _LUX_DESC),
        "STATS": [{"LUXminer": LUX_VERSION, "Type": m.model}],
        "id": 1,
    },
    "pools": lambda m: _pools(m, _LUX_DESC),
    "version": lambda m: {
        "STATUS": _status(22, "LUXminer versions", _LUX_DESC),
        "VERSION": [{"API": "3.7", "LUXminer": LUX_VERSION, "Miner": LUX_VERSION, "Type": m.model}],
        "id": 1,
    },
    "power": lambda m: {
        "POWER": [{"PSU": False, "Watts": round(m.power_w)}],
        "STATUS": _status(311, "Power usage", _LUX_DESC),
        "id": 1,
    },
    "temps": _lux_temps,
    "fans": lambda m: _fans(m, _LUX_DESC),
    "logon": lambda m: {
        "SESSION": [{"SessionID": m.session_id}],
        "STATUS": _status(310, "Session created", _LUX_DESC),
        "id": 1,
    },
    "profiles": _lux_profiles_body,
}


# --- Braiins OS -----------------------------------------------------------------------------

_BOS_DESC = f"BOSer {BOSER_VERSION}"


def _bos_summary(m: SimMiner) -> Body:
    mhs = m.hashrate_ths * 1e6
    return {
        "STATUS": _status(11, "Summary", _BOS_DESC),
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
        "STATUS": _status(12, "Tuner Status", _BOS_DESC),
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


BRAIINS: dict[str, Callable[[SimMiner], Body]] = {
    "summary": _bos_summary,
    "pools": lambda m: _pools(m, _BOS_DESC),
    "version": lambda m: {
        "STATUS": _status(22, "BOSer versions", _BOS_DESC),
        "VERSION": [{"BOSer": BOSER_VERSION, "API": "3.7"}],
        "id": 1,
    },
    "devdetails": lambda m: {
        "STATUS": _status(69, "Device Details", _BOS_DESC),
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
        "STATUS": _status(201, "3 Temp(s)", _BOS_DESC),
        "TEMPS": [
            {"TEMPS": i, "ID": i, "Board": float(b), "Chip": float(c)}
            for i, (b, c) in enumerate(m.chain_temps())
        ],
        "id": 1,
    },
    "fans": lambda m: _fans(m, _BOS_DESC),
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
    body = _bm_version(m)
    body["VERSION"][0].update({"Miner": "71.0.1.3", "CompileTime": S21_COMPILE_TIME})
    return body


BITMAIN_S21 = {**BITMAIN, "version": _s21_version}
# the replies a request with "new_api": true gets; firmware without it answers the usual ones
NEW_API_REPLIES: dict[str, dict[str, Callable[[SimMiner], Body]]] = {
    "antminer_s21": {**BITMAIN_S21, "stats": bm_stats_new_api},
}


# --- Auradine FluxOS (cgminer-style API) -------------------------------------------------------
#
# Shaped after the asic-rs captures in tests/cases/asic/auradine/at1500-rpc.
_AURA_DESC = "FluxOS-2023-12.27-9bf070ee4408866329c93a70f2dfdc6248938aaa"


def _aura(code: int, msg: str, key: str, rows: list[Body]) -> Body:
    return {"STATUS": _status(code, msg, _AURA_DESC), key: rows, "id": 1}


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


AURADINE: dict[str, Callable[[SimMiner], Body]] = {
    "summary": _aura_summary,
    "pools": lambda m: _pools(m, _AURA_DESC),
    "version": lambda m: _aura(
        22, "GCMiner versions", "VERSION", [{"GCMiner": "0.5", "API": "1.0"}]
    ),
    "ipreport": _aura_ipreport,
    "temperature": _aura_temperature,
    "psu": _aura_psu,
    "fan": _aura_fan,
    "mode": _aura_mode,
}


FIRMWARE_REPLIES: dict[str, tuple[dict[str, Callable[[SimMiner], Body]], str]] = {
    "antminer": (BITMAIN, _BM_DESC),
    "antminer_s21": (BITMAIN_S21, _BM_DESC),
    "auradine": (AURADINE, _AURA_DESC),
    "whatsminer": (WHATSMINER, "btminer"),
    "luxos": (LUXOS, _LUX_DESC),
    "braiins": (BRAIINS, _BOS_DESC),
}


def ok(desc: str, msg: str) -> Body:
    return {"STATUS": _status(0, msg, desc), "id": 1}


# --- Bitmain stock web UI ----------------------------------------------------------------------

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


# --- Whatsminer API v3 (port 4433) ------------------------------------------------------------

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


# --- Vnish (cgminer API like bmminer, firmware named in Type) ---------------------------------

VNISH_VERSION = "1.2.6"


def _vnish_type(m: SimMiner) -> str:
    return f"{m.model} (Vnish {VNISH_VERSION})"


def _vn_version(m: SimMiner) -> Body:
    body = _bm_version(m)
    body["VERSION"][0]["Type"] = _vnish_type(m)
    return body


def _vn_stats(m: SimMiner) -> Body:
    body = _bm_stats(m)
    body["STATS"][0]["Type"] = _vnish_type(m)
    return body


VNISH: dict[str, Callable[[SimMiner], Body]] = {
    **BITMAIN,
    "version": _vn_version,
    "stats": _vn_stats,
}
FIRMWARE_REPLIES["vnish"] = (VNISH, _BM_DESC)
FIRMWARE_REPLIES["avalon"] = (
    {
        "version": _avalon.version,
        "summary": _avalon.summary,
        "stats": _avalon.stats,
        "estats": _avalon.stats,
        "pools": lambda m: _pools(m, _avalon.DESC),
    },
    _avalon.DESC,
)

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
    name = m.vnish_preset
    pretty = "Disabled" if name == "disabled" else f"{name} watt"
    return {
        "current_preset": {"name": name, "pretty": pretty, "status": "tuned"},
        "preset_switcher": {"enabled": False, "top_preset": None},
    }


def vnish_presets() -> list[Body]:
    rows: list[Body] = [{"name": "disabled", "pretty": "Disabled", "status": "untuned"}]
    for w in VNISH_PRESETS:
        rows.append({"name": str(w), "pretty": f"{w} watt", "status": "tuned"})
    for r in rows:
        r["modded_psu_required"] = False
    return rows


# --- ePIC UMC / PowerPlay (HTTP JSON on the API port) -----------------------------------------

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
    if m.epic_power_target:
        algo = {"Power": {"Optimized": True, "Target": m.epic_power_target, "Unit": "W"}}
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
