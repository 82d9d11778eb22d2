"""A site across agents ([cluster]): the lease, the loads and the caps, wired for one agent.

Every agent of the site runs this job once per quota interval:

1. it publishes its shard's load (its miners' power, all of it curtailable: kuat may sleep or
   limit every miner it polls);
2. an agent with the site meter in its config contends for the controller lease; while it holds
   it, it takes the site's allowed power (the quota evaluation's ``allowed_kw``, from the site
   meter as a single agent does), keeps back what the meter shows beyond the reported loads,
   splits the rest between the shards heard from lately and publishes each shard's cap;
3. it reads its own cap (fresh, held, or the safe default), which the curtailer plans inside
   through ``shard_view``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import nats.errors
from nats.aio.client import Client

from kuat.agent.config import KuatConfig
from kuat.agent.i18n import message
from kuat.agent.state import SiteState
from kuat.quota.evaluate import QuotaStatus
from kuat.quota.lease import LeasePolicy
from kuat.quota.shard_caps import (
    CapHolder,
    CapPolicy,
    CapSource,
    ShardLoad,
    shareable_kw,
    split_caps,
)
from kuat.uplink.lineproto import escape_key
from kuat.uplink.nats_caps import LoadBoard, follow_caps, publish_caps, publish_load
from kuat.uplink.nats_conn import NatsSettings, connect
from kuat.uplink.nats_lease import NatsLease, open_bucket, raise_if_cancelled

log = logging.getLogger("kuat.agent.cluster")

# a load or a cap counts as fresh for this many quota intervals (one is published every one)
FRESH_INTERVALS = 3
# seconds between attempts to reach the NATS cluster when none of its nodes answers at start
CONNECT_RETRY_S = 5.0

_UNREACHABLE = (nats.errors.Error, OSError, TimeoutError)


class ClusterJob:
    def __init__(
        self,
        cfg: KuatConfig,
        state: SiteState,
        record: Callable[[Sequence[str]], None] = lambda lines: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert cfg.cluster is not None
        self.cfg = cfg
        self.record = record  # where the `cluster` points go (the agent's telemetry spool)
        self.c = cfg.cluster
        self.state = state
        self.clock = clock
        self.lang = cfg.agent.language
        self.site = cfg.site.id
        self.policy = LeasePolicy(agent_id=self.c.agent_id, ttl_s=self.c.lease_ttl_s)
        self.fresh_s = FRESH_INTERVALS * cfg.intervals.quota
        self.caps = CapHolder(
            self.c.agent_id, CapPolicy(self.c.cap_hold_s, self.c.safe_default_kw, self.fresh_s)
        )
        self.board = LoadBoard(clock)
        self._mining_w: dict[str, float] = {}  # each miner's draw when last seen mining
        # only an agent that reads the site meter can plan the site: the others never contend
        self.contends = cfg.site_meter is not None
        self.nc: Client | None = None
        self.lease: NatsLease | None = None
        self._stop = asyncio.Event()
        self._lease_task: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._said: tuple[CapSource, bool] | None = None
        # The shard's curtailable power (kW), from its curtailer (the runtime wires it); None
        # (or no answer yet): all its load counts as curtailable.
        self.curtailable_kw: Callable[[], float | None] = lambda: None

    def settings(self) -> NatsSettings:
        c = self.c
        return NatsSettings(
            servers=c.servers,
            name=c.agent_id,
            tls=c.tls,
            ca_cert=c.ca_cert,
            client_cert=c.client_cert,
            client_key=c.client_key,
            username=c.username,
            password=c.password.get() if c.password else None,
            credentials=c.credentials.get() if c.credentials else None,
            nkey_seed=c.nkey_seed.get() if c.nkey_seed else None,
        )

    async def start(self) -> None:
        """Reach the NATS cluster in the background: the agent runs its shard meanwhile (on its
        safe default cap) instead of failing to start when no node answers."""
        self._connecting = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        said = False

        def unreachable(detail: object) -> None:
            nonlocal said
            if not said:
                text = message("ui.cluster_unreachable", self.lang, agent=self.c.agent_id)
                log.warning("%s: %s", text, detail)
                said = True

        while not self._stop.is_set():
            # nats-py keeps going round the servers list on its own; say so once it takes long
            opening = asyncio.ensure_future(self._open())
            done, _ = await asyncio.wait({opening}, timeout=CONNECT_RETRY_S)
            if not done:
                unreachable(", ".join(self.c.servers))
                await asyncio.wait({opening})
            try:
                opening.result()
            except _UNREACHABLE as exc:
                raise_if_cancelled()
                unreachable(exc or type(exc).__name__)
                if self.nc is not None:
                    await self.nc.close()
                    self.nc = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), CONNECT_RETRY_S)
                continue
            if said:
                text = message("ui.cluster_reached", self.lang, agent=self.c.agent_id)
                log.warning("%s", text)
            return

    async def _open(self) -> None:
        self.nc = await connect(self.settings())
        await self.board.follow(self.nc, self.site)
        await follow_caps(self.nc, self.site, self.caps, self.clock)
        if self.contends:
            js = self.nc.jetstream(timeout=2)
            kv = await open_bucket(js, self.c.bucket, self.c.lease_ttl_s, self.c.replicas)
            self.lease = NatsLease(kv, self.policy, clock=self.clock)
            self._lease_task = asyncio.create_task(self.lease.run(self._stop))

    async def stop(self) -> None:
        """Give the lease back (another agent takes it within one renewal) and disconnect."""
        self._stop.set()
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self._lease_task is not None:
            await asyncio.gather(self._lease_task, return_exceptions=True)
        if self.nc is not None:
            await self.nc.close()

    def is_controller(self) -> bool:
        return self.lease is not None and self.lease.is_controller()

    def my_load(self) -> ShardLoad:
        """This shard's draw, the part of it its curtailer could shed (the rest is firm: miners
        with no sleep, no limit and no outlet kuat may cut), and what it would draw with every
        miner mining at the power it was last seen mining at (a sleeping miner's share of
        headroom)."""
        load_w = capacity_w = 0.0
        for r in self.state.asic_readings():
            now_w = r.power_w or 0.0
            if r.state == "mining" and now_w > 0:
                self._mining_w[r.device_id] = now_w
            load_w += now_w
            capacity_w += max(now_w, self._mining_w.get(r.device_id, 0.0))
        load_kw = load_w / 1000
        curtailable = self.curtailable_kw()
        shed_kw = load_kw if curtailable is None else min(load_kw, curtailable)
        return ShardLoad(self.c.agent_id, load_kw, shed_kw, capacity_w / 1000)

    async def run(self) -> None:
        """The agent's `cluster` job."""
        self.record(await self.tick())

    async def tick(self) -> list[str]:
        """One interval: report the load, plan the site when controller; the `cluster` point."""
        try:
            await self._exchange()
        except _UNREACHABLE as exc:  # a node going away: the client reconnects, we hold the cap
            raise_if_cancelled()
            log.debug("cluster: %s", exc)
        controller = self.is_controller()
        kw, source = self.caps.cap_kw(self.clock())
        self._log(source, kw, controller)
        return [
            f"cluster,site={escape_key(self.site)},agent={escape_key(self.c.agent_id)}"
            f' controller={int(controller)}i,cap_kw={kw},cap_source="{source.value}"'
            f" {time.time_ns()}"
        ]

    async def _exchange(self) -> None:
        if self.nc is None or self.nc.is_closed:
            return
        await publish_load(self.nc, self.site, self.my_load(), time.time())
        controller = self.is_controller()
        revision = self.lease.revision if self.lease is not None else None
        status = self.state.quota
        if controller and revision is not None and status and status.allowed_kw is not None:
            loads = self.board.fresh(self.fresh_s)
            site_kw = status.decision_kw if status.decision_kw is not None else status.p_kw
            silent_kw = sum(ld.load_kw for ld in self.board.silent(self.fresh_s))
            share = shareable_kw(status.allowed_kw, site_kw, loads, silent_kw)
            caps = split_caps(share, loads)
            await publish_caps(self.nc, self.site, caps, self.c.agent_id, revision, time.time())

    def shard_view(self, status: QuotaStatus) -> QuotaStatus:
        """The quota status as this shard's curtailer must see it: its cap as the allowed
        power and its own miners' power as the load (the site meter measures every shard).
        The next hour's allocation is the shard's share of the site's at its share of the
        site's allowed power now (the controller splits the next hour when it comes; the
        planner's horizon only needs to know whether the next hour is tight for this shard)."""
        kw, _ = self.caps.cap_kw(self.clock())
        load = self.my_load().load_kw
        site_kw, next_kwh = status.allowed_kw, status.next_allocation_kwh
        share = min(1.0, kw / site_kw) if site_kw and site_kw > 0 else None
        next_share = next_kwh * share if next_kwh is not None and share is not None else None
        return replace(
            status, allowed_kw=kw, decision_kw=load, p_kw=load, next_allocation_kwh=next_share
        )

    def _log(self, source: CapSource, kw: float, controller: bool) -> None:
        said = (source, controller)
        if said == self._said:
            return
        was = self._said[1] if self._said is not None else False
        if controller != was:
            key = "ui.cluster_lease_taken" if controller else "ui.cluster_lease_lost"
            log.warning("%s", message(key, self.lang, agent=self.c.agent_id))
        if self._said is None or self._said[0] is not source:
            text = message(
                f"ui.cluster_cap_{source.value}",
                self.lang,
                cap_kw=kw,
                hold_s=self.c.cap_hold_s,
            )
            (log.info if source is CapSource.CONTROLLER else log.warning)("%s", text)
        self._said = said
