"""The hourly quota: metered energy this Astana hour against the allocation bought for it.

``evaluate`` answers, at an instant it is given: how much of this hour's allocation is used, what
the hour will end at if the site keeps drawing what it draws now, how much power it may draw for
the rest of the hour, and whether that is fine, close (WARN) or over. It never raises on odd
meter data: missing counters, resets, gaps and stale samples become notes on the result.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from kuat.quota.clock import as_utc, hour_bounds, hour_of
from kuat.quota.demand import demand_now, interval_start, short_demand
from kuat.quota.energy import MeterSample, clean, energy_between, present_power
from kuat.quota.reasons import Code, Reason
from kuat.quota.schedule import EnergySource, HourlyAllocation, ScheduleBook

# The last seconds of an hour before which a decision still acts (see ``allowed_kw``).
EDGE_S = 60.0

__all__ = ["MeterSample", "QuotaPolicy", "QuotaState", "QuotaStatus", "evaluate", "reads_since"]


@dataclass(frozen=True, slots=True)
class QuotaPolicy:
    warn_fraction: float = 0.95  # WARN once the forecast passes this share of the allocation
    tolerance_kwh: float = 0.0  # OVER only beyond allocation + tolerance
    demand_interval_min: int = 15
    underuse_fraction: float = 0.8  # flag a paid allocation forecast to be used below this share
    stale_after_s: float = 60.0  # the newest sample older than this: present power is a guess
    max_gap_s: float = 120.0  # a longer step between samples is flagged
    # Seconds before a decision made now changes the load (the agent passes its quota
    # interval): the present draw continues that long whatever is planned, so allowed_kw
    # budgets for it instead of assuming commands act at once.
    actuation_s: float = 0.0
    # The load curtailment decides on (``decision_kw``): the median of the last
    # ``decision_window_s`` of samples, a spike let pass while its energy stays within
    # ``spike_kwh``, or until it has lasted ``spike_s`` (kuat.quota.demand.short_demand).
    # A window of 0 s: the newest sample.
    decision_window_s: float = 10.0
    spike_kwh: float = 0.05
    spike_s: float = 2.0

    def __post_init__(self) -> None:
        if min(self.decision_window_s, self.spike_kwh, self.spike_s) < 0:
            raise ValueError("decision_window_s, spike_kwh and spike_s must be >= 0")
        if not 0 < self.warn_fraction <= 1:
            raise ValueError("warn_fraction must be in (0, 1]")
        if self.tolerance_kwh < 0:
            raise ValueError("tolerance_kwh must be >= 0")
        if self.demand_interval_min <= 0 or 60 % self.demand_interval_min:
            raise ValueError("demand_interval_min must divide an hour")
        if self.actuation_s < 0:
            raise ValueError("actuation_s must be >= 0")
        if not 0 <= self.underuse_fraction <= 1:
            raise ValueError("underuse_fraction must be in [0, 1]")


class QuotaState(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    OVER = "over"
    NO_ALLOCATION = "no_allocation"
    NO_DATA = "no_data"


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    site: str | None
    source: EnergySource
    at: datetime
    operating_date: str  # Astana date, ISO
    hour_ending: int
    hour_start: datetime
    hour_end: datetime
    status: QuotaState
    reason: Reason
    allocation_kwh: float | None
    allocation_version: int | None
    used_kwh: float | None
    used_until: datetime | None  # the meter is read up to here
    p_kw: float | None
    forecast_kwh: float | None
    remaining_kwh: float | None  # allocation - used; negative once over
    allowed_kw: float | None  # mean power that lands exactly on the allocation at hour end
    margin_kwh: float | None  # allocation + tolerance - forecast; negative means OVER
    under_use: bool
    demand_kw: float | None  # running demand interval, average so far
    demand_interval_start: datetime
    last_demand_kw: float | None  # the last complete demand interval
    notes: tuple[Reason, ...] = ()
    decision_kw: float | None = None  # the filtered present load (QuotaPolicy.spike_kwh)
    spike_ignored: bool = False  # the newest sample is a spike the filter let pass
    next_allocation_kwh: float | None = None  # the next hour's, for the planner's horizon


def _allocation(
    schedule: ScheduleBook | HourlyAllocation | None,
    site: str | None,
    day: date,
    source: EnergySource,
) -> tuple[HourlyAllocation | None, str | None]:
    if isinstance(schedule, HourlyAllocation):
        if schedule.date == day and schedule.source == source:
            return schedule, schedule.site
        return None, site or schedule.site
    if isinstance(schedule, ScheduleBook):
        if site is None:
            sites = schedule.sites()
            # One site per agent is the usual case; with several, guessing would be wrong.
            site = sites[0] if len(sites) == 1 else None
        if site is None:
            return None, None
        return schedule.get(site, day, source), site
    return None, site


def reads_since(now: datetime, policy: QuotaPolicy = QuotaPolicy()) -> datetime:
    """The earliest instant ``evaluate`` at ``now`` reads: the hour's start or the previous
    demand interval's, whichever is earlier. Samples before it change nothing but the last of
    them (a step straddling it): a caller holding a longer history passes that one and what
    follows, and gets the same status for a fraction of the work (a meter read every second
    keeps two hours, 7,200 samples; the hour needs at most 3,600 + one demand interval)."""
    now = as_utc(now)
    start, _ = hour_bounds(*hour_of(now))
    previous = interval_start(now, policy.demand_interval_min) - timedelta(
        minutes=policy.demand_interval_min
    )
    return min(start, previous)


def evaluate(
    schedule: ScheduleBook | HourlyAllocation | None,
    samples: Sequence[MeterSample],
    now: datetime,
    policy: QuotaPolicy = QuotaPolicy(),  # frozen, so one shared default is safe
    *,
    site: str | None = None,
    source: EnergySource = EnergySource.GRID,
    decision_since: datetime | None = None,
    landing: Sequence[tuple[float, float]] = (),
) -> QuotaStatus:
    """``decision_since``: samples before it are left out of ``decision_kw`` (the agent
    passes the last time its own actions changed the plant). ``landing``: commands already
    sent, as (seconds until each acts, its change in kW at the meter): the energy budgeted
    for the actuation delay counts the load changing as they act (kuat.quota.plant), not
    the present load all through it."""
    now = as_utc(now)
    day, hour_ending = hour_of(now)
    start, end = hour_bounds(day, hour_ending)
    alloc, site = _allocation(schedule, site, day, source)
    pts = clean(samples, now)
    notes: list[Reason] = []

    energy = energy_between(pts, start, now)
    used = energy.kwh if energy else None
    used_until = energy.covered_to if energy else None
    if energy:
        if energy.head_estimated:
            notes.append(
                Reason.of(
                    Code.METER_HOUR_START_ESTIMATED, first_sample=_first_at_or_after(pts, start)
                )
            )
        if energy.counter_missing:
            notes.append(Reason.of(Code.METER_COUNTER_MISSING))
        if energy.counter_went_back:
            notes.append(Reason.of(Code.METER_COUNTER_WENT_BACK))
        if energy.longest_gap_s > policy.max_gap_s:
            notes.append(
                Reason.of(
                    Code.METER_GAP, seconds=round(energy.longest_gap_s, 1), limit_s=policy.max_gap_s
                )
            )

    p_kw, p_at = present_power([s for s in pts if s.taken_at >= start] or pts[-1:])
    if p_at is not None:
        age = (now - p_at).total_seconds()
        if age > policy.stale_after_s:
            # Keep the last known power: forecasting at zero would hide an overrun.
            notes.append(
                Reason.of(Code.METER_STALE, age_s=round(age, 1), limit_s=policy.stale_after_s)
            )

    short = short_demand(
        [s for s in pts if s.taken_at >= start] or pts[-1:],
        now,
        policy.decision_window_s,
        policy.spike_kwh,
        spike_s=policy.spike_s,
        since=decision_since,
    )
    decision_kw = short.kw if short.kw is not None else p_kw
    next_day, next_he = hour_of(end)
    next_alloc, _ = _allocation(schedule, site, next_day, source)
    next_kwh = next_alloc.kwh(next_he) if next_alloc else None

    forecast = None
    if used is not None and used_until is not None:
        left_h = (end - used_until).total_seconds() / 3600.0
        forecast = used + (p_kw or 0.0) * left_h

    running, last = demand_now(pts, now, policy.demand_interval_min, cleaned=True)
    alloc_kwh = alloc.kwh(hour_ending) if alloc else None
    remaining = allowed = margin = None
    under_use = False
    common = {"hour_ending": hour_ending, "date": day}

    if alloc_kwh is None:
        state = QuotaState.NO_ALLOCATION
        reason = Reason.of(Code.QUOTA_NO_ALLOCATION, site=site, source=source, **common)
    elif used is None or forecast is None or used_until is None:
        state = QuotaState.NO_DATA
        reason = Reason.of(Code.QUOTA_NO_DATA, **common)
    else:
        remaining = alloc_kwh - used
        left_s = max((end - used_until).total_seconds(), 1.0)
        act_s = min(policy.actuation_s, left_s - 1.0) if left_s > 1.0 else 0.0
        # a spike the filter let pass does not go on through the actuation delay
        committed = (decision_kw or 0.0) * act_s / 3600.0
        committed += sum(kw * max(act_s - due, 0.0) for due, kw in landing) / 3600.0
        # The hour's last minute: the remaining energy over the few seconds a decision still
        # acts on swings hard with every reading, and a cut there saves next to nothing; half
        # the tolerance is let in as slack so rounding-sized differences do not switch miners.
        slack = policy.tolerance_kwh / 2 if left_s - act_s < EDGE_S else 0.0
        allowed = max(remaining + slack - committed, 0.0) * 3600.0 / (left_s - act_s)
        margin = alloc_kwh + policy.tolerance_kwh - forecast
        # Rounded to the watt(-hour), not to what is shown: the renderer shows a tenth and more
        # decimals where two figures would read the same (500.04 kWh used of 500 kWh is over).
        figures = {
            "used_kwh": round(used, 3),
            "forecast_kwh": round(forecast, 3),
            "allocation_kwh": round(alloc_kwh, 3),
            "allowed_kw": round(allowed, 3),
            "p_kw": None if p_kw is None else round(p_kw, 3),
        }
        if used > alloc_kwh + policy.tolerance_kwh:
            state, reason = QuotaState.OVER, Reason.of(Code.QUOTA_EXCEEDED, **figures, **common)
        elif margin < 0:
            state = QuotaState.OVER
            reason = Reason.of(Code.QUOTA_FORECAST_OVER, **figures, **common)
        elif forecast > policy.warn_fraction * alloc_kwh:
            state = QuotaState.WARN
            reason = Reason.of(
                Code.QUOTA_WARN, **figures, **common, warn_percent=round(policy.warn_fraction * 100)
            )
        else:
            state, reason = QuotaState.OK, Reason.of(Code.QUOTA_OK, **figures, **common)
        if alloc_kwh > 0 and forecast < policy.underuse_fraction * alloc_kwh:
            under_use = True
            notes.append(
                Reason.of(
                    Code.QUOTA_UNDER_USE,
                    forecast_kwh=round(forecast, 3),
                    allocation_kwh=round(alloc_kwh, 3),
                    percent=round(100 * forecast / alloc_kwh),
                )
            )

    return QuotaStatus(
        site=site,
        source=source,
        at=now,
        operating_date=day.isoformat(),
        hour_ending=hour_ending,
        hour_start=start,
        hour_end=end,
        status=state,
        reason=reason,
        allocation_kwh=alloc_kwh,
        allocation_version=alloc.version if alloc else None,
        used_kwh=used,
        used_until=used_until,
        p_kw=p_kw,
        forecast_kwh=forecast,
        remaining_kwh=remaining,
        allowed_kw=allowed,
        margin_kwh=margin,
        under_use=under_use,
        demand_kw=running.avg_kw,
        demand_interval_start=running.interval_start,
        last_demand_kw=last.avg_kw if last.complete else None,
        notes=tuple(notes),
        decision_kw=decision_kw,
        spike_ignored=short.spike_ignored,
        next_allocation_kwh=next_kwh,
    )


def _first_at_or_after(pts: Sequence[MeterSample], start: datetime) -> datetime | None:
    return next((s.taken_at for s in pts if s.taken_at >= start), None)
