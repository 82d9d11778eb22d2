"""`kuat probe` against each simulated device kind, and clean stops on SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.modbus.sim import MeterSimulator
from kuat.collectors.snmp.sim import SnmpSimulator
from kuat.uplink.spool import Spool

ROOT = Path(__file__).resolve().parents[2]

ASIC_FIELDS = [
    "ip", "port", "taken_at", "vendor", "firmware_family", "model", "serial", "mac", "firmware",
    "hashrate_ths", "hashrate_nominal_ths", "power_w", "power_limit_w", "temps_c", "fans_rpm",
    "coolant_in_c", "coolant_out_c", "pools", "uptime_s", "state", "errors", "faults",
]  # fmt: skip
PDU_FIELDS = [
    "host", "vendor", "model", "serial", "taken_at", "inlets", "phases", "breakers", "outlets",
    "total_watts",
]  # fmt: skip
METER_FIELDS = [
    "host", "unit", "profile", "taken_at", "p_kw", "p_kw_phases", "q_kvar", "s_kva", "v_ln",
    "v_ll", "i_a", "pf", "f_hz", "import_kwh", "export_kwh", "demand_kw",
]  # fmt: skip


async def kuat(*args: str, limit_s: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kuat.agent.cli", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def miners() -> AsyncIterator[AsicFarmSimulator]:
    farm = AsicFarmSimulator(4, first_ip="127.41.0.1", personalities=["whatsminer", "luxos"])
    async with farm:
        yield farm


async def test_probe_asic_prints_the_design_fields(miners: AsicFarmSimulator) -> None:
    sim = miners.miners[0]
    code, out, err = await kuat("probe", "asic", f"{sim.ip}:{sim.port}", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert list(data) == ASIC_FIELDS
    assert data["serial"] == sim.serial and data["ip"] == sim.ip
    assert data["hashrate_ths"] == pytest.approx(sim.hashrate_ths, rel=0.05)
    assert data["taken_at"].endswith("Z") and data["state"] == "mining"


async def test_probe_asic_web_port_reaches_each_firmwares_web_api() -> None:
    """--web-port puts every firmware's own web API on that port: the stock web UI's and the
    Braiins OS REST API's identity (serial, MAC), and Vnish's web API (MAC, watts); 0 asks none."""
    web = 18117
    personalities = ["antminer", "braiins", "vnish"]
    farm = AsicFarmSimulator(3, first_ip="127.41.1.1", personalities=personalities, web_port=web)
    async with farm:
        for sim in farm.miners:
            target = f"{sim.ip}:{sim.port}"
            code, out, err = await kuat("probe", "asic", target, "--web-port", str(web), "--json")
            assert code == 0, err
            data = json.loads(out)
            assert data["mac"] == sim.mac.lower(), (sim.personality, data)
            code, out, err = await kuat("probe", "asic", target, "--web-port", "0", "--json")
            assert code == 0, err
            assert json.loads(out)["mac"] is None, sim.personality


async def test_probe_meter_reads_what_the_meter_holds() -> None:
    async with MeterSimulator("eastron-sdm630") as meter:
        meter.set(p_kw=41.5, import_kwh=1234.5, f_hz=50.01)
        code, out, err = await kuat(
            "probe", "meter", f"{meter.host}:{meter.port}", "--profile", "eastron-sdm630", "--json"
        )
    assert code == 0, err
    data = json.loads(out)
    assert list(data) == METER_FIELDS
    assert data["p_kw"] == pytest.approx(41.5) and data["import_kwh"] == pytest.approx(1234.5)
    assert data["profile"] == "eastron-sdm630"


async def test_probe_meter_lists_the_design_profiles() -> None:
    code, out, _ = await kuat("probe", "meter", "--list-profiles")
    assert code == 0
    for name in ("schneider-pm5560", "siemens-pac3200", "eastron-sdm630", "sunspec"):
        assert name in out.split()


async def test_probe_pdu_over_snmp() -> None:
    with SnmpSimulator() as snmp:
        community = "apc_apdu9959eu3"
        code, out, err = await kuat(
            "probe", "pdu", f"{snmp.host}:{snmp.port}", "--community", community, "--json"
        )
    assert code == 0, err
    data = json.loads(out)
    assert list(data) == PDU_FIELDS
    assert data["vendor"] and data["total_watts"] == pytest.approx(1170)


async def test_probe_of_a_silent_pdu_fails_in_one_line() -> None:
    code, out, err = await kuat(
        "probe", "pdu", "127.0.0.1:9", "--community", "x", "--timeout", "1", "--json"
    )
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "127.0.0.1" in err


@pytest.mark.parametrize(
    ("sig", "loop"),
    [(signal.SIGTERM, "asyncio"), (signal.SIGINT, "asyncio"), (signal.SIGTERM, "uvloop")],
)
async def test_run_stops_cleanly_on_signal(
    sig: signal.Signals, loop: str, miners: AsicFarmSimulator, tmp_path: Path
) -> None:
    hosts = ", ".join(f'"{ip}"' for ip, _ in miners.targets)
    cfg = tmp_path / "kuat.toml"
    cfg.write_text(
        f'[site]\nid = "sig"\n[agent]\nstate_dir = "{tmp_path}"\nevent_loop = "{loop}"\n'
        f"[intervals]\nasic = 1\n[[asic.groups]]\nhosts = [{hosts}]\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kuat.agent.cli", "run", "--config", str(cfg), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    # Signal once every miner has served a third poll (so two have been recorded), not after
    # a fixed sleep: on a loaded machine the agent's start-up alone can take several seconds.
    deadline = time.monotonic() + 60
    while min(m.requests["summary"] for m in miners.miners) < 3:
        assert time.monotonic() < deadline, "the agent did not poll every miner three times"
        assert proc.returncode is None, "the agent exited before it was signalled"
        await asyncio.sleep(0.1)
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    # on the event loop the config names ([agent] event_loop), as its start line says
    assert f"on {loop}'s event loop" in err.decode(), err.decode()[-2000:]
    # what the agent polled is on disk, waiting for a database to be configured
    with Spool(tmp_path / "spool.db") as spool:
        assert spool.counts().pending >= 2 * len(miners.targets)
