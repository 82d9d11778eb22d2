"""The commercial meter's figures as the authority in the reports, and the `settlement`
telemetry point: from a reconciled hour (the agent, the DLMS simulator, a real ledger) to the
settlement book, the uplink spool and ``kuat report hourly`` / ``monthly``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from kuat.agent.config import parse_config
from kuat.agent.ledger import EnergyLedger
from kuat.agent.reports import monthly_report, render_monthly
from kuat.agent.runtime import Agent
from kuat.agent.settlement_book import SettledHour, SettlementBook
from kuat.collectors.dlms.sim import DlmsMeterSimulator
from kuat.quota.settlement import split_hour
from kuat.uplink.lineproto import to_ns
from tests.agent.test_hourly_report import NOV1, site  # noqa: F401 - the fixture
from tests.agent.test_reports import LANGS, kuat
from tests.collectors.dlms.test_settlement import HOUR, ledger_hour
from tests.uplink.test_lineproto import _doc_table, _keys

METER_KWH = 498.0  # the meter's profile for each of 1 Nov's first twelve hours (kuat: 500)


@pytest.fixture
def settled_site(site: Path) -> Path:  # noqa: F811
    cfg = parse_config(site.read_text())
    with SettlementBook(Path(cfg.agent.state_dir) / "settlement.db") as book:
        for h in range(12):
            start = NOV1 + timedelta(hours=h)
            book.record(
                SettledHour("tariff", start, METER_KWH, 500.0, 2.0, 5.0, "ok", "site"), start
            )
    return site


def test_split_hour() -> None:
    assert split_hour(300.0, {"grid": 100.0, "bilateral": 200.0}) == {
        "grid": 100.0,
        "bilateral": 200.0,
    }
    assert split_hour(90.0, {"grid": 50.0, "bilateral": 50.0, "own_offgrid": 70.0}) == {
        "grid": 45.0,
        "bilateral": 45.0,
    }
    assert split_hour(12.0, {}) == {"grid": 12.0}  # kuat saw nothing: the grid's


def test_hourly_report_uses_the_meters_figure_where_it_has_one(settled_site: Path) -> None:
    done = kuat(
        "report", "hourly", "--from", "2026-11-01", "--to", "2026-11-01",
        "-c", str(settled_site), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    first, afternoon = report["hours"][0], report["hours"][12]
    assert (first["used_kwh"], first["billed_kwh"], first["authority"]) == (
        500.0,
        METER_KWH,
        "commercial_meter",
    )
    assert first["status"] == "over"  # 498 against 400: judged on the billed figure
    assert (afternoon["billed_kwh"], afternoon["authority"]) == (500.0, "kuat")
    assert report["hours_by_authority"] == {"commercial_meter": 12, "kuat": 12}
    assert report["totals"]["grid"]["billed_kwh"] == 12 * METER_KWH + 12 * 500.0
    assert report["totals"]["grid"]["used_kwh"] == 12_000.0
    said = {
        "kk": ("коммерциялық есептегіш профилі", "kuat өлшеуі"),
        "ru": ("профиль коммерческого счётчика", "измерение kuat"),
        "en": ("commercial meter's profile", "kuat's metering"),
    }
    for lang in LANGS:
        done = kuat(
            "report", "hourly", "--from", "2026-11-01", "--to", "2026-11-01",
            "-c", str(settled_site), "--lang", lang,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        rows = [line for line in done.stdout.splitlines() if line.startswith("2026-11-01")]
        assert len(rows) == 24
        assert all(said[lang][0] in r for r in rows[:12]), rows[0]
        assert all(said[lang][1] in r for r in rows[12:]), rows[12]
        # both figures, side by side, written the reader's way (a decimal comma in kk and ru)
        meter_kwh, kuat_kwh = ("498.000", "500.000") if lang == "en" else ("498,000", "500,000")
        assert meter_kwh in rows[0] and kuat_kwh in rows[0]


def test_monthly_report_bills_on_the_meters_figures(settled_site: Path) -> None:
    cfg = parse_config(settled_site.read_text())
    with EnergyLedger(cfg.agent.state_dir / "ledger.db") as led:
        plain = monthly_report(led, cfg, "2026-11", rates={"grid": 10.0})
        with SettlementBook(cfg.agent.state_dir / "settlement.db") as book:
            start = NOV1
            settled = {
                t: h.meter_kwh
                for t, h in book.hours("tariff", start, start + timedelta(days=30)).items()
            }
        report = monthly_report(led, cfg, "2026-11", rates={"grid": 10.0}, settled=settled)
    assert plain["totals"]["fee_basis_kwh"] == {"grid": 12_000.0}
    assert plain["settlement"] is None
    billed = 12 * METER_KWH + 12 * 500.0
    assert report["totals"]["fee_basis_kwh"] == {"grid": billed}
    assert report["fee"]["grid"]["tenge"] == round(billed * 10.0, 2)
    s = report["settlement"]
    assert (s["hours_commercial_meter"], s["hours_kuat"]) == (12, 720 - 12)
    assert (s["meter_kwh"], s["kuat_kwh_same_hours"]) == (12 * METER_KWH, 12 * 500.0)
    assert s["days"][0] == {
        "date": "2026-11-01",
        "billed_kwh": billed,
        "kuat_kwh": 12_000.0,
        "hours_commercial_meter": 12,
        "hours_kuat": 12,
    }
    assert s["hours"][0]["authority"] == "commercial_meter"
    assert s["hours"][12]["authority"] == "kuat"
    titles = {"kk": "негізгі дереккөз", "ru": "основной источник", "en": "is the authority"}
    for lang in LANGS:
        text = render_monthly(report, lang)
        assert titles[lang] in text and "{" not in text
    # the command reads the book the agent keeps
    done = kuat("report", "monthly", "2026-11", "-c", str(settled_site), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["fee_basis_kwh"] == {"grid": billed}


async def test_a_reconciled_hour_is_booked_and_sent_as_a_settlement_point(
    tmp_path: Path,
) -> None:
    async with DlmsMeterSimulator("spodes") as sim:
        for k in range(-5, 3):  # the hour, and three before it (the agent was not running)
            sim.add_entry(HOUR + timedelta(minutes=30 * k), 301.0)
        cfg = parse_config(
            f"""
[site]
id = "ekibastuz-1"
owner_bin = "123456789012"
[agent]
state_dir = "{tmp_path / "state"}"
[[meter]]
name = "site"
host = "127.0.0.1"
port = 9
[[meter]]
name = "tariff"
protocol = "dlms"
role = "commercial"
host = "{sim.host}"
port = {sim.port}
timeout_s = 2
"""
        )
        now = HOUR + timedelta(hours=1, minutes=3)
        agent = Agent(cfg, clock=lambda: now)
        try:
            ledger_hour(agent.ledger, 640.0, 10_000.0)  # kuat: 640 kWh, a mismatch
            await agent.reconcile()
            await agent.reconcile()  # the next run: nothing new
            lines = [
                line
                for line in agent.uplinks.spool.take(1000).lines
                if line.startswith("settlement,")
            ]
        finally:
            await agent.uplinks.stop()
            agent.ledger.close()
            agent._close_book()
    assert len(lines) == 4, lines
    lines.sort(key=lambda line: int(line.rsplit(" ", 1)[1]))
    earlier, lines = lines[:3], lines[3:]
    # hours kuat did not meter: the meter's figure is booked, the verdict incomplete
    assert all("meter_kwh=602" in e and "status_code=2i" in e for e in earlier)
    assert all("kuat_kwh" not in e for e in earlier)
    _, tags, fields = _keys(lines[0])
    doc_tags, doc_fields = _doc_table()["settlement"]
    assert (tags, fields) == (doc_tags, doc_fields)  # SCHEMA.md says what is written
    assert "meter=tariff" in lines[0] and "meter_kwh=602" in lines[0]
    assert "kuat_kwh=640" in lines[0] and "difference_kwh=38" in lines[0]
    assert "status_code=1i" in lines[0] and "hour_ending=15i" in lines[0]
    assert lines[0].endswith(f" {to_ns(HOUR)}")  # the hour's start: a re-check overwrites
    with SettlementBook(tmp_path / "state" / "settlement.db") as book:
        booked = book.hours("tariff", HOUR, HOUR + timedelta(hours=1))
    assert booked[HOUR].meter_kwh == 602.0 and booked[HOUR].status == "mismatch"
    with SettlementBook(tmp_path / "state" / "settlement.db") as book:
        day = book.hours("tariff", HOUR - timedelta(hours=3), HOUR + timedelta(hours=1))
    assert len(day) == 4 and {h.meter_kwh for h in day.values()} == {602.0}
