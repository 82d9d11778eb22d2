"""Benchmark of the dashboard's miners table at farm scale (not a test: it prints a table,
asserts nothing).

    .venv/bin/python -m bench.dashboard [--miners 50000] [--rounds 5]

The site state holds ``--miners`` readings (1 % of them down, a PDU outlet measured for every
tenth, a dry-run curtailment plan for a few hundred), as the agent's jobs leave it. Timed, in
the same process and run, per request:

- ``baseline``: the status snapshot every /api/status, /healthz and /metrics request already
  computes over the same miners (``agent.state.snapshot``), the yardstick;
- ``/api/miners`` as served: every miner filtered and sorted from its reading, one page of 100
  rows built and encoded to JSON, for the default order, sorts by power and by curtailment
  state, and a text filter;
- ``/`` page's miners section: the same page of rows formatted for the template.

Reported: milliseconds per request and the ratio to the baseline. Targets are ratios (the
machine may be loaded): a request stays within a small multiple of the snapshot it already
pays for, and only one page is encoded whatever the farm's size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kuat.agent.config import KuatConfig
from kuat.agent.dashboard_curtail import CurtailmentView
from kuat.agent.dashboard_miners import Fleet, outlet_watts, page_json, parse_query, select
from kuat.agent.dashboard_page import miners_context
from kuat.agent.state import SiteState, snapshot
from kuat.collectors.readings import (
    AsicReading,
    AsicTemps,
    DeviceError,
    DeviceKind,
    PduOutlet,
    PduReading,
    PoolInfo,
)
from kuat.quota.curtail import Action, ActionKind
from kuat.quota.reasons import Code, Reason

NOW = datetime(2026, 11, 25, 9, 3, 12, tzinfo=UTC)
MODELS = ("Antminer S21", "Antminer S19 XP", "WhatsMiner M50S", "Avalon A1466")


def _ip(i: int) -> str:
    return f"10.{20 + i // 65025}.{(i // 255) % 255}.{i % 255 + 1}"


def farm(n: int) -> tuple[KuatConfig, SiteState, CurtailmentView]:
    state = SiteState()
    outlets: dict[int, str] = {}
    for i in range(n):
        ip = _ip(i)
        if i % 100 == 99:
            state.asics[(ip, 4028)] = DeviceError(DeviceKind.ASIC, ip, 4028, NOW, "timed out")
            continue
        state.asics[(ip, 4028)] = AsicReading(
            ip,
            4028,
            NOW,
            vendor="Bitmain",
            firmware_family="luxos" if i % 3 else "stock",
            model=MODELS[i % len(MODELS)],
            serial=f"SN{i:07d}",
            firmware="2025.4.8",
            hashrate_ths=90.0 + (i * 7919) % 400 / 10,
            power_w=None if i % 17 == 0 else 3000.0 + (i * 104729) % 600,
            temps_c=AsicTemps(board=(60.0 + i % 15, 62.0), chip=(70.0 + i % 20,)),
            pools=(PoolInfo("stratum+tcp://pool.kz-mining.example:3333", "kz.w1", "Alive", True),),
            state="sleeping" if i % 50 == 7 else "mining",
        )
        if i % 10 == 0 and len(outlets) < 48:
            outlets[len(outlets) + 1] = ip
    cfg = KuatConfig.model_validate(
        {
            "site": {"id": "bench"},
            "pdu": [{"name": "p1", "host": "10.9.0.1", "community": "public", "outlets": outlets}],
        }
    )
    state.pdus["p1"] = PduReading(
        "10.9.0.1",
        "APC",
        None,
        None,
        NOW,
        outlets=tuple(PduOutlet(k, watts=3100.0) for k in outlets),
    )
    planned = {
        f"SN{i:07d}": Action(f"SN{i:07d}", ActionKind.SLEEP, 3200.0, Reason.of(Code.CURTAIL_SLEEP))
        for i in range(0, n, max(1, n // 300))
        if i % 100 != 99
    }
    return cfg, state, CurtailmentView(False, None, {}, planned)


def timed(fn: Callable[[], Any], rounds: int) -> float:
    fn()  # warm
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--miners", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cfg, state, cv = farm(args.miners)

    def api(params: dict[str, str]) -> Callable[[], Any]:
        q = parse_query(params)

        def run() -> int:
            fleet = Fleet(state.asics, outlet_watts(cfg, state.pdus), cv)
            return len(json.dumps(page_json(select(fleet, q), "en"), ensure_ascii=False))

        return run

    def page() -> Any:
        fleet = Fleet(state.asics, outlet_watts(cfg, state.pdus), cv)
        return miners_context(select(fleet, parse_query({}, strict=False)), "en")

    base = timed(lambda: snapshot(state, NOW), args.rounds)
    cases = {
        "/api/miners (default)": api({}),
        "/api/miners?sort=power&order=desc": api({"sort": "power", "order": "desc"}),
        "/api/miners?sort=curtailment": api({"sort": "curtailment"}),
        "/api/miners?q=s21&state=mining": api({"q": "s21", "state": "mining"}),
        "/ (miners section)": page,
    }
    body = api({})()
    print(f"{args.miners:,} miners, median of {args.rounds} rounds (machine may be loaded)")
    print(f"{'request':<36} {'ms':>9} {'x baseline':>11}")
    print(f"{'baseline: status snapshot':<36} {base:>9.1f} {1.0:>11.2f}")
    for name, fn in cases.items():
        ms = timed(fn, args.rounds)
        print(f"{name:<36} {ms:>9.1f} {ms / base:>11.2f}")
    print(f"JSON body of one page: {body:,} bytes")


if __name__ == "__main__":
    main()
