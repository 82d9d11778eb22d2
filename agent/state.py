"""What the agent knows about its site right now: the latest result per device and a short meter
history. Jobs write it; the quota job, the inventory job and the status screens read it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kuat.collectors.readings import AsicReading, DeviceError, MeterReading, PduReading

# Two hours covers the current hour plus the 15-minute demand interval with room to spare.
METER_HISTORY = timedelta(hours=2)


@dataclass
class SiteState:
    asics: dict[tuple[str, int], AsicReading | DeviceError] = field(default_factory=dict)
    pdus: dict[str, PduReading | DeviceError] = field(default_factory=dict)
    meters: dict[str, MeterReading | DeviceError] = field(default_factory=dict)
    site_meter_history: deque[MeterReading] = field(default_factory=deque)
    quota: Any = None  # quota.evaluate.QuotaStatus
    grid: Any = None  # quota.grid.CheckResult
    pools: Any = None  # quota.pools result
    balance: Any = None  # quota.balance.BalanceResult
    # agent.reconcile.HourCheck: the commercial meter's newest closed hour (its meter_kwh is the
    # settlement figure) against kuat's ledger
    settlement: Any = None
    cycles: dict[str, int] = field(default_factory=dict)
    last_errors: dict[str, str] = field(default_factory=dict)

    def record_site_meter(self, reading: MeterReading) -> None:
        self.site_meter_history.append(reading)
        horizon = reading.taken_at - METER_HISTORY
        while self.site_meter_history and self.site_meter_history[0].taken_at < horizon:
            self.site_meter_history.popleft()

    def asic_readings(self) -> list[AsicReading]:
        return [r for r in self.asics.values() if isinstance(r, AsicReading)]

    def down_devices(self) -> list[DeviceError]:
        out: list[DeviceError] = []
        for results in (self.asics.values(), self.pdus.values(), self.meters.values()):
            out.extend(r for r in results if isinstance(r, DeviceError))
        return out


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """One line of truth per cycle, for the terminal, the journal and the health endpoint."""

    at: datetime
    miners_total: int
    miners_up: int
    miners_sleeping: int
    hashrate_ths: float
    miners_power_w: float | None
    pdu_power_w: float | None
    metered_kw: float | None
    energy_hour_kwh: float | None
    allocation_kwh: float | None
    forecast_kwh: float | None
    quota_status: str | None
    grid_status: str | None
    pools_status: str | None
    pools_offenders: int
    balance_status: str | None
    spool_pending: int
    outbox_pending: int
    devices_down: int


def snapshot(
    state: SiteState, at: datetime, *, spool_pending: int = 0, outbox_pending: int = 0
) -> StatusSnapshot:
    miners = state.asic_readings()
    up = [m for m in miners if m.state == "mining"]
    power = [m.power_w for m in miners if m.power_w is not None]
    pdu_watts = [
        p.total_watts
        for p in state.pdus.values()
        if isinstance(p, PduReading) and p.total_watts is not None
    ]
    latest_meter = state.site_meter_history[-1] if state.site_meter_history else None
    q = state.quota
    return StatusSnapshot(
        at=at,
        miners_total=len(state.asics),
        miners_up=len(up),
        miners_sleeping=sum(1 for m in miners if m.state == "sleeping"),
        hashrate_ths=sum(m.hashrate_ths or 0.0 for m in up),
        miners_power_w=sum(power) if power else None,
        pdu_power_w=sum(pdu_watts) if pdu_watts else None,
        metered_kw=latest_meter.p_kw if latest_meter else None,
        energy_hour_kwh=getattr(q, "used_kwh", None),
        allocation_kwh=getattr(q, "allocation_kwh", None),
        forecast_kwh=getattr(q, "forecast_kwh", None),
        quota_status=_status_text(q),
        grid_status=_status_text(state.grid),
        pools_status=_status_text(state.pools),
        pools_offenders=len(getattr(state.pools, "offenders", ())),
        balance_status=_status_text(state.balance),
        spool_pending=spool_pending,
        outbox_pending=outbox_pending,
        devices_down=len(state.down_devices()),
    )


def _status_text(result: Any) -> str | None:
    if result is None:
        return None
    status = getattr(result, "status", None)
    return str(getattr(status, "value", status)) if status is not None else None
