"""``kuat demo``: a simulated farm on loopback and the real agent watching it.

Nothing to install: the miners are asyncio servers on their own 127.x.y.z addresses, the PDUs are
snmpsim serving real PDU recordings, the substation meter is a pymodbus server whose registers
follow the farm's draw, and the commercial (settlement) meter is a DLMS/COSEM server (SPODES
profile) on the 35 kV side, counting the same draw plus the transformer's losses and closing a
load-profile interval every half hour. The agent runs with its normal jobs; with no InfluxDB or
MQTT server configured, telemetry and register messages stay in the durable spool under the state
directory.

The story it tells (README, "make demo"): the hour it starts in is tight (kuat.agent.demo_quota)
and the curtailment controller decides, in a dry run or with ``--enforce``; the meter reads the
miners + the PDUs' racks + overhead, so the energy balance adds up, unless ``--hidden-load`` puts
unregistered load on it. So that the hour and the settlement check have history at once, the
demo's state starts with the three hours before it as both meters counted them (the ledger and
the DLMS meter's load profile are seeded from the same simulated draw). ``--base`` and
``--listen`` move the devices and the dashboard (DemoLayout), so two demos share a machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.live import Live

from kuat.agent.config import KuatConfig, web_ports_at
from kuat.agent.demo_quota import TIGHT_SHARE, TOLERANCE_KWH, starts_late, write_demo_schedule
from kuat.agent.demo_status import Story, render_line, render_table
from kuat.agent.demo_text import say
from kuat.agent.i18n import Lang, render
from kuat.agent.ledger import EnergyLedger
from kuat.agent.runtime import Agent
from kuat.agent.state import StatusSnapshot
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.dlms.sim import DlmsMeterSimulator
from kuat.collectors.errors import KuatError
from kuat.collectors.modbus.sim import MeterSimulator
from kuat.collectors.readings import MeterReading, PduReading
from kuat.collectors.snmp.collector import PduPoller, SnmpAuth
from kuat.collectors.snmp.sim import SnmpSimulator
from kuat.quota.balance import pdu_power_kw
from kuat.quota.clock import ASTANA, current_hour_bounds

# Stock Antminers' web UI, where their serial and MAC live (port 80 needs no root this way).
DEMO_WEB_PORT = 8080
# Cooling and the miners' feeders' losses on top of the miners, as a farm's meter sees them.
OVERHEAD = 0.06
# The four PDUs feed the farm's network and control racks (switches, the agent's own box,
# cameras): a load the meter sees on top of the miners and their overhead, measured by the
# PDUs themselves. Their recordings are fixed walks, so the demo reads them once at start.
# The 35/10 kV transformer between the commercial meter and the site meter loses this much.
TRANSFORMER_LOSS = 0.012
DLMS_PASSWORD = "12345678"  # the SPODES reader's factory LLS password, as on a lab meter
FIRST_IMPORT_KWH = 1_284_000.0
DEMO_INTERVALS = {"asic": 5, "pdu": 5, "meter": 1, "quota": 2, "inventory": 10, "flush": 5}
# Deadlines for the simulated PDUs and meters: generous, because they share this machine's CPU
# with the whole simulated farm and the agent (and, in the tests, with another demo); a site's
# own devices keep the defaults.
DEVICE_TIMEOUT_S = 8.0
ASIC_TIMEOUT_S = 4.0
# The curtailment controller (agent.curtailment) as configured for a one-minute story: its
# timers shortened so a decision shows within seconds, the rest as a site would set it.
DEMO_CURTAILMENT = {
    "min_on_s": 30,
    "min_off_s": 30,
    "hysteresis_kw": 5,
    "decision_window_s": 3,
    "power_limit_hold_s": 10,
    "wake_min_run_s": 30,
}
# The site's mix of 20 (the simulator's default, but S21-era stock Antminers, which report
# their watts: a stock S19 does not, and with half the farm silent about its power the energy
# balance could not add the miners up).
DEMO_MIX = ("antminer_s21",) * 10 + ("whatsminer",) * 5 + ("luxos",) * 3 + ("braiins",) * 2
# --hidden-load: unregistered load beside the farm, as a share of the miners' draw (more than
# the balance's tolerance, so its alarm shows).
HIDDEN_LOAD_SHARE = 0.10
# The planner keeps this share of the farm's draw below the allowed power ([quota] margin_kw):
# the hour closes a little inside its allocation, not on its edge.
PLAN_MARGIN = 0.01
# How often the screen looks at the controller's latest plan (a fraction of the meter's interval).
PLAN_WATCH_S = 0.2
DEFAULT_BASE = "127.10.0.1"
DEFAULT_LISTEN = "127.0.0.1:9120"
# The meters and PDUs live in the third octet 250 of the base's /16, apart from the miners.
DEVICES_OCTET = 250
ACCREDITED_POOLS = ["pool.kz-mining.example", "stratum.kazpool.example"]
# A few miners left on a foreign pool, so the item-7 check has something to find.
FOREIGN_POOL_MINERS = 3


class DemoLayoutError(KuatError, ValueError):
    """--base is not a loopback address (``key`` "bad_base"), or the farm would not fit below
    the devices ("base_full"); ``key`` names the demo text that says so."""

    def __init__(self, key: str, base: str, devices: str = "") -> None:
        super().__init__(f"{key}: {base}")
        self.key, self.base, self.devices = key, base, devices


@dataclass(frozen=True)
class DemoLayout:
    """Where the simulated devices listen: miners from the base address up, the PDUs and the
    two meters on x.y.250.1-3 of the base's /16. Two demos with different bases (and
    ``--listen`` ports) share a machine."""

    first_miner: str
    pdus: str
    meter: str
    dlms: str

    @classmethod
    def of(cls, base: str, miners: int) -> DemoLayout:
        try:
            ip = ipaddress.IPv4Address(base)
        except ValueError:
            raise DemoLayoutError("bad_base", base) from None
        if not ip.is_loopback:
            raise DemoLayoutError("bad_base", base)
        net = int(ip) & 0xFFFF0000
        devices = [str(ipaddress.IPv4Address(net | DEVICES_OCTET << 8 | k)) for k in (1, 2, 3)]
        # the miners skip .0 and .255: 254 to a /24
        last_third = ((int(ip) >> 8) & 0xFF) + ((int(ip) & 0xFF) + miners) // 254
        if last_third >= DEVICES_OCTET:
            raise DemoLayoutError("base_full", base, devices[0])
        return cls(str(ip), *devices)


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
    *,
    enforce: bool = False,
    listen: str = DEFAULT_LISTEN,
    racks_kw: float = 0.0,
    margin_kw: float = 0.0,
    lang: Lang = "en",
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
            # the agent's own log lines and reasons in the demo's language
            "agent": {"state_dir": str(state_dir), "language": lang},
            "dashboard": {"listen": listen},
            "intervals": DEMO_INTERVALS,
            "asic": {
                # generous, as the other devices' (DEVICE_TIMEOUT_S), within the 5 s poll cycle
                "timeout_s": ASIC_TIMEOUT_S,
                "web_port": DEMO_WEB_PORT,
                # firmware with a web port of its own (a REST API: identity, power target) serves
                # it on the same port here; the default 80 would be refused and warned about for
                # every such miner
                "credentials": web_ports_at(DEMO_WEB_PORT),
                "groups": [{"hosts": [ip for ip, _ in miners], "port": miners[0][1]}],
            },
            "pdu": [
                {
                    "name": name,
                    "host": host,
                    "port": port,
                    "community": name,
                    "timeout_s": DEVICE_TIMEOUT_S,
                }
                for host, port, name in pdus
            ],
            "meter": [
                {
                    "name": "substation",
                    "host": meter[0],
                    "port": meter[1],
                    "profile": "schneider-pm5560",
                    "role": "site",
                    "timeout_s": DEVICE_TIMEOUT_S,
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
                            "timeout_s": DEVICE_TIMEOUT_S,
                            # the losses between the two meters, plus the meters' classes
                            "tolerance_fraction": 0.02,
                        }
                    ]
                    if commercial
                    else []
                ),
            ],
            "quota": {
                "schedules": str(schedule),
                "enforce": enforce,
                "margin_kw": margin_kw,
                # KOREM sells whole kWh (MWh to three decimals): the controller lands the hour on
                # its allocation, and a forecast a few Wh over it is not an over-quota hour
                "tolerance_kwh": TOLERANCE_KWH,
                **DEMO_CURTAILMENT,
            },
            # the meter counts the miners and 6 % more (cooling, losses), and the racks on
            # the PDUs: the site's known fixed load
            # the demo's minute stands for an hour: its alarm waits a few of its seconds for
            # the readings to settle after a switch, not the production minute
            "balance": {
                "overhead_fraction": OVERHEAD,
                "overhead_kw": round(racks_kw, 1),
                "alarm_after_s": 6,
            },
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


async def racks_load_kw(pdus: list[tuple[str, int, str]]) -> float:
    """What the PDUs measure (Σ inlets), as the agent will read it; 0 if none answers."""
    poller = PduPoller()
    readings = await asyncio.gather(
        *(poller.poll(h, p, auth=SnmpAuth(community=c), deadline_s=10.0) for h, p, c in pdus)
    )
    return pdu_power_kw(r for r in readings if isinstance(r, PduReading)) or 0.0


async def follow_farm(
    farm: AsicFarmSimulator,
    meter: MeterSimulator,
    commercial: DlmsMeterSimulator | None = None,
    import_kwh: float = FIRST_IMPORT_KWH,
    hidden_kw: float = 0.0,
    racks_kw: float = 0.0,
) -> None:
    """Make the meters follow the farm, integrating energy like real counters; ``hidden_kw``
    is load on the meter that no registered device accounts for, ``racks_kw`` the PDUs'."""
    last = datetime.now(UTC)
    while True:
        now = datetime.now(UTC)
        p_kw = farm.total_power_w() / 1000 * (1 + OVERHEAD) + racks_kw + hidden_kw
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


@dataclass(frozen=True)
class DemoOptions:
    """What ``kuat demo`` was asked for (agent.cli's demo command)."""

    miners: int = 240
    duration_s: float | None = None
    state_dir: Path | None = None
    lang: Lang = "en"
    plain: bool = False
    enforce: bool = False
    hidden_load: bool = False
    base: str = DEFAULT_BASE
    listen: str = DEFAULT_LISTEN


async def run_demo(opts: DemoOptions) -> int:
    console = Console(soft_wrap=True)  # a line a script greps stays one line
    _log_in_astana_time()
    lang = opts.lang
    layout = DemoLayout.of(opts.base, opts.miners)
    tmp = None
    state_dir = opts.state_dir
    if state_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="kuat-demo-")
        state_dir = Path(tmp.name)
    state_dir.mkdir(parents=True, exist_ok=True)

    farm = AsicFarmSimulator(
        opts.miners,
        first_ip=layout.first_miner,
        seed=7,
        web_port=DEMO_WEB_PORT,
        personalities=DEMO_MIX,
    )
    _point_pools(farm)
    meter = MeterSimulator("schneider-pm5560", host=layout.meter)
    commercial = DlmsMeterSimulator("spodes", host=layout.dlms, password=DLMS_PASSWORD)
    snmp = SnmpSimulator(host=layout.pdus)
    console.print(say("starting", lang, miners=opts.miners))
    try:
        await farm.start()
        await meter.start()
        await commercial.start()
        await asyncio.to_thread(snmp.start)
    except Exception as exc:
        console.print(say("cannot_start", lang, error=exc), style="red", markup=False)
        await _stop_all(farm, meter, snmp, commercial)
        return 1
    pdus = [(snmp.host, snmp.port, name) for name in snmp.communities[:4]]
    racks_kw = await racks_load_kw(pdus)
    hidden_kw = farm.total_power_w() / 1000 * HIDDEN_LOAD_SHARE if opts.hidden_load else 0.0
    started = datetime.now(UTC)
    full_kw = farm.total_power_w() / 1000 * (1 + OVERHEAD) + racks_kw + hidden_kw
    site_kwh = seed_history(state_dir, commercial, full_kw, started)
    follower = asyncio.create_task(
        follow_farm(farm, meter, commercial, site_kwh, hidden_kw=hidden_kw, racks_kw=racks_kw)
    )
    await asyncio.sleep(0.6)  # let the meter hold a first value before the agent reads it

    now = datetime.now(UTC)
    hour_start, _ = current_hour_bounds(now)
    used_kwh = full_kw * (now - hour_start).total_seconds() / 3600
    schedule = write_demo_schedule(
        state_dir / "quota.d", "demo-ekibastuz", full_kw, now, used_kwh=used_kwh
    )
    cfg = demo_config(
        state_dir,
        farm.targets,
        pdus,
        (meter.host, meter.port),
        schedule,
        (commercial.host, commercial.port),
        enforce=opts.enforce,
        listen=opts.listen,
        racks_kw=racks_kw,
        margin_kw=round(full_kw * PLAN_MARGIN, 1),
        lang=lang,
    )
    console.print(say("state_dir", lang, path=state_dir), markup=False)
    console.print(
        say(
            "devices",
            lang,
            first=farm.targets[0][0],
            last=farm.targets[-1][0],
            pdus=f"{snmp.host}:{snmp.port}",
            meter=f"{meter.host}:{meter.port}",
            dlms=f"{commercial.host}:{commercial.port}",
        ),
        markup=False,
    )
    mode = say("mode_enforce" if opts.enforce else "mode_dry_run", lang)
    if starts_late(full_kw, now):  # say why the planner waits for the next hour
        _, end = current_hour_bounds(now)
        at = end.astimezone(ASTANA).strftime("%H:%M")
        told = say("story_late", lang, share=round(TIGHT_SHARE * 100), at=at, mode=mode)
    else:
        told = say("story", lang, share=round(TIGHT_SHARE * 100), mode=mode)
    console.print(told, markup=False)
    if hidden_kw:
        console.print(say("hidden_on", lang, kw=hidden_kw), style="red", markup=False)

    cycle = 0
    live: Live | None = None
    use_live = not opts.plain and sys.stdout.isatty()
    if use_live:
        # Log lines would tear the live table apart; they go to a file beside the spool.
        _log_to_file(state_dir / "kuat-demo.log")
        console.print(say("log_file", lang, path=state_dir / "kuat-demo.log"), markup=False)

    story = Story(enforce=opts.enforce, overhead_fraction=OVERHEAD)
    shown: dict[str, object] = {}

    def say_line(line: str) -> None:
        if live is not None:
            live.console.print(line, markup=False)
        else:
            print(line, flush=True)

    def on_cycle(snap: StatusSnapshot) -> None:
        nonlocal cycle
        cycle += 1
        if cycle == 1:  # the dashboard is up (or has failed) by the first cycle: say which
            say_line(_dashboard_line(agent, lang))
        story.note(agent.curtailer.last_plan)
        closed = story.hour_closed(agent.state.quota, lang)
        if closed is not None:
            say_line(closed)
        settled = agent.state.settlement
        if settled is not None and settled is not shown.get("settlement"):
            # the commercial meter's closed hour and its reconciliation, once per verdict
            shown["settlement"] = settled
            say_line(say("settlement", lang, text=render(settled.reason, lang)))
        if live is not None:
            live.update(render_table(snap, agent.state, story, lang, cycle))
        else:
            print(render_line(snap, agent.state, story, lang, cycle), flush=True)

    agent = Agent(cfg, on_cycle=on_cycle)

    async def watch_plans() -> None:
        # The controller plans at every site-meter reading; an enforced plan's actions are
        # done by the next one, which has none. A status cycle would mostly see that empty
        # one, so the plans are looked at more often than the meter is read.
        while True:
            story.note(agent.curtailer.last_plan)
            await asyncio.sleep(PLAN_WATCH_S)

    watcher = asyncio.create_task(watch_plans())
    try:
        if not use_live:
            await agent.run(stop_after_s=opts.duration_s)
        else:
            with Live(console=console, refresh_per_second=4) as live:
                await agent.run(stop_after_s=opts.duration_s)
    finally:
        for task in (follower, watcher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await _stop_all(farm, meter, snmp, commercial)
        if tmp is not None:
            tmp.cleanup()
    # The live table (or the last status line) stays on screen as the summary.
    return 0


def _dashboard_line(agent: Agent, lang: Lang) -> str:
    if agent.dashboard is not None:
        url = agent.dashboard.url + ("" if lang == "en" else f"?lang={lang}")
        return say("dashboard", lang, url=url)
    if agent.cfg.dashboard.address() is None:
        return say("dashboard_off", lang)
    return say("dashboard_failed", lang, listen=agent.cfg.dashboard.listen)


class AstanaTimeFormatter(logging.Formatter):
    """Log lines stamped in Astana time, as everything else the demo shows (a demo runs on
    laptops in any zone; the allocations it is about are sold in Astana hours)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        at = datetime.fromtimestamp(record.created, ASTANA)
        return at.strftime(datefmt or "%Y-%m-%d %H:%M:%S") + f",{int(record.msecs):03d}"


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _log_in_astana_time() -> None:
    for handler in logging.getLogger().handlers:
        handler.setFormatter(AstanaTimeFormatter(LOG_FORMAT))


def _log_to_file(path: Path) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(AstanaTimeFormatter(LOG_FORMAT))
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
