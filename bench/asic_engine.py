"""Workload for instruction counts: kuat's poll engine on recorded stock S19 replies, no sockets.

A shared box makes CPU seconds noisy; instruction counts under callgrind are not. This replays
the simulator's stock S19 replies (a fifth with bmminer's glued STATS, as bench/asic_poll.py's
farm has them) through ``AsicPoller.poll_many`` with the socket exchange replaced by a lookup
of the recorded bytes, the web identity applied as in service. ``--mode floor`` does what the
raw floor of bench/asic_poll.py does with the same bytes (one ``orjson.loads``).

Per-poll instructions are the difference of two runs that differ only in ``--cycles``:

    for c in 1 6; do valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$c \\
        .venv/bin/python -m bench.asic_engine --cycles $c; done
    # (Ir of cg.6 - Ir of cg.1) / (5 * 400) = instructions per steady-state poll

Without valgrind it prints CPU µs per poll (noisy on a shared box; for a quick look).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any

from kuat.collectors.cgminer import client as client_mod
from kuat.collectors.cgminer.firmware.bitmain.web import SYSTEM_INFO_PATH, BitmainIdentity
from kuat.collectors.cgminer.sim import AsicFarmSimulator, encode


def recorder(farm: AsicFarmSimulator) -> tuple[Any, dict[tuple[str, bytes], bytes]]:
    """An ``exchange`` stand-in answering from the simulated miners, each (miner, request)
    recorded once and replayed after: a steady-state poll decodes the same bytes each cycle."""
    miners = {m.ip: (i, m) for i, m in enumerate(farm.miners)}
    tape: dict[tuple[str, bytes], bytes] = {}

    async def exchange(host: str, port: int, payload: bytes, **_: Any) -> bytes:
        key = (host, payload)
        raw = tape.get(key)
        if raw is None:
            i, m = miners[host]
            # the farm glues STATS on every fifth stock miner (sim.AsicFarmSimulator.start)
            raw = tape[key] = encode(m, m.answer(json.loads(payload)), i % 5 == 0)
        return raw

    return exchange, tape


async def run_kuat(count: int, cycles: int, personality: str = "antminer") -> float:
    from kuat.agent.tuning import apply_gc_tuning
    from kuat.collectors.cgminer.collector import AsicPoller

    apply_gc_tuning()  # as `kuat run` and bench/asic_poll.py's kuat client have it
    farm = AsicFarmSimulator(count, first_ip="127.90.0.1", personalities=(personality,))
    exchange, _ = recorder(farm)
    client_mod.exchange = exchange  # CgminerClient.command looks it up in the module
    poller = AsicPoller(timeout_s=5.0, concurrency=256, web_port=80)
    by_ip = {m.ip: m for m in farm.miners}

    async def identity(_client: Any, host: str) -> dict[str, Any]:
        m = by_ip[host]
        return {SYSTEM_INFO_PATH: BitmainIdentity(serial=m.serial, mac=m.mac.lower())}

    for f in poller._idents.values():
        f.fetch = identity
    tg = farm.targets
    await poller.poll_many(tg)  # discovery and the requery with new_api
    stock = personality == "antminer"
    for _ in range(50 if stock else 0):  # the background identity burst
        if all(poller.identity_of(ip, port) for ip, port in tg):
            break
        await asyncio.sleep(0.01)
    await poller.poll_many(tg)  # the first steady-state cycle records its request
    cpu0 = time.process_time()
    for _ in range(cycles - 1):
        out = await poller.poll_many(tg)
        assert not stock or all(r.serial for r in out), out[:1]  # type: ignore[union-attr]
    await poller.aclose()
    return time.process_time() - cpu0


async def run_floor(count: int, cycles: int) -> float:
    import orjson

    farm = AsicFarmSimulator(count, first_ip="127.90.0.1", personalities=("antminer",))
    exchange, _ = recorder(farm)
    payload = b'{"command":"summary+stats+pools+version"}'
    tg = farm.targets
    for host, port in tg:
        await exchange(host, port, payload)
    cpu0 = time.process_time()
    for _ in range(cycles - 1):
        for host, port in tg:
            raw = await exchange(host, port, payload)
            with contextlib.suppress(orjson.JSONDecodeError):
                orjson.loads(raw.rstrip(b"\x00"))
    return time.process_time() - cpu0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=400, help="simulated stock S19s")
    ap.add_argument("--cycles", type=int, default=2, help="cycles after discovery (>= 1)")
    ap.add_argument("--mode", choices=("kuat", "floor"), default="kuat")
    ap.add_argument(
        "--personality",
        default="antminer",
        help="kuat mode: the simulated firmware (default: stock S19s); luxos and whatsminer "
        "replies hold more brackets than the depth guard's limit, so its walk runs on each",
    )
    args = ap.parse_args()
    if args.mode == "kuat":
        cpu = asyncio.run(run_kuat(args.count, max(1, args.cycles), args.personality))
    else:
        cpu = asyncio.run(run_floor(args.count, max(1, args.cycles)))
    polls = args.count * (max(1, args.cycles) - 1)
    if polls:
        print(f"{args.mode}: {cpu / polls * 1e6:.1f} CPU µs per poll over {polls} polls")


if __name__ == "__main__":
    main()
