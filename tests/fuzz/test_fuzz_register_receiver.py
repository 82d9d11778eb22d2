"""The reference register receiver: any topic and payload is applied or refused with a
ReceiverError, and the view stays consistent (never a miner count from a half-applied message)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from kuat.uplink.register_receiver import ReceiverError, RegisterView
from tests.fuzz.common import FUZZ, bounded, deep, json_values, mutated_text
from tests.uplink.test_register_receiver import BASE, PREFIX, _messages

EVENTS, INV1, INV2 = _messages()
SEEDS = [json.dumps(m) for m in (*EVENTS, INV1, INV2)]
TOPICS = [f"{BASE}/events", f"{BASE}/inventory", f"{BASE}/status", f"{PREFIX}/x/y/events", "a/b"]


def _apply(view: RegisterView, topic: str, payload: bytes) -> None:
    try:
        bounded(view.handle, topic, payload)
    except ReceiverError as exc:
        assert str(exc)
    for site in view.sites.values():
        assert isinstance(site.miners, dict)
        assert site.seq is None or isinstance(site.seq, int)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(TOPICS), mutated_text(SEEDS)), max_size=6))
def test_mutated_messages(batch: list[tuple[str, str]]) -> None:
    view = RegisterView(PREFIX)
    for topic, text in batch:
        _apply(view, topic, text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.sampled_from(TOPICS), json_values())
def test_any_json(topic: str, value: object) -> None:
    _apply(RegisterView(PREFIX), topic, json.dumps(value).encode())


def test_deep_nesting() -> None:
    _apply(RegisterView(PREFIX), TOPICS[0], deep(100_000).encode())
