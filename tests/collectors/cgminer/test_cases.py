"""Every folder of tests/cases/asic/<firmware>/<case>/ is one recorded miner: its replies, one
file per command (``<command>.json``, the bytes as the miner sent them, each with its
``.src.txt`` source note), and ``expected.json``, the reading a person reads in them.

Adding a firmware version is adding a folder; nothing here changes. ``expected.json``:

- ``reading``: probe-JSON fields (``kuat probe asic --json``) the replies must give, exactly
  (floats to 1e-9 relative). A field left out must be empty in the reading (null, [], {}), so
  a parser that starts reporting something new is noticed.
- ``detect`` (default true): the folder's firmware must be what detection says from these
  replies; false for transports that name their firmware themselves (Whatsminer API v3).
- ``note``: what a person should see in the replies, and why.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kuat.collectors.cgminer.client import decode_reply
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.parsers import SPECS, detect_family, parse_replies
from kuat.collectors.readings import to_jsonable

CASES = Path(__file__).parents[2] / "cases" / "asic"
T = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)
# the call's own arguments, not read from the replies
_NOT_FROM_REPLIES = ("ip", "port", "taken_at")


def case_dirs() -> list[Path]:
    return sorted(p.parent for p in CASES.glob("*/*/expected.json"))


def replies_of(case: Path) -> dict[str, dict[str, Any]]:
    return {
        p.name.removesuffix(".json"): decode_reply(p.read_bytes())
        for p in sorted(case.glob("*.json"))
        if p.name != "expected.json"
    }


def same(got: Any, want: Any, where: str) -> None:
    if isinstance(want, float) or (isinstance(want, int) and isinstance(got, float)):
        assert isinstance(got, int | float) and not isinstance(got, bool), (where, got, want)
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12), (where, got, want)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (where, got, want)
        for k in want:
            same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (where, got, want)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            same(g, w, f"{where}[{i}]")
    else:
        assert got == want, (where, got, want)


def _empty(v: Any) -> bool:
    return v is None or v == [] or v == {} or (isinstance(v, dict) and all(map(_empty, v.values())))


def test_there_are_cases_for_the_firmwares() -> None:
    firmwares = {p.parent.name for p in case_dirs()}
    assert firmwares >= {
        "bitmain",
        "whatsminer",
        "whatsminer_v3",
        "luxos",
        "avalon",
        "auradine",
        "vnish",
    }
    assert firmwares <= set(SPECS), firmwares - set(SPECS)  # a folder is named by its firmware
    # one backend spec per Firmware member, whatever its transport
    assert set(SPECS) == set(Firmware)


@pytest.mark.parametrize("case", case_dirs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_case(case: Path) -> None:
    expected = json.loads((case / "expected.json").read_text())
    assert expected.get("note"), "say what a person reads in these replies"
    for p in case.glob("*.json"):
        if p.name != "expected.json":
            assert (case / (p.name + ".src.txt")).is_file(), f"{p.name} has no source note"
    bodies = replies_of(case)
    firmware = case.parent.name
    if expected.get("detect", True):
        detected = detect_family(bodies)
        assert detected is Firmware(firmware)  # the enum member, which equals the folder name
    r = parse_replies("10.1.2.3", 4028, T, bodies, firmware)
    assert r is not None
    got = to_jsonable(r)
    want = expected["reading"]
    for key, value in want.items():
        same(got[key], value, key)
    left_out = {
        k: v
        for k, v in got.items()
        if k not in want and k not in _NOT_FROM_REPLIES and not _empty(v)
    }
    assert not left_out, f"reading has fields expected.json does not name: {left_out}"


def test_fan_speeds_are_shared_ints() -> None:
    # every reading of a cycle is held at once: a fan speed many miners repeat is one int
    # object, on the modern Antminer stats too, not one per miner (values > 256 are new objects)
    case = CASES / "bitmain" / "s21-status-faults-synthetic"
    spec = SPECS[detect_family(replies_of(case))]
    a, b = (parse_replies("10.0.0.1", 4028, T, replies_of(case), spec.family) for _ in range(2))
    assert a.fans_rpm and any(f > 256 for f in a.fans_rpm), a.fans_rpm
    assert all(x is y for x, y in zip(a.fans_rpm, b.fans_rpm, strict=True))
