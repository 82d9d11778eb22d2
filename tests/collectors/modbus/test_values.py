"""Every register of every shipped profile: value → words → value, within the register's step."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kuat.collectors.modbus import list_profiles, load_profile
from kuat.collectors.modbus.decode import RegType
from kuat.collectors.modbus.profile import RegisterSpec
from kuat.collectors.modbus.values import (
    RAW_LIMITS,
    BadValue,
    choose_sunssf,
    encode_field,
    reading_fields,
    register_value,
)

SPECS = [(name, spec) for name in list_profiles() for spec in load_profile(name).registers]

_RANGE = {  # modest, realistic magnitudes per field, in the field's unit
    "p_kw": (-5e4, 5e4),
    "p_kw_phases": (-2e4, 2e4),
    "q_kvar": (-5e3, 5e3),
    "s_kva": (0, 5e4),
    "demand_kw": (0, 5e4),
    "v_ln": (0, 3e4),
    "v_ll": (0, 5e4),
    "i_a": (0, 3e3),
    "pf": (-1, 1),
    "f_hz": (45, 65),
    "import_kwh": (0, 2e5),
    "export_kwh": (0, 2e5),
}


def _words_of(spec: RegisterSpec, value: float | None, sf: int = 0) -> dict:
    words = {(spec.fc, spec.addr + i): w for i, w in enumerate(encode_field(spec, value, sf))}
    if spec.scale_addr is not None:
        words[(spec.fc, spec.scale_addr)] = sf & 0xFFFF
    return words


@pytest.mark.parametrize(("profile", "spec"), SPECS, ids=lambda x: getattr(x, "label", x))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_round_trip_within_one_step(profile: str, spec: RegisterSpec, data: st.DataObject):
    lo, hi = _RANGE[spec.field]
    if spec.type in (RegType.UINT16, RegType.UINT32, RegType.UINT64):
        lo = max(lo, 0)
    if spec.scale_addr is None and spec.type in RAW_LIMITS:  # e.g. ABB: INT32 of 0.01 W ≤ 21 MW
        hi = min(hi, RAW_LIMITS[spec.type] * spec.factor * 0.999)
        lo = max(lo, -hi)
    value = data.draw(st.floats(lo, hi))
    sf = choose_sunssf([value], [spec]) if spec.scale_addr is not None else 0
    got = register_value(spec, _words_of(spec, value, sf))
    assert got is not None
    if spec.type in (RegType.FLOAT32,):
        assert got == pytest.approx(value, rel=1e-6, abs=1e-6)
    elif spec.type is RegType.FLOAT64:
        assert got == pytest.approx(value, rel=1e-13, abs=1e-12)
    else:
        step = abs(spec.factor) * 10.0**sf
        assert abs(got - value) <= step / 2 + 1e-9 * max(1.0, abs(value))


@pytest.mark.parametrize(("profile", "spec"), SPECS, ids=lambda x: getattr(x, "label", x))
def test_not_available_reads_as_none(profile: str, spec: RegisterSpec) -> None:
    if spec.type in (RegType.FLOAT32, RegType.FLOAT64) or spec.invalid:
        assert register_value(spec, _words_of(spec, None)) is None
    assert register_value(spec, {}) is None  # register missing (exception 2)


def test_out_of_range_is_a_bad_value() -> None:
    spec = next(r for r in load_profile("schneider-pm5560").registers if r.field == "f_hz")
    with pytest.raises(BadValue, match=r"register 3109 \(f_hz\) reads 5000 Hz"):
        register_value(spec, _words_of(spec, 5000.0))


def test_reading_fields_builds_triples_with_gaps() -> None:
    prof = load_profile("janitza-umg604")
    fields = reading_fields(prof, {})
    assert fields["v_ln"] == (None, None, None)
    assert fields["p_kw"] is None
