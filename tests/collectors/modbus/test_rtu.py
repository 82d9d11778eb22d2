"""Modbus RTU: several meters (unit ids) on one RS-485 line — a pseudo-terminal pair made by
socat, with pymodbus' serial server on one end (real RTU framing, CRCs, baud rate) — and on a
transparent serial-to-TCP gateway (RTU frames over TCP). One hub owns each line and polls its
units in turn; a dead unit is that unit's failure, not the bus's."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kuat.agent.config import ConfigError, parse_config
from kuat.agent.runtime import modbus_link
from kuat.collectors.modbus.collector import MeterPoller, ModbusLink
from kuat.collectors.modbus.sim import MeterBus, MeterSimulator
from kuat.collectors.readings import DeviceError, MeterReading


def meters() -> list[MeterSimulator]:
    a = MeterSimulator("schneider-pm5560", unit=1)
    b = MeterSimulator("eastron-sdm630", unit=7)
    c = MeterSimulator("schneider-pm5560", unit=9)
    a.set(p_kw=111.0)
    b.set(p_kw=222.0)
    return [a, b, c]


@contextlib.asynccontextmanager
async def pty_pair(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    socat = shutil.which("socat")
    if socat is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("socat is needed for the serial-line tests (make servers installs it)")
        pytest.skip("socat not installed")
    a, b = tmp_path / "bus-a", tmp_path / "bus-b"
    proc = await asyncio.create_subprocess_exec(
        socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}", stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(100):
            if a.exists() and b.exists():
                break
            await asyncio.sleep(0.02)
        yield str(a), str(b)
    finally:
        proc.terminate()
        await proc.wait()


async def poll_bus(poller: MeterPoller, link: ModbusLink, where: str) -> None:
    got = {}
    for unit, profile in ((1, "schneider-pm5560"), (9, "schneider-pm5560"), (7, "eastron-sdm630")):
        started = time.monotonic()
        got[unit] = await poller.poll(
            where, link.port, unit=unit, profile=profile, timeout_s=0.5, link=link
        )
        assert time.monotonic() - started < 1.5
    assert isinstance(got[1], MeterReading) and got[1].p_kw == 111.0, got[1]
    assert isinstance(got[7], MeterReading) and got[7].p_kw == 222.0, got[7]
    # the dead unit is down with its cause, and the unit polled after it still answered
    assert isinstance(got[9], DeviceError) and "timed out after 0.5 s" in got[9].cause


async def test_rtu_on_a_serial_line(tmp_path: Path) -> None:
    async with pty_pair(tmp_path) as (server_end, client_end):
        # (a pseudo-terminal refuses parity settings: 8N1 here, parity is checked in config)
        bus = MeterBus(meters(), serial_port=server_end, baudrate=19200)
        bus.silence(9)
        async with bus:
            poller = MeterPoller()
            link = ModbusLink("serial", device=client_end, baudrate=19200)
            try:
                await poll_bus(poller, link, client_end)
                # and again: the line stayed open through the dead unit's timeout
                bus.silence(9, False)
                back = await poller.poll(client_end, unit=9, timeout_s=0.5, link=link)
                assert isinstance(back, MeterReading), back
            finally:
                await poller.close()


async def test_rtu_over_tcp_gateway() -> None:
    bus = MeterBus(meters())
    bus.silence(9)
    async with bus:
        poller = MeterPoller()
        try:
            await poll_bus(poller, ModbusLink("rtu-tcp", "127.0.0.1", bus.port), "127.0.0.1")
        finally:
            await poller.close()


def test_config_rtu_keys() -> None:
    cfg = parse_config(
        """
[site]
id = "s"
[[meter]]
name = "a"
serial_port = "/dev/ttyUSB0"
baudrate = 19200
parity = "E"
unit = 3
[[meter]]
name = "b"
host = "10.0.0.9"
port = 4001
framing = "rtu"
role = "feeder"
"""
    )
    serial, gateway = (modbus_link(m) for m in cfg.meter)
    assert (serial.kind, serial.device, serial.baudrate, serial.parity) == (
        "serial",
        "/dev/ttyUSB0",
        19200,
        "E",
    )
    assert (gateway.kind, gateway.host, gateway.port) == ("rtu-tcp", "10.0.0.9", 4001)
    with pytest.raises(ConfigError) as err:
        parse_config(
            '[site]\nid = "s"\n[[meter]]\nname = "x"\nhost = "h"\nserial_port = "/dev/x"\n'
        )
    assert "not both" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config(
            '[site]\nid = "s"\n[[meter]]\nname = "x"\nserial_port = "/dev/x"\nbaudrate = 1234\n'
        )
    assert "meter[0].baudrate" in str(err.value)
