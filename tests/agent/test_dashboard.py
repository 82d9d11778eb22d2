"""The local dashboard as an operator and a monitoring system meet it: the real aiohttp server on a
free loopback port, a site state built from real readings, requests over HTTP with httpx."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kuat.agent.config import ConfigError, KuatConfig, parse_config
from kuat.agent.dashboard import Dashboard, choose_lang
from kuat.agent.runtime import Agent
from kuat.collectors.readings import (
    AsicReading,
    DeviceError,
    DeviceKind,
    MeterReading,
    PduReading,
    PoolInfo,
)
from kuat.quota.evaluate import QuotaState, QuotaStatus
from kuat.quota.grid import GridConnection, check_grid_connection
from kuat.quota.pools import check_pools
from kuat.quota.reasons import Code, Reason
from kuat.quota.schedule import EnergySource

# 09:03:12 UTC is 14:03:12 at the site (Astana, UTC+5).
NOW = datetime(2026, 11, 25, 9, 3, 12, tzinfo=UTC)
ACCREDITED = "pool.kz-mining.example"
XSS = "<script>alert('x')</script>"


def config(state_dir: Path, *, listen: str = "127.0.0.1:9120", language: str = "en") -> KuatConfig:
    return parse_config(
        f"""
[site]
id = "ekibastuz-1"
name = "Hall A"
[agent]
state_dir = "{state_dir}"
language = "{language}"
[intervals]
quota = 1
flush = 1
inventory = 5
[compliance]
accredited_pools = ["{ACCREDITED}"]
[dashboard]
listen = "{listen}"
"""
    )


def miner(i: int, *, hashrate: float, power: float, state: str = "mining", pool: str = ACCREDITED):
    return AsicReading(
        ip=f"127.60.0.{i}",
        port=4028,
        taken_at=NOW,
        vendor="Bitmain",
        model="Antminer S21",
        serial=f"SN{i:04d}",
        hashrate_ths=hashrate,
        power_w=power,
        pools=(PoolInfo(f"stratum+tcp://{pool}:3333", "kz.w1", "Alive", True),),
        state=state,  # type: ignore[arg-type]
    )


def fill(agent: Agent) -> None:
    """A site as the jobs leave it: four miners answering (one asleep, one on a foreign pool),
    one miner and one PDU down, the site meter, a quota in WARN, items 5 and 7 checked."""
    s = agent.state
    s.asics[("127.60.0.1", 4028)] = miner(1, hashrate=100.0, power=3250.0)
    s.asics[("127.60.0.2", 4028)] = miner(2, hashrate=110.0, power=3400.0)
    s.asics[("127.60.0.3", 4028)] = miner(3, hashrate=100.5, power=3300.0, pool="evil.example")
    s.asics[("127.60.0.4", 4028)] = miner(4, hashrate=0.0, power=40.0, state="sleeping")
    s.asics[("127.60.0.5", 4028)] = DeviceError(
        DeviceKind.ASIC, "127.60.0.5", 4028, NOW, f"reply is not JSON: {XSS}"
    )
    s.pdus["pdu-a1"] = PduReading("127.61.0.1", "APC", "AP8959", "PDU1", NOW, total_watts=12_000.0)
    s.pdus["pdu-a2"] = DeviceError(DeviceKind.PDU, "127.61.0.2", 161, NOW, "timed out after 3 s")
    meter = MeterReading("127.62.0.1", 1, "schneider-pm5560", NOW, p_kw=612.5)
    s.meters["substation"] = meter
    s.record_site_meter(meter)
    s.quota = QuotaStatus(
        site="ekibastuz-1",
        source=EnergySource.GRID,
        at=NOW,
        operating_date="2026-11-25",
        hour_ending=15,
        hour_start=NOW.replace(minute=0, second=0),
        hour_end=NOW.replace(minute=0, second=0) + timedelta(hours=1),
        status=QuotaState.WARN,
        reason=Reason.of(Code.QUOTA_WARN),
        allocation_kwh=600.0,
        allocation_version=3,
        used_kwh=123.4,
        used_until=NOW,
        p_kw=612.5,
        forecast_kwh=580.2,
        remaining_kwh=476.6,
        allowed_kw=600.0,
        margin_kwh=19.8,
        under_use=False,
        demand_kw=610.0,
        demand_interval_start=NOW.replace(minute=0, second=0),
        last_demand_kw=605.0,
    )
    s.grid = check_grid_connection(
        GridConnection("TU-1", None, "REC", "PS 35", 35, 12.0, date(2024, 5, 20)), 612.5
    )
    s.pools = check_pools(s.asic_readings(), [ACCREDITED], data_centre_registered=True)
    agent.started_at = NOW - timedelta(minutes=5)
    for spec in agent.jobs():
        agent.job_success_at[spec.name] = NOW - timedelta(seconds=1)
        s.cycles[spec.name] = 7


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    a = Agent(config(tmp_path), clock=lambda: NOW)
    fill(a)
    return a


@pytest.fixture
async def client(agent: Agent) -> AsyncIterator[httpx.AsyncClient]:
    dashboard = Dashboard(agent, "127.0.0.1", 0)  # the OS picks a free port
    await dashboard.start()
    try:
        async with httpx.AsyncClient(base_url=dashboard.url.rstrip("/"), timeout=5) as c:
            yield c
    finally:
        await dashboard.stop()
        agent.uplinks.spool.close()
        agent.ledger.close()


# --- the page ---------------------------------------------------------------------------


async def test_page_shows_the_snapshot(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "3 / 5 (+1 sleeping)" in page  # up / total, the asleep one counted apart
    assert "310.5 TH/s" in page
    assert "10.0 kW" in page  # miners' own reports: 3250 + 3400 + 3300 + 40 W
    assert "12.0 kW" in page  # PDU
    assert "612.5 kW" in page  # site meter
    assert "123.4 kWh / 600.0 kWh" in page
    assert "580.2 kWh" in page
    assert "WARN" in page  # quota status
    assert "pass" in page  # item 5
    assert "fail (1 miners on a pool that is not accredited)" in page  # item 7
    assert "SN0003" in page and "stratum+tcp://evil.example:3333" in page
    assert "telemetry 0 · register 0" in page
    # the snapshot's time in the site's zone, not UTC
    assert "2026-11-25 14:03:12 (UTC+05:00)" in page
    # the down table: kind, device, cause
    assert "127.60.0.5:4028" in page and "127.61.0.2:161" in page
    assert "timed out after 3 s" in page
    assert '<meta http-equiv="refresh" content="10">' in page
    # nothing fetched from elsewhere: the farm LAN may have no internet
    assert "src=" not in page and "<link" not in page and "https://" not in page


async def test_device_text_is_escaped(client: httpx.AsyncClient) -> None:
    page = (await client.get("/")).text
    assert XSS not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "<script" not in page


async def test_languages(client: httpx.AsyncClient) -> None:
    kk = (await client.get("/", params={"lang": "kk"})).text
    assert "Жұмыс істеп тұрған майнерлер" in kk and '<html lang="kk">' in kk
    assert "ЕСКЕРТУ" in kk  # WARN in Kazakh
    ru = await client.get("/", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.8"})
    assert "Майнеры в работе" in ru.text and ru.headers["content-language"] == "ru"
    # the query wins over the header; links to the other two languages are on every page
    en = (await client.get("/?lang=en", headers={"Accept-Language": "kk"})).text
    assert "Miners up" in en
    assert 'href="?lang=kk"' in en and 'href="?lang=ru"' in en


async def test_config_language_when_the_browser_says_nothing(tmp_path: Path) -> None:
    agent = Agent(config(tmp_path, language="kk"), clock=lambda: NOW)
    fill(agent)
    dashboard = Dashboard(agent, "127.0.0.1", 0)
    await dashboard.start()
    try:
        async with httpx.AsyncClient() as c:
            r = await c.get(dashboard.url, headers={"Accept-Language": "de-DE"})
    finally:
        await dashboard.stop()
        agent.uplinks.spool.close()
        agent.ledger.close()
    assert "Жұмыс істеп тұрған майнерлер" in r.text


@pytest.mark.parametrize(
    ("query", "accept", "expected"),
    [
        (None, None, "en"),
        ("kk", "ru", "kk"),
        ("de", "ru", "ru"),
        (None, "en;q=0.5, kk;q=0.8", "kk"),
        (None, "fr, ru-RU;q=0.7", "ru"),
        (None, "ru;q=0, en", "en"),
        (None, "ru;q=bogus", "en"),
        (None, "*", "en"),
    ],
)
def test_choose_lang(query: str | None, accept: str | None, expected: str) -> None:
    assert choose_lang(query, accept, "en") == expected


# --- JSON, health, metrics --------------------------------------------------------------


async def test_api_status(client: httpx.AsyncClient, agent: Agent) -> None:
    agent.uplinks.record_lines(["asic,site=s hashrate_ths=1 1", "asic,site=s hashrate_ths=2 2"])
    body = (await client.get("/api/status")).json()
    assert body["site"] == "ekibastuz-1"
    assert body["at"] == "2026-11-25T09:03:12Z"
    assert body["at_site"] == "2026-11-25T14:03:12+05:00"
    assert (body["miners_up"], body["miners_total"], body["miners_sleeping"]) == (3, 5, 1)
    assert body["hashrate_ths"] == pytest.approx(310.5)
    assert body["metered_kw"] == 612.5 and body["pdu_power_w"] == 12_000.0
    assert body["allocation_kwh"] == 600.0 and body["quota_status"] == "warn"
    assert body["grid_status"] == "pass" and body["pools_status"] == "fail"
    assert body["pools_offenders"] == 1 and body["spool_pending"] == 2
    assert body["devices_down"] == 2 and body["health"] == "ok"
    assert body["down"][0] == {
        "kind": "asic",
        "device_id": "127.60.0.5:4028",
        "host": "127.60.0.5",
        "port": 4028,
        "cause": f"reply is not JSON: {XSS}",
        "at": "2026-11-25T09:03:12Z",
    }
    assert body["pool_offenders"][0]["device_id"] == "SN0003"


async def test_healthz_ok(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["stale"] == []
    assert set(body["jobs"]) == {"quota", "inventory", "flush"}
    assert body["jobs"]["quota"]["last_success"] == "2026-11-25T09:03:11Z"
    assert body["jobs"]["quota"]["cycles"] == 7


async def test_healthz_names_a_stale_job(client: httpx.AsyncClient, agent: Agent) -> None:
    # flush runs every 1 s here: three intervals without success make it stale
    agent.job_success_at["flush"] = NOW - timedelta(seconds=4)
    agent.state.last_errors["flush"] = "did not finish within 1 s"
    r = await client.get("/healthz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "stale" and body["stale"] == ["flush"]
    assert body["jobs"]["flush"]["last_error"] == "did not finish within 1 s"
    assert "stale: flush" in (await client.get("/")).text


async def test_healthz_starting_before_the_first_cycle(
    client: httpx.AsyncClient, agent: Agent
) -> None:
    agent.started_at = NOW
    agent.job_success_at.clear()
    r = await client.get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == "starting"
    # a job that never completed in three intervals is stale, not starting
    agent.started_at = NOW - timedelta(seconds=10)
    body = (await client.get("/healthz")).json()
    assert body["status"] == "stale" and "quota" in body["stale"]


async def test_metrics(client: httpx.AsyncClient, agent: Agent) -> None:
    agent.uplinks.record_lines(["asic,site=s hashrate_ths=1 1"])
    agent.telemetry_sent = 42
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }
    assert samples[("kuat_miners", (("state", "up"),))] == 3
    assert samples[("kuat_miners", (("state", "sleeping"),))] == 1
    assert samples[("kuat_miners", (("state", "total"),))] == 5
    assert samples[("kuat_hashrate_ths", ())] == pytest.approx(310.5)
    assert samples[("kuat_power_watts", (("source", "meter"),))] == 612_500
    assert samples[("kuat_power_watts", (("source", "pdus"),))] == 12_000
    assert samples[("kuat_power_watts", (("source", "miners"),))] == 9990
    assert samples[("kuat_quota_energy_kwh", (("kind", "used"),))] == 123.4
    assert samples[("kuat_quota_energy_kwh", (("kind", "allocation"),))] == 600
    assert samples[("kuat_quota_energy_kwh", (("kind", "forecast"),))] == 580.2
    assert samples[("kuat_check_status", (("check", "quota"), ("status", "warn")))] == 1
    assert samples[("kuat_devices_down", ())] == 2
    assert samples[("kuat_spool_pending_lines", ())] == 1
    assert samples[("kuat_outbox_pending_messages", ())] == 0
    assert samples[("kuat_telemetry_sent_lines_total", ())] == 42
    assert samples[("kuat_spool_dropped_lines_total", ())] == 0
    last_quota = samples[("kuat_job_last_success_timestamp_seconds", (("job", "quota"),))]
    assert last_quota == (NOW - timedelta(seconds=1)).timestamp()


async def test_metrics_leave_out_what_is_unknown(client: httpx.AsyncClient, agent: Agent) -> None:
    agent.state.meters.clear()
    agent.state.site_meter_history.clear()
    agent.state.quota = None
    text = (await client.get("/metrics")).text
    assert 'kuat_power_watts{source="meter"}' not in text  # unknown is not 0 W
    assert "kuat_quota_energy_kwh{" not in text


async def test_read_only(client: httpx.AsyncClient) -> None:
    for path in ("/", "/api/status", "/healthz", "/metrics"):
        assert (await client.post(path)).status_code == 405


# --- config -----------------------------------------------------------------------------


def test_listen_default_is_loopback() -> None:
    cfg = parse_config('[site]\nid = "s1"\n')
    assert cfg.dashboard.address() == ("127.0.0.1", 9120)


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("", None),
        ("0.0.0.0:9120", ("0.0.0.0", 9120)),
        ("[::1]:9200", ("::1", 9200)),
        ("localhost:9120", ("localhost", 9120)),
    ],
)
def test_listen_accepted(listen: str, address: tuple[str, int] | None) -> None:
    cfg = parse_config(f'[site]\nid = "s1"\n[dashboard]\nlisten = "{listen}"\n')
    assert cfg.dashboard.address() == address


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('"9120"', "give host:port"),
        ('":9120"', "give host:port"),  # every interface only when written out
        ('"farm.lan:9120"', "IP address or localhost"),
        ('"127.0.0.1:70000"', "port must be 1-65535"),
        ('"::1:9120"', "IPv6 address in brackets"),
        ("9120", "valid string"),
    ],
)
def test_listen_refused_with_its_key(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f'[site]\nid = "s1"\n[dashboard]\nlisten = {value}\n')
    [problem] = err.value.problems
    assert problem.path == "dashboard.listen" and problem.line == 4
    assert fragment in problem.message


# --- the real agent ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_agent_serves_healthz_while_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    agent = Agent(config(tmp_path, listen=f"127.0.0.1:{port}"))
    caplog.set_level(logging.INFO, logger="kuat.dashboard")
    run = asyncio.create_task(agent.run(stop_after_s=10))
    r: httpx.Response | None = None
    try:
        async with httpx.AsyncClient(timeout=2) as c:
            for _ in range(50):
                await asyncio.sleep(0.05)
                try:
                    r = await c.get(f"http://127.0.0.1:{port}/healthz")
                except httpx.ConnectError:
                    continue
                if r.status_code == 200:
                    break
            assert r is not None and r.status_code == 200, r and r.text
            assert r.json()["status"] == "ok"
    finally:
        agent.request_stop()
        await run
    assert f"dashboard on http://127.0.0.1:{port}/" in caplog.text
    # stopped with the agent
    async with httpx.AsyncClient(timeout=1) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"http://127.0.0.1:{port}/healthz")


async def test_port_in_use_does_not_stop_the_agent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        agent = Agent(config(tmp_path, listen=f"127.0.0.1:{port}"))
        await agent.run(stop_after_s=0.5)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in errors[0].getMessage()
    assert agent.dashboard is None
    assert agent.state.cycles.get("quota", 0) >= 1  # the jobs ran all the same
