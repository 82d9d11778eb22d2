"""Register words → reading field values (and back, for the simulator), pure.

A value the meter marks as unavailable (float NaN, a profile's ``invalid`` sentinel, a missing
register) becomes ``None``. A value that decodes but cannot be physical (a float32 of 3e38 kW,
a power factor of 7) is a *bad value*: the reading is refused rather than passed on, because
the quota engine would act on it.
"""

from __future__ import annotations

import math
from typing import Any

from kuat.collectors.errors import KuatError
from kuat.collectors.modbus.decode import RegType, decode, encode, raw_unsigned
from kuat.collectors.modbus.profile import FIELD_UNITS, TRIPLE_FIELDS, MeterProfile, RegisterSpec

Words = dict[tuple[int, int], int]  # (fc, address) -> register word

# Plausible magnitudes in the field's unit. Generous (a 110 kV substation meter reports
# primary-side values), only meant to catch garbage such as a wrong word order.
_LIMITS: dict[str, tuple[float, float]] = {
    "p_kw": (-1e7, 1e7),
    "p_kw_phases": (-1e7, 1e7),
    "q_kvar": (-1e7, 1e7),
    "s_kva": (-1e7, 1e7),
    "demand_kw": (-1e7, 1e7),
    "v_ln": (0.0, 1e6),
    "v_ll": (0.0, 1e6),
    "i_a": (-1e6, 1e6),
    "pf": (-1.0001, 1.0001),
    "f_hz": (0.0, 1000.0),
    "import_kwh": (0.0, 1e13),
    "export_kwh": (0.0, 1e13),
}

_SUNSSF_NA = -32768


class BadValue(KuatError, ValueError):
    """A register decoded to something that cannot be a measurement; message names it."""


def _words(words: Words, fc: int, addr: int, count: int) -> list[int] | None:
    out = []
    for a in range(addr, addr + count):
        w = words.get((fc, a))
        if w is None:
            return None
        out.append(w)
    return out


def _pf4q(x: float) -> float:
    # Schneider packs the quadrant into the PF: (1, 2) is leading with +P, (-2, -1) leading
    # with -P. Unfolding gives the signed IEC PF (sign = direction of active power).
    if x > 1.0:
        return 2.0 - x
    if x < -1.0:
        return -2.0 - x
    return x


def register_value(spec: RegisterSpec, words: Words) -> float | None:
    """The field value one register feeds, in the field's unit, or None if not available."""
    regs = _words(words, spec.fc, spec.addr, spec.count)
    if regs is None:
        return None
    raw = decode(regs, spec.type, spec.word_order)
    if isinstance(raw, float):
        if math.isnan(raw):
            return None
        if math.isinf(raw):
            raise BadValue(f"register {spec.addr} ({spec.label}) is {raw}")
    elif spec.invalid and (
        raw in spec.invalid or raw_unsigned(regs, spec.word_order) in spec.invalid
    ):
        return None
    value = float(raw) * spec.factor
    if spec.scale_addr is not None:
        sf_words = _words(words, spec.fc, spec.scale_addr, 1)
        if sf_words is None:
            return None
        sf = int(decode(sf_words, RegType.INT16, spec.word_order))
        if sf == _SUNSSF_NA:
            return None
        if not -10 <= sf <= 10:
            raise BadValue(f"scale register {spec.scale_addr} for {spec.label} is {sf}")
        value *= 10.0**sf
    if spec.transform == "pf4q":
        value = _pf4q(value)
    lo, hi = _LIMITS[spec.field]
    if not lo <= value <= hi:
        unit = FIELD_UNITS[spec.field]
        raise BadValue(
            f"register {spec.addr} ({spec.label}) reads {value:.6g}{' ' + unit if unit else ''}, "
            f"outside {lo:g}..{hi:g}"
        )
    if spec.field == "pf":
        value = max(-1.0, min(1.0, value))
    # 0.1 * 2301 is 230.10000000000002 in binary; 15 digits is far beyond any meter's accuracy
    return float(f"{value:.15g}")


def reading_fields(profile: MeterProfile, words: Words) -> dict[str, Any]:
    """Keyword arguments for ``MeterReading`` (measurement fields only)."""
    out: dict[str, Any] = {}
    triples: dict[str, list[float | None]] = {}
    for spec in profile.registers:
        value = register_value(spec, words)
        if spec.phase is None:
            out[spec.field] = value
        else:
            triples.setdefault(spec.field, [None, None, None])[spec.phase - 1] = value
    for name, values in triples.items():
        out[name] = tuple(values)
    return out


def check_expects(profile: MeterProfile, words: Words) -> str | None:
    """A one-line mismatch if the meter does not carry the profile's identification words."""
    for e in profile.expects:
        got = _words(words, e.fc, e.addr, len(e.words))
        if got is None:
            return f"identification register {e.addr} (FC{e.fc}) is not readable"
        for i, (w, allowed) in enumerate(zip(got, e.words, strict=True)):
            if w not in allowed:
                want = " or ".join(f"0x{a:04X}" for a in sorted(allowed))
                return (
                    f"register {e.addr + i} holds 0x{w:04X}, expected {want}: "
                    f"not a {profile.name} meter at this address"
                )
    return None


# --- the other direction, for the simulator ---------------------------------------------------


#: largest raw magnitude each integer type holds (for choosing SunSpec scale factors)
RAW_LIMITS = {
    RegType.INT16: 0x7FFF,
    RegType.UINT16: 0xFFFF,
    RegType.INT32: 0x7FFFFFFF,
    RegType.UINT32: 0xFFFFFFFF,
    RegType.INT64: 2**63 - 1,
    RegType.UINT64: 2**64 - 1,
}


def choose_sunssf(values: list[float], specs: list[RegisterSpec]) -> int:
    """Smallest power of ten (>= -3) at which every value fits its register (SunSpec SF)."""
    for sf in range(-3, 11):
        if all(
            abs(v / s.factor / 10.0**sf) <= RAW_LIMITS.get(s.type, 2**53)
            for v, s in zip(values, specs, strict=True)
        ):
            return sf
    return 10


def encode_field(spec: RegisterSpec, value: float | None, sf: int = 0) -> list[int]:
    """Registers that make ``register_value`` return ``value`` (None → "not available")."""
    if value is None:
        if spec.type in (RegType.FLOAT32, RegType.FLOAT64):
            return encode(math.nan, spec.type, spec.word_order)
        if spec.invalid:
            sentinel = min(spec.invalid)
            bits = 16 * spec.count
            return encode(
                sentinel - (1 << bits)
                if sentinel >= 1 << (bits - 1) and spec.type.startswith("INT")
                else sentinel,
                spec.type,
                spec.word_order,
            )
        value = 0.0
    raw = value / spec.factor / 10.0**sf
    return encode(raw, spec.type, spec.word_order)


__all__ = [
    "TRIPLE_FIELDS",
    "BadValue",
    "Words",
    "check_expects",
    "choose_sunssf",
    "encode_field",
    "reading_fields",
    "register_value",
]
