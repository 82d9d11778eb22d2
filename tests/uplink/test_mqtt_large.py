"""A farm-sized message through a real broker: kuat's MQTT clients send it whole and intact,
holding it no more than twice (the payload kept for a resend and the packet made of it).

A 50,000-miner inventory snapshot is 19 MB of JSON. paho wrote a packet with
``sock.send(packet[pos:])``, a copy of the packet's rest at each write, so the agent held it a
third time while it was sent (issue 15; bench/inventory_peak.py --send)."""

from __future__ import annotations

import hashlib
import os
import threading
import tracemalloc

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kuat.uplink.paho_client import Session, paho_client
from tests.servers import Mosquitto, TlsFiles
from tests.uplink.test_mqtt import lab_broker, wait_for

pytestmark = pytest.mark.servers

SIZE = 6 * 1024 * 1024


class Receiver:
    """A plain paho subscriber that keeps the digest and length of what it receives."""

    def __init__(self, port: int, topic: str, tls: TlsFiles | None) -> None:
        self.got: list[tuple[int, str]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if tls is not None:
            self.client.tls_set(
                ca_certs=str(tls.ca_cert),
                certfile=str(tls.client_cert),
                keyfile=str(tls.client_key),
            )
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_message = lambda c, u, m: self.got.append(
            (len(m.payload), hashlib.sha256(m.payload).hexdigest())
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_farm_sized_message_goes_whole_and_is_held_twice_at_most(
    request: pytest.FixtureRequest, tls: bool
) -> None:
    if tls:
        broker: Mosquitto = request.getfixturevalue("mosquitto_tls")
        certs: TlsFiles | None = request.getfixturevalue("tls_certs")
        assert certs is not None and broker.tls_port is not None
        endpoint = lab_broker(
            broker.tls_port,
            tls=True,
            ca_cert=certs.ca_cert,
            client_cert=certs.client_cert,
            client_key=certs.client_key,
        )
        port = broker.tls_port
    else:
        broker = request.getfixturevalue("mosquitto")
        certs = None
        endpoint = lab_broker(broker.port)
        port = broker.port
    topic = f"kz/test/large/{'tls' if tls else 'plain'}"
    rx = Receiver(port, topic, certs)
    client = paho_client(endpoint, client_id="")
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    Session(endpoint).connect_async(client)
    client.loop_start()
    try:
        assert rx.subscribed.wait(10) and connected.wait(10)
        payload = os.urandom(SIZE)
        tracemalloc.start()
        try:
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(30)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert info.is_published()
        wait_for(lambda: bool(rx.got), 30, "the large message at the subscriber")
        assert rx.got == [(SIZE, hashlib.sha256(payload).hexdigest())]
        # the packet made of the payload, and no copy of it per socket write
        assert peak < 1.5 * SIZE, f"{peak / SIZE:.2f} times the payload held while it was sent"
    finally:
        client.disconnect()
        client.loop_stop()
        rx.close()
