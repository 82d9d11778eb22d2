"""Replay of missed register events (kuat.uplink.register_replay): the receiver lists the seqs
a hole skipped and asks for them; the agent queues them again from its durable history, with
the same ids, so the register's event history is whole even when the broker lost messages."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from kuat.uplink.mqtt import RegisterPublisher
from kuat.uplink.register_receiver import MAX_ASKS, RegisterView
from kuat.uplink.register_replay import ReplayError, parse_replay, ranges, replay_payload
from kuat.uplink.spool import Spool
from tests.contracts.contract import validator
from tests.servers import Mosquitto
from tests.uplink.test_mqtt import OWNER, T0, fleet, publisher, wait_for
from tests.uplink.test_register_receiver import BASE, PREFIX, SITE, _feed, _messages, _receiver


def test_requests_parse_and_garbage_is_refused_by_name() -> None:
    assert parse_replay(replay_payload(15, 18)).to_seq == 18
    bad = [
        b"{",
        b"[]",
        b'{"schema": "other", "from_seq": 1, "to_seq": 2}',
        b'{"schema": "kz.register.replay.v1", "from_seq": 0, "to_seq": 2}',
        b'{"schema": "kz.register.replay.v1", "from_seq": true, "to_seq": 2}',
        b'{"schema": "kz.register.replay.v1", "from_seq": 5, "to_seq": 2}',
    ]
    for raw in bad:
        with pytest.raises(ReplayError, match="replay request"):
            parse_replay(raw)


def test_the_request_the_receiver_sends_is_the_contract_s() -> None:
    validator("replay.v1").validate(json.loads(replay_payload(15, 18)))


def test_runs_are_the_fewest_requests() -> None:
    assert ranges([7, 5, 6, 9, 9, 12, 11]) == [(5, 7), (9, 9), (11, 12)]
    assert ranges(range(1, 8), longest=3) == [(1, 3), (4, 6), (7, 7)]


def test_a_hole_is_listed_asked_once_and_again_at_each_inventory() -> None:
    events, _, inv2 = _messages()  # events seq 1-7; the second inventory at seq 7
    view = RegisterView(PREFIX)
    for e in events[:4]:
        assert _feed(view, "events", e) == "applied"
    assert _feed(view, "events", events[6]) == "gap"  # 5 and 6 never came
    site = view.sites[(OWNER, SITE)]
    assert site.to_ask(again=False) == [(5, 6)]
    assert site.to_ask(again=False) == []  # asked already: not at every later event
    assert _feed(view, "inventory", inv2) == "rebuilt"
    for _ in range(MAX_ASKS - 1):  # each inventory asks again while they are missing
        assert site.to_ask(again=True) == [(5, 6)]
    assert site.to_ask(again=True) == []  # the agent may no longer keep them: it stops
    # the state file keeps the list
    assert RegisterView.from_json(json.loads(json.dumps(view.to_json()))).sites[
        (OWNER, SITE)
    ].missing == {5: MAX_ASKS, 6: MAX_ASKS}
    # a replayed event is stale by now; it arrives, it is no longer missing
    assert _feed(view, "events", events[4]) == "stale"
    assert set(site.missing) == {6}


def test_an_inventory_past_unseen_events_lists_them_and_a_new_view_lists_none() -> None:
    events, inv1, inv2 = _messages()
    view = RegisterView(PREFIX)
    assert _feed(view, "inventory", inv1) == "rebuilt"  # a register starting from the inventory
    assert view.sites[(OWNER, SITE)].missing == {}
    assert _feed(view, "events", events[4]) == "applied"  # seq 5
    assert _feed(view, "inventory", inv2) == "rebuilt"  # seq 7: 6 and 7 never came
    assert view.sites[(OWNER, SITE)].to_ask(again=True) == [(6, 7)]
    # the register's own request, seen through its wildcard, is not an error
    assert _feed(view, "replay", {"schema": "kz.register.replay.v1"}) == "request"
    # whatever its payload, and without making a view of a site only a request names
    other = f"{PREFIX}/{OWNER}/elsewhere/replay"
    assert view.handle(other, b"not json").outcome == "request"
    assert (OWNER, "elsewhere") not in view.sites


# --- end to end ---------------------------------------------------------------------------


@pytest.fixture
def pub(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[RegisterPublisher]:
    """The agent's register publisher on a real Mosquitto (stopped and closed after)."""
    spool = Spool(tmp_path / "spool.db")
    agent = publisher(spool, mosquitto.port, SITE)
    try:
        yield agent
    finally:
        agent.stop()
        spool.close()


@pytest.mark.servers
def test_events_the_broker_never_delivered_are_replayed_with_their_ids(
    mosquitto: Mosquitto, pub: RegisterPublisher, tmp_path: Path
) -> None:
    spool = pub.spool
    rx = _receiver(mosquitto.port, tmp_path / "view.json")
    try:
        rx.start()
        assert rx.subscribed.wait(10)
        pub.start()
        readings = fleet(4, T0)
        pub.publish_inventory(readings, T0)
        assert pub.wait_idle(10)
        # Two events leave the outbox without reaching anyone (as a broker that acknowledged
        # and lost them): the history keeps them, as it keeps every event.
        db, lock = pub.spool.shared_connection()
        with lock:  # the sender waits: it sends nothing of this round before the delete
            t1 = T0 + timedelta(minutes=5)
            more = [replace(r, taken_at=t1) for r in fleet(7, t1)]
            pub.publish_inventory(more, t1)
            lost = db.execute(
                "SELECT id, payload FROM outbox WHERE topic = ? ORDER BY id LIMIT 2",
                (f"{BASE}/events",),
            ).fetchall()
            db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i, _ in lost])
        lost_ids = {json.loads(p)["id"] for _, p in lost}

        def whole() -> bool:
            site = rx.site(OWNER, SITE)
            with sqlite3.connect(spool.path) as db:
                ids = {i for (i,) in db.execute("SELECT id FROM register_history")}
            return site is not None and ids <= set(site.recent_ids) and not site.missing

        wait_for(whole, timeout_s=20, what="every event id at the register")
        assert lost_ids <= set(rx.site(OWNER, SITE).recent_ids)  # type: ignore[union-attr]
        assert pub.replayed >= 2 and rx.replays_asked >= 1 and rx.rejected == 0
    finally:
        rx.stop()


def test_a_broker_that_refuses_the_replay_subscription_is_named_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Mosquitto 2.0 grants a subscription its ACL denies (and delivers nothing), so the SUBACK
    # an EMQX or a NATS with permissions sends (0x87, 0x80) is fed to the callback directly.
    spool = Spool(tmp_path / "spool.db")
    agent = publisher(spool, 1883, SITE)
    refused = [ReasonCode(PacketTypes.SUBACK, identifier=0x87)]
    granted = [ReasonCode(PacketTypes.SUBACK, identifier=1)]
    try:
        with caplog.at_level("WARNING", logger="kuat.uplink.mqtt"):
            for _ in range(3):  # every reconnect subscribes again: said once
                agent._on_replay_subscribed(agent._client, None, 1, refused, None)
            assert caplog.text.count("refused the subscription") == 1
            assert agent.replay_topic in caplog.text and "ACL" in caplog.text
            assert not agent.replay_subscribed
            agent._on_replay_subscribed(agent._client, None, 2, granted, None)
            assert agent.replay_subscribed
            agent._on_replay_subscribed(agent._client, None, 3, refused, None)  # taken back
            assert caplog.text.count("refused the subscription") == 2
    finally:
        spool.close()


@pytest.mark.servers
def test_the_agent_refuses_a_malformed_request_and_queues_nothing(
    mosquitto: Mosquitto, pub: RegisterPublisher
) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    try:
        pub.start()
        pub.publish_inventory(fleet(3, T0), T0)
        assert pub.wait_idle(10)
        wait_for(lambda: pub.replay_subscribed, what="the replay subscription granted")
        client.connect("127.0.0.1", mosquitto.port)
        client.loop_start()
        client.publish(f"{BASE}/replay", b"{not a request", qos=1).wait_for_publish(5)
        wait_for(lambda: pub.replay_refused == 1, what="the garbage refused")
        # a valid one for seqs the agent has: they go again
        client.publish(f"{BASE}/replay", replay_payload(1, 2), qos=1).wait_for_publish(5)
        wait_for(lambda: pub.replayed == 2, what="two events queued again")
        assert pub.wait_idle(10)
    finally:
        client.loop_stop()
        client.disconnect()
