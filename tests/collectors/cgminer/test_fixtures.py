"""The real replies in tests/fixtures/asic parse to the values a person reads in them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kuat.collectors.cgminer.client import ApiError, decode_reply
from kuat.collectors.cgminer.firmware.braiins import fields_from_rest_miner_stats
from kuat.collectors.cgminer.firmware.whatsminer import fields_from_v3_device_info
from kuat.collectors.cgminer.parsers import detect_family, parse_replies
from kuat.collectors.readings import AsicReading, AsicTemps

FIX = Path(__file__).parents[2] / "fixtures" / "asic"
T = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)


def load(name: str) -> dict:
    return decode_reply((FIX / name).read_bytes())


def reading(bodies: dict, family: str | None = None) -> AsicReading:
    r = parse_replies("10.1.2.3", 4028, T, bodies, family)
    assert r is not None
    return r


def test_every_fixture_has_its_source_note() -> None:
    replies = sorted(p for p in FIX.glob("*.json"))
    assert len(replies) >= 6
    for p in replies:
        assert (FIX / (p.name + ".src.txt")).is_file(), p.name


def test_l3plus_glued_stats_is_repaired_and_read() -> None:
    raw = (FIX / "antminer-l3plus-stats-raw.json").read_bytes()
    with pytest.raises(ValueError) as strict:
        json.loads(raw)
    assert "char 220" in str(strict.value)  # the quirk the note describes
    body = decode_reply(raw)
    assert detect_family({"stats": body}) == "bitmain"
    r = reading({"stats": body})
    assert r.model == "Antminer L3+"
    assert r.vendor == "Bitmain" and r.firmware_family == "bitmain"
    # "GHS 5s": "504.56" on an L3+ is 504.56 MH/s (Scrypt), a string in the reply
    assert r.hashrate_ths == pytest.approx(504.56e-6)
    assert r.temps_c == AsicTemps(board=(46, 46, 46, 45), chip=(54, 56, 56, 53))
    assert r.fans_rpm == (3840, 3810)
    assert r.uptime_s == 393983
    assert r.firmware == "Fri Aug 25 17:28:57 CST 2017"
    assert r.power_w is None and r.serial is None and r.mac is None
    assert r.state == "mining"


def test_s19pro_stats() -> None:
    r = reading({"stats": load("antminer-s19pro-stats.json")})
    assert r.model == "Antminer S19 Pro"
    assert r.hashrate_ths == pytest.approx(110.567, abs=1e-3)  # GHS 5s 110566.89
    assert r.hashrate_nominal_ths == pytest.approx(110.0)  # total_rateideal 110000 GH
    # per chain, hottest of the "a-b-c-d" sensors; chain 4 "0-0-0-0" is an empty slot
    assert r.temps_c.board == (73, 66, 64)
    assert r.temps_c.chip == (78, 71, 69)
    assert r.fans_rpm == (6000, 5880, 5040, 5040)
    assert r.uptime_s == 50474
    assert r.power_w is None  # stock API has no watts: unknown, never 0
    assert r.firmware == "Tue Dec  6 16:12:30 CST 2022"


def test_whatsminer_m31s_summary() -> None:
    body = load("whatsminer-m31s-summary.json")
    assert detect_family({"summary": body}) == "whatsminer"
    r = reading({"summary": body})
    assert r.vendor == "MicroBT"
    assert r.mac == "C6:06:12:00:2D:63"
    assert r.firmware == "20201202.22.REL"  # the literal quotes in the value are stripped
    assert r.hashrate_ths == pytest.approx(77.9094, abs=1e-3)  # MHS 1m
    assert r.hashrate_nominal_ths == pytest.approx(75.697)  # Factory GHS
    assert r.power_w == 3553
    assert r.power_limit_w == 3600
    assert r.temps_c == AsicTemps(board=(72.0,), chip=(93.0,), inlet=(7.0,))
    assert r.fans_rpm == (5700, 0)
    assert r.uptime_s == 33102
    assert "miner error code 110" in r.errors
    assert r.model is None and r.serial is None  # not in summary
    assert r.state == "mining"


def test_luxos_config_and_power() -> None:
    config = load("luxos-s19kpro-config.json")
    # the matching 'power' reply, as quoted in luxos-s19kpro-config.json.src.txt
    power = {
        "POWER": [{"PSU": False, "Watts": 1051}],
        "STATUS": [{"Code": 311, "Msg": "Power usage", "STATUS": "S"}],
        "id": 1,
    }
    assert detect_family({"config": config}) == "luxos"
    r = reading({"config": config, "power": power}, "luxos")
    assert r.serial == "JYZZB0UBDJABF06RB"
    assert r.mac == "62:F7:5E:B7:10:46"
    assert r.model == "Antminer S19k Pro"
    assert r.hashrate_nominal_ths == pytest.approx(121.8)
    assert r.firmware == "2025.4.8.220305-57b389c7"
    assert r.power_w == 1051
    assert r.device_id == "JYZZB0UBDJABF06RB"


def test_braiins_rest_miner_stats() -> None:
    f = fields_from_rest_miner_stats(load("braiins-s19xp-miner_stats.json"))
    assert f["power_w"] == 3137
    assert f["hashrate_ths"] == pytest.approx(141.4636, abs=1e-3)
    assert f["hashrate_nominal_ths"] == pytest.approx(142.8766, abs=1e-3)


def test_whatsminer_v3_device_info() -> None:
    f = fields_from_v3_device_info(load("whatsminer-m60s-get.device.info.json"))
    assert f == {
        "vendor": "MicroBT",
        "model": "Whatsminer M60S_VK40",
        "serial": "BTM3CS40HD24083100000000000000000",
        "mac": "CE:02:01:00:8C:36",
        "firmware": "20251209.16.Rel2",
    }


def test_not_reported_is_none_not_zero() -> None:
    r = reading({"stats": load("antminer-s19pro-stats.json")})
    for name in ("power_w", "power_limit_w", "serial", "mac"):
        assert getattr(r, name) is None


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        (b'{"a":1}\x00', {"a": 1}),
        (b'{"a":1}\x00\x00garbage', {"a": 1}),
        (b'{"a":nan,"b":inf,"c":-Infinity}', {"a": None, "b": None, "c": None}),
        (b'{"a":[1,2,],"b":{"c":1,},}', {"a": [1, 2], "b": {"c": 1}}),
        (b'{"STATS":[{"a":1}{"b":2}]}', {"STATS": [{"a": 1}, {"b": 2}]}),
        (b'{"summary":[{}]}{"stats":[{}]}', {"summary": [{}], "stats": [{}]}),
    ],
)
def test_decode_quirks(raw: bytes, expect: dict) -> None:
    assert decode_reply(raw) == expect


@pytest.mark.parametrize(
    ("raw", "cause"),
    [
        (b"", "reply is empty"),
        (b"\x00", "reply is empty"),
        (b"<html>502</html>", "reply is not JSON at byte 0"),
        (b'{"STATUS":[{"STATUS":"S"}], "x": tru}', "reply is not JSON at byte 33"),
        (b"[1,2]", "reply is JSON but a list, not an object"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_decode_errors_are_one_line(raw: bytes, cause: str) -> None:
    with pytest.raises(ApiError) as e:
        decode_reply(raw)
    assert cause in str(e.value)
    assert "\n" not in str(e.value)


def test_avalon_mm_id_brackets() -> None:
    # Synthetic, in the layout of A-series firmware that reports WALLPOWER (the real captures,
    # without it, are in test_avalon.py).
    mm = (
        "Ver[1246-83-21042601_4ec6bb0_211fc83] DNA[020100008c1ed5ea] Elapsed[1363] "
        "Temp[27] TMax[85] TAvg[77] Fan1[5040] Fan2[5100] Fan3[5070] Fan4[5070] FanR[71%] "
        "GHSspd[84328.45] GHSmm[86312.00] GHSavg[83110.57] WALLPOWER[3369] MPO[3400] "
        "PS[0 1209 1257 31 396 1257 1343] SoftOFF[0] WORKMODE[1]"
    )
    bodies = {
        "version": {
            "STATUS": [{"STATUS": "S", "Msg": "CGMiner versions", "Description": "cgminer 4.11.1"}],
            "VERSION": [
                {
                    "CGMiner": "4.11.1",
                    "PROD": "AvalonMiner 1246",
                    "MODEL": "1246",
                    "MAC": "b4a2eb350ec6",
                }
            ],
        },
        "stats": {
            "STATUS": [{"STATUS": "S"}],
            "STATS": [{"STATS": 0, "ID": "AVA100", "MM ID0": mm}],
        },
    }
    assert detect_family(bodies) == "avalon"
    r = reading(bodies)
    assert r.vendor == "Canaan" and r.model == "AvalonMiner 1246"
    assert r.mac == "B4:A2:EB:35:0E:C6"
    assert r.hashrate_ths == pytest.approx(84.32845)  # GHSspd, not GHSmm (the expected max)
    assert r.hashrate_nominal_ths == pytest.approx(90.0)  # from the model table
    assert r.power_w == 3369 and r.power_limit_w == 3400
    assert r.temps_c == AsicTemps(chip=(85.0,), inlet=(27.0,))  # WALLPOWER wins over PS[4]
    assert r.fans_rpm == (5040, 5100, 5070, 5070)
    assert r.firmware == "1246-83-21042601_4ec6bb0_211fc83"
    assert r.state == "mining"
