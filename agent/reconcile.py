"""Settlement: the commercial meter's closed hour against kuat's own hourly ledger.

The energy company settles a farm's hour on its commercial (tariff) meter — the meter's own
load profile, the figure KOREM volumes are compared with. kuat meters the same hour itself
(``agent.ledger``, from the site meter's import counter, or the commercial meter's own counter
when there is no separate site meter). After each Astana hour closes (plus a grace period for
the meter to capture its last interval), kuat reads the meter's load profile for that hour and
compares: a difference beyond ``max(tolerance_kwh, tolerance_fraction × the meter's figure)``
is an alarm that carries both figures. The last result is in ``SiteState.settlement`` for the
quota, the dashboard and reports: ``meter_kwh`` is the settlement figure of the closed hour.

``kuat.quota.settlement.judge`` is the pure verdict; ``Reconciler`` does the I/O around it.
Each hour the meter's profile covers is kept in the settlement book (``agent.settlement_book``)
for the reports, which show the meter's figure as the authority; ``settlement_point`` is its
telemetry point (``settlement`` in uplink/SCHEMA.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from kuat.agent.i18n import Lang, render
from kuat.agent.ledger import EnergyLedger
from kuat.agent.settlement_book import SettledHour, SettlementBook
from kuat.collectors.readings import DeviceError
from kuat.quota.clock import ASTANA, hour_bounds, hour_of
from kuat.quota.reasons import Code, Reason
from kuat.quota.settlement import STATUS_CODES, Status, judge
from kuat.uplink.lineproto import encode_point

if TYPE_CHECKING:  # dlms-cosem is imported only where a DLMS meter is read
    from kuat.collectors.dlms import DlmsMeter, DlmsPoller, Interval

__all__ = ["HourCheck", "Reconciler", "judge", "settlement_point"]

log = logging.getLogger("kuat.settlement")


@dataclass(frozen=True, slots=True)
class HourCheck:
    """One closed hour: the commercial meter's figure, kuat's, and the verdict."""

    meter: str  # the commercial meter (config name)
    ledger_meter: str  # whose ledger kuat's figure comes from
    day: date  # Astana operating date
    hour_ending: int  # 1..24
    start_utc: datetime
    meter_kwh: float | None  # the settlement figure (the meter's load profile)
    kuat_kwh: float | None
    difference_kwh: float | None  # kuat - meter
    tolerance_kwh: float
    status: Status
    reason: Reason

    @property
    def label(self) -> str:
        return hour_label(self.start_utc)

    def settled(self) -> SettledHour | None:
        """The book's row for this hour; None when the meter's profile did not cover it."""
        if self.meter_kwh is None:
            return None
        return SettledHour(
            self.meter,
            self.start_utc,
            self.meter_kwh,
            self.kuat_kwh,
            self.difference_kwh,
            self.tolerance_kwh,
            self.status,
            self.ledger_meter,
        )


def settlement_point(check: HourCheck, site: str) -> str | None:
    """The hour's telemetry point, stamped with the hour's start: a re-check of the same hour
    overwrites it rather than adding a second one."""
    return encode_point(
        "settlement",
        {"site": site, "meter": check.meter},
        {
            "meter_kwh": check.meter_kwh,
            "kuat_kwh": check.kuat_kwh,
            "difference_kwh": check.difference_kwh,
            "tolerance_kwh": float(check.tolerance_kwh),
            "status_code": STATUS_CODES[check.status],
            "hour_ending": check.hour_ending,
        },
        check.start_utc,
    )


def hour_label(start_utc: datetime) -> str:
    """ "2026-12-04 15:00–16:00": the hour in Astana time, as operators and KOREM name it."""
    local = start_utc.astimezone(ASTANA)
    end = local + timedelta(hours=1)
    return f"{local:%Y-%m-%d %H:%M}–{end:%H:%M}"


class Reconciler:
    """Reconciles each closed hour once, when the commercial meter's profile has it."""

    def __init__(
        self,
        name: str,
        meter: DlmsMeter,
        poller: DlmsPoller,
        ledger: EnergyLedger,
        *,
        ledger_meter: str,
        tolerance_kwh: float,
        tolerance_fraction: float,
        lang: Lang = "en",
        grace: timedelta = timedelta(minutes=2),
        book: SettlementBook | None = None,
    ) -> None:
        self.name = name
        self.meter = meter
        self.poller = poller
        self.ledger = ledger
        self.ledger_meter = ledger_meter
        self.tolerance_kwh = tolerance_kwh
        self.tolerance_fraction = tolerance_fraction
        self.lang = lang
        self.grace = grace
        self.book = book
        self.done: dict[datetime, HourCheck] = {}
        self._last_error: str | None = None

    def closed_hour(self, now: datetime) -> datetime:
        """UTC start of the newest Astana hour that closed at least ``grace`` ago."""
        day, he = hour_of(now - self.grace)
        start, _ = hour_bounds(day, he)
        return start - timedelta(hours=1)

    async def _intervals(self, start: datetime, end: datetime) -> list[Interval] | None:
        """The meter's profile entries ending in (start, end]; None (said once) when unread."""
        intervals = await self.poller.intervals(self.meter, start, end)
        if isinstance(intervals, DeviceError):
            if intervals.cause != self._last_error:
                log.warning(
                    "settlement: load profile of %s not read: %s", self.name, intervals.cause
                )
                self._last_error = intervals.cause
            return None
        self._last_error = None
        return intervals

    def _check(self, start: datetime, intervals: list[Interval]) -> HourCheck:
        from kuat.collectors.dlms import hour_energy

        meter_kwh, entries = hour_energy(intervals, start)
        kuat_kwh, complete = self.ledger.hour_kwh(self.ledger_meter, start)
        day, he = hour_of(start)
        status, diff, tolerance, reason = judge(
            meter_kwh,
            kuat_kwh,
            complete,
            entries=entries,
            tolerance_kwh=self.tolerance_kwh,
            tolerance_fraction=self.tolerance_fraction,
            hour=hour_label(start),
            ledger_meter=self.ledger_meter,
        )
        return HourCheck(
            self.name,
            self.ledger_meter,
            day,
            he,
            start,
            meter_kwh,
            kuat_kwh if complete else None,
            diff,
            tolerance,
            status,
            reason,
        )

    def _book(self, check: HourCheck, now: datetime) -> None:
        settled = check.settled()
        if self.book is not None and settled is not None:
            self.book.record(settled, now)

    async def run(self, now: datetime) -> HourCheck | None:
        """Reconcile the newest closed hour if not done yet; None when nothing new."""
        start = self.closed_hour(now)
        earlier = self.done.get(start)
        if earlier is not None and earlier.reason.code != Code.SETTLEMENT_METER_INCOMPLETE:
            return None
        intervals = await self._intervals(start, start + timedelta(hours=1))
        if intervals is None:
            return None
        check = self._check(start, intervals)
        if earlier is not None and earlier.status == check.status == "incomplete":
            return None  # still waiting for the meter: said once
        self.done[start] = check
        self._book(check, now)
        # a day of verdicts is plenty to keep in memory; the log and the meter keep the rest
        for old in [k for k in self.done if k < start - timedelta(days=1)]:
            del self.done[old]
        text = render(check.reason, self.lang)
        level = logging.WARNING if check.status == "mismatch" else logging.INFO
        log.log(level, "settlement: %s", text)
        return check

    async def backfill(self, now: datetime, hours: int = 24) -> list[HourCheck] | None:
        """The ``hours`` closed hours before the newest that the book lacks (the agent was
        down, or started since): read from the meter's profile in one range and booked, so the
        reports have the meter's figure for them too. None when the meter could not be read
        (try again later); an old hour's verdict is logged, an alarm only for the hour ``run``
        checks."""
        newest = self.closed_hour(now)
        starts = [newest - timedelta(hours=k) for k in range(hours, 0, -1)]
        known = self.book.hours(self.name, starts[0], newest) if self.book is not None else {}
        missing = [t for t in starts if t not in known and t not in self.done]
        if not missing:
            return []
        intervals = await self._intervals(missing[0], missing[-1] + timedelta(hours=1))
        if intervals is None:
            return None
        checks = [
            c for c in (self._check(t, intervals) for t in missing) if c.meter_kwh is not None
        ]
        for check in checks:
            self._book(check, now)
        if checks:
            log.info(
                "settlement: %d earlier hour(s) of %s booked from its load profile (%s .. %s)",
                len(checks),
                self.name,
                checks[0].label,
                checks[-1].label,
            )
        return checks
