"""One way to build kuat's MQTT clients (register publisher, quota results publisher,
schedule/order receiver, reference register receiver): TLS with server verification, optional
client certificate and password, reconnect back-off, a persistent session, MQTT 5 or 3.1.1, and
a list of brokers to fail over between. Callbacks stay with each user.

MQTT 3.1.1 is there for brokers that speak nothing newer — NATS's MQTT listener, so the
register traffic can run on a NATS cluster. Its persistent session is ``clean_session=False``
(the broker decides how long it keeps it; MQTT 5's session expiry does not exist there) and a
refused message cannot be told apart (no PUBACK reason codes).

Failover: with more than one address, each failed connection attempt and each lost connection
moves the client to the next address (round robin), so a client whose broker node died
reconnects to another node of the cluster at its next retry.
"""

from __future__ import annotations

import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kuat.uplink.broker import BrokerEndpoint, MqttProtocol

__all__ = ["MqttProtocol", "Session", "paho_client"]


class _Client(mqtt.Client):
    """paho's client, its outgoing packets sent from a ``memoryview``.

    paho writes a packet with ``sock.send(packet[pos:])``: on a bytearray, each attempt copies
    what is left of it. A farm's inventory snapshot (19 MB at 50,000 miners) was held three
    times while it was sent: the payload (kept for a resend), the packet made of it, and the
    copy of the packet's rest at each write (bench/inventory_peak.py --send: +55.7 MB over the
    agent's level at each periodic publish, issue 15). A memoryview's slice is a view. paho
    only slices queued packets and takes their length (paho-mqtt 2.1-2.2; tests/uplink/
    test_mqtt_large.py sends one through a broker)."""

    def _packet_queue(
        self,
        command: int,
        packet: bytes | bytearray,
        mid: int,
        qos: int,
        info: mqtt.MQTTMessageInfo | None = None,
    ) -> mqtt.MQTTErrorCode:
        view = memoryview(packet)
        return super()._packet_queue(command, view, mid, qos, info)  # type: ignore[arg-type]


def paho_client(broker: BrokerEndpoint, client_id: str) -> mqtt.Client:
    """A paho client for ``broker`` under ``client_id`` (each user picks its id: the endpoint's
    configured one or its own default). Not connected: ``Session.connect_async`` does that."""
    if broker.protocol == "5":
        client = _Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    else:  # a persistent session in 3.1.1 terms
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
    if broker.tls:
        client.tls_set(
            ca_certs=str(broker.ca_cert) if broker.ca_cert else None,
            certfile=str(broker.client_cert) if broker.client_cert else None,
            keyfile=str(broker.client_key) if broker.client_key else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    # paho annotates the delays as int; it computes with them as float seconds
    client.reconnect_delay_set(broker.reconnect_min_s, broker.reconnect_max_s)  # type: ignore[arg-type]
    return client


class Session:
    """Where a client is connecting now: the broker's addresses in failover order, the
    protocol, and the persistent session's expiry (MQTT 5)."""

    def __init__(self, broker: BrokerEndpoint) -> None:
        self.endpoints = broker.addresses
        self.protocol: MqttProtocol = broker.protocol
        self.session_expiry_s = broker.session_expiry_s
        self.keepalive_s = broker.keepalive_s
        self._i = 0

    @property
    def current(self) -> tuple[str, int]:
        return self.endpoints[self._i]

    def connect_async(self, client: mqtt.Client) -> None:
        host, port = self.current
        kwargs: dict[str, Any] = {}
        if self.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry_s
            kwargs = {"clean_start": False, "properties": props}
        client.connect_async(host, port, keepalive=self.keepalive_s, **kwargs)

    def fail_over(self, client: mqtt.Client) -> None:
        """Point the client at the next address; paho's next retry goes there. Call it from
        on_connect_fail and on_disconnect (the connection is closed then)."""
        if len(self.endpoints) < 2:
            return
        self._i = (self._i + 1) % len(self.endpoints)
        # paho's reconnect() reads _host/_port; its public setters refuse while a reconnect is
        # pending, which is exactly when a failover must change them (paho-mqtt 2.x; the
        # failover tests fail if a paho release moves them).
        client._host, client._port = self.current
