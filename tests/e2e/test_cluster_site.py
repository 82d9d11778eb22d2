"""One simulated site shared by three kuat agents (one hall each) through a three-node NATS
cluster, writing to one VictoriaMetrics: one controller curtails the site through the shards'
caps; its agent dies and another takes the lease and the curtailment goes on under its caps;
then the NATS node that controller talks to dies and the curtailment still goes on: no shard
falls to its safe default, no miner wakes, and every shard gets caps again from a controller.

The register of a split site through the same kind of cluster, with a node killed, is
tests/e2e/test_cluster_register.py."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from kuat.agent.config import parse_config
from kuat.agent.demo import follow_farm
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.modbus.sim import MeterSimulator
from kuat.quota.shard_caps import CapSource
from kuat.uplink.spool import Spool
from tests.e2e.fake_site import write_day_files
from tests.e2e.telemetry_count import asic_points, capture_asic_points, series_by_device
from tests.servers import NatsCluster, VictoriaMetrics

pytestmark = pytest.mark.servers

HALLS = ("A", "B", "C")
PER_HALL = 2


@pytest.fixture
async def farm() -> AsyncIterator[tuple[AsicFarmSimulator, MeterSimulator]]:
    asics = AsicFarmSimulator(
        len(HALLS) * PER_HALL, first_ip="127.43.0.1", personalities=["whatsminer", "luxos"]
    )
    meter = MeterSimulator("schneider-pm5560")
    await asics.start()
    await meter.start()
    follower = asyncio.create_task(follow_farm(asics, meter))
    await asyncio.sleep(0.6)
    try:
        yield asics, meter
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await asics.stop()
        await meter.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats") as c:
        yield c


def config(
    i: int,
    tmp_path: Path,
    asics: AsicFarmSimulator,
    meter: MeterSimulator,
    cluster: NatsCluster,
    vm: VictoriaMetrics,
) -> str:
    schedules = tmp_path / "quota.d"
    schedules.mkdir(exist_ok=True)
    # 1 kWh an hour against tens of kW: the site must curtail everything it can
    write_day_files(schedules, "0.001")
    ips = [ip for ip, _ in asics.targets]
    groups = "".join(
        f"[[asic.groups]]\nhosts = [{', '.join(f'{chr(34)}{ip}{chr(34)}' for ip in chunk)}]\n"
        f'location.hall = "{hall}"\n'
        for hall, chunk in zip(
            HALLS, [ips[k : k + PER_HALL] for k in range(0, len(ips), PER_HALL)], strict=True
        )
    )
    servers = ", ".join(f'"{u}"' for u in cluster.urls[i:] + cluster.urls[:i])
    return f"""
[site]
id = "shared"
[agent]
state_dir = "{tmp_path / f"agent-{i}"}"
[intervals]
asic = 1
meter = 1
quota = 1
[asic]
timeout_s = 2
{groups}
[[meter]]
name = "main"
host = "{meter.host}"
port = {meter.port}
role = "site"
[quota]
schedules = "{schedules}"
enforce = true
min_on_s = 0
min_off_s = 0
[influx]
url = "{vm.url}"
org = "kuat"
bucket = "kuat"
[dashboard]
listen = ""
[cluster]
agent_id = "hall-{HALLS[i].lower()}"
servers = [{servers}]
tls = false
lease_ttl_s = 3
cap_hold_s = 30
# without a controller a shard would run everything: only the controller's caps curtail
safe_default_kw = 100000
halls = ["{HALLS[i]}"]
"""


async def until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not reached in {timeout_s} s: {what}")


async def test_three_agents_one_site_controller_dies_curtailment_goes_on(
    farm: tuple[AsicFarmSimulator, MeterSimulator],
    cluster: NatsCluster,
    victoria_metrics: VictoriaMetrics,
    tmp_path: Path,
) -> None:
    asics, meter = farm
    victoria_metrics.delete_all()
    agents = [
        Agent(parse_config(config(i, tmp_path, asics, meter, cluster, victoria_metrics)))
        for i in range(len(HALLS))
    ]
    sent = [capture_asic_points(a) for a in agents]
    tasks = [asyncio.create_task(a.run()) for a in agents]
    try:
        for a in agents:
            assert a.cluster is not None
            # each agent polls its own hall only
            assert len(a._asic_targets) == PER_HALL

        def controllers() -> list[Agent]:
            return [a for a in agents if a.cluster and a.cluster.is_controller()]

        await until(lambda: len(controllers()) == 1, 20, "one controller")
        await until(lambda: all(m.sleeping for m in asics.miners), 30, "the whole site curtailed")
        dead = controllers()[0]
        assert dead.cluster is not None and dead.cluster.lease is not None

        # the controller's machine dies: no lease release, no goodbye
        assert dead.cluster._lease_task is not None and dead.cluster.nc is not None
        dead.cluster._lease_task.cancel()
        await dead.cluster.nc.close()
        died = time.monotonic()
        alive = [a for a in agents if a is not dead]
        bound = dead.cluster.policy.failover_bound_s
        await until(
            lambda: any(a.cluster and a.cluster.is_controller() for a in alive),
            bound + 3,
            "another agent took the lease",
        )
        took = time.monotonic() - died
        new = next(a for a in alive if a.cluster and a.cluster.is_controller())
        assert new.cluster is not None
        new_id = new.cluster.c.agent_id

        # every live shard plans inside the new controller's caps, and its miners stay asleep
        def under_new() -> bool:
            return all(
                a.cluster is not None
                and a.cluster.caps.last is not None
                and a.cluster.caps.last.controller == new_id
                for a in alive
            )

        await until(under_new, 10, "caps from the new controller")
        assert all(m.sleeping for m in asics.miners)
        assert took <= bound + 2

        # Then a NATS node dies (SIGKILL), the one the controller talks to. Every agent's
        # client goes round the server list; the lease bucket and the caps live on in the
        # other two nodes. Throughout, no shard falls to its safe default (which would wake
        # its miners) and the site stays curtailed; then every live shard gets caps again.
        assert new.cluster.nc is not None and new.cluster.nc.connected_url is not None
        node = cluster.ports.index(new.cluster.nc.connected_url.port)
        cluster.kill_node(node)
        killed = time.monotonic()

        def caps_again() -> bool:
            for a in alive:
                assert a.cluster is not None
                _, source = a.cluster.caps.cap_kw(time.monotonic())
                assert source is not CapSource.DEFAULT, f"{a.cluster.c.agent_id} on its default"
            assert all(m.sleeping for m in asics.miners), "a miner woke while the node was dead"
            return all(
                a.cluster is not None
                and a.cluster.nc is not None
                and a.cluster.nc.is_connected
                and a.cluster.nc.connected_url is not None
                and a.cluster.nc.connected_url.port != cluster.ports[node]
                and a.cluster.caps.received > killed
                for a in alive
            )

        await until(caps_again, 30, "caps from a controller again after the NATS node died")
        assert sum(1 for a in alive if a.cluster and a.cluster.is_controller()) == 1
    finally:
        for a in agents:
            a.request_stop()
        await asyncio.gather(*tasks, return_exceptions=True)

    # one VictoriaMetrics sees the three agents: their miners and their cluster points
    victoria_metrics.force_flush()
    power = victoria_metrics.export('{__name__="asic_power_w"}')
    assert {s["metric"].get("agent") for s in power} == {"hall-a", "hall-b", "hall-c"}
    points = victoria_metrics.export('{__name__="cluster_controller"}')
    assert {s["metric"]["agent"] for s in points} == {"hall-a", "hall-b", "hall-c"}

    # Counted end to end: every miner point each agent recorded (the controller's agent lost
    # its NATS, not its database) is stored once under that agent, or still waits in its spool
    # (the final flush at stop is one bounded attempt)
    for i, hall in enumerate(HALLS):
        agent_id = f"hall-{hall.lower()}"
        with contextlib.closing(Spool(tmp_path / f"agent-{i}" / "spool.db")) as spool:
            waiting = asic_points(spool.take(1_000_000).lines)
        stored = series_by_device(victoria_metrics, "asic_hashrate_ths", f'agent="{agent_id}"')
        assert len(sent[i]) == PER_HALL, (agent_id, sent[i].keys())
        assert stored.keys() == sent[i].keys(), agent_id
        for device, series in stored.items():
            got = series["timestamps"]
            assert len(got) == len(set(got)), (agent_id, device, "stored twice")
            late = [ms for d, ms in waiting if d == device]
            assert sorted([*got, *late]) == sorted(sent[i][device]), (agent_id, device)
            # a poll a second through both deaths: several points, however fast it went
            assert len(sent[i][device]) >= 3, (agent_id, device)
