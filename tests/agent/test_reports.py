"""Monthly and compliance reports and the register export, as numbers and as an operator runs
them (``python -m kuat.agent.cli ...`` in a subprocess against a prepared state directory)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.config import parse_config
from kuat.agent.ledger import EnergyLedger
from kuat.agent.reports import monthly_report, render_compliance, render_monthly
from kuat.collectors.readings import AsicReading, MeterReading, PoolInfo
from kuat.uplink.mqtt import RegisterPublisher
from kuat.uplink.spool import Spool
from tests.uplink.schema_check import validate

ROOT = Path(__file__).resolve().parents[2]
# 2026-11-01 00:00 Astana.
NOV1 = datetime(2026, 10, 31, 19, 0, tzinfo=UTC)
LANGS = ("kk", "ru", "en")


def config_text(state_dir: Path) -> str:
    return f"""
[site]
id = "ekibastuz-1"
name = "Ekibastuz"
owner_bin = "123456789012"
data_centre_id = "DC-77"
data_centre_registered = true

[agent]
state_dir = "{state_dir}"

[[asic.groups]]
hosts = ["10.1.0.10-10.1.0.12"]
location = {{ hall = "A", rack = "3" }}

[[meter]]
name = "site"
host = "127.0.0.1"
port = 9

[[meter]]
name = "hall-a"
host = "127.0.0.1"
port = 9
role = "submeter"

[grid]
tc_number = "TU-2024-15"
substation = "Ekibastuz-220"
voltage_kv = 110
permitted_mw = 1.0
connected_on = 2024-05-01

[compliance]
accredited_pools = ["pool.kz"]
"""


def meter(at: datetime, kwh: float, kw: float) -> MeterReading:
    return MeterReading("127.0.0.1", 1, "sunspec", at, p_kw=kw, import_kwh=kwh, demand_kw=kw)


def fill_ledger(path: Path) -> None:
    """Site meter: 500 kW on 1-2 Nov (grid), 200 kW on 2 Nov from own generation for 6 hours;
    the hall submeter: 300 kW on 1 Nov. Read every 5 minutes."""
    with EnergyLedger(path) as led:
        step = timedelta(minutes=5)
        for i in range(24 * 12 + 1):  # 1 Nov 00:00 .. 2 Nov 00:00 inclusive
            at = NOV1 + i * step
            led.record("site", meter(at, 1000.0 + 500.0 * i / 12, 500.0))
            led.record("hall-a", meter(at, 50.0 + 300.0 * i / 12, 300.0))
        base = 1000.0 + 500.0 * 24
        for i in range(1, 6 * 12 + 1):  # 2 Nov 00:05 .. 06:00, own generation
            at = NOV1 + timedelta(days=1) + i * step
            led.record("site", meter(at, base + 200.0 * i / 12, 200.0), "own_ongrid")


def miner(n: int, pool: str = "stratum+tcp://pool.kz:3333") -> AsicReading:
    return AsicReading(
        f"10.1.0.{10 + n}",
        4028,
        NOV1,
        vendor="Bitmain",
        model="Antminer S21",
        serial=f"SN{n:04d}",
        mac=f"aa:bb:cc:00:00:{n:02x}",
        firmware="2024.1",
        hashrate_nominal_ths=200.0,
        power_limit_w=3500.0,
        pools=(PoolInfo(pool, active=True),),
    )


def fill_spool(path: Path, agent_id: str | None = None) -> None:
    """Inventory on 1 Nov: miners 0,1; on 5 Nov: miner 2 added, miner 1 gone for good."""
    with Spool(path) as spool:
        pub = RegisterPublisher(
            spool,
            owner_bin="123456789012",
            site="ekibastuz-1",
            broker=None,
            forget_after=timedelta(hours=1),
            agent_id=agent_id,
        )
        pub.publish_inventory([miner(0), miner(1)], NOV1)
        later = NOV1 + timedelta(days=4)
        readings = [miner(0), miner(2, "stratum+tcp://evil.example:3333")]
        readings = [
            AsicReading(**{**{f: getattr(r, f) for f in r.__slots__}, "taken_at": later})
            for r in readings
        ]
        pub.publish_inventory(readings, later)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    fill_ledger(state / "ledger.db")
    fill_spool(state / "spool.db")
    cfg = tmp_path / "kuat.toml"
    cfg.write_text(config_text(state))
    return cfg


def kuat(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kuat.agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ},
    )


# --- numbers ----------------------------------------------------------------------------


def test_monthly_report_numbers(site: Path) -> None:
    cfg = parse_config(site.read_text())
    with EnergyLedger(cfg.agent.state_dir / "ledger.db") as led:
        report = monthly_report(led, cfg, "2026-11", rates={"grid": 10.0, "own_ongrid": 1.0})
    days = {(r["date"], r["meter"], r["source"]): r["kwh"] for r in report["days"]}
    assert days[("2026-11-01", "site", "grid")] == 12_000.0
    assert days[("2026-11-01", "hall-a", "grid")] == 7_200.0
    assert days[("2026-11-02", "site", "own_ongrid")] == 1_200.0
    # The submeter is behind the site meter: the fee basis is the site meter alone.
    assert report["totals"]["fee_basis_meters"] == ["site"]
    assert report["totals"]["fee_basis_kwh"] == {"grid": 12_000.0, "own_ongrid": 1_200.0}
    assert report["fee"]["grid"]["tenge"] == 120_000.0
    assert report["fee_total_tenge"] == 121_200.0
    assert report["due_by"] == "2026-12-25"
    assert report["coverage"]["site"]["hours_in_month"] == 720
    assert report["coverage"]["site"]["hours_with_data"] == 31  # 24 h + 6 h + the 00:00 reading
    for lang in LANGS:
        text = render_monthly(report, lang)
        assert "{" not in text and "121" in text


# --- commands ---------------------------------------------------------------------------


def test_report_monthly_json_csv_and_languages(site: Path) -> None:
    done = kuat("report", "monthly", "2026-11", "--config", str(site), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["totals"]["fee_basis_total_kwh"] == 13_200.0

    done = kuat("report", "monthly", "2026-11", "--config", str(site), "--csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert {"date": "2026-11-01", "meter": "site", "source": "grid", "kwh": "12000.000"} in rows

    words = {"kk": "Айлық электр энергиясы есебі", "ru": "Ежемесячный отчёт", "en": "Monthly"}
    numbers = {"kk": "13\u00a0200,000", "ru": "13\u00a0200,000", "en": "13,200.000"}
    for lang in LANGS:
        done = kuat("report", "monthly", "2026-11", "-c", str(site), "--lang", lang)
        assert done.returncode == 0, done.stderr
        assert words[lang] in done.stdout
        assert numbers[lang] in done.stdout
        assert "{" not in done.stdout


def test_report_monthly_refuses_bad_month_and_missing_ledger(site: Path, tmp_path: Path) -> None:
    done = kuat("report", "monthly", "2026-13", "--config", str(site))
    assert done.returncode == 2 and "YYYY-MM" in done.stderr
    empty = tmp_path / "empty.toml"
    empty.write_text(config_text(tmp_path / "nothing"))
    done = kuat("report", "monthly", "2026-11", "--config", str(empty))
    assert done.returncode == 1 and "no energy ledger" in done.stderr


def test_compliance_report_from_stored_state(site: Path) -> None:
    done = kuat("compliance", "report", "--config", str(site), "--json")
    # item 7 fails: a monitoring check sees it in the exit code (3), the report is printed all
    # the same; --exit-zero keeps 0 for scripts that only want the report
    assert done.returncode == 3, done.stderr
    assert kuat("compliance", "report", "--config", str(site), "--exit-zero").returncode == 0
    report = json.loads(done.stdout)
    assert report["evidence"] == "stored"
    assert report["item5"]["record"]["substation"] == "Ekibastuz-220"
    assert report["item7"]["status"] == "fail"  # miner 2 mines on a pool not accredited
    assert report["item7"]["offenders"][0]["pool"] == "evil.example"
    assert report["register"]["miners"] == 2
    assert report["register"]["outbox_pending"] >= 4  # nothing delivered: no broker
    texts = {
        "kk": "аккредиттелмеген",
        "ru": "неаккредитованн",
        "en": "not accredited",
    }
    for lang in LANGS:
        done = kuat("compliance", "report", "-c", str(site), "--lang", lang)
        assert done.returncode == 3, done.stderr
        assert texts[lang] in done.stdout
        assert "{" not in done.stdout


def test_compliance_text_renders_every_section(site: Path) -> None:
    done = kuat("compliance", "report", "--config", str(site), "--json", "--lang", "ru")
    report = json.loads(done.stdout)
    text = render_compliance(report, "ru")
    for heading in ("Пункт 5", "Пункт 7", "Квота", "Реестр аппаратно-программных комплексов"):
        assert heading in text


def test_register_export_includes_and_excludes(site: Path, tmp_path: Path) -> None:
    done = kuat("register", "export", "--config", str(site), "--since", "2026-11-03")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["action"], r["serial"]) for r in rows] == [
        ("include", "SN0002"),
        ("exclude", "SN0001"),
    ]
    assert rows[0]["location"] == "A / 3"
    assert rows[0]["rated_ths"] == "200.0" and rows[0]["manufacturer"] == "Bitmain"

    out = tmp_path / "register.json"
    done = kuat("register", "export", "-c", str(site), "--format", "json", "--out", str(out))
    assert done.returncode == 0, done.stderr
    body = json.loads(out.read_text())
    validate("register-export.v1", body)
    # No --since: a full declaration. Every current miner is included; SN0001 came and went
    # after the history began (1 Nov), so no filing ever listed it: not an exclusion.
    assert (body["include"], body["exclude"]) == (2, 0)
    assert [m["serial"] for m in body["transient"]] == ["SN0001"]
    assert "2 include, 0 exclude" in done.stderr
    # --json, as every other command spells it, is the same document
    same = kuat("register", "export", "-c", str(site), "--json")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["include"] == body["include"]


def test_register_export_of_an_agent_of_a_split_site_lists_its_shard(tmp_path: Path) -> None:
    """[cluster]: the agent publishes its own stream (…/agent/{id}/), and its export reads it."""
    state = tmp_path / "state"
    state.mkdir()
    fill_spool(state / "spool.db", agent_id="hall-a")
    cfg = tmp_path / "kuat.toml"
    cfg.write_text(
        config_text(state)
        + '\n[cluster]\nagent_id = "hall-a"\nservers = ["nats://127.0.0.1:4222"]\ntls = false\n'
    )
    done = kuat("register", "export", "--config", str(cfg), "--since", "2026-11-03")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["action"], r["serial"]) for r in rows] == [
        ("include", "SN0002"),
        ("exclude", "SN0001"),
    ]


def test_register_export_without_inventory_fails_clearly(tmp_path: Path) -> None:
    cfg = tmp_path / "kuat.toml"
    cfg.write_text(config_text(tmp_path / "nothing"))
    done = kuat("register", "export", "--config", str(cfg))
    assert done.returncode == 1
    assert "no inventory" in done.stderr
    assert not (tmp_path / "nothing" / "spool.db").exists()


# --- what an inspector acts on (issue 13) ---------------------------------------------------


def test_compliance_text_names_every_miner_that_fails_item_7(site: Path) -> None:
    # id, address and pool, as the JSON and the dashboard have them: an inspector can walk to it
    expected = {
        "en": "    SN0002 (10.1.0.12): pool evil.example is not accredited",
        "ru": "    SN0002 (10.1.0.12): пул evil.example не аккредитован",
        "kk": "    SN0002 (10.1.0.12): evil.example пулы аккредиттелмеген",
    }
    for lang in LANGS:
        done = kuat("compliance", "report", "-c", str(site), "--lang", lang, "--exit-zero")
        assert done.returncode == 0, done.stderr
        assert expected[lang] in done.stdout.splitlines(), done.stdout


def test_a_refused_allocation_file_shows_in_the_compliance_report(
    site: Path, tmp_path: Path
) -> None:
    quota = tmp_path / "quota.d"
    quota.mkdir()
    rows = "".join(
        f"ekibastuz-1,2026-11-25,grid,1,{h},{-0.25 if h == 5 else 0.5}\n" for h in range(1, 25)
    )
    (quota / "2026-11-25.csv").write_text("site,date,source,version,hour,mwh\n" + rows)
    site.write_text(site.read_text() + f'\n[quota]\nschedules = "{quota}"\n')
    done = kuat("compliance", "report", "-c", str(site), "--json", "--exit-zero")
    assert done.returncode == 0, done.stderr
    (refused,) = json.loads(done.stdout)["quota"]["refused_allocations"]
    assert refused["source"] == str(quota / "2026-11-25.csv")
    assert [r["code"] for r in refused["reasons"]] == [
        "schedule_refused",
        "schedule_value_negative",
    ]
    text = kuat("compliance", "report", "-c", str(site), "--lang", "en", "--exit-zero").stdout
    assert f"{quota / '2026-11-25.csv'}: refused" in text
    assert "Hour 5 is negative: -0.25 MWh" in text  # not "-0.2"
    ru = kuat("compliance", "report", "-c", str(site), "--lang", "ru", "--exit-zero").stdout
    assert "График квоты отклонён (1 причина)" in ru and "-0,25 МВт·ч" in ru


def test_a_pre_2023_connection_without_technical_conditions_is_not_exempt(site: Path) -> None:
    text = site.read_text()
    text = text.replace('tc_number = "TU-2024-15"', 'tc_number = ""').replace(
        "connected_on = 2024-05-01", "connected_on = 2021-03-01"
    )
    site.write_text(text)
    report = json.loads(kuat("compliance", "report", "-c", str(site), "--json").stdout)
    assert report["item5"]["status"] == "fail"
    assert [r["code"] for r in report["item5"]["reasons"]][:2] == [
        "grid_tc_missing",
        "grid_pre_2023",
    ]
    en = kuat("compliance", "report", "-c", str(site), "--lang", "en").stdout
    assert "Item 5: availability of technical conditions: fail" in en
    assert "technical conditions are still required" in en
    assert "only the 35 kV / 1 MW thresholds do not apply" in en
    kk = kuat("compliance", "report", "-c", str(site), "--lang", "kk").stdout
    assert "5-тармақ: техникалық шарттардың болуы: сәйкес емес" in kk
