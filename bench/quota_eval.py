"""Benchmark: the quota evaluation the agent runs as each site-meter reading lands (not a test).

    .venv/bin/python -m bench.quota_eval [--repeat 30]

The agent keeps two hours of site-meter readings (a meter read every second: 7,200) and
evaluates the quota at every reading, before the curtailment plan: this time is part of the
decision age (bench/closed_loop.py). Measured at several instants of an hour, CPU time per
evaluation (``time.process_time``, best of ``--repeat``), against a baseline in the same run:
the whole history converted and evaluated, as before ``reads_since`` (evaluate's demand
figures cleaned it a second time then). Both must give the same status.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from kuat.agent.quota_job import readings_from
from kuat.collectors.readings import MeterReading
from kuat.quota import evaluate as ev
from kuat.quota.clock import hour_bounds, hour_of
from kuat.quota.demand import Demand, demand_now
from kuat.quota.energy import MeterSample
from kuat.quota.evaluate import QuotaPolicy, QuotaStatus, evaluate, reads_since
from kuat.quota.schedule import HourlyAllocation

POLICY = QuotaPolicy(tolerance_kwh=1.0, actuation_s=21.0)


def history(end: datetime, seconds: int) -> deque[MeterReading]:
    return deque(
        MeterReading(
            "meter",
            1,
            "bench",
            end - timedelta(seconds=seconds - i),
            p_kw=200.0 + (i % 7),
            import_kwh=1_284_000.0 + i * 200.0 / 3600,
        )
        for i in range(seconds)
    )


def _cleaning_again(
    samples: list[MeterSample], now: datetime, interval_min: int = 15, *, cleaned: bool = False
) -> tuple[Demand, Demand]:
    """evaluate's demand figures as they were: the samples cleaned a second time."""
    return demand_now(samples, now, interval_min)


def whole(hist: deque[MeterReading], now: datetime, book: HourlyAllocation) -> QuotaStatus:
    """The baseline: every reading held, converted and evaluated."""
    samples = [MeterSample.from_reading(r) for r in hist]
    ev.demand_now = _cleaning_again
    try:
        return evaluate(book, samples, now, POLICY, site="bench")
    finally:
        ev.demand_now = demand_now


def agent(hist: deque[MeterReading], now: datetime, book: HourlyAllocation) -> QuotaStatus:
    """As QuotaJob.evaluate_now: the readings from reads_since on."""
    kept = readings_from(hist, reads_since(now, POLICY))
    samples = [MeterSample.from_reading(r) for r in kept]
    return evaluate(book, samples, now, POLICY, site="bench")


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    h0, _ = hour_bounds(*hour_of(datetime(2026, 12, 5, 6, 30, tzinfo=UTC)))
    book = HourlyAllocation("bench", h0.date(), (0.3,) * 24)
    print("| into the hour | readings held | whole history (ms) | agent (ms) | ratio |")
    print("|---|---|---|---|---|")
    for minutes in (1, 30, 59):
        now = h0 + timedelta(minutes=minutes)
        hist = history(now, 7200)
        assert whole(hist, now, book) == agent(hist, now, book)
        a = best(functools.partial(whole, hist, now, book), args.repeat)
        b = best(functools.partial(agent, hist, now, book), args.repeat)
        print(f"| {minutes} min | {len(hist)} | {a * 1000:.1f} | {b * 1000:.1f} | {a / b:.1f}× |")


if __name__ == "__main__":
    main()
