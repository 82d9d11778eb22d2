from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kuat.collectors.readings import AsicReading
from kuat.uplink.broker import BrokerEndpoint
from kuat.uplink.mqtt import RegisterPublisher
from kuat.uplink.spool import Spool
from tests.servers import Mosquitto, TlsFiles
from tests.uplink.schema_check import validate

pytestmark = pytest.mark.servers

OWNER = "230140000001"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def wait_for(cond: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Msg:
    topic: str
    payload: dict
    retain: bool


class Subscriber:
    """A paho subscriber standing in for the register."""

    def __init__(
        self,
        port: int,
        topic: str,
        *,
        client_id: str | None = None,
        persistent: bool = False,
        tls: TlsFiles | None = None,
    ) -> None:
        self.messages: list[Msg] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or "", protocol=mqtt.MQTTv5
        )
        if tls is not None:
            self.client.tls_set(
                ca_certs=str(tls.ca_cert),
                certfile=str(tls.client_cert),
                keyfile=str(tls.client_key),
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self.client.reconnect_delay_set(0.1, 0.3)  # type: ignore[arg-type]
        self.client.on_connect = lambda c, u, f, rc, p: (
            c.subscribe(topic, qos=1),
            self.subscribed.set(),
        )
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if persistent else 0
        self.client.connect_async("127.0.0.1", port, clean_start=not persistent, properties=props)
        self.client.loop_start()
        wait_for(self.subscribed.is_set, what="subscriber connected")
        time.sleep(0.1)  # let SUBACK land before the test publishes

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Msg(msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def on(self, suffix: str) -> list[Msg]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith("/" + suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def fleet(n: int, t: datetime, ip_base: int = 1, firmware: str = "2025.01") -> list[AsicReading]:
    return [
        AsicReading(
            ip=f"10.0.{ip_base}.{i}",
            port=4028,
            taken_at=t,
            vendor="Bitmain",
            model="S21",
            serial=f"SN{i:04d}",
            firmware=firmware,
            hashrate_nominal_ths=200.0,
            power_limit_w=3500.0,
        )
        for i in range(1, n + 1)
    ]


_BROKER_FIELDS = {f.name for f in fields(BrokerEndpoint)}


def lab_broker(port: int, **kw: object) -> BrokerEndpoint:
    """A broker on loopback, no TLS unless asked, retrying fast."""
    given: dict[str, object] = {"tls": False, "reconnect_min_s": 0.1, "reconnect_max_s": 0.3}
    return BrokerEndpoint("127.0.0.1", port, **{**given, **kw})  # type: ignore[arg-type]


def publisher(spool: Spool, port: int | None, site: str, **kw: object) -> RegisterPublisher:
    """A publisher to a lab broker (none without a port); broker settings go in ``kw`` too."""
    broker_kw = {k: kw.pop(k) for k in list(kw) if k in _BROKER_FIELDS}
    return RegisterPublisher(
        spool,
        owner_bin=OWNER,
        site=site,
        broker=lab_broker(port, **broker_kw) if port else None,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool.db") as sp:
        yield sp


def test_retained_inventory_status_and_will(mosquitto: Mosquitto, spool: Spool) -> None:
    pub = publisher(spool, mosquitto.port, "site-a", agent_version="0.1.0")
    pub.start()
    try:
        report = pub.publish_inventory(fleet(3, T0), T0)
        assert (report.miners, report.events, report.seq) == (3, 3, 3)
        assert pub.wait_idle(10)
        # A register connecting later gets the retained snapshot and status.
        sub = Subscriber(mosquitto.port, f"kz/hsc-register/v1/{OWNER}/site-a/#")
        wait_for(lambda: sub.on("inventory") and sub.on("status"), what="retained messages")
        (inv,) = sub.on("inventory")
        assert inv.retain and inv.payload["count"] == 3 and inv.payload["seq"] == 3
        assert [m["id"] for m in inv.payload["miners"]] == ["SN0001", "SN0002", "SN0003"]
        validate("inventory.v1", inv.payload)
        (st,) = sub.on("status")
        assert st.retain and st.payload["state"] == "online"
        validate("status.v1", st.payload)
        assert sub.on("events") == []  # events are not retained
        assert "password" not in repr(pub)
    finally:
        pub.stop()
    wait_for(lambda: sub.on("status")[-1].payload["state"] == "offline", what="offline status")
    validate("status.v1", sub.on("status")[-1].payload)
    sub.close()


def test_broker_restart_events_in_order_without_gap(mosquitto: Mosquitto, spool: Spool) -> None:
    site = "site-b"
    sub = Subscriber(
        mosquitto.port,
        f"kz/hsc-register/v1/{OWNER}/{site}/events",
        client_id="register-b",
        persistent=True,
    )
    pub = publisher(spool, mosquitto.port, site)
    pub.start()
    try:
        t = T0
        pub.publish_inventory(fleet(5, t), t)  # seq 1-5: added
        assert pub.wait_idle(10)
        mosquitto.stop()
        wait_for(lambda: not pub.connected, what="publisher to notice the outage")
        for k in range(1, 4):  # three rounds of moves while the broker is down
            t = T0 + timedelta(minutes=k)
            pub.publish_inventory(fleet(5, t, ip_base=k + 1), t)
        assert pub.pending() == 5 * 3 + 1  # 15 moved events + the latest snapshot
        mosquitto.start()
        assert pub.wait_idle(15)
        wait_for(
            lambda: len({m.payload["id"] for m in sub.on("events")}) == 20,
            15,
            "all 20 events at the register",
        )
    finally:
        pub.stop()
        sub.close()
    seen: dict[str, dict] = {}
    for m in sub.on("events"):
        seen.setdefault(m.payload["id"], m.payload)  # QoS 1: dedupe by id
    events = list(seen.values())
    assert [e["seq"] for e in events] == list(range(1, 21))  # in order, no gap
    assert [e["type"] for e in events] == ["added"] * 5 + ["moved"] * 15
    for e in events:
        validate("event.v1", e)


def test_no_broker_keeps_outbox_then_replays(mosquitto: Mosquitto, tmp_path: Path) -> None:
    site = "site-c"
    with Spool(tmp_path / "spool.db") as sp:
        offline = publisher(sp, None, site)
        offline.start()  # no host: nothing connects
        offline.publish_inventory(fleet(2, T0), T0)
        assert sp.counts().outbox == 3 and not offline.enabled
        offline.stop()
    # Restart of the agent, now with a broker: the outbox is replayed and the history kept.
    with Spool(tmp_path / "spool.db") as sp:
        sub = Subscriber(mosquitto.port, f"kz/hsc-register/v1/{OWNER}/{site}/#")
        pub = publisher(sp, mosquitto.port, site)
        pub.start()
        try:
            assert pub.wait_idle(10)
            t1 = T0 + timedelta(minutes=1)
            report = pub.publish_inventory([*fleet(2, t1)[:1], *fleet(3, t1)[2:]], t1)
            assert report.events == 1 and report.seq == 3  # SN0003 added; SN0002 offline
            assert pub.wait_idle(10)
            wait_for(lambda: len(sub.on("events")) == 3, what="events")
        finally:
            pub.stop()
            sub.close()
    assert [(m.payload["seq"], m.payload["type"]) for m in sub.on("events")] == [
        (1, "added"),
        (2, "added"),
        (3, "added"),
    ]
    assert sub.on("inventory")[-1].payload["count"] == 3


_KILLED_PUBLISHER = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime, UTC
    from pathlib import Path
    from kuat.collectors.readings import AsicReading
    from kuat.uplink.broker import BrokerEndpoint
    from kuat.uplink.mqtt import RegisterPublisher
    from kuat.uplink.spool import Spool
    sp = Spool(Path(sys.argv[1]))
    broker = BrokerEndpoint("127.0.0.1", int(sys.argv[2]), tls=False, keepalive_s=2)
    pub = RegisterPublisher(sp, owner_bin="230140000001", site="site-d", broker=broker)
    pub.start()
    while not pub.connected:
        time.sleep(0.01)
    pub.wait_idle(5)
    print("online", flush=True)
    time.sleep(60)
    """
)


def test_last_will_on_kill_9(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sub = Subscriber(mosquitto.port, f"kz/hsc-register/v1/{OWNER}/site-d/status")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_PUBLISHER, str(tmp_path / "s.db"), str(mosquitto.port)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "online"
        wait_for(lambda: any(m.payload["state"] == "online" for m in sub.on("status")))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # The broker sees the socket close and publishes the will.
        wait_for(lambda: sub.on("status")[-1].payload["state"] == "offline", 10, "last will")
        will = sub.on("status")[-1].payload
        validate("status.v1", will)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()


def test_tls_with_client_certificates(
    mosquitto_tls: Mosquitto, tls_certs: TlsFiles, spool: Spool
) -> None:
    assert mosquitto_tls.tls_port is not None
    pub = publisher(
        spool,
        mosquitto_tls.tls_port,
        "site-e",
        tls=True,
        ca_cert=tls_certs.ca_cert,
        client_cert=tls_certs.client_cert,
        client_key=tls_certs.client_key,
    )
    pub.start()
    try:
        pub.publish_inventory(fleet(4, T0), T0)
        assert pub.wait_idle(10) and pub.connected
    finally:
        pub.stop()
    sub = Subscriber(
        mosquitto_tls.tls_port, f"kz/hsc-register/v1/{OWNER}/site-e/inventory", tls=tls_certs
    )
    wait_for(lambda: bool(sub.on("inventory")), what="retained inventory over TLS")
    assert sub.on("inventory")[0].payload["count"] == 4
    sub.close()


@pytest.mark.parametrize("which", ["rogue", "none"])
def test_tls_rejects_unknown_or_missing_client_cert(
    mosquitto_tls: Mosquitto, tls_certs: TlsFiles, spool: Spool, which: str
) -> None:
    certs = (
        {"client_cert": tls_certs.rogue_client_cert, "client_key": tls_certs.rogue_client_key}
        if which == "rogue"
        else {}
    )
    pub = publisher(
        spool, mosquitto_tls.tls_port, "site-f", tls=True, ca_cert=tls_certs.ca_cert, **certs
    )
    pub.start()
    try:
        pub.publish_inventory(fleet(1, T0), T0)
        time.sleep(1.0)
        assert not pub.connected and pub.pending() == 2  # kept for when the cert is fixed
    finally:
        pub.stop(timeout_s=0.1)


def test_a_broker_unreachable_from_the_start_is_said_once(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.servers import free_port

    port = free_port()  # nothing listens there
    pub = publisher(spool, port, "never-up")
    with caplog.at_level("DEBUG", logger="kuat.uplink.mqtt"):
        pub.start()
        try:
            pub.publish_inventory(fleet(2, datetime(2026, 11, 25, tzinfo=UTC)), datetime.now(UTC))
            wait_for(
                lambda: sum("still unreachable" in r.getMessage() for r in caplog.records) >= 2,
                10,
                "a few failed attempts",
            )
        finally:
            pub.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert f"127.0.0.1:{port} unreachable" in warnings[0] and "never connected" in warnings[0]
    assert spool.counts().outbox > 0  # the messages wait
