"""One site from several agents: the register receiver merges each agent's stream into one site
view, and a miner moved from one agent's shard to another's is reported once (one ``moved``,
never a second ``added``), pure and then through a real Mosquitto with two publishers."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kuat.collectors.readings import AsicReading
from kuat.uplink.inventory import Snapshot, build_snapshot, diff, snapshot_payload
from kuat.uplink.register_receiver import Applied, ReceiverError, RegisterReceiver, RegisterView
from kuat.uplink.spool import Spool
from tests.servers import Mosquitto
from tests.uplink.test_mqtt import OWNER, T0, fleet, lab_broker, publisher, wait_for

PREFIX = "kz/hsc-register/v1"
SITE = "split-site"


@dataclass
class Shard:
    """One agent's register stream, built by the publisher's own functions."""

    agent_id: str
    last: Snapshot | None = None
    seq: int = 0
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def run(self, readings: list[AsicReading], now: datetime) -> list[tuple[str, dict[str, Any]]]:
        snap = build_snapshot(readings, site=SITE, owner_bin=OWNER, now=now, previous=self.last)
        base = f"{PREFIX}/{OWNER}/{SITE}/agent/{self.agent_id}"
        out = []
        for event in diff(self.last, snap):
            self.seq += 1
            out.append((f"{base}/events", {**event, "seq": self.seq, "agent_id": self.agent_id}))
        inventory = {**snapshot_payload(snap, seq=self.seq), "agent_id": self.agent_id}
        out.append((f"{base}/inventory", inventory))
        self.last = snap
        self.messages += out
        return out


def _feed(view: RegisterView, messages: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = []
    for topic, body in messages:
        changes += view.handle(topic, json.dumps(body).encode()).changes
    return changes


def _at(readings: list[AsicReading], t: datetime) -> list[AsicReading]:
    return [replace(r, taken_at=t) for r in readings]


# Hall A's agent polls 10.0.1.x, hall B's 10.0.2.x; SN0003 is carried from hall A to hall B.
HALL_A = fleet(3, T0, ip_base=1)
HALL_B = [replace(r, serial=f"SN01{i:02d}") for i, r in enumerate(fleet(2, T0, ip_base=2), 1)]
CARRIED = replace(HALL_A[2], ip="10.0.2.9")
T1 = T0 + timedelta(minutes=5)
T2 = T0 + timedelta(days=2)  # past the day a silent miner is kept: hall A removes it


def _site_history(changes: list[dict[str, Any]], miner_id: str) -> list[tuple[Any, ...]]:
    return [
        (c["type"], c.get("from", {}).get("agent_id"), c["agent_id"])
        for c in changes
        if c["miner_id"] == miner_id
    ]


@pytest.mark.parametrize("b_first", [False, True], ids=["a-then-b", "b-then-a"])
def test_a_miner_moved_between_shards_is_reported_once(b_first: bool) -> None:
    a, b = Shard("hall-a"), Shard("hall-b")
    view = RegisterView(PREFIX)
    changes = _feed(view, a.run(HALL_A, T0) + b.run(HALL_B, T0))
    assert sorted(c["miner_id"] for c in changes if c["type"] == "added") == [
        "SN0001", "SN0002", "SN0003", "SN0101", "SN0102"
    ]  # fmt: skip
    # The move: hall A no longer sees SN0003 (offline there), hall B finds it.
    a_round = a.run(_at(HALL_A[:2], T1), T1)
    b_round = b.run(_at([*HALL_B, CARRIED], T1), T1)
    assert [e["type"] for _, e in b_round if "type" in e] == ["added"]  # B's own stream: added
    changes += _feed(view, b_round + a_round if b_first else a_round + b_round)
    # A day later hall A forgets it: "removed" in A's stream, nothing for the site.
    a_forgets = a.run(_at(HALL_A[:2], T2), T2)
    assert [e["type"] for _, e in a_forgets if "type" in e] == ["removed"]
    changes += _feed(view, a_forgets + b.run(_at([*HALL_B, CARRIED], T2), T2))

    assert _site_history(changes, "SN0003") == [
        ("added", None, "hall-a"),
        ("moved", "hall-a", "hall-b"),
    ]
    moved = next(c for c in changes if c["type"] == "moved")
    assert (moved["from"]["ip"], moved["to"]["ip"]) == ("10.0.1.3", "10.0.2.9")
    site = view.merged(OWNER, SITE)
    assert {k: m["agent_id"] for k, m in site.items()} == {
        "SN0001": "hall-a", "SN0002": "hall-a", "SN0003": "hall-b",
        "SN0101": "hall-b", "SN0102": "hall-b",
    }  # fmt: skip
    assert site["SN0003"]["state"] != "offline" and site["SN0003"]["ip"] == "10.0.2.9"
    # Each agent's stream keeps its own seq, without gaps, beside the other's.
    for shard in (a, b):
        stream = view.shards[(OWNER, SITE, shard.agent_id)]
        assert stream.seq == shard.seq and not stream.in_gap


def test_duplicates_and_replays_change_the_site_once() -> None:
    a, b = Shard("hall-a"), Shard("hall-b")
    view = RegisterView(PREFIX)
    _feed(view, a.run(HALL_A, T0) + b.run(HALL_B, T0))
    b_round = b.run(_at([*HALL_B, CARRIED], T1), T1)
    first = _feed(view, b_round)
    # QoS 1 redelivers every message of that round; the retained inventory comes again on
    # reconnect; the whole of A's stream is replayed after an agent restart.
    again = _feed(view, b_round + b_round[-1:] + a.messages)
    assert [c["type"] for c in first] == ["moved"] and again == []


def test_a_single_agent_site_keeps_its_topics_and_view() -> None:
    view = RegisterView(PREFIX)
    snap = build_snapshot(HALL_A, site=SITE, owner_bin=OWNER, now=T0)
    body = snapshot_payload(snap, seq=0)
    applied = view.handle(f"{PREFIX}/{OWNER}/{SITE}/inventory", json.dumps(body).encode())
    assert applied.agent_id is None and [c["type"] for c in applied.changes] == ["added"] * 3
    assert set(view.sites[(OWNER, SITE)].miners) == set(view.merged(OWNER, SITE))
    assert {m["agent_id"] for m in view.merged(OWNER, SITE).values()} == {None}


def test_a_saved_view_merges_the_same_after_a_restart() -> None:
    a, b = Shard("hall-a"), Shard("hall-b")
    view = RegisterView(PREFIX)
    _feed(view, a.run(HALL_A, T0) + b.run(HALL_B, T0) + b.run(_at([*HALL_B, CARRIED], T1), T1))
    again = RegisterView.from_json(json.loads(json.dumps(view.to_json())))
    assert again.merged(OWNER, SITE) == view.merged(OWNER, SITE)
    # and goes on from there: hall A's late "offline" copy changes nothing
    assert _feed(again, a.run(_at(HALL_A[:2], T1), T1)) == []


def test_clearing_a_retired_stream_removes_only_the_miners_no_agent_has() -> None:
    """A site split across agents: its old single-agent inventory is cleared (an empty retained
    message); the miners an agent now reports stay, the ones nobody polls any more go."""
    view = RegisterView(PREFIX)
    old = build_snapshot(HALL_A, site=SITE, owner_bin=OWNER, now=T0)  # SN0001-3, one agent
    legacy = f"{PREFIX}/{OWNER}/{SITE}/inventory"
    view.handle(legacy, json.dumps(snapshot_payload(old, seq=3)).encode())
    a = Shard("hall-a")
    moved = _feed(view, a.run(_at(HALL_A[:2], T1), T1))  # hall-a's agent polls SN0001-2 now
    assert [(c["type"], c["to"]["agent_id"]) for c in moved] == [("moved", "hall-a")] * 2
    applied = view.handle(legacy, b"")
    assert applied.outcome == "cleared" and (OWNER, SITE) not in view.sites
    assert [(c["type"], c["miner_id"]) for c in applied.changes] == [("removed", "SN0003")]
    assert set(view.merged(OWNER, SITE)) == {"SN0001", "SN0002"}
    # clearing a stream never seen changes nothing
    assert view.handle(f"{PREFIX}/{OWNER}/{SITE}/agent/gone/inventory", b"").changes == ()


@pytest.mark.parametrize(
    "topic",
    [
        f"{PREFIX}/{OWNER}/{SITE}/agent/bad id/inventory",
        f"{PREFIX}/{OWNER}/{SITE}/shard/hall-a/inventory",
        f"{PREFIX}/{OWNER}/{SITE}/agent/hall-a/extra/inventory",
    ],
)
def test_malformed_shard_topics_are_refused(topic: str) -> None:
    with pytest.raises(ReceiverError) as err:
        RegisterView(PREFIX).handle(topic, b"{}")
    assert topic in str(err.value)


# --- end to end ---------------------------------------------------------------------------


@pytest.fixture
def spools(tmp_path: Path) -> Iterator[tuple[Spool, Spool]]:
    with Spool(tmp_path / "a.db") as a, Spool(tmp_path / "b.db") as b:
        yield a, b


_unique = itertools.count()


@pytest.mark.servers
def test_two_agents_on_a_broker_make_one_site_in_the_register(
    mosquitto: Mosquitto, spools: tuple[Spool, Spool], tmp_path: Path
) -> None:
    site = f"{SITE}-{next(_unique)}"
    applied: list[Applied] = []
    lock = threading.Lock()

    def record(a: Applied) -> None:
        if a.site == site:
            with lock:
                applied.append(a)

    pubs = [
        publisher(spools[0], mosquitto.port, site, agent_id="hall-a"),
        publisher(spools[1], mosquitto.port, site, agent_id="hall-b"),
    ]
    assert pubs[0].client_id != pubs[1].client_id  # one broker session each
    rx = RegisterReceiver(
        broker=lab_broker(mosquitto.port, client_id=f"register-{site}"),
        state=tmp_path / "view.json",
        on_applied=record,
    )
    rx.start()
    wait_for(lambda: rx.connects > 0, what="the register connected")
    time.sleep(0.2)  # its SUBACK lands before the agents publish
    for p in pubs:
        p.start()
    try:
        pubs[0].publish_inventory(HALL_A, T0)
        pubs[1].publish_inventory(HALL_B, T0)
        # the first round in before the move, so hall A is the first to have reported SN0003
        # (each agent has its own connection: otherwise either may reach the broker first)
        wait_for(lambda: len(rx.merged(OWNER, site)) == 5, what="the first round")
        pubs[0].publish_inventory(_at(HALL_A[:2], T1), T1)
        pubs[1].publish_inventory(_at([*HALL_B, CARRIED], T1), T1)
        pubs[0].publish_inventory(_at(HALL_A[:2], T2), T2)  # hall A forgets SN0003
        assert all(p.wait_idle(10) for p in pubs)

        def caught_up() -> bool:
            return (
                all(
                    (s := rx.shard(OWNER, site, p.agent_id or "")) is not None
                    and s.seq == p.spool.last_seq(f"{OWNER}/{site}")
                    for p in pubs
                )
                and len(rx.merged(OWNER, site)) == 5
            )

        wait_for(caught_up, 15, "the register caught up with both agents")
    finally:
        for p in pubs:
            p.stop()
        rx.stop()
    with lock:
        changes = [c for a in applied for c in a.changes]
        agents = {a.agent_id for a in applied}
    assert agents == {"hall-a", "hall-b"} and rx.rejected == 0
    assert _site_history(changes, "SN0003") == [
        ("added", None, "hall-a"),
        ("moved", "hall-a", "hall-b"),
    ]
    assert sum(c["type"] == "added" for c in changes) == 5
    assert not any(c["type"] == "removed" for c in changes)
    site_view = rx.merged(OWNER, site)
    assert site_view["SN0003"]["agent_id"] == "hall-b"
    # The one site view is exactly the union of the agents' own inventories, each miner once.
    own = {**pubs[0].last_snapshot().miners, **pubs[1].last_snapshot().miners}  # type: ignore[union-attr]
    assert set(site_view) == set(own)
    assert rx.site(OWNER, site) is None  # nothing on the single-agent topics
