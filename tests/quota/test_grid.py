import json
from dataclasses import replace
from datetime import date

import pytest

from kuat.collectors.readings import to_jsonable
from kuat.quota.checks import CheckStatus
from kuat.quota.grid import GridConnection, check_grid_connection
from kuat.quota.reasons import Code

GOOD = GridConnection(
    tc_number="ТУ-17/2024",
    tc_date=date(2024, 2, 1),
    issuer="KEGOC",
    substation="ПС 110/35 кВ Экибастуз",
    voltage_kv=110.0,
    permitted_mw=20.0,
    connected_on=date(2024, 6, 1),
)

# (name, changes, peak kW, status, reason codes in order)
TABLE = [
    ("pass", {}, 15000.0, CheckStatus.PASS, [Code.GRID_OK]),
    (
        "peak unknown still passes",
        {},
        None,
        CheckStatus.PASS,
        [Code.GRID_OK, Code.GRID_PEAK_UNKNOWN],
    ),
    (
        "exactly 35 kV and 1 MW",
        {"voltage_kv": 35.0, "permitted_mw": 1.0},
        1000.0,
        CheckStatus.PASS,
        [Code.GRID_OK],
    ),
    ("low voltage", {"voltage_kv": 10.0}, 100.0, CheckStatus.FAIL, [Code.GRID_VOLTAGE_LOW]),
    ("low capacity", {"permitted_mw": 0.5}, 100.0, CheckStatus.FAIL, [Code.GRID_CAPACITY_LOW]),
    ("no tc", {"tc_number": " "}, 100.0, CheckStatus.FAIL, [Code.GRID_TC_MISSING]),
    ("peak over", {}, 20000.1, CheckStatus.FAIL, [Code.GRID_PEAK_OVER_PERMITTED]),
    (
        "all wrong",
        {"tc_number": "", "voltage_kv": 6.0, "permitted_mw": 0.4},
        500.0,
        CheckStatus.FAIL,
        [
            Code.GRID_TC_MISSING,
            Code.GRID_VOLTAGE_LOW,
            Code.GRID_CAPACITY_LOW,
            Code.GRID_PEAK_OVER_PERMITTED,
        ],
    ),
    (
        "off grid",
        {"off_grid": True, "voltage_kv": 0.4, "permitted_mw": 0.1},
        90000.0,
        CheckStatus.EXEMPT,
        [Code.GRID_OFF_GRID_EXEMPT],
    ),
    # kind (b) of the checklist: not an exemption. Technical conditions are required, only
    # the 35 kV / 1 MW thresholds are not applied, and the result says so.
    (
        "pre 2023 with technical conditions below 35 kV / 1 MW",
        {"connected_on": date(2023, 3, 31), "voltage_kv": 10.0, "permitted_mw": 0.5},
        100.0,
        CheckStatus.PASS,
        [Code.GRID_OK, Code.GRID_PRE_2023],
    ),
    (
        "pre 2023 without technical conditions fails",
        {"connected_on": date(2019, 1, 1), "tc_number": ""},
        100.0,
        CheckStatus.FAIL,
        [Code.GRID_TC_MISSING, Code.GRID_PRE_2023],
    ),
    (
        "on 2023-04-01 the rule applies",
        {"connected_on": date(2023, 4, 1), "voltage_kv": 10.0},
        100.0,
        CheckStatus.FAIL,
        [Code.GRID_VOLTAGE_LOW],
    ),
    (
        "pre 2023 but over permitted",
        {"connected_on": date(2020, 1, 1)},
        25000.0,
        CheckStatus.FAIL,
        [Code.GRID_PEAK_OVER_PERMITTED, Code.GRID_PRE_2023],
    ),
]


@pytest.mark.parametrize(
    ("name", "changes", "peak", "status", "codes"), TABLE, ids=[t[0] for t in TABLE]
)
def test_item_5(
    name: str,
    changes: dict[str, object],
    peak: float | None,
    status: CheckStatus,
    codes: list[Code],
) -> None:
    result = check_grid_connection(replace(GOOD, **changes), peak)  # type: ignore[arg-type]
    assert result.item == "5"
    assert result.status is status
    assert [r.code for r in result.reasons] == codes
    out = json.loads(json.dumps(to_jsonable(result)))
    assert out["status"] == status.value


def test_pre_2023_wording_params() -> None:
    r = check_grid_connection(replace(GOOD, connected_on=date(2022, 5, 5)), 100.0)
    (note,) = [x for x in r.reasons if x.code is Code.GRID_PRE_2023]
    assert note.params == {"connected_on": "2022-05-05", "rule_start": "2023-04-01"}


def test_only_off_grid_generation_is_outside_item_5() -> None:
    statuses = {
        check_grid_connection(replace(GOOD, **changes), peak).status  # type: ignore[arg-type]
        for _, changes, peak, _, _ in TABLE
        if not changes.get("off_grid")
    }
    assert CheckStatus.EXEMPT not in statuses
