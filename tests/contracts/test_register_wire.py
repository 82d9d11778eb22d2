"""Every message kuat's register publisher puts on a real Mosquitto fits the AsyncAPI document:
its topic is one of the document's channels, its payload validates against the schema that
channel's message names, and the retained topics are exactly the operations marked retained."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kuat.uplink.spool import Spool
from tests.contracts.contract import load_yaml, ref_stem, resolve, validator
from tests.servers import Mosquitto
from tests.uplink.test_mqtt import T0, Subscriber, fleet, publisher, wait_for

pytestmark = pytest.mark.servers


def channel_patterns() -> list[tuple[str, re.Pattern[str], str, bool]]:
    """(channel, topic regex, payload schema stem, retained) for every `send` operation."""
    doc = load_yaml("asyncapi.yaml")
    out = []
    for op in doc["operations"].values():
        if op["action"] != "send":
            continue
        name = op["channel"]["$ref"].rsplit("/", 1)[-1]
        channel = doc["channels"][name]
        (message,) = channel["messages"].values()
        schema = ref_stem(resolve(doc, message)["payload"]["schema"]["$ref"])
        regex = re.escape(channel["address"]).replace(r"\{", "{").replace(r"\}", "}")
        regex = re.sub(r"{\w+}", "[^/]+", regex)
        out.append((name, re.compile(f"^{regex}$"), schema, op["bindings"]["mqtt"]["retain"]))
    return out


def channel_of(topic: str) -> tuple[str, str, bool]:
    matches = [(n, s, r) for n, rx, s, r in channel_patterns() if rx.match(topic)]
    assert len(matches) == 1, f"{topic} matches {matches}"
    return matches[0]


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool.db") as sp:
        yield sp


@pytest.mark.parametrize("agent_id", [None, "hall-a"])  # one agent per site, or a site shared
def test_every_published_message_fits_the_asyncapi_document(
    mosquitto: Mosquitto, spool: Spool, agent_id: str | None
) -> None:
    site = f"ekibastuz-{agent_id or 1}"
    live = Subscriber(mosquitto.port, f"kz/hsc-register/v1/+/{site}/#")  # this run's site
    pub = publisher(spool, mosquitto.port, site, agent_version="0.1.0", agent_id=agent_id)
    pub.start()
    try:
        first = fleet(4, T0)
        assert pub.publish_inventory(first, T0).events == 4
        # Second run: one miner gone, one moved, one with new firmware: every event type.
        t1 = T0 + timedelta(minutes=5)
        later = [replace(r, taken_at=t1) for r in first[:3]]
        later[1] = replace(later[1], ip="10.0.9.9")
        later[2] = replace(later[2], firmware="2025.09")
        t2 = T0 + timedelta(days=2)  # past the day a silent miner is kept: removed
        pub.publish_inventory(later, t1)
        pub.publish_inventory([replace(r, taken_at=t2) for r in later], t2)
        assert pub.wait_idle(10)
    finally:
        pub.stop()
    wait_for(
        lambda: any(m.payload.get("state") == "offline" for m in live.on("status")),
        what="offline status",
    )
    live.close()

    seen: dict[str, int] = {}
    types: set[Any] = set()
    for msg in live.messages:
        name, schema, _ = channel_of(msg.topic)
        validator(schema).validate(msg.payload)
        # [cluster]: every register message says which agent sent it, on that agent's topics
        assert msg.payload.get("agent_id") == agent_id, (name, msg.payload)
        if agent_id is not None:
            assert f"/agent/{agent_id}/" in msg.topic, msg.topic
        seen[name] = seen.get(name, 0) + 1
        if name.lower().endswith("events"):
            types.add(msg.payload["type"])
    # a single-agent site keeps its topics; an agent of a split site has its own stream
    names = ["inventory", "events", "status"]
    if agent_id is not None:
        names = [f"shard{n.capitalize()}" for n in names]
    assert set(seen) == set(names)
    assert types == {"added", "removed", "moved", "changed"}

    # A register connecting now gets exactly the retained channels, flagged retained.
    late = Subscriber(mosquitto.port, "#")
    try:
        retained_ops = {n for n, _, _, r in channel_patterns() if r and n in names}
        assert len(retained_ops) == 2  # inventory and status
        mine = f"/{site}/"
        wait_for(
            lambda: (
                {channel_of(m.topic)[0] for m in late.messages if mine in m.topic} >= retained_ops
            )
        )
        for msg in late.messages:
            name, schema, retained = channel_of(msg.topic)
            assert msg.retain and retained, name
            validator(schema).validate(msg.payload)
    finally:
        late.close()
