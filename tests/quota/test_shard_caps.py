"""Splitting the site's allowed power between shards, and a shard holding its cap
(kuat.quota.shard_caps)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuat.collectors.errors import KuatError
from kuat.quota.shard_caps import (
    Cap,
    CapError,
    CapHolder,
    CapPolicy,
    CapSource,
    ShardLoad,
    cap_message,
    load_message,
    parse_cap,
    parse_load,
    shareable_kw,
    split_caps,
)

kw = st.floats(0, 200_000, allow_nan=False)
shards = st.lists(
    st.tuples(kw, st.floats(0, 1), kw).map(lambda t: (t[0], t[0] * t[1], t[0] + t[2])),
    min_size=1,
    max_size=8,
)


def loads(pairs: list[tuple[float, float, float]]) -> list[ShardLoad]:
    return [ShardLoad(f"s{i}", ld, c, cap) for i, (ld, c, cap) in enumerate(pairs)]


@given(allowed=kw, pairs=shards)
def test_caps_sum_to_the_allowed_power_and_none_is_negative(
    allowed: float, pairs: list[tuple[float, float, float]]
) -> None:
    caps = split_caps(allowed, loads(pairs))
    assert set(caps) == {f"s{i}" for i in range(len(pairs))}
    assert all(c >= 0 for c in caps.values())
    assert sum(caps.values()) == pytest.approx(allowed, rel=1e-9, abs=1e-6)


@given(allowed=kw, pairs=shards)
def test_nobody_is_cut_below_its_firm_load_while_curtailment_can_cover_the_cut(
    allowed: float, pairs: list[tuple[float, float, float]]
) -> None:
    caps = split_caps(allowed, loads(pairs))
    total = sum(ld for ld, _, _ in pairs)
    firm = sum(ld - c for ld, c, _ in pairs)
    for i, (ld, c, _) in enumerate(pairs):
        if allowed >= total:
            assert caps[f"s{i}"] >= ld - 1e-6 * max(1.0, ld)
        elif allowed >= firm:
            assert caps[f"s{i}"] >= (ld - c) - 1e-6 * max(1.0, ld)


def test_a_cut_falls_on_the_shards_that_can_curtail() -> None:
    # hall a: 1000 kW all curtailable; hall b: 1000 kW of cooling and exempt machines
    caps = split_caps(1500, [ShardLoad("a", 1000, 1000), ShardLoad("b", 1000, 0)])
    assert caps == {"a": pytest.approx(500), "b": pytest.approx(1000)}


def test_headroom_goes_where_it_can_be_used() -> None:
    # hall a runs 1500 of 1500; hall b was curtailed to nothing but has 1000 kW asleep
    caps = split_caps(3000, [ShardLoad("a", 1500, 1500, 1500), ShardLoad("b", 0, 0, 1000)])
    assert caps == {"a": pytest.approx(1500), "b": pytest.approx(1500)}
    # nobody can add anything (or nobody says): with the load, else in equal shares
    caps = split_caps(3000, [ShardLoad("a", 1500, 1500), ShardLoad("b", 500, 500)])
    assert caps == {"a": pytest.approx(2250), "b": pytest.approx(750)}
    assert split_caps(100, [ShardLoad("a", 0, 0), ShardLoad("b", 0, 0)]) == {"a": 50, "b": 50}


def cap(kw: float, revision: int = 5, shard: str = "hall-b") -> Cap:
    return Cap(shard=shard, cap_kw=kw, controller="hall-a", revision=revision, at_unix=1.7e9)


def test_a_shard_holds_its_last_cap_then_falls_back_to_the_safe_default() -> None:
    h = CapHolder("hall-b", CapPolicy(hold_s=120, safe_default_kw=300, fresh_s=30))
    assert h.cap_kw(0.0) == (300, CapSource.DEFAULT)  # nothing heard yet
    assert h.offer(cap(800), now=10.0)
    assert h.cap_kw(20.0) == (800, CapSource.CONTROLLER)
    assert h.cap_kw(100.0) == (800, CapSource.HELD)  # the controller went quiet
    assert h.cap_kw(130.0) == (800, CapSource.HELD)  # 120 s after the last cap, inclusive
    assert h.cap_kw(130.1) == (300, CapSource.DEFAULT)
    assert h.offer(cap(900, revision=6), now=200.0)  # a new controller: back under control
    assert h.cap_kw(200.0) == (900, CapSource.CONTROLLER)


def test_a_deposed_controllers_cap_and_another_shards_cap_are_ignored() -> None:
    h = CapHolder("hall-b", CapPolicy(hold_s=120, safe_default_kw=300))
    assert h.offer(cap(800, revision=9), 0.0)
    assert not h.offer(cap(2000, revision=4), 1.0)
    assert not h.offer(cap(2000, revision=10, shard="hall-c"), 1.0)
    assert h.cap_kw(2.0) == (800, CapSource.CONTROLLER)


def test_messages_round_trip() -> None:
    c = cap(812.5)
    assert parse_cap(cap_message(c)) == c
    for load in (ShardLoad("hall-c", 950.0, 700.0, 1200.0), ShardLoad("hall-c", 950.0, 700.0)):
        assert parse_load(load_message(load, 1.7e9)) == (load, 1.7e9)


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_other_message_is_a_cap_error(raw: bytes) -> None:
    for parse in (parse_cap, parse_load):
        try:
            parse(raw)
        except CapError as exc:
            assert isinstance(exc, KuatError)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"shard": "a", "cap_kw": -1, "controller": "c", "revision": 1, "at": 0}',
        b'{"shard": "a", "cap_kw": 1, "controller": "c", "revision": 0, "at": 0}',
        b'{"shard": "", "cap_kw": 1, "controller": "c", "revision": 1, "at": 0}',
        b'{"shard": "a", "cap_kw": NaN, "controller": "c", "revision": 1, "at": 0}',
        b"[1]",
    ],
)
def test_bad_caps_are_refused_naming_the_field(raw: bytes) -> None:
    with pytest.raises(CapError, match="cap message"):
        parse_cap(raw)


def test_the_controller_keeps_back_what_the_meter_shows_beyond_the_reported_loads() -> None:
    reported = [ShardLoad("a", 400, 400), ShardLoad("b", 300, 300)]
    # the site draws 1000: 300 kW (a dead agent's hall, cooling) no cap will move
    assert shareable_kw(1200, 1000, reported, silent_kw=0) == 900
    # no site reading: the silent shards' last reported loads are kept back instead
    assert shareable_kw(1200, None, reported, silent_kw=250) == 950
    assert shareable_kw(100, 1000, reported, silent_kw=0) == 0  # never negative
