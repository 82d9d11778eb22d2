"""The reference register receiver: the README's dedup and gap rules, applied to messages the real
publisher builds (pure), then end to end through a real Mosquitto with a broker restart and a
forced gap."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kuat.uplink.inventory import build_snapshot, diff, snapshot_payload
from kuat.uplink.mqtt import RegisterPublisher
from kuat.uplink.register_receiver import ReceiverError, RegisterReceiver, RegisterView
from kuat.uplink.spool import Spool
from tests.servers import Mosquitto
from tests.uplink.test_mqtt import OWNER, T0, fleet, lab_broker, publisher, wait_for

PREFIX = "kz/hsc-register/v1"
SITE = "ekibastuz-1"
BASE = f"{PREFIX}/{OWNER}/{SITE}"


def _messages() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Events and inventories as the publisher builds them: four miners arrive (seq 1-4),
    then one leaves, one moves, one changes firmware (seq 5-7)."""
    first = fleet(4, T0)
    s1 = build_snapshot(first, site=SITE, owner_bin=OWNER, now=T0, previous=None)
    t1 = T0 + timedelta(days=2)
    later = [replace(r, taken_at=t1) for r in first[:3]]
    later[1] = replace(later[1], ip="10.0.9.9")
    later[2] = replace(later[2], firmware="2025.09")
    s2 = build_snapshot(later, site=SITE, owner_bin=OWNER, now=t1, previous=s1)
    events = []
    for n, ev in enumerate([*diff(None, s1), *diff(s1, s2)], start=1):
        events.append({**ev, "seq": n})
    return events, snapshot_payload(s1, seq=4), snapshot_payload(s2, seq=7)


def _feed(view: RegisterView, kind: str, body: dict[str, Any]) -> str:
    return view.handle(f"{BASE}/{kind}", json.dumps(body).encode()).outcome


def test_events_in_order_rebuild_what_the_inventory_says() -> None:
    events, inv1, inv2 = _messages()
    assert sorted(e["type"] for e in events[4:]) == ["changed", "moved", "removed"]
    view = RegisterView(PREFIX)
    assert _feed(view, "inventory", {**inv1, "seq": 0, "miners": []}) == "rebuilt"
    assert [_feed(view, "events", e) for e in events] == ["applied"] * 7
    site = view.sites[(OWNER, SITE)]
    expected = {m["id"]: m for m in inv2["miners"]}
    # Same miners, same addresses and firmware as the agent's own snapshot.
    assert set(site.miners) == set(expected)
    for mid, m in expected.items():
        assert (site.miners[mid]["ip"], site.miners[mid]["firmware"]) == (m["ip"], m["firmware"])
    assert site.seq == 7 and not site.in_gap


def test_duplicates_and_stale_events_are_dropped() -> None:
    events, inv1, _ = _messages()
    view = RegisterView(PREFIX)
    _feed(view, "inventory", inv1)
    assert _feed(view, "events", events[0]) == "stale"  # seq 1 is inside inventory seq 4
    assert _feed(view, "events", events[4]) == "applied"
    assert _feed(view, "events", events[4]) == "duplicate"  # QoS 1 redelivery, same id
    # A resent copy under a new id but an old seq is still not applied twice.
    assert _feed(view, "events", {**events[4], "id": "00000000-0000-4000-8000-000000000000"}) == (
        "stale"
    )
    assert view.sites[(OWNER, SITE)].seq == 5


def test_a_gap_waits_for_the_inventory_then_applies_what_follows() -> None:
    events, inv1, inv2 = _messages()
    view = RegisterView(PREFIX)
    _feed(view, "inventory", inv1)  # seq 4
    # seq 5 is lost; 6 and 7 arrive: held, not applied on a view with a hole in it.
    assert _feed(view, "events", events[5]) == "gap"
    assert _feed(view, "events", events[6]) == "gap"
    site = view.sites[(OWNER, SITE)]
    assert site.in_gap and site.seq == 4 and len(site.miners) == 4
    # An older inventory does not close the hole.
    assert _feed(view, "inventory", {**inv1, "seq": 3}) == "ignored"
    assert site.in_gap
    # The inventory at seq 5 closes it; the held 6 and 7 follow.
    inv_at_5 = {**inv1, "seq": 5, "miners": [m for m in inv1["miners"] if m["id"] != "SN0004"]}
    assert _feed(view, "inventory", inv_at_5) == "rebuilt"
    assert not site.in_gap and site.seq == 7
    assert set(site.miners) == {m["id"] for m in inv2["miners"]}
    assert site.counts == {"rebuilt": 2, "gap": 2, "ignored": 1}


def test_malformed_messages_are_refused_with_the_topic_named() -> None:
    events, inv1, _ = _messages()
    view = RegisterView(PREFIX)
    cases: list[tuple[str, bytes]] = [
        (f"{BASE}/events", b"{not json"),
        (f"{BASE}/events", json.dumps({**events[0], "seq": "7"}).encode()),
        (f"{BASE}/events", json.dumps({**events[0], "type": "exploded"}).encode()),
        (f"{BASE}/inventory", json.dumps({**inv1, "miners": {"a": 1}}).encode()),
        (f"{BASE}/status", json.dumps({"schema": "x", "state": "online"}).encode()),
        (f"{BASE}/other", b"{}"),
        ("elsewhere/a/b/events", b"{}"),
        (f"{BASE}/events", b"[" * 100_000),
    ]
    for topic, payload in cases:
        with pytest.raises(ReceiverError) as err:
            view.handle(topic, payload)
        assert topic in str(err.value)


# --- end to end ---------------------------------------------------------------------------


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool.db") as sp:
        yield sp


def _receiver(port: int, state: Path) -> RegisterReceiver:
    return RegisterReceiver(broker=lab_broker(port, client_id="register-backend"), state=state)


def _agrees(rx: RegisterReceiver, pub: RegisterPublisher) -> bool:
    site = rx.site(OWNER, SITE)
    snap = pub.last_snapshot()
    if site is None or snap is None or site.in_gap:
        return False
    want = {mid: (m.ip, m.firmware, m.state) for mid, m in snap.miners.items()}
    have = {mid: (m["ip"], m["firmware"], m["state"]) for mid, m in site.miners.items()}
    return have == want and site.seq == pub.spool.last_seq(f"{OWNER}/{SITE}")


@pytest.mark.servers
def test_receiver_follows_through_broker_restart_and_rebuilds_after_a_gap(
    tmp_path: Path, spool: Spool
) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    state = tmp_path / "view.json"
    pub = publisher(spool, broker.port, SITE)
    rx = _receiver(broker.port, state)
    try:
        pub.start()
        rx.start()
        readings = fleet(6, T0)
        pub.publish_inventory(readings, T0)
        wait_for(lambda: _agrees(rx, pub), what="receiver caught up")

        # Broker restart, with changes queued while it is down: the agent's outbox and the
        # receiver's persistent session carry them over; no gap, nothing applied twice.
        broker.stop()
        wait_for(lambda: not pub.connected, what="agent saw the broker go")
        t1 = T0 + timedelta(minutes=5)
        moved = [replace(r, taken_at=t1) for r in readings]
        moved[0] = replace(moved[0], ip="10.0.7.1")
        pub.publish_inventory(moved, t1)
        broker.start()
        wait_for(lambda: _agrees(rx, pub), timeout_s=20, what="receiver after broker restart")
        site = rx.site(OWNER, SITE)
        assert site is not None and site.counts.get("gap", 0) == 0

        # The receiver restarts too: its view comes back from the state file.
        rx.stop()
        rx = _receiver(broker.port, state)
        assert rx.site(OWNER, SITE) is not None
        rx.start()

        # A forced gap: one event never leaves the agent (as when a spool is lost).
        broker.stop()
        wait_for(lambda: not pub.connected, what="agent saw the broker go")
        t2 = t1 + timedelta(minutes=5)
        changed = [replace(r, taken_at=t2, firmware="2026.02") for r in moved]
        changed.append(replace(fleet(7, t2)[-1], ip="10.0.1.70", firmware="2026.02"))
        pub.publish_inventory(changed, t2)
        with sqlite3.connect(spool.path) as db:
            lost = db.execute(
                "SELECT id, payload FROM outbox WHERE topic = ? ORDER BY id LIMIT 1",
                (f"{BASE}/events",),
            ).fetchone()
            db.execute("DELETE FROM outbox WHERE id = ?", (lost[0],))
        broker.start()
        wait_for(lambda: _agrees(rx, pub), timeout_s=20, what="receiver rebuilt after the gap")
        site = rx.site(OWNER, SITE)
        assert site is not None
        assert site.counts.get("gap", 0) >= 1 and site.counts.get("rebuilt", 0) >= 2
        assert json.loads(lost[1])["miner_id"] not in (None, "")
        assert all(m["firmware"] == "2026.02" for m in site.miners.values())
        assert rx.rejected == 0
    finally:
        rx.stop()
        pub.stop()
        broker.stop()


@pytest.mark.servers
def test_receiver_says_when_its_subscription_is_granted(tmp_path: Path, spool: Spool) -> None:
    """A new subscription starts at new messages, so whoever starts publishers after a receiver
    needs to know when it listens: ``subscribed`` is set by the broker's grant, cleared when the
    connection goes, and set again after the reconnect."""
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    rx = _receiver(broker.port, tmp_path / "view.json")
    pub = publisher(spool, broker.port, SITE)
    try:
        assert not rx.subscribed.is_set()
        rx.start()
        assert rx.subscribed.wait(10), "the grant of the site-wide subscription"
        pub.start()
        pub.publish_inventory(fleet(3, T0), T0)
        wait_for(lambda: _agrees(rx, pub), what="receiver got what followed the grant")

        broker.stop()
        wait_for(lambda: not rx.subscribed.is_set(), what="the lost connection cleared it")
        broker.start()
        assert rx.subscribed.wait(20), "granted again after the reconnect"
    finally:
        pub.stop()
        rx.stop()
        broker.stop()


@pytest.mark.servers
def test_register_receive_command_prints_what_it_applied(
    mosquitto: Mosquitto, spool: Spool, tmp_path: Path
) -> None:
    pub = publisher(spool, mosquitto.port, "cli-site")
    pub.start()
    try:
        pub.publish_inventory(fleet(3, T0), T0)
        assert pub.wait_idle(10)
    finally:
        pub.stop()
    state = tmp_path / "view.json"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kuat.agent.cli",
            "register",
            "receive",
            "--no-tls",
            "--port",
            str(mosquitto.port),
            "--state",
            str(state),
            "--duration",
            "1.5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    mine = [x for x in lines if x["site"] == "cli-site"]
    assert any(x["kind"] == "inventory" and x["outcome"] == "rebuilt" for x in mine), lines
    # what the message changed in the site, without the miners' bodies
    (rebuilt,) = [x for x in mine if x["outcome"] == "rebuilt"]
    assert [(c["type"], c["miner_id"]) for c in rebuilt["changes"]] == [
        ("added", "SN0001"), ("added", "SN0002"), ("added", "SN0003")
    ]  # fmt: skip
    assert "miner" not in rebuilt["changes"][0] and "agent_id" not in rebuilt
    saved = json.loads(state.read_text())
    (site,) = [s for s in saved["sites"] if s["site"] == "cli-site"]
    assert sorted(site["miners"]) == ["SN0001", "SN0002", "SN0003"]
    assert site["status"] == "offline"  # the agent stopped cleanly: retained offline status
