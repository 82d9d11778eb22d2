"""Benchmark: the memory peak of a farm's register inventory publish (not a test; asserts nothing).

    .venv/bin/python -m bench.inventory_peak                  # 50,000 miners, 2 rounds
    .venv/bin/python -m bench.inventory_peak --miners 10000 --rounds 1
    .venv/bin/python -m bench.inventory_peak --steps          # the publish's steps, one by one
    .venv/bin/python -m bench.inventory_peak --send --baseline 28703b3  # and its delivery

Why: ``bench/farm_scale.py --miners 50000 --interval 120 --hour`` on 0447ba8 had the agent's
VmHWM jump from 243 MB to 323 MB in the first cycle after discovery while the RSS after every
cycle stayed at 240-252 MB: a one-off transient. The suspect, reproduced here: the first
inventory of the whole farm (a snapshot of 50,000 miners and an ``added`` event for each) being
queued for the register (README, farm_scale, session 10, for the farm's own figures).

What runs, without simulators or a broker (the farm bench configures none, so nothing is
sent; the publish is what the agent's worker thread does): 50,000 realistic readings
(bench/uplink.py's site mix), then ``RegisterPublisher.publish_inventory`` into a real spool in
a temporary directory, twice — the farm's first inventory (every miner added) and the next one
(nothing changed, as in every later cycle) — then what a new connection to a broker does with
the stored snapshot (``RegisterPublisher._on_new_connection``: queued again). Each measurement
runs in a child process of its own with the agent's allocator settings (agent/tuning.py: glibc's
mmap threshold fixed, so every farm-sized buffer is pages of its own and shows in the RSS), the
peak read as VmHWM after resetting it (/proc/self/clear_refs) just before the step, less the RSS
then.

Baseline, in the same run: the same children with ``--baseline``'s kuat (default 0447ba8,
taken with ``git archive`` into a temporary directory and put first on PYTHONPATH; this tree's
bench and readings). Rounds alternate the two, so a busy machine weighs on both alike.
``--send`` does the same with a broker (Mosquitto on loopback, started by each child): the
publish, then the sender's delivery of it, each with its own peak (the agent's peak at each
periodic publish on a site with a register). ``--steps`` prints each part of this tree's
publish apart (snapshot, events, staging, snapshot JSON, transaction), with tracemalloc's
figures beside the RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.farm import status_mb
from bench.uplink import make_asic

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5": VmHWM back to the RSS now
        f.write("5")


def _measure(what: Callable[[], object]) -> dict[str, float]:
    gc.collect()
    _reset_peak()
    before = status_mb()["VmRSS"]
    t0 = time.perf_counter()
    what()
    seconds = time.perf_counter() - t0
    after = status_mb()
    return {
        "s": round(seconds, 2),
        "rss_before": round(before, 1),
        "peak_over": round(after["VmHWM"] - before, 1),
        "kept": round(after["VmRSS"] - before, 1),
    }


def _farm_readings(miners: int) -> tuple[list[Any], dict[str, Any]]:
    """The agent's allocator settings, the farm's readings, and the report with its start."""
    from kuat.agent.tuning import apply_gc_tuning

    apply_gc_tuning()
    rng = random.Random(1)
    readings = [make_asic(rng, i, NOW) for i in range(miners)]
    return readings, {"start_rss": round(status_mb()["VmRSS"], 1)}


def child(miners: int) -> dict[str, Any]:
    from kuat.uplink.mqtt import RegisterPublisher
    from kuat.uplink.spool import Spool

    readings, out = _farm_readings(miners)
    with tempfile.TemporaryDirectory(prefix="kuat-inventory-peak-") as tmp:
        spool = Spool(Path(tmp) / "spool.db")
        pub = RegisterPublisher(spool, owner_bin="230140000077", site="farm", broker=None)
        for name, when in (("first", NOW), ("next", NOW + timedelta(minutes=2))):
            out[name] = _measure(lambda t=when: pub.publish_inventory(list(readings), t))
        # what a new connection to the broker does with the snapshot (queued again), without
        # the online status that needs one
        pub.status_topic = None
        out["reconnect"] = _measure(pub._on_new_connection)
        out["outbox"] = spool.counts().outbox
        out["kuat"] = str(sys.modules["kuat.uplink.spool"].__file__)
        spool.close()
    return out


def send_child(miners: int) -> dict[str, Any]:
    """The publish and its delivery to a broker on loopback (Mosquitto, started here): the
    retained snapshot read from the spool and written to the socket by paho."""
    from kuat.uplink.broker import BrokerEndpoint
    from kuat.uplink.mqtt import RegisterPublisher
    from kuat.uplink.spool import Spool
    from tests.servers import Mosquitto

    readings, out = _farm_readings(miners)
    with tempfile.TemporaryDirectory(prefix="kuat-inventory-peak-") as tmp:
        broker = Mosquitto(Path(tmp) / "mosquitto")
        (Path(tmp) / "mosquitto").mkdir()
        broker.start()
        spool = Spool(Path(tmp) / "spool.db")
        endpoint = BrokerEndpoint("127.0.0.1", broker.port, tls=False)
        pub = RegisterPublisher(spool, owner_bin="230140000077", site="farm", broker=endpoint)
        pub.start()
        try:
            for name, when in (("first", NOW), ("next", NOW + timedelta(minutes=2))):
                # the sender waits until the publish has woken it; then the delivery apart
                pub._stopping.set()
                pub._wake.set()
                assert pub._sender is not None
                pub._sender.join()
                out[f"{name}_publish"] = _measure(
                    lambda t=when: pub.publish_inventory(list(readings), t)
                )

                def send() -> None:
                    pub._stopping.clear()
                    pub._sender = threading.Thread(target=pub._run_sender, daemon=True)
                    pub._sender.start()
                    pub._wake.set()
                    if not pub.wait_idle(120):
                        raise RuntimeError("the broker did not acknowledge the inventory")

                out[f"{name}_send"] = _measure(send)
        finally:
            pub.stop()
            spool.close()
            broker.stop()
    return out


def baseline_tree(commit: str, into: Path) -> Path:
    """``commit``'s kuat (git archive) under ``into``; the directory to put on PYTHONPATH."""
    here = Path(__file__).resolve().parent.parent
    src, path = into / "src", into / "path"
    src.mkdir()
    path.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(here), "archive", commit], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    for built in here.glob("uplink/*.so"):  # the line protocol's C accelerator, if built
        shutil.copy2(built, src / "uplink" / built.name)
    (path / "kuat").symlink_to(src)
    return path


def steps(miners: int) -> None:
    """The publish's parts one by one, each with its own peak (tracemalloc's too)."""
    import tracemalloc

    from kuat.agent.tuning import apply_gc_tuning
    from kuat.uplink.inventory import build_snapshot, diff_events, snapshot_json_parts
    from kuat.uplink.mqtt import RegisterPublisher
    from kuat.uplink.register_history import HISTORY_KEYS
    from kuat.uplink.spool import FilePayload, Spool

    apply_gc_tuning()
    rng = random.Random(1)
    readings = [make_asic(rng, i, NOW) for i in range(miners)]
    tracemalloc.start()

    def step(name: str, fn: Callable[[], Any]) -> Any:
        box: list[Any] = []
        tracemalloc.reset_peak()
        traced = tracemalloc.get_traced_memory()[0]
        m = _measure(lambda: box.append(fn()))
        cur, peak = tracemalloc.get_traced_memory()
        print(
            f"{name:<22} {m['s']:5.2f} s  peak +{m['peak_over']:5.1f} MB, kept +{m['kept']:5.1f} "
            f"(RSS); traced peak +{(peak - traced) / 2**20:5.1f}, "
            f"kept +{(cur - traced) / 2**20:5.1f}"
        )
        return box[0]

    with tempfile.TemporaryDirectory(prefix="kuat-inventory-peak-") as tmp:
        spool = Spool(Path(tmp) / "spool.db")
        pub = RegisterPublisher(spool, owner_bin="230140000077", site="farm", broker=None)
        snap = step(
            "build_snapshot",
            lambda: build_snapshot(readings, site="farm", owner_bin="x", now=NOW),
        )
        events = step("diff_events", lambda: diff_events(None, snap))
        n = len(events)
        with contextlib.ExitStack() as stack:
            staged = step(
                "Spool.staged",
                lambda: stack.enter_context(spool.staged(events, keep=HISTORY_KEYS)),
            )
            # spilled beside the spool, as the publisher does
            body = step(
                "snapshot_json_parts",
                lambda: snapshot_json_parts(snap, spill_dir=Path(tmp)),
            )

            def build(last: int) -> bytearray | FilePayload:
                pub.history.record_in_transaction(staged, range(last - n + 1, last + 1), NOW)
                return body.with_seq(last)

            step(
                "outbox_put_sequenced",
                lambda: spool.outbox_put_sequenced(
                    "k", "t/events", staged, retained=("t/inventory", build)
                ),
            )
        spool.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--miners", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", action="store_true", help="the publish's parts, one by one")
    p.add_argument("--baseline", default="0447ba8", help="the commit measured against")
    p.add_argument(
        "--send", action="store_true", help="the publish and its delivery to a broker, apart"
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--send-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.send_child:
        print(json.dumps(send_child(args.miners)))
        return 0
    if args.child:
        print(json.dumps(child(args.miners)))
        return 0
    if args.steps:
        steps(args.miners)
        return 0
    results: dict[str, list[dict[str, Any]]] = {"before": [], "now": []}
    with tempfile.TemporaryDirectory(prefix="kuat-inventory-peak-") as tmp:
        env = {"before": {**os.environ, "PYTHONPATH": str(baseline_tree(args.baseline, Path(tmp)))}}
        env["now"] = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        for r in range(args.rounds):
            for kind in ("before", "now") if r % 2 == 0 else ("now", "before"):
                cmd = [sys.executable, "-m", "bench.inventory_peak", "--miners", str(args.miners)]
                out = subprocess.run(
                    [*cmd, "--send-child" if args.send else "--child"],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=600,
                    env=env[kind],
                    cwd=Path(__file__).resolve().parent.parent,
                )
                res = json.loads(out.stdout.strip().splitlines()[-1])
                results[kind].append(res)
                print(f"round {r + 1}, {kind:<6}: {json.dumps(res)}", file=sys.stderr, flush=True)
    head = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parent.parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(
        f"| {args.miners:,} miners, median of {args.rounds} | {args.baseline} (baseline) "
        f"| this tree ({head or '?'}) | ratio |"
    )
    print("|---|---|---|---|")
    steps_shown = (
        (
            ("first_publish", "first inventory (all added), queued"),
            ("first_send", "first inventory delivered to the broker"),
            ("next_publish", "next (no change), queued"),
            ("next_send", "next delivered to the broker"),
        )
        if args.send
        else (
            ("first", "first inventory (all added)"),
            ("next", "next (no change)"),
            ("reconnect", "snapshot queued again on a new connection"),
        )
    )
    for name, label in steps_shown:
        b = statistics.median(x[name]["peak_over"] for x in results["before"])
        n = statistics.median(x[name]["peak_over"] for x in results["now"])
        bs = statistics.median(x[name]["s"] for x in results["before"])
        ns = statistics.median(x[name]["s"] for x in results["now"])
        print(
            f"| {label}: peak over the RSS before it, time | +{b:.1f} MB, {bs:.2f} s "
            f"| +{n:.1f} MB, {ns:.2f} s | {f'{n / b:.2f}' if b else '—'} |"
        )
    if args.send:
        return 0
    kb = statistics.median(x["reconnect"]["kept"] for x in results["before"])
    kn = statistics.median(x["reconnect"]["kept"] for x in results["now"])
    print(f"| RSS kept after the new connection's requeue | +{kb:.1f} MB | +{kn:.1f} MB | — |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
