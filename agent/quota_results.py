"""The quota results the energy company receives over MQTT (``kuat.uplink.quota_publisher``).

Every ``[quota.mqtt] results_interval_s`` the job queues the current hour's state and each
Astana hour that closed since the last one it queued (a grace period after the hour's end lets
the last meter reading and the commercial meter's reconciliation land first). The closed hour's
figures are exactly the rows of ``kuat report hourly`` for that hour, so the message and the
month-end report cannot disagree; the commercial meter's settlement verdict is added when the
reconciler has it. After a long outage of the agent itself at most ``MAX_CATCH_UP`` hours are
sent, oldest first; the report covers the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from kuat.agent.config import KuatConfig
from kuat.agent.hourly_report import hourly_report
from kuat.agent.ledger import EnergyLedger
from kuat.agent.state import SiteState
from kuat.quota.clock import HOUR, hour_bounds, hour_of
from kuat.quota.schedule import ScheduleBook
from kuat.uplink.inventory import iso
from kuat.uplink.quota_publisher import QuotaPublisher
from kuat.uplink.spool import SpoolFull

__all__ = ["MAX_CATCH_UP", "QuotaResults", "closed_hour_message", "state_message"]

log = logging.getLogger("kuat.quota")

MAX_CATCH_UP = 48  # hours sent after the agent itself was down; older ones: kuat report hourly
GRACE = timedelta(minutes=3)  # after the reconciler's own 2 min, so its verdict is there
_WORST = ("over", "no_data", "no_allocation", "ok")  # the hour's status: its worst source's


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(v, nd)


def state_message(status: Any, at: datetime) -> dict[str, Any] | None:
    """The current hour from a ``quota.evaluate.QuotaStatus`` (None before the first one)."""
    if status is None:
        return None
    return {
        "at": iso(at),
        "date": status.operating_date,
        "hour_ending": status.hour_ending,
        "start_utc": iso(status.hour_start),
        "source": status.source.value,
        "status": status.status.value,
        "allocation_kwh": _r(status.allocation_kwh),
        "used_kwh": _r(status.used_kwh),
        "forecast_kwh": _r(status.forecast_kwh),
        "remaining_kwh": _r(status.remaining_kwh),
        "allowed_kw": _r(status.allowed_kw),
        "p_kw": _r(status.p_kw),
    }


def closed_hour_message(
    report: dict[str, Any], start_utc: datetime, settlement: Any = None
) -> dict[str, Any]:
    """One closed hour from ``hourly_report``'s rows of that hour (one row per source);
    ``settlement``: the commercial meter's reconciled hour (``SettledHour`` or the reconciler's
    ``HourCheck``), when there is one for this hour."""
    rows = [h for h in report["hours"] if h["start_utc"] == iso(start_utc)]
    status = min((h["status"] for h in rows), key=_WORST.index, default="no_data")
    used = [h["used_kwh"] for h in rows if h["used_kwh"] is not None]
    billed = [h["billed_kwh"] for h in rows if h.get("billed_kwh") is not None]
    allocations = [h["allocation_kwh"] for h in rows if h["allocation_kwh"] is not None]
    body: dict[str, Any] = {
        "date": rows[0]["date"] if rows else hour_of(start_utc)[0].isoformat(),
        "hour_ending": rows[0]["hour_ending"] if rows else hour_of(start_utc)[1],
        "start_utc": iso(start_utc),
        "status": status,
        "complete": all(h["complete"] for h in rows) if rows else False,
        "used_kwh": round(sum(used), 3) if used else None,
        "billed_kwh": round(sum(billed), 3) if billed else None,
        "allocation_kwh": round(sum(allocations), 3) if allocations else None,
        "sources": [
            {
                **{k: h[k] for k in ("source", "used_kwh", "allocation_kwh", "status")},
                "billed_kwh": h.get("billed_kwh"),
                "authority": h.get("authority", "kuat"),
            }
            for h in rows
        ],
        "commercial_kwh": rows[0]["commercial_kwh"] if rows else None,
        "settlement": None,
    }
    if settlement is not None and settlement.start_utc == start_utc:
        body["settlement"] = {
            "meter": settlement.meter,
            "meter_kwh": _r(settlement.meter_kwh),
            "kuat_kwh": _r(settlement.kuat_kwh),
            "difference_kwh": _r(settlement.difference_kwh),
            "status": settlement.status,
        }
    return body


class QuotaResults:
    """The job: queue the state and the newly closed hours on the publisher."""

    def __init__(
        self,
        cfg: KuatConfig,
        state: SiteState,
        ledger: EnergyLedger,
        book: Callable[[], ScheduleBook],
        publisher: QuotaPublisher,
        settled: Callable[[datetime, datetime], Mapping[datetime, Any]] | None = None,
    ) -> None:
        """``settled(start, end)``: the settlement book's hours (``SettledHour`` by UTC start)
        of the commercial meter, when the site has one."""
        self.cfg = cfg
        self.settled = settled
        self.state = state
        self.ledger = ledger
        self.book = book
        self.publisher = publisher

    def hours_to_send(self, now: datetime) -> list[datetime]:
        """UTC starts of the closed hours not queued yet, oldest first."""
        day, he = hour_of(now - GRACE)
        newest = hour_bounds(day, he)[0] - HOUR
        last = self.publisher.last_closed()
        if last is None or not isinstance(last.get("start_utc"), str):
            return [newest]  # a first run announces the last closed hour, not the past
        done = datetime.fromisoformat(last["start_utc"].replace("Z", "+00:00"))
        first = max(done + HOUR, newest - (MAX_CATCH_UP - 1) * HOUR)
        out = []
        t = first
        while t <= newest:
            out.append(t)
            t += HOUR
        return out

    def run(self, now: datetime) -> int:
        """Queue what is due; returns how many closed hours were queued."""
        queued = 0
        reports: dict[date, dict[str, Any]] = {}
        try:
            todo = self.hours_to_send(now)
            book = self.settled(todo[0], todo[-1] + HOUR) if self.settled and todo else {}
            for start in todo:
                day = hour_of(start)[0]
                if day not in reports:
                    kwh = {t: h.meter_kwh for t, h in book.items()}
                    reports[day] = hourly_report(
                        self.ledger, self.cfg, day, day, book=self.book(), settled=kwh
                    )
                check = book.get(start)
                if check is None and self.state.settlement is not None:
                    check = self.state.settlement
                msg = closed_hour_message(reports[day], start, check)
                self.publisher.publish_hour(msg)
                queued += 1
            self.publisher.publish_state(state_message(self.state.quota, now))
        except SpoolFull:
            log.debug("quota results not queued: no space left for their spool")
        return queued
