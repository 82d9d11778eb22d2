"""The Grafana dashboards in config/grafana/ against the schema, and against a real server.

Structural: every metric a panel queries is ``<measurement>_<field>`` for a measurement and field
that uplink/SCHEMA.md (device telemetry) or the README ("What leaves the host": quota,
compliance, balance, curtail) documents, and every label it filters, groups or names a legend by
is a documented tag. Live: a realistic cycle written with kuat's own encoders into a real
VictoriaMetrics answers every panel's query with at least one series (an empty panel is what a
user notices).
"""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.collectors.readings import (
    AsicReading,
    AsicTemps,
    DeviceError,
    DeviceKind,
    MeterReading,
    PduInlet,
    PduOutlet,
    PduReading,
    PoolInfo,
)
from kuat.uplink.lineproto import encode, encode_point
from tests.servers import VictoriaMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = {
    "kuat-quota.json": "quota_status_code",
    "kuat-farm.json": "asic_state_code",
    "kuat-sites.json": "quota_status_code",
}

# --- the schema, read from the documents a user reads -------------------------------------

_TICK = re.compile(r"`([^`]+)`")
_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")
_RANGE = re.compile(r"^([a-z0-9_]*?)([a-z]*)(\d+)\.\.(?:[a-z]*)(\d+)$")  # p_kw_l1..l3


def _expand(token: str) -> list[str]:
    m = _RANGE.match(token)
    if m is None:
        return [token] if _IDENT.match(token) else []
    head, letters, lo, hi = m.groups()
    return [f"{head}{letters}{i}" for i in range(int(lo), int(hi) + 1)]


def documented_schema() -> tuple[set[str], set[str]]:
    """(metric names ``m_f``, tag names) documented in uplink/SCHEMA.md and the README."""
    metrics: set[str] = set()
    tags: set[str] = set()
    measurements: set[str] = set()
    for line in (ROOT / "uplink" / "SCHEMA.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        names = [t for t in _TICK.findall(cells[0]) if _IDENT.match(t)]
        fields = [f for t in _TICK.findall(cells[2]) for f in _expand(t)]
        tags.update(t for t in _TICK.findall(cells[1]) if _IDENT.match(t))
        if len(names) != 1 or not fields:  # the "producer-defined" row documents no field
            continue
        measurements.add(names[0])
        metrics.update(f"{names[0]}_{f}" for f in fields)

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What leaves the host", 1)[1].split("\n## ", 1)[0]
    sentences = re.finditer(
        r"`([a-z]+)` points (?:\(tag ([^)]*)\) )?carry (.*?)\.(?=\s|$)", section, re.S
    )
    for m in sentences:
        measurement, tag_part, body = m.groups()
        measurements.add(measurement)
        if tag_part:
            tags.update(_TICK.findall(tag_part)[:1])  # "(tag `mode`: `dry_run` or `enforce`)"
        body_tags = re.findall(r"(?:tagged by|energy) `([a-z_]+)`", body)
        tags.update(body_tags)
        for token in re.findall(r"`([a-z][a-z0-9_]*)`(?!:)", body):
            if token not in body_tags:
                metrics.add(f"{measurement}_{token}")
    tags -= measurements  # "as `pdu` + `inlet`" names a measurement, not a tag
    return metrics, tags


def test_schema_extractor_reads_both_documents() -> None:
    metrics, tags = documented_schema()
    for name in (
        "asic_hashrate_ths",
        "asic_state_code",
        "pdu_total_w",
        "pdu_outlet_on",
        "meter_p_kw_l3",
        "meter_v_ll_l31",
        "meter_demand_kw",
        "agent_device_up",
        "quota_used_kwh",
        "quota_under_use",
        "compliance_peak_demand_kw",
        "compliance_miners_checked",
        "balance_miners_unreported",
        "curtail_planned_load_kw",
        "curtail_miners_asleep",
    ):
        assert name in metrics, name
    for not_a_field in ("quota_site", "quota_source", "compliance_item", "curtail_mode"):
        assert not_a_field not in metrics
    assert {"site", "device", "model", "kind", "source", "item", "mode"} <= tags
    assert "pdu" not in tags and "dry_run" not in tags


# --- PromQL: the names an expression uses -------------------------------------------------

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
}
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL/MetricsQL expression (not functions, labels or keywords)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    e = _GROUPING.sub(" ", e)
    names: set[str] = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", e):
        if m.group(2) is None and m.group(1).lower() not in _KEYWORDS:
            names.add(m.group(1))
    return names


def label_names(expr: str) -> set[str]:
    """Labels matched in selectors and named in by/without/on/ignoring lists."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    found = {m for sel in re.findall(r"\{([^}]*)\}", e) for m in re.findall(r"(\w+)\s*[=!]", sel)}
    for group in _GROUPING.findall(e):
        found.update(x.strip() for x in group.split(",") if x.strip())
    return found


def test_extractors_on_known_expressions() -> None:
    expr = (
        'sum by (model) (asic_power_w{site=~"$site"} and on (site, device) '
        'asic_hashrate_ths{site=~"$site"} > 0) / 1e3 + count(agent_device_up == 0) '
        "+ increase(meter_import_kwh[$__rate_interval]) offset 5m"
    )
    assert metric_names(expr) == {
        "asic_power_w",
        "asic_hashrate_ths",
        "agent_device_up",
        "meter_import_kwh",
    }
    assert label_names(expr) == {"model", "site", "device"}
    metrics, _ = documented_schema()
    assert metric_names("topk(10, asic_temp_chip_max)") - metrics == {"asic_temp_chip_max"}


# --- the dashboards -----------------------------------------------------------------------


_CYRILLIC = re.compile(r"[\u0400-\u04ff]")


def load(name: str) -> dict:
    return json.loads((ROOT / "config" / "grafana" / name).read_text())


def panels(dash: dict) -> list[dict]:
    out: list[dict] = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows keep their panels inside
    return out


def targets(dash: dict) -> list[tuple[str, dict]]:
    return [(p["title"], t) for p in panels(dash) if p["type"] != "row" for t in p["targets"]]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_structure(name: str) -> None:
    dash = load(name)
    assert dash["schemaVersion"] >= 38
    assert dash["title"].startswith("kuat — ")
    assert _CYRILLIC.search(dash["description"]), "the description carries kk/ru text"
    every = panels(dash)
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert dash["uid"] and len(dash["uid"]) <= 40

    (ds_input,) = dash["__inputs"]
    assert ds_input["type"] == "datasource" and ds_input["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["datasource"]["current"]["value"] == f"${{{ds_input['name']}}}"
    site = variables["site"]
    assert site["query"]["query"] == f"label_values({DASHBOARDS[name]}, site)"
    assert site["current"] == {}, "no site name may be baked into a shared dashboard"
    # Astana time (UTC+5, no DST): an hour on the screen is the quota's hour, whatever the
    # viewer's browser says
    assert dash["timezone"] == "Asia/Almaty"
    if name == "kuat-sites.json":  # every site at once by default
        assert site["includeAll"] and site["multi"] and site["allValue"] == ".*"

    metrics, tags = documented_schema()
    var_metric, var_label = re.fullmatch(
        r"label_values\((\w+),\s*(\w+)\)", site["query"]["query"]
    ).groups()
    assert var_metric in metrics and var_label in tags
    titles = [p["title"] for p in every if p["type"] != "row"]
    assert len(titles) == len(set(titles)), "panel titles must be unique"
    for panel in every:
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert not _CYRILLIC.search(title), f"{title}: titles are English"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], f"{title}: no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), title
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults.get("unit") or defaults.get("mappings"), f"{title}: no unit"
        units = set()
        for t in panel["targets"]:
            assert t["datasource"] == panel["datasource"], title
            expr = t.get("expr", "")
            assert expr.strip(), f"{title}/{t['refId']}: no expr"
            used = metric_names(expr)
            assert used, f"{title}: {expr!r} queries no metric"
            assert used <= metrics, f"{title}: not in the schema: {sorted(used - metrics)}"
            assert label_names(expr) <= tags, f"{title}: {sorted(label_names(expr) - tags)}"
            legend_labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")))
            assert legend_labels <= tags, f"{title}: legend {sorted(legend_labels - tags)}"
            for selector in re.findall(r"\{([^}]*)\}", expr):
                for value in re.findall(r'site\s*=~?\s*"([^"]*)"', selector):
                    assert value == "$site", f"{title}: hard-coded site {value!r}"
                assert "site" in selector, f"{title}: {expr!r} ignores the site variable"
            units.update(m.rsplit("_", 1)[1] for m in used)
        expected = {"kwh": "kwatth", "kw": "kwatt", "ths": "THs", "c": "celsius"}
        if len(units) == 1 and (suffix := units.pop()) in expected and not defaults.get("mappings"):
            assert defaults["unit"] == expected[suffix], f"{title}: unit {defaults['unit']!r}"


def test_quota_dashboard_status_mappings_match_readme() -> None:
    """The value mappings say what the README says the codes mean."""
    dash = load("kuat-quota.json")
    by_metric: dict[str, dict[str, str]] = {}
    for p in panels(dash):
        for mapping in p.get("fieldConfig", {}).get("defaults", {}).get("mappings", []):
            texts = {k: v["text"].lower() for k, v in mapping["options"].items()}
            for t in p["targets"]:
                for m in metric_names(t["expr"]):
                    by_metric.setdefault(m, texts)
                    assert by_metric[m] == texts, f"{p['title']}: mappings differ for {m}"
    assert by_metric["quota_status_code"] == {
        "0": "ok",
        "1": "warn",
        "2": "over",
        "3": "no allocation",
        "4": "no meter data",
    }
    assert by_metric["compliance_status_code"] == {
        "0": "pass",
        "1": "exempt",
        "2": "fail",
        "3": "unknown",
    }
    assert by_metric["balance_status_code"] == {
        "0": "ok",
        "1": "check data",
        "2": "unregistered load",
        "3": "unknown",
    }
    readme = (ROOT / "README.md").read_text()
    assert "`status_code` (0 ok, 1 warn, 2 over, 3 no allocation, 4 no meter data)" in readme
    assert "`status_code` (0 pass, 1 exempt, 2 fail, 3 unknown)" in readme
    assert "(0 ok, 1 check data, 2 unregistered load, 3 unknown)" in readme
    texts = json.dumps(dash)
    for item in ("5", "7"):
        assert f'compliance_status_code{{site=\\"$site\\", item=\\"{item}\\"}}' in texts


# --- live: a cycle written by kuat's encoders, every panel queried ------------------------

SITE = "Экибастуз-1"


def _cycle(at: datetime) -> list[str]:
    """One realistic cycle of a small site: four miners (mining, stock without power,
    sleeping, error with a dead pool), a PDU, the substation meter, a miner not answering,
    and the quota job's and the curtailment loop's points with their field names."""
    alive = (PoolInfo("stratum+tcp://pool.kz:3333", "farm.w1", "Alive", True),)
    dead = (PoolInfo("stratum+tcp://pool.kz:3333", "farm.w4", "Dead", True),)
    miners = [
        AsicReading(
            ip="10.1.0.11",
            port=4028,
            taken_at=at,
            vendor="MicroBT",
            firmware_family="whatsminer",
            model="WhatsMiner M50S",
            serial="WM50S-0001",
            hashrate_ths=126.4,
            hashrate_nominal_ths=126.0,
            power_w=3306.0,
            temps_c=AsicTemps(board=(71.0, 73.5), chip=(84.0, 86.5)),
            fans_rpm=(6100, 6020),
            pools=alive,
            uptime_s=86_400,
            state="mining",
        ),
        AsicReading(
            ip="10.1.0.12",
            port=4028,
            taken_at=at,
            vendor="Bitmain",
            firmware_family="stock",
            model="Antminer S19 Pro",
            serial="S19P-0002",
            hashrate_ths=109.8,
            hashrate_nominal_ths=110.0,
            temps_c=AsicTemps(board=(62.0, 64.0), chip=(78.0, 79.5)),
            fans_rpm=(5400, 5280, 5600, 5500),
            pools=alive,
            uptime_s=43_200,
            state="mining",
        ),
        AsicReading(
            ip="10.1.0.13",
            port=4028,
            taken_at=at,
            vendor="Bitmain",
            firmware_family="braiins",
            model="Antminer S21",
            serial="S21-0003",
            hashrate_ths=0.0,
            power_w=18.0,
            temps_c=AsicTemps(board=(31.0,), chip=(33.0,)),
            pools=alive,
            uptime_s=600,
            state="sleeping",
        ),
        AsicReading(
            ip="10.1.0.14",
            port=4028,
            taken_at=at,
            vendor="Bitmain",
            firmware_family="stock",
            model="Antminer S19j Pro",
            serial="S19J-0004",
            hashrate_ths=12.5,
            temps_c=AsicTemps(board=(88.0,), chip=(95.0,)),
            fans_rpm=(0, 4800),
            pools=dead,
            uptime_s=120,
            state="error",
            errors=("chain 2 lost",),
        ),
    ]
    pdu = PduReading(
        host="10.1.1.2",
        vendor="APC",
        model="AP8886",
        serial="PDU-0001",
        taken_at=at,
        inlets=(PduInlet("1", "L1", 231.0, 16.2, 3700.0, 10_234.5, 0.99),),
        outlets=(PduOutlet(1, None, 14.3, 3306.0, 5_012.2, "on"),),
        total_watts=6712.0,
    )
    meter = MeterReading(
        host="10.1.1.3",
        unit=1,
        profile="mercury234",
        taken_at=at,
        p_kw=7.1,
        p_kw_phases=(2.4, 2.4, 2.3),
        v_ln=(231.0, 230.5, 229.8),
        i_a=(10.4, 10.4, 10.0),
        pf=0.98,
        f_hz=50.0,
        import_kwh=120_455.2,
        demand_kw=6.9,
    )
    down = DeviceError(DeviceKind.ASIC, "10.1.0.15", 4028, at, "timed out after 2.0 s")
    lines = encode([*miners, pdu, meter, down], SITE)
    points = [
        (
            "quota",
            {"site": SITE, "source": "grid"},
            {
                "status_code": 1,
                "hour_ending": 14,
                "allocation_kwh": 8.0,
                "used_kwh": 5.9,
                "forecast_kwh": 7.7,
                "remaining_kwh": 2.1,
                "allowed_kw": 7.6,
                "margin_kwh": 0.3,
                "p_kw": 7.1,
                "demand_kw": 6.9,
                "under_use": 0,
            },
        ),
        (
            "compliance",
            {"site": SITE, "item": "5"},
            {"status_code": 0, "peak_demand_kw": 7.4},
        ),
        (
            "compliance",
            {"site": SITE, "item": "7"},
            {"status_code": 2, "offenders": 1, "miners_checked": 4},
        ),
        (
            "balance",
            {"site": SITE},
            {
                "status_code": 0,
                "meter_kw": 7.1,
                "pdu_kw": 6.712,
                "miners_kw": 6.6,
                "miners_unreported": 2,
            },
        ),
        (
            "curtail",
            {"site": SITE, "mode": "dry_run"},
            {
                "allowed_kw": 7.6,
                "order_kw": 7.0,
                "load_kw": 7.1,
                "planned_load_kw": 6.9,
                "sleep_actions": 1,
                "restore_actions": 0,
                "held": 0,
                "miners_asleep": 1,
            },
        ),
    ]
    for measurement, tags, fields in points:
        line = encode_point(measurement, tags, fields, at)
        assert line is not None
        lines.append(line)
    return lines


def test_cycle_uses_the_producers_field_names() -> None:
    """The live test's quota/compliance/balance/curtail fields are the ones the agent writes."""
    source = (ROOT / "agent" / "quota_job.py").read_text() + (
        ROOT / "agent" / "curtailment.py"
    ).read_text()
    fields = set()
    for line in _cycle(datetime(2026, 3, 1, 12, tzinfo=UTC)):
        measurement = line.split(",", 1)[0]
        if measurement in ("quota", "compliance", "balance", "curtail"):
            assert f'"{measurement}"' in source
            fields.update(kv.split("=", 1)[0] for kv in line.split(" ")[1].split(","))
    missing = {f for f in fields if f'"{f}"' not in source}
    assert not missing, f"not written by agent/: {sorted(missing)}"


def _substitute(expr: str) -> str:
    out = expr.replace("${site}", SITE).replace("$site", SITE)
    for var in ("__rate_interval", "__interval", "__range"):
        out = out.replace(f"${{{var}}}", "5m").replace(f"${var}", "5m")
    assert "$" not in out, f"unsubstituted variable in {expr!r}"
    return out


def _write(vm: VictoriaMetrics, lines: list[str]) -> None:
    req = urllib.request.Request(
        f"{vm.url}/api/v2/write?org=o&bucket=b", data="\n".join(lines).encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204


@pytest.mark.servers
def test_every_panel_query_returns_data(victoria_metrics: VictoriaMetrics) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    lines = [line for at in (now - timedelta(minutes=1), now) for line in _cycle(at)]
    _write(victoria_metrics, lines)
    at = now.timestamp() + 1

    for metric in DASHBOARDS.values():  # what the site variable's label_values() lists
        sites = victoria_metrics.query(f"count by (site) ({metric})", at)
        assert [s["metric"] for s in sites] == [{"site": SITE}], metric

    empty: list[str] = []
    checked = 0
    for name in sorted(DASHBOARDS):
        for title, target in targets(load(name)):
            expr = _substitute(target["expr"])
            result = victoria_metrics.query(expr, at)
            checked += 1
            if not result:
                empty.append(f"{name} / {title} / {target['refId']}: {expr}")
    assert checked >= 40
    assert not empty, "panels without data:\n" + "\n".join(empty)


@pytest.mark.servers
def test_panels_show_the_values_written(victoria_metrics: VictoriaMetrics) -> None:
    """A few panels whose numbers a user would check by hand."""
    now = datetime.now(UTC).replace(microsecond=0)
    _write(victoria_metrics, _cycle(now))
    at = now.timestamp() + 1
    by_title = {title: t for title, t in targets(load("kuat-farm.json"))}

    def value(title: str) -> float:
        (series,) = victoria_metrics.query(_substitute(by_title[title]["expr"]), at)
        return float(series["value"][1])

    assert value("Miners mining") == 2
    assert value("Miners sleeping") == 1
    assert value("Miners in error") == 1
    assert value("Pools not alive") == 1
    assert value("Total hashrate") == pytest.approx(126.4 + 109.8 + 0.0 + 12.5)
    (eff,) = victoria_metrics.query(_substitute(by_title["Efficiency by model (J/TH)"]["expr"]), at)
    assert eff["metric"] == {"model": "WhatsMiner M50S"}  # only miners reporting both
    assert float(eff["value"][1]) == pytest.approx(3306.0 / 126.4)
    hottest = victoria_metrics.query(_substitute(by_title["Hottest chips (top 10)"]["expr"]), at)
    assert max(float(s["value"][1]) for s in hottest) == 95.0
