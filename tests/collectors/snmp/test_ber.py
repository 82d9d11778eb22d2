"""kuat's SNMPv2c codec (ber.py) reads and writes what pysnmp's own codec does, byte for byte
on the way out and value for value on the way in, for every type a v2c agent may answer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder
from pyasn1.type import univ

from kuat.collectors.snmp import ber

from .ber_samples import V2C, oids, read_request, response, varbinds


def _pysnmp_values(data: bytes) -> list[tuple[str, Any]]:
    msg, _ = decoder.decode(data, asn1Spec=V2C.Message())
    out: list[tuple[str, Any]] = []
    for name, value in V2C.apiPDU.get_varbinds(V2C.apiMessage.get_pdu(msg)):
        if isinstance(value, V2C.Null):  # Null and the three exceptions derive from it
            seen: Any = None
        elif isinstance(value, univ.OctetString):  # IpAddress and Opaque too
            seen = bytes(value)
        elif isinstance(value, V2C.ObjectIdentifier):
            seen = str(value)
        else:
            seen = int(value)
        out.append((str(name), seen))
    return out


@settings(max_examples=300, deadline=None)
@given(varbinds(), st.integers(0, 2**31 - 1), st.binary(max_size=40))
def test_decodes_what_pysnmp_encodes(binds: list[Any], request_id: int, community: bytes) -> None:
    data = response(binds, request_id=request_id, community=community.decode("latin-1"))
    got = ber.decode_response(data)
    assert (got.request_id, got.community, got.error_status) == (request_id, community, 0)
    ours = [(ber.oid_text(oid), value) for oid, _tag, value in got.varbinds]
    assert ours == _pysnmp_values(data)


@given(oids, st.integers(0, 2**31 - 1), st.integers(0, 100))
def test_requests_read_back_by_pysnmp(oid: tuple[int, ...], request_id: int, reps: int) -> None:
    dotted = ".".join(map(str, oid))
    encoded = ber.encode_oid(dotted)
    assert ber.oid_text(encoded) == dotted
    bulk = ber.encode_request(ber.GETBULK, request_id, b"c", [encoded], max_repetitions=reps)
    assert read_request(bulk) == (ber.GETBULK, "c", request_id, 0, reps, [dotted])
    get = ber.encode_request(ber.GET, request_id, b"pdu", [encoded, encoded])
    assert read_request(get) == (ber.GET, "pdu", request_id, 0, 0, [dotted, dotted])


def test_index_after_a_column() -> None:
    column = ber.encode_oid("1.3.6.1.4.1.13742.6.5.4.3.1.4")
    instance = ber.encode_oid("1.3.6.1.4.1.13742.6.5.4.3.1.4.1.300.1")
    assert instance.startswith(column)
    assert ber.oid_text(instance, len(column)) == "1.300.1"


def test_error_status_is_named_as_pysnmp_names_it() -> None:
    data = response([], error_status=5, error_index=1)
    got = ber.decode_response(data)
    assert (got.error_status, got.error_index) == (5, 1)
    assert ber.error_status_name(got.error_status) == "genErr"
    assert ber.error_status_name(99) == "error 99"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "message: message ends early"),
        (bytes.fromhex("3003020100"), "version 0 is not SNMPv2c"),  # an SNMPv1 agent
        (  # a GetRequest, not a Response
            ber.encode_request(ber.GET, 1, b"public", [ber.encode_oid("1.3.6.1.2.1.1.2.0")]),
            "PDU: tag 0xa0, expected 0xa2",
        ),
        (bytes.fromhex("30 80 0201 01".replace(" ", "")), "message: bad length"),  # indefinite
    ],
)
def test_refuses_what_is_not_a_v2c_response(data: bytes, why: str) -> None:
    with pytest.raises(ber.BerError, match=why):
        ber.decode_response(data)


def test_refuses_a_truncated_reply_of_a_real_walk() -> None:
    data = response([((1, 3, 6, 1, 4, 1, 13742, 6, 5, 4, 3, 1, 4, 1, 1, 1), "Gauge32", 580)])
    for cut in range(1, len(data)):
        with pytest.raises(ber.BerError):
            ber.decode_response(data[:cut])


@pytest.mark.parametrize("text", ["", "1", "3.1", "1.40", "1.3.x", "1.-3", "..."])
def test_encode_oid_refuses_what_is_no_oid(text: str) -> None:
    with pytest.raises(ber.BerError, match="not an OID"):
        ber.encode_oid(text)
