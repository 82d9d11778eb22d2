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
import struct
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kuat.uplink.broker import BrokerEndpoint, MqttProtocol

__all__ = ["MqttProtocol", "Session", "paho_client"]


JOIN_BELOW = 64 * 1024  # a payload smaller than this is copied into its packet (one send)


class _Publish:
    """A PUBLISH packet as its header and its payload, never joined: paho only takes a queued
    packet's length and slices its rest (``packet[pos:]``) to send it; a slice here is a view
    of the header's rest or of the payload's (a short write, and paho sends the rest next)."""

    __slots__ = ("_body", "_head")

    def __init__(self, head: bytes, body: bytes | bytearray) -> None:
        self._head = memoryview(head)
        self._body = memoryview(body)

    def __len__(self) -> int:
        return len(self._head) + len(self._body)

    def __getitem__(self, rest: slice) -> memoryview:
        pos = rest.start or 0
        if pos < len(self._head):
            return self._head[pos:]
        return self._body[pos - len(self._head) :]


class _Client(mqtt.Client):
    """paho's client, its PUBLISH packets sent from the payload itself, never a copy of it.

    A farm's inventory snapshot (19 MB at 50,000 miners) was held three times while it was
    sent: the payload (which paho keeps for a resend), the packet paho builds by copying it,
    and the copy of the packet's rest that paho's ``sock.send(packet[pos:])`` made at each
    write of a bytearray. The agent's peak with a register broker was each delivered publish
    (bench/inventory_peak.py --send; bench.farm_scale --register: 310 MB, issue 15). Here the
    packet is its header and a view of the payload (``_Publish``); other packets are queued as
    memoryviews, whose slices are views too.

    This overrides two private methods of paho-mqtt 2.1-2.2 (pinned ``<3``): ``_send_publish``
    (called by ``publish`` and for every resend after a reconnect) and ``_packet_queue``, and
    uses its ``_pack_remaining_length``/``_pack_str16``. tests/uplink/test_mqtt_large.py sends
    a farm-sized message through a broker, plain and over TLS; the MQTT tests send every other
    message and resend through this path.
    """

    def _send_publish(
        self,
        mid: int,
        topic: bytes,
        payload: bytes | bytearray = b"",
        qos: int = 0,
        retain: bool = False,
        dup: bool = False,
        info: mqtt.MQTTMessageInfo | None = None,
        properties: Properties | None = None,
    ) -> mqtt.MQTTErrorCode:
        # paho's own checks and its packet layout (MQTT 3.1.1 section 3.3, 5.0 section 3.3)
        if not isinstance(topic, bytes):
            raise TypeError("topic must be bytes, not str")
        if payload and not isinstance(payload, (bytes, bytearray)):
            raise TypeError("payload must be bytes if set")
        if self._sock is None:
            return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
        self._easy_log(
            mqtt.MQTT_LOG_DEBUG,
            "Sending PUBLISH (d%d, q%d, r%d, m%d), '%s', ... (%d bytes)",
            dup, qos, retain, mid, topic, len(payload),
        )  # fmt: skip
        head = bytearray([mqtt.PUBLISH | ((dup & 0x1) << 3) | (qos << 1) | retain])
        props = b""
        if self._protocol == mqtt.MQTTv5:
            props = b"\x00" if properties is None else properties.pack()
        rest = 2 + len(topic) + (2 if qos > 0 else 0) + len(props) + len(payload)
        self._pack_remaining_length(head, rest)
        self._pack_str16(head, topic)
        if qos > 0:
            head += struct.pack("!H", mid)
        head += props
        if len(payload) < JOIN_BELOW:
            return self._packet_queue(mqtt.PUBLISH, head + payload, mid, qos, info)
        packet = _Publish(bytes(head), payload)
        return super()._packet_queue(mqtt.PUBLISH, packet, mid, qos, info)  # type: ignore[arg-type]

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
