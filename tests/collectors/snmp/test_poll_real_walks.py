"""Poll the real recorded PDUs served by snmpsim and check against LibreNMS's scaled values."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kuat.collectors.readings import DeviceError, PduReading, to_jsonable
from kuat.collectors.snmp.collector import PduPoller, SnmpAuth
from kuat.collectors.snmp.sim import SnmpSimulator

from .conftest import FIXTURES, V3_USER, v3_auth

pytestmark = pytest.mark.servers

APC, EATON, RARITAN, SENTRY4 = "apc_apdu9959eu3", "eatonpdu_2", "raritan-pdu_px3", "sentry4"
PROFILE_OF = {APC: "apc", EATON: "eaton", RARITAN: "raritan", SENTRY4: "sentry4"}
VENDOR_OF = {APC: "APC", EATON: "Eaton", RARITAN: "Raritan", SENTRY4: "ServerTech"}

# LibreNMS sensor OID -> the value our reading holds for it. Each entry: regex on the OID
# (groups feed the locator) and a locator returning the reading's value. Sensors that the
# reading has no field for (frequency, balance, line currents, door states, temperatures)
# are listed in UNMAPPED so that a new CSV row cannot slip past silently.
Locator = Callable[[PduReading, re.Match[str]], float | None]


def _inlet(field: str, inlet_id: str | None = None) -> Locator:
    def find(r: PduReading, m: re.Match[str]) -> float | None:
        inlet = next(i for i in r.inlets if inlet_id is None or i.id == inlet_id)
        return getattr(inlet, field)

    return find


def _phase(field: str, ids: dict[str, str] | None = None) -> Locator:
    def find(r: PduReading, m: re.Match[str]) -> float | None:
        wanted = ids[m.group(1)] if ids else m.group(1)
        return getattr(next(p for p in r.phases if p.id == wanted), field)

    return find


def _outlet(field: str) -> Locator:
    def find(r: PduReading, m: re.Match[str]) -> float | None:
        return getattr(next(o for o in r.outlets if o.index == int(m.group(1))), field)

    return find


def _total(r: PduReading, m: re.Match[str]) -> float | None:
    return r.total_watts


SENTRY_PHASES = {
    "1.1.1": "AA:L1-L2",
    "1.1.2": "AA:L2-L3",
    "1.1.3": "AA:L3-L1",
    "2.1.1": "BA:L1-L2",
    "2.1.2": "BA:L2-L3",
    "2.1.3": "BA:L3-L1",
}
R = r"\.1\.3\.6\.1\.4\.1\."
EXPECTED: dict[str, list[tuple[str, Locator, float]]] = {
    # (regex, locator, factor): LibreNMS value * factor == ours
    APC: [
        (R + r"318\.1\.1\.26\.4\.3\.1\.5\.1$", _total, 1),
        (R + r"318\.1\.1\.26\.4\.3\.1\.9\.1$", _inlet("kwh"), 1),
        (R + r"318\.1\.1\.26\.6\.3\.1\.6\.(1)$", _phase("volts"), 1),
    ],
    RARITAN: [
        (R + r"13742\.6\.5\.2\.3\.1\.4\.1\.1\.1$", _inlet("amps", "I1"), 1),
        (R + r"13742\.6\.5\.2\.3\.1\.4\.1\.1\.4$", _inlet("volts", "I1"), 1),
        (R + r"13742\.6\.5\.2\.3\.1\.4\.1\.1\.5$", _inlet("watts", "I1"), 1),
        # LibreNMS keeps the raw 0-100 number; the reading has the 0-1 power factor
        (R + r"13742\.6\.5\.2\.3\.1\.4\.1\.1\.7$", _inlet("pf", "I1"), 0.01),
        (R + r"13742\.6\.5\.4\.3\.1\.4\.1\.(\d+)\.1$", _outlet("amps"), 1),
        (R + r"13742\.6\.5\.4\.3\.1\.4\.1\.(\d+)\.5$", _outlet("watts"), 1),
    ],
    SENTRY4: [
        (R + r"1718\.4\.1\.3\.3\.1\.3\.1\.1$", _inlet("watts", "AA"), 1),
        (R + r"1718\.4\.1\.3\.3\.1\.3\.2\.1$", _inlet("watts", "BA"), 1),
        (R + r"1718\.4\.1\.5\.3\.1\.3\.(\d+\.\d+\.\d+)$", _phase("volts", SENTRY_PHASES), 1),
        (R + r"1718\.4\.1\.5\.3\.1\.6\.(\d+\.\d+\.\d+)$", _phase("amps", SENTRY_PHASES), 1),
        (R + r"1718\.4\.1\.5\.3\.1\.8\.(\d+\.\d+\.\d+)$", _phase("watts", SENTRY_PHASES), 1),
    ],
    EATON: [
        (R + r"534\.6\.6\.7\.3\.2\.1\.3\.0\.1\.1$", _inlet("volts", "1"), 1),
        (R + r"534\.6\.6\.7\.3\.3\.1\.4\.0\.1\.1$", _inlet("amps", "1"), 1),
        (R + r"534\.6\.6\.7\.3\.4\.1\.4\.0\.1\.(1)$", _phase("watts", {"1": "L1"}), 1),
        (R + r"534\.6\.6\.7\.6\.4\.1\.3\.0\.(\d+)$", _outlet("amps"), 1),
        (R + r"534\.6\.6\.7\.6\.5\.1\.3\.0\.(\d+)$", _outlet("watts"), 1),
    ],
}
UNMAPPED = {
    APC: {"state"},
    RARITAN: {
        "state",
        "frequency",
        "temperature",
        "power_factor:measurementsOutletSensorValue",
        "voltage:measurementsOutletSensorValue",
    },
    SENTRY4: {"state", "frequency", "percent", "current:st4LineCurrent"},
    EATON: {"state"},
}


def _expected_rows(community: str) -> list[dict[str, str]]:
    with (FIXTURES / f"{community}.expected-sensors.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _unmapped(community: str, row: dict[str, str]) -> bool:
    skip = UNMAPPED[community]
    return row["sensor_class"] in skip or (
        f"{row['sensor_class']}:{row['sensor_index'].split('.')[0]}" in skip
    )


@contextlib.contextmanager
def silent_udp_port() -> Iterator[int]:
    """A loopback UDP port that is bound (so no ICMP refusal) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
def poller() -> PduPoller:
    return PduPoller(timeout_s=1.0, retries=1)


async def _poll(poller: PduPoller, sim: SnmpSimulator, community: str, **kw: str) -> PduReading:
    result = await poller.poll(sim.host, sim.port, auth=SnmpAuth(community=community), **kw)
    assert isinstance(result, PduReading), result
    return result


@pytest.mark.parametrize("community", list(PROFILE_OF))
async def test_reading_matches_librenms_expected_values(
    sim: SnmpSimulator, poller: PduPoller, community: str
) -> None:
    reading = await _poll(poller, sim, community, profile=PROFILE_OF[community])
    checked = 0
    for row in _expected_rows(community):
        if _unmapped(community, row):
            continue
        oid = row["sensor_oid"]
        matches = [(re.search(rx, oid), loc, f) for rx, loc, f in EXPECTED[community]]
        hit = next(((m, loc, f) for m, loc, f in matches if m), None)
        assert hit is not None, f"no mapping for LibreNMS sensor {oid} ({row['sensor_descr']})"
        match, locate, factor = hit
        want = float(row["expected_value"]) * factor
        assert locate(reading, match) == pytest.approx(want, abs=1e-9), (oid, row["sensor_descr"])
        checked += 1
    assert checked >= 3


async def test_apc_reading_in_full(sim: SnmpSimulator, poller: PduPoller) -> None:
    r = await _poll(poller, sim, APC)
    assert (r.vendor, r.model, r.serial) == ("APC", "APDU9959EU3", "ZA2315013350")
    assert [(p.id, p.volts, p.amps, p.watts) for p in r.phases] == [("1", 228, 5.4, 1160)]
    assert [(i.id, i.watts, i.kwh, i.pf) for i in r.inlets] == [("1", 1170, 70.6, 0.93)]
    assert len(r.outlets) == 24 and {o.state for o in r.outlets} == {"on"}
    assert r.outlets[9].index == 10 and r.outlets[9].name == "Outlet 10 label"
    assert r.outlets[0].watts is None  # not metered per outlet: unknown, never 0
    assert r.breakers == ()


async def test_raritan_decimal_digits_and_outlet_states(
    sim: SnmpSimulator, poller: PduPoller
) -> None:
    r = await _poll(poller, sim, RARITAN)
    inlet = r.inlets[0]
    assert (inlet.id, inlet.amps, inlet.pf, inlet.kwh) == ("I1", 7.467, 0.98, 74057.676)
    assert len(r.outlets) == 24 and all(o.state == "on" for o in r.outlets)
    assert r.outlets[1].name == "DEVICE 8:PS1:Planned"
    assert r.total_watts == 1665


async def test_sentry4_two_units(sim: SnmpSimulator, poller: PduPoller) -> None:
    r = await _poll(poller, sim, SENTRY4)
    assert [(i.id, i.watts, i.kwh, i.pf) for i in r.inlets] == [
        ("AA", 1701, 893.7, 0.95),
        ("BA", 1265, 2565.9, 0.96),
    ]
    assert r.total_watts == 1701 + 1265
    assert len(r.phases) == 6 and len(r.breakers) == 6
    assert all(b.amps is None for b in r.breakers)  # the recording has no branch currents


async def test_eaton_outlets(sim: SnmpSimulator, poller: PduPoller) -> None:
    r = await _poll(poller, sim, EATON)
    assert (r.model, r.serial) == ("EMA114-10", "H619P44058")
    assert r.inlets[0].pf == 0.946 and r.inlets[0].kwh == 8185.493
    assert len(r.outlets) == 24
    assert r.outlets[0].name == "Power strip + s-rw-lab-rack" and r.outlets[0].kwh == 785.621


@pytest.mark.parametrize("community", list(PROFILE_OF))
async def test_auto_detects_each_vendor(
    sim: SnmpSimulator, poller: PduPoller, community: str
) -> None:
    auto = await _poll(poller, sim, community)
    explicit = await _poll(poller, sim, community, profile=PROFILE_OF[community])
    assert auto.vendor == VENDOR_OF[community]
    assert auto.phases == explicit.phases and auto.outlets == explicit.outlets


async def test_probe_json_has_exactly_the_design_fields(
    sim: SnmpSimulator, poller: PduPoller
) -> None:
    for community in PROFILE_OF:
        data = to_jsonable(await _poll(poller, sim, community))
        assert list(data) == [
            "host",
            "vendor",
            "model",
            "serial",
            "taken_at",
            "inlets",
            "phases",
            "breakers",
            "outlets",
            "total_watts",
        ]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", data["taken_at"])
        for inlet in data["inlets"]:
            assert list(inlet) == ["id", "phase", "volts", "amps", "watts", "kwh", "pf"]
        for phase in data["phases"]:
            assert list(phase) == ["id", "volts", "amps", "watts"]
        for breaker in data["breakers"]:
            assert list(breaker) == ["id", "amps"]
        for outlet in data["outlets"]:
            assert list(outlet) == ["index", "name", "amps", "watts", "kwh", "state"]
            assert outlet["state"] in ("on", "off", None)


async def test_snmpv3_auth_priv_with_context(sim: SnmpSimulator, poller: PduPoller) -> None:
    auth = v3_auth(EATON)
    result = await poller.poll(sim.host, sim.port, auth=auth)
    assert isinstance(result, PduReading), result
    assert result.serial == "H619P44058"


async def test_snmpv3_wrong_key_is_a_clean_device_error(
    sim: SnmpSimulator, poller: PduPoller
) -> None:
    auth = v3_auth(EATON, auth_key="not-the-key")
    result = await poller.poll(sim.host, sim.port, auth=auth)
    assert isinstance(result, DeviceError)
    assert "digest" in result.cause.lower() and V3_USER in result.cause
    assert "not-the-key" not in result.describe() and "\n" not in result.cause


async def test_unreachable_port_fails_within_the_timeout() -> None:
    poller = PduPoller(timeout_s=0.5, retries=0)
    with silent_udp_port() as port:
        started = time.monotonic()
        result = await poller.poll("127.0.0.1", port, auth=SnmpAuth(community="public"))
        elapsed = time.monotonic() - started
    assert isinstance(result, DeviceError)
    assert "No SNMP response" in result.cause and "sysObjectID" in result.cause
    assert elapsed < poller.deadline_s
    assert result.describe().startswith(f"pdu 127.0.0.1:{port}: ")


async def test_unknown_community_times_out_cleanly(sim: SnmpSimulator) -> None:
    poller = PduPoller(timeout_s=0.3, retries=0)
    result = await poller.poll(sim.host, sim.port, auth=SnmpAuth(community="no-such-pdu"))
    assert isinstance(result, DeviceError) and "No SNMP response" in result.cause


async def test_missing_tables_name_what_was_walked(sim: SnmpSimulator, poller: PduPoller) -> None:
    result = await poller.poll(sim.host, sim.port, auth=SnmpAuth(community=APC), profile="eaton")
    assert isinstance(result, DeviceError)
    assert result.cause.startswith("eaton profile: no inlets rows (walked 1.3.6.1.4.1.534.")


async def test_user_profile_file(sim: SnmpSimulator, poller: PduPoller, tmp_path: Path) -> None:
    path = tmp_path / "my-apc.toml"
    path.write_text(
        'name = "my-apc"\nvendor = "Schneider"\n'
        '[identity]\nserial = "1.3.6.1.4.1.318.1.1.12.1.6.0"\n'
        "[phases]\nrequired = true\n"
        'amps = { oid = "1.3.6.1.4.1.318.1.1.26.6.3.1.5", divisor = 10 }\n'
        '[total_watts]\nsum = "phases"\n',
        encoding="utf-8",
    )
    r = await _poll(poller, sim, APC, profile=str(path))
    assert (r.vendor, r.model, r.serial) == ("Schneider", None, "ZA2315013350")
    assert [(p.id, p.amps, p.volts) for p in r.phases] == [("1", 5.4, None)]
    assert r.total_watts is None and r.outlets == ()  # unknown watts, so an unknown sum


async def test_bad_profile_argument_is_a_device_error(poller: PduPoller, tmp_path: Path) -> None:
    result = await poller.poll(
        "127.0.0.1", 9, auth=SnmpAuth(community="c"), profile=str(tmp_path / "nope.toml")
    )
    assert isinstance(result, DeviceError) and "cannot read profile" in result.cause
    result = await poller.poll("127.0.0.1", 9, auth=SnmpAuth(community="c"), profile="vertigo")
    assert isinstance(result, DeviceError) and "unknown profile 'vertigo'" in result.cause


async def test_concurrent_polls_share_one_poller(sim: SnmpSimulator, poller: PduPoller) -> None:
    results = await asyncio.gather(
        *(poller.poll(sim.host, sim.port, auth=SnmpAuth(community=c)) for c in sim.communities)
    )
    assert sorted(r.vendor for r in results if isinstance(r, PduReading)) == sorted(
        VENDOR_OF.values()
    )


async def test_whole_poll_deadline_bounds_a_slow_device() -> None:
    poller = PduPoller(timeout_s=5.0, retries=3, deadline_s=0.3)
    with silent_udp_port() as port:
        started = time.monotonic()
        result = await poller.poll("127.0.0.1", port, auth=SnmpAuth(community="public"))
        elapsed = time.monotonic() - started
    assert isinstance(result, DeviceError)
    assert result.cause == "poll did not finish within 0.3 s (SNMPv2c)"
    assert elapsed < 1.0
