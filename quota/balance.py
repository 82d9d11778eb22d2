"""Energy balance: does the site meter see load that the PDUs and the registered miners do not?

Load the meter sees but no registered device explains is exactly what the register of
hardware-software complexes is meant to rule out (unregistered miners on the same connection),
so it raises an alarm. The reverse — the meter reading *less* than the devices claim — is not a
compliance matter but means a meter or device figure is wrong, and is reported as such.

Both comparisons are made against the meter: meter vs Σ PDU inlets + overhead, and meter vs
Σ miners + overhead, where overhead (cooling, lighting, network; a fixed part plus a share of
the accounted load for PSU and cable losses) is configured per site.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from kuat.collectors.readings import AsicReading, MeterReading, PduReading
from kuat.quota.reasons import Code, Reason


class BalanceState(enum.StrEnum):
    OK = "ok"
    ALARM = "alarm"  # unregistered load
    CHECK = "check"  # meter below the devices: a data problem, not a compliance one
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class BalancePolicy:
    overhead_kw: float = 0.0
    overhead_fraction: float = 0.0  # of the accounted load: PSU and distribution losses
    tolerance_kw: float = 5.0
    tolerance_fraction: float = 0.03  # of the metered load: meter and device accuracy
    max_unreported_fraction: float = 0.02  # mining miners without a power figure


@dataclass(frozen=True, slots=True)
class BalanceResult:
    status: BalanceState
    meter_kw: float | None
    pdu_kw: float | None
    miners_kw: float | None
    miners_unreported: int
    reasons: tuple[Reason, ...]


def pdu_power_kw(pdus: Iterable[PduReading]) -> float | None:
    """Σ inlet watts (a PDU's own total where it gives no inlet figures), in kW."""
    total = 0.0
    seen = False
    for pdu in pdus:
        inlets = [i.watts for i in pdu.inlets if i.watts is not None]
        if inlets:
            total += sum(inlets)
            seen = True
        elif pdu.total_watts is not None:
            total += pdu.total_watts
            seen = True
    return total / 1000.0 if seen else None


def miners_power_kw(miners: Iterable[AsicReading]) -> tuple[float | None, int, int]:
    """Σ power of mining miners in kW, how many mining miners gave no power, how many mine."""
    total = 0.0
    unreported = mining = 0
    for m in miners:
        if m.state != "mining":
            continue
        mining += 1
        if m.power_w is None:
            unreported += 1
        else:
            total += m.power_w
    return (total / 1000.0 if mining > unreported else None), unreported, mining


def check_balance(
    meter_kw: float | None,
    pdu_kw: float | None,
    miners_kw: float | None,
    policy: BalancePolicy = BalancePolicy(),  # frozen: a shared default is safe
    *,
    miners_unreported: int = 0,
    miners_mining: int = 0,
) -> BalanceResult:
    reasons: list[Reason] = []
    missing: list[str] = []
    if meter_kw is None:
        missing.append("meter")
    if pdu_kw is None:
        missing.append("pdu")
    too_many_unreported = (
        miners_mining > 0 and miners_unreported / miners_mining > policy.max_unreported_fraction
    )
    if miners_kw is None or too_many_unreported:
        missing.append("miners")
    if meter_kw is None or len(missing) >= 3 or (pdu_kw is None and "miners" in missing):
        return BalanceResult(
            BalanceState.UNKNOWN,
            meter_kw,
            pdu_kw,
            miners_kw,
            miners_unreported,
            (Reason.of(Code.BALANCE_NO_DATA, missing=missing),),
        )

    tolerance = max(policy.tolerance_kw, policy.tolerance_fraction * meter_kw)
    status = BalanceState.OK
    first_accounted: float | None = None
    for level, accounted_raw in (("pdu", pdu_kw), ("miners", miners_kw)):
        if accounted_raw is None or level in missing:
            continue
        accounted = accounted_raw * (1 + policy.overhead_fraction) + policy.overhead_kw
        diff = meter_kw - accounted
        if first_accounted is None:
            first_accounted = accounted
        # to the watt, not to what is shown: an excess of 5.04 kW over a 5 kW tolerance must not
        # read "5 kW (tolerance 5 kW)"; the renderer picks the decimals
        figures = {
            "meter_kw": round(meter_kw, 3),
            "accounted_kw": round(accounted, 3),
            "level": level,
        }
        if diff > tolerance:
            status = BalanceState.ALARM
            reasons.append(
                Reason.of(
                    Code.BALANCE_UNREGISTERED_LOAD,
                    **figures,
                    excess_kw=round(diff, 3),
                    tolerance_kw=round(tolerance, 3),
                )
            )
        elif -diff > tolerance:
            if status is BalanceState.OK:
                status = BalanceState.CHECK
            reasons.append(
                Reason.of(Code.BALANCE_METER_BELOW_LOAD, **figures, deficit_kw=round(-diff, 3))
            )
    if status is BalanceState.OK:
        reasons.append(
            Reason.of(
                Code.BALANCE_OK,
                meter_kw=round(meter_kw, 3),
                accounted_kw=None if first_accounted is None else round(first_accounted, 3),
            )
        )
    if missing:
        reasons.append(Reason.of(Code.BALANCE_NO_DATA, missing=missing))
    return BalanceResult(status, meter_kw, pdu_kw, miners_kw, miners_unreported, tuple(reasons))


def balance_from_readings(
    meter: MeterReading | None,
    pdus: Iterable[PduReading],
    miners: Iterable[AsicReading],
    policy: BalancePolicy = BalancePolicy(),  # frozen: a shared default is safe
) -> BalanceResult:
    miners_kw, unreported, mining = miners_power_kw(miners)
    return check_balance(
        meter.p_kw if meter else None,
        pdu_power_kw(pdus),
        miners_kw,
        policy,
        miners_unreported=unreported,
        miners_mining=mining,
    )


class AlarmFilter:
    """An unregistered-load alarm only once the excess has lasted ``after_s``.

    The meter and the miners are read at different moments: right after curtailment puts
    miners to sleep (or wakes them), the miners' new readings and the meter's can be seconds
    apart, and the difference looks like load no device explains. A real unregistered load
    stays; such a transient does not. Until an excess has lasted ``after_s`` the filter gives
    the last result that was not an alarm (an alarm right after start, or after a time without
    data, passes as it is: there was no comparison to hold). Anything else — OK, CHECK,
    UNKNOWN — passes at once and ends a pending alarm. Pure: ``now`` is the evaluation's time.
    """

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self._since: datetime | None = None
        self._quiet: BalanceResult | None = None

    def __call__(self, result: BalanceResult, now: datetime) -> BalanceResult:
        if result.status is not BalanceState.ALARM:
            self._since = None
            # only a comparison that was made can be held: after UNKNOWN (no data, e.g. at
            # start) an alarm passes at once
            self._quiet = None if result.status is BalanceState.UNKNOWN else result
            return result
        if self._since is None:
            self._since = now
        if self._quiet is None or (now - self._since).total_seconds() >= self.after_s:
            return result
        return self._quiet
