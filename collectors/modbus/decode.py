"""Register words ⇄ numbers, pure.

Modbus only defines 16-bit words; every meter maker picks its own way of packing wider
numbers into them. ``ABCD`` is the natural big-endian order (high word first, high byte
first) that Schneider, Siemens, Janitza and Eastron use; ``CDAB`` (low word first) is what
Carlo Gavazzi uses; the byte-swapped ``BADC``/``DCBA`` show up behind some gateways.
"""

from __future__ import annotations

import math
import struct
from enum import StrEnum


class RegType(StrEnum):
    INT16 = "INT16"
    UINT16 = "UINT16"
    INT32 = "INT32"
    UINT32 = "UINT32"
    INT64 = "INT64"
    UINT64 = "UINT64"
    FLOAT32 = "FLOAT32"
    FLOAT64 = "FLOAT64"


class WordOrder(StrEnum):
    ABCD = "ABCD"  # high word first, big-endian bytes
    CDAB = "CDAB"  # low word first, big-endian bytes
    BADC = "BADC"  # high word first, bytes swapped inside each word
    DCBA = "DCBA"  # fully little-endian


_STRUCT: dict[RegType, tuple[str, int]] = {
    RegType.INT16: ("h", 1),
    RegType.UINT16: ("H", 1),
    RegType.INT32: ("i", 2),
    RegType.UINT32: ("I", 2),
    RegType.INT64: ("q", 4),
    RegType.UINT64: ("Q", 4),
    RegType.FLOAT32: ("f", 2),
    RegType.FLOAT64: ("d", 4),
}


def width(reg_type: RegType) -> int:
    """Number of 16-bit registers the type occupies."""
    return _STRUCT[reg_type][1]


def _to_wire(words: list[int] | tuple[int, ...], order: WordOrder) -> bytes:
    """Reorder words as read off the wire into one big-endian byte string."""
    if order in (WordOrder.CDAB, WordOrder.DCBA):
        words = list(reversed(words))
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    if order in (WordOrder.BADC, WordOrder.DCBA):
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    return raw


def _from_wire(raw: bytes, order: WordOrder) -> list[int]:
    """Inverse of ``_to_wire``: big-endian bytes to the words a device would put on the wire."""
    if order in (WordOrder.BADC, WordOrder.DCBA):
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if order in (WordOrder.CDAB, WordOrder.DCBA):
        words.reverse()
    return words


def decode(words: list[int] | tuple[int, ...], reg_type: RegType, order: WordOrder) -> int | float:
    """Decode one value. Floats may come back NaN/inf; the caller decides what that means.

    Raises ``ValueError`` (only) for the wrong number of words or a word outside 0..0xFFFF.
    """
    fmt, n = _STRUCT[reg_type]
    if len(words) != n:
        raise ValueError(f"{reg_type} needs {n} registers, got {len(words)}")
    for w in words:
        # A register is 16 bits; anything else is a caller's bug, refused as documented.
        if not (isinstance(w, int) and 0 <= w <= 0xFFFF):
            raise ValueError(f"register word {w!r} is not a 16-bit value")
    wire = _to_wire(words, order)
    value = struct.unpack(">" + fmt, wire)[0]
    if reg_type is RegType.FLOAT32 and math.isfinite(value):
        value = _shortest_float32(value, wire)
    return value


def _shortest_float32(value: float, wire: bytes) -> float:
    """The shortest decimal that is the same float32: 230.1, not 230.10000610351562.

    A meter holding 230.1 V in a float32 means 230.1; the widened binary tail is noise that
    would otherwise end up in the database and the probe JSON.
    """
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack(">f", candidate) == wire:
            return candidate
    return value


def raw_unsigned(words: list[int] | tuple[int, ...], order: WordOrder) -> int:
    """The words as one unsigned integer, for comparing against "not available" sentinels."""
    return int.from_bytes(_to_wire(words, order), "big")


def encode(value: int | float, reg_type: RegType, order: WordOrder) -> list[int]:
    """Encode one value into registers (used by the simulator and by round-trip tests)."""
    fmt, _ = _STRUCT[reg_type]
    if fmt not in "fd":
        value = round(value)
    return _from_wire(struct.pack(">" + fmt, value), order)


def is_nan(value: int | float) -> bool:
    return isinstance(value, float) and math.isnan(value)
