"""Settlement verdict, pure: the commercial meter's closed hour against kuat's own figure.

The I/O around it (reading the meter's load profile, the ledger) is ``kuat.agent.reconcile``.
A difference beyond ``max(tolerance_kwh, tolerance_fraction × the meter's figure)`` is a
mismatch; an hour either side did not measure whole is ``incomplete``, never an alarm.
"""

from __future__ import annotations

from typing import Literal

from kuat.quota.reasons import Code, Reason

__all__ = ["Status", "judge"]

Status = Literal["ok", "mismatch", "incomplete"]


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
