"""SNMPv2c messages on the wire: GET/GETBULK requests out, Response PDUs in (BER, RFC 3416).

Hand-written for the PDU poll's hot path only. pyasn1, under pysnmp, builds a schema object
per ASN.1 value and spent ~120 µs of CPU per varbind of a Raritan walk, two thirds of the
poll (bench/snmp_poll.py); this decoder reads the same bytes into plain ints, bytes and
strings. It covers what a v2c manager receives and nothing else: SNMPv3, SET and traps stay
with pysnmp. ``decode_response`` raises only ``BerError`` for any datagram (tests/fuzz).

OIDs are kept as their BER content octets (``bytes``): a walk asks "is this under my
column?" with one ``startswith`` on the encoded column, and decodes only the instance index
after it (``oid_text``), which is most of the saving on a long OID.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from kuat.collectors.errors import KuatError

__all__ = [
    "END_OF_MIB_VIEW",
    "EXCEPTIONS",
    "OCTET_TYPES",
    "OID",
    "BerError",
    "Response",
    "Value",
    "Varbind",
    "decode_response",
    "encode_oid",
    "encode_request",
    "error_status_name",
    "oid_arcs",
    "oid_text",
]

# PDU tags (context-specific, constructed)
GET = 0xA0
RESPONSE = 0xA2
GETBULK = 0xA5

# value tags a v2c agent may send in a varbind
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
IP_ADDRESS = 0x40
COUNTER32 = 0x41
GAUGE32 = 0x42
TIMETICKS = 0x43
OPAQUE = 0x44
COUNTER64 = 0x46
NO_SUCH_OBJECT = 0x80
NO_SUCH_INSTANCE = 0x81
END_OF_MIB_VIEW = 0x82

# tags whose value is bytes: IpAddress and Opaque are OCTET STRINGs underneath
OCTET_TYPES = frozenset({OCTET_STRING, IP_ADDRESS, OPAQUE})
# "no value here" markers: NULL and the three v2c exceptions (all decode to None)
EXCEPTIONS = frozenset({NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW})
_UNSIGNED = frozenset({COUNTER32, GAUGE32, TIMETICKS, COUNTER64})

_SNMP_V2C = 1
_ERROR_STATUS = [
    "noError",
    "tooBig",
    "noSuchName",
    "badValue",
    "readOnly",
    "genErr",
    "noAccess",
    "wrongType",
    "wrongLength",
    "wrongEncoding",
    "wrongValue",
    "noCreation",
    "inconsistentValue",
    "resourceUnavailable",
    "commitFailed",
    "undoFailed",
    "authorizationError",
    "notWritable",
    "inconsistentName",
]

Value = int | bytes | str | None
Varbind = tuple[bytes, int, Value]  # (OID content octets, value tag, value)


class BerError(KuatError, ValueError):
    """A datagram that is not a well-formed SNMPv2c Response; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Response:
    request_id: int
    community: bytes
    error_status: int
    error_index: int
    varbinds: list[Varbind]


def error_status_name(status: int) -> str:
    """RFC 3416's name of an error-status (``tooBig``, ``genErr`` …) as pysnmp prints it."""
    return _ERROR_STATUS[status] if 0 <= status < len(_ERROR_STATUS) else f"error {status}"


# --- encoding -----------------------------------------------------------------------------


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _len(len(body)) + body


def _int(n: int) -> bytes:
    return _tlv(INTEGER, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


@functools.lru_cache(maxsize=4096)
def encode_oid(dotted: str) -> bytes:
    """'1.3.6.1.2.1.1.2.0' -> its BER content octets (no tag or length).

    Raises ``BerError`` for text that is not an SNMP OID of at least two arcs."""
    parts = dotted.strip(".").split(".")
    # SNMP's limits (RFC 2578 §3.5): at most 128 sub-identifiers, each below 2**32
    if len(parts) > 128 or not all(p.isascii() and p.isdigit() and len(p) <= 10 for p in parts):
        raise BerError(f"not an OID: {dotted!r}")
    arcs = [int(p) for p in parts]
    if len(arcs) < 2 or max(arcs) >= 2**32 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise BerError(f"not an OID: {dotted!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def encode_request(
    pdu: int,
    request_id: int,
    community: bytes,
    oids: list[bytes],
    *,
    non_repeaters: int = 0,
    max_repetitions: int = 0,
) -> bytes:
    """A v2c GET (``pdu=GET``) or GETBULK message for OIDs given as ``encode_oid`` octets."""
    varbinds = b"".join(_tlv(0x30, _tlv(OID, o) + b"\x05\x00") for o in oids)
    body = (
        _int(request_id)
        + _int(non_repeaters)  # error-status in a GET, non-repeaters in a GETBULK
        + _int(max_repetitions)  # error-index / max-repetitions
        + _tlv(0x30, varbinds)
    )
    return _tlv(0x30, _int(_SNMP_V2C) + _tlv(OCTET_STRING, community) + _tlv(pdu, body))


# --- decoding -----------------------------------------------------------------------------


def _header(data: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    """Check the tag at ``pos``; return (start, stop) of its content inside [pos, end)."""
    if pos + 2 > end:
        raise BerError(f"{what}: message ends early")
    if data[pos] != tag:
        raise BerError(f"{what}: tag 0x{data[pos]:02x}, expected 0x{tag:02x}")
    length = data[pos + 1]
    pos += 2
    if length >= 0x80:
        n = length & 0x7F
        if n == 0 or n > 3 or pos + n > end:  # indefinite form, or longer than a datagram
            raise BerError(f"{what}: bad length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise BerError(f"{what}: runs past its container")
    return pos, pos + length


def _integer(data: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    start, stop = _header(data, pos, end, INTEGER, what)
    if start == stop:
        raise BerError(f"{what}: empty INTEGER")
    return int.from_bytes(data[start:stop], "big", signed=True), stop


def decode_response(data: bytes) -> Response:
    """One SNMPv2c Response message -> its fields; ``BerError`` for anything else."""
    end = len(data)
    # bytes after the message are ignored, as pysnmp ignores them; inside it, every length
    # must fill its container exactly
    pos, end = _header(data, 0, end, 0x30, "message")
    version, pos = _integer(data, pos, end, "version")
    if version != _SNMP_V2C:
        raise BerError(f"version {version} is not SNMPv2c")
    start, pos = _header(data, pos, end, OCTET_STRING, "community")
    community = data[start:pos]
    pos, pdu_end = _header(data, pos, end, RESPONSE, "PDU")
    if pdu_end != end:
        raise BerError("PDU: bytes after its end")
    request_id, pos = _integer(data, pos, end, "request-id")
    error_status, pos = _integer(data, pos, end, "error-status")
    error_index, pos = _integer(data, pos, end, "error-index")
    pos, list_end = _header(data, pos, end, 0x30, "varbind list")
    if list_end != end:
        raise BerError("varbind list: bytes after its end")
    return Response(
        request_id, community, error_status, error_index, _varbinds(data, pos, list_end)
    )


def _varbinds(data: bytes, pos: int, end: int) -> list[Varbind]:
    # The hot loop: the short length form is read inline, the rest through _header.
    out: list[Varbind] = []
    append = out.append
    while pos < end:
        if data[pos] == 0x30 and pos + 1 < end and data[pos + 1] < 0x80:
            vb_end = pos + 2 + data[pos + 1]
            pos += 2
            if vb_end > end:
                raise BerError("varbind: runs past its container")
        else:
            pos, vb_end = _header(data, pos, end, 0x30, "varbind")
        if pos + 1 < vb_end and data[pos] == OID and data[pos + 1] < 0x80:
            oid_end = pos + 2 + data[pos + 1]
            if oid_end > vb_end:
                raise BerError("varbind name: runs past its varbind")
            oid = data[pos + 2 : oid_end]
        else:
            start, oid_end = _header(data, pos, vb_end, OID, "varbind name")
            oid = data[start:oid_end]
        if not oid or oid[-1] & 0x80:
            raise BerError("varbind name: not a complete OID")
        pos = oid_end
        if pos + 1 >= vb_end:
            raise BerError("varbind value: missing")
        tag = data[pos]
        length = data[pos + 1]
        if length < 0x80:
            start = pos + 2
            stop = start + length
            if stop != vb_end:
                raise BerError("varbind value: length does not fill its varbind")
        else:
            start, stop = _header(data, pos, vb_end, tag, "varbind value")
            if stop != vb_end:
                raise BerError("varbind value: length does not fill its varbind")
        value: Value
        if tag == INTEGER:
            if start == stop:
                raise BerError("varbind value: empty INTEGER")
            value = int.from_bytes(data[start:stop], "big", signed=True)
        elif tag in _UNSIGNED:
            if start == stop:
                raise BerError("varbind value: empty integer")
            # unsigned by definition; a sloppy agent's missing 00 pad reads as net-snmp reads it
            value = int.from_bytes(data[start:stop], "big")
        elif tag in OCTET_TYPES:
            value = data[start:stop]
        elif tag in EXCEPTIONS:
            value = None
        elif tag == OID:
            content = data[start:stop]
            if not content or content[-1] & 0x80:
                raise BerError("varbind value: not a complete OID")
            value = oid_text(content)
        else:
            raise BerError(f"varbind value: unknown type 0x{tag:02x}")
        append((oid, tag, value))
        pos = vb_end
    return out


_ARC_TEXT = [str(i) for i in range(128)]


def oid_arcs(content: bytes, start: int = 0) -> list[int]:
    """Sub-identifiers of OID content octets from ``start`` (0: the first two arcs split)."""
    if max(content[start:], default=0) < 0x80:  # every arc below 128: the common case
        arcs = list(content[start:])
    else:
        arcs = []
        arc = 0
        fresh = True
        for byte in content[start:]:
            if fresh and byte == 0x80:
                raise BerError("OID: sub-identifier with a leading zero octet")
            arc = (arc << 7) | (byte & 0x7F)
            fresh = byte < 0x80
            if fresh:
                arcs.append(arc)
                arc = 0
        if not fresh:
            raise BerError("OID: last sub-identifier unfinished")
    if start == 0 and arcs:
        first = arcs[0]
        arcs[0:1] = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return arcs


def oid_text(content: bytes, start: int = 0) -> str:
    """OID content octets from ``start`` as dotted text ('1.3.6…', or an index '1.4')."""
    if start and max(content[start:], default=0) < 0x80:
        return ".".join([_ARC_TEXT[b] for b in content[start:]])
    return ".".join(map(str, oid_arcs(content, start)))
