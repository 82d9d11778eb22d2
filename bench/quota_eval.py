"""Benchmark: the quota evaluation and the curtailer's step the agent runs as each site-meter
reading lands (not a test).

    .venv/bin/python -m bench.quota_eval [--repeat 30] [--miners 1000,5000]

The agent keeps two hours of site-meter readings (a meter read every second: 7,200) and
evaluates the quota at every reading, before the curtailment plan: this time is part of the
decision age (bench/closed_loop.py). Measured at several instants of an hour, CPU time per
evaluation (``time.process_time``, best of ``--repeat``), against a baseline in the same run:
the whole history converted and evaluated, as before ``reads_since`` (evaluate's demand
figures cleaned it a second time then). Both must give the same status.

Then ``Curtailer.run`` (within its limit: nothing to do, as at most readings) on farms of
``--miners``, against the same step asking each miner's handle for its capabilities by a
runtime protocol check and recomputing its power steps, twice a miner at every reading, as it
did before the answers were kept per handle class and per full power. Both must plan the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import tempfile
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from kuat.agent import curtailment as cm
from kuat.agent.config import parse_config
from kuat.agent.curtailment import Curtailer, MinerRecord
from kuat.agent.quota_job import readings_from
from kuat.agent.state import SiteState
from kuat.collectors.capabilities import PowerLimitable, Sleepable
from kuat.collectors.readings import AsicReading, MeterReading
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


def curtailer(miners: int) -> tuple[Curtailer, QuotaStatus]:
    tmp = tempfile.mkdtemp()
    cfg = parse_config(f'[site]\nid = "bench"\n[agent]\nstate_dir = "{tmp}"\n')
    state = SiteState()
    now = datetime(2026, 12, 5, 6, 30, tzinfo=UTC)
    for i in range(miners):
        fam, model = (("whatsminer", "Whatsminer M31S"), ("antminer", "Antminer S19"))[i % 2]
        r = AsicReading(
            f"127.96.{i // 250}.{i % 250 + 1}",
            4028,
            now,
            firmware_family=fam,
            model=model,
            serial=f"B{i:015d}",
            hashrate_ths=76.0 + i % 50,
            power_w=3220.0,
            power_limit_w=3600.0 if fam == "whatsminer" else None,
        )
        state.asics[(r.ip, r.port)] = r
    c = Curtailer(cfg, state, clock=lambda: now)
    load = miners * 3.22
    h0, _ = hour_bounds(*hour_of(now))
    book = HourlyAllocation("bench", h0.date(), (0.3,) * 24)
    samples = [MeterSample.from_reading(r) for r in history(now, 120)]
    # the farm's load, with a little room: nothing to do, as at most readings
    status = dataclasses.replace(
        evaluate(book, samples, now, POLICY, site="bench"),
        p_kw=load,
        decision_kw=load,
        allowed_kw=1.01 * load,
    )
    return c, status


def checking_each_miner(c: Curtailer, status: QuotaStatus) -> object:
    """The baseline: capabilities and steps asked anew of every miner."""
    saved = (MinerRecord.can_limit, MinerRecord.can_sleep, cm._steps)
    MinerRecord.can_limit = lambda rec: (  # type: ignore[method-assign]
        isinstance(rec.handle, PowerLimitable) and not rec.limit_refused
    )
    MinerRecord.can_sleep = lambda rec, now: (  # type: ignore[method-assign]
        not (rec.handle is not None and not isinstance(rec.handle, Sleepable))
        and not rec.outlet_off
        and (rec.sleep_retry_at is None or rec.sleep_retry_at <= now)
    )
    cm._steps = cm._steps.__wrapped__  # type: ignore[attr-defined]
    try:
        return c.run(status, status.at)
    finally:
        MinerRecord.can_limit, MinerRecord.can_sleep, cm._steps = saved  # type: ignore[method-assign]


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
    ap.add_argument("--miners", default="1000,5000")
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
    print()
    print("| miners | each miner asked (ms) | curtailer (ms) | ratio |")
    print("|---|---|---|---|")
    for n in (int(x) for x in args.miners.split(",")):
        c, status = curtailer(n)
        c.run(status, status.at)
        plans = []
        for fn in (checking_each_miner, lambda c, s: c.run(s, s.at)):
            fn(c, status)
            plans.append(c.last_plan)
        assert plans[0] == plans[1]
        a = best(functools.partial(checking_each_miner, c, status), max(3, args.repeat // 5))
        b = best(functools.partial(c.run, status, status.at), max(3, args.repeat // 5))
        print(f"| {n} | {a * 1000:.1f} | {b * 1000:.1f} | {a / b:.1f}× |")


if __name__ == "__main__":
    main()
