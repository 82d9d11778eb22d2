"""The agent's process in bench/farm_scale.py: the real ``kuat.agent.runtime.Agent`` (APScheduler
jobs, collectors, spool, uplink) run from a config file, as ``kuat run`` runs it, plus two
measuring pieces that live in this process so its CPU, RSS and event loop are the ones measured:

- a sampler task: sleep 10 ms, note how much later than that it woke (the event-loop lag);
- a wrapper around the miner job noting each cycle's start and end.

One JSON line per miner cycle on stdout, written when the next cycle starts (the window from one
cycle's start to the next), and one for the last window and the peak when SIGTERM stops it.

    python -m bench.farm_agent CONFIG [--uvloop]
    python -m bench.farm_agent --idle WINDOW_S [--uvloop]    # the sampler alone: the baseline
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from array import array
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench.farm import status_mb

SAMPLE_S = 0.010


def _quantile(sorted_xs: array[float], q: float) -> float:
    if not sorted_xs:
        return 0.0
    return sorted_xs[min(len(sorted_xs) - 1, int(q * len(sorted_xs)))]


class Meter:
    """Counts one window (miner cycle start to the next) of the agent's process."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.t_start = time.monotonic()
        self.cycle = 0
        self.lags: array[float] = array("d")  # seconds late, this window's samples
        self.window_at = time.monotonic()
        self.cpu_at = time.process_time()
        self.sent_at = 0
        self.pending_at = 0
        self.dropped_at = 0
        self.durations: dict[int, float] = {}
        self.cut: set[int] = set()
        self.trace: Trace | None = None
        # --heap: the allocators' figures before the first cycle (a dict), then on every row
        self.heap: dict[str, float] | None = None
        # the process before its first cycle (interpreter, modules, config, empty state): the
        # bench's bytes per miner are what the agent holds over this
        self.start_mb = status_mb()["VmRSS"]
        # the garbage collector's passes this window: the longest, and how many of generation 2
        # (a full pass walks every object the agent holds: a loop lag of its own)
        self.gc_max_ms = 0.0
        self.gc_full = 0
        self._gc_t0 = 0.0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
            return
        self.gc_max_ms = max(self.gc_max_ms, (time.perf_counter() - self._gc_t0) * 1000)
        self.gc_full += info.get("generation") == 2

    def emit(self, final: bool = False) -> None:
        if self.cycle == 0:
            return
        if self.trace is not None:
            self.trace.snap(self.cycle, self.agent)
        now, cpu = time.monotonic(), time.process_time()
        lags = array("d", sorted(self.lags))
        counts = self.agent.uplinks.spool.counts()
        sent = self.agent.telemetry_sent
        wall = max(now - self.window_at, 1e-9)
        recorded = (counts.pending - self.pending_at) + (sent - self.sent_at)
        recorded += counts.dropped - self.dropped_at
        ok = sum(1 for r in self.agent.state.asics.values() if type(r).__name__ == "AsicReading")
        mem = status_mb()
        # 1-ms buckets, so the bench can take quantiles over the whole run without this process
        # keeping every sample
        hist = Counter(min(int(x * 1000), 5000) for x in lags)
        row = {
            "cycle": self.cycle,
            "at_s": round(self.window_at - self.t_start, 1),
            "window_s": round(wall, 1),
            "duration_s": round(self.durations.get(self.cycle, wall), 1),
            "cut": self.cycle in self.cut,
            "finished": self.cycle in self.durations,
            "miners_ok": ok,
            "cpu_s": round(cpu - self.cpu_at, 2),
            "rss_mb": mem["VmRSS"],
            "hwm_mb": mem["VmHWM"],
            "start_mb": self.start_mb,
            "gc_max_ms": round(self.gc_max_ms, 1),
            "gc_full": self.gc_full,
            "lag_ms": {
                "p50": round(_quantile(lags, 0.50) * 1000, 1),
                "p99": round(_quantile(lags, 0.99) * 1000, 1),
                "max": round((lags[-1] if lags else 0.0) * 1000, 1),
                "n": len(lags),
            },
            "lag_hist": {str(k): v for k, v in sorted(hist.items())},
            "spool_pending": counts.pending,
            "spool_dropped": counts.dropped,
            "outbox": counts.outbox,  # register messages not yet acknowledged by a broker
            "uplink_pts_s": round((sent - self.sent_at) / wall, 1),
            "recorded_pts_s": round(recorded / wall, 1),
            "job_failures": dict(self.agent.job_failures),
            "final": final,
        }
        if self.heap:
            row["heap_mb"] = heap_mb()
            if self.cycle == 1:
                row["start_heap_mb"] = self.heap
        print(json.dumps(row), flush=True)
        self.lags = array("d")
        self.gc_max_ms, self.gc_full = 0.0, 0
        self.window_at, self.cpu_at = now, cpu
        self.sent_at, self.pending_at, self.dropped_at = sent, counts.pending, counts.dropped

    def wrap(self, poll: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., Any]:
        async def timed(**kw: Any) -> None:
            self.emit()
            self.cycle += 1
            n, t0 = self.cycle, time.monotonic()
            try:
                await poll(**kw)
                self.durations[n] = time.monotonic() - t0
            except asyncio.CancelledError:
                self.cut.add(n)  # the job was cut at its budget (or the agent is stopping)
                raise

        return timed

    async def sample(self) -> None:
        clock = time.perf_counter
        while True:
            t0 = clock()
            await asyncio.sleep(SAMPLE_S)
            if self.cycle:  # from the first cycle on: the agent's start-up is not its loop lag
                self.lags.append(max(0.0, clock() - t0 - SAMPLE_S))


def heap_mb() -> dict[str, float]:
    """Diagnosis (``--heap``): where the RSS sits, MB: Python's small-object allocator (its
    arenas, the bytes in live blocks, free blocks and unused pools inside them) and glibc's
    malloc (heap and mmapped chunks in use, free bytes it keeps). The gap between RSS and the
    live bytes is fragmentation, not objects."""
    import ctypes
    import os
    import re
    import tempfile

    # objects the collector's full pass walks (frozen ones it skips)
    out: dict[str, float] = {
        "gc_tracked": len(gc.get_objects()),
        "gc_frozen": gc.get_freeze_count(),
    }
    with tempfile.TemporaryFile("w+") as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read()
    for key, pattern in (
        ("py_arenas", r"(\d+) arenas \* \d+ bytes/arena\s+=\s+([\d,]+)"),
        ("py_live", r"# bytes in allocated blocks\s+=\s+([\d,]+)"),
        ("py_free_blocks", r"# bytes in available blocks\s+=\s+([\d,]+)"),
        ("py_unused_pools", r"unused pools \* \d+ bytes\s+=\s+([\d,]+)"),
    ):
        m = re.search(pattern, text)
        if m:
            out[key] = round(int(m.groups()[-1].replace(",", "")) / 2**20, 1)

    class Mallinfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in (
                *("arena", "ordblks", "smblks", "hblks", "hblkhd"),
                *("usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"),
            )
        ]

    try:
        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = Mallinfo2
        mi = libc.mallinfo2()
    except (AttributeError, OSError):
        return out
    for key, value in (
        ("c_heap", mi.arena),
        ("c_mmapped", mi.hblkhd),
        ("c_in_use", mi.uordblks),
        ("c_free", mi.fordblks),
    ):
        out[key] = round(value / 2**20, 1)
    return out


class Trace:
    """Diagnosis (``--tracemalloc FILE``): what the agent holds, by allocating line, at the end
    of cycles 2 and 4 (tracemalloc's snapshot), and what grew between them, written to FILE."""

    def __init__(self, path: Path) -> None:
        import tracemalloc

        self.path = path
        self.first: Any = None
        tracemalloc.start(1)

    def snap(self, cycle: int, agent: Any) -> None:
        import tracemalloc

        if cycle not in (2, 4):
            return
        snap = tracemalloc.take_snapshot()
        n = max(1, len(agent.state.asics))
        with self.path.open("a") as out:
            stats = snap.statistics("lineno")
            total = sum(s.size for s in stats)
            print(
                f"## cycle {cycle}: {total / 2**20:.1f} MiB traced, {total / n:.0f} B per miner",
                file=out,
            )
            for s in stats[:40]:
                print(f"{s.size / n:8.0f} B/miner {s.count:8d} blocks  {s.traceback}", file=out)
            print("## by file", file=out)
            for s in snap.statistics("filename")[:25]:
                print(f"{s.size / n:8.0f} B/miner {s.count:8d} blocks  {s.traceback}", file=out)
            if self.first is not None:
                print("## growth from cycle 2", file=out)
                for d in snap.compare_to(self.first, "lineno")[:20]:
                    print(f"{d.size_diff / 1024:+9.0f} KiB {d.traceback}", file=out)
        self.first = snap


def time_phases(agent: Any) -> None:
    """Diagnosis (``--phases``): the wall time of each of the agent's farm-wide steps, one log
    line a call (the miner polls, the inventory publish and its thread's part, telemetry flush,
    the quota evaluation), so a slow cycle's time can be placed. Costs two clock reads a call."""
    import functools
    import inspect
    import logging

    plog = logging.getLogger("bench.phases")
    plog.setLevel(logging.INFO)
    logging.getLogger("kuat").setLevel(logging.INFO)  # the agent's own "inventory: n miners, ..."

    def wrap(owner: Any, name: str, label: str, every: int = 1) -> None:
        fn = getattr(owner, name)
        calls = [0]

        def say(t0: float) -> None:
            calls[0] += 1
            ms = (time.perf_counter() - t0) * 1000
            if calls[0] % every == 0 or ms > 1000:
                plog.info("%s #%d %.0f ms", label, calls[0], ms)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def timed_async(*a: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await fn(*a, **kw)
                finally:
                    say(t0)

            setattr(owner, name, timed_async)
        else:

            @functools.wraps(fn)
            def timed(*a: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    say(t0)

            setattr(owner, name, timed)

    wrap(agent._asic, "poll_many", "poll_many")
    # the publish itself, whoever asked for it (the inventory job, or a miner cycle after
    # 14b5bf7, beside it), where the agent has it apart
    publish = "_publish_inventory_now" if hasattr(agent, "_publish_inventory_now") else None
    wrap(agent, publish or "publish_inventory", "publish_inventory")
    wrap(agent.uplinks.register, "publish_inventory", "register.publish_inventory (thread)")
    wrap(agent, "flush", "flush", every=10)
    wrap(agent, "evaluate_quota", "evaluate_quota", every=12)
    wrap(agent, "_record_asics", "_record_asics", every=100)


async def run(
    config: Path, trace: Path | None = None, heap: bool = False, phases: bool = False
) -> None:
    from kuat.agent.config import load_config
    from kuat.agent.runtime import Agent

    agent = Agent(load_config(config))
    meter = Meter(agent)
    if trace is not None:
        meter.trace = Trace(trace)
    if heap:
        meter.heap = heap_mb()
    if phases:
        time_phases(agent)
    # instance attributes shadow the methods: the scheduled job's spread poll calls the first,
    # the SIGTERM handler the second (the last window is counted before the spool closes)
    agent.poll_asics = meter.wrap(agent.poll_asics)  # type: ignore[method-assign]
    stop = agent.request_stop

    def request_stop() -> None:
        meter.emit(final=True)
        stop()

    agent.request_stop = request_stop  # type: ignore[method-assign]
    sampler = asyncio.create_task(meter.sample())
    try:
        await agent.run()
    finally:
        sampler.cancel()


async def idle(window_s: float) -> None:
    """The baseline: the same sampler in a process doing nothing else, on the same machine.
    Its lag is the operating system's scheduling delay, which the agent's includes too."""
    lags: array[float] = array("d")
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(15, stopped.set)
    clock = time.perf_counter

    def emit() -> None:
        hist = Counter(min(int(x * 1000), 5000) for x in lags)
        print(json.dumps({"lag_hist": {str(k): v for k, v in hist.items()}}), flush=True)
        del lags[:]

    next_at = clock() + window_s
    while not stopped.is_set():
        t0 = clock()
        await asyncio.sleep(SAMPLE_S)
        lags.append(max(0.0, clock() - t0 - SAMPLE_S))
        if clock() >= next_at:
            emit()
            next_at += window_s
    emit()


def main() -> None:
    import logging

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", type=Path, nargs="?")
    ap.add_argument("--idle", type=float, default=0.0, help="only the sampler: the baseline")
    ap.add_argument("--uvloop", action="store_true", help="run the agent on uvloop's event loop")
    ap.add_argument("--slow-ms", type=float, default=0.0, help="log loop holds longer than this")
    ap.add_argument("--tracemalloc", type=Path, help="diagnosis: what it holds, to FILE")
    ap.add_argument("--heap", action="store_true", help="diagnosis: allocator figures per row")
    ap.add_argument("--phases", action="store_true", help="diagnosis: log farm-wide steps' time")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    factory = None
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            sys.exit("--uvloop: uvloop is not installed (pip install 'kuat[uvloop]')")
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory, debug=args.slow_ms > 0 or None) as runner:
        if args.slow_ms:
            # asyncio's debug mode logs every callback or task step that held the loop longer
            runner.get_loop().slow_callback_duration = args.slow_ms / 1000
        if args.idle:
            runner.run(idle(args.idle))
        else:
            runner.run(run(args.config, args.tracemalloc, args.heap, args.phases))


if __name__ == "__main__":
    main()
