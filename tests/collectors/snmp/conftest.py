"""One real snmpsim per test module, serving the four recorded PDU walks (v2c and v3)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kuat.collectors.snmp.collector import SnmpAuth
from kuat.collectors.snmp.sim import SimulatorError, SnmpSimulator, find_responder

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "pdu"
V3_USER = "kuat-test"
V3_AUTH_KEY = "auth-secret-1"
V3_PRIV_KEY = "priv-secret-1"


def v3_auth(context: str, auth_key: str = V3_AUTH_KEY) -> SnmpAuth:
    """The simulator's SNMPv3 user (authPriv, SHA256 / AES256) for one recording."""
    return SnmpAuth(
        v3_user=V3_USER,
        v3_auth_key=auth_key,
        v3_priv_key=V3_PRIV_KEY,
        v3_auth_proto="SHA256",
        v3_priv_proto="AES256",
        v3_context=context,
    )


def _require_responder() -> None:
    try:
        find_responder()
    except SimulatorError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the SNMP tests: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def sim() -> Iterator[SnmpSimulator]:
    _require_responder()
    with SnmpSimulator(
        v3_user=V3_USER,
        v3_auth_key=V3_AUTH_KEY,
        v3_priv_key=V3_PRIV_KEY,
        v3_auth_proto="SHA256",
        v3_priv_proto="AES256",
    ) as simulator:
        yield simulator
