"""Benchmark: kuat's SNMP PDU poll against net-snmp's ``snmpbulkwalk`` (not a test).

    .venv/bin/python -m bench.snmp_poll [--polls N] [--recording raritan-pdu_px3]

snmpsim serves a real PDU recording on loopback (another process: its CPU is not counted).
kuat polls it N times in steady state (one PduPoller reused, as the agent runs) and its
client CPU (``time.process_time``) is divided by the varbinds it received: once on its own
SNMPv2c client (collectors/snmp/v2c.py, ber.py), once through pysnmp's engine (how it read
v2c before, and how it still reads SNMPv3), and through ezsnmp when that is installed (the
net-snmp binding weighed against the own client). The baseline walks the same columns with
``snmpbulkwalk`` (Debian ``snmp``), the same max-repetitions, in the same run: net-snmp's
per-varbind cost is its children's CPU (``RUSAGE_CHILDREN``) for the walks minus the CPU of
as many walks of an empty subtree (its process start-up and MIB loading), divided by the
varbinds it printed. The target is kuat ≤ 10× net-snmp per varbind. Nothing is asserted;
one Markdown table is printed.

Measured 2026-12-04, five runs on the shared 2-core machine (load average 6-9): the own
client 13.0-16.3 µs per varbind (8-10 ms per poll), net-snmp 4.1-4.7 µs: 2.9-3.9x, the
target met. Through pysnmp's engine 159-184 µs (38-44x, four of the runs); ezsnmp 2.5
45-48 µs (~11x, three runs). kuat's polls here walk a column at a time
(``per_column_walks``), as net-snmp's walks do, so that the two are weighed per varbind on
the same requests.

    .venv/bin/python -m bench.snmp_poll --agent-load [--polls 30] [--rounds 3]

What a poll costs the PDU's agent, and kuat, walking a column at a time (before) or a table
at a time sized from the last poll (now): each of the four recordings polled three times by
one poller each way, the requests sent and varbinds answered counted at a relay
(``CountingRelay``) and the two ways' readings checked equal; then snmpsim's CPU (its
process's /proc times) and kuat's (``time.process_time``) for --polls rounds of the four
recordings polled concurrently by a warm poller, the two ways alternated --rounds times; and
snmpsim's CPU per GETBULK and per varbind answered. Figures: README.md, "SNMP".
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import subprocess
import sys
import time

from kuat.collectors.readings import PduReading, to_jsonable
from kuat.collectors.snmp import ber
from kuat.collectors.snmp.collector import MAX_REPETITIONS, SYS_OBJECT_ID, PduPoller, SnmpAuth
from kuat.collectors.snmp.profile import detect_profile
from kuat.collectors.snmp.sim import CountingRelay, SnmpSimulator
from kuat.collectors.snmp.v2c import V2cClient


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


async def _kuat(
    host: str, port: int, community: str, polls: int, via_pysnmp: bool
) -> tuple[float, int, float]:
    poller = PduPoller(timeout_s=3.0, v2c_via_pysnmp=via_pysnmp, per_column_walks=True)
    auth = SnmpAuth(community=community)
    warm = await poller.poll(host, port, auth=auth)  # engine, profile detection, caches
    if not isinstance(warm, PduReading):
        raise SystemExit(f"kuat could not poll the recording: {warm.describe()}")
    engine_cpu = time.process_time()
    fresh = PduPoller(timeout_s=3.0, v2c_via_pysnmp=via_pysnmp, per_column_walks=True)
    await fresh.poll(host, port, auth=auth)
    engine_cpu = time.process_time() - engine_cpu
    fresh.close()
    started = time.process_time()
    for _ in range(polls):
        r = await poller.poll(host, port, auth=auth)
        assert isinstance(r, PduReading), r
    cpu = time.process_time() - started
    poller.close()
    return cpu, polls, engine_cpu


def _ezsnmp(host: str, port: int, community: str, columns: list[str], polls: int) -> str:
    """The same columns through ezsnmp (net-snmp's library in-process), if installed: the
    binding weighed against kuat's own v2c client. Blocking calls; CPU per varbind."""
    try:
        from ezsnmp import Session  # type: ignore[import-not-found]
    except ImportError:
        return "| ezsnmp | not installed | | `pip install ezsnmp` to compare |"
    session = Session(
        hostname=host,
        port_number=port,
        version=2,
        community=community,
        set_max_repeaters_to_num=MAX_REPETITIONS,
        print_oids_numerically=True,
        timeout=3,
        retries=1,
    )
    for column in columns:  # warm
        session.bulk_walk(column)
    started, varbinds = time.process_time(), 0
    for _ in range(polls):
        for column in columns:
            varbinds += len(session.bulk_walk(column))
    cpu = time.process_time() - started
    return (
        f"| ezsnmp (net-snmp in-process, blocking), {polls} polls | "
        f"{cpu / max(varbinds, 1) * 1e6:.1f} µs | {cpu / polls * 1e3:.1f} ms | the same columns |"
    )


def _walk(binary: str, host: str, port: int, community: str, oid: str) -> int:
    out = subprocess.run(
        [
            binary,
            "-v2c",
            "-c",
            community,
            "-On",
            "-Cr" + str(MAX_REPETITIONS),
            f"{host}:{port}",
            oid,
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return sum(
        1
        for line in out.splitlines()
        if line.startswith(oid + ".") or line.startswith("." + oid + ".")
    )


# --- --agent-load: what a poll costs the PDU (and kuat), walking a column at a time or a
# table at a time --------------------------------------------------------------------------

WAYS = {"per column (before)": True, "tables, sized (now)": False}


async def _counted(sim: SnmpSimulator) -> dict[str, dict[str, list[tuple[int, int]]]]:
    """Per recording and way: (requests, varbinds) of three polls by one poller, counted at a
    relay between kuat and snmpsim; the readings of the two ways checked equal."""
    counts: dict[str, dict[str, list[tuple[int, int]]]] = {}
    with CountingRelay(sim.host, sim.port) as relay:
        for community in sim.communities:
            auth = SnmpAuth(community=community)
            readings = []
            for way, per_column in WAYS.items():
                poller = PduPoller(timeout_s=3.0, per_column_walks=per_column)
                for _ in range(3):
                    reading = await poller.poll(relay.host, relay.port, auth=auth)
                    if not isinstance(reading, PduReading):
                        raise SystemExit(f"{community}: {reading.describe()}")
                    counts.setdefault(community, {}).setdefault(way, []).append(relay.reset())
                    data = to_jsonable(reading)
                    del data["taken_at"]
                    readings.append(data)
                poller.close()
            if any(r != readings[0] for r in readings):
                raise SystemExit(f"{community}: the two ways read different values")
    return counts


async def _cpu(sim: SnmpSimulator, per_column: bool, polls: int) -> tuple[float, float]:
    """(snmpsim's, kuat's) CPU seconds for ``polls`` rounds of the four recordings polled
    concurrently, as the agent polls its PDUs, by one warm poller."""
    poller = PduPoller(timeout_s=3.0, per_column_walks=per_column)
    auths = [SnmpAuth(community=c) for c in sim.communities]

    async def round_() -> None:
        results = await asyncio.gather(*(poller.poll(sim.host, sim.port, auth=a) for a in auths))
        assert all(isinstance(r, PduReading) for r in results), results

    await round_()  # the poller has seen each PDU once, as in steady state
    sim_cpu, kuat_cpu = sim.cpu_seconds(), time.process_time()
    for _ in range(polls):
        await round_()
    sim_cpu, kuat_cpu = sim.cpu_seconds() - sim_cpu, time.process_time() - kuat_cpu
    poller.close()
    return sim_cpu, kuat_cpu


async def _unit_costs(sim: SnmpSimulator, requests: int) -> tuple[float, float]:
    """snmpsim's CPU seconds per GETBULK and per varbind answered: ``requests`` GETBULKs of
    one varbind inside the Raritan's 192-row outlet sensor column, asking 1 and 64 rows."""
    client = V2cClient()
    addr, community = (sim.host, sim.port), b"raritan-pdu_px3"
    column = [ber.encode_oid("1.3.6.1.4.1.13742.6.5.4.3.1.4")]
    spent = {}
    for rows in (1, 64, 1, 64):
        before = sim.cpu_seconds()
        for _ in range(requests):
            answer = await client.request(
                addr, community, ber.GETBULK, column, timeout_s=3.0, retries=1, max_repetitions=rows
            )
            assert len(answer.varbinds) == rows, len(answer.varbinds)
        spent[rows] = spent.get(rows, 0.0) + sim.cpu_seconds() - before
    client.close()
    per_varbind = (spent[64] - spent[1]) / (63 * 2 * requests)
    return spent[1] / (2 * requests) - per_varbind, per_varbind


def agent_load(polls: int, rounds: int) -> None:
    with SnmpSimulator() as sim:
        counts = asyncio.run(_counted(sim))
        per_request, per_varbind = asyncio.run(_unit_costs(sim, max(50, polls * 5)))
        cpu: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
        for _ in range(rounds):  # the two ways alternated, so drifting load hits both
            for way, per_column in WAYS.items():
                cpu[way].append(asyncio.run(_cpu(sim, per_column, polls)))
    print("## PDU poll: requests / varbinds answered per poll, counted at a relay\n")
    print("| recording | per column (before) | tables: first poll | tables: next polls |")
    print("|---|---|---|---|")
    total = {"before": [0, 0], "now": [0, 0]}
    for community, ways in counts.items():
        before, now = ways["per column (before)"], ways["tables, sized (now)"]
        print(
            f"| {community} | {before[-1][0]} / {before[-1][1]} | {now[0][0]} / {now[0][1]} | "
            f"{now[-1][0]} / {now[-1][1]} |"
        )
        for key, seen in (("before", before[-1]), ("now", now[-1])):
            total[key][0] += seen[0]
            total[key][1] += seen[1]
    b, n = total["before"], total["now"]
    print(
        f"| all four | {b[0]} / {b[1]} | | {n[0]} / {n[1]} "
        f"(**{n[0] / b[0]:.2f}× / {n[1] / b[1]:.2f}×**) |"
    )
    print(f"\n## CPU for {polls} polls of the four recordings, {rounds} alternated rounds\n")
    print("| way | snmpsim CPU, each round | kuat CPU, each round | snmpsim per poll |")
    print("|---|---|---|---|")
    for way, samples in cpu.items():
        sims = ", ".join(f"{s:.2f}" for s, _ in samples)
        kuats = ", ".join(f"{k:.2f}" for _, k in samples)
        per_poll = sum(s for s, _ in samples) / (len(samples) * polls * 4) * 1e3
        print(f"| {way} | {sims} s | {kuats} s | {per_poll:.1f} ms |")
    old, new = cpu["per column (before)"], cpu["tables, sized (now)"]
    sim_ratio = sum(s for s, _ in new) / sum(s for s, _ in old)
    kuat_ratio = sum(k for _, k in new) / sum(k for _, k in old)
    print(f"\nnow / before: snmpsim **{sim_ratio:.2f}×**, kuat **{kuat_ratio:.2f}×**")
    print(
        f"\nsnmpsim's CPU per GETBULK {per_request * 1e3:.2f} ms and per varbind answered "
        f"{per_varbind * 1e3:.3f} ms: a request costs it as much as "
        f"{per_request / per_varbind:.0f} varbinds"
    )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=30)
    parser.add_argument("--recording", default="raritan-pdu_px3")
    parser.add_argument(
        "--agent-load",
        action="store_true",
        help="requests and varbinds per poll of the four recordings, and snmpsim's and "
        "kuat's CPU for --polls polls of them, a column at a time against a table at a time",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (--agent-load)")
    args = parser.parse_args()
    if args.agent_load:
        agent_load(args.polls, args.rounds)
        return
    binary = shutil.which("snmpbulkwalk")
    if binary is None:
        raise SystemExit("snmpbulkwalk not found: apt-get install snmp")
    with SnmpSimulator() as sim:
        community = args.recording
        if community not in sim.communities:
            raise SystemExit(f"no recording {community}; have {', '.join(sim.communities)}")

        async def sys_oid() -> str:
            poller = PduPoller()
            try:
                session = await poller._session(
                    sim.host, sim.port, SnmpAuth(community=community), 3.0
                )
                return str((await session.get([SYS_OBJECT_ID], "sysObjectID"))[SYS_OBJECT_ID])
            finally:
                poller.close()

        profile = detect_profile(asyncio.run(sys_oid()))
        assert profile is not None
        columns = profile.columns()

        # net-snmp: one process walks the subtree holding every column (its start-up, a few
        # ms, would otherwise dwarf a 60-varbind column), start-up of as many empty walks
        # subtracted; per-varbind cost from the varbinds it printed
        parts = [c.split(".") for c in columns]
        common: list[str] = []
        for group in zip(*parts, strict=False):
            if len(set(group)) != 1:
                break
            common.append(group[0])
        root = ".".join(common)
        reps = max(5, args.polls // 3)
        before = _children_cpu()
        net_vb = sum(_walk(binary, sim.host, sim.port, community, root) for _ in range(reps))
        walks_cpu = _children_cpu() - before
        before = _children_cpu()
        for _ in range(reps):
            _walk(binary, sim.host, sim.port, community, "1.3.6.1.6.3.999")  # empty subtree
        startup_cpu = _children_cpu() - before
        net_per_vb = max(walks_cpu - startup_cpu, 1e-9) / max(net_vb, 1)
        # kuat's varbinds per poll: what the same columns hold
        vb_per_poll = sum(_walk(binary, sim.host, sim.port, community, c) for c in columns)

        cpu, polls, first_cpu = asyncio.run(
            _kuat(sim.host, sim.port, community, args.polls, via_pysnmp=False)
        )
        kuat_vb = vb_per_poll * polls  # the same columns: the same varbinds per poll
        kuat_per_vb = cpu / max(kuat_vb, 1)
        py_cpu, _, engine_cpu = asyncio.run(
            _kuat(sim.host, sim.port, community, max(3, args.polls // 3), via_pysnmp=True)
        )
        py_polls = max(3, args.polls // 3)
        py_per_vb = py_cpu / max(vb_per_poll * py_polls, 1)
        ezsnmp_row = _ezsnmp(sim.host, sim.port, community, columns, polls)

    print(f"## SNMP poll: {community} ({len(columns)} columns, {vb_per_poll} varbinds per poll)\n")
    print("| client | CPU per varbind | CPU per poll | note |")
    print("|---|---|---|---|")
    print(
        f"| kuat (own v2c client, ber.py), {polls} polls | {kuat_per_vb * 1e6:.1f} µs | "
        f"{cpu / polls * 1e3:.1f} ms | a first poll with a new poller: {first_cpu * 1e3:.0f} ms |"
    )
    print(
        f"| kuat through pysnmp's engine (before; still SNMPv3 and SET), {py_polls} polls | "
        f"{py_per_vb * 1e6:.1f} µs | {py_cpu / py_polls * 1e3:.1f} ms | a first poll with a "
        f"new engine: {engine_cpu * 1e3:.0f} ms |"
    )
    print(ezsnmp_row)
    print(
        f"| net-snmp snmpbulkwalk, {reps} walks of {root} ({net_vb // reps} varbinds) | "
        f"{net_per_vb * 1e6:.1f} µs | {net_per_vb * vb_per_poll * 1e3:.2f} ms | start-up "
        f"({startup_cpu / reps * 1e3:.1f} ms per process) subtracted |"
    )
    print(
        f"\nkuat / net-snmp per varbind: **{kuat_per_vb / net_per_vb:.1f}×** (target ≤ 10×); "
        f"through pysnmp's engine: {py_per_vb / net_per_vb:.0f}×"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
