"""Profiles as data: parsing, validation, auto-detection and table assembly (no sockets)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuat.collectors.snmp import list_profiles
from kuat.collectors.snmp.collector import PollFailed, SnmpAuth, build_reading
from kuat.collectors.snmp.profile import (
    ProfileError,
    builtin_profiles,
    detect_profile,
    load_profile_file,
    parse_profile,
    resolve_profile,
)
from kuat.collectors.snmp.sim import RECORDINGS_DIR

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_builtin_profiles_are_the_design_names() -> None:
    assert list_profiles() == ["apc", "eaton", "raritan", "sentry4", "vertiv"]
    for profile in builtin_profiles().values():
        assert profile.sys_object_ids and profile.columns()
        assert any(s.required for s in profile.sections.values())


@pytest.mark.parametrize(
    ("recording", "name"),
    [
        ("apc_apdu9959eu3", "apc"),
        ("raritan-pdu_px3", "raritan"),
        ("sentry4", "sentry4"),
        ("eatonpdu_2", "eaton"),
    ],
)
def test_detect_from_the_recorded_sys_object_id(recording: str, name: str) -> None:
    lines = (RECORDINGS_DIR / f"{recording}.snmprec").read_text().splitlines()
    sys_oid = next(v for o, _, v in (x.split("|", 2) for x in lines) if o == "1.3.6.1.2.1.1.2.0")
    detected = detect_profile(sys_oid)
    assert detected is not None and detected.name == name


def test_detect_needs_a_whole_arc() -> None:
    assert detect_profile("1.3.6.1.4.1.3180.1") is None  # not APC's 318
    assert detect_profile("1.3.6.1.4.1.9.1.1") is None


def test_every_recording_ships_with_its_source_note() -> None:
    for rec in RECORDINGS_DIR.glob("*.snmprec"):
        assert rec.with_name(rec.name + ".src.txt").is_file()


def _parse(text: str) -> object:
    import tomllib

    return parse_profile(tomllib.loads(text), "test.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('vendor = "x"', "missing string key 'name'"),
        ('name = "x"\nvendor = "x"\nbogus = 1', "unknown keys ['bogus']"),
        ('name = "x"\nvendor = "x"\n[phases]\nvolts = "1.3.x"', "is not a numeric OID"),
        ('name = "x"\nvendor = "x"\n[phases]\nwatt = "1.3.6"', "unknown field 'watt'"),
        ('name = "x"\nvendor = "x"\n[phases]\nvolts = { oid = "1.3", divisor = 0 }', "divisor"),
        ('name = "x"\nvendor = "x"\n[outlets]\nindex = { from_index = "last" }', "no column"),
        ('name = "x"\nvendor = "x"\n[total_watts]\nsum = "inlets"', "no section 'inlets'"),
        (
            'name = "x"\nvendor = "x"\n[outlets]\nstate = { oid = "1.3", map = { 3 = "wait" } }',
            "values must be",
        ),
    ],
)
def test_bad_profiles_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message.replace("[", r"\[").replace("(", r"\(")):
        _parse(text)


def test_profile_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = ", encoding="utf-8")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile_file(bad)
    with pytest.raises(ProfileError, match="unknown profile 'geist'"):
        resolve_profile("geist")


def test_suffix_decimals_missing_and_map() -> None:
    profile = _parse(
        """
name = "t"
vendor = "T"
[identity]
model = ["9.9", "9.8"]
[inlets]
required = true
id = { oid = ["1.1", "1.2"] }
amps = { oid = "2.1", suffix = "1", decimals = "3.1" }
watts = { oid = "2.1", suffix = "5", missing = [-1] }
[outlets]
index = { from_index = "last" }
state = { oid = "4.1", map = { 7 = "on", 8 = "off" } }
[total_watts]
sum = "inlets"
"""
    )
    walks = {
        "1.1": {"1.1": None, "1.2": "I2"},
        "1.2": {"1.1": "label-1", "1.2": "ignored"},
        "2.1": {"1.1.1": 7467, "1.1.5": 1665, "1.2.1": 12, "1.2.5": -1},
        "3.1": {"1.1.1": 3, "1.1.5": 0, "1.2.1": 1},
        "4.1": {"1.1": 7, "1.2": 8, "1.3": 99},
    }
    r = build_reading("h", profile, {"9.8": "M"}, walks, T0)  # type: ignore[arg-type]
    assert r.model == "M" and r.serial is None and r.vendor == "T"
    assert [(i.id, i.amps, i.watts) for i in r.inlets] == [
        ("label-1", 7.467, 1665),
        ("I2", 1.2, None),
    ]
    assert r.total_watts is None  # one inlet's watts unknown: the sum is unknown
    assert [(o.index, o.state) for o in r.outlets] == [(1, "on"), (2, "off"), (3, None)]


def test_required_section_without_rows_fails() -> None:
    profile = resolve_profile("apc")
    with pytest.raises(PollFailed, match=r"apc profile: no inlets rows \(walked 1\.3\.6"):
        build_reading("h", profile, {}, {}, T0)


@given(raw=st.integers(min_value=-(2**31), max_value=2**32 - 1))
def test_scaling_is_exact_to_the_digit(raw: int) -> None:
    profile = _parse('name = "t"\nvendor = "T"\n[phases]\namps = { oid = "1.1", divisor = 10 }')
    r = build_reading("h", profile, {}, {"1.1": {"1": raw}}, T0)  # type: ignore[arg-type]
    assert r.phases[0].amps == raw / 10
    assert str(r.phases[0].amps) == str(raw / 10)


def test_auth_repr_and_validation_keep_secrets() -> None:
    auth = SnmpAuth(community="s3cret", v3_user="u", v3_auth_key="k" * 8, v3_priv_key="p" * 8)
    text = repr(auth)
    assert "s3cret" not in text and "kkkkkkkk" not in text and "pppppppp" not in text
    assert "'u'" in text
    assert SnmpAuth().problem() == "no SNMP community and no SNMPv3 user given"
    assert "authPriv" in (SnmpAuth(v3_user="u", v3_auth_key="k" * 8).problem() or "")
    bad_proto = SnmpAuth(v3_user="u", v3_auth_key="k" * 8, v3_priv_key="p" * 8, v3_priv_proto="X")
    assert bad_proto.problem() == "unknown SNMPv3 priv protocol 'X'"
