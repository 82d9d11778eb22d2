"""Profiles: the shipped ones load and follow DESIGN.md; malformed files are refused by key."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from kuat.collectors.modbus import ProfileError, list_profiles, load_profile
from kuat.collectors.modbus.profile import FIELD_UNITS

from .conftest import FIXTURES

DESIGN_NAMES = {
    "schneider-pm5560",
    "schneider-iem3000",
    "siemens-pac3200",
    "siemens-pac4200",
    "janitza-umg96rm",
    "janitza-umg604",
    "abb-m4m",
    "socomec-diris",
    "gavazzi-em340",
    "eastron-sdm630",
    "sunspec",
}


def test_every_design_profile_ships_and_loads() -> None:
    assert set(list_profiles()) == DESIGN_NAMES
    for name in list_profiles():
        prof = load_profile(name)
        assert prof.name == name
        assert prof.registers
        assert {r.field for r in prof.registers} <= set(FIELD_UNITS)


def test_spine_profile_maps_every_field() -> None:
    prof = load_profile("schneider-pm5560")
    assert {r.field for r in prof.registers} == set(FIELD_UNITS)
    assert [r.label for r in prof.registers if not r.verified] == ["demand_kw"]


def test_pac4200_extends_pac3200() -> None:
    assert load_profile("siemens-pac4200").registers == load_profile("siemens-pac3200").registers


# quantity in the shared meter-map CSV -> (field, phase) in the profile
_PM5000 = {
    "current_a": ("i_a", 1),
    "current_b": ("i_a", 2),
    "current_c": ("i_a", 3),
    "voltage_ab": ("v_ll", 1),
    "voltage_bc": ("v_ll", 2),
    "voltage_ca": ("v_ll", 3),
    "voltage_an": ("v_ln", 1),
    "voltage_bn": ("v_ln", 2),
    "voltage_cn": ("v_ln", 3),
    "active_power_a": ("p_kw_phases", 1),
    "active_power_b": ("p_kw_phases", 2),
    "active_power_c": ("p_kw_phases", 3),
    "active_power_total": ("p_kw", None),
    "reactive_power_total": ("q_kvar", None),
    "apparent_power_total": ("s_kva", None),
    "power_factor_total": ("pf", None),
    "frequency": ("f_hz", None),
    "active_energy_delivered": ("import_kwh", None),
    "active_energy_received": ("export_kwh", None),
    "active_power_present_demand": ("demand_kw", None),
}
_SDM = {
    "voltage_l1n": ("v_ln", 1),
    "voltage_l2n": ("v_ln", 2),
    "voltage_l3n": ("v_ln", 3),
    "current_l1": ("i_a", 1),
    "current_l2": ("i_a", 2),
    "current_l3": ("i_a", 3),
    "active_power_l1": ("p_kw_phases", 1),
    "active_power_l2": ("p_kw_phases", 2),
    "active_power_l3": ("p_kw_phases", 3),
    "active_power_total": ("p_kw", None),
    "apparent_power_total": ("s_kva", None),
    "reactive_power_total": ("q_kvar", None),
    "power_factor_total": ("pf", None),
    "frequency": ("f_hz", None),
    "import_active_energy": ("import_kwh", None),
    "export_active_energy": ("export_kwh", None),
    "total_system_power_demand": ("demand_kw", None),
    "voltage_l1l2": ("v_ll", 1),
    "voltage_l2l3": ("v_ll", 2),
    "voltage_l3l1": ("v_ll", 3),
}
_PAC = {
    "voltage_l1n": ("v_ln", 1),
    "voltage_l2n": ("v_ln", 2),
    "voltage_l3n": ("v_ln", 3),
    "voltage_l1l2": ("v_ll", 1),
    "voltage_l2l3": ("v_ll", 2),
    "voltage_l3l1": ("v_ll", 3),
    "current_l1": ("i_a", 1),
    "current_l2": ("i_a", 2),
    "current_l3": ("i_a", 3),
    "active_power_l1": ("p_kw_phases", 1),
    "active_power_l2": ("p_kw_phases", 2),
    "active_power_l3": ("p_kw_phases", 3),
    "frequency": ("f_hz", None),
    "apparent_power_total": ("s_kva", None),
    "active_power_total": ("p_kw", None),
    "reactive_power_total": ("q_kvar", None),
    "power_factor_total": ("pf", None),
    "active_energy_import_t1": ("import_kwh", None),
    "active_energy_export_t1": ("export_kwh", None),
}


@pytest.mark.parametrize(
    ("profile", "csv_name", "mapping"),
    [
        ("schneider-pm5560", "schneider_pm5000.csv", _PM5000),
        ("eastron-sdm630", "eastron_sdm630.csv", _SDM),
        ("siemens-pac3200", "siemens_pac3200_4200.csv", _PAC),
    ],
)
def test_profiles_match_the_source_maps(profile: str, csv_name: str, mapping: dict) -> None:
    """Address, function code, type and unit of each row agree with the sourced CSV map."""
    text = (FIXTURES / "maps" / csv_name).read_text(encoding="utf-8")
    rows = {
        r["quantity"]: r
        for r in csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    }
    specs = {(r.field, r.phase): r for r in load_profile(profile).registers}
    for quantity, key in mapping.items():
        row, spec = rows[quantity], specs[key]
        assert spec.addr == int(row["addr"], 0), quantity
        assert spec.fc == int(row["fc"]), quantity
        assert row["type"].startswith(spec.type.value), quantity
        assert spec.unit.lower() == row["unit"].replace("-", "").lower(), quantity


GOOD = """
name = "my-meter"
[[registers]]
field = "p_kw"
addr = 10
type = "FLOAT32"
unit = "W"
"""

# (replace this, with that, the error must name this key)
MALFORMED = [
    ('name = "my-meter"', "", "name: missing"),
    ('field = "p_kw"', 'field = "power"', "registers[0].field"),
    ('type = "FLOAT32"', 'type = "FLOAT33"', "registers[0].type"),
    ('unit = "W"', 'unit = "V"', "registers[0].unit"),
    ('unit = "W"', 'unit = "watts"', "registers[0].unit"),
    ("addr = 10", 'addr = "10"', "registers[0].addr"),
    ("addr = 10", "addr = 65535", "registers[0].addr"),
    ("addr = 10", "", "registers[0].addr: missing"),
    ('unit = "W"', 'unit = "W"\nphase = 2', "registers[0].phase"),
    ('unit = "W"', 'unit = "W"\nfc = 6', "registers[0].fc"),
    ('unit = "W"', 'unit = "W"\nscale = 0', "registers[0].scale"),
    ('unit = "W"', 'unit = "W"\nword_order = "ABDC"', "registers[0].word_order"),
    ('unit = "W"', 'unit = "W"\ncolour = "red"', "registers[0].colour"),
    ('unit = "W"', 'unit = "W"\ntransform = "magic"', "registers[0].transform"),
    ('unit = "W"', 'unit = "W"\nverified = "yes"', "registers[0].verified"),
    ('name = "my-meter"', 'name = "my-meter"\nmax_count = 200', "max_count"),
    ('name = "my-meter"', 'name = "my-meter"\nextends = "nope"', "extends"),
    ('name = "my-meter"', 'name = "my-meter"\nword_order = 1', "word_order"),
    ("[[registers]]", "[registers]", "registers"),
    ("[[registers]]", "[[registers]", "not valid TOML"),
]


@pytest.mark.parametrize(("old", "new", "key"), MALFORMED)
def test_malformed_profile_is_refused_naming_file_and_key(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    assert old in GOOD
    path = tmp_path / "bad-meter.toml"
    path.write_text(GOOD.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    assert str(path) in str(err.value)
    assert key in str(err.value)


def test_duplicate_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.toml"
    path.write_text(GOOD + GOOD.split("\n", 2)[2], encoding="utf-8")
    with pytest.raises(ProfileError, match=r"registers\[1\].*already fed"):
        load_profile(str(path))


def test_user_profile_file_and_extends(tmp_path: Path) -> None:
    path = tmp_path / "pm5560-no-demand.toml"
    path.write_text(
        'name = "pm5560-site"\nextends = "schneider-pm5560"\n'
        '[[registers]]\nfield = "demand_kw"\naddr = 3763\ntype = "FLOAT32"\nunit = "kW"\n',
        encoding="utf-8",
    )
    prof = load_profile(str(path))
    assert prof.name == "pm5560-site"
    assert {r.field: r.addr for r in prof.registers}["demand_kw"] == 3763
    assert len(prof.registers) == len(load_profile("schneider-pm5560").registers)
    p_kw = next(r for r in prof.registers if r.field == "p_kw")
    assert p_kw.factor == 1.0


def test_unit_conversion_factors() -> None:
    specs = {(r.field, r.phase): r for r in load_profile("eastron-sdm630").registers}
    assert specs[("p_kw", None)].factor == pytest.approx(1e-3)  # W -> kW
    prof = {(r.field, r.phase): r for r in load_profile("schneider-pm5560").registers}
    assert prof[("import_kwh", None)].factor == pytest.approx(1e-3)  # Wh -> kWh
    abb = {(r.field, r.phase): r for r in load_profile("abb-m4m").registers}
    assert abb[("p_kw", None)].factor == pytest.approx(1e-5)  # 0.01 W -> kW


def test_unknown_name_and_missing_file() -> None:
    with pytest.raises(ProfileError, match=r"unknown meter profile 'acme-9000'.*schneider-pm5560"):
        load_profile("acme-9000")
    with pytest.raises(ProfileError, match=r"nowhere/x\.toml: cannot read"):
        load_profile("nowhere/x.toml")
