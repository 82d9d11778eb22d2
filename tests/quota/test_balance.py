import json
from datetime import UTC, datetime

import pytest

from kuat.collectors.readings import AsicReading, MeterReading, PduInlet, PduReading, to_jsonable
from kuat.quota.balance import BalancePolicy, BalanceState, balance_from_readings, check_balance
from kuat.quota.reasons import Code

T = datetime(2026, 11, 25, 4, tzinfo=UTC)
P = BalancePolicy(overhead_kw=10.0, tolerance_kw=5.0, tolerance_fraction=0.0)

# (name, meter, pdu, miners, status, codes)
TABLE = [
    ("balanced", 110.0, 100.0, 100.0, BalanceState.OK, [Code.BALANCE_OK]),
    ("within tolerance", 114.0, 100.0, 100.0, BalanceState.OK, [Code.BALANCE_OK]),
    (
        "hidden load behind pdus",
        150.0,
        100.0,
        100.0,
        BalanceState.ALARM,
        [Code.BALANCE_UNREGISTERED_LOAD, Code.BALANCE_UNREGISTERED_LOAD],
    ),
    (
        "unregistered miners on pdus",
        150.0,
        140.0,
        100.0,
        BalanceState.ALARM,
        [Code.BALANCE_UNREGISTERED_LOAD],
    ),
    (
        "meter low",
        80.0,
        100.0,
        100.0,
        BalanceState.CHECK,
        [Code.BALANCE_METER_BELOW_LOAD, Code.BALANCE_METER_BELOW_LOAD],
    ),
    (
        "no pdus",
        150.0,
        None,
        100.0,
        BalanceState.ALARM,
        [Code.BALANCE_UNREGISTERED_LOAD, Code.BALANCE_NO_DATA],
    ),
    ("no meter", None, 100.0, 100.0, BalanceState.UNKNOWN, [Code.BALANCE_NO_DATA]),
    ("nothing but a meter", 100.0, None, None, BalanceState.UNKNOWN, [Code.BALANCE_NO_DATA]),
]


@pytest.mark.parametrize(
    ("name", "meter", "pdu", "miners", "status", "codes"), TABLE, ids=[t[0] for t in TABLE]
)
def test_balance_table(
    name: str,
    meter: float | None,
    pdu: float | None,
    miners: float | None,
    status: BalanceState,
    codes: list[Code],
) -> None:
    r = check_balance(meter, pdu, miners, P)
    assert r.status is status
    assert [x.code for x in r.reasons] == codes
    json.dumps(to_jsonable(r))


def test_alarm_params() -> None:
    r = check_balance(150.0, 140.0, 100.0, P)
    assert r.reasons[0].params == {
        "meter_kw": 150.0,
        "accounted_kw": 110.0,
        "level": "miners",
        "excess_kw": 40.0,
        "tolerance_kw": 5.0,
    }


def test_from_readings_and_unreported_miners() -> None:
    meter = MeterReading("m", 1, "sunspec", T, p_kw=23.0)
    pdu = PduReading(
        "p", "apc", "x", "S1", T, inlets=(PduInlet("1", watts=6500.0), PduInlet("2", watts=6500.0))
    )
    pdu2 = PduReading("q", "apc", "x", "S2", T, total_watts=0.0)
    miners = [AsicReading(f"10.0.0.{i}", 4028, T, serial=f"M{i}", power_w=3250.0) for i in range(4)]
    sleeping = AsicReading("10.0.0.9", 4028, T, serial="Z", power_w=None, state="sleeping")
    r = balance_from_readings(meter, [pdu, pdu2], [*miners, sleeping], P)
    assert (r.pdu_kw, r.miners_kw, r.status) == (13.0, 13.0, BalanceState.OK)
    blind = [*miners, AsicReading("10.0.0.8", 4028, T, serial="U")]
    r = balance_from_readings(meter, [pdu], blind, P)
    assert r.miners_unreported == 1 and r.reasons[-1].params == {"missing": ["miners"]}
