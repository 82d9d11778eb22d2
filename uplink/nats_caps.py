"""Shards' loads and power caps on NATS subjects (the I/O side of ``kuat.quota.shard_caps``).

- ``kuat.<site>.load.<agent>``: each shard's present and curtailable load, every quota interval;
- ``kuat.<site>.cap.<agent>``: the controller's cap for that shard, with its agent id, lease
  revision and a timestamp.

Core NATS (no JetStream): a cap is only worth its latest value, a lost one is replaced at the
next interval, and a shard that hears nothing holds its last cap, then its safe default
(``CapHolder``), which is the behaviour we want when the cluster is unreachable.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from kuat.quota.shard_caps import (
    Cap,
    CapError,
    CapHolder,
    ShardLoad,
    cap_message,
    load_message,
    parse_cap,
    parse_load,
)

log = logging.getLogger("kuat.uplink.nats_caps")

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def token(text: str) -> str:
    """A subject token from a site or agent id (NATS gives '.', '*', '>' and spaces meaning)."""
    return _UNSAFE.sub("_", text) or "_"


def cap_subject(site: str, shard: str) -> str:
    return f"kuat.{token(site)}.cap.{token(shard)}"


def load_subject(site: str, shard: str) -> str:
    return f"kuat.{token(site)}.load.{token(shard)}"


async def publish_load(nc: Client, site: str, load: ShardLoad, at_unix: float) -> None:
    await nc.publish(load_subject(site, load.shard), load_message(load, at_unix))


async def publish_caps(
    nc: Client, site: str, caps: dict[str, float], controller: str, revision: int, at_unix: float
) -> None:
    for shard, kw in caps.items():
        c = Cap(shard=shard, cap_kw=kw, controller=controller, revision=revision, at_unix=at_unix)
        await nc.publish(cap_subject(site, shard), cap_message(c))


async def follow_caps(
    nc: Client, site: str, holder: CapHolder, clock: Callable[[], float] = time.monotonic
) -> Subscription:
    """Feed this shard's caps into ``holder`` as they arrive."""

    async def on_cap(msg: Msg) -> None:
        try:
            holder.offer(parse_cap(msg.data), clock())
        except CapError as exc:
            log.warning("%s: %s", msg.subject, exc)

    return await nc.subscribe(cap_subject(site, holder.shard), cb=on_cap)


class LoadBoard:
    """The controller's view of every shard's last load report (monotonic receive times)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.loads: dict[str, tuple[ShardLoad, float]] = {}

    async def follow(self, nc: Client, site: str) -> Subscription:
        async def on_load(msg: Msg) -> None:
            try:
                load, _at = parse_load(msg.data)
            except CapError as exc:
                log.warning("%s: %s", msg.subject, exc)
                return
            self.loads[load.shard] = (load, self.clock())

        return await nc.subscribe(f"kuat.{token(site)}.load.*", cb=on_load)

    def fresh(self, max_age_s: float) -> list[ShardLoad]:
        """Shards heard from within ``max_age_s``: the ones the split gives a cap to (a silent
        shard runs on its held cap or safe default, or is dead)."""
        now = self.clock()
        return [ld for ld, seen in self.loads.values() if now - seen <= max_age_s]

    def silent(self, max_age_s: float) -> list[ShardLoad]:
        """Shards heard from once but not within ``max_age_s``, with their last load."""
        now = self.clock()
        return [ld for ld, seen in self.loads.values() if now - seen > max_age_s]
