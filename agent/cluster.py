"""A site across agents ([cluster]): the lease, the loads and the caps, wired for one agent.

Every agent of the site runs this job once per quota interval:

1. it publishes its shard's load (its miners' power, all of it curtailable: kuat may sleep or
   limit every miner it polls);
2. while it holds the controller lease, it splits the site's allowed power (the quota
   evaluation's ``allowed_kw`` from the site meter, as the single-agent agent uses) between the
   shards heard from lately, keeping back what silent shards may still draw, and publishes
   each shard's cap;
3. it reads its own cap (``CapHolder``: fresh, held, or the safe default), which the curtailer
   plans inside through ``shard_view``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from nats.aio.client import Client

from kuat.agent.config import KuatConfig
from kuat.agent.i18n import t
from kuat.agent.state import SiteState
from kuat.quota.evaluate import QuotaStatus
from kuat.quota.lease import LeasePolicy
from kuat.quota.shard_caps import (
    CapHolder,
    CapPolicy,
    CapSource,
    ShardLoad,
    silent_reserve,
    split_caps,
)
from kuat.uplink.lineproto import escape_key
from kuat.uplink.nats_caps import LoadBoard, follow_caps, publish_caps, publish_load
from kuat.uplink.nats_conn import NatsSettings, connect
from kuat.uplink.nats_lease import NatsLease, open_bucket

log = logging.getLogger("kuat.agent.cluster")


class ClusterJob:
    def __init__(self, cfg: KuatConfig, state: SiteState) -> None:
        assert cfg.cluster is not None
        self.cfg = cfg
        self.c = cfg.cluster
        self.state = state
        self.lang = cfg.agent.language
        self.site = cfg.site.id
        self.policy = LeasePolicy(agent_id=self.c.agent_id, ttl_s=self.c.lease_ttl_s)
        # a cap is fresh for three quota intervals (the controller publishes every one)
        every = cfg.intervals.quota
        self.caps = CapHolder(
            self.c.agent_id, CapPolicy(self.c.cap_hold_s, self.c.safe_default_kw, 3 * every)
        )
        self.board = LoadBoard()
        self.given: dict[str, tuple[float, float]] = {}
        self.nc: Client | None = None
        self.lease: NatsLease | None = None
        self._stop = asyncio.Event()
        self._lease_task: asyncio.Task[None] | None = None
        self._said: tuple[CapSource, bool] | None = None

    async def start(self) -> None:
        c = self.c
        self.nc = await connect(
            NatsSettings(
                servers=c.servers,
                name=c.agent_id,
                tls=c.tls,
                ca_cert=c.ca_cert,
                client_cert=c.client_cert,
                client_key=c.client_key,
                username=c.username,
                password=c.password.get() if c.password else None,
            )
        )
        kv = await open_bucket(self.nc.jetstream(timeout=2), c.bucket, c.lease_ttl_s, c.replicas)
        self.lease = NatsLease(kv, self.policy)
        self._lease_task = asyncio.create_task(self.lease.run(self._stop))
        await self.board.follow(self.nc, self.site)
        await follow_caps(self.nc, self.site, self.caps)

    async def stop(self) -> None:
        self._stop.set()
        if self._lease_task is not None:
            await asyncio.gather(self._lease_task, return_exceptions=True)
        if self.nc is not None:
            await self.nc.close()

    def my_load(self) -> ShardLoad:
        kw = sum((r.power_w or 0.0) for r in self.state.asic_readings()) / 1000.0
        return ShardLoad(self.c.agent_id, kw, kw)

    async def tick(self) -> list[str]:
        if self.nc is None or self.lease is None:
            return []
        now = time.monotonic()
        await publish_load(self.nc, self.site, self.my_load(), time.time())
        controller = self.lease.is_controller()
        status = self.state.quota
        revision = self.lease.revision
        if controller and revision is not None and status and status.allowed_kw is not None:
            loads = self.board.fresh(3 * self.cfg.intervals.quota)
            heard = {ld.shard for ld in loads}
            reserve = silent_reserve(self.given, heard, now, self.caps.policy)
            caps = split_caps(status.allowed_kw - reserve, loads)
            await publish_caps(self.nc, self.site, caps, self.c.agent_id, revision, time.time())
            self.given.update({shard: (kw, now) for shard, kw in caps.items()})
        kw, source = self.caps.cap_kw(now)
        self._log(source, kw, controller)
        return [
            f"cluster,site={escape_key(self.site)},agent={escape_key(self.c.agent_id)}"
            f' controller={int(controller)}i,cap_kw={kw},cap_source="{source.value}"'
            f" {time.time_ns()}"
        ]

    def shard_view(self, status: QuotaStatus) -> QuotaStatus:
        """The quota status as this shard's curtailer must see it: its own cap as the allowed
        power and its own miners' power as the load (the site meter measures every shard)."""
        kw, _ = self.caps.cap_kw(time.monotonic())
        load = self.my_load().load_kw
        return replace(status, allowed_kw=kw, decision_kw=load, p_kw=load, next_allocation_kwh=None)

    def _log(self, source: CapSource, kw: float, controller: bool) -> None:
        said = (source, controller)
        if said == self._said:
            return
        if self._said is None or self._said[1] != controller:
            key = "cluster_lease_taken" if controller else "cluster_lease_lost"
            if controller or self._said is not None:
                log.warning("%s", t(key, self.lang).format(agent=self.c.agent_id))
        key = f"cluster_cap_{source.value}"
        text = t(key, self.lang).format(kw=round(kw, 1), hold=int(self.c.cap_hold_s))
        (log.info if source is CapSource.CONTROLLER else log.warning)("%s", text)
        self._said = said
