"""The shipped alert rules (config/alerts/kuat.rules.yml): valid for promtool, unit-tested by
promtool on series that should and should not fire, written against metric names the agent's
/metrics really serves (a real scrape of the dashboard, itself checked by `promtool check
metrics`). promtool is the Debian package `prometheus` (Makefile `servers`): skipped when
missing, a failure on CI."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kuat.agent.dashboard import Dashboard
from kuat.agent.runtime import Agent
from tests.agent.test_dashboard import NOW, config, fill
from tests.servers import find_binary

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "alerts" / "kuat.rules.yml"
UNIT = Path(__file__).with_name("kuat.rules.test.yml")
# Metrics the rules use that the agent does not serve: the scrape's own `up`.
SCRAPE_METRICS = {"up"}


@pytest.fixture(scope="module")
def promtool() -> str:
    return find_binary("promtool")


def run(promtool: str, *args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [promtool, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text("utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


def test_promtool_check_rules(promtool: str) -> None:
    out = run(promtool, "check", "rules", str(RULES))
    assert f"SUCCESS: {len(rules())} rules found" in out


def test_promtool_unit_tests(promtool: str) -> None:
    assert "SUCCESS" in run(promtool, "test", "rules", UNIT.name, cwd=UNIT.parent)


def test_the_unit_tests_catch_a_changed_rule(promtool: str, tmp_path: Path) -> None:
    # Devices down alerting at once instead of after 10 minutes must fail the unit tests.
    (tmp_path / "config" / "alerts").mkdir(parents=True)
    (tmp_path / "tests" / "alerts").mkdir(parents=True)
    rule = "expr: kuat_devices_down > 0\n        for: "
    changed = RULES.read_text("utf-8").replace(rule + "10m", rule + "0m")
    assert changed != RULES.read_text("utf-8")
    (tmp_path / "config" / "alerts" / RULES.name).write_text(changed, "utf-8")
    (tmp_path / "tests" / "alerts" / UNIT.name).write_text(UNIT.read_text("utf-8"), "utf-8")
    done = subprocess.run(
        [promtool, "test", "rules", UNIT.name],
        cwd=tmp_path / "tests" / "alerts",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "KuatDevicesDown" in done.stdout + done.stderr


def test_every_alert_is_unit_tested_firing() -> None:
    unit = yaml.safe_load(UNIT.read_text("utf-8"))
    fired = {
        case["alertname"]
        for test in unit["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert fired == {r["alert"] for r in rules()}


def test_every_alert_has_a_summary_in_kk_ru_and_en() -> None:
    for rule in rules():
        assert {"summary", "summary_ru", "summary_kk"} <= set(rule["annotations"]), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")


@pytest.fixture
async def scrape(tmp_path: Path) -> AsyncIterator[str]:
    """/metrics of a real dashboard on a loopback port, over a site with data everywhere."""
    agent = Agent(config(tmp_path), clock=lambda: NOW)
    fill(agent)
    agent.uplinks.record_lines(["asic,site=s hashrate_ths=1 1"])
    dashboard = Dashboard(agent, "127.0.0.1", 0)
    await dashboard.start()
    try:
        async with httpx.AsyncClient(base_url=dashboard.url.rstrip("/"), timeout=5) as c:
            yield (await c.get("/metrics")).text
    finally:
        await dashboard.stop()
        agent.uplinks.spool.close()
        agent.ledger.close()


async def test_rules_use_only_metrics_the_agent_serves(scrape: str) -> None:
    served = {s.name for f in text_string_to_metric_families(scrape) for s in f.samples}
    used = {
        name
        for rule in rules()
        for name in re.findall(r"\b([a-z_][a-z0-9_]*)(?=\s*[{\[])", rule["expr"])
        if name not in ("ignoring", "on", "by", "without", "group_left", "group_right")
    }
    assert used - SCRAPE_METRICS, "no metric names found: the pattern is broken"
    assert used - SCRAPE_METRICS <= served, sorted(used - SCRAPE_METRICS - served)


async def test_promtool_check_metrics_on_a_real_scrape(promtool: str, scrape: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(scrape.encode()), timeout=60)
    # promtool lints names, types and help; a problem is printed and the exit code is 3.
    assert proc.returncode == 0, out.decode()
