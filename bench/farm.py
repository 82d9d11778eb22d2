"""The simulated farm at scale, shared by bench/asic_poll.py --scale and bench/farm_scale.py.

Simulator processes of SCALE_PER_SIM miners each (the site mix of firmwares), simulator i on
127.(SCALE_NET+i).0.0/16, as many as the open-files limit allows; the process limits and
memory readings the benchmarks take of themselves and of their children.
"""

from __future__ import annotations

import contextlib
import ipaddress
import resource
import subprocess
import sys
from typing import Any

SCALE_TARGET = 50_000
SCALE_PER_SIM = 10_000
SCALE_MAX_SIMS = 12  # more simulator processes than this on a small box only measures the scheduler
SCALE_NET = 100
FD_MARGIN = 256  # stdio, the loop's self-pipe, pyc files, logging: what is not a miner's socket


def status_mb() -> dict[str, float]:
    """VmRSS and VmHWM (peak) of this process, MB."""
    out: dict[str, float] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit; (soft, hard) after. Children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                want = int(f.read())
        except OSError:
            want = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, (want if hard == resource.RLIM_INFINITY else hard)


def die_with_parent() -> None:
    """preexec_fn: a simulator or client must not outlive the benchmark, even on SIGKILL."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def web_share(web_port: int) -> float:
    """Listening sockets per simulated miner beyond its API's: stock Antminers' web UI and
    Braiins OS's REST API, when the simulators serve them."""
    from kuat.collectors.cgminer.sim import _MIX, WEB_PERSONALITIES

    if not web_port:
        return 0.0
    return sum(p in (*WEB_PERSONALITIES, "braiins") for p in _MIX) / len(_MIX)


def scale_plan(n: int, hard: int, web_share: float, concurrency: int) -> dict[str, Any]:
    """How many simulator processes of how many miners; fewer miners if the fd limit says so."""
    fds_per_miner = 1 + web_share  # the 4028 listener, and the web UI's for a stock Antminer
    # every in-flight poll (and web fetch) may land on one simulator: an accepted socket each
    free = hard - FD_MARGIN - concurrency - 16
    per_sim = min(SCALE_PER_SIM, int(free / fds_per_miner), 60_000)
    if per_sim < 1:
        return {"n": 0, "counts": [], "per_sim": 0, "limited": True}
    n_run = min(n, per_sim * SCALE_MAX_SIMS)
    sims = -(-n_run // per_sim)
    counts = [n_run // sims + (i < n_run % sims) for i in range(sims)]
    return {"n": n_run, "counts": counts, "per_sim": per_sim, "limited": n_run < n}


def sim_ranges(counts: list[int], net: int = SCALE_NET) -> list[tuple[str, int]]:
    """(first address, miners) of each simulator process: 127.(net+i).0.1 onwards."""
    return [(f"127.{net + i}.0.1", c) for i, c in enumerate(counts)]


def host_entries(first_ip: str, count: int) -> list[str]:
    """The simulator's addresses (kuat.collectors.cgminer.sim skips .0 and .255) as the
    config's ``hosts`` entries: one a-b range per run of consecutive addresses."""
    from kuat.collectors.cgminer.sim import _addresses

    out: list[str] = []
    lo = prev = None
    for a in _addresses(first_ip, count):
        n = int(ipaddress.IPv4Address(a))
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if lo is not None and prev is not None:
            out.append(_range(lo, prev))
        lo = prev = n
    if lo is not None and prev is not None:
        out.append(_range(lo, prev))
    return out


def _range(lo: int, hi: int) -> str:
    a, b = ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi)
    return str(a) if lo == hi else f"{a}-{b}"


def start_miner_sims(
    ranges: list[tuple[str, int]], web_port: int, procs: list[subprocess.Popen[str]]
) -> list[str]:
    """Start one simulator process per range (appended to ``procs`` as they start, so the
    caller stops them whatever happens) and wait until each says it is ready; their lines."""
    sims = []
    for i, (first, count) in enumerate(ranges):
        cmd = [sys.executable, "-m", "kuat.collectors.cgminer.sim", "--count", str(count)]
        cmd += ["--first-ip", first, "--seed", str(i + 1)]
        if web_port:
            cmd += ["--web-port", str(web_port)]
        sim = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,
        )
        procs.append(sim)
        sims.append(sim)
    lines = []
    for sim in sims:
        assert sim.stdout is not None
        line = sim.stdout.readline().strip()
        if not line.startswith("ready"):
            sys.exit(f"a simulator failed to start (exit {sim.wait()}); see its error above")
        lines.append(line)
    return lines


def stop_all(procs: list[subprocess.Popen[str]]) -> None:
    """Terminate every process, then kill those still running after 10 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
