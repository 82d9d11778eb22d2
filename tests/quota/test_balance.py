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


def test_a_brief_excess_while_miners_switch_is_no_alarm_a_lasting_one_is() -> None:
    from datetime import UTC, datetime, timedelta

    from kuat.quota.balance import AlarmFilter

    t0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    ok = check_balance(595.0, None, 580.0, BalancePolicy())
    excess = check_balance(700.0, None, 580.0, BalancePolicy())  # 120 kW nobody explains
    assert (ok.status, excess.status) == (BalanceState.OK, BalanceState.ALARM)
    f = AlarmFilter(60.0)
    assert f(ok, t0).status is BalanceState.OK
    # miners just slept: their readings and the meter's are seconds apart for a moment
    assert f(excess, t0 + timedelta(seconds=2)) is ok
    assert f(excess, t0 + timedelta(seconds=30)) is ok
    assert f(ok, t0 + timedelta(seconds=40)).status is BalanceState.OK  # gone: no alarm ever
    # a load that stays is alarmed once it has lasted the minute, and at once thereafter
    assert f(excess, t0 + timedelta(seconds=50)) is ok
    assert f(excess, t0 + timedelta(seconds=109)) is ok
    assert f(excess, t0 + timedelta(seconds=110)).status is BalanceState.ALARM
    assert f(excess, t0 + timedelta(seconds=115)).status is BalanceState.ALARM


def test_an_alarm_from_the_first_evaluation_is_not_held_back() -> None:
    from datetime import UTC, datetime

    from kuat.quota.balance import AlarmFilter

    excess = check_balance(700.0, None, 580.0, BalancePolicy())
    assert AlarmFilter(60.0)(excess, datetime(2026, 12, 4, tzinfo=UTC)) is excess
