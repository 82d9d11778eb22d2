"""Demand: average power over fixed clock intervals (15 min by default), the quantity tariff
meters and grid connection conditions are written in.

Intervals are aligned to the clock. Astana is a whole number of hours from UTC, so aligning in
UTC epoch time gives the same :00/:15/:30/:45 boundaries as Astana wall time.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kuat.quota.clock import as_utc
from kuat.quota.energy import MeterSample, clean, energy_between

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Demand:
    interval_start: datetime
    interval_end: datetime
    kwh: float | None
    avg_kw: float | None  # over the part of the interval the samples cover
    complete: bool  # the samples reach the interval's end


def interval_start(now: datetime, interval_min: int) -> datetime:
    if interval_min <= 0 or 60 % interval_min:
        raise ValueError(f"demand interval must divide an hour, got {interval_min} min")
    step = interval_min * 60
    seconds = int((as_utc(now) - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=seconds - seconds % step)


def demand_in(samples: Sequence[MeterSample], start: datetime, interval_min: int) -> Demand:
    end = start + timedelta(minutes=interval_min)
    energy = energy_between(samples, start, end)
    if energy is None:
        return Demand(start, end, None, None, False)
    covered_s = (energy.covered_to - start).total_seconds()
    avg = energy.kwh * 3600.0 / covered_s if covered_s > 0 else None
    return Demand(start, end, energy.kwh, avg, energy.covered_to >= end)


@dataclass(frozen=True, slots=True)
class ShortDemand:
    """The load a curtailment decision uses (:func:`short_demand`)."""

    kw: float | None
    latest_kw: float | None
    samples: int  # in the window
    deviation_kwh: float  # energy of the samples' deviation from the median in the window
    spike_ignored: bool  # the newest sample differs from ``kw`` and was let pass


def short_demand(
    samples: Sequence[MeterSample],
    now: datetime,
    window_s: float,
    spike_kwh: float,
    *,
    spike_s: float = 0.0,
    since: datetime | None = None,
) -> ShortDemand:
    """Decision load over ``(max(now - window_s, since), now]``, from *clean* samples.

    A step and a spike look the same in their first readings; only how long and how large
    they are tells them apart. The rule:

    - the baseline is the window's median (a spike shorter than half the window never moves
      it, whatever its size);
    - **duration**: an excursion every reading of the last ``spike_s`` seconds shows (those
      readings and the last one at or before ``now - spike_s``, so at least two) is sustained:
      the decision is the one of those readings nearest the baseline. A shorter spike is
      ignored; a step is believed once it has lasted ``spike_s``;
    - **size**: once the samples' deviation from the median (above and below, each sample
      weighted by the step to the next one) exceeds ``spike_kwh``, the newest sample is used
      at once, however short the excursion (a spike that large is not waited out).

    ``since`` restarts the window, e.g. at the last moment kuat's own actions changed the
    plant: samples before it show a load no longer there. Filtering hides no energy: the
    hour's books (``used_kwh``) count every sample.
    """
    now = as_utc(now)
    start = now - timedelta(seconds=window_s)
    if since is not None and as_utc(since) > start:
        start = as_utc(since)
    with_p = [s for s in samples if s.p_kw is not None and s.taken_at <= now]
    latest = max(with_p[-1].p_kw or 0.0, 0.0) if with_p else None
    window = [s for s in with_p if s.taken_at > start]
    if len(window) < 3 or window_s <= 0:
        return ShortDemand(latest, latest, len(window), 0.0, False)
    values = [max(s.p_kw or 0.0, 0.0) for s in window]
    med = statistics.median(values)
    steps = [(b.taken_at - a.taken_at).total_seconds() for a, b in itertools.pairwise(window)]
    steps.append(statistics.median(steps))  # the newest sample stands for one usual step
    deviation = sum(abs(v - med) * dt for v, dt in zip(values, steps, strict=True)) / 3600.0
    if deviation > spike_kwh:
        return ShortDemand(latest, latest, len(window), deviation, False)
    kw = med
    if spike_s > 0:
        edge = now - timedelta(seconds=spike_s)
        first = max((i for i, s in enumerate(window) if s.taken_at <= edge), default=None)
        if first is not None:
            recent = values[min(first, len(values) - 2) :]
            kw = min(max(med, min(recent)), max(recent))  # the baseline clamped into them
    return ShortDemand(kw, latest, len(window), deviation, latest != kw)


def demand_now(
    samples: Sequence[MeterSample], now: datetime, interval_min: int = 15, *, cleaned: bool = False
) -> tuple[Demand, Demand]:
    """The running interval (average so far) and the last complete one before it.
    ``cleaned``: ``samples`` are already :func:`clean` (as ``evaluate`` has them)."""
    pts = list(samples) if cleaned else clean(samples, as_utc(now))
    start = interval_start(now, interval_min)
    previous = start - timedelta(minutes=interval_min)
    return demand_in(pts, start, interval_min), demand_in(pts, previous, interval_min)


def peak_demand_kw(
    samples: Sequence[MeterSample], start: datetime, end: datetime, interval_min: int = 15
) -> float | None:
    """Highest complete-interval demand among the intervals lying wholly in ``[start, end]``."""
    pts = clean(samples, as_utc(end))
    step = timedelta(minutes=interval_min)
    first = interval_start(start, interval_min)
    if first < as_utc(start):
        first += step
    peak: float | None = None
    t = first
    while t + step <= end:
        d = demand_in(pts, t, interval_min)
        if d.complete and d.avg_kw is not None:
            peak = d.avg_kw if peak is None else max(peak, d.avg_kw)
        t += step
    return peak
