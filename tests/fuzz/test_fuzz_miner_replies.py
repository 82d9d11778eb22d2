"""Miner replies: ``decode_reply`` raises only ``ApiError``; every firmware's parser gives a
reading for whatever decodes (issue 10's "Bad input": deep nesting, 1e400 / 10**400, strings
where numbers belong)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from kuat.collectors.cgminer.client import ApiError, Replies, decode_reply
from kuat.collectors.cgminer.firmware.common import integer, num
from kuat.collectors.cgminer.parsers import SPECS, build_reading, detect_family
from kuat.collectors.readings import AsicReading, to_jsonable
from tests.fuzz.common import FUZZ, bounded, json_values, mutated_text

FIX = Path(__file__).parents[1] / "fixtures" / "asic"
CASES = Path(__file__).parents[1] / "cases" / "asic"
SEEDS = [
    p.read_text(encoding="utf-8", errors="replace")
    for p in sorted([*FIX.glob("*.json"), *CASES.glob("*/*/*.json")])
    if p.name != "expected.json" and p.stat().st_size < 64 * 1024
] or ['{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"GHS 5s":100.5}]}']
T = datetime(2026, 1, 1, tzinfo=UTC)
DEEP = b'{"STATUS":[{"STATUS":"S","Msg":' + b"[" * 1000 + b"]" * 1000 + b"}]}"


def _readings(body: dict[str, Any]) -> None:
    for command in ("summary", "stats", "version", "pools", "devs"):
        bodies = {command: body}
        family = bounded(detect_family, bodies)
        for fam in {family or "cgminer", *SPECS}:
            r = bounded(build_reading, "10.0.0.1", 4028, T, SPECS[fam], Replies(bodies=bodies))
            assert isinstance(r, AsicReading)
            json.dumps(to_jsonable(r), allow_nan=False)


def _reply(raw: bytes) -> None:
    try:
        body = bounded(decode_reply, raw)
    except ApiError as exc:
        assert str(exc)  # a one-line cause for the operator
        return
    assert isinstance(body, dict)
    _readings(body)


@FUZZ
@given(mutated_text(SEEDS))
@example(DEEP.decode())
@example('{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"GHS 5s":1' + "0" * 400 + "}]}")
@example('{"STATUS":[{"STATUS":"S"}],"SUMMARY":[{"GHS 5s":1e400,"Elapsed":"fast"}]}')
def test_mutated_replies(text: str) -> None:
    _reply(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(raw: bytes) -> None:
    _reply(raw)


@FUZZ
@given(json_values(40))
def test_any_json_where_a_reply_goes(value: Any) -> None:
    body = value if isinstance(value, dict) else {"STATUS": [{"STATUS": "S"}], "SUMMARY": [value]}
    _readings(body)


@FUZZ
@given(st.one_of(json_values(3), st.sampled_from([10**400, -(10**400), 1e308, "1e400", "nan"])))
def test_number_helpers_never_raise(value: Any) -> None:
    assert num(value) is None or isinstance(num(value), float)
    assert integer(value) is None or isinstance(integer(value), int)


def test_deep_nesting_is_a_clear_api_error() -> None:
    try:
        decode_reply(DEEP)
    except ApiError as exc:
        assert "nested" in str(exc)
    else:
        raise AssertionError("a reply nested 1000 levels deep decoded")
    assert num(10**400) is None
