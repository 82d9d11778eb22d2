"""``kuat report hourly --from DATE --to DATE [--json|--csv]`` as an operator runs it at month
end: a subprocess against a state directory holding a real energy ledger and a schedule file."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.config import parse_config
from kuat.agent.hourly_report import hourly_report, parse_range, render_hourly
from kuat.agent.ledger import EnergyLedger
from kuat.collectors.readings import MeterReading
from tests.agent.test_reports import LANGS, kuat

NOV1 = datetime(2026, 10, 31, 19, 0, tzinfo=UTC)  # 2026-11-01 00:00 Astana


def meter(at: datetime, kwh: float, kw: float) -> MeterReading:
    return MeterReading("127.0.0.1", 1, "sunspec", at, p_kw=kw, import_kwh=kwh)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """1 Nov: the site meter at 500 kW and the commercial meter at 495 kW all day, read every
    5 minutes; a grid allocation of 400 kWh for hours 1-12 and 600 kWh for 13-24. 2 Nov: nothing
    (the agent was off)."""
    state = tmp_path / "state"
    state.mkdir()
    with EnergyLedger(state / "ledger.db") as led:
        for i in range(24 * 12 + 1):
            at = NOV1 + i * timedelta(minutes=5)
            led.record("site", meter(at, 1000.0 + 500.0 * i / 12, 500.0))
            led.record("tariff", meter(at, 7000.0 + 495.0 * i / 12, 495.0))
    schedules = tmp_path / "quota.d"
    schedules.mkdir()
    (schedules / "2026-11-01-grid.json").write_text(
        json.dumps({"date": "2026-11-01", "source": "grid", "mwh": [0.4] * 12 + [0.6] * 12})
    )
    cfg = tmp_path / "kuat.toml"
    cfg.write_text(
        f"""
[site]
id = "ekibastuz-1"
owner_bin = "123456789012"
[agent]
state_dir = "{state}"
[quota]
schedules = "{schedules}"
[[meter]]
name = "site"
host = "127.0.0.1"
port = 9
[[meter]]
name = "tariff"
host = "127.0.0.1"
protocol = "dlms"
role = "commercial"
"""
    )
    return cfg


def test_every_hour_with_used_allocation_status_and_commercial_figure(site: Path) -> None:
    done = kuat(
        "report", "hourly", "--from", "2026-11-01", "--to", "2026-11-02", "-c", str(site), "--json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    hours = report["hours"]
    assert len(hours) == 48  # every hour of both days, the empty day too
    first, noon, last_of_day = hours[0], hours[12], hours[23]
    assert first == {
        "date": "2026-11-01",
        "hour_ending": 1,
        "start_utc": "2026-10-31T19:00:00Z",
        "source": "grid",
        "used_kwh": 500.0,
        "allocation_kwh": 400.0,
        "status": "over",
        "complete": True,
        "commercial_kwh": 495.0,
        "billed_kwh": 500.0,  # no settlement book: kuat's own figure stands
        "authority": "kuat",
    }
    assert noon["hour_ending"] == 13 and noon["status"] == "ok" and noon["allocation_kwh"] == 600
    assert last_of_day["hour_ending"] == 24 and last_of_day["complete"] is True
    # 2 Nov: the last reading (00:00) opens hour 1, which the ledger cannot close: 0 kWh seen,
    # not whole; then no readings at all.
    assert (hours[24]["used_kwh"], hours[24]["complete"]) == (0.0, False)
    off = hours[25:]
    assert {(h["status"], h["used_kwh"], h["complete"]) for h in off} == {("no_data", None, False)}
    assert report["hours_over"] == 12 and report["hours_incomplete"] == 24
    assert report["totals"] == {
        "grid": {"used_kwh": 12_000.0, "billed_kwh": 12_000.0, "allocation_kwh": 12_000.0}
    }
    assert report["commercial_total_kwh"] == 11_880.0
    assert report["basis_meters"] == ["site"] and report["commercial_meter"] == "tariff"


def test_csv_one_row_per_hour_and_unknown_is_empty(site: Path) -> None:
    done = kuat(
        "report", "hourly", "--from", "2026-11-01", "--to", "2026-11-02", "-c", str(site), "--csv"
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(rows) == 48
    assert rows[0]["used_kwh"] == "500.000" and rows[0]["status"] == "over"
    assert rows[0]["commercial_kwh"] == "495.000" and rows[0]["complete"] == "true"
    assert rows[30]["used_kwh"] == "" and rows[30]["status"] == "no_data"


def test_text_in_every_language(site: Path) -> None:
    words = {"kk": "Сағаттық", "ru": "Почасовой", "en": "Hourly"}
    over = {"kk": "асып кетті", "ru": "превышение", "en": "over"}
    for lang in LANGS:
        done = kuat(
            "report",
            "hourly",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-01",
            "-c",
            str(site),
            "--lang",
            lang,
        )
        assert done.returncode == 0, done.stderr
        assert words[lang] in done.stdout and over[lang] in done.stdout
        assert "{" not in done.stdout
        # figures the reader's way: 500 kWh an hour, thousands grouped in the totals
        assert ("500.000" if lang == "en" else "500,000") in done.stdout
        assert ("12,000.000" if lang == "en" else "12\u00a0000,000") in done.stdout


@pytest.mark.parametrize(
    ("start", "end", "says"),
    [
        ("2026-11-31", "2026-12-01", "YYYY-MM-DD"),
        ("2026-11-02", "2026-11-01", "before --from"),
        ("2025-01-01", "2026-12-31", "at most 366 days"),
    ],
)
def test_bad_range_is_refused_with_the_reason(site: Path, start: str, end: str, says: str) -> None:
    done = kuat("report", "hourly", "--from", start, "--to", end, "-c", str(site))
    assert done.returncode == 2 and says in done.stderr


def test_without_schedules_the_status_says_so(site: Path) -> None:
    cfg = parse_config(site.read_text())
    first, last = parse_range("2026-11-01", "2026-11-01")
    with EnergyLedger(cfg.agent.state_dir / "ledger.db") as led:
        report = hourly_report(led, cfg, first, last, book=None)
    assert {h["status"] for h in report["hours"]} == {"no_allocation"}
    for lang in LANGS:
        assert "{" not in render_hourly(report, lang)
