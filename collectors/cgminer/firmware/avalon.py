"""Canaan AvalonMiner (cgminer 4.11 + Avalon driver): ``estats`` packs the module's readings
into one "MM ID0" string of ``Key[value]`` brackets.
"""

from __future__ import annotations

import re
from typing import Any

from collectors.cgminer.firmware.common import (
    Body,
    FirmwareSpec,
    Source,
    first_num,
    integer,
    item,
    items,
    mac,
    num,
    pools,
    positive,
    text,
)

_BRACKET = re.compile(r"(\w[\w ]*?)\[([^\]]*)\]")


def parse_mm(s: str) -> dict[str, str]:
    """'Ver[1246-83] Temp[25] Fan1[4000]' -> {'Ver': '1246-83', 'Temp': '25', 'Fan1': '4000'}."""
    return {k.strip(): v for k, v in _BRACKET.findall(s)}


def _mm(estats: Body | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for row in items(estats, "STATS"):
        for k, v in row.items():
            if k.startswith("MM ID") and isinstance(v, str):
                out.update(parse_mm(v))
    return out


def _model(version: Body | None) -> str | None:
    v = item(version, "VERSION") or {}
    return text(v.get("PROD")) or (f"AvalonMiner {v['MODEL']}" if text(v.get("MODEL")) else None)


def _hashrate(summary: Body | None, estats: Body | None) -> float | None:
    v = first_num(item(summary, "SUMMARY"), "MHS 5s", "MHS av")
    if v is not None:
        return v / 1e6
    g = num(_mm(estats).get("GHSmm"))
    return g / 1e3 if g is not None else None


def _temps(estats: Body | None) -> Any:
    from collectors.readings import AsicTemps

    mm = _mm(estats)
    if not mm:
        return None
    return AsicTemps(
        chip=positive([mm.get("TMax")]),
        inlet=tuple(t for t in [num(mm.get("Temp"))] if t is not None),
    )


def _fans(estats: Body | None) -> tuple[int, ...] | None:
    mm = _mm(estats)
    fans = [integer(mm.get(f"Fan{i}")) for i in range(1, 5) if f"Fan{i}" in mm]
    out = tuple(f for f in fans if f is not None)
    return out or None


def _power(estats: Body | None) -> float | None:
    # WALLPOWER is the PSU's input watts; PS[...] holds rail readings whose layout varies by model
    return num(_mm(estats).get("WALLPOWER"))


def _state(estats: Body | None) -> str | None:
    mm = _mm(estats)
    if "SoftOFF" in mm:
        return "sleeping" if mm["SoftOFF"].strip() not in ("", "0") else None
    return None


FIELDS: dict[str, Source] = {
    "model": Source(("version",), _model),
    "mac": Source(("version",), lambda v: mac((item(v, "VERSION") or {}).get("MAC"))),
    "firmware": Source(("estats",), lambda e: text(_mm(e).get("Ver"))),
    "hashrate_ths": Source(("summary", "estats"), _hashrate),
    "power_w": Source(("estats",), _power),
    "power_limit_w": Source(("estats",), lambda e: num(_mm(e).get("MPO"))),
    "temps_c": Source(("estats",), _temps),
    "fans_rpm": Source(("estats",), _fans),
    "pools": Source(("pools",), pools),
    "uptime_s": Source(("summary",), lambda s: integer((item(s, "SUMMARY") or {}).get("Elapsed"))),
    "state": Source(("estats",), _state),
}

SPEC = FirmwareSpec(
    family="avalon",
    vendor="Canaan",
    fields=FIELDS,
    sleep_command=("ascset", "0,softoff"),
    wake_command=("ascset", "0,softon"),
)
