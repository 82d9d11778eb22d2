"""The agent at run time: one APScheduler job per collector kind plus quota, inventory and flush.

Every job is bounded: device polls carry their own deadlines inside the collectors, and each job
as a whole is cut just before its next start (job_budget) so a slow cycle can never pile up
behind itself (``max_instances=1`` and ``coalesce`` make a late run replace, not queue behind,
the next one).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from kuat.agent.backpressure import PollGate
from kuat.agent.config import KuatConfig, MeterConfig, PduConfig
from kuat.agent.curtailment import Curtailer
from kuat.agent.fault_alerts import FaultWatch
from kuat.agent.ledger import EnergyLedger
from kuat.agent.pool_fix import POOL_FIX_BUDGET_S, PoolFixer
from kuat.agent.quota_job import QuotaJob
from kuat.agent.quota_results import QuotaResults
from kuat.agent.reconcile import Reconciler, settlement_point
from kuat.agent.sdnotify import Notifier, watchdog_interval_s
from kuat.agent.settlement_book import SettlementBook
from kuat.agent.sizing import asic_concurrency, raise_fd_limit
from kuat.agent.state import SiteState, StatusSnapshot, snapshot
from kuat.agent.tuning import apply_gc_tuning, freeze_long_lived, release_free_heap
from kuat.agent.uplinks import TelemetryCopy, Uplinks
from kuat.collectors.cgminer.collector import AsicPoller, AsicResult
from kuat.collectors.dlms.profile import parse_obis
from kuat.collectors.modbus.collector import MeterPoller, ModbusLink
from kuat.collectors.readings import AsicReading, DeviceError, DeviceKind, MeterReading, PollResult
from kuat.collectors.snmp.collector import PduPoller, SnmpAuth
from kuat.quota.evaluate import QuotaStatus
from kuat.uplink.http import make_client
from kuat.uplink.quota_source import HttpScheduleSource, MqttScheduleReceiver, quota_topics

if TYPE_CHECKING:
    # imported when the config uses them (see Agent.__init__ and start): NATS and the
    # dashboard's aiohttp and jinja2 are ~30 MB of an agent's RSS that runs neither
    from kuat.agent.cluster import ClusterJob
    from kuat.agent.dashboard import Dashboard
    from kuat.collectors.dlms import DlmsMeter, DlmsPoller

log = logging.getLogger("kuat.agent")

Clock = Callable[[], datetime]

# The runtime's own hold on a device poll, beyond the collector's deadline: the collectors keep
# their deadlines themselves, and this makes it hold whatever a device or a library does.
BACKSTOP_GRACE_S = 0.5
# Miner readings are encoded and spooled this many at a time as they arrive: written all at the
# cycle's end, 1,500 miners' held the event loop 0.3-0.4 s on a busy box, growing with the farm
# (bench/farm_scale.py --slow-ms).
RECORD_CHUNK = 500
# A job is cut about its interval after it started (job_budget), but never sooner than this.
JOB_MIN_BUDGET_S = 5.0
# ... less this, so that a cut run has ended (its cancellation unwound, its cleanup done) when
# its next start comes: cut at the very start, the run still held its one instance then, and
# the scheduler skipped that start, leaving the miners idle a whole interval after each cut
# cycle (50,000 miners: the cancellation took 0.4 s; cycles every 120 s instead of 60,
# bench/farm_scale.py --phases).
SCHEDULE_MARGIN_S = 1.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class JobSpec:
    name: str
    interval_s: float
    run: Callable[[], Awaitable[None]]
    # How long a run may take before it is cut (default: job_budget's). A device
    # job's is its devices' deadlines: they report a silent device down themselves, and
    # cutting the job sooner would lose the results of the devices that did answer.
    budget_s: float | None = None


def job_budget(spec: JobSpec) -> float:
    """How long a run of ``spec`` may take before it is cut: its interval less the margin that
    lets the cut run end before its next start, never under JOB_MIN_BUDGET_S nor its own
    ``budget_s``."""
    return max(spec.interval_s - SCHEDULE_MARGIN_S, JOB_MIN_BUDGET_S, spec.budget_s or 0.0)


class Agent:
    def __init__(
        self,
        cfg: KuatConfig,
        *,
        clock: Clock = utcnow,
        on_cycle: Callable[[StatusSnapshot], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.state = SiteState()
        self.on_cycle = on_cycle
        self.notifier = Notifier()
        state_dir = Path(cfg.agent.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.uplinks = Uplinks(cfg, state_dir)
        # Auditable kWh per meter, hour and source: the fee and the monthly report read it.
        self.ledger = EnergyLedger(state_dir / "ledger.db")
        self._energy_source = "own_offgrid" if cfg.grid and cfg.grid.off_grid else "grid"
        self.quota = QuotaJob(cfg, self.state, state_dir)
        # a site shared by several agents: the lease, loads and caps through NATS
        self.cluster: ClusterJob | None = None
        if cfg.cluster:
            from kuat.agent.cluster import ClusterJob

            self.cluster = ClusterJob(cfg, self.state, self.uplinks.record_lines)
        self.curtailer = Curtailer(cfg, self.state, clock=clock)
        if self.cluster is not None:
            self.cluster.curtailable_kw = self.curtailer.curtailable_kw
            self.curtailer.keep_plans()
        # item 7's fix ([compliance] fix_pools): the curtailer's write access to the miners
        self.pool_fixer = PoolFixer(cfg, self.state, self.curtailer.access, clock=clock)
        # the miners' own fault codes, logged once each and counted for /metrics
        self.faults = FaultWatch(cfg.agent.language)
        # Curtailment decides on the freshest reading: each site-meter reading triggers the
        # quota evaluation and the plan at once (decision age: the seconds from the start of
        # that meter poll to the plan, kept for the benchmark and the status screens). The
        # scheduled quota job still runs the checks, and decides only when no reading has.
        self.decision_ages_s: deque[float] = deque(maxlen=10_000)
        self._decided_at: float | None = None  # time.monotonic() of the last decision
        # Schedules and orders from the energy company: HTTP pull and/or MQTT push.
        qh = cfg.quota.http
        self._http = (
            make_client(
                timeout_s=qh.timeout_s,
                verify=qh.ca_cert if qh.ca_cert else qh.verify_tls,
                cert=(qh.client_cert, qh.client_key) if qh.client_cert and qh.client_key else None,
            )
            if qh
            else None
        )
        self.quota_source = (
            HttpScheduleSource(
                qh.url,
                token=qh.token.get() if qh.token else None,
                interval_s=qh.interval_s,
                client=self._http,
            )
            if qh and self._http
            else None
        )
        self.orders_source = (
            HttpScheduleSource(
                qh.orders_url,
                token=qh.token.get() if qh.token else None,
                interval_s=qh.interval_s,
                client=self._http,
            )
            if qh and qh.orders_url and self._http
            else None
        )
        self.quota_rx: MqttScheduleReceiver | None = None
        self._asic = AsicPoller(
            timeout_s=cfg.asic.timeout_s,
            max_reply_bytes=cfg.asic.max_reply_bytes,
            concurrency=self._asic_concurrency(cfg),
            identity_interval_s=cfg.asic.identity_interval_s,
            access=self.curtailer.access,
            # web_port = 0: the stock web UI is not asked for identity
            web_port=cfg.asic.web_port or None,
        )
        # backpressure: fewer miner polls in flight while the loop runs late (confirmations of
        # curtailment actions are not gated)
        self.poll_gate = PollGate(self._asic.concurrency)
        # the background identity reads follow the polls waiting for the window, not race them
        self._asic.set_background_admit(self.poll_gate.admit_background)
        # confirmations of curtailment actions re-read through this poller, within its limit
        self.curtailer.poller = self._asic
        self._asic_targets = cfg.asic_targets()
        self._pdu = PduPoller()
        self._meter = MeterPoller(clock=clock)
        self._dlms_poller: DlmsPoller | None = None  # on first use: see _dlms
        self.reconciler = self._reconciler(cfg)
        self._backfilled = False
        out = self.uplinks.quota_out
        self.quota_results = (
            QuotaResults(
                cfg, self.state, self.ledger, lambda: self.quota.book, out, self._settled_hours
            )
            if out
            else None
        )
        self._scheduler: AsyncIOScheduler | None = None
        self._stopped = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self.last_status: StatusSnapshot | None = None
        # Read by the dashboard's /healthz and /metrics: when each job last finished without
        # error, and what the flush job delivered since start (the spool keeps no such count).
        self.started_at: datetime | None = None
        self.job_success_at: dict[str, datetime] = {}
        self.job_failures: dict[str, int] = {}  # runs that failed or overran, for /metrics
        self.telemetry_sent = 0
        self.telemetry_dead_lettered = 0
        self.dashboard: Dashboard | None = None
        # the last inventory left out miners not yet answering or identified (publish_inventory)
        self._inventory_incomplete = False
        # the inventory publish in flight, whoever asked for it (_inventory_publish)
        self._inventory_task: asyncio.Task[None] | None = None
        # time.monotonic() when the last inventory published read the miners
        self._inventory_read_at: float | None = None
        # miners read when the state built for them was last moved out of the GC's reach
        self._frozen_at = 0

    @staticmethod
    def _asic_concurrency(cfg: KuatConfig) -> int:
        if cfg.asic.concurrency != "auto":
            return cfg.asic.concurrency
        raise_fd_limit()
        n = asic_concurrency(len(cfg.asic_targets()), cfg.asic.timeout_s, cfg.intervals.asic)
        log.info("polling up to %d miners at once (sized from the cycle budget)", n)
        return n

    # --- jobs ---------------------------------------------------------------------------

    def jobs(self) -> list[JobSpec]:
        iv = self.cfg.intervals
        specs = []
        if self._asic_targets:
            specs.append(JobSpec("asic", iv.asic, self._spread_poll_asics))
            if self.pool_fixer.enabled:
                specs.append(JobSpec("pool_fix", iv.asic, self.pool_fixer.run, POOL_FIX_BUDGET_S))
        if self.cfg.pdu:
            budget = max(p.timeout_s for p in self.cfg.pdu) + 2 * BACKSTOP_GRACE_S
            specs.append(JobSpec("pdu", iv.pdu, self.poll_pdus, budget))
        if self._fast_meters():
            budget = max(self._meter_hold(m) for m in self._fast_meters()) + BACKSTOP_GRACE_S
            specs.append(JobSpec("meter", iv.meter, self.poll_meters, budget))
        # a meter with its own interval_s (a tariff meter read slowly) is a job of its own, so
        # its slower sessions never hold back the fast site meter's cycle
        for m in self.cfg.meter:
            if m.interval_s is not None:
                budget = self._meter_hold(m) + BACKSTOP_GRACE_S
                specs.append(JobSpec(f"meter:{m.name}", m.interval_s, self._meter_job(m), budget))
        if self.reconciler is not None:
            # cheap when the hour is done; soon retried when the meter did not answer
            specs.append(JobSpec("settlement", 15.0, self.reconcile))
        if self.quota_results is not None and self.cfg.quota.mqtt is not None:
            every = self.cfg.quota.mqtt.results_interval_s
            specs.append(JobSpec("quota_results", every, self.publish_quota_results))
        if self.cluster is not None:
            specs.append(JobSpec("cluster", iv.quota, self.cluster.run))
        specs += [
            JobSpec("quota", iv.quota, self.evaluate_quota),
            JobSpec("inventory", iv.inventory, self.publish_inventory),
            JobSpec("flush", iv.flush, self.flush),
            *(
                JobSpec(f"flush:{t.name}", iv.flush, self._flush_target(t))
                for t in self.uplinks.targets
            ),
            *(
                [JobSpec("quota_http", self.quota_source.interval_s, self.fetch_schedules)]
                if self.quota_source
                else []
            ),
        ]
        return specs

    @property
    def asic_spread_s(self) -> float:
        """Seconds the scheduled miner job spreads a cycle's polls over: ``[asic] spread`` of
        the interval, less whatever would leave the last poll without its whole deadline
        (``timeout_s`` and the runtime's grace) before the next cycle."""
        iv, asic = self.cfg.intervals.asic, self.cfg.asic
        room = iv - asic.timeout_s - 2 * BACKSTOP_GRACE_S - SCHEDULE_MARGIN_S
        return max(0.0, min(asic.spread * iv, room))

    async def _spread_poll_asics(self) -> None:
        # The first cycle reads the whole farm at once: firmware detection, the inventory and
        # the curtailer's view of the plant should not wait most of an interval after a start.
        try:
            await self.poll_asics(spread_s=self.asic_spread_s if self.state.asics else 0.0)
        finally:
            if len(self.state.asics) > self._frozen_at:
                # a cycle that read miners for the first time (the first, or the rest of a cut
                # one): what it built for them lives as long as they do (tuning.py)
                self._frozen_at = len(self.state.asics)
                freeze_long_lived()
            release_free_heap()

    async def poll_asics(self, *, spread_s: float = 0.0) -> None:
        """Poll every miner once. ``spread_s``: start the polls evenly over that many seconds
        (the scheduled job does, see asic_spread_s); a direct call polls them all at once."""
        targets = self._asic_targets
        chunk: list[AsicResult] = []

        def arrived(i: int, result: AsicResult) -> None:
            # each reading is the site's view as soon as it is taken, not at the cycle's end
            # (with the polls spread, the first miners' would otherwise wait most of a cycle)
            self.state.asics[targets[i]] = result
            chunk.append(result)
            if len(chunk) >= RECORD_CHUNK:
                self._record_asics(chunk)

        await self._asic.poll_many(
            targets, spread_s=spread_s, on_result=arrived, admit=self.poll_gate.admit
        )
        self._record_asics(chunk)
        if self._inventory_incomplete:
            # The last inventory left miners out (none had answered yet, or their identity was
            # still being fetched): publish again now, not an inventory interval later. The
            # register and `kuat compliance report` (which reads the stored inventory) would
            # otherwise show item 7 unknown for minutes while the agent has judged it.
            # Beside the miner job, not inside it: at 50,000 miners that publish (a snapshot and
            # an event per new miner, in a worker thread sharing the GIL with the polls) took
            # 2-10 s, and every cycle awaiting it overran its interval while identities were
            # still being read (bench/farm_scale.py --phases).
            self._inventory_publish()

    def _record_asics(self, chunk: list[AsicResult]) -> None:
        """Fault alerts and spooled telemetry for the readings gathered so far (emptied)."""
        if chunk:
            self.faults.observe(chunk)
            self.uplinks.record(chunk, self.clock())
            chunk.clear()

    async def _bounded(
        self,
        poll: Awaitable[PollResult],
        deadline_s: float,
        kind: DeviceKind,
        host: str,
        port: int,
    ) -> PollResult:
        try:
            async with asyncio.timeout(deadline_s + BACKSTOP_GRACE_S):
                return await poll
        except TimeoutError:
            return DeviceError(
                kind, host, port, self.clock(), f"no reading within {deadline_s:g} s"
            )

    async def poll_pdus(self) -> None:
        async def one(p: PduConfig) -> None:
            deadline = p.timeout_s
            poll = self._pdu.poll(
                p.host, p.port, auth=_snmp_auth(p), profile=p.profile, deadline_s=deadline
            )
            result = await self._bounded(poll, deadline, DeviceKind.PDU, p.host, p.port)
            self.state.pdus[p.name] = result  # type: ignore[assignment]
            # each PDU's points land as soon as it answers, whatever the others do
            self.uplinks.record([result], self.clock())

        await asyncio.gather(*(one(p) for p in self.cfg.pdu))

    @property
    def _dlms(self) -> DlmsPoller:
        # dlms-cosem (and structlog, attrs, asn1crypto behind it) costs ~0.2-0.5 s of CPU to
        # import: loaded only by a site that has a DLMS meter
        if self._dlms_poller is None:
            from kuat.collectors.dlms import DlmsPoller

            self._dlms_poller = DlmsPoller(clock=self.clock)
        return self._dlms_poller

    def _reconciler(self, cfg: KuatConfig) -> Reconciler | None:
        """The commercial DLMS meter's closed hours against the ledger of the site meter (or,
        without a separate site meter, of the commercial meter's own polled counter)."""
        m = cfg.commercial_meter
        if m is None or m.protocol != "dlms":
            return None
        site = next((s for s in cfg.meter if s.role == "site"), None)
        return Reconciler(
            m.name,
            dlms_meter(m),
            self._dlms,
            self.ledger,
            ledger_meter=site.name if site else m.name,
            tolerance_kwh=m.tolerance_kwh,
            tolerance_fraction=m.tolerance_fraction,
            lang=cfg.agent.language,
            book=SettlementBook(Path(cfg.agent.state_dir) / "settlement.db"),
        )

    def _settled_hours(self, start: datetime, end: datetime) -> Mapping[datetime, Any]:
        """The commercial meter's reconciled hours in [start, end) from the settlement book."""
        r = self.reconciler
        if r is None or r.book is None:
            return {}
        return r.book.hours(r.name, start, end)

    async def publish_quota_results(self) -> None:
        assert self.quota_results is not None
        await asyncio.to_thread(self.quota_results.run, self.clock())

    async def reconcile(self) -> None:
        assert self.reconciler is not None
        now = self.clock()
        checks = []
        check = await self.reconciler.run(now)
        if check is not None:
            self.state.settlement = check
            checks.append(check)
        if not self._backfilled:
            # after the newest hour (the one that may alarm): the hours missed while the agent
            # was down, once; again at the next run if the meter was not readable
            earlier = await self.reconciler.backfill(now)
            self._backfilled = earlier is not None
            checks += earlier or []
        lines = [settlement_point(c, self.cfg.site.id) for c in checks]
        self.uplinks.record_lines([line for line in lines if line])

    def _fast_meters(self) -> list[MeterConfig]:
        return [m for m in self.cfg.meter if m.interval_s is None]

    def _meter_job(self, m: MeterConfig) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await self._poll_meter(m, time.monotonic())

        return run

    def _meter_hold(self, m: MeterConfig) -> float:
        """How long the runtime waits for a meter's poll: its deadline, and for a unit on a
        shared Modbus line the deadlines of the units polled before it on that line."""
        if m.protocol == "dlms":
            return m.timeout_s + self._dlms_wait(m)
        key = modbus_link(m).key
        return sum(
            o.timeout_s
            for o in self.cfg.meter
            if o.protocol == "modbus" and modbus_link(o).key == key and o.interval_s == m.interval_s
        )

    def _dlms_wait(self, m: MeterConfig) -> float:
        """How long a DLMS meter may queue for its line: the deadlines of the other DLMS meters
        on the same serial line or HDLC gateway (0 when it has the line to itself)."""
        line = dlms_meter(m).line
        return sum(
            o.timeout_s
            for o in self.cfg.meter
            if o is not m and o.protocol == "dlms" and dlms_meter(o).line == line
        )

    async def poll_meters(self) -> None:
        polled_at = time.monotonic()
        await asyncio.gather(*(self._poll_meter(m, polled_at) for m in self._fast_meters()))

    async def _poll_meter(self, m: MeterConfig, polled_at: float) -> None:
        poll: Awaitable[PollResult]
        deadline = m.timeout_s
        if m.protocol == "dlms":
            poll = self._dlms.poll(dlms_meter(m, deadline), wait_s=self._dlms_wait(m) or None)
        else:
            link = modbus_link(m)
            poll = self._meter.poll(
                m.host or link.device,
                m.port,
                unit=m.unit,
                profile=m.profile,
                timeout_s=deadline,
                link=link,
            )
        host = m.host or m.serial_port or ""
        # the hold covers the wait for a shared line; the poll's own deadline starts once the
        # line is its own
        result = await self._bounded(poll, self._meter_hold(m), DeviceKind.METER, host, m.port)
        self.state.meters[m.name] = result  # type: ignore[assignment]
        if isinstance(result, MeterReading):
            self.ledger.record(m.name, result, self._energy_source)
        self.uplinks.record([result], self.clock())
        site = self.cfg.site_meter
        if site is not None and m.name == site.name and isinstance(result, MeterReading):
            self.state.record_site_meter(result)
            # decided as the site meter's reading lands, not after the slowest other meter
            await self.decide(polled_at)

    async def decide(self, polled_at: float | None = None) -> None:
        """The quota against the freshest reading, then the curtailment plan."""
        now = self.clock()
        c = self.curtailer
        history = self.state.site_meter_history
        status = self.quota.evaluate_now(
            now,
            apply_s=c.apply_s(),
            decision_since=c.decision_since(now),
            landing=c.plant.landing(now, history[-1].taken_at if history else None),
        )
        self.uplinks.record_lines(c.run(self._shard_status(status), now, self.quota.orders))
        self._decided_at = time.monotonic()
        if polled_at is not None:
            self.decision_ages_s.append(self._decided_at - polled_at)

    def _shard_status(self, status: QuotaStatus) -> QuotaStatus:
        """What the curtailer plans on: the shard's view on a shared site, else the site's
        status."""
        return self.cluster.shard_view(status) if self.cluster is not None else status

    async def evaluate_quota(self) -> None:
        now = self.clock()
        c = self.curtailer
        lines = self.quota.run(now, apply_s=c.apply_s(), decision_since=c.decision_since(now))
        fresh = self._decided_at is not None and (
            time.monotonic() - self._decided_at < self.cfg.intervals.quota
        )
        if self.state.quota is not None and not fresh:
            # no site-meter reading has driven a decision lately (no site meter, or it is
            # down): decide here, on what there is
            lines += c.run(self._shard_status(self.state.quota), now, self.quota.orders)
        self.uplinks.record_lines(lines)
        snap = self.status(now)
        self.last_status = snap
        if self.on_cycle is not None:
            self.on_cycle(snap)
        self.notifier.status(_one_line(snap))

    async def fetch_schedules(self) -> None:
        assert self.quota_source is not None
        # Failures are logged by uplink.http (URL redacted); the book keeps what it holds.
        # Every document of a body is judged alone and named by its place in the body.
        docs = await self.quota_source.fetch() or []
        for where, (text, fmt) in _named(self.quota_source.description, docs):
            self._offer_alone(where, functools.partial(self.quota.offer_schedule, text, fmt, where))
        if self.orders_source is not None:
            docs = await self.orders_source.fetch() or []
            now = self.clock()
            for where, (text, _) in _named(self.orders_source.description, docs):
                offer = functools.partial(self.quota.offer_order, text, where, now)
                self._offer_alone(where, offer)

    @staticmethod
    def _offer_alone(where: str, offer: Callable[[], None]) -> None:
        # The parsers refuse bad text with reasons; should one still fail, only that document
        # is lost, not the ones after it in the body.
        try:
            offer()
        except Exception:
            log.exception("quota document %s could not be handled; skipped", where)

    def _on_quota_document(self, topic: str, text: str, fmt: str) -> None:
        # Runs on the event loop (receiver built with loop=...): no lock needed on the books.
        if topic.endswith("/orders"):
            self.quota.offer_order(text, f"mqtt:{topic}", self.clock())
        else:
            self.quota.offer_schedule(text, fmt, f"mqtt:{topic}")

    def _start_quota_push(self, loop: asyncio.AbstractEventLoop) -> None:
        qm = self.cfg.quota.mqtt
        broker = self.uplinks.quota_broker
        if qm is None or broker is None:
            return
        self.quota_rx = MqttScheduleReceiver(
            broker,
            quota_topics(self.cfg.site.id, qm.topic_prefix),
            on_document=self._on_quota_document,
            loop=loop,
        )
        self.quota_rx.start()

    async def _stop_quota_sources(self) -> None:
        if self.quota_rx is not None:
            await asyncio.to_thread(self.quota_rx.stop)  # joins paho's thread
        if self._http is not None:
            await self._http.aclose()

    async def publish_inventory(self) -> None:
        """The inventory job: publish the miners' inventory, or wait for the publish already in
        flight (started after a miner cycle), which reads the miners as they are now. Skipped
        when a miner cycle's republish read them less than half an interval ago: the job came
        due seconds after one, and at 50,000 miners made the same snapshot again (seconds of a
        worker thread, 20 MB written twice) for the few readings taken in between."""
        task = self._inventory_task
        read_at = self._inventory_read_at
        recent = read_at is not None and (
            time.monotonic() - read_at < self.cfg.intervals.inventory / 2
        )
        if recent and (task is None or task.done()):
            return
        # shielded: a job cut at its budget leaves the publish to finish (its thread would
        # anyway); the stop waits for it before closing the spool it writes
        await asyncio.shield(self._inventory_publish())

    def _inventory_publish(self) -> asyncio.Task[None]:
        """The publish in flight, or a new one: one at a time. Two at once (the inventory job
        and a miner cycle's republish) took turns on the register's lock, each building and
        writing the whole farm's snapshot."""
        task = self._inventory_task
        if task is None or task.done():
            task = self._inventory_task = asyncio.create_task(self._publish_inventory_now())
            task.add_done_callback(_log_inventory_failure)
        return task

    async def _publish_inventory_now(self) -> None:
        # Before the first miner poll completes the inventory would be empty, and the register
        # would read that as every miner removed.
        if self._asic_targets and not self.state.asics:
            self._inventory_incomplete = True
            return
        read_at = time.monotonic()
        miners = self._identified_miners()
        self._inventory_incomplete = len(miners) < len(self.state.asic_readings())
        await self.uplinks.publish_inventory(miners, self.clock())
        self._inventory_read_at = read_at

    def _identified_miners(self) -> list[AsicReading]:
        """Miners whose identity is settled. A miner whose firmware tells its identity only off
        the API (a background web read) and is still being fetched would enter the register as
        ip:port and then reappear under its serial."""
        out = []
        for r in self.state.asic_readings():
            provisional = (
                self._asic.fetches_identity(r.firmware_family)
                and not (r.serial or r.mac)
                and self._asic.identity_error(r.ip, r.port) is None
            )
            if not provisional:
                out.append(r)
        return out

    def _flush_target(self, target: TelemetryCopy) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await self.uplinks.flush_target(target)

        return run

    async def flush(self) -> None:
        report = await self.uplinks.flush()
        self.telemetry_sent += report.sent
        self.telemetry_dead_lettered += report.dead_lettered
        if report.sent:
            release_free_heap()  # the batches sent were read, joined and freed in a thread

    def status(self, now: datetime | None = None) -> StatusSnapshot:
        spool, outbox = self.uplinks.pending()
        return snapshot(self.state, now or self.clock(), spool_pending=spool, outbox_pending=outbox)

    # --- running ------------------------------------------------------------------------

    async def run_once(self) -> StatusSnapshot:
        """Every job once, in dependency order, then a flush: for checks and cron."""
        await self.uplinks.start()
        try:
            for spec in self.jobs():
                await self._guarded(spec)
            await self.curtailer.wait()
            return self.status()
        finally:
            await self._inventory_settled()
            await self._meter.close()
            self._pdu.close()
            await self._asic.aclose()
            await self._stop_quota_sources()
            await self.uplinks.stop()
            self.ledger.close()
            self._close_book()

    async def run(
        self,
        *,
        stop_after_s: float | None = None,
        stop_requested: Callable[[], bool] | None = None,
    ) -> None:
        """Run until SIGTERM/SIGINT (or ``stop_after_s``). ``stop_requested`` tells whether a
        stop signal already came while the process was starting (``kuat run`` catches them from
        its first instant): the agent then stops as cleanly as if it came now."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        if stop_requested is not None and stop_requested():
            self.request_stop()
        await self.uplinks.start()
        if self.cluster is not None:
            await self.cluster.start()
        self._start_quota_push(loop)
        apply_gc_tuning()
        gate_watch = loop.create_task(self.poll_gate.watch()) if self._asic_targets else None
        scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        self.started_at = self.clock()
        # The scheduler runs on real time whatever clock stamps the readings: given a stamp of a
        # replayed or simulated clock in the past, apscheduler walks every interval missed since
        # then before running anything (a month of 5 s runs held the loop ~20 s).
        first_run = datetime.now(UTC)
        for spec in self.jobs():
            scheduler.add_job(
                self._guarded,
                "interval",
                args=[spec],
                seconds=spec.interval_s,
                id=spec.name,
                next_run_time=first_run,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(spec.interval_s)),
            )
        wd = watchdog_interval_s()
        if wd:
            scheduler.add_job(self.notifier.watchdog, "interval", seconds=wd, id="watchdog")
        # Up before the first job runs, so the first status (and the demo's banner) can point to
        # it; /healthz answers "starting" until every job has completed a cycle.
        if self.cfg.dashboard.address() is not None:
            from kuat.agent.dashboard import start_dashboard

            self.dashboard = await start_dashboard(self)
        self._scheduler = scheduler
        scheduler.start()
        self.notifier.ready(f"polling {len(self._asic_targets)} miners")
        log.info(
            "kuat started: site %s, %d miners, %d PDUs, %d meters, on %s's event loop",
            self.cfg.site.id,
            len(self._asic_targets),
            len(self.cfg.pdu),
            len(self.cfg.meter),
            # the loop it really runs on ([agent] event_loop), as its class's package names it
            type(asyncio.get_running_loop()).__module__.split(".")[0],
        )
        try:
            if stop_after_s is None:
                await self._stopped.wait()
            else:
                await asyncio.wait_for(self._stopped.wait(), stop_after_s)
        except TimeoutError:
            pass
        finally:
            if gate_watch is not None:
                gate_watch.cancel()
            await self._shutdown(loop)

    def request_stop(self) -> None:
        self._stopped.set()

    async def _inventory_settled(self) -> None:
        """Wait for the inventory publish in flight: its worker thread writes the spool that the
        stop closes next (a few seconds at 50,000 miners)."""
        if self._inventory_task is not None:
            await asyncio.gather(self._inventory_task, return_exceptions=True)

    async def _shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        self.notifier.stopping()
        log.info("stopping: flushing pending data")
        if self.dashboard is not None:  # before the spool it reads is closed
            await self.dashboard.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        # Jobs in flight are cut short: their device polls are bounded anyway, and what they
        # already recorded is on disk.
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        await self._inventory_settled()
        await self.curtailer.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        # Everything recorded is already in the durable spool; one last bounded attempt to
        # deliver it, then the rest waits on disk for the next start.
        try:
            await asyncio.wait_for(self.uplinks.flush_all(force=True), timeout=5)
        except (TimeoutError, Exception) as exc:
            log.warning("final flush incomplete (%s); data stays spooled", exc or "timeout")
        await self._meter.close()
        self._pdu.close()
        await self._asic.aclose()
        await self._stop_quota_sources()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.uplinks.stop()
        self.ledger.close()
        self._close_book()

    def _close_book(self) -> None:
        if self.reconciler is not None and self.reconciler.book is not None:
            self.reconciler.book.close()

    async def _guarded(self, spec: JobSpec) -> None:
        """A job that fails or overruns is logged once per change and never kills the agent."""
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            budget = job_budget(spec)
            await asyncio.wait_for(spec.run(), timeout=budget)
        except asyncio.CancelledError:
            return  # shutting down
        except TimeoutError:
            self._job_problem(spec.name, f"did not finish within {budget:g} s")
        except Exception as exc:
            log.exception("job %s failed", spec.name)
            self._job_problem(spec.name, f"failed: {exc}")
        else:
            self.job_success_at[spec.name] = self.clock()
            if self.state.last_errors.pop(spec.name, None):
                log.info("job %s recovered", spec.name)
        finally:
            if task is not None:
                self._running.discard(task)
        self.state.cycles[spec.name] = self.state.cycles.get(spec.name, 0) + 1

    def _job_problem(self, name: str, text: str) -> None:
        self.job_failures[name] = self.job_failures.get(name, 0) + 1
        if self.state.last_errors.get(name) != text:
            log.error("job %s %s", name, text)
        self.state.last_errors[name] = text


def _log_inventory_failure(task: asyncio.Task[None]) -> None:
    # A publish a miner cycle started has nobody awaiting it; the inventory job, when it waits
    # for one, logs the failure with its traceback too.
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("inventory not published: %s", exc)


def _named(source: str, docs: list[tuple[str, str]]) -> list[tuple[str, tuple[str, str]]]:
    if len(docs) == 1:
        return [(source, docs[0])]
    return [(f"{source} [{i}/{len(docs)}]", d) for i, d in enumerate(docs, start=1)]


def modbus_link(m: MeterConfig) -> ModbusLink:
    """The line a configured Modbus meter answers on."""
    if m.serial_port:
        return ModbusLink(
            "serial",
            device=m.serial_port,
            baudrate=m.baudrate,
            parity=m.parity,
            stopbits=m.stopbits,
            bytesize=m.bytesize,
            gap_s=m.gap_s,
        )
    return ModbusLink("rtu-tcp" if m.framing == "rtu" else "tcp", m.host, m.port, gap_s=m.gap_s)


def dlms_meter(m: MeterConfig, timeout_s: float | None = None) -> DlmsMeter:
    """How to reach a configured DLMS meter (``timeout_s``: its deadline, default its own)."""
    from kuat.collectors.dlms import DlmsMeter

    keys = m.hls_keys()
    return DlmsMeter(
        host=m.host,
        port=m.port,
        transport="hdlc" if m.serial_port else m.transport,
        client_address=m.client_address,
        server_address=m.server_address,
        physical_address=m.physical_address,
        password=m.password.get() if m.password else None,
        profile=m.profile,
        timeout_s=timeout_s if timeout_s is not None else m.timeout_s,
        serial_port=m.serial_port,
        baudrate=m.baudrate,
        parity=m.parity,
        stopbits=m.stopbits,
        bytesize=m.bytesize,
        encryption_key=keys[0] if keys else None,
        authentication_key=keys[1] if keys else None,
        system_title=bytes.fromhex(m.system_title),
        invocation_counter_obis=(
            parse_obis(m.invocation_counter_obis) if m.invocation_counter_obis else None
        ),
        config_name=m.name,
    )


def _snmp_auth(p: PduConfig) -> SnmpAuth:
    if p.v3 is not None:
        return SnmpAuth(
            v3_user=p.v3.user,
            v3_auth_key=p.v3.auth_key.get(),
            v3_priv_key=p.v3.priv_key.get(),
            v3_auth_proto=p.v3.auth_proto,
            v3_priv_proto=p.v3.priv_proto,
            v3_context=p.v3.context,
        )
    assert p.community is not None
    return SnmpAuth(community=p.community.get())


def _one_line(s: StatusSnapshot) -> str:
    kw = f"{s.metered_kw:.0f} kW" if s.metered_kw is not None else "? kW"
    return (
        f"miners {s.miners_up}/{s.miners_total}, {s.hashrate_ths:.0f} TH/s, {kw}, "
        f"quota {s.quota_status or '-'}, grid {s.grid_status or '-'}"
    )


def describe_errors(errors: list[DeviceError], limit: int = 5) -> str:
    shown = "; ".join(e.describe() for e in errors[:limit])
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return shown + more
