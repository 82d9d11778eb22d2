"""Inspection checklist item 5: technical conditions of the grid connection.

The miner must hold technical conditions for a connection at a transformer substation of 35 kV
or more with a permitted capacity of at least 1 MW. Off-grid generation (not connected to the
unified power system) is exempt. Connections made before 1 April 2023 are covered by the rule
"in its own form": the 35 kV / 1 MW minimums are not applied, and the result says so with its own
wording rather than passing silently. Whatever the form, drawing more than the permitted capacity
breaks the conditions, so measured peak demand is checked for every grid connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from kuat.quota.checks import CheckStatus
from kuat.quota.reasons import Code, Reason

MIN_VOLTAGE_KV = 35.0
MIN_PERMITTED_MW = 1.0
RULE_START = date(2023, 4, 1)


@dataclass(frozen=True, slots=True)
class GridConnection:
    tc_number: str
    tc_date: date | None
    issuer: str
    substation: str
    voltage_kv: float
    permitted_mw: float
    connected_on: date
    off_grid: bool = False


@dataclass(frozen=True, slots=True)
class CheckResult:
    item: str
    status: CheckStatus
    reasons: tuple[Reason, ...]


def check_grid_connection(conn: GridConnection, peak_demand_kw: float | None) -> CheckResult:
    if conn.off_grid:
        return CheckResult("5", CheckStatus.EXEMPT, (Reason.of(Code.GRID_OFF_GRID_EXEMPT),))

    failures: list[Reason] = []
    notes: list[Reason] = []
    pre_rule = conn.connected_on < RULE_START
    if pre_rule:
        notes.append(
            Reason.of(Code.GRID_PRE_2023, connected_on=conn.connected_on, rule_start=RULE_START)
        )
    else:
        if not conn.tc_number.strip():
            failures.append(Reason.of(Code.GRID_TC_MISSING))
        if conn.voltage_kv < MIN_VOLTAGE_KV:
            failures.append(
                Reason.of(Code.GRID_VOLTAGE_LOW, voltage_kv=conn.voltage_kv, min_kv=MIN_VOLTAGE_KV)
            )
        if conn.permitted_mw < MIN_PERMITTED_MW:
            failures.append(
                Reason.of(
                    Code.GRID_CAPACITY_LOW, permitted_mw=conn.permitted_mw, min_mw=MIN_PERMITTED_MW
                )
            )
    permitted_kw = conn.permitted_mw * 1000.0
    if peak_demand_kw is None:
        notes.append(Reason.of(Code.GRID_PEAK_UNKNOWN))
    elif peak_demand_kw > permitted_kw:
        failures.append(
            Reason.of(
                Code.GRID_PEAK_OVER_PERMITTED,
                peak_kw=round(peak_demand_kw, 1),
                permitted_kw=round(permitted_kw, 1),
            )
        )
    if failures:
        return CheckResult("5", CheckStatus.FAIL, (*failures, *notes))
    if pre_rule:
        return CheckResult("5", CheckStatus.EXEMPT, tuple(notes))
    ok = Reason.of(
        Code.GRID_OK,
        tc_number=conn.tc_number,
        substation=conn.substation,
        voltage_kv=conn.voltage_kv,
        permitted_mw=conn.permitted_mw,
        peak_kw=None if peak_demand_kw is None else round(peak_demand_kw, 1),
    )
    return CheckResult("5", CheckStatus.PASS, (ok, *notes))
