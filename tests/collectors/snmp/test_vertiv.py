"""The Vertiv/Geist profile, auto-detected through snmpsim serving a SYNTHETIC walk laid out as
the profile declares (tests/fixtures/pdu/vertiv/*.src.txt says why: no real walk is available),
and the error for a sysObjectID no profile knows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kuat.collectors.readings import DeviceError, PduReading
from kuat.collectors.snmp.collector import PduPoller, SnmpAuth
from kuat.collectors.snmp.sim import SnmpSimulator
from tests.collectors.snmp.conftest import _require_responder

DATA = Path(__file__).resolve().parents[2] / "fixtures" / "pdu" / "vertiv"


@pytest.fixture(scope="module")
def vsim() -> Iterator[SnmpSimulator]:
    _require_responder()
    with SnmpSimulator(DATA) as simulator:
        yield simulator


async def test_vertiv_is_detected_and_scaled(vsim: SnmpSimulator) -> None:
    r = await PduPoller().poll(
        vsim.host, vsim.port, auth=SnmpAuth(community="vertiv-synthetic"), deadline_s=5
    )
    assert isinstance(r, PduReading), r
    assert (r.vendor, r.model, r.serial) == ("Vertiv", "GU30000 (synthetic)", "SYN-0001")
    assert [(p.id, p.volts, p.amps, p.watts) for p in r.phases] == [
        ("L1", 230.1, 3.91, 900.0),
        ("L2", 231.2, 3.92, 905.0),
        ("L3", 229.9, 3.89, 895.0),
    ]
    assert [(b.id, b.amps) for b in r.breakers] == [("Circuit 1", 6.12), ("Circuit 2", 5.98)]
    assert [(o.index, o.name, o.amps, o.watts, o.state) for o in r.outlets] == [
        (1, "miner-1", 3.01, 690.0, "on"),
        (2, "miner-2", 2.98, 685.0, "on"),
        (3, "miner-3", 0.0, 0.0, "off"),
        (4, "miner-4", 3.05, 700.0, "on"),
    ]
    assert r.total_watts == 2700.0


async def test_unknown_sysobjectid_lists_the_known_vendors(vsim: SnmpSimulator) -> None:
    r = await PduPoller().poll(
        vsim.host, vsim.port, auth=SnmpAuth(community="unknown-synthetic"), deadline_s=5
    )
    assert isinstance(r, DeviceError)
    assert "1.3.6.1.4.1.9.1.1745" in r.cause
    for vendor in ("APC (apc)", "Eaton (eaton)", "Raritan (raritan)", "Vertiv (vertiv)"):
        assert vendor in r.cause
    assert "profile file" in r.cause
