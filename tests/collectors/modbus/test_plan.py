"""The read planner: few reads, never over 125 registers, splits at holes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuat.collectors.modbus.plan import MAX_READ, Block, plan, split
from kuat.collectors.modbus.profile import load_profile


def test_contiguous_and_small_gaps_merge() -> None:
    spans = [(3, 100, 2), (3, 102, 2), (3, 110, 4), (3, 200, 2)]
    blocks = plan(spans, max_gap=10)
    assert [(b.addr, b.count) for b in blocks] == [(100, 14), (200, 2)]
    assert plan(spans, max_gap=0)[0] == Block(3, 100, 4, ((3, 100, 2), (3, 102, 2)))


def test_function_codes_never_share_a_read() -> None:
    blocks = plan([(3, 0, 2), (4, 2, 2)], max_gap=10)
    assert [(b.fc, b.addr) for b in blocks] == [(3, 0), (4, 2)]


def test_max_count_is_respected() -> None:
    spans = [(3, a, 2) for a in range(0, 400, 2)]
    blocks = plan(spans, max_gap=0)
    assert [b.count for b in blocks] == [124, 124, 124, 28]
    assert all(b.count <= 20 for b in plan(spans, max_count=20))


def test_overlapping_spans_share_a_block() -> None:
    blocks = plan([(3, 10, 4), (3, 12, 1), (3, 10, 2)], max_gap=0)
    assert [(b.addr, b.count) for b in blocks] == [(10, 4)]


def test_split_cuts_at_widest_gap_then_halves() -> None:
    block = plan([(3, 0, 2), (3, 4, 2), (3, 30, 2), (3, 34, 2)], max_gap=50)[0]
    left, right = split(block)
    assert (left.addr, left.end, right.addr, right.end) == (0, 6, 30, 36)
    contiguous = plan([(3, 0, 2), (3, 2, 2), (3, 4, 2), (3, 6, 2)], max_gap=0)[0]
    assert [b.addr for b in split(contiguous)] == [0, 4]
    assert split(Block(3, 0, 2, ((3, 0, 2),))) == []


def test_schneider_profile_plan_is_small() -> None:
    prof = load_profile("schneider-pm5560")
    blocks = plan(prof.spans(), max_gap=prof.max_gap)
    assert len(blocks) <= 8
    assert len(plan(prof.spans(), max_gap=200)) == 3  # 2999..3110, 3203..3210, 3765


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        plan([(3, 0, 1)], max_count=126)
    with pytest.raises(ValueError):
        plan([(3, 0, 1)], max_gap=-1)


spans_st = st.lists(
    st.tuples(st.sampled_from([3, 4]), st.integers(0, 2000), st.sampled_from([1, 2, 4])),
    max_size=60,
)


@given(spans_st, st.integers(0, 40), st.integers(4, MAX_READ))
def test_plan_covers_every_span_within_limits(spans, max_gap, max_count) -> None:
    blocks = plan(spans, max_gap=max_gap, max_count=max_count)
    for b in blocks:
        assert 1 <= b.count <= max_count
        assert all(s[0] == b.fc and b.addr <= s[1] and s[1] + s[2] <= b.end for s in b.spans)
    assert sorted(s for b in blocks for s in b.spans) == sorted(set(spans))
    # splitting down to single spans keeps every span exactly once
    queue, leaves = list(blocks), []
    while queue:
        b = queue.pop()
        parts = split(b)
        if parts:
            assert sorted(parts[0].spans + parts[1].spans) == sorted(b.spans)
            queue.extend(parts)
        else:
            leaves.append(b)
    assert sorted(s for b in leaves for s in b.spans) == sorted(set(spans))
