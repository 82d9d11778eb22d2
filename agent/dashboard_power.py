"""Power explained: the site meter, Σ PDUs and Σ miners side by side, each device sum with the
site's overhead on top and the remainder the meter sees that it does not explain — the energy
balance (kuat.quota.balance) as one picture instead of three unrelated figures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kuat.collectors.readings import AsicReading, PduReading
from kuat.quota.balance import BalancePolicy, BalanceResult, miners_power_kw, pdu_power_kw


@dataclass(frozen=True, slots=True)
class Level:
    """One device sum compared with the meter."""

    name: str  # "pdus" or "miners"
    kw: float | None  # the devices' own sum
    overhead_kw: float | None  # the configured overhead on top of it
    remainder_kw: float | None  # meter - (sum + overhead): positive is load nothing explains
    compared: bool  # the balance check uses it (PDUs: only when they cover the whole site)

    @property
    def accounted_kw(self) -> float | None:
        return None if self.kw is None or self.overhead_kw is None else self.kw + self.overhead_kw


@dataclass(frozen=True, slots=True)
class PowerExplained:
    meter_kw: float | None
    levels: tuple[Level, Level]
    miners_unreported: int
    status: str | None  # the balance check's: ok, alarm, check, unknown (None: not run yet)
    result: BalanceResult | None

    def json(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {
            "status": self.status,
            "meter_kw": r(self.meter_kw),
            "miners_unreported": self.miners_unreported,
            **{
                lv.name: {
                    "kw": r(lv.kw),
                    "overhead_kw": r(lv.overhead_kw),
                    "accounted_kw": r(lv.accounted_kw),
                    "remainder_kw": r(lv.remainder_kw),
                    "compared": lv.compared,
                }
                for lv in self.levels
            },
        }


def _level(
    name: str, kw: float | None, meter: float | None, p: BalancePolicy, compared: bool
) -> Level:
    # the same overhead the balance check adds (quota.balance.check_balance)
    overhead = None if kw is None else kw * p.overhead_fraction + p.overhead_kw
    remainder = None if meter is None or kw is None or overhead is None else meter - kw - overhead
    return Level(name, kw, overhead, remainder, compared)


def explain(
    meter_kw: float | None,
    pdus: Iterable[PduReading],
    miners: Iterable[AsicReading],
    policy: BalancePolicy,
    *,
    pdus_cover_site: bool,
    result: BalanceResult | None,
) -> PowerExplained:
    """From the same readings the balance check takes; the PDUs are summed even when they do
    not cover the site (shown, not compared)."""
    miners_kw, unreported, _ = miners_power_kw(miners)
    return PowerExplained(
        meter_kw,
        (
            _level("pdus", pdu_power_kw(pdus), meter_kw, policy, pdus_cover_site),
            _level("miners", miners_kw, meter_kw, policy, True),
        ),
        unreported,
        None if result is None else result.status.value,
        result,
    )
