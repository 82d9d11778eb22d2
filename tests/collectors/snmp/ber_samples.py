"""SNMPv2c messages built and read by pysnmp's own codec (pyasn1): the reference that kuat's
hand-written ber.py is held to, in test_ber.py and in the fuzz harness (tests/fuzz)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1902, rfc1905

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]

# kind -> (pysnmp type, hypothesis strategy for its value)
KINDS: dict[str, tuple[Any, st.SearchStrategy[Any]]] = {
    "Integer32": (rfc1902.Integer32, st.integers(-(2**31), 2**31 - 1)),
    "OctetString": (rfc1902.OctetString, st.binary(max_size=300)),
    "IpAddress": (rfc1902.IpAddress, st.binary(min_size=4, max_size=4)),
    "Counter32": (rfc1902.Counter32, st.integers(0, 2**32 - 1)),
    "Gauge32": (rfc1902.Gauge32, st.integers(0, 2**32 - 1)),
    "TimeTicks": (rfc1902.TimeTicks, st.integers(0, 2**32 - 1)),
    "Counter64": (rfc1902.Counter64, st.integers(0, 2**64 - 1)),
    "Opaque": (rfc1902.Opaque, st.binary(max_size=20)),
    "ObjectIdentifier": (rfc1902.ObjectIdentifier, st.none()),  # value drawn as an OID
    "Null": (rfc1902.Null, st.just("")),
    "noSuchObject": (lambda _v: rfc1905.noSuchObject, st.none()),
    "noSuchInstance": (lambda _v: rfc1905.noSuchInstance, st.none()),
    "endOfMibView": (lambda _v: rfc1905.endOfMibView, st.none()),
}

arc = st.one_of(st.integers(0, 127), st.integers(128, 2**32 - 1))
oids = st.builds(
    lambda first, second, rest: (first, second, *rest),
    st.integers(0, 1),
    st.integers(0, 39),
    st.lists(arc, max_size=20),
) | st.builds(lambda second, rest: (2, second, *rest), st.integers(0, 500), st.lists(arc))


@st.composite
def varbinds(draw: st.DrawFn, max_size: int = 12) -> list[tuple[tuple[int, ...], str, Any]]:
    """(OID arcs, kind, value) triples of every type a v2c agent may answer."""
    out = []
    for _ in range(draw(st.integers(0, max_size))):
        kind = draw(st.sampled_from(sorted(KINDS)))
        value = draw(oids) if kind == "ObjectIdentifier" else draw(KINDS[kind][1])
        out.append((draw(oids), kind, value))
    return out


def response(
    binds: list[tuple[tuple[int, ...], str, Any]],
    *,
    request_id: int = 1234,
    community: str = "public",
    error_status: int = 0,
    error_index: int = 0,
) -> bytes:
    """A v2c Response message holding ``binds``, encoded by pysnmp."""
    pdu = V2C.ResponsePDU()
    V2C.apiPDU.set_defaults(pdu)
    V2C.apiPDU.set_request_id(pdu, request_id)
    V2C.apiPDU.set_error_status(pdu, error_status)
    V2C.apiPDU.set_error_index(pdu, error_index)
    V2C.apiPDU.set_varbinds(pdu, [(oid, KINDS[kind][0](value)) for oid, kind, value in binds])
    msg = V2C.Message()
    V2C.apiMessage.set_defaults(msg)
    V2C.apiMessage.set_community(msg, community)
    V2C.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


def read_request(data: bytes) -> tuple[int, str, int, int, int, list[str]]:
    """(PDU tag, community, request-id, field 2, field 3, OIDs) of a request, read by pysnmp."""
    msg, _ = decoder.decode(data, asn1Spec=V2C.Message())
    pdu = V2C.apiMessage.get_pdu(msg)
    tag = pdu.tagSet[-1].tagId | 0xA0
    fields = [int(pdu.getComponentByPosition(i)) for i in range(3)]
    names = [str(name) for name, _ in V2C.apiPDU.get_varbinds(pdu)]
    return tag, str(V2C.apiMessage.get_community(msg)), *fields, names  # type: ignore[return-value]
