"""Faults a user would meet in the field, through the real agent against real servers.

* the agent is ``kill -9``-ed while the database is down: after a restart every spooled point
  arrives exactly once;
* the register broker restarts while the agent runs: the retained inventory is current and a
  persistent subscriber sees every event, without a gap in ``seq``;
* MQTT over TLS with client certificates set in the agent's config, and with a certificate the
  broker does not trust (nothing delivered, the outbox keeps it, the agent keeps running);
* the spool cap: with no database the oldest lines go, counted and logged at ERROR;
* (issue 11) a ``kill -9`` during a backlog replay: nothing lost, and with VictoriaMetrics'
  ``-dedup.minScrapeInterval`` nothing stored twice (delivery is at-least-once); a truncated,
  zeroed or header-damaged spool at start (quarantined, the agent polls on, ``seq`` goes on);
  a full disk (a small tmpfs: oldest lines dropped and counted, said once, recovery); the
  register broker unreachable from the start (said once); a schedule source slow, then
  garbage, then 500, then a body with a bad and a good schedule.

Everything listens on 127.0.0.0/8; simulated miners on 127.45.x.y.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import sqlite3
import sys
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kuat.agent.config import parse_config
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.uplink.lineproto import to_ns
from kuat.uplink.spool import Spool
from tests.servers import Mosquitto, TlsFiles, VictoriaMetrics

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]
OWNER_BIN = "230140000045"
PREFIX = "kz/hsc-register/v1"
# firmwares that tell their serial on the API (stock Antminers need the web UI for it)
API_IDENTITY = ("whatsminer", "luxos")


# --- helpers ----------------------------------------------------------------------------


def config_text(state_dir: Path, hosts: Iterable[str], *, site: str, extra: str = "") -> str:
    """An agent config polling ``hosts`` every second; ``extra`` adds [influx]/[mqtt]/[spool]."""
    host_list = ", ".join(f'"{h}"' for h in hosts)
    return f"""
[site]
id = "{site}"
owner_bin = "{OWNER_BIN}"

[agent]
state_dir = "{state_dir}"

[intervals]
asic = 1
quota = 10
inventory = 5
flush = 1

[asic]
timeout_s = 2.0
web_port = 0
[[asic.groups]]
hosts = [{host_list}]
{extra}
"""


def mqtt_section(port: int, tls: TlsFiles | None = None, *, rogue: bool = False) -> str:
    if tls is None:
        return f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntls = false\n'
    cert, key = (
        (tls.rogue_client_cert, tls.rogue_client_key)
        if rogue
        else (tls.client_cert, tls.client_key)
    )
    return (
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntls = true\nca_cert = "{tls.ca_cert}"\n'
        f'client_cert = "{cert}"\nclient_key = "{key}"\n'
    )


def topic(site: str, leaf: str) -> str:
    return f"{PREFIX}/{OWNER_BIN}/{site}/{leaf}"


async def until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``check`` (cheap, non-blocking) until it holds; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.1)


_SPLIT_SPACE = re.compile(r"(?<!\\) ")
_SPLIT_COMMA = re.compile(r"(?<!\\),")


def asic_points(lines: Iterable[str]) -> dict[str, set[int]]:
    """device -> ms timestamps of the ``asic`` points carrying ``hashrate_ths``."""
    out: dict[str, set[int]] = defaultdict(set)
    for line in lines:
        if not line.startswith("asic,"):
            continue
        series, fields, ts = _SPLIT_SPACE.split(line)
        tags = dict(kv.split("=", 1) for kv in _SPLIT_COMMA.split(series)[1:])
        if any(f.startswith("hashrate_ths=") for f in _SPLIT_COMMA.split(fields)):
            out[tags["device"]].add(int(ts) // 1_000_000)
    return dict(out)


def spool_rows(path: Path, sql: str) -> int:
    """A count from a spool another process has open (read-only; WAL allows it)."""
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute(sql).fetchone()[0])
    except sqlite3.DatabaseError:  # tables not created yet, or a damaged file not yet moved
        return 0


class Register:
    """What the register runs: a subscriber with a persistent session (QoS 1, reconnects)."""

    def __init__(self, port: int, site: str, *, tls: TlsFiles | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.inventories: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._topics = [(topic(site, "events"), 1), (topic(site, "inventory"), 1)]
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"register-{site}",
            protocol=mqtt.MQTTv5,
        )
        if tls is not None:
            self.client.tls_set(
                ca_certs=str(tls.ca_cert),
                certfile=str(tls.client_cert),
                keyfile=str(tls.client_key),
            )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self._port = port

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(self._topics)
        self.connected.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self._lock:
            (self.events if msg.topic.endswith("/events") else self.inventories).append(body)

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", self._port, properties=props)
        self.client.loop_start()
        assert self.connected.wait(10), "register subscriber did not connect"

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def seqs(self) -> dict[int, str]:
        """seq -> event id, QoS 1 duplicates folded (by id); a seq with two ids fails."""
        out: dict[int, str] = {}
        with self._lock:
            for e in self.events:
                assert out.setdefault(e["seq"], e["id"]) == e["id"], f"seq {e['seq']} reused"
        return out

    def event_kinds(self) -> dict[str, set[str]]:
        """event type -> ids of the miners it was about."""
        kinds: dict[str, set[str]] = defaultdict(set)
        with self._lock:
            for e in self.events:
                kinds[e["type"]].add(e["miner_id"])
        return dict(kinds)

    def latest_inventory(self) -> dict[str, Any] | None:
        with self._lock:
            return self.inventories[-1] if self.inventories else None


def retained(
    port: int, name: str, *, tls: TlsFiles | None = None, timeout_s: float = 10.0
) -> dict[str, Any] | None:
    """The retained message of ``name`` as a new subscriber sees it, or None."""
    got: list[bytes] = []
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if tls is not None:
        client.tls_set(
            ca_certs=str(tls.ca_cert), certfile=str(tls.client_cert), keyfile=str(tls.client_key)
        )
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(name, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        done.wait(timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return json.loads(got[0]) if got else None


async def start_agent_process(cfg_path: Path, log_path: Path) -> asyncio.subprocess.Process:
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kuat.agent.cli", "run", "--config", str(cfg_path), cwd=ROOT,
            stdout=log, stderr=log,
        )  # fmt: skip


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    """A broker of the test's own: the test stops and restarts it."""
    server = Mosquitto(tmp_path / "mosquitto")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


# --- 1. kill -9 -------------------------------------------------------------------------


async def test_kill_9_while_the_database_is_down_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    miners = 20
    vm = VictoriaMetrics(tmp_path / "vm")  # its port is chosen, nothing listens yet
    state = tmp_path / "state"
    cfg_path = tmp_path / "kuat.toml"
    cfg_path.write_text(
        config_text(
            state,
            ["127.45.1.1-127.45.1.20"],
            site="faults-kill",
            extra=f'[influx]\nurl = "{vm.url}"\norg = "kuat"\nbucket = "kuat"\n',
        )
    )
    spool_path = state / "spool.db"
    count_asic = "SELECT COUNT(*) FROM telemetry WHERE line LIKE 'asic,%'"
    async with AsicFarmSimulator(miners, first_ip="127.45.1.1", seed=11):
        proc = await start_agent_process(cfg_path, tmp_path / "agent-1.log")
        try:
            await until(
                lambda: spool_rows(spool_path, count_asic) >= 3 * miners,
                30,
                "three cycles of miner points in the spool",
            )
            await asyncio.sleep(0.4)  # somewhere inside the next cycle
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert "telemetry not delivered" in (tmp_path / "agent-1.log").read_text()

        with Spool(spool_path) as spool:
            pending = spool.counts().pending
            spooled = asic_points(spool.take(pending + 1).lines)
        assert len(spooled) == miners
        assert all(len(ts) >= 3 for ts in spooled.values()), spooled

        await asyncio.to_thread(vm.start)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kuat.agent.cli", "run", "--config", str(cfg_path),
                "--once", "--exit-zero",
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            stored = {
                s["metric"]["device"]: s["timestamps"]
                for s in await asyncio.to_thread(vm.export, '{__name__="asic_hashrate_ths"}')
            }
        finally:
            await asyncio.to_thread(vm.stop)

    assert set(stored) == set(spooled)
    for device, timestamps in stored.items():
        assert len(timestamps) == len(set(timestamps)), f"{device}: a point written twice"
        missing = spooled[device] - set(timestamps)
        assert not missing, f"{device}: spooled points lost: {sorted(missing)}"
        assert len(set(timestamps) - spooled[device]) <= 1  # only the --once poll is new
    with Spool(spool_path) as spool:
        counts = spool.counts()
    assert counts.pending == 0 and counts.dead == 0


# --- 2. broker restart ------------------------------------------------------------------


async def test_broker_restart_keeps_inventory_current_and_events_gapless(
    tmp_path: Path, broker: Mosquitto
) -> None:
    site = "faults-restart"
    first, extra_miners = 12, 2
    cfg = parse_config(
        config_text(
            tmp_path,
            ["127.45.2.1-127.45.2.16"],
            site=site,
            extra=mqtt_section(broker.port),
        )
    )
    register = Register(broker.port, site)
    await asyncio.to_thread(register.start)
    farm = AsicFarmSimulator(first, first_ip="127.45.2.1", seed=21, personalities=API_IDENTITY)
    # two miners installed while the broker is down (different seed: different serials)
    newcomers = AsicFarmSimulator(
        extra_miners, first_ip="127.45.2.13", seed=22, personalities=API_IDENTITY
    )
    await farm.start()
    agent = Agent(cfg)
    task = asyncio.create_task(agent.run())
    try:
        await until(lambda: len(register.seqs()) == first, 20, f"{first} 'added' events")
        # the snapshot is its own message: it may land a moment after the last event
        await until(lambda: register.latest_inventory() is not None, 10, "the inventory")
        inv = register.latest_inventory()
        assert inv is not None and inv["count"] == first and inv["seq"] == first

        await asyncio.to_thread(broker.stop)
        repooled = farm.miners[:2]
        for m in repooled:
            m.pools[0]["url"] = "stratum+tcp://btc.viabtc.io:3333"
        await newcomers.start()
        expected_seq = first + len(repooled) + extra_miners
        spool = agent.uplinks.spool
        await until(
            lambda: spool.last_seq(f"{OWNER_BIN}/{site}") == expected_seq,
            15,
            "the changes queued in the outbox while the broker is down",
        )
        assert not task.done()
        await asyncio.to_thread(broker.start)

        await until(
            lambda: (
                len(register.seqs()) == expected_seq
                and (register.latest_inventory() or {}).get("seq") == expected_seq
            ),
            30,
            "events and inventory after the broker restart",
        )
        await until(lambda: spool.counts().outbox == 0, 10, "an empty outbox")
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 15)
        await asyncio.to_thread(register.stop)
        await newcomers.stop()
        await farm.stop()

    seqs = register.seqs()
    assert sorted(seqs) == list(range(1, expected_seq + 1)), "a gap in the events' seq"
    kinds = register.event_kinds()
    assert kinds.get("changed") == {m.serial for m in repooled}
    assert kinds.get("added") == {m.serial for m in farm.miners + newcomers.miners}
    assert set(kinds) == {"added", "changed"}

    inventory = await asyncio.to_thread(retained, broker.port, topic(site, "inventory"))
    assert inventory is not None
    assert inventory["count"] == first + extra_miners
    assert inventory["seq"] == expected_seq
    pools = {m["id"]: m["pool"] for m in inventory["miners"]}
    assert all(pools[m.serial] == "stratum+tcp://btc.viabtc.io:3333" for m in repooled)


# --- 3. TLS with client certificates ----------------------------------------------------


async def test_mqtt_tls_with_client_certificate_from_the_config(
    tmp_path: Path, mosquitto_tls: Mosquitto, tls_certs: TlsFiles
) -> None:
    site = "faults-tls"
    assert mosquitto_tls.tls_port is not None
    cfg = parse_config(
        config_text(
            tmp_path,
            ["127.45.3.1-127.45.3.4"],
            site=site,
            extra=mqtt_section(mosquitto_tls.tls_port, tls_certs),
        )
    )
    async with AsicFarmSimulator(
        4, first_ip="127.45.3.1", seed=31, personalities=API_IDENTITY
    ) as farm:
        agent = Agent(cfg)
        task = asyncio.create_task(agent.run())
        try:
            await until(lambda: agent.uplinks.register.connected, 10, "a TLS connection")
            await until(
                lambda: (
                    agent.state.cycles.get("inventory", 0) >= 2
                    and agent.uplinks.spool.counts().outbox == 0
                ),
                20,
                "the inventory acknowledged over TLS",
            )
        finally:
            agent.request_stop()
            await asyncio.wait_for(task, 15)
    inventory = await asyncio.to_thread(
        retained, mosquitto_tls.tls_port, topic(site, "inventory"), tls=tls_certs
    )
    assert inventory is not None
    assert {m["id"] for m in inventory["miners"]} == {m.serial for m in farm.miners}


async def test_mqtt_tls_rogue_client_certificate_delivers_nothing_and_keeps_the_outbox(
    tmp_path: Path, mosquitto_tls: Mosquitto, tls_certs: TlsFiles
) -> None:
    site = "faults-rogue"
    port = mosquitto_tls.tls_port
    assert port is not None
    state = tmp_path / "state"
    cfg_path = tmp_path / "kuat.toml"
    cfg_path.write_text(
        config_text(
            state,
            ["127.45.3.11-127.45.3.14"],
            site=site,
            extra=mqtt_section(port, tls_certs, rogue=True),
        )
    )
    log_path = tmp_path / "agent.log"
    async with AsicFarmSimulator(4, first_ip="127.45.3.11", seed=32):
        proc = await start_agent_process(cfg_path, log_path)
        try:
            await until(
                lambda: spool_rows(state / "spool.db", "SELECT COUNT(*) FROM outbox") > 0,
                20,
                "the inventory queued in the outbox",
            )
            await asyncio.sleep(2)  # a few refused connection attempts
            assert proc.returncode is None, log_path.read_text()
            seen = await asyncio.to_thread(
                retained, port, topic(site, "#"), tls=tls_certs, timeout_s=1.5
            )
            assert seen is None, f"a rogue client got a message through: {seen}"
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = log_path.read_text()
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    with Spool(state / "spool.db") as spool:
        counts = spool.counts()
    assert counts.outbox > 0 and counts.outbox_dead == 0


# --- 4. spool cap -----------------------------------------------------------------------


async def test_spool_cap_drops_the_oldest_lines_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    miners, cap = 250, 1000
    cfg = parse_config(
        config_text(
            tmp_path,
            ["127.45.4.1-127.45.4.250"],
            site="faults-cap",
            extra=f"[spool]\nmax_rows = {cap}\n",
        )
    )
    assert cfg.influx is None
    caplog.set_level(logging.WARNING)
    async with AsicFarmSimulator(miners, first_ip="127.45.4.1", seed=41):
        agent = Agent(cfg)
        spool = agent.uplinks.spool
        task = asyncio.create_task(agent.run())
        try:
            await until(lambda: spool.counts().dropped > 0, 30, "the cap to drop lines")
            await until(
                lambda: agent.state.cycles.get("asic", 0) >= 6, 15, "another cycle over the cap"
            )
        finally:
            agent.request_stop()
            await asyncio.wait_for(task, 15)
            latest = {
                r.device_id: to_ns(r.taken_at) // 1_000_000 for r in agent.state.asic_readings()
            }

    with Spool(tmp_path / "spool.db", max_rows=cap) as spool:
        counts = spool.counts()
        batch = spool.take(2 * cap)
    assert counts.pending == cap == len(batch)
    total = max(batch.ids)  # AUTOINCREMENT: every line ever put
    assert counts.dropped == total - cap > 0
    # exactly the newest `cap` lines are left: the oldest went
    assert list(batch.ids) == list(range(total - cap + 1, total + 1))
    points = asic_points(batch.lines)
    assert len(latest) == miners
    assert all(ts in points.get(device, ()) for device, ts in latest.items())
    assert sum(len(ts) for ts in points.values()) < agent.state.cycles["asic"] * miners

    errors = [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR and r.name == "kuat.uplink" and "dropped" in r.getMessage()
    ]
    assert errors, "no ERROR log line about dropped telemetry"
    assert "max_rows" in errors[0].getMessage()


# --- 5. issue 11: kill -9 during a backlog replay ---------------------------------------

REPLAY_DEVICES = 200


def backlog(spool_path: Path, points_per_device: int) -> dict[str, set[int]]:
    """Spool a backlog as an outage would leave it; device -> ms timestamps."""
    base_ns = 1_764_000_000_000_000_000  # 2025-11-24, inside VictoriaMetrics' retention
    spooled: dict[str, set[int]] = defaultdict(set)
    with Spool(spool_path) as spool:
        for t in range(points_per_device):
            lines = []
            for d in range(REPLAY_DEVICES):
                ts = base_ns + t * 1_000_000_000
                lines.append(
                    f"asic,site=faults-replay,device=d{d} hashrate_ths={100 + t % 7}.5 {ts}"
                )
                spooled[f"d{d}"].add(ts // 1_000_000)
            spool.put_lines(lines)
    return dict(spooled)


async def test_kill_9_during_a_backlog_replay_loses_nothing_and_dedup_makes_it_exact(
    tmp_path: Path,
) -> None:
    """Acks are written while the next batch is on the wire, so a kill -9 mid-replay sends
    some lines again after the restart: delivery is at-least-once. With the server setting the
    README names (VictoriaMetrics ``-dedup.minScrapeInterval``), what is stored is exact."""
    vm = VictoriaMetrics(tmp_path / "vm", None, "-dedup.minScrapeInterval=1ms")
    state = tmp_path / "state"
    state.mkdir()
    spool_path = state / "spool.db"
    spooled = backlog(spool_path, 1500)  # 300,000 lines: several seconds of replay
    total = sum(len(ts) for ts in spooled.values())
    cfg_path = tmp_path / "kuat.toml"
    cfg_path.write_text(
        config_text(
            state,
            ["127.45.5.1"],  # nobody there: the test is about the backlog
            site="faults-replay",
            extra=f'[influx]\nurl = "{vm.url}"\norg = "kuat"\nbucket = "kuat"\n',
        )
    )
    pending = "SELECT COUNT(*) FROM telemetry"
    await asyncio.to_thread(vm.start)
    try:
        proc = await start_agent_process(cfg_path, tmp_path / "agent-1.log")
        try:
            await until(
                lambda: spool_rows(spool_path, pending) < total * 0.8, 60, "the replay to start"
            )
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        left = spool_rows(spool_path, pending)
        assert 0 < left < total, "killed before or after the replay: nothing was tested"

        for _ in range(10):  # each --once flush sends up to 100,000 lines
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kuat.agent.cli", "run", "--config", str(cfg_path),
                "--once", "--exit-zero",
                cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, err.decode()
            if spool_rows(spool_path, pending) == 0:
                break
        assert spool_rows(spool_path, pending) == 0
        stored = {
            s["metric"]["device"]: s["timestamps"]
            for s in await asyncio.to_thread(
                vm.export, '{__name__="asic_hashrate_ths", site="faults-replay"}'
            )
        }
    finally:
        await asyncio.to_thread(vm.stop)
    assert set(stored) == set(spooled)
    for device, timestamps in stored.items():
        assert set(timestamps) == spooled[device], f"{device}: points lost"
        assert len(timestamps) == len(spooled[device]), f"{device}: a point stored twice"


# --- 6. issue 11: a damaged spool at start ------------------------------------------------


def _truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _zero(path: Path) -> None:
    path.write_bytes(b"")


def _header(path: Path) -> None:
    with path.open("r+b") as f:
        f.write(b"\xa5" * 100)


@pytest.mark.parametrize(
    "damage", [_truncate, _zero, _header], ids=["truncated", "zeroed", "header-damaged"]
)
async def test_a_damaged_spool_at_start_is_quarantined_and_the_agent_polls_on(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    spool_path = state / "spool.db"
    backlog(spool_path, 100)
    with Spool(spool_path) as spool:
        last_seq = spool.outbox_put_sequenced(
            f"{OWNER_BIN}/faults-damaged", "x/events", [{"n": i} for i in range(5)]
        )[-1]
        spool.shared_connection()[0].execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damage(spool_path)
    cfg_path = tmp_path / "kuat.toml"
    cfg_path.write_text(config_text(state, ["127.45.6.1-127.45.6.4"], site="faults-damaged"))
    log_path = tmp_path / "agent.log"
    asic = "SELECT COUNT(*) FROM telemetry WHERE line LIKE 'asic,%site=faults-damaged%'"
    async with AsicFarmSimulator(4, first_ip="127.45.6.1", seed=61, personalities=API_IDENTITY):
        proc = await start_agent_process(cfg_path, log_path)
        try:
            await until(
                lambda: proc.returncode is None and spool_rows(spool_path, asic) >= 8,
                30,
                "two polling cycles into the fresh spool",
            )
            await until(
                lambda: spool_rows(spool_path, "SELECT COUNT(*) FROM outbox") > 0,
                20,
                "the inventory queued in the fresh spool",
            )
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = log_path.read_text()
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    (moved,) = state.glob("spool.db.damaged-*")
    assert f"spool {spool_path} is damaged" in text and str(moved) in text
    with Spool(spool_path) as spool:
        assert spool.counts().quarantined == 1
        # the register's seq went on from beyond anything the lost spool may have issued
        assert spool.last_seq(f"{OWNER_BIN}/faults-damaged") > last_seq


# --- 7. issue 11: a full disk -----------------------------------------------------------


async def test_a_full_disk_drops_the_oldest_lines_says_so_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.tmpfs import fill, small_tmpfs

    miners = 200
    with small_tmpfs(tmp_path / "state", "32m") as state:
        cfg = parse_config(
            config_text(state, ["127.45.7.1-127.45.7.200"], site="faults-full", extra="")
        )
        caplog.set_level(logging.INFO)
        async with AsicFarmSimulator(miners, first_ip="127.45.7.1", seed=71):
            agent = Agent(cfg)
            spool = agent.uplinks.spool
            task = asyncio.create_task(agent.run())
            try:
                await until(lambda: spool.counts().pending >= miners, 30, "a first cycle spooled")
                filler = fill(state, leave_bytes=1 << 20)
                await until(lambda: spool.disk_full, 60, "the disk to fill")
                cycles = agent.state.cycles.get("asic", 0)
                await until(lambda: spool.counts().dropped > 0, 30, "the oldest lines dropped")
                await until(
                    lambda: agent.state.cycles.get("asic", 0) >= cycles + 3,
                    30,
                    "polling to go on on a full disk",
                )
                assert not task.done()
                newest = max(spool.take(spool.counts().pending + 10).ids)
                filler.unlink()
                await until(lambda: not spool.disk_full, 30, "space to come back")
                await until(
                    lambda: max(spool.take(spool.counts().pending + 10).ids) > newest + miners,
                    30,
                    "new lines spooled after recovery",
                )
            finally:
                agent.request_stop()
                await asyncio.wait_for(task, 20)
    full = [r for r in caplog.records if "no space left on the disk" in r.getMessage()]
    assert len(full) == 1 and full[0].levelno == logging.ERROR
    assert sum("space is available again" in r.getMessage() for r in caplog.records) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r is not full[0]], [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
    ]


# --- 8. issue 11: the register broker unreachable from the start ---------------------------


async def test_a_broker_unreachable_from_the_start_is_logged_once(tmp_path: Path) -> None:
    from tests.servers import free_port

    port = free_port()
    state = tmp_path / "state"
    cfg_path = tmp_path / "kuat.toml"
    cfg_path.write_text(
        config_text(state, ["127.45.8.1-127.45.8.2"], site="faults-nobroker",
                    extra=mqtt_section(port))
    )  # fmt: skip
    log_path = tmp_path / "agent.log"
    async with AsicFarmSimulator(2, first_ip="127.45.8.1", seed=81):
        proc = await start_agent_process(cfg_path, log_path)
        try:
            await until(
                lambda: spool_rows(state / "spool.db", "SELECT COUNT(*) FROM outbox") > 0,
                20,
                "the inventory waiting in the outbox",
            )
            await asyncio.sleep(3)  # several reconnect attempts
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = log_path.read_text()
    assert proc.returncode == 0, text
    lines = [ln for ln in text.splitlines() if f"127.0.0.1:{port} unreachable" in ln]
    assert len(lines) == 1 and "WARNING" in lines[0] and "never connected" in lines[0], text


# --- 9. issue 11: a schedule source slow, then garbage, then 500 ---------------------------


async def test_a_schedule_source_slow_garbage_and_500_in_turn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.uplink.test_http_source import HttpServer, Reply, script

    good = {"site": "faults-http", "date": "2026-11-25", "version": 1, "mwh": [1.0] * 24}
    bad = {**good, "source": "bilateral", "mwh": [10**400] + [1.0] * 23}
    both = json.dumps({"schedules": [bad, good]}).encode()
    replies = script(
        Reply(200, {"Content-Type": "text/csv"}, b"hour,mwh\n", delay_s=5.0),  # slow
        Reply(200, {"Content-Type": "text/csv"}, b'\x00garbage;;\n"unterminated'),
        Reply(500),
        Reply(200, {"Content-Type": "application/json", "ETag": '"2"'}, both),
    )
    async with HttpServer(replies) as srv:
        cfg = parse_config(
            config_text(tmp_path, ["127.45.9.1"], site="faults-http")
            + f'[quota.http]\nurl = "{srv.url}/schedule"\ntimeout_s = 1\n'
        )
        agent = Agent(cfg)
        assert agent.quota_source is not None
        agent.quota_source.attempts = 1  # one request per fetch: the script advances each time
        caplog.set_level(logging.INFO)
        try:
            for _ in range(4):
                await agent.fetch_schedules()
            assert len(agent.quota.book) == 1  # the good document of the last body
            await agent.fetch_schedules()  # 304 now: the good one stays
        finally:
            await agent._stop_quota_sources()
            await agent.uplinks.stop()
    text = caplog.text
    assert "timed out" in text
    assert f"allocation {srv.url}/schedule refused" in text  # the garbage, named
    assert "HTTP 500" in text
    assert f"allocation {srv.url}/schedule [1/2] refused" in text
    # (the test server's own cancelled slow reply may log through asyncio; kuat logs none)
    assert not [r for r in caplog.records if r.name.startswith("kuat") and r.exc_info]
    assert "job quota" not in text
    (held,) = list(agent.quota.book)
    assert held.source.value == "grid"
