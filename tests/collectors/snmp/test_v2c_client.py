"""kuat's own SNMPv2c client (v2c.py) gives the readings pysnmp's engine gives, and stands up
to agents that answer garbage, with the wrong community, or with names that never advance."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from kuat.collectors.readings import DeviceError, PduReading, to_jsonable
from kuat.collectors.snmp.collector import PduPoller, SnmpAuth
from kuat.collectors.snmp.sim import SnmpSimulator

from .agents import serve_udp
from .ber_samples import read_request, response

pytestmark = pytest.mark.servers

SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
RARITAN = "1.3.6.1.4.1.13742.6"


def _arcs(oid: str) -> tuple[int, ...]:
    return tuple(int(a) for a in oid.split("."))


@pytest.mark.parametrize(
    "community", ["apc_apdu9959eu3", "eatonpdu_2", "raritan-pdu_px3", "sentry4"]
)
async def test_same_readings_as_through_pysnmp(sim: SnmpSimulator, community: str) -> None:
    auth = SnmpAuth(community=community)
    ours = await PduPoller(timeout_s=2.0).poll(sim.host, sim.port, auth=auth)
    theirs = await PduPoller(timeout_s=2.0, v2c_via_pysnmp=True).poll(sim.host, sim.port, auth=auth)
    assert isinstance(ours, PduReading) and isinstance(theirs, PduReading), (ours, theirs)
    ours_data, theirs_data = to_jsonable(ours), to_jsonable(theirs)
    del ours_data["taken_at"], theirs_data["taken_at"]
    assert ours_data == theirs_data
    assert ours.outlets or ours.phases  # a real table was read, not two empty readings


Answer = Callable[[int, str, int, list[str]], bytes | None]


@contextmanager
def fake_agent(answer: Answer) -> Iterator[int]:
    """A UDP agent on loopback: ``answer(pdu tag, community, request-id, OIDs)`` -> reply."""

    def handle(data: bytes) -> bytes | None:
        tag, community, request_id, _f2, _f3, oids = read_request(data)
        return answer(tag, community, request_id, oids)

    with serve_udp(handle) as port:
        yield port


async def _poll(port: int, **poller: Any) -> PduReading | DeviceError:
    return await PduPoller(**poller).poll("127.0.0.1", port, auth=SnmpAuth(community="public"))


def _raritan_identity(tag: int, community: str, request_id: int, oids: list[str]) -> bytes:
    binds = [
        (_arcs(o), "ObjectIdentifier", _arcs(RARITAN))
        if o == SYS_OBJECT_ID
        else (_arcs(o), "noSuchObject", None)
        for o in oids
    ]
    return response(binds, request_id=request_id, community=community)


async def test_a_walk_whose_names_never_advance_fails_at_once() -> None:
    rows: set[str] = set()

    def answer(tag: int, community: str, request_id: int, oids: list[str]) -> bytes:
        if tag != 0xA5:
            return _raritan_identity(tag, community, request_id, oids)
        # a broken agent: a column's first row, then that same row again for ever
        row = oids[0] if oids[0] in rows else oids[0] + ".1"
        rows.add(row)
        return response([(_arcs(row), "Gauge32", 1)], request_id=request_id, community=community)

    with fake_agent(answer) as port:
        result = await _poll(port, timeout_s=1.0, deadline_s=5.0)
    assert isinstance(result, DeviceError)
    assert "names do not increase at 1.3.6.1.4.1.13742.6." in result.cause
    assert "did not finish" not in result.cause  # it did not spin until the deadline


async def test_garbage_replies_are_named_in_the_timeout() -> None:
    v1_reply = bytes.fromhex("3003020100")  # an SNMPv1-only agent's first bytes

    with fake_agent(lambda *_: v1_reply) as port:
        result = await _poll(port, timeout_s=0.3, retries=0)
    assert isinstance(result, DeviceError)
    assert result.cause.startswith("reading sysObjectID: No SNMP response received before timeout")
    assert "what 127.0.0.1 sent could not be read: version 0 is not SNMPv2c" in result.cause


@pytest.mark.parametrize("wrong", ["community", "request-id"])
async def test_a_reply_to_another_request_is_not_taken(wrong: str) -> None:
    def answer(tag: int, community: str, request_id: int, oids: list[str]) -> bytes:
        return _raritan_identity(
            tag,
            "not-" + community if wrong == "community" else community,
            request_id + 1 if wrong == "request-id" else request_id,
            oids,
        )

    with fake_agent(answer) as port:
        result = await _poll(port, timeout_s=0.3, retries=1)
    assert isinstance(result, DeviceError) and "No SNMP response" in result.cause
    with fake_agent(_raritan_identity) as port:  # the same agent, answering right
        result = await _poll(port, timeout_s=0.3, retries=1)
    assert isinstance(result, DeviceError) and "no inlets rows" in result.cause


_V2C_POLL_ONLY = """
import asyncio, sys
from kuat.collectors.readings import PduReading
from kuat.collectors.snmp.collector import PduPoller, SnmpAuth
r = asyncio.run(PduPoller(timeout_s=2.0).poll(sys.argv[1], int(sys.argv[2]),
                auth=SnmpAuth(community="apc_apdu9959eu3")))
assert isinstance(r, PduReading), r
print(sorted(m for m in sys.modules if m.split(".")[0] in ("pysnmp", "pysmi")))
"""


def test_a_v2c_farm_never_loads_pysnmp(sim: SnmpSimulator) -> None:
    # pysnmp (with pysmi, requests, jinja2 and lark behind it) costs a few hundred ms of CPU
    # at every start of kuat; only SNMPv3 and SET need it.
    done = subprocess.run(
        [sys.executable, "-c", _V2C_POLL_ONLY, sim.host, str(sim.port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
