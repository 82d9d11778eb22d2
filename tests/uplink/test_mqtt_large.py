"""A farm-sized message through a real broker: kuat's MQTT clients send it whole and intact,
and make no copy of it to send it (the payload, kept for a resend, is the only one).

A 50,000-miner inventory snapshot is 19 MB of JSON. paho built its packet by copying the
payload and wrote it with ``sock.send(packet[pos:])``, a copy of the packet's rest at each
write, so the agent held it three times while it was sent (issue 15; bench/inventory_peak.py
--send). Session 12 removed the copies per write; the packet's copy went in session 13."""

from __future__ import annotations

import hashlib
import os
import queue
import subprocess
import sys
import threading
import tracemalloc

import pytest

from kuat.uplink.paho_client import Session, paho_client
from tests.servers import Mosquitto, TlsFiles
from tests.uplink.test_mqtt import lab_broker

pytestmark = pytest.mark.servers

SIZE = 6 * 1024 * 1024


RECEIVER = """
import hashlib, sys
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

port, topic, *tls = sys.argv[1:]
client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
if tls:
    client.tls_set(ca_certs=tls[0], certfile=tls[1], keyfile=tls[2])
client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
client.on_subscribe = lambda *a: print("subscribed", flush=True)
client.on_message = lambda c, u, m: print(
    len(m.payload), hashlib.sha256(m.payload).hexdigest(), flush=True
)
client.connect("127.0.0.1", int(port))
client.loop_forever()
"""


class Receiver:
    """A plain paho subscriber in its own process (so that what it receives is not counted
    with what the sender holds) that prints the length and digest of what it receives."""

    def __init__(self, port: int, topic: str, tls: TlsFiles | None) -> None:
        files = [] if tls is None else [str(tls.ca_cert), str(tls.client_cert), str(tls.client_key)]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECEIVER, str(port), topic, *files],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def next(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return ""

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_farm_sized_message_goes_whole_and_is_never_copied(
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
        assert rx.next(20) == "subscribed" and connected.wait(10)
        payload = os.urandom(SIZE)
        tracemalloc.start()
        try:
            info = client.publish(topic, payload, qos=1)
            info.wait_for_publish(30)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert info.is_published()
        assert rx.next(30) == f"{SIZE} {hashlib.sha256(payload).hexdigest()}"
        # neither a packet made of the payload nor a copy of its rest per socket write
        assert peak < 0.1 * SIZE, f"{peak / SIZE:.2f} times the payload copied to send it"
    finally:
        client.disconnect()
        client.loop_stop()
        rx.close()
