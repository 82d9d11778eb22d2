"""Three agents sharing one site through a real three-node NATS cluster (kuat.agent.cluster):
one controller splits the site's allowed power into caps the shards plan inside; when the
controller's machine dies another agent takes over within the lease's bound, no shard drops to
its safe default meanwhile, and the new caps keep back what the dead agent's miners still draw."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.cluster import ClusterJob
from kuat.agent.config import parse_config
from kuat.agent.state import SiteState
from kuat.collectors.readings import AsicReading
from kuat.quota.evaluate import QuotaState, QuotaStatus
from kuat.quota.reasons import Code, Reason
from kuat.quota.schedule import EnergySource
from kuat.quota.shard_caps import Cap, CapSource
from tests.servers import Nats, NatsCluster

pytestmark = pytest.mark.servers

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
LOADS_KW = {"hall-0": 300.0, "hall-1": 200.0, "hall-2": 100.0}
SITE_KW = sum(LOADS_KW.values())  # the site meter sees every hall
ALLOWED_KW = 480.0
TTL_S = 3.0
TICK_S = 0.25  # the quota interval, sped up (each tick publishes loads and caps)


def status() -> QuotaStatus:
    hour = NOW.replace(minute=0)
    return QuotaStatus(
        site="site-1",
        source=EnergySource.GRID,
        at=NOW,
        operating_date="2026-11-25",
        hour_ending=15,
        hour_start=hour,
        hour_end=hour + timedelta(hours=1),
        status=QuotaState.WARN,
        reason=Reason.of(Code.QUOTA_WARN),
        allocation_kwh=480.0,
        allocation_version=1,
        used_kwh=240.0,
        used_until=NOW,
        p_kw=SITE_KW,
        forecast_kwh=540.0,
        remaining_kwh=240.0,
        allowed_kw=ALLOWED_KW,
        margin_kwh=-60.0,
        under_use=False,
        demand_kw=SITE_KW,
        demand_interval_start=hour,
        last_demand_kw=SITE_KW,
    )


def agent(i: int, cluster: NatsCluster, tmp: Path) -> ClusterJob:
    servers = ", ".join(f'"{u}"' for u in cluster.urls[i:] + cluster.urls[:i])
    cfg = parse_config(f"""
[site]
id = "site-1"
[agent]
state_dir = "{tmp / f"a{i}"}"
[intervals]
quota = 1
[[meter]]
name = "site"
host = "127.0.0.1"
role = "site"
[cluster]
agent_id = "hall-{i}"
servers = [{servers}]
tls = false
lease_ttl_s = {TTL_S}
cap_hold_s = 10
safe_default_kw = 50
""")
    state = SiteState()
    name = f"hall-{i}"
    state.asics[(f"127.70.0.{i}", 4028)] = AsicReading(
        f"127.70.0.{i}", 4028, NOW, power_w=LOADS_KW[name] * 1000
    )
    state.quota = status()
    return ClusterJob(cfg, state)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats") as c:
        yield c


@pytest.fixture
async def agents(cluster: NatsCluster, tmp_path: Path) -> AsyncIterator[list[ClusterJob]]:
    jobs = [agent(i, cluster, tmp_path) for i in range(3)]
    for j in jobs:
        await j.start()  # connects in the background (retrying while the cluster settles)
    for _ in range(150):
        if all(j.lease is not None for j in jobs):
            break
        await asyncio.sleep(0.2)
    assert all(j.nc is not None and j.lease is not None for j in jobs)
    try:
        yield jobs
    finally:
        for j in jobs:
            if j.nc is not None and not j.nc.is_closed:
                await j.stop()


async def tick_until(jobs: list[ClusterJob], cond: Callable[[], bool], timeout_s: float) -> float:
    """Tick every job every TICK_S until ``cond()``; return the time it took. Fails at once if
    two agents act as controller together or a shard falls back to its safe default."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        for j in jobs:
            await j.tick()
        controllers = [j.c.agent_id for j in jobs if j.is_controller()]
        assert len(controllers) <= 1, f"two controllers at once: {controllers}"
        if cond():
            return time.monotonic() - start
        await asyncio.sleep(TICK_S)
    raise AssertionError("not reached in time")


def caps(jobs: list[ClusterJob]) -> dict[str, tuple[float, str]]:
    return {
        j.c.agent_id: (j.caps.last.cap_kw, j.caps.last.controller)
        for j in jobs
        if j.caps.last is not None
    }


async def test_caps_from_one_controller_and_a_takeover_when_it_dies(
    agents: list[ClusterJob],
) -> None:
    bound = agents[0].policy.failover_bound_s
    await tick_until(
        agents, lambda: any(j.is_controller() for j in agents) and len(caps(agents)) == 3, 20
    )
    ctl = next(j for j in agents if j.is_controller())
    # the site draws 600 kW for 480 allowed: the 120 kW cut is shared by curtailable load
    await tick_until(agents, lambda: sum(c for c, _ in caps(agents).values()) < 481, 5)
    got = caps(agents)
    assert {k: round(v[0], 1) for k, v in got.items()} == {
        "hall-0": 240.0,
        "hall-1": 160.0,
        "hall-2": 80.0,
    }
    assert {who for _, who in got.values()} == {ctl.c.agent_id}
    for j in agents:  # each shard's curtailer sees its cap and its own load
        view = j.shard_view(status())
        assert view.allowed_kw == pytest.approx(got[j.c.agent_id][0])
        assert view.decision_kw == pytest.approx(LOADS_KW[j.c.agent_id])

    # the controller's machine dies: no release, its miners keep drawing what they drew
    assert ctl.lease is not None and ctl._lease_task is not None and ctl.nc is not None
    ctl._lease_task.cancel()
    await asyncio.gather(ctl._lease_task, return_exceptions=True)
    await ctl.nc.close()
    alive = [j for j in agents if j is not ctl]

    def taken() -> bool:
        return any(j.is_controller() for j in alive)

    def no_default() -> bool:
        return all(j.caps.cap_kw(j.clock())[1].value != "default" for j in alive)

    took = await tick_until(alive, lambda: taken() or not no_default(), bound + 2)
    assert taken() and no_default(), "lease taken over, shards held their caps meanwhile"
    assert took <= bound + 2 * TICK_S + 1.0
    new = next(j for j in alive if j.is_controller())

    # once the dead shard goes quiet, its draw is kept back: the live caps fit what is left
    def rebalanced() -> bool:
        got = caps(alive)
        return all(who == new.c.agent_id for _, who in got.values()) and sum(
            c for c, _ in got.values()
        ) == pytest.approx(ALLOWED_KW - LOADS_KW[ctl.c.agent_id])

    await tick_until(alive, lambda: rebalanced() and no_default(), 10)


async def test_a_hall_that_cannot_shed_keeps_its_load_and_the_others_cut_more(
    agents: list[ClusterJob],
) -> None:
    # hall-0's 300 kW are all firm (no miner kuat can sleep, limit or cut), hall-1 can shed
    # 100 of its 200 kW, hall-2 all its 100 kW: the 120 kW cut falls on hall-1 and hall-2 only
    shed = {"hall-0": 0.0, "hall-1": 100.0, "hall-2": 100.0}
    for j in agents:
        j.curtailable_kw = lambda kw=shed[j.c.agent_id]: kw
    await tick_until(
        agents,
        lambda: len(caps(agents)) == 3 and round(caps(agents)["hall-0"][0], 1) == 300.0,
        20,
    )
    assert {k: round(v[0], 1) for k, v in caps(agents).items()} == {
        "hall-0": 300.0,
        "hall-1": 140.0,
        "hall-2": 40.0,
    }


def test_a_shard_sees_its_share_of_the_next_hour(tmp_path: Path, cluster: NatsCluster) -> None:
    # hall-1 holds a 120 kW cap of the site's 480 kW allowed now: a quarter of the site, so
    # a quarter of the next hour's 400 kWh is what its planner's horizon looks at
    job = agent(1, cluster, tmp_path)
    job.caps.offer(Cap("hall-1", 120.0, "hall-0", 7, time.time()), job.clock())
    site = replace(status(), next_allocation_kwh=400.0)
    view = job.shard_view(site)
    assert view.allowed_kw == pytest.approx(120.0)
    assert view.next_allocation_kwh == pytest.approx(100.0)
    # no next allocation known: none for the shard either
    assert job.shard_view(status()).next_allocation_kwh is None


async def test_an_agent_starts_with_the_cluster_down_and_joins_when_it_comes_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("kuat.agent.cluster.CONNECT_RETRY_S", 0.3)
    caplog.set_level(logging.WARNING, logger="kuat.agent.cluster")
    server = Nats(tmp_path / "nats")  # its port is chosen, nothing listens yet
    text = f"""
[site]
id = "site-1"
[[meter]]
name = "site"
host = "127.0.0.1"
role = "site"
[cluster]
agent_id = "hall-0"
servers = ["nats://127.0.0.1:{server.port}"]
tls = false
replicas = 1
lease_ttl_s = 2
safe_default_kw = 50
"""
    job = ClusterJob(parse_config(text), SiteState())
    await job.start()  # does not fail: the shard runs on its safe default meanwhile
    try:
        (line,) = await job.tick()
        assert 'cap_source="default"' in line and "cap_kw=50" in line
        assert job.caps.cap_kw(job.clock()) == (50, CapSource.DEFAULT)
        await asyncio.sleep(0.5)
        said = [r.getMessage() for r in caplog.records]
        assert any("NATS cluster is unreachable (hall-0)" in m for m in said), said
        with server:
            for _ in range(100):  # retried every CONNECT_RETRY_S
                if job.is_controller():
                    break
                await asyncio.sleep(0.1)
            assert job.is_controller(), "joined the cluster and took the free lease"
            assert any("NATS cluster is reached" in r.getMessage() for r in caplog.records)
            await job.stop()
    finally:
        await job.stop()
