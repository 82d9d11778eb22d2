"""Loads and caps over a real nats-server: the controller hears every shard's load and its caps
reach the shards; a deposed controller's caps are dropped; a shard whose controller goes quiet
holds its cap, then falls back to its safe default."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from kuat.quota.shard_caps import CapHolder, CapPolicy, CapSource, ShardLoad, split_caps
from kuat.uplink.nats_caps import LoadBoard, follow_caps, publish_caps, publish_load
from kuat.uplink.nats_conn import NatsSettings, connect
from tests.servers import Nats

pytestmark = pytest.mark.servers
SITE = "site.one"  # a dot in the id: subjects must still come out right


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_loads_in_caps_out_hold_then_default(tmp_path: Path) -> None:
    clock = FakeClock()
    with Nats(tmp_path / "nats") as server:
        url = [f"nats://127.0.0.1:{server.port}"]
        ctl = await connect(NatsSettings(servers=url, name="hall-a"))
        shard = await connect(NatsSettings(servers=url, name="hall-b"))
        try:
            board = LoadBoard(clock)
            await board.follow(ctl, SITE)
            holder = CapHolder("hall-b", CapPolicy(hold_s=60, safe_default_kw=250, fresh_s=20))
            await follow_caps(shard, SITE, holder, clock)
            await shard.flush()
            await ctl.flush()

            await publish_load(ctl, SITE, ShardLoad("hall-a", 1000, 1000), 1.7e9)
            await publish_load(shard, SITE, ShardLoad("hall-b", 1000, 0), 1.7e9)
            await until(lambda: len(board.fresh(30)) == 2)
            caps = split_caps(1500, board.fresh(30))
            await publish_caps(ctl, SITE, caps, "hall-a", revision=7, at_unix=1.7e9)
            await until(lambda: holder.last is not None)
            assert holder.cap_kw(clock()) == (pytest.approx(1000), CapSource.CONTROLLER)

            # a deposed controller (older lease revision) still publishing: ignored
            await publish_caps(ctl, SITE, {"hall-b": 5000}, "hall-c", revision=3, at_unix=1.7e9)
            await publish_caps(ctl, SITE, {"hall-b": 900}, "hall-a", revision=8, at_unix=1.7e9)
            await until(lambda: holder.max_revision == 8)
            assert holder.last is not None and holder.last.controller == "hall-a"

            clock.t += 45  # the controller went quiet
            assert holder.cap_kw(clock()) == (pytest.approx(900), CapSource.HELD)
            clock.t += 16
            assert holder.cap_kw(clock()) == (250, CapSource.DEFAULT)
            assert board.fresh(30) == []  # the loads went stale on the controller's side too
        finally:
            await ctl.close()
            await shard.close()
