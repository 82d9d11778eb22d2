"""The DLMS/COSEM collector against a real DLMS server on loopback (kuat.collectors.dlms.sim,
built on dlms-cosem's own codec): TCP wrapper, AARQ/AARE with low-level security, GET with
scaler_unit, block transfer and a load profile read by time range."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kuat.collectors.dlms import DlmsMeter, DlmsPoller, hour_energy
from kuat.collectors.dlms.profile import ProfileError, list_profiles, load_profile, parse_profile
from kuat.collectors.dlms.sim import DlmsMeterSimulator
from kuat.collectors.readings import DeviceError, MeterReading

PASSWORD = "12345678"
T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)  # 14:00 in Astana


@pytest.fixture
async def sim() -> AsyncIterator[DlmsMeterSimulator]:
    s = DlmsMeterSimulator("spodes", password=PASSWORD)
    s.set(
        p_kw=812.5,
        v_ln=(230.12, 231.0, 229.47),
        i_a=(1175.2, 1180.0, 1169.9),
        pf=0.987,
        f_hz=49.98,
        export_kwh=0.0,
    )
    await s.start()
    yield s
    await s.stop()


def meter(sim: DlmsMeterSimulator, **kw: object) -> DlmsMeter:
    args: dict[str, object] = {
        "host": sim.host,
        "port": sim.port,
        "client_address": 32,
        "password": PASSWORD,
        "timeout_s": 2.0,
    }
    args.update(kw)
    return DlmsMeter(**args)  # type: ignore[arg-type]


def feed(sim: DlmsMeterSimulator, start: datetime, minutes: int, kw: float, kwh0: float) -> None:
    """A steady ``kw`` load for ``minutes``, the counter advanced every minute."""
    for i in range(minutes + 1):
        sim.set(import_kwh=kwh0 + kw * i / 60, at=start + timedelta(minutes=i))


async def test_poll_reads_obis_values_with_the_meters_scalers_and_units(
    sim: DlmsMeterSimulator,
) -> None:
    feed(sim, T0, 1, 600.0, 1_284_000.0)
    poller = DlmsPoller()
    r = await poller.poll(meter(sim))
    assert isinstance(r, MeterReading), r
    assert r.profile == "spodes" and r.unit == 1
    assert r.p_kw == 812.5  # W on the wire, scaler 0 -> kW
    assert r.v_ln == (230.12, 231.0, 229.47)  # scaler -2
    assert r.i_a == (1175.2, 1180.0, 1169.9)  # scaler -3
    assert r.pf == 0.987 and r.f_hz == 49.98
    assert r.import_kwh == 1_284_010.0  # Wh on the wire
    assert r.export_kwh == 0.0
    assert r.q_kvar is None  # the meter has the object but no value: null, never 0
    # scaler_unit is read once per meter, not on every poll
    asked = [q for q in sim.requests if q[0] == "get" and q[2] == 3]
    await poller.poll(meter(sim))
    assert [q for q in sim.requests if q[0] == "get" and q[2] == 3] == asked


async def test_wrong_or_missing_password_is_a_clear_refusal(sim: DlmsMeterSimulator) -> None:
    poller = DlmsPoller()
    wrong = await poller.poll(meter(sim, password="nope-nope"))
    assert isinstance(wrong, DeviceError)
    assert "association refused" in wrong.cause and "wrong password" in wrong.cause
    assert "nope" not in wrong.cause and "nope" not in repr(meter(sim, password="nope-nope"))
    none = await poller.poll(meter(sim, password=None, client_address=16))
    assert isinstance(none, DeviceError) and "password needed" in none.cause


async def test_objects_the_meter_lacks_read_null_and_the_rest_still_reads() -> None:
    async with DlmsMeterSimulator("spodes", omit=["v_ln", "f_hz"]) as s:
        s.set(p_kw=100.0, i_a=(1.0, 2.0, 3.0))
        r = await DlmsPoller().poll(DlmsMeter(s.host, s.port, timeout_s=2))
    assert isinstance(r, MeterReading), r
    assert r.v_ln == (None, None, None) and r.f_hz is None
    assert r.p_kw == 100.0 and r.i_a == (1.0, 2.0, 3.0)


async def test_a_profile_whose_objects_the_meter_has_none_of_is_an_error(tmp_path: Path) -> None:
    odd = tmp_path / "odd.toml"
    odd.write_text(
        'name = "odd"\nobjects = [{ field = "p_kw", obis = "1.0.99.99.0.255", unit = "W" }]\n'
    )
    async with DlmsMeterSimulator("spodes") as s:
        r = await DlmsPoller().poll(DlmsMeter(s.host, s.port, profile=str(odd), timeout_s=2))
    assert isinstance(r, DeviceError)
    assert "no object of profile odd readable" in r.cause and "1.0.99.99.0.255" in r.cause


async def test_a_silent_meter_is_down_at_its_deadline(sim: DlmsMeterSimulator) -> None:
    sim.delay_s = float("inf")
    started = time.monotonic()
    r = await DlmsPoller().poll(meter(sim, timeout_s=0.7))
    took = time.monotonic() - started
    assert isinstance(r, DeviceError) and "no answer within 0.7 s" in r.cause
    assert 0.6 < took < 1.5
    refused = await DlmsPoller().poll(DlmsMeter("127.0.0.1", 1, timeout_s=1))
    assert isinstance(refused, DeviceError) and "cannot connect" in refused.cause


async def test_load_profile_delta_gives_each_closed_hours_energy(sim: DlmsMeterSimulator) -> None:
    # 14:00-17:00 Astana at 600 kW, then 300 kW: 30-minute intervals closed by the meter
    feed(sim, T0, 120, 600.0, 5000.0)
    feed(sim, T0 + timedelta(hours=2), 60, 300.0, 5000.0 + 1200.0)
    poller = DlmsPoller()
    m = meter(sim)
    got = await poller.intervals(m, T0, T0 + timedelta(hours=3))
    assert not isinstance(got, DeviceError), got
    assert [i.end for i in got] == [T0 + timedelta(minutes=30 * k) for k in range(2, 7)]
    assert hour_energy(got, T0 + timedelta(hours=1)) == (600.0, 2)
    assert hour_energy(got, T0 + timedelta(hours=2)) == (300.0, 2)
    # the first half hour closed before the meter had a previous capture: not covered
    assert hour_energy(got, T0) == (None, 1)


async def test_a_days_profile_arrives_in_blocks() -> None:
    async with DlmsMeterSimulator("spodes") as s:
        day = datetime(2026, 12, 3, 19, 0, tzinfo=UTC)  # 00:00 Astana
        for k in range(1, 49):
            s.add_entry(day + timedelta(minutes=30 * k), 250.0 + k)
        m = DlmsMeter(s.host, s.port, timeout_s=3)
        got = await DlmsPoller().intervals(m, day, day + timedelta(days=1))
        assert any(q[0] == "get" for q in s.requests)
    assert not isinstance(got, DeviceError), got
    assert len(got) == 48 and got[-1].kwh == 298.0


async def test_load_profile_counter_is_differenced() -> None:
    async with DlmsMeterSimulator("iec", capture_period_s=900) as s:
        feed(s, T0 - timedelta(minutes=15), 105, 400.0, 7000.0)
        got = await DlmsPoller().intervals(
            DlmsMeter(s.host, s.port, profile="iec", timeout_s=2), T0, T0 + timedelta(hours=1)
        )
    assert not isinstance(got, DeviceError), got
    assert len(got) == 4 and all(i.kwh == 100.0 for i in got)
    assert hour_energy(got, T0) == (400.0, 4)


# --- profiles -------------------------------------------------------------------------------


def test_shipped_profiles_load() -> None:
    assert {"spodes", "iec"} <= set(list_profiles())
    spodes = load_profile("spodes")
    assert spodes.load_profile is not None and spodes.load_profile.kind == "delta"
    assert load_profile("iec").load_profile.kind == "counter"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('name = "x"\nobjects = [{ field = "p_kw", obis = "1-0:1.7.0" }]', None),
        ('name = "x"\nobjects = [{ field = "p_kw", obis = "1.0.1.7.0.256" }]', "objects[0].obis"),
        ('name = "x"\nobjects = [{ field = "watts", obis = "1.0.1.7.0.255" }]', "objects[0].field"),
        (
            'name = "x"\nobjects = [{ field = "p_kw", obis = "1.0.1.7.0.255", unit = "V" }]',
            "objects[0].unit",
        ),
        ('name = "x"\nobjects = [{ field = "f_hz", obis = "1.0.14.7.0.255", class = 1 }]', "unit"),
        ('name = "x"\nobjects = [{ field = "v_ln", obis = "1.0.32.7.0.255" }]', "phase"),
        ('name = "x"\nobjects = []', "objects"),
        ('name = "x"\nobjekts = 1', "objekts"),
        (
            'name = "x"\nobjects = [{ field = "p_kw", obis = "1.0.1.7.0.255" }]\n'
            '[load_profile]\nobis = "1.0.99.1.0.255"\ncolumn = "1.0.1.29.0.255"\nkind = "sum"',
            "load_profile.kind",
        ),
    ],
)
def test_bad_profiles_are_refused_naming_file_and_key(text: str, where: str | None) -> None:
    if where is None:  # five groups: F defaults to 255
        assert parse_profile(text, "mine.toml").objects[0].obis == (1, 0, 1, 7, 0, 255)
        return
    with pytest.raises(ProfileError) as exc:
        parse_profile(text, "mine.toml")
    assert str(exc.value).startswith("mine.toml: ") and where in str(exc.value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_profile_parser_raises_only_profile_error(text: str) -> None:
    with contextlib.suppress(ProfileError):
        parse_profile(text, "fuzz.toml")
