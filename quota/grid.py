"""Inspection checklist item 5: availability of technical conditions for the grid connection.

The checklist words the item for two kinds of miner (regulation.md):

(a) a miner holding technical conditions from an energy transmitting organization for a
    connection at a transformer substation of 35 kV or more with a permitted capacity of at
    least 1 MW;
(b) a miner connected to the grid before 1 April 2023.

Read closely, (b) is not an exemption: such a connection must still hold technical conditions;
only the 35 kV / 1 MW thresholds do not apply to it, and the result says so in its own words.
Only generation not connected to the unified power system falls outside the item. Whatever the
kind, drawing more than the permitted capacity breaks the conditions, so measured peak demand is
checked for every grid connection.
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
    if not conn.tc_number.strip():  # kind (a) or (b): technical conditions are required
        failures.append(Reason.of(Code.GRID_TC_MISSING))
    pre_rule = conn.connected_on < RULE_START
    if pre_rule:  # kind (b): said, and the thresholds left out
        notes.append(
            Reason.of(Code.GRID_PRE_2023, connected_on=conn.connected_on, rule_start=RULE_START)
        )
    else:
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
                # unrounded: the renderer shows the decimals that tell the two apart
                peak_kw=peak_demand_kw,
                permitted_kw=permitted_kw,
            )
        )
    if failures:
        return CheckResult("5", CheckStatus.FAIL, (*failures, *notes))
    ok = Reason.of(
        Code.GRID_OK,
        tc_number=conn.tc_number,
        substation=conn.substation,
        voltage_kv=conn.voltage_kv,
        permitted_mw=conn.permitted_mw,
        peak_kw=None if peak_demand_kw is None else round(peak_demand_kw, 1),
    )
    return CheckResult("5", CheckStatus.PASS, (ok, *notes))
