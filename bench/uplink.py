"""Benchmark: kuat's telemetry uplink — encoding, spool replay, outage memory (not a test).

    .venv/bin/python -m bench.uplink [--quick]

Prints one Markdown table. Every result is set against a named baseline measured in the same
run (these machines are noisy, so absolute numbers travel badly and nothing is asserted):

1. **Encode** — ``kuat.uplink.lineproto.encode`` on a realistic cycle (5,000 fully filled
   ``AsicReading``s plus meters and PDUs) against influxdb-client's ``Point`` objects built for
   the same readings and serialised with ``Point.to_line_protocol()``. Every repetition encodes
   a fresh cycle (same devices, new values and timestamps), as the agent does. CPU time
   (``time.process_time``), best of several repetitions; both must produce the same points.
   kuat is measured twice: as installed (C accelerator when built) and pure Python (the
   fallback), which must write the same bytes.
2. **Spool replay** — N realistic lines are ``put`` into a fresh ``Spool`` (batches of 50,000,
   as the agent's cycle would), then drained into a real VictoriaMetrics on 127.0.0.1 with
   ``InfluxUplink.flush_sync(force=True)`` until nothing is pending. The stored samples are
   counted with ``export`` (each asic line carries exactly one ``hashrate_ths``); the 5,000
   series are registered by one earlier cycle first, as after a real outage. Baselines:
   the rate the farm produces (50,000 lines per 60 s poll) and the same batches written
   straight through influxdb-client's write API with no spool in between.
3. **Outage RSS** — a child process (so its ``ru_maxrss`` is its own) spools 10 minutes' worth
   of a 50,000-miner farm (10 cycles of 50,000 asic lines: readings built, encoded, ``put``)
   and records peak RSS and spool size after each cycle. A 1-hour outage (3,000,000 lines) is
   extrapolated linearly from the peak-RSS growth over the second half of the run (the first
   cycles hold one-off warm-up): an estimate. It runs first, while the parent is small, since
   a child's ru_maxrss starts from its parent's RSS at spawn time on Linux.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kuat.collectors.readings import (
    AsicReading,
    AsicTemps,
    MeterReading,
    PduBreaker,
    PduInlet,
    PduOutlet,
    PduPhase,
    PduReading,
    PollResult,
    PoolInfo,
)

SITE = "kz-ekb-01"
MINERS_PER_FARM = 50_000
POLL_S = 60
PUT_BATCH = 50_000  # one agent cycle of a 50,000-miner farm
OUTAGE_LINES = MINERS_PER_FARM * 3600 // POLL_S  # 3,000,000 asic lines per hour

_MODELS = (
    ("Bitmain", "bitmain", "Antminer S19j Pro", 104.0, 3068.0),
    ("Bitmain", "braiins", "Antminer S19 XP", 140.0, 3010.0),
    ("MicroBT", "whatsminer", "WhatsMiner M50S", 126.0, 3276.0),
    ("Bitmain", "luxos", "Antminer S21", 200.0, 3500.0),
    ("Canaan", "avalon", "AvalonMiner 1366", 130.0, 3400.0),
)


# --- realistic readings -----------------------------------------------------------------


def make_asic(rng: random.Random, i: int, taken_at: datetime) -> AsicReading:
    vendor, family, model, nominal, watts = _MODELS[i % len(_MODELS)]
    mining = i % 50 != 0
    return AsicReading(
        ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
        port=4028,
        taken_at=taken_at,
        vendor=vendor,
        firmware_family=family,
        model=model,
        serial=f"SN{i:08d}K{rng.randrange(1000):03d}",
        mac=f"02:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
        firmware="2024.06.11-r3",
        hashrate_ths=round(nominal * rng.uniform(0.93, 1.04), 3) if mining else 0.0,
        hashrate_nominal_ths=nominal,
        power_w=round(watts * rng.uniform(0.95, 1.03), 1) if mining else 14.0,
        power_limit_w=watts + 100.0,
        temps_c=AsicTemps(
            board=tuple(round(rng.uniform(55, 72), 1) for _ in range(3)),
            chip=tuple(round(rng.uniform(68, 88), 1) for _ in range(3)),
            inlet=tuple(round(rng.uniform(18, 34), 1) for _ in range(3)),
        ),
        fans_rpm=tuple(rng.randrange(4200, 6600) for _ in range(4)),
        pools=(
            PoolInfo("stratum+tcp://btc.pool.kz:3333", "farm.w1", "Alive", True),
            PoolInfo("stratum+tcp://btc-eu.pool.example:3333", "farm.w1", "Alive", False),
            PoolInfo("stratum+tcp://backup.pool.example:443", "farm.w1", "Dead", False),
        ),
        uptime_s=rng.randrange(60, 3_000_000),
        state="mining" if mining else "sleeping",
        errors=("fan 3 below 1000 rpm",) if i % 97 == 0 else (),
    )


def make_meter(rng: random.Random, i: int, taken_at: datetime) -> MeterReading:
    def triple(lo: float, hi: float) -> tuple[float, float, float]:
        return (
            round(rng.uniform(lo, hi), 3),
            round(rng.uniform(lo, hi), 3),
            round(rng.uniform(lo, hi), 3),
        )

    p = triple(900, 1100)
    return MeterReading(
        host=f"10.250.0.{10 + i}",
        unit=1,
        profile="schneider-pm5560",
        taken_at=taken_at,
        p_kw=round(sum(p), 3),
        p_kw_phases=p,
        q_kvar=round(rng.uniform(80, 160), 3),
        s_kva=round(sum(p) * 1.01, 3),
        v_ln=triple(225, 235),
        v_ll=triple(390, 405),
        i_a=triple(3900, 4800),
        pf=round(rng.uniform(0.97, 0.995), 4),
        f_hz=round(rng.uniform(49.95, 50.05), 3),
        import_kwh=round(rng.uniform(1e6, 9e6), 1),
        export_kwh=0.0,
        demand_kw=round(sum(p) * 0.98, 3),
    )


def make_pdu(rng: random.Random, i: int, taken_at: datetime) -> PduReading:
    return PduReading(
        host=f"10.251.0.{10 + i}",
        vendor="Raritan",
        model="PX3-5190R",
        serial=f"PDU{i:05d}",
        taken_at=taken_at,
        inlets=tuple(
            PduInlet(
                id=f"I{n}",
                phase=f"L{n}",
                volts=round(rng.uniform(225, 235), 1),
                amps=round(rng.uniform(40, 60), 2),
                watts=round(rng.uniform(9000, 13000), 1),
                kwh=round(rng.uniform(1e4, 9e4), 1),
                pf=round(rng.uniform(0.95, 0.99), 3),
            )
            for n in (1, 2, 3)
        ),
        phases=tuple(
            PduPhase(
                id=f"L{n}",
                volts=round(rng.uniform(225, 235), 1),
                amps=round(rng.uniform(40, 60), 2),
                watts=round(rng.uniform(9000, 13000), 1),
            )
            for n in (1, 2, 3)
        ),
        breakers=tuple(
            PduBreaker(id=f"C{n}", amps=round(rng.uniform(5, 15), 2)) for n in range(1, 7)
        ),
        outlets=tuple(
            PduOutlet(
                index=n,
                name=f"rack{i}-u{n}",
                amps=round(rng.uniform(10, 15), 2),
                watts=round(rng.uniform(2900, 3400), 1),
                kwh=round(rng.uniform(1e3, 9e3), 1),
                state="on" if n % 12 else "off",
            )
            for n in range(1, 13)
        ),
        total_watts=round(rng.uniform(30000, 36000), 1),
    )


def make_cycle(
    taken_at: datetime, asics: int, meters: int = 0, pdus: int = 0, seed: int = 42
) -> list[PollResult]:
    rng = random.Random(seed)
    results: list[PollResult] = [make_asic(rng, i, taken_at) for i in range(asics)]
    results += [make_meter(rng, i, taken_at) for i in range(meters)]
    results += [make_pdu(rng, i, taken_at) for i in range(pdus)]
    return results


# --- the baseline: influxdb-client Point objects, same schema as uplink.lineproto ------------


def _f(value: float | None) -> float | None:
    return None if value is None else float(value)


def baseline_points(results: Sequence[PollResult], site: str) -> list[Any]:
    """Points carrying exactly what ``kuat.uplink.lineproto.encode`` writes for ``results``."""
    from influxdb_client import Point, WritePrecision

    ns = WritePrecision.NS
    points: list[Any] = []
    for r in results:
        if isinstance(r, AsicReading):
            pool = r.active_pool
            pool_ok = (
                int((pool.status or "").strip().lower() == "alive")
                if pool is not None
                else (0 if r.pools else None)
            )
            t = r.temps_c
            points.append(
                Point("asic")
                .tag("site", site)
                .tag("device", r.device_id)
                .tag("vendor", r.vendor)
                .tag("model", r.model)
                .tag("firmware_family", r.firmware_family)
                .field("hashrate_ths", _f(r.hashrate_ths))
                .field("hashrate_nominal_ths", _f(r.hashrate_nominal_ths))
                .field("power_w", _f(r.power_w))
                .field("power_limit_w", _f(r.power_limit_w))
                .field("temp_board_max_c", float(max(t.board)) if t.board else None)
                .field("temp_chip_max_c", float(max(t.chip)) if t.chip else None)
                .field("temp_inlet_max_c", float(max(t.inlet)) if t.inlet else None)
                .field("fan_min_rpm", int(min(r.fans_rpm)) if r.fans_rpm else None)
                .field("uptime_s", None if r.uptime_s is None else int(r.uptime_s))
                .field("state_code", {"mining": 1, "sleeping": 2, "error": 3}.get(r.state))
                .field("pool_ok", pool_ok)
                .field("error_count", len(r.errors))
                .time(r.taken_at, ns)
            )
        elif isinstance(r, MeterReading):
            p = (
                Point("meter")
                .tag("site", site)
                .tag("device", r.device_id)
                .tag("profile", r.profile)
                .field("p_kw", _f(r.p_kw))
            )
            for name, v in zip(("l1", "l2", "l3"), r.p_kw_phases, strict=False):
                p.field(f"p_kw_{name}", _f(v))
            p.field("q_kvar", _f(r.q_kvar)).field("s_kva", _f(r.s_kva))
            for name, v in zip(("l1", "l2", "l3"), r.v_ln, strict=False):
                p.field(f"v_ln_{name}", _f(v))
            for name, v in zip(("l12", "l23", "l31"), r.v_ll, strict=False):
                p.field(f"v_ll_{name}", _f(v))
            for name, v in zip(("l1", "l2", "l3"), r.i_a, strict=False):
                p.field(f"i_a_{name}", _f(v))
            p.field("pf", _f(r.pf)).field("f_hz", _f(r.f_hz))
            p.field("import_kwh", _f(r.import_kwh)).field("export_kwh", _f(r.export_kwh))
            points.append(p.field("demand_kw", _f(r.demand_kw)).time(r.taken_at, ns))
        elif isinstance(r, PduReading):

            def point(measurement: str, pdu: PduReading = r) -> Any:
                return (
                    Point(measurement)
                    .tag("site", site)
                    .tag("device", pdu.device_id)
                    .tag("vendor", pdu.vendor)
                    .tag("model", pdu.model)
                    .time(pdu.taken_at, ns)
                )

            points.append(point("pdu").field("total_w", _f(r.total_watts)))
            for i in r.inlets:
                points.append(
                    point("pdu_inlet")
                    .tag("inlet", i.id)
                    .tag("phase", i.phase)
                    .field("volts", _f(i.volts))
                    .field("amps", _f(i.amps))
                    .field("watts", _f(i.watts))
                    .field("kwh", _f(i.kwh))
                    .field("pf", _f(i.pf))
                )
            for ph in r.phases:
                points.append(
                    point("pdu_phase")
                    .tag("phase", ph.id)
                    .field("volts", _f(ph.volts))
                    .field("amps", _f(ph.amps))
                    .field("watts", _f(ph.watts))
                )
            for b in r.breakers:
                points.append(point("pdu_breaker").tag("breaker", b.id).field("amps", _f(b.amps)))
            for o in r.outlets:
                points.append(
                    point("pdu_outlet")
                    .tag("outlet", str(o.index))
                    .field("amps", _f(o.amps))
                    .field("watts", _f(o.watts))
                    .field("kwh", _f(o.kwh))
                    .field("on", None if o.state is None else int(o.state == "on"))
                )
        else:
            raise TypeError(f"not handled by the baseline: {type(r).__name__}")
    return points


def baseline_encode(results: Sequence[PollResult], site: str) -> list[str]:
    """The whole baseline path: readings → Points → line protocol."""
    return [line for p in baseline_points(results, site) if (line := p.to_line_protocol())]


_UNESCAPED_SPACE = re.compile(r"(?<!\\) ")
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


def _semantic(line: str) -> tuple[str, int, tuple[tuple[str, Any], ...]]:
    """A line as (series, time, sorted fields) so both encoders' output can be compared.

    The benchmark's escapes are only ``\\ `` (spaces in model names) and no field holds a
    string, so splitting on unescaped spaces and commas is exact here. Point trims a float's
    ``.0`` and sorts fields; both are the same values to InfluxDB.
    """
    series, fields, ts = _UNESCAPED_SPACE.split(line)
    parsed: list[tuple[str, Any]] = []
    for item in _UNESCAPED_COMMA.split(fields):
        key, raw = item.split("=", 1)
        value: Any
        if raw in ("true", "false"):
            value = raw == "true"
        elif raw.endswith("i"):
            value = ("int", int(raw[:-1]))
        elif raw.startswith('"'):
            value = raw[1:-1]
        else:
            value = ("float", float(raw))
        parsed.append((key, value))
    return series, int(ts), tuple(sorted(parsed))


# --- helpers ------------------------------------------------------------------------------


def _cpu_times(fn: Callable[[], object], reps: int) -> list[float]:
    times: list[float] = []
    for _ in range(reps):
        gc.collect()
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return times


def _spool_bytes(path: Path) -> int:
    return sum(
        p.stat().st_size
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
        if p.exists()
    )


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _fmt(value: float, unit: str = "") -> str:
    if value >= 10_000:
        text = f"{value:,.0f}"
    elif value >= 100:
        text = f"{value:.0f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


@dataclass
class Row:
    bench: str
    result: str
    baseline: str
    ratio: str
    target: str
    ok: bool | None = None  # None: no target


def _check(ok: bool) -> str:
    return "met" if ok else "**missed**"


# --- 1. encode ----------------------------------------------------------------------------


def _fresh_cycle(taken_at: datetime, seed: int, serials: Sequence[str]) -> list[PollResult]:
    """A new poll cycle of the encode benchmark's farm: the same 5,000 miners (``serials``),
    20 meters and 10 PDUs every time, new random values from ``seed``, and each device stamped
    at its own instant across the poll, as real collectors do. Encoding fresh readings every
    repetition keeps any per-value cache from flattering a contender."""
    rng = random.Random(seed)
    asics = [
        dataclasses.replace(
            make_asic(rng, i, taken_at + timedelta(microseconds=i * 9_973)), serial=serial
        )
        for i, serial in enumerate(serials)
    ]
    return [
        *asics,
        *(make_meter(rng, i, taken_at + timedelta(milliseconds=i)) for i in range(20)),
        *(make_pdu(rng, i, taken_at + timedelta(milliseconds=i)) for i in range(10)),
    ]


def bench_encode(reps: int) -> list[Row]:
    from kuat.uplink import lineproto
    from kuat.uplink.lineproto import encode

    accelerated = lineproto.ACCELERATED

    def encode_pure(results: Sequence[PollResult], site: str) -> list[str]:
        # The same public entry point with the reference asic encoder, as with
        # KUAT_PURE_LINEPROTO=1 (the module global is what encode() looks up).
        saved = lineproto.encode_asic
        lineproto.encode_asic = lineproto._encode_asic_pure
        try:
            return encode(results, site)
        finally:
            lineproto.encode_asic = saved

    start = datetime.now(UTC).replace(microsecond=0)
    serials = [r.serial or "" for r in make_cycle(start, asics=5000) if isinstance(r, AsicReading)]
    cycles = [
        _fresh_cycle(start + timedelta(seconds=POLL_S * c), c, serials) for c in range(reps + 1)
    ]
    results = cycles[0]
    n_asic = sum(isinstance(r, AsicReading) for r in results)

    lineproto._asic_rest.cache_clear()
    lineproto._series.cache_clear()
    t0 = time.process_time()
    kuat_lines = encode(results, SITE)  # first call: the series-prefix cache is cold
    kuat_cold = time.process_time() - t0
    base_lines = baseline_encode(results, SITE)
    same = sorted(map(_semantic, kuat_lines)) == sorted(map(_semantic, base_lines))
    if not same:
        raise RuntimeError("encode and the Point baseline disagree: the comparison is unfair")
    n = len(kuat_lines)

    kuat_t: list[float] = []
    pure_t: list[float] = []
    base_t: list[float] = []
    tolp_t: list[float] = []
    for cycle in cycles[1:]:  # interleaved, so a noisy moment hurts every contender alike
        out: dict[str, list[str]] = {}
        kuat_t += _cpu_times(lambda c=cycle, o=out: o.update(kuat=encode(c, SITE)), 1)
        pure_t += _cpu_times(lambda c=cycle, o=out: o.update(pure=encode_pure(c, SITE)), 1)
        base_t += _cpu_times(lambda c=cycle: baseline_encode(c, SITE), 1)
        points = baseline_points(cycle, SITE)
        tolp_t += _cpu_times(lambda p=points: [x.to_line_protocol() for x in p], 1)
        if out["kuat"] != out["pure"]:
            raise RuntimeError("the accelerated and pure-Python encoders disagree")
    kuat_rate, pure_rate = n / min(kuat_t), n / min(pure_t)
    base_rate, tolp_rate = n / min(base_t), n / min(tolp_t)
    cold_rate = n / kuat_cold
    ratio, pure_ratio = kuat_rate / base_rate, pure_rate / base_rate

    def us(rate: float) -> str:
        return f"{1e6 / rate:.2f} µs/point"

    print(
        f"encode: {n} points ({n_asic} asic, 20 meters, 10 PDUs), a fresh cycle per "
        f"repetition, best of {reps}: kuat {kuat_rate:,.0f}/s ({us(kuat_rate)}, "
        f"{'C accelerator' if accelerated else 'accelerator NOT in use'}), pure Python "
        f"{pure_rate:,.0f}/s ({us(pure_rate)}), Point {base_rate:,.0f}/s ({us(base_rate)}), "
        f"to_line_protocol only {tolp_rate:,.0f}/s; outputs identical point for point, "
        "accelerated and pure byte for byte",
        file=sys.stderr,
    )
    path = "C accelerator" if accelerated else "**accelerator not built**: pure Python"
    return [
        Row(
            f"Encode, steady state ({n:,} points/cycle, fresh cycle each of {reps}, best, "
            f"CPU time; {path})",
            f"{_fmt(kuat_rate, 'points/s')} ({us(kuat_rate)})",
            f"Point built + `to_line_protocol()`: {_fmt(base_rate, 'points/s')} ({us(base_rate)})",
            f"{ratio:.1f}×",
            f"≥ 10×: {_check(ratio >= 10)}",
            ratio >= 10,
        ),
        Row(
            "Encode, steady state, pure Python (`KUAT_PURE_LINEPROTO=1`, the fallback)",
            f"{_fmt(pure_rate, 'points/s')} ({us(pure_rate)})",
            f"same baseline: {_fmt(base_rate, 'points/s')}",
            f"{pure_ratio:.1f}×",
            "—",
        ),
        Row(
            "Encode, first cycle (series-prefix cache cold)",
            _fmt(cold_rate, "points/s"),
            f"same baseline: {_fmt(base_rate, 'points/s')}",
            f"{cold_rate / base_rate:.1f}×",
            "—",
        ),
        Row(
            "Encode vs serialisation alone (Points prebuilt, not timed)",
            _fmt(kuat_rate, "points/s"),
            f"`to_line_protocol()` only: {_fmt(tolp_rate, 'points/s')}",
            f"{kuat_rate / tolp_rate:.1f}×",
            "—",
        ),
    ]


# --- 2. spool replay ----------------------------------------------------------------------


def _replay_lines(total: int, end: datetime) -> Iterator[list[str]]:
    """``total`` realistic asic lines, 5,000 miners × successive minutes ending at ``end``
    (oldest first), in batches of ``PUT_BATCH``. Built from one encoded cycle by moving the
    timestamp, so every line is a distinct point of one of 5,000 series."""
    from kuat.uplink.lineproto import encode

    heads = [line.rsplit(" ", 1)[0] for line in encode(make_cycle(end, asics=5000), SITE)]
    cycles = math.ceil(total / len(heads))
    end_ns = int(end.timestamp()) * 1_000_000_000
    batch: list[str] = []
    made = 0
    for c in range(cycles):
        ts = end_ns - (cycles - 1 - c) * POLL_S * 1_000_000_000
        for head in heads:
            if made == total:
                break
            batch.append(f"{head} {ts}")
            made += 1
            if len(batch) == PUT_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def _export_window(vm: Any, match: str, start_s: int, end_s: int) -> list[dict[str, Any]]:
    """Like ``VictoriaMetrics.export`` but for samples with ``start_s <= t <= end_s`` only."""
    vm.force_flush()
    query = urllib.parse.urlencode({"match[]": match, "start": start_s, "end": end_s})
    with urllib.request.urlopen(f"{vm.url}/api/v1/export?{query}", timeout=120) as resp:
        body = resp.read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def bench_replay(total: int, workdir: Path) -> list[Row]:
    """Three windows of the same 5,000 series on one VictoriaMetrics, oldest first:

    * one cycle written directly before "the outage": the series exist, as they do in a real
      database when the link comes back (registering 5,000 new series costs VictoriaMetrics
      ~0.7 s, which would otherwise land on whichever contender writes first);
    * the baseline window: ``total`` lines written straight through influxdb-client;
    * the replay window: the same ``total`` lines (moved in time) spooled, then drained by
      ``InfluxUplink``. Only this window is counted, so the count checks the replay alone.
    """
    from influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import SYNCHRONOUS

    from kuat.uplink.influx import InfluxUplink
    from kuat.uplink.spool import Spool
    from tests.servers import VictoriaMetrics

    cycles = math.ceil(total / 5000)
    replay_end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    replay_start = replay_end - timedelta(seconds=POLL_S * (cycles - 1))
    direct_end = replay_start - timedelta(seconds=POLL_S)
    warm_end = direct_end - timedelta(seconds=POLL_S * cycles)

    spool_path = workdir / "replay" / "spool.db"
    put_wall = 0.0
    with Spool(spool_path) as spool:
        for batch in _replay_lines(total, replay_end):
            t0 = time.perf_counter()
            spool.put_lines(batch)
            put_wall += time.perf_counter() - t0
        pending = spool.counts().pending
        if pending != total:
            raise RuntimeError(f"spool holds {pending} lines, expected {total}")
        spool_mb = _spool_bytes(spool_path) / 2**20
        put_rate = total / put_wall
        print(f"spool put: {total} lines in {put_wall:.2f} s ({spool_mb:.0f} MB)", file=sys.stderr)

        try:
            vm = VictoriaMetrics(workdir / "vm" / "data")
        except BaseException as exc:  # tests.servers skips (pytest.skip) when it is missing
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise RuntimeError(f"no VictoriaMetrics binary (KUAT_VM_BINARY): {exc}") from None
        try:
            vm.start()
            client = InfluxDBClient(url=vm.url, token="bench-token", org="kuat", retries=False)
            try:
                write = client.write_api(write_options=SYNCHRONOUS)
                for batch in _replay_lines(5000, warm_end):  # the pre-outage cycle
                    write.write(bucket="kuat", org="kuat", record=batch)
                # Baseline: the same 5,000-line requests, no spool in between.
                direct_wall = 0.0
                for batch in _replay_lines(total, direct_end):
                    for i in range(0, len(batch), 5000):
                        chunk = batch[i : i + 5000]
                        t0 = time.perf_counter()
                        write.write(bucket="kuat", org="kuat", record=chunk)
                        direct_wall += time.perf_counter() - t0
            finally:
                client.close()

            uplink = InfluxUplink(vm.url, "bench-token", "kuat", "kuat", spool)
            try:
                deadline = time.monotonic() + 600
                requests = 0
                cpu0, t0 = time.process_time(), time.perf_counter()
                while True:
                    report = uplink.flush_sync(force=True)
                    requests += report.requests
                    if report.outcome not in ("ok", "idle") or report.dead_lettered:
                        raise RuntimeError(f"flush failed: {report}")
                    if report.pending == 0:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"drain did not finish: {report}")
                drain_wall = time.perf_counter() - t0
                drain_cpu = time.process_time() - cpu0
            finally:
                uplink.close()
            series = _export_window(
                vm,
                '{__name__="asic_hashrate_ths"}',
                int(replay_start.timestamp()),
                int(replay_end.timestamp()),
            )
            stored = sum(len(s["values"]) for s in series)
            print(
                f"replay: {total} lines in {drain_wall:.2f} s ({requests} requests, "
                f"{drain_cpu:.2f} CPU-s in this process); direct writes {direct_wall:.2f} s; "
                f"export of the replay window: {stored} asic_hashrate_ths samples in "
                f"{len(series)} series (expected {total})",
                file=sys.stderr,
            )
        finally:
            vm.stop()

    rate = total / drain_wall
    direct_rate = total / direct_wall
    produce_rate = MINERS_PER_FARM / POLL_S
    # An hour's backlog drains while new lines keep arriving at the farm's rate.
    catch_up_s = OUTAGE_LINES / (rate - produce_rate) if rate > produce_rate else math.inf
    return [
        Row(
            f"Spool put ({total:,} lines in batches of {PUT_BATCH:,}, one fsync each)",
            _fmt(put_rate, "lines/s"),
            f"farm produces {_fmt(produce_rate, 'lines/s')} (50,000 miners / 60 s)",
            f"{put_rate / produce_rate:.0f}× headroom",
            "—",
        ),
        Row(
            f"Spool replay → VictoriaMetrics ({total:,} lines, {requests} requests, wall time)",
            _fmt(rate, "lines/s"),
            f"same requests via `write_api.write`, no spool: {_fmt(direct_rate, 'lines/s')}",
            f"{rate / direct_rate:.2f}× (cost of spool take + ack)",
            f"≥ 100,000 lines/s: {_check(rate >= 100_000)}",
            rate >= 100_000,
        ),
        Row(
            "Replay stored exactly once (`export`, one `asic_hashrate_ths` per line)",
            f"{stored:,} samples in {len(series):,} series",
            f"{total:,} lines spooled",
            "equal" if stored == total else "**differ**",
            f"= N: {_check(stored == total)}",
            stored == total,
        ),
        Row(
            "1-hour backlog (3,000,000 lines) caught up while the farm keeps producing",
            f"≈ {catch_up_s:.0f} s",
            f"outage: 3,600 s; agent CPU {drain_cpu / total * 1e6:.1f} µs/line replayed",
            f"{3600 / catch_up_s:.0f}× faster than it built up",
            "—",
        ),
    ]


# --- 3. outage RSS (child process) --------------------------------------------------------


def _vm_hwm_mb() -> float:
    """Peak RSS of this process image alone (``VmHWM`` is reset by exec; ru_maxrss is not)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return math.nan


def rss_child(batches: int, directory: Path) -> None:
    """Spools ``batches`` agent cycles (50,000 asic readings each) and reports, as JSON on
    stdout, peak/current RSS and spool size before and after every cycle."""
    from kuat.uplink.lineproto import encode
    from kuat.uplink.spool import Spool

    path = directory / "spool.db"
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    samples: list[dict[str, float]] = []

    def sample(lines: int) -> None:
        samples.append(
            {
                "peak": _peak_rss_mb(),
                "hwm": _vm_hwm_mb(),
                "rss": _rss_now_mb(),
                "bytes": _spool_bytes(path),
                "lines": lines,
            }
        )

    with Spool(path) as spool:
        gc.collect()
        sample(0)
        lines_total = 0
        for b in range(batches):
            # One poll cycle: fresh readings, encoded, spooled; the previous ones are freed.
            results = make_cycle(start + timedelta(seconds=POLL_S * b), MINERS_PER_FARM, seed=b)
            lines = encode(results, SITE)
            spool.put_lines(lines)
            lines_total += len(lines)
            del results, lines
            sample(lines_total)
        if spool.counts().pending != lines_total:
            raise RuntimeError("spool lost lines")
    print(json.dumps(samples))


def bench_rss(batches: int, workdir: Path) -> list[Row]:
    directory = workdir / "outage"
    directory.mkdir()
    cmd = [sys.executable, "-m", "bench.uplink", "--rss-child", str(batches), str(directory)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"RSS child failed ({out.returncode}): {out.stderr[-2000:]}")
    samples = json.loads(out.stdout.strip().splitlines()[-1])
    for s in samples:
        print(
            f"outage: {s['lines']:>9,} lines spooled  ru_maxrss {s['peak']:6.1f} MB  "
            f"VmHWM {s['hwm']:6.1f} MB  RSS now {s['rss']:6.1f} MB  "
            f"spool {s['bytes'] / 2**20:7.1f} MB",
            file=sys.stderr,
        )
    before, first, last = samples[0], samples[1], samples[-1]
    # Linear in cycles, fitted on the second half of the run: the first cycles also warm up
    # the allocator and SQLite (their growth is one-off, not per backlogged line).
    mid = samples[max(1, batches // 2)]
    slope = (last["peak"] - mid["peak"]) / max(1, last["lines"] - mid["lines"])  # MB per line
    peak_hour = last["peak"] + slope * (OUTAGE_LINES - last["lines"])
    bytes_per_line = last["bytes"] / last["lines"]
    spool_hour_mb = bytes_per_line * OUTAGE_LINES / 2**20
    spool_mb = last["bytes"] / 2**20
    minutes = batches * POLL_S // 60
    return [
        Row(
            f"Outage, measured: {minutes} min at 50,000 miners ({last['lines']:,} lines spooled)",
            f"peak RSS (ru_maxrss) {before['peak']:.0f} MB idle → {first['peak']:.0f} MB "
            f"after cycle 1 → {last['peak']:.0f} MB after cycle {batches}; RSS now "
            f"{first['rss']:.0f} → {last['rss']:.0f} MB",
            f"spool on disk {spool_mb:.0f} MB ({bytes_per_line:.0f} B/line incl. WAL)",
            f"RSS +{last['peak'] - first['peak']:.1f} MB while the spool grew "
            f"+{spool_mb - first['bytes'] / 2**20:.0f} MB",
            "—",
        ),
        Row(
            "Outage, 1 hour (3,000,000 lines): **estimate**, linear extrapolation",
            f"peak RSS ≈ {peak_hour:.0f} MB ({slope * PUT_BATCH:+.2f} MB per 50,000-line cycle)",
            f"spool on disk ≈ {spool_hour_mb:,.0f} MB",
            f"RSS +{peak_hour - first['peak']:.0f} MB over cycle 1 while the spool holds "
            f"{spool_hour_mb:,.0f} MB",
            "RSS flat (backlog on disk)",
        ),
    ]


# --- main ---------------------------------------------------------------------------------


def _table(rows: Sequence[Row]) -> str:
    out = [
        "| Benchmark | kuat | Baseline | Ratio | Target |",
        "|---|---|---|---|---|",
    ]
    out += [f"| {r.bench} | {r.result} | {r.baseline} | {r.ratio} | {r.target} |" for r in rows]
    return "\n".join(out)


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the finally blocks: VictoriaMetrics, temp dirs


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.uplink", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs (under a minute)")
    ap.add_argument("--lines", type=int, help="lines to spool and replay (default 500,000)")
    ap.add_argument("--rss-child", nargs=2, metavar=("BATCHES", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        rss_child(int(args.rss_child[0]), Path(args.rss_child[1]))
        return 0

    signal.signal(signal.SIGTERM, _on_sigterm)
    total = args.lines or (100_000 if args.quick else 500_000)
    reps = 3 if args.quick else 7
    rss_batches = 4 if args.quick else 10
    t0 = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="kuat-bench-uplink-") as tmp:
        workdir = Path(tmp)
        # The outage child runs first: on Linux a child's ru_maxrss starts from its parent's
        # RSS at spawn time, so the parent must still be small then.
        rss_rows = bench_rss(rss_batches, workdir)
        rows += bench_encode(reps)
        rows += bench_replay(total, workdir)
        rows += rss_rows
    elapsed = time.perf_counter() - t0

    print(f"## kuat uplink benchmark{' (--quick)' if args.quick else ''}\n")
    print(_table(rows))
    print(
        f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs, influxdb-client "
        f"{_client_version()}, VictoriaMetrics on 127.0.0.1; run took {elapsed:.0f} s. "
        "Rates are from one run on a shared machine: compare the ratios, not the absolutes. "
        "The 1-hour outage row is an extrapolation, not a measurement."
    )
    return 0


def _client_version() -> str:
    import influxdb_client

    return str(influxdb_client.__version__)


if __name__ == "__main__":
    sys.exit(main())
