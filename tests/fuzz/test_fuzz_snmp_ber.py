"""SNMP: ``decode_response`` (collectors/snmp/ber.py) raises only ``BerError`` for any datagram
a PDU, or anything else on the network, may send; OIDs from profile files and agents the
same (``encode_oid``, ``oid_text``)."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from kuat.collectors.snmp import ber
from tests.collectors.snmp.ber_samples import response, varbinds
from tests.fuzz.common import FUZZ, bounded, nasty_text

DEEP = b"\x30\x82\xff\xff" * 2000  # lengths that promise far more than the datagram holds


def _check(data: bytes) -> None:
    try:
        got = bounded(ber.decode_response, data)
    except ber.BerError:
        return
    assert isinstance(got.request_id, int) and isinstance(got.community, bytes)
    for oid, tag, value in got.varbinds:
        assert isinstance(oid, bytes) and isinstance(tag, int)
        assert value is None or isinstance(value, int | bytes | str)
        with contextlib.suppress(ber.BerError):  # a padded sub-identifier: a failed walk
            assert isinstance(bounded(ber.oid_text, oid), str)


@FUZZ
@given(st.binary(max_size=2000))
@example(b"")
@example(DEEP)
@example(b"\x30\x84\xff\xff\xff\xff")
@example(bytes.fromhex("3010020101040170a2080201010201000201"))
def test_any_bytes(data: bytes) -> None:
    _check(data)


@st.composite
def mutated_responses(draw: st.DrawFn) -> bytes:
    """A well-formed response (pysnmp's encoder) with a few byte-level edits."""
    binds: list[Any] = draw(varbinds(max_size=6))
    data = bytearray(response(binds, request_id=draw(st.integers(0, 2**31 - 1))))
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "cut", "insert", "truncate", "dup"]))
        if kind == "flip" and i < len(data):
            data[i] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[i : i + draw(st.integers(1, 8))]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "truncate":
            del data[i:]
        elif kind == "dup":
            data[i:i] = data[i : i + draw(st.integers(1, 30))]
    return bytes(data)


@FUZZ
@given(mutated_responses())
def test_mutated_real_responses(data: bytes) -> None:
    _check(data)


@FUZZ
@given(
    st.one_of(
        nasty_text,
        st.lists(st.integers(-5, 2**70), max_size=8).map(lambda arcs: ".".join(map(str, arcs))),
    )
)
def test_encode_oid_any_text(text: str) -> None:
    try:
        encoded = bounded(ber.encode_oid, text)
    except ber.BerError:
        return
    assert ber.oid_arcs(encoded) == [int(arc) for arc in text.strip(".").split(".")]


@FUZZ
@given(st.binary(max_size=64), st.integers(0, 64))
def test_oid_text_any_octets(content: bytes, start: int) -> None:
    try:
        text = bounded(ber.oid_text, content, start)
    except ber.BerError:
        return
    assert all(part.isdigit() for part in text.split(".") if text)
