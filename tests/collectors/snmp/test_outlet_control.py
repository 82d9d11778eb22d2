"""Outlet switching by SNMP SET against snmpsim serving writable copies of the real walks."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from kuat.collectors.capabilities import OutletSwitchable, Pollable
from kuat.collectors.readings import PduReading
from kuat.collectors.snmp.collector import PduPoller, SnmpAuth, SnmpPdu
from kuat.collectors.snmp.sim import RECORDINGS_DIR, SnmpSimulator

from .conftest import _require_responder
from .test_poll_real_walks import silent_udp_port

pytestmark = pytest.mark.servers

APC_OUTLET_5 = "1.3.6.1.4.1.318.1.1.4.4.2.1.3.5"


@pytest.fixture(scope="module")
def wsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpSimulator]:
    _require_responder()
    data = tmp_path_factory.mktemp("writable")
    for rec in RECORDINGS_DIR.glob("*.snmprec"):
        shutil.copy(rec, data / rec.name)
    apc = data / "apc_apdu9959eu3.snmprec"
    # outlet 5 behaves like a PDU whose write community lacks access: SET off is refused
    apc.write_text(
        apc.read_text().replace(
            f"{APC_OUTLET_5}|2|1", f"{APC_OUTLET_5}|2:writecache|value=1,vlist=eq:2:notwritable"
        )
    )
    with SnmpSimulator(data, writable_outlets=True) as simulator:
        yield simulator


def _pdu(sim: SnmpSimulator, community: str) -> SnmpPdu:
    poller = PduPoller(timeout_s=1.0, retries=0)
    return SnmpPdu(sim.host, SnmpAuth(community=community), port=sim.port, poller=poller)


def test_snmp_pdu_offers_the_capabilities() -> None:
    pdu = SnmpPdu("127.0.0.1", SnmpAuth(community="c"))
    assert isinstance(pdu, Pollable) and isinstance(pdu, OutletSwitchable)


async def test_apc_outlet_off_and_on_again(wsim: SnmpSimulator) -> None:
    pdu = _pdu(wsim, "apc_apdu9959eu3")
    result = await pdu.switch_outlet(3, False, "quota: curtail")
    assert (result.device_id, result.action, result.outcome) == (
        "ZA2315013350",
        "outlet 3 off",
        "done",
    )
    assert result.detail == "state reads off"
    reading = await pdu.poll()
    assert isinstance(reading, PduReading)
    assert [o.state for o in reading.outlets[:4]] == ["on", "on", "off", "on"]
    result = await pdu.switch_outlet(3, True, "quota: restore")
    assert result.outcome == "done" and result.detail == "state reads on"


async def test_refused_set_is_reported_as_refused(wsim: SnmpSimulator) -> None:
    result = await _pdu(wsim, "apc_apdu9959eu3").switch_outlet(5, False, "test")
    assert result.outcome == "refused"
    assert "notWritable" in result.detail and APC_OUTLET_5 in result.detail


async def test_eaton_uses_its_off_command_column(wsim: SnmpSimulator) -> None:
    result = await _pdu(wsim, "eatonpdu_2").switch_outlet(2, False, "test")
    # the recording's status column does not follow the command: accepted, not yet confirmed
    assert result.outcome == "done" and result.detail == "requested; state still reads on"


async def test_profile_without_control_is_unsupported(wsim: SnmpSimulator) -> None:
    result = await _pdu(wsim, "sentry4").switch_outlet(1, False, "test")
    assert result.outcome == "unsupported" and "sentry4 profile" in result.detail


async def test_unreachable_pdu_is_a_failed_action() -> None:
    with silent_udp_port() as port:
        pdu = SnmpPdu(
            "127.0.0.1",
            SnmpAuth(community="c"),
            port=port,
            poller=PduPoller(timeout_s=0.3, retries=0),
            profile="apc",
        )
        result = await pdu.switch_outlet(1, False, "test")
    assert result.outcome == "failed" and "No SNMP response" in result.detail
    assert result.device_id == f"127.0.0.1:{port}"
