"""DLMS over HDLC (IEC 62056-46): through a serial-to-TCP gateway (HDLC frames on a TCP socket)
and on a serial line (a pseudo-terminal pair made by socat, the simulator on one end). The
simulator's HDLC side is written from the standard (kuat.collectors.dlms.sim_hdlc), so the
client's framing, addressing, sequence numbers and segmentation are checked, not mirrored."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dlms_cosem.hdlc import state as hdlc_state

from kuat.agent.config import parse_config
from kuat.agent.runtime import Agent
from kuat.collectors.dlms import DlmsMeter, DlmsPoller, hour_energy
from kuat.collectors.dlms.links import TcpIO, hdlc_transport
from kuat.collectors.dlms.sim import DlmsMeterSimulator
from kuat.collectors.dlms.sim_hdlc import decode_frame, encode_frame
from kuat.collectors.readings import DeviceError, MeterReading

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
PASSWORD = "12345678"


def loaded(sim: DlmsMeterSimulator) -> DlmsMeterSimulator:
    sim.set(p_kw=640.5, v_ln=(230.1, 231.0, 229.4), f_hz=50.01)
    day = T0 - timedelta(hours=5)  # a day of half hours: the profile spans many frames
    for k in range(1, 49):
        sim.add_entry(day + timedelta(minutes=30 * k), 300.0 + k)
    return sim


async def read_all(m: DlmsMeter) -> None:
    poller = DlmsPoller()
    r = await poller.poll(m)
    assert isinstance(r, MeterReading), r
    assert r.p_kw == 640.5 and r.v_ln == (230.1, 231.0, 229.4) and r.f_hz == 50.01
    day = T0 - timedelta(hours=5)
    got = await poller.intervals(m, day, day + timedelta(days=1))
    assert not isinstance(got, DeviceError), got
    assert len(got) == 48 and got[-1].kwh == 348.0
    assert hour_energy(got, T0) == (311.0 + 312.0, 2)  # the half hours ending 14:30, 15:00


@pytest.mark.parametrize("physical", [None, 17, 2345])
async def test_hdlc_through_a_tcp_gateway(physical: int | None) -> None:
    # 2345: a four-byte address (a physical address above 127, as serial-number-derived ones
    # are); dlms-cosem dropped its zero upper byte and the meter never answered
    sim = DlmsMeterSimulator(
        "spodes", transport="hdlc", physical_address=physical, password=PASSWORD
    )
    async with loaded(sim):
        m = DlmsMeter(
            sim.host,
            sim.port,
            transport="hdlc",
            client_address=32,
            physical_address=physical,
            password=PASSWORD,
            timeout_s=3,
        )
        await read_all(m)
        assert ("aarq", 32) in sim.requests


async def test_a_frame_for_another_meter_on_the_line_gets_no_answer() -> None:
    async with loaded(DlmsMeterSimulator("spodes", transport="hdlc", physical_address=17)) as s:
        started = time.monotonic()
        r = await DlmsPoller().poll(
            DlmsMeter(s.host, s.port, transport="hdlc", physical_address=18, timeout_s=0.6)
        )
        assert isinstance(r, DeviceError), r
        assert "no answer within 0.6 s to HDLC connect" in r.cause and "physical 18" in r.cause
        assert time.monotonic() - started < 1.5
        assert s.requests == []


@contextlib.asynccontextmanager
async def pty_pair(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    socat = shutil.which("socat")
    if socat is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("socat is needed for the serial-line tests (make servers installs it)")
        pytest.skip("socat not installed")
    a, b = tmp_path / "line-a", tmp_path / "line-b"
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


async def test_hdlc_on_a_serial_line(tmp_path: Path) -> None:
    async with pty_pair(tmp_path) as (meter_end, kuat_end):
        sim = DlmsMeterSimulator(
            "spodes", serial_port=meter_end, baudrate=19200, physical_address=17
        )
        async with loaded(sim):
            m = DlmsMeter(
                "", serial_port=kuat_end, baudrate=19200, physical_address=17, timeout_s=4
            )
            await read_all(m)
            # a meter that stops answering is down at the deadline, the thread freed: the
            # next session on the line works once it answers again
            sim.delay_s = float("inf")
            started = time.monotonic()
            poller = DlmsPoller()
            quiet = await poller.poll(
                DlmsMeter(
                    "", serial_port=kuat_end, baudrate=19200, physical_address=17, timeout_s=0.7
                )
            )
            assert isinstance(quiet, DeviceError) and "no answer within 0.7 s" in quiet.cause, quiet
            assert quiet.host == kuat_end
            assert time.monotonic() - started < 2.5
            sim.delay_s = 0.0
            again = await poller.poll(m)
            assert isinstance(again, MeterReading), again


async def test_a_missing_serial_line_is_a_clear_error(tmp_path: Path) -> None:
    r = await DlmsPoller().poll(DlmsMeter("", serial_port=str(tmp_path / "ttyUSB9"), timeout_s=1))
    assert isinstance(r, DeviceError) and "ttyUSB9" in r.cause, r


def test_frames_round_trip_and_damage_is_refused() -> None:
    frame = encode_frame(b"\x02\x23", b"\x21", 0x10, b"\xe6\xe6\x00\x7e\x7e payload")
    got = decode_frame(frame)
    assert got is not None and got.server() == (1, 17) and got.client == 16
    assert got.info.endswith(b"payload")
    broken = bytearray(frame)
    broken[-4] ^= 0x01
    assert decode_frame(bytes(broken)) is None
    four = decode_frame(encode_frame(b"\x00\x02\x24\x53", b"\x21", 0x93))
    assert four is not None and four.server() == (1, 2345)


def test_a_flag_byte_inside_a_frame_is_not_its_end() -> None:
    """IEC 62056-46 does no byte stuffing: 0x7E inside a frame is data. Here it is the last
    byte of the check sequence (one frame in 128 has that) and also in the information; the
    frame is read whole by its length, and the next frame after it too."""
    client, meter = socket.socketpair()
    client.settimeout(2)  # before the fix: the read waited for a next frame
    try:
        io = TcpIO("127.0.0.1", 1, timeout=2)
        io.tcp_socket = client
        link = hdlc_transport(16, 1, None, io)
        link.hdlc_connection.state.current_state = hdlc_state.AWAITING_RESPONSE
        dest, src = b"\x21", b"\x03"
        info = next(
            i
            for n in range(5000)
            if (i := b"\xe6\xe7\x00\x7e" + n.to_bytes(2, "big"))
            and encode_frame(dest, src, 0x10, i)[-2] == 0x7E
        )
        meter.sendall(encode_frame(dest, src, 0x10, info))
        got = link.next_event()
        assert bytes(got.payload) == info
        link.hdlc_connection.state.current_state = hdlc_state.AWAITING_RESPONSE
        meter.sendall(encode_frame(dest, src, 0x12, b"\xe6\xe7\x00next"))  # N(S) 1
        assert bytes(link.next_event().payload).endswith(b"next")
    finally:
        client.close()
        meter.close()


async def test_meters_sharing_a_gateway_queue_for_it_within_their_budgets() -> None:
    """Two meters behind one HDLC gateway (physical addresses 17 and 18): one session holds the
    line at a time. With a wait budget (the runtime gives the other meters' deadlines) both
    read; a poll that may not wait says the line was busy, not that the meter is silent."""
    async with loaded(DlmsMeterSimulator("spodes", transport="hdlc")) as s:
        s.delay_s = 0.03  # every answer: a first poll takes over a second (about 40 answers)

        def meter(physical: int) -> DlmsMeter:
            return DlmsMeter(
                s.host, s.port, transport="hdlc", physical_address=physical, timeout_s=2.0
            )

        # without a wait budget the second meter's deadline runs out in the queue
        first = DlmsPoller()
        alone = await asyncio.gather(first.poll(meter(17)), first.poll(meter(18)))
        assert sum(isinstance(r, DeviceError) for r in alone) == 1, alone
        poller = DlmsPoller()
        both = await asyncio.gather(
            poller.poll(meter(17), wait_s=2.0), poller.poll(meter(18), wait_s=2.0)
        )
        assert all(isinstance(r, MeterReading) for r in both), both
        day = T0 - timedelta(hours=5)
        s.delay_s = 0.1  # the profile read holds the line for a couple of seconds
        reading = asyncio.create_task(
            poller.intervals(replace(meter(17), timeout_s=10), day, day + timedelta(days=1))
        )
        await asyncio.sleep(0.2)  # the profile read has the line
        started = time.monotonic()
        busy = await poller.poll(replace(meter(18), timeout_s=0.5))
        assert isinstance(busy, DeviceError), busy
        assert f"line busy: another session on {s.host}:{s.port}" in busy.cause
        assert time.monotonic() - started < 1.2
        assert not isinstance(await reading, DeviceError)


def test_the_runtime_gives_a_shared_line_the_other_meters_deadlines(tmp_path: Path) -> None:
    cfg = parse_config(
        f"""
[site]
id = "s"
owner_bin = "123456789012"
[agent]
state_dir = "{tmp_path}"
[[meter]]
name = "a"
role = "feeder"
protocol = "dlms"
serial_port = "/dev/ttyUSB1"
physical_address = 17
timeout_s = 3
[[meter]]
name = "b"
role = "feeder"
protocol = "dlms"
serial_port = "/dev/ttyUSB1"
physical_address = 18
timeout_s = 4
[[meter]]
name = "c"
role = "feeder"
protocol = "dlms"
host = "10.0.0.9"
timeout_s = 5
"""
    )
    agent = Agent(cfg)
    try:
        a, b, c = cfg.meter
        assert agent._dlms_wait(a) == 4 and agent._meter_hold(a) == 7
        assert agent._dlms_wait(b) == 3 and agent._meter_hold(b) == 7
        assert agent._dlms_wait(c) == 0 and agent._meter_hold(c) == 5
    finally:
        agent.ledger.close()
