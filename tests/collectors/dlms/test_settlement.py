"""Settlement: the commercial DLMS meter's closed hour against kuat's own ledger, with the
meter served by the DLMS simulator on loopback and a real ledger file."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.i18n import render
from kuat.agent.ledger import EnergyLedger
from kuat.agent.reconcile import Reconciler
from kuat.collectors.dlms import DlmsMeter, DlmsPoller
from kuat.collectors.dlms.sim import DlmsMeterSimulator
from kuat.collectors.readings import MeterReading
from kuat.quota.reasons import Code
from kuat.quota.settlement import judge

HOUR = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)  # 14:00-15:00 Astana


def judged(meter: float | None, kuat: float | None, complete: bool = True):
    return judge(
        meter,
        kuat,
        complete,
        entries=2,
        tolerance_kwh=1.0,
        tolerance_fraction=0.01,
        hour="2026-12-04 14:00–15:00",
        ledger_meter="site",
    )


def test_judge() -> None:
    status, diff, tol, reason = judged(600.0, 604.5)
    assert (status, diff, tol) == ("ok", 4.5, 6.0)  # 1 % of 600 beats 1 kWh
    status, diff, _, reason = judged(600.0, 610.0)
    assert (status, diff, reason.code) == ("mismatch", 10.0, Code.SETTLEMENT_MISMATCH)
    # both figures in every language
    for lang in ("kk", "ru", "en"):
        text = render(reason, lang)  # type: ignore[arg-type]
        assert "600" in text and "610" in text and "10" in text, text
    assert judged(None, 600.0)[3].code == Code.SETTLEMENT_METER_INCOMPLETE
    assert judged(600.0, 300.0, complete=False)[0] == "incomplete"
    assert judged(5.0, 5.9)[0] == "ok"  # a small hour: the absolute floor applies


def ledger_hour(ledger: EnergyLedger, kw: float, kwh0: float) -> None:
    """kuat's site meter read every 5 minutes from before the hour to after it."""
    for i in range(-1, 14):
        at = HOUR + timedelta(minutes=5 * i)
        ledger.record(
            "site",
            MeterReading("127.0.0.1", 1, "x", at, p_kw=kw, import_kwh=kwh0 + kw * 5 * i / 60),
        )


@pytest.mark.parametrize(("kuat_kw", "status"), [(602.0, "ok"), (640.0, "mismatch")])
async def test_closed_hour_reconciled_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kuat_kw: float, status: str
) -> None:
    with EnergyLedger(tmp_path / "ledger.db") as ledger:
        ledger_hour(ledger, kuat_kw, 10_000.0)
        async with DlmsMeterSimulator("spodes") as sim:
            start = HOUR - timedelta(minutes=30)
            for i in range(91):  # the meter counts 600 kW from 13:30 to 15:00 Astana
                sim.set(import_kwh=50_000 + 10.0 * i, at=start + timedelta(minutes=i))
            rec = Reconciler(
                "tariff",
                DlmsMeter(sim.host, sim.port, timeout_s=2),
                DlmsPoller(),
                ledger,
                ledger_meter="site",
                tolerance_kwh=1.0,
                tolerance_fraction=0.01,
                lang="ru",
            )
            now = HOUR + timedelta(hours=1, minutes=3)
            with caplog.at_level(logging.INFO, logger="kuat.settlement"):
                check = await rec.run(now)
            assert check is not None
            assert check.meter_kwh == 600.0 and check.kuat_kwh == kuat_kw
            assert check.status == status
            assert check.label == "2026-12-04 14:00–15:00"
            assert await rec.run(now + timedelta(minutes=1)) is None  # once per hour
    record = next(r for r in caplog.records if r.name == "kuat.settlement")
    assert record.levelno == (logging.WARNING if status == "mismatch" else logging.INFO)
    assert "600" in record.getMessage() and "кВт·ч" in record.getMessage()


async def test_an_hour_kuat_saw_only_part_of_is_not_an_alarm(tmp_path: Path) -> None:
    with EnergyLedger(tmp_path / "ledger.db") as ledger:
        for i in range(6, 14):  # the agent started at 14:30
            at = HOUR + timedelta(minutes=5 * i)
            ledger.record("site", MeterReading("h", 1, "x", at, import_kwh=100 + i))
        async with DlmsMeterSimulator("spodes") as sim:
            for k in (1, 2):
                sim.add_entry(HOUR + timedelta(minutes=30 * k), 300.0)
            rec = Reconciler(
                "tariff",
                DlmsMeter(sim.host, sim.port, timeout_s=2),
                DlmsPoller(),
                ledger,
                ledger_meter="site",
                tolerance_kwh=1.0,
                tolerance_fraction=0.01,
            )
            check = await rec.run(HOUR + timedelta(hours=1, minutes=5))
    assert check is not None and check.status == "incomplete"
    assert check.meter_kwh == 600.0 and check.kuat_kwh is None
    assert check.reason.code == Code.SETTLEMENT_LEDGER_INCOMPLETE
