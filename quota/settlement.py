"""Settlement verdict, pure: the commercial meter's closed hour against kuat's own figure.

The I/O around it (reading the meter's load profile, the ledger) is ``kuat.agent.reconcile``.
A difference beyond ``max(tolerance_kwh, tolerance_fraction × the meter's figure)`` is a
mismatch; an hour either side did not measure whole is ``incomplete``, never an alarm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

from kuat.quota.reasons import Code, Reason

__all__ = ["OFF_GRID", "STATUS_CODES", "Status", "judge", "split_hour"]

Status = Literal["ok", "mismatch", "incomplete"]
# the verdict as a number, for telemetry (the `settlement` point's status_code)
STATUS_CODES: dict[str, int] = {"ok": 0, "mismatch": 1, "incomplete": 2}


def judge(
    meter_kwh: float | None,
    kuat_kwh: float | None,
    kuat_complete: bool,
    *,
    entries: int,
    tolerance_kwh: float,
    tolerance_fraction: float,
    hour: str,
    ledger_meter: str,
) -> tuple[Status, float | None, float, Reason]:
    """Pure: (status, difference, tolerance used, reason) for one hour's two figures."""
    if meter_kwh is None:
        return (
            "incomplete",
            None,
            tolerance_kwh,
            Reason.of(Code.SETTLEMENT_METER_INCOMPLETE, hour=hour, entries=entries),
        )
    tolerance = max(tolerance_kwh, tolerance_fraction * abs(meter_kwh))
    if kuat_kwh is None or not kuat_complete:
        return (
            "incomplete",
            None,
            tolerance,
            Reason.of(
                Code.SETTLEMENT_LEDGER_INCOMPLETE,
                hour=hour,
                ledger_meter=ledger_meter,
                meter_kwh=meter_kwh,
            ),
        )
    diff = round(kuat_kwh - meter_kwh, 6)
    params = {
        "hour": hour,
        "meter_kwh": meter_kwh,
        "kuat_kwh": kuat_kwh,
        "difference_kwh": diff,
        "tolerance_kwh": round(tolerance, 3),
    }
    if abs(diff) > tolerance:
        return "mismatch", diff, tolerance, Reason.of(Code.SETTLEMENT_MISMATCH, **params)
    return "ok", diff, tolerance, Reason.of(Code.SETTLEMENT_OK, **params)


# Energy that does not pass the commercial meter at the grid connection.
OFF_GRID = "own_offgrid"


def split_hour(meter_kwh: float, kuat_by_source: Mapping[str, float]) -> dict[str, float]:
    """Pure: the commercial meter's kWh for an hour, by energy source, as the reports bill it.

    The meter at the grid connection sees every on-grid source at once (grid, bilateral,
    own on-grid generation); when kuat's ledger booked the hour to more than one of them (the
    source changed inside the hour), the meter's figure is split in kuat's proportions. Off-grid
    energy does not pass that meter, so it is not in the result (kuat's own figure stands for
    it). An hour kuat booked to no on-grid source is the grid's.
    """
    on_grid = {s: k for s, k in kuat_by_source.items() if s != OFF_GRID and k > 0}
    total = math.fsum(on_grid.values())
    if total <= 0:
        return {"grid": meter_kwh}
    return {s: meter_kwh * k / total for s, k in on_grid.items()}
