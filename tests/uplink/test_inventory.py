from __future__ import annotations

import itertools
import json
import os
import resource
import signal
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuat.collectors.readings import AsicReading, PoolInfo
from kuat.uplink.inventory import (
    Location,
    Snapshot,
    build_snapshot,
    diff,
    snapshot_from_payload,
    snapshot_json,
    snapshot_json_parts,
    snapshot_payload,
)
from kuat.uplink.spool import FilePayload
from tests.uplink.schema_check import validate

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OWNER = "230140000001"


def miner(
    serial: str | None, ip: str, *, mac: str | None = None, t: datetime = T0, **kw: object
) -> AsicReading:
    base: dict = dict(
        ip=ip,
        port=4028,
        taken_at=t,
        vendor="Bitmain",
        model="S21",
        serial=serial,
        mac=mac,
        firmware="2025.01",
        hashrate_nominal_ths=200.0,
        power_limit_w=3500.0,
        pools=(PoolInfo("stratum+tcp://pool.kz:3333", "farm.1", "Alive", True),),
    )
    base.update(kw)
    return AsicReading(**base)


def fixed_ids():  # deterministic uuids for the tests
    counter = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


def snap(readings: list[AsicReading], now: datetime = T0, previous=None):
    return build_snapshot(readings, site="ekibastuz-1", owner_bin=OWNER, now=now, previous=previous)


def test_identity_serial_then_mac_then_endpoint() -> None:
    s = snap(
        [
            miner("SN1", "10.0.0.1"),
            miner(None, "10.0.0.2", mac="AA-BB-CC-DD-EE-02"),
            miner(None, "10.0.0.3"),
        ]
    )
    assert {m.id: m.id_source for m in s.miners.values()} == {
        "SN1": "serial",
        "aa:bb:cc:dd:ee:02": "mac",
        "10.0.0.3:4028": "endpoint",
    }


def test_first_run_all_added_and_payloads_valid() -> None:
    s = snap([miner("SN1", "10.0.0.1"), miner("SN2", "10.0.0.2")])
    events = diff(None, s, new_id=fixed_ids())
    assert [(e["type"], e["miner_id"]) for e in events] == [("added", "SN1"), ("added", "SN2")]
    for seq, e in enumerate(events, 1):
        validate("event.v1", {**e, "seq": seq})
    payload = snapshot_payload(s, seq=2)
    validate("inventory.v1", payload)
    assert payload["count"] == 2 and payload["totals"] == {
        "online": 2,
        "rated_ths": 400.0,
        "rated_w": 7000.0,
    }
    assert payload["miners"][0]["first_seen"] == "2026-03-01T12:00:00Z"


def test_ip_change_is_moved_not_add_remove() -> None:
    a = snap([miner("SN1", "10.0.0.1"), miner(None, "10.0.0.2", mac="aa:bb:cc:dd:ee:02")])
    t1 = T0 + timedelta(minutes=5)
    b = snap(
        [miner("SN1", "10.0.0.9", t=t1), miner(None, "10.0.0.7", mac="aa:bb:cc:dd:ee:02", t=t1)],
        t1,
        a,
    )
    events = diff(a, b, new_id=fixed_ids())
    assert [(e["type"], e["miner_id"]) for e in events] == [
        ("moved", "SN1"),
        ("moved", "aa:bb:cc:dd:ee:02"),
    ]
    assert events[0]["from"] == {"ip": "10.0.0.1", "port": 4028, "location": None}
    assert events[0]["to"] == {"ip": "10.0.0.9", "port": 4028, "location": None}
    assert b.miners["SN1"].first_seen == T0 and b.miners["SN1"].last_seen == t1
    for e in events:
        validate("event.v1", {**e, "seq": 1})


def test_location_and_owner_reach_the_register() -> None:
    hall_a = Location("A", "1", "")
    hall_b = Location("B", "7", "")
    owner = {"bin": OWNER, "licence_number": "DM-1", "licence_subtype": "I"}
    dc = {"id": "DC-1", "address": "Ekibastuz", "grid_zone": "north-south", "registered": True}

    def at(where: Location, t: datetime, previous: object = None):
        return build_snapshot(
            [miner("SN1", "10.0.0.1", t=t)], site="ekibastuz-1", owner_bin=OWNER, now=t,
            previous=previous, locations={("10.0.0.1", 4028): where}, owner=owner,
            data_centre=dc,
        )  # fmt: skip

    a = at(hall_a, T0)
    payload = snapshot_payload(a, seq=0)
    validate("inventory.v1", payload)
    assert payload["owner"] == owner and payload["data_centre"] == dc
    assert payload["miners"][0]["location"] == {"hall": "A", "rack": "1", "slot": ""}
    # the same address rewired into another hall: the register hears the miner moved
    b = at(hall_b, T0 + timedelta(minutes=5), a)
    (e,) = diff(a, b, new_id=fixed_ids())
    assert e["type"] == "moved"
    assert e["from"]["location"]["hall"] == "A" and e["to"]["location"]["hall"] == "B"
    validate("event.v1", {**e, "seq": 1})
    assert snapshot_from_payload(payload).miners["SN1"].location == hall_a


def test_changed_and_run_state_is_not_a_change() -> None:
    a = snap([miner("SN1", "10.0.0.1")])
    b = snap([miner("SN1", "10.0.0.1", firmware="2025.06", state="sleeping")], previous=a)
    (e,) = diff(a, b, new_id=fixed_ids())
    assert e["type"] == "changed"
    assert e["changes"] == {"firmware": {"from": "2025.01", "to": "2025.06"}}
    validate("event.v1", {**e, "seq": 7})
    c = snap([miner("SN1", "10.0.0.1", firmware="2025.06", state="mining")], previous=b)
    assert diff(b, c) == []


def test_unreachable_is_offline_then_removed_after_a_day() -> None:
    a = snap([miner("SN1", "10.0.0.1"), miner("SN2", "10.0.0.2")])
    b = snap([miner("SN1", "10.0.0.1", t=T0 + timedelta(hours=1))], T0 + timedelta(hours=1), a)
    assert b.miners["SN2"].state == "offline"
    assert diff(a, b) == []
    c = snap(
        [miner("SN1", "10.0.0.1", t=T0 + timedelta(days=1, hours=1))],
        T0 + timedelta(days=1, hours=1),
        b,
    )
    (e,) = diff(b, c, new_id=fixed_ids())
    assert (e["type"], e["miner_id"], e["miner"]["state"]) == ("removed", "SN2", "offline")
    assert snapshot_payload(b, seq=0)["totals"]["online"] == 1


def test_snapshot_round_trips_through_payload() -> None:
    s = snap([miner("SN1", "10.0.0.1"), miner(None, "10.0.0.3")])
    back = snapshot_from_payload(snapshot_payload(s, seq=3))
    assert back == s


def test_schema_rejects_bad_payloads() -> None:
    s = snap([miner("SN1", "10.0.0.1")])
    (e,) = diff(None, s)
    with pytest.raises(jsonschema.ValidationError):
        validate("event.v1", e)  # no seq
    with pytest.raises(jsonschema.ValidationError):
        validate("event.v1", {**e, "seq": 1, "type": "moved"})  # moved needs from/to
    bad = snapshot_payload(s, seq=1)
    bad["owner_bin"] = "12"
    with pytest.raises(jsonschema.ValidationError):
        validate("inventory.v1", bad)


def test_snapshot_json_is_the_payload_dumped() -> None:
    # written a miner at a time (no tree of dicts for the whole farm): the same bytes
    s = build_snapshot(
        [miner("SN1", "10.0.0.1"), miner(None, "10.0.0.2", mac="AA-BB-CC-00-11-22")],
        site="farm «1»",
        owner_bin="123",
        now=T0,
        owner={"bin": "123", "name": "ТОО «Кен»"},
    )
    for extra in (None, {"agent_id": "agent-1"}):
        want = {**snapshot_payload(s, seq=7), **(extra or {})}
        dumped = json.dumps(want, ensure_ascii=False, separators=(",", ":")).encode()
        assert snapshot_json(s, seq=7, extra=extra) == dumped
    empty = build_snapshot([], site="farm", owner_bin="123", now=T0)
    assert json.loads(snapshot_json(empty, seq=0))["miners"] == []


def test_snapshot_json_holds_the_snapshots_text_once() -> None:
    # A farm's snapshot is tens of MB of JSON (19 MB at 50,000 miners), made while the agent
    # polls: returned as a copy of the buffer it was written into, it was held twice at the
    # agent's peak (issue 15). Its peak is now its own size and the buffer's headroom.
    s = snap([miner(f"SN{i:06d}", f"10.1.{i // 250}.{i % 250}") for i in range(3000)])
    tracemalloc.start()
    try:
        text = snapshot_json(s, seq=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * len(text), (peak, len(text))


def _farm(n: int) -> Snapshot:
    return snap([miner(f"SN{i:06d}", f"10.1.{i // 250}.{i % 250}") for i in range(n)])


def test_a_spilled_snapshot_is_the_same_json_never_held_whole(tmp_path: Path) -> None:
    # The publisher writes the snapshot to a temporary file beside the spool as it is made: a
    # farm's 19 MB buffer was the agent's peak at every periodic publish (issue 15). The
    # register must get the same bytes, and the agent must not hold them all at once.
    s = _farm(3000)
    extra = {"agent_id": "agent-1"}
    want = bytes(snapshot_json(s, seq=7, extra=extra))
    tracemalloc.start()
    try:
        parts = snapshot_json_parts(s, extra=extra, spill_dir=tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    payload = parts.with_seq(7)
    assert isinstance(payload, FilePayload) and len(payload) == len(want)
    assert peak < len(want) / 2, (peak, len(want))
    assert payload.read() == want
    assert payload.body.closed  # read once, then closed: no descriptor left per publish


def test_a_snapshot_that_cannot_be_spilled_is_held_in_memory(tmp_path: Path) -> None:
    # A full disk (here: a file-size limit, so the write fails part-way) or no directory:
    # the snapshot is made in memory as before rather than lost.
    s = _farm(3000)
    want = snapshot_json(s, seq=3)
    for where in (tmp_path / "missing", tmp_path):
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, old_limit[1]))
        try:
            payload = snapshot_json_parts(s, spill_dir=where).with_seq(3)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
            signal.signal(signal.SIGXFSZ, old_handler)
        assert isinstance(payload, bytearray), where
        assert payload == want, where


def test_events_made_when_read_are_diffs_events() -> None:
    # diff_events keeps a row per event and makes each dict when read (history, outbox)
    from kuat.uplink.inventory import diff_events

    a = snap([miner("SN1", "10.0.0.1"), miner("SN2", "10.0.0.2"), miner("SN3", "10.0.0.3")])
    b = snap(
        [
            miner("SN1", "10.0.0.9"),
            miner("SN2", "10.0.0.2", firmware="2026.02"),
            miner("SN4", "10.0.0.4"),
        ],
        now=T0 + timedelta(minutes=5),
        previous=a,
    )
    want = diff(a, b, new_id=fixed_ids())
    # SN3 stays in the snapshot, offline, for a day: no event for it
    assert [e["type"] for e in want] == ["moved", "changed", "added"]
    lazy = diff_events(a, b, new_id=fixed_ids(), after={"agent_id": "agent-1"})
    got = list(lazy)
    assert len(lazy) == 3 and got == [{**e, "agent_id": "agent-1"} for e in want]
    assert list(got[0]) == [*want[0], "agent_id"]  # the agent's id after the event's own keys
    assert lazy[0] == got[0] and lazy[1:3] == got[1:3] and list(lazy) == got  # read again


@given(st.datetimes(min_value=datetime(1000, 1, 2), timezones=st.none() | st.timezones()))
def test_iso_is_utc_whole_seconds_with_z(t: datetime) -> None:
    from kuat.uplink.inventory import iso

    aware = t.replace(tzinfo=UTC) if t.tzinfo is None else t
    want = aware.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert iso(t) == want


def test_periodic_publishes_store_the_snapshot_and_leave_no_descriptor(tmp_path: Path) -> None:
    # Every inventory round spills its snapshot to a temporary file beside the spool: one left
    # open per round would exhaust the agent's descriptors in days (a round every 5 minutes).
    from kuat.uplink.mqtt import RegisterPublisher
    from kuat.uplink.spool import Spool

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    readings = [miner(f"SN{i:04d}", f"10.2.{i // 250}.{i % 250}") for i in range(2000)]
    with Spool(tmp_path / "spool.db") as spool:
        pub = RegisterPublisher(spool, owner_bin=OWNER, site="s", broker=None)
        pub.publish_inventory(readings, T0)
        before = open_fds()
        for k in range(1, 6):
            now = T0 + timedelta(minutes=5 * k)
            report = pub.publish_inventory(readings, now)
        stored = json.loads(spool.retained()[pub.inventory_topic])
        assert open_fds() == before
    assert stored["seq"] == report.seq and stored["count"] == 2000
    assert stored["generated_at"] == "2026-03-01T12:25:00Z"
    assert [m["id"] for m in stored["miners"][:2]] == ["SN0000", "SN0001"]
    # nothing left beside the spool but the spool's own files
    assert all(p.name.startswith("spool.db") for p in tmp_path.iterdir()), list(tmp_path.iterdir())
