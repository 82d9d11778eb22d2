"""MQTT 3.1.1 and broker failover: the register runs on NATS's MQTT listener (3.1.1 only), read by
the reference receiver; and a publisher whose broker dies carries on with the next address of
its list, losing nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from kuat.uplink.register_receiver import RegisterReceiver
from kuat.uplink.spool import Spool
from tests.servers import Mosquitto, Nats, free_port
from tests.uplink.test_mqtt import OWNER, T0, fleet, lab_broker, publisher, wait_for

pytestmark = pytest.mark.servers
SITE = "nats-site"


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool.db") as sp:
        yield sp


def test_register_over_nats_mqtt_with_a_dead_first_address(tmp_path: Path, spool: Spool) -> None:
    dead = free_port()  # nothing listens: the first address of the list fails every time
    with Nats(tmp_path / "nats") as nats:
        pub = publisher(
            spool, dead, SITE, protocol="3.1.1", failover=[("127.0.0.1", nats.mqtt_port)]
        )
        rx = RegisterReceiver(
            broker=lab_broker(nats.mqtt_port, protocol="3.1.1", client_id="register-backend"),
            state=tmp_path / "view.json",
        )
        pub.start()
        rx.start()
        try:
            first = fleet(5, T0)
            pub.publish_inventory(first, T0)
            t1 = T0 + timedelta(minutes=5)
            moved = [replace(r, taken_at=t1) for r in first]
            moved[0] = replace(moved[0], ip="10.0.8.1")
            pub.publish_inventory(moved, t1)
            assert pub.wait_idle(20), "outbox delivered through NATS"
            assert pub.where == f"127.0.0.1:{nats.mqtt_port}"

            def caught_up() -> bool:
                site = rx.site(OWNER, SITE)
                return (
                    site is not None
                    and site.seq == spool.last_seq(f"{OWNER}/{SITE}")
                    and not site.in_gap
                    and site.miners.get("SN0001", {}).get("ip") == "10.0.8.1"
                )

            wait_for(caught_up, 20, "receiver on NATS caught up")
            site = rx.site(OWNER, SITE)
            assert site is not None and len(site.miners) == 5 and rx.rejected == 0
        finally:
            rx.stop()
            pub.stop()


def test_publisher_fails_over_when_its_broker_dies(tmp_path: Path, spool: Spool) -> None:
    a = Mosquitto(tmp_path / "a")
    b = Mosquitto(tmp_path / "b")
    a.start()
    b.start()
    pub = publisher(spool, a.port, SITE, protocol="3.1.1", failover=[("127.0.0.1", b.port)])
    watcher = RegisterReceiver(broker=lab_broker(b.port), state=tmp_path / "b-view.json")
    try:
        pub.start()
        watcher.start()
        pub.publish_inventory(fleet(3, T0), T0)
        assert pub.wait_idle(10) and pub.where == f"127.0.0.1:{a.port}"
        a.stop()  # node A dies; the changes queued now go out through B
        t1 = T0 + timedelta(minutes=5)
        pub.publish_inventory(fleet(4, t1), t1)
        assert pub.wait_idle(20), "delivered through the second broker"
        assert pub.where == f"127.0.0.1:{b.port}"
        wait_for(
            lambda: (s := watcher.site(OWNER, SITE)) is not None and "SN0004" in s.miners,
            20,
            "the fourth miner seen on broker B",
        )
    finally:
        watcher.stop()
        pub.stop()
        a.stop()
        b.stop()


def _users(subscribe: str) -> str:
    return (
        'authorization { users = [ { user: "register", password: "pw", '
        f"permissions: {{ subscribe: {subscribe} }} }} ] }}"
    )


def test_a_refused_subscription_is_asked_again(tmp_path: Path, spool: Spool) -> None:
    """NATS refuses a SUBSCRIBE (SUBACK 0x80) while its JetStream cluster elects leaders after a
    node died; here a permission refuses it, then a reload grants it. The receiver asks again
    until it is granted instead of staying connected and deaf."""
    with Nats(tmp_path / "nats", extra_config=_users('{ deny: ["kz.>"] }')) as nats:
        rx = RegisterReceiver(
            broker=lab_broker(
                nats.mqtt_port,
                protocol="3.1.1",
                client_id="register-refused",
                username="register",
                password="pw",
            ),
            state=tmp_path / "view.json",
        )
        rx.start()
        pub = publisher(
            spool, nats.mqtt_port, SITE, protocol="3.1.1", username="register", password="pw"
        )
        try:
            wait_for(lambda: rx.refused_subscriptions > 0, 20, "the subscription refused")
            nats.reload(_users('{ allow: [">"] }'))
            pub.start()
            pub.publish_inventory(fleet(3, T0), T0)
            assert pub.wait_idle(20)
            wait_for(
                lambda: (s := rx.site(OWNER, SITE)) is not None and len(s.miners) == 3,
                20,
                "the register's view after the grant",
            )
            assert rx.connects == 1  # the same connection: asked again, not reconnected
        finally:
            pub.stop()
            rx.stop()
