"""``kuat report quarterly``: the digital-mining fee's quarter as the owner runs it before paying
by the 20th: kWh per meter and source, the energy the commercial meter backs, and the fee, with
unbacked energy charged at the unmetered rate (a subprocess against a real energy ledger)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.fee_report import parse_quarter, quarter_days
from kuat.agent.ledger import EnergyLedger
from kuat.collectors.readings import MeterReading
from tests.agent.test_reports import LANGS, kuat

OCT1 = datetime(2026, 9, 30, 19, 0, tzinfo=UTC)  # 2026-10-01 00:00 Astana: Q4 starts


def meter(at: datetime, kwh: float, kw: float) -> MeterReading:
    return MeterReading("127.0.0.1", 1, "sunspec", at, p_kw=kw, import_kwh=kwh)


def write_site(tmp_path: Path, *, commercial: bool) -> Path:
    """2 Oct: the site meter at 500 kW all day; the commercial meter connected at 06:00 Astana,
    so hours 1-6 are not backed by it. Its line then drops from 10:00 to 14:00: its own counter
    runs on and spans the gap, so those hours stay backed."""
    state = tmp_path / "state"
    state.mkdir()
    day = OCT1 + timedelta(days=1)
    with EnergyLedger(state / "ledger.db") as led:
        for i in range(24 * 12 + 1):
            at = day + i * timedelta(minutes=5)
            led.record("site", meter(at, 1000.0 + 500.0 * i / 12, 500.0))
            if commercial and i >= 6 * 12 and not 10 * 12 < i < 14 * 12:
                led.record("tariff", meter(at, 7000.0 + 498.0 * i / 12, 498.0))
    cfg = tmp_path / "kuat.toml"
    tariff = (
        '[[meter]]\nname = "tariff"\nhost = "127.0.0.1"\nprotocol = "dlms"\nrole = "commercial"\n'
        if commercial
        else ""
    )
    cfg.write_text(
        f'[site]\nid = "ekibastuz-1"\nowner_bin = "123456789012"\n'
        f'[agent]\nstate_dir = "{state}"\n'
        f'[[meter]]\nname = "site"\nhost = "127.0.0.1"\nport = 9\nrole = "site"\n{tariff}'
    )
    return cfg


def test_quarter_names_and_bounds() -> None:
    assert parse_quarter("2026-Q4") == parse_quarter("2026q4") == (2026, 4)
    assert [d.isoformat() for d in quarter_days(2026, 4)] == ["2026-10-01", "2026-12-31"]
    assert [d.isoformat() for d in quarter_days(2027, 1)] == ["2027-01-01", "2027-03-31"]
    for bad in ("2026-Q5", "Q3", "2026-3", ""):
        with pytest.raises(ValueError, match="2026-Q3"):
            parse_quarter(bad)


def test_backed_and_unbacked_energy_and_the_fee(tmp_path: Path) -> None:
    cfg = write_site(tmp_path, commercial=True)
    done = kuat("report", "quarterly", "2026-Q4", "-c", str(cfg), "--json", "--rate", "grid=10")
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    assert (r["quarter"], r["pay_by"], r["commercial_meter"]) == ("2026-Q4", "2027-01-20", "tariff")
    assert r["meters"]["site"]["total_kwh"] == pytest.approx(12_000.0)
    assert r["meters"]["tariff"]["total_kwh"] == pytest.approx(18 * 498.0)
    grid = r["sources"]["grid"]
    # Six hours before the commercial meter was connected: 3,000 kWh unbacked.
    assert r["unbacked_hours"] == 6
    assert grid["unbacked_kwh"] == pytest.approx(3_000.0)
    assert grid["backed_kwh"] == pytest.approx(9_000.0)
    # Backed at the grid rate, unbacked at the unmetered rate (the higher of the two).
    assert grid["tenge"] == pytest.approx(9_000 * 10 + 3_000 * 25)
    assert r["fee_total_tenge"] == grid["tenge"] and r["missing_rates"] == []


def test_without_a_commercial_meter_everything_is_unbacked(tmp_path: Path) -> None:
    cfg = write_site(tmp_path, commercial=False)
    done = kuat(
        "report",
        "quarterly",
        "2026-Q4",
        "-c",
        str(cfg),
        "--json",
        "--rate",
        "grid=30",
    )
    r = json.loads(done.stdout)
    grid = r["sources"]["grid"]
    assert grid["backed_kwh"] == 0 and grid["unbacked_kwh"] == pytest.approx(12_000.0)
    # Where several rates apply, the highest: a grid rate above 25 stays.
    assert grid["unbacked_rate"] == 30 and grid["tenge"] == pytest.approx(12_000 * 30)


def test_missing_rate_is_said_not_guessed_in_every_language(tmp_path: Path) -> None:
    cfg = write_site(tmp_path, commercial=True)
    r = json.loads(kuat("report", "quarterly", "2026-Q4", "-c", str(cfg), "--json").stdout)
    assert r["fee_total_tenge"] is None and r["missing_rates"] == ["grid"]
    texts = {}
    for lang in LANGS:
        done = kuat("report", "quarterly", "2026-Q4", "-c", str(cfg), "--lang", lang)
        assert done.returncode == 0, done.stderr
        texts[lang] = done.stdout
        assert "--rate" in done.stdout and "2027-01-20" in done.stdout
    assert len(set(texts.values())) == 3
    assert "12\u00a0000,000" in texts["ru"] and "12,000.000" in texts["en"]


def test_csv_and_a_bad_quarter(tmp_path: Path) -> None:
    cfg = write_site(tmp_path, commercial=True)
    done = kuat("report", "quarterly", "2026-Q4", "-c", str(cfg), "--csv", "--rate", "grid=10")
    head, row = done.stdout.splitlines()
    assert head == "source,kwh,backed_kwh,unbacked_kwh,rate,unbacked_rate,tenge"
    assert row.startswith("grid,12000.0,9000.0,3000.0,10.0,25.0,")
    bad = kuat("report", "quarterly", "2026-Q9", "-c", str(cfg))
    assert bad.returncode == 2 and "2026-Q3" in bad.stderr


def test_hours_the_commercial_meter_settled_are_billed_on_its_figure(tmp_path: Path) -> None:
    from kuat.agent.config import load_config
    from kuat.agent.fee_report import quarterly_report

    cfg = load_config(write_site(tmp_path, commercial=True))
    noon = OCT1 + timedelta(days=1, hours=11)  # 11:00-12:00 Astana, 2 Oct: kuat has 500 kWh
    with EnergyLedger(tmp_path / "state" / "ledger.db") as led:
        r = quarterly_report(led, cfg, 2026, 4, rates={"grid": 10.0}, settled={noon: 510.0})
    grid = r["sources"]["grid"]
    assert (r["settled_hours"], r["settled_kwh"]) == (1, 510.0)
    assert grid["kwh"] == pytest.approx(12_010.0)  # the meter's 510 in place of kuat's 500
    assert grid["backed_kwh"] == pytest.approx(9_010.0)
    assert grid["tenge"] == pytest.approx(9_010 * 10 + 3_000 * 25)
