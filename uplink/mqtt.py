"""Register publisher: inventory snapshots, change events and agent status over MQTT v5.

Delivery contract (documented for the register team in README / uplink/SCHEMA.md):

* ``{prefix}/{owner_bin}/{site}/inventory`` — full snapshot, QoS 1, retained, republished on
  every (re)connect.
* ``{prefix}/{owner_bin}/{site}/events`` — added/removed/moved/changed, QoS 1, not retained,
  ``seq`` +1 per event per site, a uuid ``id`` to deduplicate QoS 1 redeliveries.
* ``{prefix}/{owner_bin}/{site}/status`` — ``online`` on connect, ``offline`` as the last will
  and on clean shutdown; QoS 1, retained.

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
sites: run it via ``asyncio.to_thread``). With no ``host`` configured nothing connects and
messages stay in the outbox.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from kuat.collectors.readings import AsicReading
from kuat.uplink.inventory import (
    STATUS_SCHEMA,
    Location,
    Snapshot,
    build_snapshot,
    diff,
    iso,
    snapshot_from_payload,
    snapshot_payload,
)
from kuat.uplink.paho_client import paho_client
from kuat.uplink.register_history import DEFAULT_RETENTION, RegisterHistory
from kuat.uplink.spool import Spool, SpoolFull

__all__ = ["InventoryReport", "RegisterPublisher", "topic_base"]

log = logging.getLogger(__name__)

_UNTRACKED = -1  # outbox row id for publishes that are not outbox rows (status)


def topic_base(prefix: str, owner_bin: str, site: str) -> str:
    return f"{prefix.strip('/')}/{owner_bin}/{site}"


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class InventoryReport:
    miners: int  # in the new snapshot
    events: int  # queued by this call
    seq: int  # last event seq of the site (the snapshot's ``seq``)


class RegisterPublisher:
    """Publishes the register topics of one site; see the module docstring."""

    def __init__(
        self,
        spool: Spool,
        *,
        owner_bin: str,
        site: str,
        host: str | None,
        port: int = 8883,
        tls: bool = True,
        ca_cert: Path | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        topic_prefix: str = "kz/hsc-register/v1",
        client_id: str | None = None,
        keepalive_s: int = 30,
        session_expiry_s: int = 7 * 86_400,
        max_inflight: int = 100,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        forget_after: timedelta = timedelta(days=1),
        agent_version: str = "",
        owner: Mapping[str, Any] | None = None,
        data_centre: Mapping[str, Any] | None = None,
        history_retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self.spool = spool
        self.owner_bin = owner_bin
        self.site = site
        self.host = host
        self.port = port
        self.client_id = client_id or f"kuat-{owner_bin}-{site}"
        base = topic_base(topic_prefix, owner_bin, site)
        self.inventory_topic = f"{base}/inventory"
        self.events_topic = f"{base}/events"
        self.status_topic = f"{base}/status"
        self.forget_after = forget_after
        self.agent_version = agent_version
        self.owner = owner
        self.data_centre = data_centre
        self.max_inflight = max_inflight
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

        self._map_lock = threading.Lock()  # never held while calling into paho
        self._inflight: dict[int, int] = {}  # paho mid -> outbox row id
        self._early: dict[int, ReasonCode | None] = {}  # PUBACKs that beat the bookkeeping
        self._last_handed = 0  # highest outbox row id handed to paho in this process
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._conn_gen = 0  # bumped per successful connect; the sender reacts once per value
        self._seen_gen = 0
        self._connected_since = datetime.now(UTC)
        self._ever_connected = False
        self._down_reported = False
        self._sender: threading.Thread | None = None
        self._client: mqtt.Client | None = None

        if host:
            self._client = self._make_client(
                tls,
                ca_cert,
                client_cert,
                client_key,
                username,
                password,
                keepalive_s,
                session_expiry_s,
                reconnect_min_s,
                reconnect_max_s,
            )

    def __repr__(self) -> str:  # never the password or key paths' contents
        return (
            f"RegisterPublisher(host={self.host!r}, port={self.port}, "
            f"client_id={self.client_id!r}, topics={self.inventory_topic.rsplit('/', 1)[0]!r})"
        )

    # --- paho setup ---------------------------------------------------------------------

    def _make_client(
        self,
        tls: bool,
        ca_cert: Path | None,
        client_cert: Path | None,
        client_key: Path | None,
        username: str | None,
        password: str | None,
        keepalive_s: int,
        session_expiry_s: int,
        reconnect_min_s: float,
        reconnect_max_s: float,
    ) -> mqtt.Client:
        client = paho_client(
            self.client_id,
            tls=tls,
            ca_cert=ca_cert,
            client_cert=client_cert,
            client_key=client_key,
            username=username,
            password=password,
            reconnect_min_s=reconnect_min_s,
            reconnect_max_s=reconnect_max_s,
        )
        client.max_inflight_messages_set(self.max_inflight)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        self._keepalive_s = keepalive_s
        self._connect_props = Properties(PacketTypes.CONNECT)
        self._connect_props.SessionExpiryInterval = session_expiry_s
        return client

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
        return _json(body)

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        # The will is fixed per connection; refresh its time before each attempt.
        client.will_set(
            self.status_topic, self._status("offline", datetime.now(UTC)), qos=1, retain=True
        )

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            log.error(
                "register broker %s:%d refused the connection: %s",
                self.host,
                self.port,
                reason_code,
            )
            return
        log.info(
            "connected to register broker %s:%d (session present: %s)",
            self.host,
            self.port,
            flags.session_present,
        )
        self._connected_since = datetime.now(UTC)
        self._down_reported = False
        self._ever_connected = True
        self._conn_gen += 1
        self._connected.set()
        self._wake.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._connected.clear()
        if self._stopping.is_set():
            return
        # Once per outage: a broker that stays away must not fill the journal every retry.
        if self._down_reported:
            log.debug(
                "register broker %s:%d still unreachable: %s", self.host, self.port, reason_code
            )
            return
        self._down_reported = True
        hint = (
            ""
            if self._ever_connected
            else " (never connected: check the address, the TLS CA and the client certificate)"
        )
        log.warning(
            "register broker %s:%d disconnected: %s; retrying, messages wait in the outbox%s",
            self.host,
            self.port,
            reason_code,
            hint,
        )

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this for every failed TCP/TLS connect (refused, unreachable, handshake);
        # without it a broker down from the start left the journal silent.
        if self._stopping.is_set():
            return
        if self._down_reported:
            log.debug("register broker %s:%d still unreachable", self.host, self.port)
            return
        self._down_reported = True
        hint = (
            ""
            if self._ever_connected
            else " (never connected: check the address, the TLS CA and the client certificate)"
        )
        log.warning(
            "register broker %s:%d unreachable: cannot connect; retrying, messages wait in the "
            "outbox%s",
            self.host,
            self.port,
            hint,
        )

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        # Runs on paho's network thread holding paho's message lock: no publishing here.
        with self._map_lock:
            row = self._inflight.pop(mid, None)
            if row is None:
                self._early[mid] = reason_code
                return
        self._settle(row, reason_code)

    def _settle(self, row: int, reason_code: ReasonCode | None) -> None:
        if row != _UNTRACKED:
            try:
                if reason_code is not None and reason_code.is_failure:
                    log.error("register broker refused outbox message %d: %s", row, reason_code)
                    self.spool.outbox_dead_letter(row, str(reason_code))
                else:
                    self.spool.outbox_ack(row)
            except SpoolFull:
                # Often on paho's network thread, which an exception would end. The row stays
                # in the outbox and goes again after a restart (receivers dedupe by id); the
                # spool has said that the disk is full.
                log.debug("outbox message %d delivered but not marked: disk full", row)
        self._wake.set()

    # --- sender thread ------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool, row: int) -> None:
        assert self._client is not None
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        # rc NO_CONN still queues QoS>0 messages inside paho; they go out on reconnect.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"paho refused to queue a message: {mqtt.error_string(info.rc)}")
        with self._map_lock:
            early = info.mid in self._early
            reason = self._early.pop(info.mid, None)
            if not early:
                self._inflight[info.mid] = row
        if early:
            self._settle(row, reason)

    def _on_new_connection(self) -> None:
        self._publish(
            self.status_topic, self._status("online", self._connected_since), 1, True, _UNTRACKED
        )
        inventory = self.spool.retained().get(self.inventory_topic)
        if inventory is not None:
            # A fresh copy goes to the end of the queue; the broker keeps the retained one.
            self.spool.outbox_put(self.inventory_topic, inventory, retain=True, coalesce=True)

    def _pump(self) -> None:
        if self._conn_gen != self._seen_gen and self._connected.is_set():
            self._seen_gen = self._conn_gen
            self._on_new_connection()
        if not self._connected.is_set():
            return
        with self._map_lock:
            room = self.max_inflight - len(self._inflight)
        if room <= 0:
            return
        for msg in self.spool.outbox_peek(after_id=self._last_handed, limit=room):
            try:
                self._publish(msg.topic, msg.payload, msg.qos, msg.retain, msg.id)
            except ValueError as exc:  # e.g. payload over the MQTT size limit: never sendable
                log.error("outbox message %d to %s unsendable: %s", msg.id, msg.topic, exc)
                self.spool.outbox_dead_letter(msg.id, f"unsendable: {exc}")
            self._last_handed = msg.id

    def _run_sender(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                self._pump()
            except Exception:  # keep the sender alive; the outbox keeps the messages
                log.exception("register sender failed; retrying")
                time.sleep(1.0)

    # --- public API ---------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._client is not None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background (retrying forever) and start sending. Returns at once."""
        # a client exists only when a host was given; the host test says so to the type checker
        if self._client is None or not self.host or self._sender is not None:
            return
        self._stopping.clear()
        with self._map_lock:  # a restart after stop() hands the whole outbox over again
            self._inflight.clear()
            self._early.clear()
        self._last_handed = 0
        self._client.connect_async(
            self.host,
            self.port,
            keepalive=self._keepalive_s,
            clean_start=False,
            properties=self._connect_props,
        )
        self._client.loop_start()
        self._sender = threading.Thread(
            target=self._run_sender, name="kuat-mqtt-sender", daemon=True
        )
        self._sender.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Send what can be sent within ``timeout_s``, announce ``offline``, disconnect.

        Unacknowledged messages stay in the outbox for the next start.
        """
        if self._client is None or self._sender is None:
            return
        if self._connected.is_set():
            self.wait_idle(timeout_s)
        if self._connected.is_set():
            info = self._client.publish(
                self.status_topic,
                self._status("offline", datetime.now(UTC)),
                qos=1,
                retain=True,
            )
            deadline = time.monotonic() + min(timeout_s, 2.0)
            while not info.is_published() and time.monotonic() < deadline:
                time.sleep(0.01)
        self._stopping.set()
        self._wake.set()
        self._sender.join(timeout_s)
        self._sender = None
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def kick(self) -> None:
        """Ask the sender to look at the outbox now (after queueing from outside)."""
        self._wake.set()

    def pending(self) -> int:
        """Messages in the outbox (not yet acknowledged by the broker)."""
        return self.spool.counts().outbox

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until the outbox is empty (every message acknowledged) or the timeout."""
        deadline = time.monotonic() + timeout_s
        while self.pending():
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            time.sleep(0.02)
        return True

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
            events = diff(previous, snap)

            def snapshot_and_history(last: int) -> bytes:
                # outbox_put_sequenced calls this inside its transaction, after numbering the
                # events: the history rows commit (or roll back) with the outbox rows.
                seqs = range(last - len(events) + 1, last + 1)
                self.history.record_in_transaction(events, seqs, now)
                return _json(snapshot_payload(snap, seq=last))

            seqs = self.spool.outbox_put_sequenced(
                self._seq_key,
                self.events_topic,
                events,
                retained=(self.inventory_topic, snapshot_and_history),
            )
            self._last = snap
        self._wake.set()
        return InventoryReport(
            miners=len(snap.miners),
            events=len(events),
            seq=seqs[-1] if seqs else self.spool.last_seq(self._seq_key),
        )
