"""Decoding of every register type and word order, against hand-computed wire words."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuat.collectors.modbus.decode import RegType, WordOrder, decode, encode, raw_unsigned, width

# (type, order, words as a device puts them on the wire, value)
KNOWN = [
    (RegType.FLOAT32, WordOrder.ABCD, [0x4366, 0x0000], 230.0),
    (RegType.FLOAT32, WordOrder.CDAB, [0x0000, 0x4366], 230.0),
    (RegType.FLOAT32, WordOrder.BADC, [0x6643, 0x0000], 230.0),
    (RegType.FLOAT32, WordOrder.DCBA, [0x0000, 0x6643], 230.0),
    (RegType.INT32, WordOrder.ABCD, [0x0001, 0x0002], 0x00010002),
    (RegType.INT32, WordOrder.CDAB, [0x0002, 0x0001], 0x00010002),
    (RegType.INT32, WordOrder.ABCD, [0xFFFF, 0xFFFE], -2),
    (RegType.UINT32, WordOrder.ABCD, [0xFFFF, 0xFFFE], 0xFFFFFFFE),
    (RegType.INT16, WordOrder.ABCD, [0xFF9C], -100),
    (RegType.UINT16, WordOrder.ABCD, [0xFF9C], 0xFF9C),
    (RegType.INT64, WordOrder.ABCD, [0x0000, 0x0000, 0x0001, 0x0000], 65536),
    (RegType.INT64, WordOrder.CDAB, [0x0000, 0x0001, 0x0000, 0x0000], 65536),
    (RegType.UINT64, WordOrder.ABCD, [0x0000, 0x0000, 0x0006, 0x97F5], 432117),
    (RegType.FLOAT64, WordOrder.ABCD, [0x4137, 0x0F0A, 0x0000, 0x0000], 1511178.0),
]


@pytest.mark.parametrize(("reg_type", "order", "words", "value"), KNOWN)
def test_known_words(reg_type: RegType, order: WordOrder, words: list[int], value: float) -> None:
    assert decode(words, reg_type, order) == value
    assert encode(value, reg_type, order) == words


def test_float32_nan_and_shortest_decimal() -> None:
    assert math.isnan(decode([0xFFC0, 0x0000], RegType.FLOAT32, WordOrder.ABCD))
    # 230.1 is not exact in float32; the meter meant 230.1, not 230.10000610351562
    assert (
        decode(encode(230.1, RegType.FLOAT32, WordOrder.ABCD), RegType.FLOAT32, WordOrder.ABCD)
        == 230.1
    )


def test_wrong_word_count_is_refused() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode([1], RegType.FLOAT32, WordOrder.ABCD)


def test_raw_unsigned_sees_sentinels() -> None:
    assert raw_unsigned([0x8000, 0, 0, 0], WordOrder.ABCD) == 0x8000000000000000
    assert raw_unsigned([0, 0x8000], WordOrder.CDAB) == 0x80000000


_INT_RANGES = {
    RegType.INT16: (-(2**15), 2**15 - 1),
    RegType.UINT16: (0, 2**16 - 1),
    RegType.INT32: (-(2**31), 2**31 - 1),
    RegType.UINT32: (0, 2**32 - 1),
    RegType.INT64: (-(2**63), 2**63 - 1),
    RegType.UINT64: (0, 2**64 - 1),
}


@given(st.sampled_from(list(_INT_RANGES)), st.sampled_from(list(WordOrder)), st.data())
def test_integer_round_trip(reg_type: RegType, order: WordOrder, data: st.DataObject) -> None:
    lo, hi = _INT_RANGES[reg_type]
    value = data.draw(st.integers(lo, hi))
    words = encode(value, reg_type, order)
    assert len(words) == width(reg_type)
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode(words, reg_type, order) == value


@given(st.sampled_from(list(WordOrder)), st.floats(allow_nan=False, allow_infinity=False))
def test_float64_round_trip(order: WordOrder, value: float) -> None:
    assert decode(encode(value, RegType.FLOAT64, order), RegType.FLOAT64, order) == value


@given(st.sampled_from(list(WordOrder)), st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_round_trip_is_same_float32(order: WordOrder, value: float) -> None:
    words = encode(value, RegType.FLOAT32, order)
    back = decode(words, RegType.FLOAT32, order)
    assert encode(back, RegType.FLOAT32, order) == words
