"""``kuat demo``: a simulated farm on loopback and the real agent watching it.

Nothing to install: the miners are asyncio servers on their own 127.x.y.z addresses, the PDUs are
snmpsim serving real PDU recordings, the substation meter is a pymodbus server whose registers
follow the farm's draw, and the commercial (settlement) meter is a DLMS/COSEM server (SPODES
profile) on the 35 kV side, counting the same draw plus the transformer's losses and closing a
load-profile interval every half hour. So that the settlement check has a closed hour to show at
once, the demo's state starts with the two hours before it as both meters counted them (the
ledger and the DLMS meter's load profile are seeded from the same simulated draw). The agent
runs with its normal jobs; with no InfluxDB or MQTT server configured, telemetry and register
messages stay in the durable spool under the state directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.live import Live

from kuat.agent.config import KuatConfig
from kuat.agent.demo_quota import write_demo_schedule
from kuat.agent.i18n import Lang
from kuat.agent.ledger import EnergyLedger
from kuat.agent.runtime import Agent
from kuat.agent.state import StatusSnapshot
from kuat.agent.status import render_line, render_table
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.dlms.sim import DlmsMeterSimulator
from kuat.collectors.modbus.sim import MeterSimulator
from kuat.collectors.readings import MeterReading
from kuat.collectors.snmp.sim import SnmpSimulator
from kuat.quota.messages import render

# Stock Antminers' web UI, where their serial and MAC live (port 80 needs no root this way).
DEMO_WEB_PORT = 8080
# Cooling, lighting and transformer losses on top of the miners, as a farm's meter sees them.
OVERHEAD = 0.06
# The 35/10 kV transformer between the commercial meter and the site meter loses this much.
TRANSFORMER_LOSS = 0.012
DLMS_PASSWORD = "12345678"  # the SPODES reader's factory LLS password, as on a lab meter
FIRST_IMPORT_KWH = 1_284_000.0
SETTLEMENT_TITLE = {"kk": "Коммерциялық есеп", "ru": "Коммерческий учёт", "en": "Settlement"}
DEMO_INTERVALS = {"asic": 5, "pdu": 5, "meter": 1, "quota": 2, "inventory": 10, "flush": 5}
ACCREDITED_POOLS = ["pool.kz-mining.example", "stratum.kazpool.example"]
# A few miners left on a foreign pool, so the item-7 check has something to find.
FOREIGN_POOL_MINERS = 3


def _point_pools(farm: AsicFarmSimulator) -> None:
    for i, m in enumerate(farm.miners):
        if i >= len(farm.miners) - FOREIGN_POOL_MINERS:
            continue  # keeps the simulator's default foreign pools
        worker = f"kzfarm.{m.serial[-6:]}"
        m.pools = [
            {"url": f"stratum+tcp://{ACCREDITED_POOLS[0]}:3333", "user": worker},
            {"url": f"stratum+tcp://{ACCREDITED_POOLS[1]}:3333", "user": worker},
        ]


def demo_config(
    state_dir: Path,
    miners: list[tuple[str, int]],
    pdus: list[tuple[str, int, str]],
    meter: tuple[str, int],
    schedule: Path,
    commercial: tuple[str, int] | None = None,
) -> KuatConfig:
    return KuatConfig.model_validate(
        {
            "site": {
                "id": "demo-ekibastuz",
                "name": "Demo farm (simulated)",
                "owner_bin": "230140000001",
                "licence_number": "DEMO-0001",
                "data_centre_id": "DC-DEMO-1",
                "data_centre_registered": True,
            },
            "agent": {"state_dir": str(state_dir)},
            "intervals": DEMO_INTERVALS,
            "asic": {
                "timeout_s": 2.0,
                "web_port": DEMO_WEB_PORT,
                "groups": [{"hosts": [ip for ip, _ in miners], "port": miners[0][1]}],
            },
            "pdu": [
                # a generous deadline: snmpsim shares this machine's CPU with the whole farm
                {"name": name, "host": host, "port": port, "community": name, "timeout_s": 4.0}
                for host, port, name in pdus
            ],
            "meter": [
                {
                    "name": "substation",
                    "host": meter[0],
                    "port": meter[1],
                    "profile": "schneider-pm5560",
                    "role": "site",
                },
                *(
                    [
                        {
                            "name": "commercial-35kv",
                            "host": commercial[0],
                            "port": commercial[1],
                            "protocol": "dlms",
                            "profile": "spodes",
                            "role": "commercial",
                            "client_address": 32,
                            "password": DLMS_PASSWORD,
                            "interval_s": 10,
                            "timeout_s": 4,
                            # the losses between the two meters, plus the meters' classes
                            "tolerance_fraction": 0.02,
                        }
                    ]
                    if commercial
                    else []
                ),
            ],
            "quota": {"schedules": str(schedule)},
            "grid": {
                "tc_number": "TC-35-2024/117",
                "issuer": "Demo REC",
                "substation": "PS 35/10 kV Demo",
                "voltage_kv": 35,
                "permitted_mw": 1.5,
                "connected_on": "2024-05-20",
            },
            "compliance": {"accredited_pools": ACCREDITED_POOLS},
        }
    )


def seed_history(
    state_dir: Path, commercial: DlmsMeterSimulator, p_kw: float, now: datetime
) -> float:
    """Three hours before ``now`` as both meters counted them at a steady ``p_kw``: kuat's
    ledger (site meter, a reading a minute) and the DLMS meter's load profile. Returns the
    site meter's counter at ``now``.

    Three, not two: the hour the reconciler checks first is the newest one closed a grace
    period ago, which in an hour's first minutes starts more than two hours back; two hours
    of history left it partly covered then (the profile's first capture opens no interval)."""
    start = now - timedelta(hours=3)
    site_kwh = FIRST_IMPORT_KWH
    with EnergyLedger(state_dir / "ledger.db") as ledger:
        for minute in range(181):
            at = start + timedelta(minutes=minute)
            site_kwh = FIRST_IMPORT_KWH + p_kw * minute / 60
            ledger.record(
                "substation",
                MeterReading("demo", 1, "schneider-pm5560", at, p_kw=p_kw, import_kwh=site_kwh),
            )
            commercial.set(
                at=at,
                import_kwh=(FIRST_IMPORT_KWH + p_kw * minute / 60) * (1 + TRANSFORMER_LOSS),
            )
    return site_kwh


async def follow_farm(
    farm: AsicFarmSimulator,
    meter: MeterSimulator,
    commercial: DlmsMeterSimulator | None = None,
    import_kwh: float = FIRST_IMPORT_KWH,
) -> None:
    """Make the meters follow the farm, integrating energy like real counters."""
    last = datetime.now(UTC)
    while True:
        now = datetime.now(UTC)
        p_kw = farm.total_power_w() / 1000 * (1 + OVERHEAD)
        import_kwh += p_kw * (now - last).total_seconds() / 3600
        last = now
        if commercial is not None:
            hv_kw = p_kw * (1 + TRANSFORMER_LOSS)
            commercial.set(
                at=now,
                import_kwh=import_kwh * (1 + TRANSFORMER_LOSS),
                p_kw=hv_kw,
                v_ln=(20_207.0, 20_211.0, 20_199.0),  # 35 kV line to line, via the VTs
                i_a=(hv_kw * 1000 / 3 / 20_207.0,) * 3,
                pf=0.99,
                f_hz=50.0,
                export_kwh=0.0,
            )
        per_phase = p_kw / 3
        amps = per_phase * 1000 / 230.0
        meter.set(
            p_kw=p_kw,
            p_kw_phases=(per_phase, per_phase, per_phase),
            q_kvar=p_kw * 0.12,
            s_kva=p_kw / 0.99,
            v_ln=(230.4, 231.1, 229.8),
            v_ll=(399.2, 400.1, 398.7),
            i_a=(amps, amps, amps),
            pf=0.99,
            f_hz=50.0,
            import_kwh=import_kwh,
            export_kwh=0.0,
            demand_kw=p_kw,
        )
        await asyncio.sleep(0.5)


async def run_demo(
    *, miners: int, duration_s: float | None, state_dir: Path | None, lang: Lang, plain: bool
) -> int:
    console = Console()
    tmp = None
    if state_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="kuat-demo-")
        state_dir = Path(tmp.name)
    state_dir.mkdir(parents=True, exist_ok=True)

    farm = AsicFarmSimulator(miners, first_ip="127.10.0.1", seed=7, web_port=DEMO_WEB_PORT)
    _point_pools(farm)
    meter = MeterSimulator("schneider-pm5560")
    commercial = DlmsMeterSimulator("spodes", password=DLMS_PASSWORD)
    snmp = SnmpSimulator()
    console.print(f"[bold]kuat demo[/]: starting {miners} simulated miners, 4 PDUs, 1 meter …")
    try:
        await farm.start()
        await meter.start()
        await commercial.start()
        await asyncio.to_thread(snmp.start)
    except Exception as exc:
        console.print(f"[red]could not start the simulated farm:[/] {exc}")
        await _stop_all(farm, meter, snmp, commercial)
        return 1
    started = datetime.now(UTC)
    site_kwh = seed_history(
        state_dir, commercial, farm.total_power_w() / 1000 * (1 + OVERHEAD), started
    )
    follower = asyncio.create_task(follow_farm(farm, meter, commercial, site_kwh))
    await asyncio.sleep(0.6)  # let the meter hold a first value before the agent reads it

    schedule = write_demo_schedule(
        state_dir / "quota.d",
        "demo-ekibastuz",
        farm.total_power_w() / 1000 * (1 + OVERHEAD),
        datetime.now(UTC),
    )
    pdus = [(snmp.host, snmp.port, name) for name in snmp.communities[:4]]
    cfg = demo_config(
        state_dir,
        farm.targets,
        pdus,
        (meter.host, meter.port),
        schedule,
        (commercial.host, commercial.port),
    )
    console.print(
        f"state directory: {state_dir} (spool and outbox; no InfluxDB or MQTT needed)\n"
        f"miners on {farm.targets[0][0]} … {farm.targets[-1][0]}, PDUs on udp/{snmp.port}, "
        f"meter on tcp/{meter.port}, commercial DLMS meter on tcp/{commercial.port}.  "
        "Ctrl-C stops."
    )

    cycle = 0
    live: Live | None = None
    use_live = not plain and sys.stdout.isatty()
    if use_live:
        # Log lines would tear the live table apart; they go to a file beside the spool.
        _log_to_file(state_dir / "kuat-demo.log")
        console.print(f"log: {state_dir / 'kuat-demo.log'}")

    shown: dict[str, object] = {}

    def on_cycle(snap: StatusSnapshot) -> None:
        nonlocal cycle
        cycle += 1
        if cycle == 1:  # the dashboard is up (or has failed) by the first cycle: say which
            line = _dashboard_line(agent, lang)
            if live is not None:
                live.console.print(line)
            else:
                print(line, flush=True)
        settled = agent.state.settlement
        if settled is not None and settled is not shown.get("settlement"):
            # the commercial meter's closed hour and its reconciliation, once per verdict
            shown["settlement"] = settled
            line = f"{SETTLEMENT_TITLE[lang]}: {render(settled.reason, lang)}"
            if live is not None:
                live.console.print(line)
            else:
                print(line, flush=True)
        if live is not None:
            live.update(render_table(snap, lang, cycle))
        else:
            print(render_line(snap, lang, cycle), flush=True)

    agent = Agent(cfg, on_cycle=on_cycle)
    try:
        if not use_live:
            await agent.run(stop_after_s=duration_s)
        else:
            with Live(console=console, refresh_per_second=4) as live:
                await agent.run(stop_after_s=duration_s)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await _stop_all(farm, meter, snmp, commercial)
        if tmp is not None:
            tmp.cleanup()
    # The live table (or the last status line) stays on screen as the summary.
    return 0


def _dashboard_line(agent: Agent, lang: Lang) -> str:
    if agent.dashboard is not None:
        url = agent.dashboard.url + ("" if lang == "en" else f"?lang={lang}")
        return f"dashboard: {url}  (also /api/status, /healthz, /metrics)"
    if agent.cfg.dashboard.address() is None:
        return "dashboard: off"
    return f"dashboard: not started ({agent.cfg.dashboard.listen} in use? see the log)"


def _log_to_file(path: Path) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)


async def _stop_all(
    farm: AsicFarmSimulator,
    meter: MeterSimulator,
    snmp: SnmpSimulator,
    commercial: DlmsMeterSimulator | None = None,
) -> None:
    for stop in (farm.stop, meter.stop, *([commercial.stop] if commercial else [])):
        with contextlib.suppress(Exception):
            await stop()
    with contextlib.suppress(Exception):
        await asyncio.to_thread(snmp.stop)
