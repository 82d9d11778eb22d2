"""Whatever bytes a miner sends, the parser ends in a reading or a clean ApiError.

The poller turns ApiError into DeviceError; any other exception here would be a crash of a cycle.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kuat.collectors.cgminer.client import ApiError, Replies, decode_reply
from kuat.collectors.cgminer.parsers import SPECS, build_reading, detect_family
from kuat.collectors.readings import AsicReading, to_jsonable

FIX = Path(__file__).parents[2] / "fixtures" / "asic"
CASES = Path(__file__).parents[2] / "cases" / "asic"
# every recorded reply: the web/REST captures and the case folders' replies
RAW = [
    p.read_bytes()
    for p in sorted([*FIX.glob("*.json"), *CASES.glob("*/*/*.json")])
    if p.name != "expected.json"
]
T = datetime(2026, 1, 1, tzinfo=UTC)
COMMANDS = [
    "summary", "stats", "pools", "version", "config", "power", "devdetails", "status",
    "ipreport", "psu", "temperature", "fan", "mode",
]  # fmt: skip

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["73-45-64-65", "0-0-0-0", "'20201202'", "a-b", "-", "nan", "Alive"]),
)
KNOWN_KEYS = (
    "STATUS", "SUMMARY", "STATS", "POOLS", "VERSION", "CONFIG", "POWER", "Msg",
    "GHS 5s", "MHS 1m", "temp_pcb1", "temp_chip2", "temp2_1", "temp1", "fan1", "fan_num",
    "temp_num", "Type", "MAC", "Power", "Elapsed", "URL", "Stratum Active", "Watts",
    "SerialNumber", "MACAddr", "Model", "Description", "Error Code Count", "Priority",
    "INFO", "chain", "rate_5s", "rate_unit", "watt", "chain_power", "temp_chip", "temp_pcb",
    "temp_pic", "fan", "IPReport", "PSU", "PowerIn", "Temperature", "BoardTemp", "Fan", "Mode",
)  # fmt: skip
keys = st.one_of(st.text(max_size=10), st.sampled_from(KNOWN_KEYS))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=30,
)


def check_reading(bodies: dict[str, Any]) -> None:
    family = detect_family(bodies)
    for fam in {family or "cgminer", *SPECS}:  # every backend, whatever detection says
        r = build_reading("10.0.0.1", 4028, T, SPECS[fam], Replies(bodies=bodies))
        assert isinstance(r, AsicReading)
        assert r.state in ("mining", "sleeping", "error")
        json.dumps(to_jsonable(r), allow_nan=False)  # probe JSON stays valid JSON


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(COMMANDS), st.dictionaries(keys, json_value, max_size=5)))
def test_random_shaped_replies_never_raise(bodies: dict[str, Any]) -> None:
    check_reading(bodies)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(RAW),
    st.lists(st.tuples(st.integers(0, 4000), st.binary(max_size=4)), max_size=4),
    st.integers(0, 4000),
)
def test_mutated_real_replies_never_raise(raw: bytes, edits: list, cut: int) -> None:
    data = bytearray(raw)
    for pos, patch in edits:
        p = pos % (len(data) + 1)
        data[p : p + len(patch)] = patch
    data = data[: max(cut, len(data) // 2)]
    try:
        body = decode_reply(bytes(data))
    except ApiError as e:
        assert str(e) and "\n" not in str(e)
        return
    for cmd in ("summary", "stats", "config"):
        check_reading({cmd: body})


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_clean_error(raw: bytes) -> None:
    try:
        body = decode_reply(raw)
    except ApiError:
        return
    assert isinstance(body, dict)
    check_reading({"summary": body})


# --- stock Antminer chain strings and fans: the lookups that replaced int() read the same ------

_sensor = st.one_of(
    st.integers(-5, 400).map(str),
    st.sampled_from(["", " 65", "065", "+7", "1_0", "x", "255", "256", "0"]),
)
_chain_value = st.one_of(
    st.lists(_sensor, min_size=1, max_size=5).map("-".join),
    st.integers(-3, 300),
    st.none(),
    st.floats(allow_nan=True),
)


def _former_chain(v: Any) -> float | None:
    """How a chain string read before the lookup: int() of each sensor (bitmain._chain_temps)."""
    from kuat.collectors.cgminer.firmware import bitmain

    if v.__class__ is str and "-" in v:
        try:
            best = max(map(int, v.split("-")))
        except ValueError:
            return bitmain._sensor_max(v)
        return bitmain._DEGREES[best] if 0 < best < 256 else bitmain._degrees(best)
    return bitmain._sensor_max(v)


@given(st.lists(_chain_value, max_size=4), st.lists(st.one_of(json_leaf, st.integers(0, 2**60))))
@settings(max_examples=300, deadline=None)
def test_chain_temperatures_and_fans_read_as_before(chains: list[Any], fans: list[Any]) -> None:
    from kuat.collectors.cgminer.firmware import bitmain
    from kuat.collectors.cgminer.firmware.common import num, shared_int

    flat = {f"temp_pcb{n}": v for n, v in enumerate(chains, 1)}
    flat |= {f"fan{n}": v for n, v in enumerate(fans, 1)} | {"fan_num": len(fans)}
    view = bitmain._StatsView({"STATS": [flat]})
    want = tuple(t for v in chains if (t := _former_chain(v)) is not None)
    assert bitmain._chain_temps(view, "temp_pcb", "temp") == want
    rows = view.numbered("fan", len(fans))
    former = tuple(shared_int(int(f)) for _, v in rows if (f := num(v)) is not None and f >= 0)
    assert bitmain._read_fans(view) == former
