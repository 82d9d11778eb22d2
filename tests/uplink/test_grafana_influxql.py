"""The InfluxQL variants of the dashboards (config/grafana/*-influxql.json): the same panels as
the PromQL ones, every query naming a documented measurement, field and tag, and every query
answering with data from a real InfluxDB fed by kuat's own encoders."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.servers import InfluxDB1
from tests.uplink.test_grafana_dashboards import (
    SITE,
    _cycle,
    documented_schema,
    load,
    panels,
    targets,
)

VARIANTS = {  # InfluxQL variant -> (its PromQL original, the site variable's measurement)
    "kuat-quota-influxql.json": ("kuat-quota.json", "quota"),
    "kuat-farm-influxql.json": ("kuat-farm.json", "asic"),
    "kuat-sites-influxql.json": ("kuat-sites.json", "quota"),
}
_FROM = re.compile(r'FROM "(\w+)"')
_FIELD = re.compile(r'(?:last|max|min|sum|count|top)\("(\w+)"')
_TAGS = re.compile(r'"(\w+)" =~? ')
_GROUP_TAGS = re.compile(r"GROUP BY ([^)]*?)(?: fill|$)")


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_same_panels_as_the_promql_dashboard(name: str) -> None:
    original, measurement = VARIANTS[name]
    ours, theirs = load(name), load(original)
    assert [p["title"] for p in panels(ours)] == [p["title"] for p in panels(theirs)]
    assert ours["uid"] != theirs["uid"] and ours["timezone"] == "Asia/Almaty"
    (ds,) = ours["__inputs"]
    assert ds["pluginId"] == "influxdb"
    site = next(v for v in ours["templating"]["list"] if v["name"] == "site")
    assert site["query"] == f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "site"'
    assert site["current"] == {}
    theirs_site = next(v for v in theirs["templating"]["list"] if v["name"] == "site")
    assert site.get("includeAll") == theirs_site.get("includeAll")


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_query_names_the_schema(name: str) -> None:
    metrics, tags = documented_schema()
    for title, t in targets(load(name)):
        q = t["query"]
        assert t["datasource"] == {"type": "influxdb", "uid": "${datasource}"}, title
        # the dashboard's time range, or the last minutes for a "now" panel, and the site
        assert ("$timeFilter" in q or "now() - 5m" in q) and "/^$site$/" in q, f"{title}: {q}"
        inner = q.rsplit("FROM (", 1)[-1]
        (measurement,) = set(_FROM.findall(inner))
        fields = [f for f in _FIELD.findall(inner) if f not in ("v", "p", "h")]
        assert fields, q
        for field in fields:
            assert f"{measurement}_{field}" in metrics, f"{title}: {measurement}.{field}"
        for tag in _TAGS.findall(q):
            if tag not in ("v", "p", "h"):  # a subquery's own fields
                assert tag in tags, f"{title}: tag {tag}"
        for group in _GROUP_TAGS.findall(q):
            named = {g.strip().strip('"') for g in group.split(",") if "time(" not in g}
            assert named <= tags, f"{title}: group {named - tags}"


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    with InfluxDB1(tmp_path_factory.mktemp("influxdb")) as server:
        yield server


def _substitute(q: str) -> str:
    out = q.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "1m")
    out = out.replace("/^$site$/", f"/^{re.escape(SITE)}$/")
    assert "$" not in out.replace("$/", ""), q
    return out


@pytest.mark.servers
def test_every_panel_query_returns_data(influx: InfluxDB1) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    influx.write([ln for at in (now - timedelta(minutes=1), now) for ln in _cycle(at)])
    for measurement in ("quota", "asic"):
        sites = influx.query(f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "site"')
        assert [v[1] for s in sites for v in s["values"]] == [SITE]
    empty = [
        f"{name} / {title} / {t['refId']}: {t['query']}"
        for name in sorted(VARIANTS)
        for title, t in targets(load(name))
        if not influx.query(_substitute(t["query"]))
    ]
    assert sum(len(targets(load(name))) for name in VARIANTS) >= 60
    assert not empty, "panels without data:\n" + "\n".join(empty)


@pytest.mark.servers
def test_panels_show_the_values_written(influx: InfluxDB1) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    influx.write(_cycle(now))
    by_title = {title: t for title, t in targets(load("kuat-quota-influxql.json"))}

    def last(title: str) -> float:
        (series,) = influx.query(_substitute(by_title[title]["query"]))
        return float(series["values"][-1][1])

    assert last("Energy used this hour") == pytest.approx(5.9)
    assert last("Allocation this hour") == pytest.approx(8.0)
    assert last("Item 7 — pools") == 2  # fail
    assert last("Balance status") == 0

    farm = {title: t for title, t in targets(load("kuat-farm-influxql.json"))}

    def value(title: str) -> float:
        (series,) = influx.query(_substitute(farm[title]["query"]))
        return float(series["values"][-1][1])

    # the figures the PromQL farm dashboard's test checks, from the same cycle
    assert value("Miners mining") == 2
    assert value("Miners sleeping") == 1
    assert value("Miners in error") == 1
    assert value("Pools not alive") == 1
    assert value("Total hashrate") == pytest.approx(126.4 + 109.8 + 0.0 + 12.5)
    (eff,) = influx.query(_substitute(farm["Efficiency by model (J/TH)"]["query"]))
    assert eff["tags"] == {"model": "WhatsMiner M50S"}  # only miners reporting both
    assert float(eff["values"][0][1]) == pytest.approx(3306.0 / 126.4)
