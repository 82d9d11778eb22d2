"""The register's inventory snapshot and change events are serialised before the spool's
transaction, not inside it.

The transaction holds the spool's lock, which the agent's event loop takes to spool each chunk
of miner readings: written inside it, a 50,000-miner snapshot (1.3-3 s of JSON) stalled the loop
that long at every inventory publish (bench/farm_scale.py --phases, ~3 s stalls).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.uplink import inventory
from kuat.uplink.mqtt import RegisterPublisher
from kuat.uplink.spool import SequencedJson, Spool
from tests.uplink.test_mqtt import fleet

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def held_by_another_thread(spool: Spool) -> bool:
    """True if a thread other than this one could not take the spool's lock now (what the
    event loop's telemetry write would wait for)."""
    _, lock = spool.shared_connection()
    taken: list[bool] = []

    def attempt() -> None:
        got = lock.acquire(timeout=0)
        if got:
            lock.release()
        taken.append(got)

    t = threading.Thread(target=attempt)
    t.start()
    t.join()
    return not taken[0]


def test_the_snapshot_and_events_are_written_without_holding_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held: list[bool] = []
    with Spool(tmp_path / "spool.db") as spool:
        real = inventory.miner_to_json

        def watched(m: inventory.Miner) -> dict[str, object]:
            held.append(held_by_another_thread(spool))
            return real(m)

        monkeypatch.setattr(inventory, "miner_to_json", watched)
        pub = RegisterPublisher(spool, owner_bin="230140000077", site="s", broker=None)
        # a first inventory: an "added" event per miner, then the snapshot
        first = pub.publish_inventory(fleet(3, T0), T0)
        events = [json.loads(m.payload) for m in spool.outbox_peek() if not m.retain]
        history = pub.history.bodies(1, 3, 10)
        # the same miners again: no change event, only the snapshot
        later = T0 + timedelta(minutes=5)
        report = pub.publish_inventory(fleet(3, later), later)
        payload = json.loads(spool.retained()[pub.inventory_topic])
    assert (first.events, report.events) == (3, 0)
    assert len(held) == 3 + 3 + 3
    assert not any(held), "the inventory was serialised while the spool's lock was held"
    # the seqs put in by the transaction that numbered the events
    assert [(e["seq"], e["type"], e["miner_id"]) for e in events] == [
        (1, "added", "SN0001"),
        (2, "added", "SN0002"),
        (3, "added", "SN0003"),
    ]
    assert history == [
        json.dumps(e, ensure_ascii=False, separators=(",", ":")).encode() for e in events
    ]
    assert payload["seq"] == report.seq == 3
    assert payload["generated_at"] == "2026-12-05T12:05:00Z"
    assert [m["id"] for m in payload["miners"]] == ["SN0001", "SN0002", "SN0003"]


@pytest.mark.parametrize(
    "body",
    [
        {"a": 1},
        {"type": "added", "miner": {"id": "Ж-1", "pool": None, "w": 3.5}, "note": 'q"\\u2028'},
        {"id": "x", "changes": {"model": {"from": "S19", "to": "S21"}}, "agent_id": "a"},
    ],
)
def test_a_sequenced_body_is_the_body_with_its_seq_dumped(body: dict[str, object]) -> None:
    encoded = SequencedJson([{"first": 0}, body])
    dumped = json.dumps({**body, "seq": 41}, ensure_ascii=False, separators=(",", ":"))
    assert encoded.payload(1, 41) == dumped.encode()
    assert len(encoded) == 2


def test_a_sequenced_body_with_its_own_seq_is_refused() -> None:
    with pytest.raises(ValueError):
        SequencedJson([{"seq": 1}])
