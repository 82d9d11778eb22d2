"""Benchmark: the agent's CPU per miner read beyond the network poll (issue 15; asserts nothing).

bench/farm_scale.py measures the whole agent against simulated miners; bench/asic_poll.py and
bench/asic_engine.py the poll itself (the socket exchange, decoding the replies, building the
reading). This drives what the real ``kuat.agent.runtime.Agent`` does with the readings once
they exist, in one process, no sockets, no simulators:

- ``record``: the miner job's handling of each reading as it arrives (``Agent.poll_asics``
  with the poller's ``poll_many`` handing over prepared readings): the site state, the fault
  watch, the telemetry lines and the spool, in chunks of ``RECORD_CHUNK``;
- ``decide``: a site-meter reading every ``[intervals] meter`` s, each driving
  ``Agent.decide`` (the quota against the freshest reading, the curtailer's plan over every
  miner; a full plan at least every ``[intervals] quota`` s);
- ``quota``: the quota job every ``[intervals] quota`` s (``Agent.evaluate_quota``: the quota,
  grid, pool (item 7) and balance checks, the status snapshot);
- ``inventory``: the register's inventory publish (its worker thread's work, run here in the
  loop's thread), every ``[intervals] inventory`` s.

One simulated minute of a farm polled every ``--interval`` s: the readings are made before
the clock starts (new objects each cycle, as polls make them), the clock is the agent's own,
stepped. Printed: CPU µs per miner read of each part, amortised over the cycle (a job every
10 s over 50,000 miners counts 10 s / interval of its cost against each read), and their sum.

    .venv/bin/python -m bench.agent_cycle --miners 10000          # this tree
    .venv/bin/python -m bench.agent_cycle --miners 10000 --profile 25   # + cProfile's top 25
    .venv/bin/python -m bench.agent_cycle --against /tmp/base     # interleaved with another tree

``--against DIR``: DIR is a checkout of kuat (``git worktree add DIR <commit>``, with its C
accelerator built or copied into ``DIR/uplink``); rounds alternate between this tree and DIR,
each a process of its own, and the ratio of the medians is printed per part: the same box at
the same time, so the ratio holds where the absolute figures do not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

PARTS = ("record", "decide", "quota", "inventory")
MODELS = {
    # firmware family: (vendor, model, share of the site mix; as bench/farm.py's simulators)
    "bitmain": ("Bitmain", "Antminer S19j Pro", 10),
    "whatsminer": ("MicroBT", "WhatsMiner M30S+", 5),
    "luxos": ("Bitmain", "Antminer S19 XP", 3),
    "braiins": ("Bitmain", "Antminer S19j Pro", 2),
}


def _ip(i: int) -> str:
    return f"10.{20 + i // 64516}.{(i // 254) % 254}.{i % 254 + 1}"


def readings(n: int, taken_at: datetime, asleep_every: int = 0) -> list[Any]:
    """``n`` miners of the site mix as their polls leave them: serial and MAC, three pools
    (the first alive and active), board/chip temperatures, four fans, a power limit where the
    firmware has one; one in ``asleep_every`` asleep (0: none, as bench/farm_scale.py's)."""
    from kuat.collectors.readings import AsicReading, AsicTemps, PoolInfo

    mix = [fam for fam, (_, _, share) in MODELS.items() for _ in range(share)]
    out = []
    for i in range(n):
        fam = mix[i % len(mix)]
        vendor, model, _ = MODELS[fam]
        asleep = bool(asleep_every) and i % asleep_every == asleep_every - 1
        out.append(
            AsicReading(
                _ip(i),
                4028,
                taken_at,
                vendor=vendor,
                firmware_family=fam,
                model=model,
                serial=f"SN{i:08d}",
                mac="02:00:" + ":".join(f"{i >> s & 255:02x}" for s in (24, 16, 8, 0)),
                firmware="2024.3.1",
                hashrate_ths=0.0 if asleep else 100.0 + (i * 7919) % 400 / 10,
                hashrate_nominal_ths=104.0,
                power_w=None if fam == "bitmain" else (10.0 if asleep else 3000.0 + i % 600),
                power_limit_w=3250.0 if fam in ("luxos", "braiins") else None,
                temps_c=AsicTemps(board=(60.0 + i % 15, 61.5, 62.0), chip=(70.0 + i % 20, 71.0)),
                fans_rpm=(5400, 5460, 5520, 5580),
                pools=(
                    PoolInfo("stratum+tcp://eu.pool.example:3333", "farm.w1", "Alive", True),
                    PoolInfo("stratum+tcp://kz.pool.example:443", "farm.w1", "Alive", False),
                    PoolInfo("stratum+tcp://backup.pool.example:25", "farm.w1", "Dead", False),
                ),
                uptime_s=86_400 + i,
                state="sleeping" if asleep else "mining",
            )
        )
    return out


def _config(work: Path, n: int, interval: float) -> Any:
    from bench.farm_scale import write_schedules
    from kuat.agent.config import load_config
    from tests.e2e.fake_site import agent_toml

    state_dir = work / "agent"
    state_dir.mkdir()
    schedules = state_dir / "schedules"
    site_kw = n * 3.25 * 1.06
    write_schedules(schedules, "farm", site_kw * 2)  # ample: the plans have nothing to do
    text = agent_toml(
        site="farm",
        state_dir=state_dir,
        meter=SimpleNamespace(host="127.0.0.9", port=5020),
        quota={"schedules": str(schedules)},
        intervals={"asic": interval, "meter": 5, "quota": 10, "inventory": 300, "flush": 10},
        hosts=[_ip(i) for i in range(n)],
    )
    path = work / "kuat.toml"
    path.write_text(text)
    return load_config(path), site_kw


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def measure(
    n: int, interval: float, cycles: int, profile: int, asleep_every: int
) -> dict[str, float]:
    """CPU µs a miner read of each part over ``cycles`` simulated cycles of ``interval`` s,
    after a first cycle not counted (the records made, the caches filled)."""
    from kuat.agent.runtime import Agent
    from kuat.agent.tuning import apply_gc_tuning
    from kuat.collectors.readings import MeterReading

    work = Path(tempfile.mkdtemp(prefix="kuat-agent-cycle-"))
    cfg, site_kw = _config(work, n, interval)
    start = datetime.now(UTC).replace(microsecond=0)
    clock = Clock(start)
    agent = Agent(cfg, clock=clock)
    targets = agent._asic_targets
    assert len(targets) == n, (len(targets), n)
    # every cycle's readings made before the clock starts: polls make new objects each cycle
    batches = [
        readings(n, start + timedelta(seconds=interval * c), asleep_every)
        for c in range(cycles + 1)
    ]
    batch: list[Any] = []

    async def poll_many(targets: Any, *, on_result: Callable[..., None], **_: Any) -> list[Any]:
        for i, r in enumerate(batch):
            on_result(i, r)
        return batch

    agent._asic.poll_many = poll_many  # type: ignore[method-assign]
    apply_gc_tuning()  # as `kuat run` has it
    meter_s, quota_s = cfg.intervals.meter, cfg.intervals.quota
    inventory_s = cfg.intervals.inventory
    cpu = dict.fromkeys(PARTS, 0.0)
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
    kwh = 1_000_000.0
    t = 0.0
    for c in range(cycles + 1):
        measured = c > 0
        if measured and prof is not None:
            prof.enable()
        batch[:] = batches[c]
        clock.now = start + timedelta(seconds=t)
        t0 = time.process_time()
        await agent.poll_asics()
        agent._inventory_incomplete = False  # the inventory is timed on its own below
        t1 = time.process_time()
        if measured:
            cpu["record"] += t1 - t0
        # the cycle's minute: meter readings, each deciding; the quota job every quota_s
        steps = round(interval / meter_s)
        for s in range(steps):
            at = t + s * meter_s
            clock.now = start + timedelta(seconds=at)
            kwh += site_kw * meter_s / 3600
            m = MeterReading(
                "127.0.0.9", 1, "schneider-pm5560", clock.now, p_kw=site_kw, import_kwh=kwh
            )
            t0 = time.process_time()
            agent.state.meters["substation"] = m
            agent.state.record_site_meter(m)
            await agent.decide(time.monotonic())
            t1 = time.process_time()
            if measured:
                cpu["decide"] += t1 - t0
            if (at % quota_s) < meter_s:
                t0 = time.process_time()
                await agent.evaluate_quota()
                t1 = time.process_time()
                if measured:
                    cpu["quota"] += t1 - t0
        t += interval
        if measured and prof is not None:
            prof.disable()
    # the inventory: every inventory_s, one publish measured (after a first that made the
    # register's snapshot), counted as interval / inventory_s of one against each cycle
    miners = agent._identified_miners()
    agent.uplinks.register.publish_inventory(miners, clock.now, locations=agent.uplinks.locations)
    clock.now += timedelta(seconds=inventory_s)
    again = readings(n, clock.now, asleep_every)
    for tgt, r in zip(targets, again, strict=True):
        agent.state.asics[tgt] = r
    t0 = time.process_time()
    if prof is not None:
        prof.enable()
    agent.uplinks.register.publish_inventory(
        agent._identified_miners(), clock.now, locations=agent.uplinks.locations
    )
    if prof is not None:
        prof.disable()
    cpu["inventory"] = (time.process_time() - t0) * cycles * interval / inventory_s
    agent.uplinks.spool.close()
    agent.ledger.close()
    shutil.rmtree(work, ignore_errors=True)
    if prof is not None:
        import pstats

        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(profile)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(profile)
    return {k: v / (n * cycles) * 1e6 for k, v in cpu.items()}


def one_round(args: argparse.Namespace) -> dict[str, float]:
    return asyncio.run(
        measure(args.miners, args.interval, args.cycles, args.profile, args.asleep_every)
    )


def _tree_env(tree: Path, shim: Path) -> dict[str, str]:
    """The environment a round of ``tree``'s kuat runs in: a package ``kuat`` in ``shim`` whose
    four folders are the tree's, first on the path (before the editable install's finder)."""
    (shim / "kuat").mkdir()
    (shim / "kuat" / "__init__.py").write_text("")
    for top in ("agent", "collectors", "quota", "uplink"):
        (shim / "kuat" / top).symlink_to(tree.resolve() / top)
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{shim}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def against(args: argparse.Namespace) -> None:
    here = Path(__file__).resolve().parent.parent
    other = str(args.against)
    shim = Path(tempfile.mkdtemp(prefix="kuat-shim-"))
    envs = {"this tree": dict(os.environ), other: _tree_env(args.against, shim)}
    cmd = [sys.executable, "-m", "bench.agent_cycle", "--json"]
    cmd += ["--miners", str(args.miners), "--interval", str(args.interval)]
    cmd += ["--cycles", str(args.cycles), "--asleep-every", str(args.asleep_every)]
    got: dict[str, list[dict[str, float]]] = {name: [] for name in envs}
    try:
        for r in range(args.rounds):
            order = list(envs) if r % 2 == 0 else list(reversed(envs))
            for name in order:
                out = subprocess.run(
                    cmd, env=envs[name], cwd=here, capture_output=True, text=True, check=True
                )
                row = json.loads(out.stdout.strip().splitlines()[-1])
                got[name].append(row)
                print(f"round {r + 1} {name}: {_line(row)}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(shim, ignore_errors=True)
    base, this = got[other], got["this tree"]
    print(
        f"\n{_what(args)}, {args.cycles} cycles a round, {args.rounds} rounds each, "
        f"interleaved; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"\n| part | {other}: µs a read (median) | this tree | this / {other} |")
    print("|---|---|---|---|")
    for part in (*PARTS, "total"):
        b = statistics.median(x[part] for x in base)
        a = statistics.median(x[part] for x in this)
        print(f"| {part} | {b:.1f} | {a:.1f} | {a / b if b else float('nan'):.2f}× |")


def _what(args: argparse.Namespace) -> str:
    asleep = f", one in {args.asleep_every} asleep" if args.asleep_every else ""
    return f"{args.miners} miners every {args.interval:g} s{asleep}"


def _line(row: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in row.items()) + " µs a read"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--miners", type=int, default=10_000)
    ap.add_argument("--interval", type=float, default=60.0, help="[intervals] asic, seconds")
    ap.add_argument("--cycles", type=int, default=2, help="cycles measured, after a first")
    ap.add_argument(
        "--asleep-every",
        type=int,
        default=0,
        help="one miner in N asleep (0: none); the curtailer plans in full at every meter "
        "reading while any is",
    )
    ap.add_argument("--profile", type=int, default=0, help="print cProfile's top N (stderr)")
    ap.add_argument("--against", type=Path, help="another kuat checkout: interleaved rounds")
    ap.add_argument("--rounds", type=int, default=3, help="with --against: rounds of each")
    ap.add_argument("--json", action="store_true", help="one JSON line (what --against reads)")
    args = ap.parse_args()
    if args.against:
        against(args)
        return
    row = one_round(args)
    row["total"] = sum(row[p] for p in PARTS)
    if args.json:
        print(json.dumps(row))
        return
    print(f"{_what(args)}, {args.cycles} cycles: CPU µs per miner read beyond the poll")
    for part in (*PARTS, "total"):
        print(f"  {part:10s} {row[part]:8.1f}")


if __name__ == "__main__":
    main()
