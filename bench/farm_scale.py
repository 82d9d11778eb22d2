"""Benchmark: one agent at farm scale, sustained (issue 15; not a test, it asserts nothing).

    .venv/bin/python -m bench.farm_scale                     # 50,000 miners, 10 minutes
    .venv/bin/python -m bench.farm_scale --hour              # ... for an hour
    .venv/bin/python -m bench.farm_scale --miners 5000 --interval 20 --minutes 2   # a small run

What runs, each in its own process:

- the miners: kuat.collectors.cgminer.sim processes of up to 10,000 miners each, the site mix
  of firmwares, on 127.(100+i).0.0/16 (bench/farm.py, shared with bench/asic_poll.py --scale),
  stock Antminers' web UI and Braiins OS's REST API on port 8080;
- the PDUs: snmpsim serving the four recorded PDUs (collectors/snmp/recordings), each
  configured PDU one of them by community, polled every 30 s;
- the meters: Modbus meter simulators (collectors/modbus/sim.py), a site meter and feeders,
  their registers following the farm's draw, polled every 5 s; an ample allocation for the
  day, so the quota job and the curtailer's plan run on every site-meter reading;
- the telemetry database: VictoriaMetrics on loopback when ``victoria-metrics`` is installed,
  else none (the lines stay in the spool: the table says which);
- the agent: bench/farm_agent.py, the real kuat.agent.runtime.Agent from a generated config
  (tests/e2e/fake_site.py's agent_toml), miners polled every ``--interval`` s.

Per miner cycle (the window from its start to the next cycle's start): the cycle's duration,
the agent process's CPU seconds and RSS, its event loop's lag (a task inside the agent sleeps
10 ms and notes how late it wakes: p50 / p99 / max), the spool's depth and the points per
second delivered to the database. Targets: every cycle inside its interval, peak RSS ≤ 300 MB,
loop lag p99 ≤ 100 ms over the run, no growth (RSS slope over the run's second half).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import farm

RSS_TARGET_MB = 300.0
LAG_P99_TARGET_MS = 100.0
# "no growth": the RSS trend over the run's second half, at most this many MB per hour
GROWTH_TARGET_MB_H = 6.0
WEB_PORT = 8080
PDU_INTERVAL_S = 30.0
METER_INTERVAL_S = 5.0
MINER_KW = 3.25  # the site mix's mean draw, near enough for the meters' figures
OVERHEAD = 1.06
METER_NET = "127.90.0"


# --- the meters' process ------------------------------------------------------------------


async def serve_meters(count: int, site_kw: float) -> None:
    """``count`` meters on 127.90.0.1.., the first the site meter, the rest feeders sharing
    its load; registers refreshed every second, the import counter integrating the draw."""
    from kuat.collectors.modbus.sim import MeterSimulator
    from tests.e2e.fake_site import set_meter

    meters = [MeterSimulator("schneider-pm5560", host=f"{METER_NET}.{i + 1}") for i in range(count)]
    for m in meters:
        await m.start()
    print(json.dumps([{"host": m.host, "port": m.port} for m in meters]), flush=True)
    share = [site_kw] + [site_kw / max(count - 1, 1)] * (count - 1)
    counters = [1_284_000.0 + 1000.0 * i for i in range(count)]
    while True:
        for i, m in enumerate(meters):
            counters[i] += share[i] / 3600
            set_meter(m, share[i], counters[i])
        await asyncio.sleep(1.0)


# --- the config ----------------------------------------------------------------------------


def write_schedules(directory: Path, site: str, kwh_per_hour: float) -> None:
    """An allocation for today and tomorrow (Astana days) well above the farm's draw."""
    from kuat.quota.clock import hour_of
    from tests.e2e.fake_site import schedule_csv

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    for n, when in enumerate((now, now + timedelta(days=1))):
        day, _ = hour_of(when)
        text = schedule_csv(site, day, dict.fromkeys(range(1, 25), kwh_per_hour))
        (directory / f"alloc-{n}.csv").write_text(text)


def config_text(
    args: argparse.Namespace,
    state_dir: Path,
    ranges: list[tuple[str, int]],
    meters: list[dict[str, Any]],
    pdu: tuple[str, int, list[str]] | None,
    vm_url: str | None,
    site_kw: float,
    register_port: int | None = None,
) -> str:
    from types import SimpleNamespace

    from tests.e2e.fake_site import agent_toml

    schedules = state_dir / "schedules"
    write_schedules(schedules, "farm", site_kw * 2)
    asic: dict[str, object] = {
        "timeout_s": 3,
        "web_port": WEB_PORT,
        "credentials": {"braiins": {"web_port": WEB_PORT}},
    }
    if args.spread is not None:
        asic["spread"] = args.spread
    text = agent_toml(
        site="farm",
        state_dir=state_dir,
        meter=SimpleNamespace(**meters[0]),
        quota={"schedules": str(schedules)},
        intervals={
            "asic": args.interval,
            "pdu": PDU_INTERVAL_S,
            "meter": METER_INTERVAL_S,
            "flush": 10,
            "inventory": 300,
        },
        asic=asic,
        hosts=[h for first, count in ranges for h in farm.host_entries(first, count)],
    )
    for i, m in enumerate(meters[1:]):
        text += (
            f'[[meter]]\nname = "feeder-{i + 1}"\nhost = "{m["host"]}"\nport = {m["port"]}\n'
            'role = "feeder"\n'
        )
    if pdu is not None:
        host, port, communities = pdu
        for i in range(args.pdus):
            community = communities[i % len(communities)]
            text += (
                f'[[pdu]]\nname = "pdu-{i + 1}"\nhost = "{host}"\nport = {port}\n'
                f'community = "{community}"\n'
            )
    if vm_url:
        text += f'[influx]\nurl = "{vm_url}"\nbucket = "kuat"\n'
    if register_port:
        # the register's broker on loopback: the inventory goes out every 300 s, not only
        # into the spool's outbox (a real site always has one)
        text += f'[mqtt]\nhost = "127.0.0.1"\nport = {register_port}\ntls = false\n'
    return text


# --- running -------------------------------------------------------------------------------


def _reader(stream: Any, out: queue.Queue[str | None]) -> None:
    for line in stream:
        out.put(line)
    out.put(None)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from kuat.agent.sizing import asic_concurrency
    from kuat.collectors.snmp.sim import SnmpSimulator

    soft, hard = farm.raise_nofile()
    concurrency = asic_concurrency(args.miners, 3.0, args.interval)
    plan = farm.scale_plan(args.miners, hard, farm.web_share(WEB_PORT), concurrency)
    if plan["n"] == 0:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} leaves no room for a single simulated miner")
    notes = []
    if plan["limited"]:
        notes.append(f"RLIMIT_NOFILE {hard}: {plan['n']} miners, not {args.miners}")
    n = plan["n"]
    site_kw = n * MINER_KW * OVERHEAD
    work = Path(tempfile.mkdtemp(prefix="kuat-farm-scale-"))
    procs: list[subprocess.Popen[str]] = []
    vm = snmp = broker = None
    try:
        register_port = None
        if args.register:
            from tests.servers import Mosquitto

            (work / "mosquitto").mkdir()
            broker = Mosquitto(work / "mosquitto")
            broker.start()
            register_port = broker.port
        vm_url = None
        if args.no_vm or shutil.which("victoria-metrics") is None:
            notes.append("no VictoriaMetrics: telemetry stays in the spool (uplink rate 0)")
        else:
            from tests.servers import VictoriaMetrics

            vm = VictoriaMetrics(work / "vm" / "data")
            vm.start()
            vm_url = vm.url
        t0 = time.monotonic()
        ranges = farm.sim_ranges(plan["counts"], args.net)
        for line in farm.start_miner_sims(ranges, WEB_PORT, procs):
            print(line, file=sys.stderr)
        serve = ["--serve-meters", str(args.meters), "--site-kw", str(site_kw)]
        meters_proc = subprocess.Popen(
            [sys.executable, "-m", "bench.farm_scale", *serve],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=farm.die_with_parent,
        )
        procs.append(meters_proc)
        assert meters_proc.stdout is not None
        meters = json.loads(meters_proc.stdout.readline())
        pdu = None
        if args.pdus:
            snmp = SnmpSimulator().start()
            pdu = (snmp.host, snmp.port, snmp.communities)
        startup = time.monotonic() - t0
        print(
            f"{n} miners in {len(ranges)} processes, {args.meters} meters, {args.pdus} PDUs up in "
            f"{startup:.1f} s; telemetry to {vm_url or 'the spool only'}",
            file=sys.stderr,
        )
        state_dir = work / "agent"
        state_dir.mkdir()
        cfg_path = work / "kuat.toml"
        cfg_path.write_text(
            config_text(args, state_dir, ranges, meters, pdu, vm_url, site_kw, register_port)
        )
        log_path = work / "agent.log"
        cmd = [sys.executable, "-m", "bench.farm_agent", str(cfg_path)]
        if args.uvloop:
            cmd.append("--uvloop")
        if args.slow_ms:
            cmd += ["--slow-ms", str(args.slow_ms)]
        if args.tracemalloc:
            cmd += ["--tracemalloc", str(args.tracemalloc)]
        if args.heap:
            cmd.append("--heap")
        if args.phases:
            cmd.append("--phases")
        with log_path.open("w") as log:
            agent = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log, text=True, preexec_fn=farm.die_with_parent
            )
        procs.append(agent)
        base_cmd = [sys.executable, "-m", "bench.farm_agent", "--idle", str(args.interval)]
        baseline = subprocess.Popen(
            base_cmd + (["--uvloop"] if args.uvloop else []),
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=farm.die_with_parent,
        )
        procs.append(baseline)
        lines: queue.Queue[str | None] = queue.Queue()
        base_lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_reader, args=(agent.stdout, lines), daemon=True).start()
        threading.Thread(target=_reader, args=(baseline.stdout, base_lines), daemon=True).start()
        rows: list[dict[str, Any]] = []
        end = time.monotonic() + args.minutes * 60
        while time.monotonic() < end:
            try:
                line = lines.get(timeout=max(0.1, min(5.0, end - time.monotonic())))
            except queue.Empty:
                continue
            if line is None:
                break
            rows.append(json.loads(line))
            print(_row(rows[-1], args.interval), file=sys.stderr, flush=True)
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
        baseline.send_signal(signal.SIGTERM)
        while (line := lines.get(timeout=60)) is not None:
            rows.append(json.loads(line))
        agent.wait(30)
        base_hist: dict[int, int] = {}
        while (line := base_lines.get(timeout=30)) is not None:
            for k, v in json.loads(line)["lag_hist"].items():
                base_hist[int(k)] = base_hist.get(int(k), 0) + v
        log_text = log_path.read_text()
        if args.keep_log:
            shutil.copy(log_path, args.keep_log)
        errors = [ln for ln in log_text.splitlines() if " ERROR" in ln or "Trace" in ln]
        return {
            "miners": n,
            "simulators": plan["counts"],
            "meters": args.meters,
            "pdus": args.pdus,
            "interval_s": args.interval,
            "minutes": args.minutes,
            "uvloop": args.uvloop,
            "telemetry": "VictoriaMetrics" if vm_url else "spool only",
            "notes": notes,
            "rows": rows,
            "baseline_lag_hist": base_hist,
            "agent_errors": errors[:5],
            "load": os.getloadavg(),
            "bench_rss_mb": farm.status_mb()["VmRSS"],
            "nofile": [soft, hard],
        }
    finally:
        farm.stop_all(procs)
        if snmp is not None:
            snmp.stop()
        if vm is not None:
            vm.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)


# --- the report ----------------------------------------------------------------------------


def _row(r: dict[str, Any], interval: float) -> str:
    lag = r["lag_ms"]
    mark = "cut" if r["cut"] else ("" if r["finished"] else "unfinished")
    if r["finished"] and r["duration_s"] > interval:
        mark = "late"
    name = f"{r['cycle']}{' (discovery)' if r['cycle'] == 1 else ''}"
    name += " (last, partial)" if r["final"] else ""
    return (
        f"| {name} "
        f"| {r['duration_s']} {mark} | {r['miners_ok']} | {r['cpu_s']} | {r['rss_mb']} "
        f"| {lag['p50']} / {lag['p99']} / {lag['max']} | {r['spool_pending']} "
        f"| {r['recorded_pts_s']} | {r['uplink_pts_s']} "
        f"| {r.get('gc_max_ms', '')} ({r.get('gc_full', '')}) |"
    )


def _hist_quantile(hist: dict[int, int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return 0.0
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= q * total:
            return float(ms)
    return float(max(hist))


def _slope_mb_h(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] / 3600 for p in points], [p[1] for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def report(rep: dict[str, Any]) -> None:
    p = print
    rows = rep["rows"]
    interval = rep["interval_s"]
    p(
        f"\nkuat agent at scale: {rep['miners']} simulated miners (site mix, "
        f"{len(rep['simulators'])} simulator processes), {rep['pdus']} PDUs every "
        f"{PDU_INTERVAL_S:g} s, {rep['meters']} meters every {METER_INTERVAL_S:g} s, miners "
        f"every {interval:g} s for {rep['minutes']:g} min; telemetry: {rep['telemetry']}; "
        f"event loop: {'uvloop' if rep['uvloop'] else 'asyncio (default)'}; {os.cpu_count()} CPUs, "
        f"load average at the end {' / '.join(f'{x:.1f}' for x in rep['load'])}"
    )
    for note in rep["notes"]:
        p(f"NOTE: {note}")
    p(
        "\n| cycle | duration s | miners answering | agent CPU-s | RSS MB "
        "| loop lag p50 / p99 / max ms | spool depth | points in /s | uplink points/s "
        "| longest GC pass ms (full passes) |"
    )
    p("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        p(_row(r, interval))
    whole = [r for r in rows if r["finished"] and not r["final"]]
    late = [r["cycle"] for r in rows if r["cut"] or (r["finished"] and r["duration_s"] > interval)]
    hist: dict[int, int] = {}
    for r in rows:
        for k, v in r["lag_hist"].items():
            hist[int(k)] = hist.get(int(k), 0) + v
    p99 = _hist_quantile(hist, 0.99)
    peak = max((r["hwm_mb"] for r in rows), default=0.0)
    half = [r for r in rows if not r["final"]][len(rows) // 2 :]
    slope = _slope_mb_h([(r["at_s"], r["rss_mb"]) for r in half])
    cpu = sum(r["cpu_s"] for r in rows) / max(sum(r["window_s"] for r in rows), 1e-9)

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    p("\n| target | measured | |")
    p("|---|---|---|")
    p(
        f"| every cycle inside its {interval:g} s interval | {len(whole)} cycles, longest "
        f"{max((r['duration_s'] for r in whole), default=0)} s"
        f"{', late or cut: ' + str(late) if late else ''} | {verdict(bool(whole) and not late)} |"
    )
    p(f"| peak RSS ≤ {RSS_TARGET_MB:g} MB | {peak} MB (VmHWM) | {verdict(peak <= RSS_TARGET_MB)} |")
    base = {int(k): v for k, v in rep["baseline_lag_hist"].items()}
    p(
        f"| loop lag p99 ≤ {LAG_P99_TARGET_MS:g} ms | {p99:g} ms over "
        f"{sum(hist.values())} samples (max {max(hist, default=0)} ms); baseline, the sampler "
        f"alone in a process of its own: p99 {_hist_quantile(base, 0.99):g} ms, max "
        f"{max(base, default=0)} ms | {verdict(p99 <= LAG_P99_TARGET_MS)} |"
    )
    p(
        f"| no growth: RSS slope over the second half ≤ {GROWTH_TARGET_MB_H:g} MB/h | "
        f"{slope:+.1f} MB/h over {len(half)} cycles | "
        f"{verdict(len(half) >= 2 and slope <= GROWTH_TARGET_MB_H)} |"
    )
    p(f"\nagent CPU: {cpu:.0%} of one core over the run")
    outbox = [r["outbox"] for r in rows if "outbox" in r]
    if outbox:
        p(f"register outbox after each cycle: {min(outbox)}-{max(outbox)} messages")
    start = min((r.get("start_mb", 0.0) for r in rows), default=0.0)
    if rows and start:
        # what each miner costs the agent: its RSS over the process before the first cycle
        # (at the peak, and at the last whole cycle's end), per miner configured
        steady = whole[-1]["rss_mb"] if whole else rows[-1]["rss_mb"]
        per = [(mb - start) * 2**20 / rep["miners"] for mb in (peak, steady)]
        p(
            f"memory per miner: {per[0] / 1024:.1f} KiB at the peak, {per[1] / 1024:.1f} KiB "
            f"after the last whole cycle, over the {start:g} MB of the agent before its first "
            f"cycle (the 300 MB target at {farm.SCALE_TARGET} miners leaves "
            f"{(RSS_TARGET_MB - start) * 2**20 / farm.SCALE_TARGET / 1024:.1f} KiB a miner)"
        )
    if rep["miners"] < farm.SCALE_TARGET:
        p(f"NOTE: {rep['miners']} miners, not the issue's {farm.SCALE_TARGET}: a small-scale run")
    if rep["agent_errors"]:
        p("agent errors (first 5):")
        for e in rep["agent_errors"]:
            p(f"  {e}")
    p()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--miners", type=int, default=farm.SCALE_TARGET)
    ap.add_argument("--interval", type=float, default=60.0, help="[intervals] asic, seconds")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--hour", action="store_true", help="run for 60 minutes")
    ap.add_argument("--pdus", type=int, default=None, help="default: one per 250 miners")
    ap.add_argument("--meters", type=int, default=4, help="the site meter and feeders")
    ap.add_argument("--spread", type=float, default=None, help="[asic] spread (default: kuat's)")
    ap.add_argument("--uvloop", action="store_true", help="the agent on uvloop (kuat[uvloop])")
    ap.add_argument("--no-vm", action="store_true", help="no VictoriaMetrics: spool only")
    ap.add_argument(
        "--register",
        action="store_true",
        help="a register broker (Mosquitto on loopback): the inventory is sent, not only queued",
    )
    ap.add_argument("--json", action="store_true", help="also print the raw report as JSON")
    ap.add_argument("--keep-log", type=Path, help="copy the agent's log (stderr) here")
    ap.add_argument(
        "--net",
        type=int,
        default=farm.SCALE_NET,
        help="simulator i on 127.(NET+i).0.0/16 (another than asic_poll --scale's, to run both)",
    )
    ap.add_argument(
        "--slow-ms",
        type=float,
        default=0.0,
        help="diagnosis: the agent logs each step holding its loop longer (asyncio debug mode)",
    )
    ap.add_argument(
        "--tracemalloc",
        type=Path,
        help="diagnosis: the agent writes what it holds per miner (cycles 2 and 4) to this file",
    )
    ap.add_argument(
        "--heap",
        action="store_true",
        help="diagnosis: each row (--json) carries the allocators' figures (bench/farm_agent.py)",
    )
    ap.add_argument(
        "--phases",
        action="store_true",
        help="diagnosis: the agent logs the wall time of its farm-wide steps (see --keep-log)",
    )
    ap.add_argument("--serve-meters", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--site-kw", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_meters:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_meters(args.serve_meters, args.site_kw))
        return
    if args.hour:
        args.minutes = 60.0
    if args.pdus is None:
        args.pdus = max(1, args.miners // 250)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        rep = run(args)
    except KeyboardInterrupt:
        sys.exit("interrupted; the simulators and the agent are stopped")
    report(rep)
    if args.json:
        print(json.dumps(rep))


if __name__ == "__main__":
    main()
