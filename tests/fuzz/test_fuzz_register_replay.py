"""A register's replay request (kuat.uplink.register_replay) is outside input to the agent: any
payload is parsed or refused with a ReplayError, never anything else."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from kuat.uplink.register_replay import ReplayError, parse_replay, replay_payload
from tests.fuzz.common import FUZZ, bounded, deep, json_values, mutated_text

SEEDS = [replay_payload(15, 18).decode(), replay_payload(1, 1).decode()]


def _parse(raw: bytes) -> None:
    try:
        req = bounded(parse_replay, raw)
    except ReplayError as exc:
        assert str(exc)
    else:
        assert 1 <= req.from_seq <= req.to_seq


@FUZZ
@given(mutated_text(SEEDS))
def test_mutated_requests(text: str) -> None:
    _parse(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(json_values())
def test_any_json(value: object) -> None:
    _parse(json.dumps(value).encode())


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes(raw: bytes) -> None:
    _parse(raw)


def test_deep_nesting() -> None:
    _parse(deep(100_000).encode())
