"""One identity everywhere: the register, the telemetry ``device`` tag and the item-7 offenders
name a MAC-identified miner the same way (lower case, ``:``-separated), whatever case its
firmware writes the MAC in."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from kuat.collectors.cgminer.client import decode_reply
from kuat.collectors.cgminer.parsers import parse_replies
from kuat.collectors.readings import normal_mac
from kuat.quota.pools import check_pools
from kuat.uplink.inventory import build_snapshot
from kuat.uplink.lineproto import encode_asic

CASES = Path(__file__).parents[2] / "cases" / "asic"
T = datetime(2026, 1, 15, 6, 0, tzinfo=UTC)


def test_whatsminer_upper_case_mac_is_one_identity_in_register_telemetry_and_offenders() -> None:
    # btminer writes "C6:06:12:00:2D:63"; the register has always lower-cased it
    body = decode_reply((CASES / "whatsminer/m31s-summary/summary.json").read_bytes())
    assert body["SUMMARY"][0]["MAC"] == "C6:06:12:00:2D:63"
    pools = {
        "STATUS": [{"STATUS": "S"}],
        "POOLS": [{"URL": "stratum+tcp://pool.elsewhere.example:3333", "Status": "Alive",
                   "Stratum Active": True, "Priority": 0, "User": "w"}],
    }  # fmt: skip
    r = parse_replies("10.1.2.3", 4028, T, {"summary": body, "pools": pools}, "whatsminer")
    assert r is not None and r.serial is None

    register_id = next(iter(build_snapshot([r], site="s", owner_bin="1", now=T).miners))
    (line,) = encode_asic(r, "s")
    tag = line.split(",device=", 1)[1].split(",", 1)[0]
    offenders = check_pools([r], ["pool.kz.example"], data_centre_registered=True).offenders

    assert register_id == tag == offenders[0].device_id == "c6:06:12:00:2d:63"


def test_normal_mac() -> None:
    assert normal_mac(" AA-BB-CC-DD-EE-0F ") == "aa:bb:cc:dd:ee:0f"
    assert normal_mac("") is None and normal_mac(None) is None


def test_an_address_id_is_one_string_object() -> None:
    # every holder of an address-identified miner's id (curtailer, pool check, inventory)
    # shares one string rather than keeping a copy each
    from kuat.collectors.readings import AsicReading

    a = AsicReading("10.1.2.3", 4028, T)
    b = AsicReading("10.1.2.3", 4028, T)
    assert a.device_id == "10.1.2.3:4028"
    assert a.device_id is b.device_id
