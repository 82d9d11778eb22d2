"""Poller against the real pymodbus 3.16 server (the simulator): no mocks."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from kuat.collectors.modbus import MeterPoller, load_profile
from kuat.collectors.modbus.decode import RegType, WordOrder, decode
from kuat.collectors.modbus.profile import TRIPLE_FIELDS
from kuat.collectors.modbus.sim import MeterSimulator
from kuat.collectors.readings import DeviceError, DeviceKind, MeterReading, to_jsonable

from .conftest import FIXTURES

CASES = tomllib.loads((FIXTURES / "roundtrip.toml").read_text(encoding="utf-8"))
LOGGER = "kuat.collectors.modbus.collector"


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_nan_to_none(v) for v in value)
    return None if isinstance(value, float) and math.isnan(value) else value


@pytest.fixture
async def sim() -> AsyncIterator[MeterSimulator]:
    async with MeterSimulator("schneider-pm5560") as s:
        yield s


@pytest.mark.parametrize("case", CASES["case"], ids=lambda c: c["profile"])
async def test_values_come_back_in_reading_units(poller: MeterPoller, case: dict) -> None:
    values = {k: _nan_to_none(v) for k, v in case["set"].items()}
    prof = load_profile(case["profile"])
    mapped = {(r.field, r.phase) for r in prof.registers}
    async with MeterSimulator(case["profile"]) as sim:
        sim.set(**values)
        reading = await poller.poll(sim.host, sim.port, profile=case["profile"])
    assert isinstance(reading, MeterReading), reading
    assert reading.profile == case["profile"]
    for name, want in values.items():
        got = getattr(reading, name)
        triple = name in TRIPLE_FIELDS
        wants = want if triple else (want,)
        gots = got if triple else (got,)
        for phase, (w, g) in enumerate(zip(wants, gots, strict=True), start=1):
            if (name, phase if triple else None) not in mapped or w is None:
                assert g is None, f"{name}[{phase}] should be null"
            else:
                assert g == pytest.approx(w, rel=case["rel"], abs=1e-9), f"{name}[{phase}]"


@pytest.mark.parametrize("row", CASES["wire"], ids=lambda r: f"{r['profile']}@{r['addr']}")
async def test_wire_values_are_in_the_meters_own_units(row: dict) -> None:
    """Read the simulator with a bare client: guards against sim and poller sharing a bug."""
    reg_type = RegType(row["type"])
    count = {"INT16": 1, "UINT16": 1, "INT32": 2, "UINT32": 2, "FLOAT32": 2}.get(row["type"], 4)
    async with MeterSimulator(row["profile"]) as sim:
        sim.set(**row["set"])
        client = AsyncModbusTcpClient(sim.host, port=sim.port, timeout=1, retries=0)
        await client.connect()
        try:
            read = client.read_input_registers if row["fc"] == 4 else client.read_holding_registers
            reply = await read(row["addr"], count=count, device_id=1)
        finally:
            client.close()
    assert decode(reply.registers, reg_type, WordOrder(row["order"])) == pytest.approx(row["value"])


async def test_holes_fall_back_to_smaller_reads_and_are_remembered(poller: MeterPoller) -> None:
    # a meter of the family without demand and L-L registers: every merged read over them fails
    async with MeterSimulator("schneider-pm5560", omit=("demand_kw", "v_ll")) as sim:
        sim.set(p_kw=321.0, v_ln=(230.0, 231.0, 232.0))
        first = await poller.poll(sim.host, sim.port)
        assert isinstance(first, MeterReading), first
        assert first.p_kw == 321.0
        assert first.v_ln == (230.0, 231.0, 232.0)
        assert first.demand_kw is None and first.v_ll == (None, None, None)
        probing = list(sim.requests)
        assert len(probing) > 5  # merged reads, exception 2, splits
        sim.requests.clear()
        second = await poller.poll(sim.host, sim.port)
        assert isinstance(second, MeterReading)
        learned = list(sim.requests)
    assert len(learned) < len(probing)
    # the second poll only issues reads that succeeded the first time, each ≤ 125 registers
    assert set(learned) <= set(probing)
    assert all(count <= 125 for _, _, count in learned)


async def test_wrong_profile_everything_illegal(poller: MeterPoller) -> None:
    async with MeterSimulator("eastron-sdm630") as sim:
        err = await poller.poll(sim.host, sim.port, profile="janitza-umg604")
    assert isinstance(err, DeviceError)
    assert "wrong profile or unit" in err.cause


async def test_modbus_exception_names_register_and_quantity(
    poller: MeterPoller, sim: MeterSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim.fault = 4
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        err = await poller.poll(sim.host, sim.port)
        again = await poller.poll(sim.host, sim.port)
        sim.fault = None
        ok = await poller.poll(sim.host, sim.port)
    assert isinstance(err, DeviceError) and isinstance(again, DeviceError)
    assert err.kind is DeviceKind.METER and err.port == sim.port
    # the merged 2999..3032 read answers exception 2 (holes) first; its split part carries the 4
    assert err.cause == (
        "Modbus exception 4 (server device failure) reading registers "
        "2999..3004 (FC3) for i_a[1], i_a[2], i_a[3]"
    )
    assert "\n" not in err.cause
    assert isinstance(ok, MeterReading)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    recoveries = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert len(errors) == 1 and len(recoveries) == 1


async def test_bad_value_is_refused_naming_register(poller: MeterPoller, sim: MeterSimulator):
    sim.set(p_kw=3.0e30)  # a float32 the meter could hold, but no farm draws 3e30 kW
    err = await poller.poll(sim.host, sim.port)
    assert isinstance(err, DeviceError)
    assert err.cause.startswith("register 3059 (p_kw) reads 3e+30 kW")


async def test_nan_is_null(poller: MeterPoller, sim: MeterSimulator) -> None:
    sim.set(v_ln=None, pf=None, import_kwh=None)
    reading = await poller.poll(sim.host, sim.port)
    assert isinstance(reading, MeterReading)
    assert reading.v_ln == (None, None, None)
    assert reading.pf is None and reading.import_kwh is None  # INT64 0x8000… sentinel
    assert reading.p_kw == 100.0


async def test_schneider_four_quadrant_pf(poller: MeterPoller) -> None:
    async with MeterSimulator("schneider-pm5560") as sim:
        # the simulator encodes plainly; pin the encodings a PM5560 uses off quadrant 1
        readings = []
        for words in ([0x3FE6, 0x6666], [0xBFE6, 0x6666], [0xBF00, 0x0000]):  # 1.8, -1.8, -0.5
            sim.set_raw(3083, words)
            readings.append(await poller.poll(sim.host, sim.port))
    assert [r.pf for r in readings] == pytest.approx([0.2, -0.2, -0.5], abs=1e-6)


async def test_stopped_server_error_once_then_recovery(
    sim: MeterSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    poller = MeterPoller(timeout_s=0.5)
    try:
        assert isinstance(await poller.poll(sim.host, sim.port), MeterReading)
        port = sim.port
        await sim.stop()
        with caplog.at_level(logging.INFO, logger=LOGGER):
            results = []
            for _ in range(3):
                started = time.monotonic()
                results.append(await poller.poll(sim.host, port))
                assert time.monotonic() - started < 0.5 + 0.3
            assert all(isinstance(r, DeviceError) for r in results)
            assert all(r.cause and "\n" not in r.cause for r in results)
            await sim.start()
            assert sim.port == port
            back = await poller.poll(sim.host, port)
            assert isinstance(back, MeterReading)
            await poller.poll(sim.host, port)
        ours = [r for r in caplog.records if r.name == LOGGER]
        assert [r.levelno for r in ours] == [logging.ERROR, logging.WARNING]
        # and pymodbus does not repeat the outage on every poll either
        assert not [r for r in caplog.records if "Failed to connect" in r.getMessage()]
        assert f"127.0.0.1:{port} down" in ours[0].getMessage()
        assert "recovered" in ours[1].getMessage()
    finally:
        await poller.close()


async def test_refused_connection(poller: MeterPoller, unused_tcp_port: int) -> None:
    err = await poller.poll("127.0.0.1", unused_tcp_port)
    assert isinstance(err, DeviceError)
    assert err.cause == "connection refused or host unreachable"
    assert err.describe() == f"meter 127.0.0.1:{unused_tcp_port}: {err.cause}"


async def test_silent_device_times_out(sim: MeterSimulator) -> None:
    poller = MeterPoller(timeout_s=0.3)
    try:
        sim.delay_s = 2.0
        started = time.monotonic()
        err = await poller.poll(sim.host, sim.port)
        assert time.monotonic() - started < 0.6
        assert isinstance(err, DeviceError)
        assert "0.3 s" in err.cause
        sim.delay_s = 0.0
        await asyncio.sleep(0)  # the old connection is dropped; the next poll reconnects
        assert isinstance(await poller.poll(sim.host, sim.port), MeterReading)
    finally:
        await poller.close()


async def test_units_behind_one_gateway_share_its_lock(poller: MeterPoller) -> None:
    async with MeterSimulator("schneider-pm5560", unit=7) as sim:
        results = await asyncio.gather(*(poller.poll(sim.host, sim.port, unit=7) for _ in range(5)))
        assert all(isinstance(r, MeterReading) and r.unit == 7 for r in results)
        assert len(poller._hubs) == 1


async def test_word_order_cdab_and_input_registers(poller: MeterPoller) -> None:
    async with MeterSimulator("gavazzi-em340") as sim:
        sim.set(p_kw=-4.5, import_kwh=12345.6)
        reading = await poller.poll(sim.host, sim.port, profile="gavazzi-em340")
        # read the same registers as ABCD: the words come out swapped, so the order matters
        client = AsyncModbusTcpClient(sim.host, port=sim.port, timeout=1, retries=0)
        await client.connect()
        reply = await client.read_input_registers(0x28, count=2, device_id=1)
        holding = await client.read_holding_registers(0x28, count=2, device_id=1)
        client.close()
    assert isinstance(reading, MeterReading)
    assert (reading.p_kw, reading.import_kwh) == (-4.5, 12345.6)
    assert decode(reply.registers, RegType.INT32, WordOrder.CDAB) == -45000
    assert decode(reply.registers, RegType.INT32, WordOrder.ABCD) != -45000
    assert holding.isError() and holding.exception_code == 2  # FC3 is not where it lives


async def test_user_profile_word_order_override(poller: MeterPoller, tmp_path: Path) -> None:
    path = tmp_path / "swapped.toml"
    path.write_text(
        'name = "swapped"\nword_order = "DCBA"\n'
        '[[registers]]\nfield = "p_kw"\naddr = 100\ntype = "FLOAT32"\nunit = "kW"\n'
        '[[registers]]\nfield = "import_kwh"\naddr = 102\ntype = "UINT32"\nunit = "kWh"\n'
        'word_order = "BADC"\n',
        encoding="utf-8",
    )
    async with MeterSimulator(str(path)) as sim:
        sim.set(p_kw=42.5, import_kwh=70000)
        reading = await poller.poll(sim.host, sim.port, profile=str(path))
    assert isinstance(reading, MeterReading)
    assert (reading.p_kw, reading.import_kwh, reading.profile) == (42.5, 70000.0, "swapped")


async def test_sunspec_marker_is_checked(poller: MeterPoller) -> None:
    async with MeterSimulator("sunspec") as sim:
        sim.set_raw(40000, [0x1234])  # not 'Su'
        err = await poller.poll(sim.host, sim.port, profile="sunspec")
    assert isinstance(err, DeviceError)
    assert "register 40000 holds 0x1234, expected 0x5375" in err.cause


async def test_profile_problems_are_device_errors(poller: MeterPoller, tmp_path: Path) -> None:
    err = await poller.poll("127.0.0.1", 1, profile="acme-9000")
    assert isinstance(err, DeviceError) and "unknown meter profile" in err.cause
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[registers]]\nfield = "p_kw"\naddr = 1\ntype = "F"\n')
    err = await poller.poll("127.0.0.1", 1, profile=str(bad))
    assert isinstance(err, DeviceError) and "registers[0].type" in err.cause


async def test_probe_json_has_exactly_the_design_fields(
    poller: MeterPoller, sim: MeterSimulator
) -> None:
    reading = await poller.poll(sim.host, sim.port)
    doc = to_jsonable(reading)
    assert list(doc) == [
        "host",
        "unit",
        "profile",
        "taken_at",
        "p_kw",
        "p_kw_phases",
        "q_kvar",
        "s_kva",
        "v_ln",
        "v_ll",
        "i_a",
        "pf",
        "f_hz",
        "import_kwh",
        "export_kwh",
        "demand_kw",
    ]
    assert doc["profile"] == "schneider-pm5560" and doc["unit"] == 1
    assert doc["taken_at"].endswith("Z")
    assert all(len(doc[k]) == 3 for k in ("p_kw_phases", "v_ln", "v_ll", "i_a"))


async def test_simulator_rejects_bad_set(sim: MeterSimulator) -> None:
    with pytest.raises(ValueError, match="not a MeterReading"):
        sim.set(watts=1)
    with pytest.raises(ValueError, match="three values"):
        sim.set(v_ln=(1.0, 2.0))
    with pytest.raises(ValueError, match="finite"):
        sim.set(p_kw=math.inf, f_hz=60.0)
    async with MeterSimulator("gavazzi-em340") as small:
        with pytest.raises(ValueError, match="does not fit INT32"):
            small.set(f_hz=60.0, p_kw=1e9)  # 1 TW in 0.1 W steps overflows the register
        poller = MeterPoller(timeout_s=0.5)
        reading = await poller.poll(small.host, small.port, profile="gavazzi-em340")
        await poller.close()
    assert isinstance(reading, MeterReading)
    assert (reading.f_hz, reading.p_kw) == (50.0, 100.0)  # the refused set changed nothing
