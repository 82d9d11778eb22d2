"""Modbus: register words to values raise only ``BadValue`` (a ValueError) for any words a
meter can send; ``decode`` refuses impossible input with ``ValueError``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuat.collectors.modbus.decode import RegType, WordOrder, decode, width
from kuat.collectors.modbus.profile import list_profiles, load_profile
from kuat.collectors.modbus.values import BadValue, check_expects, reading_fields
from tests.fuzz.common import FUZZ, bounded

PROFILES = [load_profile(name) for name in list_profiles()]
word = st.integers(0, 0xFFFF)


@FUZZ
@given(st.sampled_from(RegType), st.sampled_from(WordOrder), st.lists(word, max_size=5))
def test_decode_any_words(reg_type: RegType, order: WordOrder, words: list[int]) -> None:
    try:
        value = bounded(decode, words, reg_type, order)
    except ValueError:
        assert len(words) != width(reg_type)
        return
    assert isinstance(value, int | float)


@FUZZ
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=4))
def test_decode_refuses_words_out_of_range(words: list[int]) -> None:
    reg_type = {1: RegType.INT16, 2: RegType.INT32, 4: RegType.INT64}.get(len(words))
    if reg_type is None:
        return
    try:
        decode(words, reg_type, WordOrder.ABCD)
    except ValueError:
        assert any(not 0 <= w <= 0xFFFF for w in words)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
@FUZZ
@given(data=st.data())
def test_every_profile_reads_any_register_words(profile, data: st.DataObject) -> None:  # type: ignore[no-untyped-def]
    addresses = {(s.fc, a) for s in profile.registers for a in range(s.addr, s.addr + s.count)}
    addresses |= {(s.fc, s.scale_addr) for s in profile.registers if s.scale_addr is not None}
    addresses |= {(e.fc, e.addr + i) for e in profile.expects for i in range(len(e.words))}
    special = st.sampled_from([0, 0xFFFF, 0x7FFF, 0x8000, 0x7F80, 0xFF80, 0x7FC0])
    words = {
        a: data.draw(st.one_of(word, special))
        for a in sorted(addresses)
        if data.draw(st.booleans())
    }
    try:
        fields = bounded(reading_fields, profile, words)
    except BadValue as exc:
        assert "register" in str(exc)
    else:
        for value in fields.values():
            values = value if isinstance(value, tuple) else (value,)
            assert all(v is None or isinstance(v, float) for v in values)
    bounded(check_expects, profile, words)
