"""Register publisher: inventory snapshots, change events and agent status over MQTT v5.

Delivery contract (documented for the register team in README / uplink/SCHEMA.md):

* ``{prefix}/{owner_bin}/{site}/inventory`` — full snapshot, QoS 1, retained, republished on
  every (re)connect.
* ``{prefix}/{owner_bin}/{site}/events`` — added/removed/moved/changed, QoS 1, not retained,
  ``seq`` +1 per event per site, a uuid ``id`` to deduplicate QoS 1 redeliveries.
* ``{prefix}/{owner_bin}/{site}/status`` — ``online`` on connect, ``offline`` as the last will
  and on clean shutdown; QoS 1, retained.
* ``{prefix}/{owner_bin}/{site}/replay`` — subscribed: a register's request for events it
  missed, which are queued again from the durable history (``kuat.uplink.register_replay``).

An agent of a site split across agents (``agent_id``, from ``[cluster]``) publishes the same
three topics under ``{prefix}/{owner_bin}/{site}/agent/{agent_id}/``: its own retained
inventory (its shard's miners), its own ``seq`` and its own status and last will, so the agents
never overwrite each other; every payload carries ``agent_id``, and a register merges the
streams into one site (``kuat.uplink.register_merge``).

Durability: every inventory/event message is written to the spool's outbox (fsync) before it
is handed to paho, and deleted only when its PUBACK arrives; a message the broker refuses
(PUBACK reason code ≥ 0x80) moves to ``outbox_dead``. After a restart the whole outbox is
published again, in order. Every event is also appended, in the same transaction, to the
durable register history (``kuat.uplink.register_history``), which outlives the PUBACK: the owner's
``kuat register export --since`` reads removals from there. Within one process paho itself
resends unacknowledged messages after a reconnect (the MQTT session is persistent:
clean_start=False + session expiry).

Threading: paho runs its network thread (``loop_start``); one sender thread owned by this
class makes every ``publish`` call, so outbox order is publish order. Public methods are
thread-safe and quick except ``publish_inventory``, which serialises the snapshot (large
sites: run it via ``asyncio.to_thread``). With no ``broker`` configured nothing connects and
messages stay in the outbox.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt

from kuat.collectors.readings import AsicReading
from kuat.uplink.broker import BrokerEndpoint
from kuat.uplink.inventory import (
    STATUS_SCHEMA,
    Location,
    Snapshot,
    build_snapshot,
    diff_events,
    iso,
    snapshot_from_payload,
    snapshot_json_parts,
)
from kuat.uplink.outbox_sender import OutboxSender
from kuat.uplink.register_history import DEFAULT_RETENTION, HISTORY_KEYS, RegisterHistory
from kuat.uplink.register_replay import (
    MAX_REPLAY,
    REPLAY_BUDGET,
    ReplayError,
    parse_replay,
)
from kuat.uplink.spool import FilePayload, Spool

__all__ = ["InventoryReport", "RegisterPublisher", "topic_base"]

log = logging.getLogger(__name__)


def topic_base(prefix: str, owner_bin: str, site: str, agent_id: str | None = None) -> str:
    """Where a site's register topics live; an agent of a split site has its own stream under
    ``…/{site}/agent/{agent_id}`` (its own retained inventory, ``seq`` and status), which a
    register merges into one site (``kuat.uplink.register_merge``)."""
    base = f"{prefix.strip('/')}/{owner_bin}/{site}"
    return f"{base}/agent/{agent_id}" if agent_id else base


class _Budget:
    """At most ``amount`` units per ``per_s`` seconds (a token bucket, refilled continuously)."""

    def __init__(self, amount: int, per_s: float) -> None:
        self.amount, self.per_s = amount, per_s
        self.left = float(amount)
        self.at = time.monotonic()

    def take(self, n: int) -> bool:
        now = time.monotonic()
        self.left = min(self.amount, self.left + (now - self.at) * self.amount / self.per_s)
        self.at = now
        if n > self.left:
            return False
        self.left -= n
        return True


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class InventoryReport:
    miners: int  # in the new snapshot
    events: int  # queued by this call
    seq: int  # last event seq of the site (the snapshot's ``seq``)


class RegisterPublisher(OutboxSender):
    """Publishes the register topics of one site; see the module docstring."""

    def __init__(
        self,
        spool: Spool,
        *,
        owner_bin: str,
        site: str,
        broker: BrokerEndpoint | None,
        topic_prefix: str = "kz/hsc-register/v1",
        max_inflight: int = 100,
        forget_after: timedelta = timedelta(days=1),
        agent_version: str = "",
        owner: Mapping[str, Any] | None = None,
        data_centre: Mapping[str, Any] | None = None,
        history_retention: timedelta = DEFAULT_RETENTION,
        agent_id: str | None = None,
    ) -> None:
        self.owner_bin = owner_bin
        # the publishing agent, when a site is split across agents ([cluster]): every message
        # says which one sent it
        self.agent_id = agent_id
        self.site = site
        base = topic_base(topic_prefix, owner_bin, site, agent_id)
        self.inventory_topic = f"{base}/inventory"
        self.events_topic = f"{base}/events"
        self.status_topic = f"{base}/status"
        self.replay_topic = f"{base}/replay"  # a register's requests (uplink.register_replay)
        self.forget_after = forget_after
        self.agent_version = agent_version
        self.owner = owner
        self.data_centre = data_centre
        self._seq_key = f"{owner_bin}/{site}"
        self._last: Snapshot | None = None
        self._last_loaded = False
        self._inventory_lock = threading.Lock()
        self.history = RegisterHistory(
            spool,
            seq_key=self._seq_key,
            events_topic=self.events_topic,
            retention=history_retention,
        )
        super().__init__(
            spool,
            broker=broker,
            # agents of one site must not share a client id: the broker would drop one of them
            client_id=(broker.client_id if broker else None)
            or (f"kuat-{owner_bin}-{site}-{agent_id}" if agent_id else f"kuat-{owner_bin}-{site}"),
            label="register broker",
            max_inflight=max_inflight,
        )
        self.replayed = 0  # events queued again for registers since start
        self.replay_refused = 0  # requests refused (malformed, or over the budget)
        self._budget = _Budget(REPLAY_BUDGET, 60.0)
        if self._client is not None:
            self._client.message_callback_add(self.replay_topic, self._on_replay)
            self._client.on_subscribe = self._on_replay_subscribed
        self.replay_subscribed = False  # the broker granted the replay subscription
        self._replay_refusal_said = False

    def __repr__(self) -> str:  # never the password or key paths' contents
        return (
            f"RegisterPublisher(host={self.host!r}, port={self.port}, "
            f"client_id={self.client_id!r}, topics={self.inventory_topic.rsplit('/', 1)[0]!r})"
        )

    def _status(self, state: str, since: datetime) -> bytes:
        body: dict[str, Any] = {
            "schema": STATUS_SCHEMA,
            "state": state,
            "owner_bin": self.owner_bin,
            "site": self.site,
            "client_id": self.client_id,
            "since": iso(since),
        }
        if self.agent_version:
            body["agent_version"] = self.agent_version
        if self.agent_id:
            body["agent_id"] = self.agent_id
        return _json(body)

    def _on_new_connection(self) -> None:
        super()._on_new_connection()  # online status
        if self._client is not None:
            # a register asks here for events it missed (uplink.register_replay)
            self._client.subscribe(self.replay_topic, qos=1)
        # A fresh copy of the inventory goes to the end of the queue; the broker keeps the
        # retained one.
        self.spool.outbox_requeue_retained(self.inventory_topic)

    def _on_replay_subscribed(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any
    ) -> None:
        granted = not any(code.is_failure for code in codes)
        if not granted and (self.replay_subscribed or not self._replay_refusal_said):
            # said once (and again after it was granted once): an ACL without it is a setting
            log.warning(
                "%s %s refused the subscription to %s (%s): a register that misses events "
                "cannot ask this agent to send them again; allow it in the broker's ACL",
                self.label,
                self.where,
                self.replay_topic,
                codes[0] if codes else "?",
            )
            self._replay_refusal_said = True
        self.replay_subscribed = granted

    def _on_replay(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """A register's replay request: the events of its range again, from the history."""
        try:
            req = parse_replay(msg.payload)
        except ReplayError as exc:
            self._refuse_replay(str(exc))
            return
        last = min(req.to_seq, req.from_seq + MAX_REPLAY - 1)
        bodies = self.history.bodies(req.from_seq, last, MAX_REPLAY)
        if not self._budget.take(len(bodies)):
            self._refuse_replay(f"seq {req.from_seq}-{last}: over {REPLAY_BUDGET} events a minute")
            return
        for body in bodies:
            self.spool.outbox_put(self.events_topic, body)
        self.replayed += len(bodies)
        log.info(
            "register asked for events %d-%d of %s: %d queued again",
            req.from_seq,
            req.to_seq,
            self.events_topic,
            len(bodies),
        )
        self._wake.set()

    def _refuse_replay(self, why: str) -> None:
        self.replay_refused += 1
        if self.replay_refused == 1 or self.replay_refused % 100 == 0:  # a flood logs little
            log.warning(
                "register replay request on %s refused (%d so far): %s",
                self.replay_topic,
                self.replay_refused,
                why,
            )

    def last_snapshot(self) -> Snapshot | None:
        """The last queued snapshot (restored from the spool after a restart)."""
        if not self._last_loaded:
            self._last_loaded = True
            raw = self.spool.retained().get(self.inventory_topic)
            if raw is not None:
                try:
                    self._last = snapshot_from_payload(json.loads(raw))
                except (ValueError, KeyError, TypeError):
                    log.exception("stored inventory snapshot unreadable; starting afresh")
        return self._last

    def publish_inventory(
        self,
        readings: Iterable[AsicReading],
        now: datetime,
        *,
        locations: Mapping[tuple[str, int], Location] | None = None,
    ) -> InventoryReport:
        """Build the snapshot from this round's readings, queue the change events and the new
        snapshot durably (one transaction), and wake the sender."""
        with self._inventory_lock:
            previous = self.last_snapshot()
            snap = build_snapshot(
                readings,
                site=self.site,
                owner_bin=self.owner_bin,
                now=now,
                previous=previous,
                forget_after=self.forget_after,
                locations=locations,
                owner=self.owner,
                data_centre=self.data_centre,
            )
            # each event made when encoded, not all held at once as dicts
            events = diff_events(
                previous, snap, after={"agent_id": self.agent_id} if self.agent_id else None
            )

            # Serialised before the spool's transaction, not inside it: the transaction holds
            # the spool's lock, which the event loop takes to spool each chunk of readings, and
            # a 50,000-miner snapshot took 1.3-3 s to write (the loop stalled that long at the
            # inventory job's publish, bench/farm_scale.py --phases), its first inventory's
            # events as long again. The events are written to the spool a chunk at a time
            # (Spool.staged), not held: a farm's first inventory's were 33 MB encoded.
            count = len(events)
            with self.spool.staged(events, keep=HISTORY_KEYS) as staged:
                del events  # a row per event (8 MB for a farm's first inventory), all staged
                extra = {"agent_id": self.agent_id} if self.agent_id else None
                # written to a temporary file beside the spool, not held (FilePayload)
                body = snapshot_json_parts(snap, extra=extra, spill_dir=self.spool.path.parent)

                def snapshot_and_history(last: int) -> bytearray | FilePayload:
                    # outbox_put_sequenced calls this inside its transaction, after numbering
                    # the events: the history rows commit (or roll back) with the outbox rows.
                    seqs = range(last - count + 1, last + 1)
                    self.history.record_in_transaction(staged, seqs, now)
                    return body.with_seq(last)

                seqs = self.spool.outbox_put_sequenced(
                    self._seq_key,
                    self.events_topic,
                    staged,
                    retained=(self.inventory_topic, snapshot_and_history),
                )
            self._last = snap
        self._wake.set()
        return InventoryReport(
            miners=len(snap.miners),
            events=count,
            seq=seqs[-1] if seqs else self.spool.last_seq(self._seq_key),
        )
