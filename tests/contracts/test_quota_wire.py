"""The AsyncAPI document's subscribe side, on a real Mosquitto: every example of every message
kuat receives, published as the document says (its channel address, its content type as the
MQTT v5 Content-Type), reaches kuat's own receiver and is taken by the schedule book or the
order check."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from kuat.quota.orders import load_public_key, verify_order
from kuat.quota.schedule import BookOutcome, ScheduleBook
from kuat.uplink.broker import BrokerEndpoint
from kuat.uplink.quota_source import MqttScheduleReceiver, quota_topics
from tests.contracts.contract import KOREM_PUBLIC_HEX, load_yaml, resolve
from tests.servers import Mosquitto
from tests.uplink.test_http_source import Inbox, publish

pytestmark = pytest.mark.servers

SITE = "ekibastuz-1"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
# The examples' Ed25519 issuer: RFC 8032's published test key (tests/fixtures/orders).
KOREM = load_public_key(KOREM_PUBLIC_HEX)


def received_examples() -> list[tuple[str, str, bytes]]:
    """(topic, content type, payload) of every example of every `receive` operation on the
    quota broker (the register's replay requests: tests/uplink/test_register_replay.py)."""
    doc = load_yaml("asyncapi.yaml")
    out = []
    for op in doc["operations"].values():
        if op["action"] != "receive":
            continue
        channel = resolve(doc, op["channel"])
        if {"$ref": "#/servers/quota"} not in channel["servers"]:
            continue
        for ref in op["messages"]:
            message = resolve(doc, resolve(doc, ref))
            for example in message.get("examples", []):
                payload = example["payload"]
                body = payload if isinstance(payload, str) else json.dumps(payload)
                topic = channel["address"].format(site=SITE)
                out.append((topic, message["contentType"], body.encode()))
    return out


def test_every_received_example_reaches_kuat_and_is_taken(mosquitto: Mosquitto) -> None:
    examples = received_examples()
    assert {ctype for _, ctype, _ in examples} == {"application/json", "text/csv"}
    inbox = Inbox()
    rx = MqttScheduleReceiver(
        BrokerEndpoint("127.0.0.1", mosquitto.port, tls=False),
        quota_topics(SITE),
        on_document=inbox,
    )
    rx.start()
    try:
        assert rx.wait_subscribed(10), "SUBACK"
        for topic, ctype, body in examples:
            publish(mosquitto.port, topic, body, ctype)
        items = inbox.wait(len(examples))
    finally:
        rx.stop()
    schedule_topic, orders_topic = quota_topics(SITE)
    taken = 0
    for (topic, ctype, body), (got_topic, text, fmt, _) in zip(examples, items, strict=True):
        assert got_topic == topic and text.encode() == body
        assert fmt == ("csv" if ctype == "text/csv" else "json")
        if topic == schedule_topic:
            assert ScheduleBook().offer(text, fmt, site=SITE).outcome is BookOutcome.ADDED
        else:
            assert topic == orders_topic
            assert verify_order(text, {"korem": KOREM}, now=NOW, site=SITE).target_mw == 5.5
        taken += 1
    assert taken == len(examples) >= 3
