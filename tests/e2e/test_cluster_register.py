"""The register of a site split across three agents, carried by a three-node NATS cluster's MQTT
listeners, while one NATS node is killed (SIGKILL) in the middle of the stream.

Each agent's register publisher (MQTT 3.1.1, its own stream ``…/{site}/agent/{id}/``, the three
nodes as its failover list) publishes inventory rounds with changes; the node the first agent
and the register receiver are connected to dies mid-stream. Checked: every outbox empties with
nothing dead-lettered; each agent's stream in the register ends at the agent's last seq with no
gap and the agent's miners; the site view is the union of the agents' inventories; the retained
inventories a register connecting after the death gets are each agent's last one (after the
agents' next run); and, counted end to end, every event id of every agent's durable history
reached the register (duplicates dropped by id). nats-server 2.9 loses messages in this test
(a store that failed after its PUBACK, a resumed session without its subscription: README,
"The register on a NATS cluster"); the register asks the agents to replay what it missed from
their durable history (uplink.register_replay), and the count holds all the same."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kuat.collectors.readings import AsicReading
from kuat.uplink.broker import BrokerEndpoint
from kuat.uplink.mqtt import RegisterPublisher
from kuat.uplink.register_receiver import RegisterReceiver
from kuat.uplink.spool import Spool
from tests.servers import NatsCluster
from tests.uplink.test_mqtt import OWNER, T0, fleet

pytestmark = pytest.mark.servers

SITE = "split-nats"
AGENTS = ("hall-a", "hall-b", "hall-c")
ROUNDS = 24
KILL_AFTER = 8  # rounds published before the node dies
PREFIX = "kz/hsc-register/v1"


@pytest.fixture
def spools(tmp_path: Path) -> Iterator[list[Spool]]:
    opened = [Spool(tmp_path / f"{a}.db") for a in AGENTS]
    try:
        yield opened
    finally:
        for spool in opened:
            spool.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats") as c:
        yield c


def _nodes(cluster: NatsCluster, first: int, **kw: Any) -> BrokerEndpoint:
    """Every node's MQTT listener, starting at node ``first`` (3.1.1, quick retries)."""
    ports = cluster.mqtt_ports[first:] + cluster.mqtt_ports[:first]
    nodes = [("127.0.0.1", p) for p in ports]
    return BrokerEndpoint(
        *nodes[0],
        failover=tuple(nodes[1:]),
        tls=False,
        protocol="3.1.1",
        reconnect_min_s=0.1,
        reconnect_max_s=0.5,
        **kw,
    )


def _round(hall: int, n: int) -> list[AsicReading]:
    """Round ``n`` of hall ``hall``: a miner arrives every round and one changes address every
    third, so each round makes events."""
    t = T0 + timedelta(minutes=5 * n)
    miners = [
        replace(r, serial=f"H{hall}-{r.serial}", taken_at=t)
        for r in fleet(3 + n, t, ip_base=10 * hall + 1)
    ]
    if n % 3 == 2:
        miners[0] = replace(miners[0], ip=f"10.{hall}.99.{n}")
    return miners


def _broker_dropped(cluster: NatsCluster) -> bool:
    """Whether a node logged a QoS 1 or retained message it failed to store (and acknowledged
    anyway: nats-server 2.9 goes on after logging it)."""
    signs = ('timeout for request type "MS"', "unable to store retained message")
    for log in cluster.data_dir.glob("n*/nats.log"):
        text = log.read_text(errors="replace")
        if any(sign in text for sign in signs):
            return True
    return False


def _subscription_remade(cluster: NatsCluster, since: datetime) -> bool:
    """Whether the broker made the register's site-wide subscription anew after ``since``.

    nats-server keeps an MQTT session's QoS 1 subscription as a JetStream consumer. When the
    session the register resumes on another node comes back without it (nats-server 2.9 during
    a leader election), the register's SUBSCRIBE makes a new consumer, which starts at new
    messages: what was published in between never reaches the register. Seen in the consumer's
    creation time on a live node's /jsz."""
    wildcard = f"$MQTT.msgs.{PREFIX.replace('/', '.')}.*.*"
    for i, port in enumerate(cluster.http_ports):
        if not cluster.alive(i):
            continue
        url = f"http://127.0.0.1:{port}/jsz?accounts=true&streams=true&consumers=true&config=true"
        with urllib.request.urlopen(url, timeout=5) as reply:
            jsz = json.load(reply)
        for account in jsz.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                for consumer in stream.get("consumer_detail") or []:
                    made = datetime.fromisoformat(consumer["created"][:26].rstrip("Z") + "+00:00")
                    subject = consumer["config"].get("filter_subject", "")
                    if subject.startswith(wildcard) and made > since:
                        return True
    return False


def _published_ids(spool_path: Path) -> dict[int, str]:
    """seq -> event id of every event the agent queued (its durable register history)."""
    with sqlite3.connect(spool_path) as db:
        return dict(db.execute("SELECT seq, id FROM register_history").fetchall())


def _retained(
    port: int, topic: str, count: int, wait_s: float = 30.0
) -> dict[str, dict[str, object]]:
    """The retained messages a register connecting now gets (MQTT 3.1.1, clean session),
    waiting at most ``wait_s`` for ``count`` of them."""
    got: dict[str, dict[str, object]] = {}
    done = threading.Event()
    refused = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311, clean_session=True)

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            got[msg.topic] = json.loads(msg.payload)
            if len(got) >= count:
                done.set()

    def on_subscribe(c: mqtt.Client, u: object, mid: int, codes: list[Any], p: object) -> None:
        if any(code.is_failure for code in codes):
            refused.set()

    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        deadline = time.monotonic() + wait_s
        while not done.wait(0.1) and time.monotonic() < deadline:
            if refused.is_set():  # the cluster still electing its stream leaders: ask again
                refused.clear()
                time.sleep(0.5)
                client.subscribe(topic, qos=1)
    finally:
        client.disconnect()
        client.loop_stop()
    return got


def test_register_survives_a_dead_nats_node_nothing_lost(
    cluster: NatsCluster, spools: list[Spool], tmp_path: Path
) -> None:
    pubs = [
        RegisterPublisher(
            spools[i], owner_bin=OWNER, site=SITE, agent_id=agent, broker=_nodes(cluster, i)
        )
        for i, agent in enumerate(AGENTS)
    ]
    # The register back-end on node 0 too: the node that dies takes it down with hall-a.
    rx = RegisterReceiver(
        broker=_nodes(cluster, 0, client_id="register-backend"), state=tmp_path / "view.json"
    )
    rx.start()
    # Its subscription granted before the agents publish: on a loaded machine the grant can
    # come a second after the connection, and a new subscription starts at new messages.
    assert rx.subscribed.wait(30), "the register's subscription granted"
    for p in pubs:
        p.start()
    rx_on_dead_node = False
    try:
        for n in range(ROUNDS):
            if n == KILL_AFTER:
                # (the receiver's first attempt may have gone to another node: a fresh cluster
                # can refuse a session for a moment)
                rx_on_dead_node = rx.session.current == ("127.0.0.1", cluster.mqtt_ports[0])
                killed_at = datetime.now(UTC)
                cluster.kill_node(0)
            for hall, p in enumerate(pubs):
                p.publish_inventory(_round(hall, n), T0 + timedelta(minutes=5 * n))
            time.sleep(0.05)  # a stream, not one burst: the kill lands in the middle of it
        # Every outbox delivered: each message acknowledged by the cluster, none refused.
        for p in pubs:
            assert p.wait_idle(40), f"{p.agent_id}: outbox still holds {p.pending()}"
            assert p.spool.counts().outbox_dead == 0
        assert pubs[0].where != f"127.0.0.1:{cluster.mqtt_ports[0]}"  # it failed over
        # The agents' next inventory run, once the cluster has its leaders again (a site's
        # runs are minutes apart; every run refreshes the retained inventory).
        cluster.wait_jetstream()
        for hall, p in enumerate(pubs):
            p.publish_inventory(_round(hall, ROUNDS), T0 + timedelta(minutes=5 * ROUNDS))
        assert all(p.wait_idle(40) for p in pubs)

        def caught_up() -> bool:
            return all(
                (s := rx.shard(OWNER, SITE, p.agent_id or "")) is not None
                and s.seq == p.spool.last_seq(f"{OWNER}/{SITE}")
                and not s.in_gap
                # every event, not only an inventory that covers it
                and set(_published_ids(p.spool.path).values()) <= set(s.recent_ids)
                for p in pubs
            )

        deadline = time.monotonic() + 40
        while not caught_up() and time.monotonic() < deadline:
            time.sleep(0.1)  # the checks below say what is missing if it never comes
    finally:
        for p in pubs:
            p.stop()
        rx.stop()

    if rx_on_dead_node:
        assert rx.connects >= 2, "the register reconnected to another node"
    assert rx.rejected == 0
    # The register's picture is each agent's own: its stream at the agent's last seq, no gap,
    # and one site with every agent's miners once, each from its own agent.
    own = {}
    for p in pubs:
        stream = rx.shard(OWNER, SITE, p.agent_id or "")
        snap = p.last_snapshot()
        assert stream is not None and snap is not None
        assert stream.seq == p.spool.last_seq(f"{OWNER}/{SITE}") and not stream.in_gap
        assert set(stream.miners) == set(snap.miners) and stream.status is not None
        own.update({mid: p.agent_id for mid in snap.miners})
    site = rx.merged(OWNER, SITE)
    assert {mid: m["agent_id"] for mid, m in site.items()} == own

    # The retained inventories survived the node: a register connecting now to the cluster gets
    # each agent's last one.
    # Each nats-server answers a new subscription from its own copy of the retained messages,
    # which its consumer of the retained stream brings up to date a moment after a store; after
    # a node's death that consumer gets a new leader first, so a live node's copy can lag for a
    # few seconds. nats-server 2.9.10 (Debian's) can also leave one live node's copy stale for
    # good: seen once in 20-odd runs, node 2 answering with only the inventory published through
    # itself, while the agents' later, acknowledged inventories never reached it (a broker
    # defect; kuat cannot reach that copy). So each live node is asked, again until one holds
    # every agent's last inventory (one must, within 30 s); a node left behind is named.
    topic = f"{PREFIX}/{OWNER}/{SITE}/agent/+/inventory"
    last = {p.inventory_topic: p.spool.last_seq(f"{OWNER}/{SITE}") for p in pubs}
    live = [port for i, port in enumerate(cluster.mqtt_ports) if i != 0]
    deadline = time.monotonic() + 30
    while True:
        copies = {port: _retained(port, topic, len(AGENTS), wait_s=5) for port in live}
        whole = [
            port
            for port, got in copies.items()
            if {t: body.get("seq") for t, body in got.items()} == last
        ]
        if whole or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    behind = {port: sorted(got) for port, got in copies.items() if port not in whole}
    assert whole, f"no live node holds every agent's last inventory: {behind}"
    if behind:
        print(f"a live node's copy of the retained messages lags (nats-server): {behind}")
    retained = copies[whole[0]]
    assert len(retained) == len(AGENTS)
    for p in pubs:
        body = retained[p.inventory_topic]
        assert body["seq"] == p.spool.last_seq(f"{OWNER}/{SITE}")
        snap = p.last_snapshot()
        assert snap is not None
        assert {m["id"] for m in body["miners"]} == set(snap.miners)  # type: ignore[union-attr, index]

    # Counted end to end: every event of every agent's durable history reached the register
    # (applied, a redelivery dropped by id, or a replayed one an inventory had already
    # covered: the receiver remembers the ids of those too).
    total, lost = 0, {}
    for p in pubs:
        published = _published_ids(p.spool.path)
        assert sorted(published) == list(range(1, len(published) + 1))
        total += len(published)
        stream = rx.shard(OWNER, SITE, p.agent_id or "")
        assert stream is not None
        missing = set(published.values()) - set(stream.recent_ids)
        if missing:
            lost[p.agent_id] = sorted(seq for seq, i in published.items() if i in missing)
    assert total > 3 * ROUNDS  # the stream really carried events
    # The broker may lose messages here (nats-server 2.9: a store that failed after the
    # PUBACK, a resumed session without its subscription); the register then sees a hole and
    # the agent replays those events from its durable history (uplink.register_replay), so
    # nothing is missing in the end. What the broker did is in the message when it fails.
    assert not lost, (
        f"events lost: {lost}; the broker logged a failed store: {_broker_dropped(cluster)}, "
        f"made the register's subscription anew: {_subscription_remade(cluster, killed_at)}; "
        f"replayed: {[p.replayed for p in pubs]}, asked: {rx.replays_asked}"
    )
    print(f"replayed {[p.replayed for p in pubs]} events on {rx.replays_asked} requests")
