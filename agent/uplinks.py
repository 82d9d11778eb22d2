"""The agent's side of the uplinks: one spool shared by the telemetry writer and the register
publisher, built from the config, with problems logged once per change rather than per cycle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from kuat.agent.config import KuatConfig
from kuat.collectors.readings import AsicReading, PollResult
from kuat.uplink.influx import FlushReport, InfluxUplink
from kuat.uplink.inventory import Location
from kuat.uplink.lineproto import encode
from kuat.uplink.mqtt import RegisterPublisher
from kuat.uplink.quota_publisher import QuotaPublisher
from kuat.uplink.spool import Spool, SpoolFull

log = logging.getLogger("kuat.uplink")

# A full spool drops lines every cycle; say so at once, then every ten minutes.
DROP_REPORT_EVERY_S = 600.0


class Uplinks:
    def __init__(self, cfg: KuatConfig, state_dir: Path) -> None:
        self.site = cfg.site.id
        self.spool = Spool(state_dir / "spool.db", max_rows=cfg.spool.max_rows)
        inf = cfg.influx
        self.influx = InfluxUplink(
            inf.url if inf else None,
            inf.token.get() if inf and inf.token else None,
            inf.org if inf else "",
            inf.bucket if inf else "kuat",
            self.spool,
            timeout_s=inf.timeout_s if inf else 10.0,
            verify_ssl=inf.verify_tls if inf else True,
            ca_cert=inf.ca_cert if inf else None,
            batch_lines=inf.batch_lines if inf else 5000,
        )
        m = cfg.mqtt
        self.register = RegisterPublisher(
            self.spool,
            owner_bin=cfg.site.owner_bin,
            site=cfg.site.id,
            host=m.host if m else None,
            port=m.port if m else 8883,
            tls=m.tls if m else True,
            ca_cert=m.ca_cert if m else None,
            client_cert=m.client_cert if m else None,
            client_key=m.client_key if m else None,
            username=m.username if m else None,
            password=m.password.get() if m and m.password else None,
            topic_prefix=m.topic_prefix if m else "kz/hsc-register/v1",
            history_retention=timedelta(days=m.history_retention_days if m else 400),
            client_id=m.client_id if m else None,
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
        qm = cfg.quota.mqtt
        self.quota_out: QuotaPublisher | None = None
        if qm is not None and qm.publish_results:
            self._quota_spool = Spool(state_dir / "quota-outbox.db")
            self.quota_out = QuotaPublisher(
                self._quota_spool,
                site=cfg.site.id,
                owner_bin=cfg.site.owner_bin,
                host=qm.host,
                port=qm.port,
                topic_prefix=qm.topic_prefix,
                tls=qm.tls,
                ca_cert=qm.ca_cert,
                client_cert=qm.client_cert,
                client_key=qm.client_key,
                username=qm.username,
                password=qm.password.get() if qm.password else None,
            )
        # Where each polled address is wired: the first group naming it wins, like its port.
        self.locations: dict[tuple[str, int], Location] = {}
        for group in cfg.asic.groups:
            where = Location(group.location.hall, group.location.rack, group.location.slot)
            for target in group.targets():
                self.locations.setdefault(target, where)
        self._last_flush_problem: str | None = None
        self._last_drop_report = -DROP_REPORT_EVERY_S

    async def start(self) -> None:
        self.register.start()
        if self.quota_out is not None:
            self.quota_out.start()

    async def stop(self) -> None:
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
        dropped = self.spool.put_lines(lines)
        now = time.monotonic()
        # A full disk is reported by the spool itself, once when it starts and once when it ends.
        if (
            dropped
            and not self.spool.disk_full
            and now - self._last_drop_report >= DROP_REPORT_EVERY_S
        ):
            self._last_drop_report = now
            log.error(
                "telemetry spool full: dropped the %d oldest lines (%d dropped in all); "
                "the database has been unreachable too long or [spool] max_rows is too small",
                dropped,
                self.spool.counts().dropped,
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
        problem = report.error if report.outcome in ("backoff", "retry", "auth") else None
        if problem != self._last_flush_problem:
            if problem:
                level = logging.ERROR if report.auth_alert else logging.WARNING
                log.log(
                    level, "telemetry not delivered (%s); %d lines kept", problem, report.pending
                )
            else:
                log.info("telemetry delivery recovered; %d lines pending", report.pending)
            self._last_flush_problem = problem
        return report

    def pending(self) -> tuple[int, int]:
        c = self.spool.counts()
        return c.pending, c.outbox
