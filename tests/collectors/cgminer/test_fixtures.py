"""Decoding quirks of real replies, and the REST/web captures in tests/fixtures/asic.

Replies a reading is parsed from are case folders (tests/cases/asic, test_cases.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kuat.collectors.cgminer.client import MAX_DEPTH, ApiError, decode_reply
from kuat.collectors.cgminer.firmware.braiins import fields_from_rest_miner_stats
from kuat.collectors.cgminer.parsers import detect_family, parse_replies
from kuat.collectors.readings import AsicReading

FIX = Path(__file__).parents[2] / "fixtures" / "asic"
CASES = Path(__file__).parents[2] / "cases" / "asic"
T = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)


def load(name: str) -> dict:
    return decode_reply((FIX / name).read_bytes())


def reading(bodies: dict, family: str | None = None) -> AsicReading:
    r = parse_replies("10.1.2.3", 4028, T, bodies, family)
    assert r is not None
    return r


def test_every_fixture_has_its_source_note() -> None:
    replies = sorted(p for p in FIX.glob("*.json"))
    assert len(replies) >= 6
    for p in replies:
        assert (FIX / (p.name + ".src.txt")).is_file(), p.name


def test_l3plus_glued_stats_is_repaired() -> None:
    # the reading itself is the case folder bitmain/l3plus-glued-stats (test_cases.py)
    raw = (CASES / "bitmain" / "l3plus-glued-stats" / "stats.json").read_bytes()
    with pytest.raises(ValueError) as strict:
        json.loads(raw)
    assert "char 220" in str(strict.value)  # the quirk the note describes
    body = decode_reply(raw)
    assert detect_family({"stats": body}) == "bitmain"
    assert body["STATS"][0].get("Type") == "Antminer L3+"


def test_braiins_rest_miner_stats() -> None:
    f = fields_from_rest_miner_stats(load("braiins-s19xp-miner_stats.json"))
    assert f["power_w"] == 3137
    assert f["hashrate_ths"] == pytest.approx(141.4636, abs=1e-3)
    assert f["hashrate_nominal_ths"] == pytest.approx(142.8766, abs=1e-3)


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        (b'{"a":1}\x00', {"a": 1}),
        (b'{"a":1}\x00\x00garbage', {"a": 1}),
        (b'{"a":nan,"b":inf,"c":-Infinity}', {"a": None, "b": None, "c": None}),
        (b'{"a":[1,2,],"b":{"c":1,},}', {"a": [1, 2], "b": {"c": 1}}),
        (b'{"STATS":[{"a":1}{"b":2}]}', {"STATS": [{"a": 1}, {"b": 2}]}),
        (b'{"summary":[{}]}{"stats":[{}]}', {"summary": [{}], "stats": [{}]}),
    ],
)
def test_decode_quirks(raw: bytes, expect: dict) -> None:
    assert decode_reply(raw) == expect


@pytest.mark.parametrize(
    ("raw", "cause"),
    [
        (b"", "reply is empty"),
        (b"\x00", "reply is empty"),
        (b"<html>502</html>", "reply is not JSON at byte 0"),
        (b'{"STATUS":[{"STATUS":"S"}], "x": tru}', "reply is not JSON at byte 33"),
        (b"[1,2]", "reply is JSON but a list, not an object"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_decode_errors_are_one_line(raw: bytes, cause: str) -> None:
    with pytest.raises(ApiError) as e:
        decode_reply(raw)
    assert cause in str(e.value)
    assert "\n" not in str(e.value)


def test_a_reply_nested_to_the_limit_decodes_and_one_level_more_is_refused() -> None:
    # the nesting is counted in containers, whichever kind and wherever in the reply
    at_limit = b'{"STATUS":[{"STATUS":"S"}],"x":' + b'[{"a":' * 15 + b"[1]" + b"}]" * 15 + b"}"
    obj = decode_reply(at_limit)  # 1 + 2 * 15 + 1 = MAX_DEPTH levels
    assert obj["STATUS"] == [{"STATUS": "S"}]
    over = b'{"x":' + b'[{"a":' * 15 + b"[[1]]" + b"}]" * 15 + b', "y": [[]]}'
    with pytest.raises(ApiError, match=f"nested more than {MAX_DEPTH} levels"):
        decode_reply(over)


def test_glued_stats_fast_repair_reads_as_the_general_one() -> None:
    # bmminer's '}{"STATS":' is mended in bytes; the result must be what the general repair
    # (regexes and the stdlib parser) gives for the same reply, on the real capture
    from kuat.collectors.cgminer.client import _decode_tolerant

    raw = (CASES / "bitmain" / "l3plus-glued-stats" / "stats.json").read_bytes()
    assert b'}{"STATS":' in raw
    assert decode_reply(raw) == _decode_tolerant(raw.rstrip(b"\x00").strip())


@pytest.mark.parametrize(
    "raw",
    [
        # where bmminer puts it: after the STATS header, in a multi-command reply
        b'{"stats":[{"STATS":[{"Type":"Antminer S19"}{"STATS":0,"GHS 5s":1.5}]}],"id":1}',
        # a header holding a "}" of its own, and the glue between later parts: the general
        # repair mends what the look after the header does not see
        b'{"STATS":[{"Type":"x}y"}{"STATS":0,"a":1}]}',
        b'{"STATS":[{"Type":"S9"},{"STATS":0,"a":1}{"STATS":1,"b":2}]}',
    ],
)
def test_glued_stats_anywhere_reads_as_the_general_repair(raw: bytes) -> None:
    from kuat.collectors.cgminer.client import _decode_tolerant

    assert decode_reply(raw) == _decode_tolerant(raw)


def test_merged_stats_parts_keep_every_key_the_later_winning() -> None:
    from kuat.collectors.cgminer.firmware.common import merged

    body = {"STATS": [{"a": 1, "b": 1}, "junk", {"b": 2, "c": 2}, {"c": 3, "d": 3}]}
    assert merged(body, "STATS") == {"a": 1, "b": 2, "c": 3, "d": 3}
    assert merged({"STATS": "x"}, "STATS") == {} == merged(None, "STATS")
