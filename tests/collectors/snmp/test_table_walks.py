"""A PDU poll walks each table with one GETBULK of all its columns, sized from what the last
poll found: fewer requests for a slow embedded agent, and the same readings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kuat.collectors.readings import DeviceError, PduReading, to_jsonable
from kuat.collectors.snmp.collector import PduPoller, SnmpAuth
from kuat.collectors.snmp.sim import RECORDINGS_DIR, CountingRelay, SnmpSimulator

from .agents import MibAgent, serve_udp
from .ber_samples import read_request, response
from .conftest import v3_auth

pytestmark = pytest.mark.servers

# requests and varbinds of a poll once the poller has seen the PDU (auto profile): GETBULKs
# of columns grouped by the rows they had, the scalars (sysObjectID, identity) riding in one;
# the Raritan's three 192-row columns take ten. Walked a column at a time, 40 rows a request
# (before), the same polls took 13/448, 16/563, 25/923 and 16/563.
AT_MOST = {
    "apc_apdu9959eu3": (2, 76),
    "eatonpdu_2": (4, 146),
    "raritan-pdu_px3": (13, 656),
    "sentry4": (3, 55),
}


def _same(a: PduReading | Any, b: PduReading | Any) -> None:
    assert isinstance(a, PduReading) and isinstance(b, PduReading), (a, b)
    one, other = to_jsonable(a), to_jsonable(b)
    del one["taken_at"], other["taken_at"]
    assert one == other


@pytest.mark.parametrize("community", sorted(AT_MOST))
async def test_a_known_pdu_is_read_in_few_requests(sim: SnmpSimulator, community: str) -> None:
    auth = SnmpAuth(community=community)
    before = PduPoller(timeout_s=2.0, per_column_walks=True)
    poller = PduPoller(timeout_s=2.0)
    with CountingRelay(sim.host, sim.port) as relay:
        old = await before.poll(relay.host, relay.port, auth=auth)
        old_requests, _ = relay.reset()
        first = await poller.poll(relay.host, relay.port, auth=auth)
        first_requests, _ = relay.reset()
        second = await poller.poll(relay.host, relay.port, auth=auth)
        requests, varbinds = relay.reset()
    _same(first, old)
    _same(second, old)
    assert first_requests < old_requests
    assert requests <= AT_MOST[community][0] and varbinds <= AT_MOST[community][1]


PROFILE = """
name = "test-pdu"
vendor = "Test"
[identity]
serial = "1.3.6.1.4.1.99.1.0"
[inlets]
required = true
watts = "1.3.6.1.4.1.99.2.1.2"
[outlets]
name = "1.3.6.1.4.1.99.3.1.2"
amps = { oid = "1.3.6.1.4.1.99.3.1.3", divisor = 10 }
watts = "1.3.6.1.4.1.99.3.1.4"
"""
INLET, NAME, AMPS, WATTS = (
    "1.3.6.1.4.1.99.2.1.2",
    "1.3.6.1.4.1.99.3.1.2",
    "1.3.6.1.4.1.99.3.1.3",
    "1.3.6.1.4.1.99.3.1.4",
)


def _mib(outlets: int, named: int) -> dict[str, tuple[str, Any]]:
    """A PDU whose outlet table has ``outlets`` rows, the first ``named`` of them named; the
    watts column is the last of the MIB (its walk ends at endOfMibView)."""
    mib: dict[str, tuple[str, Any]] = {
        "1.3.6.1.4.1.99.1.0": ("OctetString", b"SN-1"),
        f"{INLET}.1": ("Integer32", 1500),
    }
    for i in range(1, outlets + 1):
        if i <= named:
            mib[f"{NAME}.{i}"] = ("OctetString", f"outlet {i}".encode())
        mib[f"{AMPS}.{i}"] = ("Gauge32", i)
        mib[f"{WATTS}.{i}"] = ("Gauge32", 100 + i)
    return mib


async def _poll(poller: PduPoller, port: int, profile: Path) -> PduReading:
    reading = await poller.poll(
        "127.0.0.1", port, auth=SnmpAuth(community="public"), profile=str(profile)
    )
    assert isinstance(reading, PduReading), reading
    return reading


def _outlets(reading: PduReading) -> list[tuple[int, str | None, float | None, float | None]]:
    return [(o.index, o.name, o.amps, o.watts) for o in reading.outlets]


def _expected(outlets: int, named: int) -> list[tuple[int, str | None, float | None, float]]:
    return [
        (i, f"outlet {i}" if i <= named else None, i / 10, 100 + i) for i in range(1, outlets + 1)
    ]


@pytest.mark.parametrize("cap", [64, 7, 1])  # replies cut mid-row, as an agent cuts to a size
async def test_columns_ending_mid_reply_among_columns_going_on(tmp_path: Path, cap: int) -> None:
    profile = tmp_path / "test.toml"
    profile.write_text(PROFILE, encoding="utf-8")
    agent = MibAgent(_mib(outlets=10, named=3), cap=cap)
    with serve_udp(agent) as port:
        reading = await _poll(PduPoller(timeout_s=1.0), port, profile)
    assert _outlets(reading) == _expected(10, named=3)
    assert [i.watts for i in reading.inlets] == [1500]
    bulks = [oids for tag, _reps, oids in agent.requests if tag == 0xA5]
    # one request for the outlet table's three columns (and the serial, ahead of them)
    assert [NAME, AMPS, WATTS] in [oids[-3:] for oids in bulks]
    if cap == 64:
        assert len(agent.requests) == 2  # and one for the inlets: no GET


async def test_a_table_grown_since_the_last_poll_is_read_whole(tmp_path: Path) -> None:
    profile = tmp_path / "test.toml"
    profile.write_text(PROFILE, encoding="utf-8")
    agent = MibAgent(_mib(outlets=4, named=4))
    poller = PduPoller(timeout_s=1.0)
    with serve_udp(agent) as port:
        assert _outlets(await _poll(poller, port, profile)) == _expected(4, named=4)
        agent.requests.clear()
        agent.mib = _mib(outlets=30, named=30)  # a second PDU chained behind the first
        grown = await _poll(poller, port, profile)
    assert _outlets(grown) == _expected(30, named=30)
    outlet_bulks = [reps for _tag, reps, oids in agent.requests if oids[-3:][0].startswith(NAME)]
    # asked for the 4 rows seen last time and one more, then went on to the table's end
    assert outlet_bulks[0] == 5 and len(outlet_bulks) > 1


async def test_a_v1_proxys_no_such_name_ends_the_walk_quietly(tmp_path: Path) -> None:
    # a proxy to an SNMPv1 agent answers noSuchName where the walk meets the MIB's end (here in
    # the outlet table's second request): the columns end with what they had, as pysnmp's walk
    # ends, and the rows before it make the reading
    profile = tmp_path / "test.toml"
    profile.write_text(PROFILE, encoding="utf-8")
    agent = MibAgent(_mib(outlets=30, named=30), v1_proxy=True)
    with serve_udp(agent) as port:
        reading = await _poll(PduPoller(timeout_s=1.0), port, profile)
    assert [o.name for o in reading.outlets] == [f"outlet {i}" for i in range(1, 31)]
    assert _outlets(reading)[:21] == _expected(21, named=21)
    assert [i.watts for i in reading.inlets] == [1500]


async def test_an_error_names_the_column_the_agent_pointed_at(tmp_path: Path) -> None:
    profile = tmp_path / "test.toml"
    profile.write_text(PROFILE, encoding="utf-8")
    agent = MibAgent(_mib(outlets=10, named=3))

    def refuse_amps(data: bytes) -> bytes:
        tag, community, request_id, _n, _m, oids = read_request(data)
        if tag == 0xA5 and AMPS in oids:  # genErr, error-index naming the amps column
            return response(
                [], request_id=request_id, community=community, error_status=5, error_index=2
            )
        return agent(data)

    with serve_udp(refuse_amps) as port:
        result = await PduPoller(timeout_s=1.0).poll(
            "127.0.0.1", port, auth=SnmpAuth(community="public"), profile=str(profile)
        )
    assert isinstance(result, DeviceError)
    assert result.cause == f"walking {AMPS}: agent answered genErr"


@pytest.mark.parametrize("community", sorted(AT_MOST))
async def test_snmpv3_walks_tables_too(sim: SnmpSimulator, community: str) -> None:
    auth = v3_auth(community)
    readings, requests = [], []
    with CountingRelay(sim.host, sim.port) as relay:
        for per_column in (True, False):  # pysnmp's bulk walk of each column, then tables
            poller = PduPoller(timeout_s=2.0, per_column_walks=per_column)
            await poller.poll(relay.host, relay.port, auth=auth)  # the engine's discovery
            relay.reset()
            readings.append(await poller.poll(relay.host, relay.port, auth=auth))
            requests.append(relay.reset()[0])
    _same(*readings)
    assert requests[1] <= AT_MOST[community][0] < requests[0]


async def test_scalars_ride_in_the_walk_and_doubtful_ones_are_read_by_a_get(
    tmp_path: Path,
) -> None:
    # the serial is read as the next name after its parent (...99.1), which here is ...99.1.0,
    # an object before it: that settles nothing, so a GET asks for it; the model's parent has
    # nothing under it: absent, as a GET would answer
    profile = tmp_path / "test.toml"
    profile.write_text(
        PROFILE.replace(
            'serial = "1.3.6.1.4.1.99.1.0"',
            'serial = "1.3.6.1.4.1.99.1.1"\nmodel = "1.3.6.1.4.1.99.1.5.0"',
        ),
        encoding="utf-8",
    )
    mib = _mib(outlets=2, named=2)
    mib["1.3.6.1.4.1.99.1.1"] = ("OctetString", b"SN-2")
    agent = MibAgent(mib)
    with serve_udp(agent) as port:
        reading = await _poll(PduPoller(timeout_s=1.0), port, profile)
    assert (reading.serial, reading.model) == ("SN-2", None)
    gets = [oids for tag, _reps, oids in agent.requests if tag == 0xA0]
    assert gets == [["1.3.6.1.4.1.99.1.1"]]
    assert len(agent.requests) == 3  # two tables' GETBULKs (the first poll), the GET


@pytest.fixture
def two_pdus(tmp_path: Path) -> tuple[Path, Path]:
    """Two data dirs serving an APC and an Eaton recording under one community, "pdu"."""
    dirs = []
    for recording in ("apc_apdu9959eu3", "eatonpdu_2"):
        (tmp_path / recording).mkdir()
        (tmp_path / recording / "pdu.snmprec").write_bytes(
            (RECORDINGS_DIR / f"{recording}.snmprec").read_bytes()
        )
        dirs.append(tmp_path / recording)
    return dirs[0], dirs[1]


async def test_another_pdu_at_the_same_address_is_read_as_itself(
    two_pdus: tuple[Path, Path],
) -> None:
    # auto: the profile found last time is walked at once, sysObjectID read alongside; when
    # that names another profile the PDU is read again from scratch
    auth = SnmpAuth(community="pdu")
    with (
        SnmpSimulator(two_pdus[0]) as apc,
        SnmpSimulator(two_pdus[1]) as eaton,
        CountingRelay(apc.host, apc.port) as relay,
    ):
        poller = PduPoller(timeout_s=2.0)
        for _ in range(2):
            first = await poller.poll(relay.host, relay.port, auth=auth)
        relay.agent = (eaton.host, eaton.port)  # the APC swapped for an Eaton
        swapped = await poller.poll(relay.host, relay.port, auth=auth)
        fresh = await PduPoller(timeout_s=2.0).poll(eaton.host, eaton.port, auth=auth)
    assert isinstance(first, PduReading) and first.vendor == "APC"
    _same(swapped, fresh)
