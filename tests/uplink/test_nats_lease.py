"""The quota controller's lease on a real three-node NATS cluster (JetStream, 3 replicas): one
controller at a time; the holder's death hands the lease to another agent within the bound
(TTL + one renewal period); a dead NATS node costs nothing but a reconnect."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.aio.client import Client

from kuat.quota.lease import LeasePolicy
from kuat.uplink.nats_conn import NatsSettings, connect
from kuat.uplink.nats_lease import NatsLease, open_bucket
from tests.servers import NatsCluster

pytestmark = pytest.mark.servers

TTL_S = 3.0
BUCKET = "kuat_lease_test"
# one round trip and the event loop's scheduling on a loaded 2-core machine
SLACK_S = 1.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats") as c:
        yield c


@dataclass
class Contender:
    nc: Client
    lease: NatsLease
    task: asyncio.Task[None]
    stop: asyncio.Event

    @property
    def agent_id(self) -> str:
        return self.lease.policy.agent_id

    async def crash(self) -> None:
        """The machine dies: no release, the connection just goes away."""
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.nc.close()


async def start_contenders(cluster: NatsCluster) -> list[Contender]:
    out = []
    for i in range(3):
        # agent i prefers node i, then the others: each node carries one agent
        urls = cluster.urls[i:] + cluster.urls[:i]
        nc = await connect(NatsSettings(servers=urls, name=f"agent-{i}", randomize=False))
        kv, why = None, None
        for _ in range(50):  # the bucket's stream leader is being elected right after start
            try:
                kv = await open_bucket(nc.jetstream(timeout=2), BUCKET, TTL_S, replicas=3)
                break
            except Exception as exc:
                why = exc
                await asyncio.sleep(0.2)
        assert kv is not None, f"lease bucket not made: {why!r}"
        lease = NatsLease(kv, LeasePolicy(agent_id=f"agent-{i}", ttl_s=TTL_S))
        stop = asyncio.Event()
        out.append(Contender(nc, lease, asyncio.create_task(lease.run(stop)), stop))
    return out


@pytest.fixture
async def contenders(cluster: NatsCluster) -> AsyncIterator[list[Contender]]:
    cs = await start_contenders(cluster)
    try:
        yield cs
    finally:
        for c in cs:
            c.stop.set()
        await asyncio.gather(*(c.task for c in cs), return_exceptions=True)
        for c in cs:
            if not c.nc.is_closed:
                await c.nc.close()


async def watch(cs: list[Contender], until: float, want: set[str] | None = None) -> str | None:
    """Sample every 50 ms until ``until`` (monotonic) or until one of ``want`` is controller;
    fail at once if two agents ever believe they are controller together."""
    while time.monotonic() < until:
        now = [c.agent_id for c in cs if c.lease.is_controller()]
        assert len(now) <= 1, f"two controllers at once: {now}"
        if now and (want is None or now[0] in want):
            return now[0]
        await asyncio.sleep(0.05)
    return None


async def test_one_controller_and_failover_when_the_holder_dies(
    contenders: list[Contender],
) -> None:
    policy = contenders[0].lease.policy
    holder = await watch(contenders, time.monotonic() + policy.failover_bound_s + SLACK_S)
    assert holder is not None, "someone took the free lease within the bound"
    # it stays with one holder while renewals go on (three TTLs)
    revision = next(c for c in contenders if c.agent_id == holder).lease.revision
    await watch(contenders, time.monotonic() + 3 * TTL_S, want=set())
    dead = next(c for c in contenders if c.agent_id == holder)
    assert dead.lease.is_controller() and (dead.lease.revision or 0) > (revision or 0)

    await dead.crash()
    died = time.monotonic()
    alive = [c for c in contenders if c is not dead]
    others = {c.agent_id for c in alive}
    new = await watch(alive, died + policy.failover_bound_s + SLACK_S, want=others)
    assert new is not None, f"no agent took the lease within {policy.failover_bound_s} s"
    took = time.monotonic() - died
    assert took <= policy.failover_bound_s + SLACK_S


async def test_a_clean_shutdown_hands_over_within_one_renewal(
    contenders: list[Contender],
) -> None:
    policy = contenders[0].lease.policy
    holder = await watch(contenders, time.monotonic() + policy.failover_bound_s + SLACK_S)
    leaving = next(c for c in contenders if c.agent_id == holder)
    leaving.stop.set()
    await leaving.task
    left = time.monotonic()
    others = [c for c in contenders if c is not leaving]
    new = await watch(others, left + policy.renew_s + SLACK_S, want={c.agent_id for c in others})
    assert new is not None, "the released lease was taken at the next attempt, not after a TTL"


async def test_a_dead_nats_node_costs_a_reconnect_and_the_lease_goes_on(
    cluster: NatsCluster, contenders: list[Contender]
) -> None:
    policy = contenders[0].lease.policy
    info = await contenders[0].nc.jetstream().stream_info(f"KV_{BUCKET}")
    assert info.config.num_replicas == 3 and info.cluster and len(info.cluster.replicas or []) == 2
    holder = await watch(contenders, time.monotonic() + policy.failover_bound_s + SLACK_S)
    h = next(c for c in contenders if c.agent_id == holder)
    # kill the very node the controller is connected to
    node = next(i for i, p in enumerate(cluster.ports) if h.nc.connected_url.port == p)
    cluster.kill_node(node)
    killed = time.monotonic()
    # JetStream elects new stream leaders among the two nodes left (a few seconds), then the
    # lease works again: a controller, renewing, every agent on a live node
    await asyncio.sleep(policy.failover_bound_s)
    deadline = killed + 30
    while time.monotonic() < deadline:
        if all(c.nc.is_connected for c in contenders) and any(
            c.lease.is_controller() for c in contenders
        ):
            break
        await asyncio.sleep(0.1)
    assert all(c.nc.is_connected for c in contenders), "every agent reconnected"
    assert {c.nc.connected_url.port for c in contenders} <= {
        p for i, p in enumerate(cluster.ports) if i != node
    }
    now = await watch(contenders, time.monotonic() + policy.failover_bound_s + SLACK_S)
    assert now is not None, "a controller after the node's death"
    c = next(c for c in contenders if c.agent_id == now)
    before = c.lease.revision or 0
    await watch(contenders, time.monotonic() + 2 * policy.renew_s + SLACK_S, want=set())
    assert c.lease.is_controller() and (c.lease.revision or 0) > before, "renewals go on"
