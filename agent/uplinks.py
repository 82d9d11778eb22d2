"""The agent's side of the uplinks: one spool shared by the telemetry writer and the register
publisher, built from the config, with problems logged once per change rather than per cycle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from kuat.agent.config import Broker, InfluxSection, KuatConfig
from kuat.collectors.readings import AsicReading, PollResult
from kuat.uplink.broker import BrokerEndpoint
from kuat.uplink.influx import FlushReport, InfluxUplink
from kuat.uplink.inventory import Location
from kuat.uplink.lineproto import encode, measurement_of, with_tag
from kuat.uplink.mqtt import RegisterPublisher
from kuat.uplink.quota_publisher import QuotaPublisher
from kuat.uplink.spool import Spool, SpoolFull

log = logging.getLogger("kuat.uplink")

# A full spool drops lines every cycle; say so at once, then every ten minutes.
DROP_REPORT_EVERY_S = 600.0


def _influx(section: InfluxSection | None, spool: Spool) -> InfluxUplink:
    return InfluxUplink(
        section.url if section else None,
        section.token.get() if section and section.token else None,
        section.org if section else "",
        section.bucket if section else "kuat",
        spool,
        timeout_s=section.timeout_s if section else 10.0,
        verify_ssl=section.verify_tls if section else True,
        ca_cert=section.ca_cert if section else None,
        batch_lines=section.batch_lines if section else 5000,
    )


def broker_endpoint(section: Broker, *, default_client_id: str | None = None) -> BrokerEndpoint:
    """The one place a broker section of the config becomes what the MQTT clients take (the
    password is read from its secret here)."""
    return BrokerEndpoint(
        host=section.host,
        port=section.port,
        failover=tuple(section.failover_endpoints()),
        tls=section.tls,
        ca_cert=section.ca_cert,
        client_cert=section.client_cert,
        client_key=section.client_key,
        username=section.username,
        password=section.password.get() if section.password else None,
        protocol=section.protocol,
        client_id=section.client_id or default_client_id,
    )


@dataclass
class TelemetryCopy:
    """One more telemetry database ([[telemetry]]) and the spool that feeds it alone."""

    name: str
    spool: Spool
    influx: InfluxUplink
    measurements: frozenset[str]  # empty: every measurement
    problem: str | None = None  # the last delivery problem said, so it is said once
    last_drop_report: float = -DROP_REPORT_EVERY_S

    def wants(self, lines: Sequence[str]) -> Sequence[str]:
        if not self.measurements:
            return lines
        return [ln for ln in lines if measurement_of(ln) in self.measurements]


class Uplinks:
    def __init__(self, cfg: KuatConfig, state_dir: Path) -> None:
        self.site = cfg.site.id
        self.agent_id = cfg.cluster.agent_id if cfg.cluster else None
        self.spool = Spool(state_dir / "spool.db", max_rows=cfg.spool.max_rows)
        self.influx = _influx(cfg.influx, self.spool)
        # More databases (the energy company's): each its own spool, filter and back-off.
        self.targets: list[TelemetryCopy] = []
        for t in cfg.telemetry:
            spool = Spool(state_dir / f"telemetry-{t.name}.db", max_rows=t.max_rows)
            self.targets.append(
                TelemetryCopy(t.name, spool, _influx(t, spool), frozenset(t.measurements))
            )
        m = cfg.mqtt
        # Each broker's endpoint is built once here; the quota broker's serves both the results
        # publisher and the runtime's schedule/order receiver.
        self.register_broker = broker_endpoint(m) if m else None
        qm = cfg.quota.mqtt
        self.quota_broker = (
            # the configured client_id names the receiver's session (the publisher has its own)
            broker_endpoint(qm, default_client_id=f"kuat-quota-{cfg.site.id}") if qm else None
        )
        self.register = RegisterPublisher(
            self.spool,
            owner_bin=cfg.site.owner_bin,
            site=cfg.site.id,
            broker=self.register_broker,
            topic_prefix=m.topic_prefix if m else "kz/hsc-register/v1",
            history_retention=timedelta(days=m.history_retention_days if m else 400),
            agent_id=self.agent_id,
            owner={
                "bin": cfg.site.owner_bin,
                "licence_number": cfg.site.licence_number,
                "licence_subtype": cfg.site.licence_subtype,
            },
            data_centre={
                "id": cfg.site.data_centre_id,
                "address": cfg.site.address,
                "grid_zone": cfg.site.grid_zone,
                "registered": cfg.site.data_centre_registered,
            },
        )
        # Quota results for the energy company, on its broker, from a spool of their own so
        # neither outbox waits behind the other's broker.
        self.quota_out: QuotaPublisher | None = None
        if qm is not None and qm.publish_results:
            self._quota_spool = Spool(state_dir / "quota-outbox.db")
            self.quota_out = QuotaPublisher(
                self._quota_spool,
                site=cfg.site.id,
                owner_bin=cfg.site.owner_bin,
                broker=self.quota_broker,
                topic_prefix=qm.topic_prefix,
                # Agents of a split site each hold a session on the energy company's broker:
                # under one client id they would evict each other in turn.
                client_id=(
                    f"kuat-quota-out-{cfg.site.id}-{self.agent_id}" if self.agent_id else None
                ),
            )
        # Where each polled address is wired: the first group naming it wins, like its port.
        self.locations: dict[tuple[str, int], Location] = {}
        for group in cfg.asic.groups:
            where = Location(group.location.hall, group.location.rack, group.location.slot)
            for target in group.targets():
                self.locations.setdefault(target, where)
        self._last_flush_problem: str | None = None
        self.last_drop_report = -DROP_REPORT_EVERY_S

    async def start(self) -> None:
        self.register.start()
        if self.quota_out is not None:
            self.quota_out.start()

    async def stop(self) -> None:
        for t in self.targets:
            t.influx.close()
            t.spool.close()
        await asyncio.to_thread(self.register.stop)
        if self.quota_out is not None:
            await asyncio.to_thread(self.quota_out.stop)
            self._quota_spool.close()
        self.influx.close()
        self.spool.close()

    def record(self, results: Sequence[PollResult], now: datetime) -> None:
        self.record_lines(encode(results, self.site))

    def record_lines(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        if self.agent_id:  # a site shared by several agents: whose line it is
            lines = [with_tag(line, "agent", self.agent_id) for line in lines]
        dropped = self.spool.put_lines(lines)
        self._drops("telemetry spool", "[spool] max_rows", self.spool, dropped, self)
        for t in self.targets:
            chosen = t.wants(lines)
            if chosen:
                dropped = t.spool.put_lines(chosen)
                what = f"telemetry spool of {t.name}"
                self._drops(what, f"[[telemetry]] {t.name} max_rows", t.spool, dropped, t)

    @staticmethod
    def _drops(
        what: str, cap: str, spool: Spool, dropped: int, mark: Uplinks | TelemetryCopy
    ) -> None:
        now = time.monotonic()
        # A full disk is reported by the spool itself, once when it starts and once when it ends.
        if not dropped or spool.disk_full or now - mark.last_drop_report < DROP_REPORT_EVERY_S:
            return
        mark.last_drop_report = now
        log.error(
            "%s full: dropped the %d oldest lines (%d dropped in all); the database has been "
            "unreachable too long or %s is too small",
            what,
            dropped,
            spool.counts().dropped,
            cap,
        )

    async def publish_inventory(self, readings: Iterable[AsicReading], now: datetime) -> None:
        try:
            report = await asyncio.to_thread(
                self.register.publish_inventory, list(readings), now, locations=self.locations
            )
        except SpoolFull:
            # Nothing was queued (one transaction): the next run diffs from the same snapshot.
            # The spool has already said, once, that the disk is full.
            log.debug("inventory not queued: no space left for the spool")
            return
        if report.events:
            log.info("inventory: %d miners, %d change events", report.miners, report.events)

    async def flush(self, *, force: bool = False) -> FlushReport:
        report = await self.influx.flush(force=force)
        self._last_flush_problem = self._say("telemetry", report, self._last_flush_problem)
        return report

    async def flush_target(self, target: TelemetryCopy, *, force: bool = False) -> FlushReport:
        report = await target.influx.flush(force=force)
        target.problem = self._say(f"telemetry to {target.name}", report, target.problem)
        return report

    async def flush_all(self, *, force: bool = False) -> None:
        """Every target at once (the final flush at stop): none waits for another."""
        await asyncio.gather(
            self.flush(force=force), *(self.flush_target(t, force=force) for t in self.targets)
        )

    @staticmethod
    def _say(what: str, report: FlushReport, said: str | None) -> str | None:
        """Log a delivery problem when it changes (not every flush); returns the one said."""
        problem = report.error if report.outcome in ("backoff", "retry", "auth") else None
        if problem != said:
            if problem:
                level = logging.ERROR if report.auth_alert else logging.WARNING
                log.log(
                    level, "%s not delivered (%s); %d lines kept", what, problem, report.pending
                )
            else:
                log.info("%s delivery recovered; %d lines pending", what, report.pending)
        return problem

    def pending(self) -> tuple[int, int]:
        c = self.spool.counts()
        return c.pending, c.outbox
