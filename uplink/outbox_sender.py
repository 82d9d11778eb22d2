"""An MQTT v5 sender that delivers the rows of a spool's outbox, in order, at least once.

Shared by the register publisher (``kuat.uplink.mqtt``) and the quota results publisher
(``kuat.uplink.quota_publisher``). Every message is written to the outbox (fsync) before it is
handed to paho and deleted only when its PUBACK arrives; a message the broker refuses (PUBACK
reason code >= 0x80) moves to ``outbox_dead``. After a restart the whole outbox goes again, in
order. Within one process paho resends unacknowledged messages after a reconnect (the session is
persistent: clean_start=False + session expiry).

Threading: paho runs its network thread (``loop_start``); one sender thread owned by this class
makes every ``publish`` call, so outbox order is publish order. With no ``broker`` nothing
connects and messages stay in the outbox. A subclass may name a ``status_topic``: then
``online`` is published on every connect and ``offline`` is the last will and the clean-stop
message (``_status`` builds them).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from kuat.uplink.broker import BrokerEndpoint
from kuat.uplink.paho_client import Session, paho_client
from kuat.uplink.spool import Spool, SpoolFull

__all__ = ["UNTRACKED", "OutboxSender"]

log = logging.getLogger("kuat.uplink.mqtt")

UNTRACKED = -1  # outbox row id for publishes that are not outbox rows (status)


class OutboxSender:
    """Delivers ``spool``'s outbox to one broker; see the module docstring."""

    status_topic: str | None = None

    def __init__(
        self,
        spool: Spool,
        *,
        broker: BrokerEndpoint | None,
        client_id: str,
        label: str,
        max_inflight: int = 100,
    ) -> None:
        self.spool = spool
        # no broker (or no host): nothing connects and messages stay in the outbox
        self.broker = broker if broker is not None and broker.host else None
        self.client_id = client_id
        self.label = label  # how the logs name the broker ("register broker")
        self.max_inflight = max_inflight
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
        self.session = Session(broker or BrokerEndpoint(host=""))
        if self.broker is not None:
            self._client = self._make_client(self.broker)

    def _status(self, state: str, since: datetime) -> bytes:
        raise NotImplementedError  # only called when a subclass names a status_topic

    def _on_new_connection(self) -> None:
        if self.status_topic is not None:
            self._publish(
                self.status_topic,
                self._status("online", self._connected_since),
                1,
                True,
                UNTRACKED,
            )

    # --- paho setup ---------------------------------------------------------------------

    def _make_client(self, broker: BrokerEndpoint) -> mqtt.Client:
        client = paho_client(broker, self.client_id)
        client.max_inflight_messages_set(self.max_inflight)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        return client

    @property
    def host(self) -> str | None:
        """The first broker node, ``None`` when nothing connects."""
        return self.broker.host if self.broker is not None else None

    @property
    def port(self) -> int:
        return self.session.endpoints[0][1]

    @property
    def where(self) -> str:
        """The broker address in use (failover moves it)."""
        host, port = self.session.current
        return f"{host}:{port}"

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        # The will is fixed per connection; refresh its time before each attempt.
        if self.status_topic is not None:
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
                "%s %s refused the connection: %s",
                self.label,
                self.where,
                reason_code,
            )
            return
        log.info(
            "connected to %s %s (session present: %s)",
            self.label,
            self.where,
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
        try:
            self._say_disconnected(reason_code)
        finally:
            self.session.fail_over(client)

    def _say_disconnected(self, reason_code: ReasonCode) -> None:
        # Once per outage: a broker that stays away must not fill the journal every retry.
        if self._down_reported:
            log.debug("%s %s still unreachable: %s", self.label, self.where, reason_code)
            return
        self._down_reported = True
        hint = (
            ""
            if self._ever_connected
            else " (never connected: check the address, the TLS CA and the client certificate)"
        )
        log.warning(
            "%s %s disconnected: %s; retrying, messages wait in the outbox%s",
            self.label,
            self.where,
            reason_code,
            hint,
        )

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this for every failed TCP/TLS connect (refused, unreachable, handshake);
        # without it a broker down from the start left the journal silent.
        if self._stopping.is_set():
            return
        try:
            self._say_unreachable()
        finally:
            self.session.fail_over(client)

    def _say_unreachable(self) -> None:
        if self._down_reported:
            log.debug("%s %s still unreachable", self.label, self.where)
            return
        self._down_reported = True
        hint = (
            ""
            if self._ever_connected
            else " (never connected: check the address, the TLS CA and the client certificate)"
        )
        log.warning(
            "%s %s unreachable: cannot connect; retrying, messages wait in the outbox%s",
            self.label,
            self.where,
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
        if row != UNTRACKED:
            try:
                if reason_code is not None and reason_code.is_failure:
                    log.error("%s refused outbox message %d: %s", self.label, row, reason_code)
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
                log.exception("%s sender failed; retrying", self.label)
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
        if self._client is None or self._sender is not None:
            return
        self._stopping.clear()
        with self._map_lock:  # a restart after stop() hands the whole outbox over again
            self._inflight.clear()
            self._early.clear()
        self._last_handed = 0
        self.session.connect_async(self._client)
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
        if self._connected.is_set() and self.status_topic is not None:
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
