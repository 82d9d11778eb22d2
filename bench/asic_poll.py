"""Benchmark: kuat's AsicPoller vs pyasic 0.79 against the same simulated farm (not a test).

The farm runs in its own process (python -m collectors.cgminer.sim); each client runs in its own
child process too, so CPU seconds and peak RSS are that client's alone.

    .venv/bin/python -m bench.asic_poll --count 2000 --rounds 3 --pyasic-count 300

Reported per client: miners/s, client CPU-s per 1000 full polls, peak RSS, success rate and the
share of probe fields filled. kuat's first cycle (firmware detection) is reported separately
from the steady state; pyasic has no such cache, so every one of its polls is a first poll.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

FIELDS = (
    "vendor",
    "model",
    "serial",
    "mac",
    "firmware",
    "hashrate_ths",
    "hashrate_nominal_ths",
    "power_w",
    "power_limit_w",
    "temps",
    "fans",
    "pools",
    "uptime_s",
)


def targets(first_ip: str, count: int) -> list[tuple[str, int]]:
    from collectors.cgminer.sim import _addresses

    return [(ip, 4028) for ip in _addresses(first_ip, count)]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_kuat(tg: list[tuple[str, int]], rounds: int, concurrency: int) -> dict[str, Any]:
    from collectors.cgminer.collector import AsicPoller
    from collectors.readings import AsicReading

    poller = AsicPoller(timeout_s=5.0, concurrency=concurrency)
    cpu0, t0 = time.process_time(), time.perf_counter()
    first = await poller.poll_many(tg)
    first_cpu, first_wall = time.process_time() - cpu0, time.perf_counter() - t0
    cpu0, t0 = time.process_time(), time.perf_counter()
    results: list[Any] = []
    for _ in range(rounds):
        results += await poller.poll_many(tg)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    ok = [r for r in results if isinstance(r, AsicReading)]
    filled = {
        "vendor": sum(r.vendor is not None for r in ok),
        "model": sum(r.model is not None for r in ok),
        "serial": sum(r.serial is not None for r in ok),
        "mac": sum(r.mac is not None for r in ok),
        "firmware": sum(r.firmware is not None for r in ok),
        "hashrate_ths": sum(r.hashrate_ths is not None for r in ok),
        "hashrate_nominal_ths": sum(r.hashrate_nominal_ths is not None for r in ok),
        "power_w": sum(r.power_w is not None for r in ok),
        "power_limit_w": sum(r.power_limit_w is not None for r in ok),
        "temps": sum(bool(r.temps_c.board or r.temps_c.chip) for r in ok),
        "fans": sum(bool(r.fans_rpm) for r in ok),
        "pools": sum(bool(r.pools) for r in ok),
        "uptime_s": sum(r.uptime_s is not None for r in ok),
    }
    errors = sorted({r.cause for r in results if not isinstance(r, AsicReading)})[:3]
    return _report("kuat", len(results), len(ok), cpu, wall, filled, errors) | {
        "first_cycle": {
            "polls": len(first),
            "miners_per_s": round(len(first) / first_wall, 1),
            "cpu_s_per_1000": round(first_cpu / len(first) * 1000, 3),
        }
    }


async def run_pyasic(tg: list[tuple[str, int]], concurrency: int) -> dict[str, Any]:
    import logging

    logging.disable(logging.CRITICAL)
    from pyasic.miners.antminer.bmminer.X19.S19 import BMMinerS19Pro

    sem = asyncio.Semaphore(concurrency)

    async def one(ip: str) -> Any:
        async with sem:
            try:
                return await asyncio.wait_for(BMMinerS19Pro(ip).get_data(), 30)
            except Exception as e:
                return e

    cpu0, t0 = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(one(ip) for ip, _ in tg))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    ok = [d for d in results if not isinstance(d, Exception) and d.hashrate is not None]

    def has(d: Any, name: str) -> bool:
        v = getattr(d, name, None)
        return bool(v) if isinstance(v, list) else v is not None

    filled = {
        "vendor": sum(has(d, "make") for d in ok),
        "model": sum(has(d, "model") for d in ok),
        "serial": sum(has(d, "serial_number") for d in ok),
        "mac": sum(has(d, "mac") for d in ok),
        "firmware": sum(has(d, "fw_ver") for d in ok),
        "hashrate_ths": sum(has(d, "hashrate") for d in ok),
        "hashrate_nominal_ths": sum(has(d, "expected_hashrate") for d in ok),
        "power_w": sum(has(d, "wattage") for d in ok),
        "power_limit_w": sum(has(d, "wattage_limit") for d in ok),
        "temps": sum(any(b.temp is not None for b in d.hashboards) for d in ok),
        "fans": sum(any(f.speed is not None for f in d.fans) for d in ok),
        "pools": sum(bool(d.pools) for d in ok),
        "uptime_s": sum(has(d, "uptime") for d in ok),
    }
    errors = sorted({str(e)[:120] for e in results if isinstance(e, Exception)})[:3]
    return _report(
        "pyasic 0.79 BMMinerS19Pro.get_data", len(results), len(ok), cpu, wall, filled, errors
    )


def _report(
    name: str, polls: int, ok: int, cpu: float, wall: float, filled: dict[str, int], errors: list
) -> dict[str, Any]:
    return {
        "client": name,
        "polls": polls,
        "miners_per_s": round(polls / wall, 1),
        "cpu_s_per_1000_polls": round(cpu / polls * 1000, 3),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "success_rate": round(ok / polls, 4),
        "fields_filled": round(sum(filled.values()) / (len(FIELDS) * max(ok, 1)), 3),
        "fields": {k: round(v / max(ok, 1), 2) for k, v in filled.items()},
        "sample_errors": errors,
    }


def child(args: argparse.Namespace) -> None:
    tg = targets(args.first_ip, args.count)
    if args.only == "kuat":
        out = asyncio.run(run_kuat(tg, args.rounds, args.concurrency))
    else:
        out = asyncio.run(run_pyasic(tg[: args.pyasic_count], args.concurrency))
    print(json.dumps(out))


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=2000, help="simulated miners")
    ap.add_argument("--rounds", type=int, default=3, help="steady-state kuat cycles")
    ap.add_argument("--pyasic-count", type=int, default=300, help="miners polled by pyasic")
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--first-ip", default="127.20.0.1")
    ap.add_argument("--mix", action="store_true", help="site mix instead of stock S19 only")
    ap.add_argument("--only", choices=("kuat", "pyasic"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.only:
        child(args)
        return

    sim_cmd = [sys.executable, "-m", "collectors.cgminer.sim", "--count", str(args.count)]
    sim_cmd += ["--first-ip", args.first_ip]
    if not args.mix:
        sim_cmd += ["--personality", "antminer"]
    sim = subprocess.Popen(sim_cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        print(sim.stdout.readline().strip(), file=sys.stderr)
        base = [sys.executable, "-m", "bench.asic_poll", *(argv or sys.argv[1:])]
        reports = []
        for only in ("kuat", "pyasic"):
            if only == "pyasic" and args.pyasic_count <= 0:
                continue
            out = subprocess.run(
                [*base, "--only", only], capture_output=True, text=True, check=False
            )
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            reports.append(json.loads(out.stdout.strip().splitlines()[-1]))
        for r in reports:
            print(json.dumps(r, indent=2))
        k = next((r for r in reports if r["client"] == "kuat"), None)
        if k is not None:
            verdict = "meets" if k["cpu_s_per_1000_polls"] <= 0.35 else "misses"
            print(
                f"kuat {verdict} the target: {k['cpu_s_per_1000_polls']} client CPU-s "
                f"per 1000 full polls (target ≤ 0.35) on {os.cpu_count()} CPUs",
                file=sys.stderr,
            )
    finally:
        sim.terminate()
        sim.wait()


if __name__ == "__main__":
    main()
