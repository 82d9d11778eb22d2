"""End to end: the real agent against the simulated farm, real VictoriaMetrics and Mosquitto.

What a user would check after installing kuat: the miners' and the meter's points are in the
database (read back), the register holds the retained inventory (read back by a subscriber),
and a database outage loses and duplicates nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from kuat.agent.config import KuatConfig, parse_config
from kuat.agent.demo_quota import write_demo_schedule
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.modbus.sim import MeterSimulator
from kuat.collectors.snmp.sim import SnmpSimulator
from kuat.uplink.spool import Spool
from tests.e2e.telemetry_count import asic_points, capture_asic_points, series_by_device
from tests.servers import Mosquitto, VictoriaMetrics

pytestmark = pytest.mark.servers

MINERS = 30
SITE = "e2e-site"
OWNER_BIN = "230140000077"
METER_KW = 612.5


@dataclass
class Farm:
    asics: AsicFarmSimulator
    meter: MeterSimulator
    snmp: SnmpSimulator


@pytest.fixture(scope="module")
def snmp() -> Iterator[SnmpSimulator]:
    sim = SnmpSimulator()
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
async def farm(snmp: SnmpSimulator) -> AsyncIterator[Farm]:
    asics = AsicFarmSimulator(MINERS, first_ip="127.40.0.1", seed=3)
    meter = MeterSimulator("schneider-pm5560")
    await asics.start()
    await meter.start()
    meter.set(p_kw=METER_KW, import_kwh=50_000.0, f_hz=50.0, pf=0.98)
    try:
        yield Farm(asics, meter, snmp)
    finally:
        await asics.stop()
        await meter.stop()


def config_text(farm: Farm, state_dir: Path, vm: VictoriaMetrics, broker: Mosquitto) -> str:
    hosts = ", ".join(f'"{ip}"' for ip, _ in farm.asics.targets)
    schedules = write_demo_schedule(state_dir / "quota.d", SITE, METER_KW, datetime.now(UTC))
    pdus = "\n".join(
        f'[[pdu]]\nname = "{c}"\nhost = "{farm.snmp.host}"\nport = {farm.snmp.port}\n'
        f'community = "{c}"\n'
        for c in farm.snmp.communities
    )
    return f"""
[site]
id = "{SITE}"
owner_bin = "{OWNER_BIN}"
data_centre_registered = true
data_centre_id = "DC-E2E"

[agent]
state_dir = "{state_dir}"

[intervals]
asic = 2
pdu = 2
meter = 1
quota = 1
inventory = 5
flush = 1

[asic]
timeout_s = 2.0
[[asic.groups]]
hosts = [{hosts}]
location = {{ hall = "A", rack = "3" }}

{pdus}
[[meter]]
name = "main"
host = "{farm.meter.host}"
port = {farm.meter.port}
profile = "schneider-pm5560"
role = "site"

[quota]
schedules = "{schedules}"

[grid]
tc_number = "TU-1"
voltage_kv = 35
permitted_mw = 2
connected_on = 2024-06-01

[compliance]
accredited_pools = ["btc.f2pool.com"]

[influx]
url = "{vm.url}"
org = "kuat"
bucket = "kuat"

[mqtt]
host = "127.0.0.1"
port = {broker.port}
tls = false
"""


def retained(broker: Mosquitto, topic: str, timeout_s: float = 10.0) -> dict:
    got: dict[str, bytes] = {}
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got["payload"] = msg.payload
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert done.wait(timeout_s), f"no retained message on {topic}"
    finally:
        client.loop_stop()
        client.disconnect()
    return json.loads(got["payload"])


async def run_for(agent: Agent, seconds: float) -> None:
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(seconds)
    agent.request_stop()
    await asyncio.wait_for(task, 15)


async def test_agent_cycles_land_in_victoria_and_register(
    farm: Farm, tmp_path: Path, victoria_metrics: VictoriaMetrics, mosquitto: Mosquitto
) -> None:
    victoria_metrics.delete_all()
    cfg: KuatConfig = parse_config(config_text(farm, tmp_path, victoria_metrics, mosquitto))
    agent = Agent(cfg)
    sent = capture_asic_points(agent)
    await run_for(agent, 7)

    assert agent.state.cycles["asic"] >= 3
    hashrate = series_by_device(victoria_metrics, "asic_hashrate_ths")
    expected_devices = {r.device_id for r in agent.state.asic_readings()}
    assert len(expected_devices) == MINERS
    assert set(hashrate) == expected_devices
    for device, series in hashrate.items():
        # every point the agent produced is stored, exactly once
        assert sorted(series["timestamps"]) == sorted(sent[device]), device
        assert len(sent[device]) >= 2, device
        assert all(30 < v < 400 for v in series["values"]), device

    meter = vm_values(victoria_metrics, "meter_p_kw")
    assert meter and all(v == pytest.approx(METER_KW) for v in meter)
    assert vm_values(victoria_metrics, "quota_status_code")
    items = {
        s["metric"]["item"]: s["values"][-1]
        for s in victoria_metrics.export('{__name__="compliance_status_code"}')
    }
    assert items == {"5": 0, "7": 0}  # both checks pass: 35 kV / 2 MW, pools accredited
    pdu_total = victoria_metrics.export('{__name__="pdu_total_w"}')
    assert len(pdu_total) == len(farm.snmp.communities)

    inventory = retained(mosquitto, f"kz/hsc-register/v1/{OWNER_BIN}/{SITE}/inventory")
    assert len(inventory["miners"]) == MINERS
    assert {m["id"] for m in inventory["miners"]} == expected_devices
    # what the register needs of each miner: where it is and what it is
    assert {m["ip"] for m in inventory["miners"]} == {ip for ip, _ in farm.asics.targets}
    assert all(m["manufacturer"] and m["model"] for m in inventory["miners"])
    assert {m["location"]["hall"] for m in inventory["miners"]} == {"A"}
    assert inventory["owner"]["bin"] == OWNER_BIN
    assert inventory["data_centre"] == {
        "id": "DC-E2E", "address": "", "grid_zone": "north-south", "registered": True
    }  # fmt: skip
    status = retained(mosquitto, f"kz/hsc-register/v1/{OWNER_BIN}/{SITE}/status")
    assert status["state"] == "offline"  # clean shutdown says so


def vm_values(vm: VictoriaMetrics, metric: str) -> list[float]:
    return [v for s in vm.export(f'{{__name__="{metric}"}}') for v in s["values"]]


async def test_database_outage_loses_and_duplicates_nothing(
    farm: Farm, tmp_path: Path, victoria_metrics: VictoriaMetrics, mosquitto: Mosquitto
) -> None:
    victoria_metrics.delete_all()
    cfg = parse_config(config_text(farm, tmp_path, victoria_metrics, mosquitto))
    agent = Agent(cfg)
    sent = capture_asic_points(agent)
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(2.5)
    await asyncio.to_thread(victoria_metrics.stop)
    await asyncio.sleep(4.5)  # at least two asic cycles and several flushes fail
    await asyncio.to_thread(victoria_metrics.start)
    await asyncio.sleep(3)
    # the running agent delivers the backlog itself once the database is back (its retry
    # back-off may outlast a fixed wait; the final flush at stop is bounded and not the point)
    for _ in range(60):  # 30 s at most
        if agent.uplinks.pending()[0] == 0:
            break
        await asyncio.sleep(0.5)
    agent.request_stop()
    await asyncio.wait_for(task, 15)

    assert agent.state.cycles["asic"] >= 4
    # The final flush at stop is one bounded attempt: a cycle recorded just before it may
    # still wait on disk for the next start, which is not a loss.
    with contextlib.closing(Spool(tmp_path / "spool.db")) as spool:
        waiting: dict[str, list[int]] = {}
        for device, ms in asic_points(spool.take(1_000_000).lines):
            waiting.setdefault(device, []).append(ms)
    hashrate = series_by_device(victoria_metrics, "asic_hashrate_ths")
    assert len(hashrate) == MINERS
    for device, series in hashrate.items():
        # points from before, during and after the outage: each stored once or still spooled
        stored = series["timestamps"]
        assert len(stored) == len(set(stored)), device
        assert sorted([*stored, *waiting.get(device, [])]) == sorted(sent[device]), device
        assert len(sent[device]) >= 4, device
    # the outage's backlog itself was delivered by the running agent: at most the last cycle
    # recorded waits
    assert all(len(points) <= 1 for points in waiting.values()), waiting


async def test_kuat_run_once_from_the_command_line(
    farm: Farm, tmp_path: Path, victoria_metrics: VictoriaMetrics, mosquitto: Mosquitto
) -> None:
    cfg_path = tmp_path / "kuat.toml"
    cfg_path.write_text(config_text(farm, tmp_path / "state", victoria_metrics, mosquitto))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kuat.agent.cli",
        "run",
        "--config",
        str(cfg_path),
        "--once",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode() + err.decode()
    text = out.decode()
    assert f"Miners up: {MINERS} / {MINERS}" in text
    assert f"Metered power: {METER_KW:,.1f} kW" in text


async def test_run_once_test_prints_lines_and_writes_nothing(
    farm: Farm, tmp_path: Path, victoria_metrics: VictoriaMetrics, mosquitto: Mosquitto
) -> None:
    # `kuat run --once --test` (like `telegraf --test`): the operator sees every line the agent
    # would send, and neither the state directory nor the servers get anything.
    state = tmp_path / "state"
    cfg_path = tmp_path / "kuat.toml"
    cfg_path.write_text(config_text(farm, state, victoria_metrics, mosquitto))
    before = sorted(p.name for p in state.iterdir())  # the schedules the test wrote, nothing else
    samples = await asyncio.to_thread(victoria_metrics.export, '{__name__=~"asic_.*"}')
    stored = sorted(json.dumps(s, sort_keys=True) for s in samples)
    args = ["run", "--config", str(cfg_path), "--once", "--test"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kuat.agent.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    devices = {ln.split("device=", 1)[1].split(",", 1)[0] for ln in lines if ln.startswith("asic,")}
    assert len(devices) == MINERS, lines[:5]
    assert any(ln.startswith("meter,") for ln in lines)
    assert f"Miners up: {MINERS} / {MINERS}" in err.decode()
    assert sorted(p.name for p in state.iterdir()) == before
    # the shared server holds what earlier tests wrote, and nothing more
    samples = await asyncio.to_thread(victoria_metrics.export, '{__name__=~"asic_.*"}')
    assert sorted(json.dumps(s, sort_keys=True) for s in samples) == stored


async def test_a_second_database_down_holds_nothing_back_then_gets_its_share(
    farm: Farm, tmp_path: Path, victoria_metrics: VictoriaMetrics, mosquitto: Mosquitto
) -> None:
    # The energy company's database beside the farm's own, receiving only the meter and the
    # quota: when the agent starts, it accepts connections and never answers (the worst kind
    # of slow). The farm's own database gets every cycle meanwhile; when the second comes up
    # it receives its backlog, and nothing else.
    victoria_metrics.delete_all()
    silent = socket.create_server(("127.0.0.1", 0))
    silent.settimeout(0.2)
    held: list[socket.socket] = []

    def hold() -> None:
        while silent.fileno() != -1:
            with contextlib.suppress(OSError):
                held.append(silent.accept()[0])

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    energo = VictoriaMetrics(tmp_path / "energo-vm", silent.getsockname()[1])
    text = config_text(farm, tmp_path, victoria_metrics, mosquitto) + (
        f'[[telemetry]]\nname = "energo"\nurl = "{energo.url}"\ntimeout_s = 30\n'
        'measurements = ["meter", "quota"]\n'
    )
    agent = Agent(parse_config(text))
    sent = capture_asic_points(agent)
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.sleep(5)
        # the farm's database is current while the other is unreachable
        assert agent.uplinks.pending()[0] < 200
        stored = series_by_device(victoria_metrics, "asic_hashrate_ths")
        assert len(stored) == MINERS and all(len(s["timestamps"]) >= 2 for s in stored.values())
        (energo_target,) = agent.uplinks.targets
        assert energo_target.spool.counts().pending > 0  # kept for it, not lost
        silent.close()
        holder.join()
        for conn in held:
            conn.close()
        await asyncio.to_thread(energo.start)
        for _ in range(60):
            if energo_target.spool.counts().pending == 0:
                break
            await asyncio.sleep(0.5)
        agent.request_stop()
        await asyncio.wait_for(task, 15)
        ours = {tuple(s["timestamps"]) for s in victoria_metrics.export('{__name__="meter_p_kw"}')}
        theirs = energo.export('{__name__="meter_p_kw"}')
        # every meter point the farm stored, the energy company stored too: backlog included
        assert {tuple(s["timestamps"]) for s in theirs} == ours
        assert energo.export('{__name__="quota_status_code"}')
        assert not energo.export('{__name__=~"asic_.*|pdu_.*"}')  # not theirs
        assert sum(len(v) for v in sent.values()) >= 2 * MINERS
    finally:
        if not task.done():
            agent.request_stop()
            await asyncio.wait_for(task, 15)
        energo.stop()
