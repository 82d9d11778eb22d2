"""HLS-GMAC (high-level security with GMAC, suite 0) and ciphering against the simulator doing
the meter's side with dlms-cosem's own security primitives (kuat.collectors.dlms.sim_hls)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from kuat.collectors.dlms import DlmsMeter, DlmsPoller
from kuat.collectors.dlms.sim import DlmsMeterSimulator
from kuat.collectors.readings import DeviceError, MeterReading

EK = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
AK = bytes.fromhex("d0d1d2d3d4d5d6d7d8d9dadbdcdddedf")


def meter(sim: DlmsMeterSimulator, **kw: object) -> DlmsMeter:
    args: dict[str, object] = {
        "host": sim.host,
        "port": sim.port,
        "transport": sim.transport,
        "client_address": 48,
        "encryption_key": EK,
        "authentication_key": AK,
        "timeout_s": 3.0,
    }
    args.update(kw)
    return DlmsMeter(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["tcp", "hdlc"])
async def test_hls_gmac_reads_a_meter_that_demands_it(transport: str) -> None:
    async with DlmsMeterSimulator("spodes", hls_keys=(EK, AK), transport=transport) as s:  # type: ignore[arg-type]
        s.set(p_kw=512.25, import_kwh=1_000.0)
        poller = DlmsPoller()
        r = await poller.poll(meter(s))
        assert isinstance(r, MeterReading), r
        assert r.p_kw == 512.25 and r.import_kwh == 1_000.0
        assert s.hls is not None and s.hls.refusals == []
        # a second session carries the counter on: the meter refuses a replayed one
        again = await poller.poll(meter(s))
        assert isinstance(again, MeterReading), again
        assert s.hls.refusals == []
        # a new process (a restarted agent) reads where the meter is and goes on from there
        fresh = await DlmsPoller().poll(meter(s))
        assert isinstance(fresh, MeterReading), fresh
        assert s.hls.refusals == []
        # a day's load profile: ciphered answers of several hundred bytes, in blocks (and in
        # HDLC segments). The first poller's counter is behind the meter's now (the second
        # one used the meter): refused once, it reads the meter's record and goes on
        day = datetime(2026, 12, 4, 4, 0, tzinfo=UTC)
        for k in range(1, 49):
            s.add_entry(day + timedelta(minutes=30 * k), 300.0 + k)
        got = await poller.intervals(meter(s), day, day + timedelta(days=1))
        assert not isinstance(got, DeviceError), got
        assert len(got) == 48 and got[-1].kwh == 348.0
        assert len(s.hls.refusals) == 1 and s.hls.refusals[0].startswith("replayed")
        assert isinstance(await poller.poll(meter(s)), MeterReading)
        assert len(s.hls.refusals) == 1


async def test_without_keys_an_hls_meter_refuses_and_says_why() -> None:
    async with DlmsMeterSimulator("spodes", hls_keys=(EK, AK)) as s:
        s.set(p_kw=1.0)
        plain = await DlmsPoller().poll(
            meter(s, encryption_key=None, authentication_key=None, client_address=16)
        )
    assert isinstance(plain, DeviceError)
    assert "object of profile spodes readable" in plain.cause  # public client: nothing to read


@pytest.mark.parametrize("which", ["encryption_key", "authentication_key"])
async def test_a_wrong_key_is_a_clear_error_for_that_meter(which: str) -> None:
    wrong = bytes.fromhex("ff" * 16)
    async with DlmsMeterSimulator("spodes", hls_keys=(EK, AK)) as s:
        s.set(p_kw=1.0)
        r = await DlmsPoller().poll(meter(s, **{which: wrong}))
    assert isinstance(r, DeviceError), r
    assert "association refused with HLS-GMAC" in r.cause
    assert "encryption_key or authentication_key" in r.cause
    assert r.describe().startswith(f"meter {s.host}:{s.port}: ")


async def test_keys_never_in_a_repr_or_a_log(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    async with DlmsMeterSimulator("spodes", hls_keys=(EK, AK)) as s:
        s.set(p_kw=1.0)
        m = meter(s)
        good = await DlmsPoller().poll(m)
        bad = await DlmsPoller().poll(replace(m, authentication_key=b"\x01" * 16))
    assert isinstance(good, MeterReading) and isinstance(bad, DeviceError)
    out, err = capfd.readouterr()
    seen = repr(m) + str(m) + caplog.text + out + err + repr(good) + repr(bad)
    for key in (EK, AK):
        assert key.hex() not in seen.lower()
        assert repr(key) not in seen
