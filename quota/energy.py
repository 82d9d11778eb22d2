"""Energy from a series of meter samples: the import counter where it can be trusted, integrated
power where it cannot.

The counter is what the utility bills, so it wins whenever both ends of a step have it and it did
not go backwards (a replaced or reset meter does). Power integration is the fallback, and a
window that starts before the first sample is estimated at that sample's power and flagged, so a
freshly started agent still gives a usable (and honestly labelled) number.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from kuat.collectors.readings import MeterReading


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One site-meter sample: the instant, total active power and the import energy counter."""

    taken_at: datetime
    p_kw: float | None = None
    import_kwh: float | None = None

    @classmethod
    def from_reading(cls, reading: MeterReading) -> MeterSample:
        return cls(reading.taken_at, reading.p_kw, reading.import_kwh)


@dataclass(frozen=True, slots=True)
class Energy:
    kwh: float
    covered_to: datetime  # energy is known up to here (the last sample in the window)
    head_estimated: bool  # no sample at or before the window start: the head is extrapolated
    counter_missing: bool  # some step had to use power because a counter value was missing
    counter_went_back: bool  # some step's counter decreased (meter reset or replaced)
    longest_gap_s: float


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def clean(samples: Iterable[MeterSample], until: datetime) -> list[MeterSample]:
    """Aware samples taken at or before ``until``, in time order, non-finite values dropped.

    A sample with a naive time cannot be placed on the UTC axis and is skipped rather than
    guessed; samples from the future (a meter clock ahead of ours) wait until their time comes.
    """
    out = [
        MeterSample(s.taken_at, _finite(s.p_kw), _finite(s.import_kwh))
        for s in samples
        if s.taken_at.tzinfo is not None
        and s.taken_at.utcoffset() is not None
        and s.taken_at <= until
    ]
    out.sort(key=lambda s: s.taken_at)
    return out


def _power(a: MeterSample, b: MeterSample) -> float | None:
    # Negative power is export (own generation); it is not import, so it counts as zero.
    ps = [max(p, 0.0) for p in (a.p_kw, b.p_kw) if p is not None]
    return sum(ps) / len(ps) if ps else None


def energy_between(samples: Sequence[MeterSample], start: datetime, end: datetime) -> Energy | None:
    """Import energy in ``[start, end]`` from *clean* (sorted, aware) samples, or None if no
    sample falls in the window or straddles its start."""
    # end == start is a real window of zero length: at the hour's first instant, with a sample
    # on the boundary, the hour has used 0 kWh (not "unknown", which would blind one cycle).
    if not samples or end < start:
        return None
    inside = [s for s in samples if start <= s.taken_at <= end]
    before = [s for s in samples if s.taken_at < start]
    if not inside:
        return None
    series = ([before[-1]] if before else []) + inside
    kwh = 0.0
    counter_missing = counter_back = False
    longest_gap = 0.0
    for a, b in itertools.pairwise(series):
        span = (b.taken_at - a.taken_at).total_seconds()
        if span <= 0:
            continue
        longest_gap = max(longest_gap, span)
        lo, hi = max(a.taken_at, start), min(b.taken_at, end)
        overlap = (hi - lo).total_seconds()
        if overlap <= 0:
            continue
        if a.import_kwh is not None and b.import_kwh is not None:
            delta = b.import_kwh - a.import_kwh
            if delta >= 0:
                # Linear within a step: the only way to split a step straddling the hour start.
                kwh += delta * overlap / span
                continue
            counter_back = True
        else:
            counter_missing = True
        p = _power(a, b)
        if p is not None:
            kwh += p * overlap / 3600.0
    head_estimated = not before and inside[0].taken_at > start
    if head_estimated:
        first = inside[0]
        head_s = (first.taken_at - start).total_seconds()
        longest_gap = max(longest_gap, head_s)
        if first.p_kw is not None:
            kwh += max(first.p_kw, 0.0) * head_s / 3600.0
    return Energy(
        kwh=max(kwh, 0.0),
        covered_to=inside[-1].taken_at,
        head_estimated=head_estimated,
        counter_missing=counter_missing,
        counter_went_back=counter_back,
        longest_gap_s=longest_gap,
    )


def present_power(samples: Sequence[MeterSample]) -> tuple[float | None, datetime | None]:
    """The latest power and when it was measured; from the counter slope when the meter gives
    no power register. Export counts as zero import."""
    for s in reversed(samples):
        if s.p_kw is not None:
            return max(s.p_kw, 0.0), s.taken_at
    counted = [s for s in samples if s.import_kwh is not None]
    for a, b in zip(reversed(counted[:-1]), reversed(counted[1:]), strict=False):
        span = (b.taken_at - a.taken_at).total_seconds()
        if span > 0 and b.import_kwh is not None and a.import_kwh is not None:
            delta = b.import_kwh - a.import_kwh
            if delta >= 0:
                return delta * 3600.0 / span, b.taken_at
    return None, None
