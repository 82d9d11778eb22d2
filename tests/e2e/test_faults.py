"""Faults a user would meet in the field, through the real agent against real servers.

* the agent is ``kill -9``-ed while the database is down: after a restart every spooled point
  arrives exactly once;
* the register broker restarts while the agent runs: the retained inventory is current and a
  persistent subscriber sees every event, without a gap in ``seq``;
* MQTT over TLS with client certificates set in the agent's config, and with a certificate the
  broker does not trust (nothing delivered, the outbox keeps it, the agent keeps running);
* the spool cap: with no database the oldest lines go, counted and logged at ERROR.

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
from kuat.agent.config import parse_config
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.uplink.lineproto import to_ns
from kuat.uplink.spool import Spool
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

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
    except sqlite3.OperationalError:  # tables not created yet
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
                sys.executable, "-m", "kuat.agent.cli", "run", "--config", str(cfg_path), "--once",
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
