"""The register's inventory snapshot is serialised before the spool's transaction, not inside it.

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
from kuat.uplink.spool import Spool
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


def test_the_snapshot_is_written_without_holding_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Spool(tmp_path / "spool.db") as spool:
        pub = RegisterPublisher(spool, owner_bin="230140000077", site="s", broker=None)
        pub.publish_inventory(fleet(3, T0), T0)
        held: list[bool] = []
        real = inventory.miner_to_json

        def watched(m: inventory.Miner) -> dict[str, object]:
            held.append(held_by_another_thread(spool))
            return real(m)

        monkeypatch.setattr(inventory, "miner_to_json", watched)
        # the same miners again: no change event, so every miner written is the snapshot's
        later = T0 + timedelta(minutes=5)
        report = pub.publish_inventory(fleet(3, later), later)
        payload = json.loads(spool.retained()[pub.inventory_topic])
    assert report.events == 0
    assert len(held) == 3
    assert not any(held), "the snapshot was serialised while the spool's lock was held"
    # the seq put in after the transaction numbered the events: the last one it reflects
    assert payload["seq"] == report.seq == 3
    assert payload["generated_at"] == "2026-12-05T12:05:00Z"
    assert [m["id"] for m in payload["miners"]] == ["SN0001", "SN0002", "SN0003"]
