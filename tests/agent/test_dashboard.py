"""The local dashboard as an operator and a monitoring system meet it: the real aiohttp server on a
free loopback port, a site state built from real readings, requests over HTTP with httpx."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kuat.agent.config import ConfigError, KuatConfig, parse_config
from kuat.agent.dashboard import Dashboard, choose_lang
from kuat.agent.dashboard_guard import Guard
from kuat.agent.dashboard_miners import Fleet
from kuat.agent.runtime import Agent, JobSpec
from kuat.collectors.readings import (
    AsicReading,
    DeviceError,
    DeviceKind,
    MeterReading,
    PduOutlet,
    PduReading,
    PoolInfo,
)
from kuat.quota.balance import balance_from_readings
from kuat.quota.evaluate import QuotaState, QuotaStatus
from kuat.quota.grid import GridConnection, check_grid_connection
from kuat.quota.pools import check_pools
from kuat.quota.reasons import Code, Reason
from kuat.quota.schedule import EnergySource

# 09:03:12 UTC is 14:03:12 at the site (Astana, UTC+5).
NOW = datetime(2026, 11, 25, 9, 3, 12, tzinfo=UTC)
ACCREDITED = "pool.kz-mining.example"
XSS = "<script>alert('x')</script>"


PDU = """
[[pdu]]
name = "pdu-a1"
host = "127.61.0.1"
community = "public"
outlets = { 1 = "127.60.0.1" }
"""
SITE_METER = """
[[meter]]
name = "substation"
host = "127.62.0.1"
role = "site"
"""


def config(
    state_dir: Path,
    *,
    listen: str = "127.0.0.1:9120",
    language: str = "en",
    extra: str = "",
    devices: str = PDU,
) -> KuatConfig:
    """``extra``: more [dashboard] keys; ``devices``: the PDU and meter tables."""
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
{devices}
[dashboard]
listen = "{listen}"
{extra}
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
    s.pdus["pdu-a1"] = PduReading(
        "127.61.0.1",
        "APC",
        "AP8959",
        "PDU1",
        NOW,
        outlets=(PduOutlet(1, watts=3310.0), PduOutlet(2, watts=3395.0)),
        total_watts=12_000.0,
    )
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


@contextlib.asynccontextmanager
async def serving(agent: Agent, guard: Guard | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """The agent's dashboard on a free loopback port (the OS picks it), and a client of it."""
    dashboard = Dashboard(agent, "127.0.0.1", 0, guard=guard)
    await dashboard.start()
    try:
        async with httpx.AsyncClient(base_url=dashboard.url.rstrip("/"), timeout=5) as c:
            yield c
    finally:
        await dashboard.stop()
        agent.uplinks.spool.close()
        agent.ledger.close()


@pytest.fixture
async def client(agent: Agent) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(agent) as c:
        yield c


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
    assert "fail (1 miner on a pool that is not accredited)" in page  # item 7, not "1 miners"
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


async def test_page_in_russian_and_kazakh_reads_as_written_there(client: httpx.AsyncClient) -> None:
    ru = (await client.get("/", params={"lang": "ru"})).text
    nbsp = "\u00a0"
    assert f"10{nbsp}000,0" not in ru and "612,5 кВт" in ru  # decimal comma, Russian unit
    assert "310,5 ТХ/с" in ru
    assert "не соответствует (1 майнер на неаккредитованном пуле)" in ru  # not «1 майнеров»
    assert "нет ответа за 3 с" in ru  # the cause, not "timed out after 3 s"
    assert "<td>счётчик</td>" not in ru and "<td>майнер</td>" in ru  # device kinds
    kk = (await client.get("/", params={"lang": "kk"})).text
    assert "3 с ішінде жауап болмады" in kk and "<td>майнер</td>" in kk


async def test_a_refused_allocation_file_shows_with_its_reason(
    client: httpx.AsyncClient, agent: Agent
) -> None:
    site = agent.cfg.site.id
    rows = "".join(
        f"{site},2026-11-26,grid,1,{h},{-0.25 if h == 5 else 0.5}\n" for h in range(1, 25)
    )
    text = "site,date,source,version,hour,mwh\n" + rows
    agent.quota.offer_schedule(text, "csv", "/etc/kuat/q.csv")
    page = (await client.get("/", params={"lang": "en"})).text
    assert "Allocation file refused" in page
    assert "/etc/kuat/q.csv: Quota schedule refused (1 reason)" in page
    assert "Hour 5 is negative: -0.25 MWh" in page
    api = (await client.get("/api/status")).json()
    (refused,) = api["allocations_refused"]
    assert refused["source"] == "/etc/kuat/q.csv"
    assert refused["reasons"][0]["code"] == "schedule_refused"


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
    async with serving(agent) as c:
        r = await c.get("/", headers={"Accept-Language": "de-DE"})
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
    assert set(body["jobs"]) == {"quota", "inventory", "flush", "pdu"}
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
    assert "stale: sending data" in (await client.get("/")).text


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
    # base units, one quantity per name, the quota's energy source as a label
    assert samples[("kuat_miners_hashrate_hashes_per_second", ())] == pytest.approx(310.5e12)
    assert samples[("kuat_meter_power_watts", ())] == 612_500
    assert samples[("kuat_pdus_power_watts", ())] == 12_000
    assert samples[("kuat_miners_power_watts", ())] == 9990
    grid = (("source", "grid"),)
    assert samples[("kuat_quota_used_joules", grid)] == pytest.approx(123.4 * 3.6e6)
    assert samples[("kuat_quota_allocation_joules", grid)] == pytest.approx(600 * 3.6e6)
    assert samples[("kuat_quota_forecast_joules", grid)] == pytest.approx(580.2 * 3.6e6)
    assert samples[("kuat_quota_status", (("source", "grid"), ("status", "warn")))] == 1
    build = [k for k in samples if k[0] == "kuat_build_info"]
    assert len(build) == 1 and dict(build[0][1])["version"]
    assert samples[("process_resident_memory_bytes", ())] > 0  # the default process metrics
    up = {dict(k[1])["device"]: v for k, v in samples.items() if k[0] == "kuat_device_up"}
    assert sorted(up.values()).count(0) == 2  # the two devices down
    assert samples[("kuat_job_failures_total", (("job", "quota"),))] == 0
    assert samples[("kuat_check_status", (("check", "quota"), ("status", "warn")))] == 1
    assert samples[("kuat_devices_down", ())] == 2
    assert samples[("kuat_spool_pending_lines", ())] == 1
    assert samples[("kuat_outbox_pending_messages", ())] == 0
    assert samples[("kuat_telemetry_sent_lines_total", ())] == 42
    assert samples[("kuat_spool_dropped_lines_total", ())] == 0
    last_quota = samples[("kuat_job_last_success_timestamp_seconds", (("job", "quota"),))]
    assert last_quota == (NOW - timedelta(seconds=1)).timestamp()


async def test_metrics_show_the_poll_window_close_when_the_loop_runs_late(
    client: httpx.AsyncClient, agent: Agent
) -> None:
    def samples() -> dict[str, float]:
        return {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.startswith(("kuat_poll", "kuat_event_loop"))
        }

    text = (await client.get("/metrics")).text
    before = samples()
    assert before["kuat_poll_window"] <= before["kuat_poll_window_ceiling"]
    agent.poll_gate.observe(0.4)  # the loop woke 400 ms late
    text = (await client.get("/metrics")).text
    after = samples()
    assert after["kuat_event_loop_lag_seconds"] == pytest.approx(0.4)
    assert after["kuat_poll_window_narrowed_total"] == before["kuat_poll_window_narrowed_total"] + 1
    assert after["kuat_poll_window"] < before["kuat_poll_window"]


async def test_a_failing_job_is_counted(client: httpx.AsyncClient, agent: Agent) -> None:
    async def boom() -> None:
        raise RuntimeError("meter line cut")

    await agent._guarded(JobSpec("quota", 1.0, boom))
    await agent._guarded(JobSpec("quota", 1.0, boom))
    text = (await client.get("/metrics")).text
    assert 'kuat_job_failures_total{job="quota"} 2.0' in text


async def test_metrics_leave_out_what_is_unknown(client: httpx.AsyncClient, agent: Agent) -> None:
    agent.state.meters.clear()
    agent.state.site_meter_history.clear()
    agent.state.quota = None
    text = (await client.get("/metrics")).text
    assert "kuat_meter_power_watts" not in text  # unknown is not 0 W
    assert "kuat_quota_used_joules" not in text


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
    agent = Agent(config(tmp_path, listen=f"127.0.0.1:{port}", devices=""))
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


# --- the miners table: /api/miners and the page -----------------------------------------


async def test_api_miners_lists_every_miner_with_its_power_source(
    client: httpx.AsyncClient,
) -> None:
    body = (await client.get("/api/miners")).json()
    assert (body["total"], body["matched"], body["page"], body["pages"]) == (5, 5, 1, 1)
    by_id = {m["id"]: m for m in body["miners"]}
    assert list(by_id) == sorted(by_id)  # by id unless asked otherwise
    one = by_id["SN0001"]
    # measured at its PDU outlet (outlet 1 of pdu-a1) wins over the miner's own 3250 W
    assert (one["power_w"], one["power_source"], one["miner_power_w"]) == (3310.0, "outlet", 3250.0)
    assert one["j_per_th"] == 33.1 and one["hashrate_ths"] == 100.0
    assert one["model"] == "Antminer S21" and one["pool"] == f"stratum+tcp://{ACCREDITED}:3333"
    two = by_id["SN0002"]  # no outlet configured for it: its own report
    assert (two["power_w"], two["power_source"], two["j_per_th"]) == (3400.0, "miner", 30.9)
    down = by_id["127.60.0.5:4028"]
    assert down["state"] == "down" and down["errors"] == [f"reply is not JSON: {XSS}"]
    assert down["power_w"] is None and down["power_source"] is None
    assert by_id["SN0004"]["curtailment"]["state"] == "asleep"
    assert by_id["SN0004"]["curtailment"]["by_kuat"] is False  # it sleeps, kuat did not do it


async def test_api_miners_rated_power_for_a_miner_that_reports_none(
    client: httpx.AsyncClient, agent: Agent
) -> None:
    agent.state.asics[("127.60.0.6", 4028)] = miner(6, hashrate=100.0, power=0.0)
    agent.state.asics[("127.60.0.6", 4028)] = dataclasses.replace(
        agent.state.asics[("127.60.0.6", 4028)],  # type: ignore[arg-type]
        power_w=None,
    )
    body = (await client.get("/api/miners", params={"source": "rated"})).json()
    [six] = body["miners"]
    # the S21's 3500 W at 200 TH/s, scaled to the 100 TH/s it makes
    assert (six["id"], six["power_w"], six["power_source"]) == ("SN0006", 1750.0, "rated")


async def test_api_miners_sort_filter_page(client: httpx.AsyncClient) -> None:
    async def ids(**params: str) -> list[str]:
        r = await client.get("/api/miners", params=params)
        assert r.status_code == 200, r.text
        return [m["id"] for m in r.json()["miners"]]

    # unknown figures (the miner that is down) last, in either order
    assert await ids(sort="hashrate", order="desc") == [
        "SN0002",
        "SN0003",
        "SN0001",
        "SN0004",
        "127.60.0.5:4028",
    ]
    assert await ids(sort="hashrate") == ["SN0004", "SN0001", "SN0003", "SN0002", "127.60.0.5:4028"]
    assert await ids(state="down") == ["127.60.0.5:4028"]
    assert await ids(state="sleeping,down") == ["127.60.0.5:4028", "SN0004"]
    assert await ids(q="EVIL") == ["SN0003"]  # the pool, case-insensitive
    assert await ids(source="outlet") == ["SN0001"]
    assert await ids(faults="1") == ["127.60.0.5:4028"]
    assert await ids(curtailment="asleep") == ["SN0004"]
    page = (await client.get("/api/miners", params={"per_page": "2", "page": "2"})).json()
    assert [m["id"] for m in page["miners"]] == ["SN0002", "SN0003"]
    assert (page["matched"], page["pages"]) == (5, 3)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"sort": "colour"}, "sort"),
        ({"order": "up"}, "order"),
        ({"state": "mining,dancing"}, "state"),
        ({"per_page": "5000"}, "per_page"),
        ({"page": "0"}, "page"),
        ({"sortt": "id"}, "sortt"),  # a typo is refused, not ignored
    ],
)
async def test_api_miners_refuses_a_bad_parameter_by_name(
    client: httpx.AsyncClient, params: dict[str, str], param: str
) -> None:
    r = await client.get("/api/miners", params=params)
    assert r.status_code == 400
    assert r.json()["param"] == param and param in r.json()["error"]


async def test_page_miners_table_sorts_filters_and_pages_without_scripts(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/", params={"sort": "power", "order": "desc"})).text
    rows = re.findall(r'<tr data-id="([^"]+)">', page)
    assert rows == ["SN0002", "SN0001", "SN0003", "SN0004", "127.60.0.5:4028"]
    assert "3,400 W" in page and "PDU outlet" in page and "miner&#39;s report" in page
    # the column headers are links that sort on the server; the current one flips the order
    assert 'href="?lang=en&amp;sort=power"' in page
    assert 'aria-sort="descending"' in page
    filtered = (await client.get("/", params={"state": "sleeping"})).text
    assert re.findall(r'<tr data-id="([^"]+)">', filtered) == ["SN0004"]
    assert '<span id="miners-matched">1</span>' in filtered
    paged = (await client.get("/", params={"per_page": "2"})).text
    assert 'rel="next"' in paged and "?lang=en&amp;page=2&amp;per_page=2" in paged
    # a hand-edited address still shows the page, saying what it did not understand
    bad = await client.get("/", params={"sort": "colour"})
    assert bad.status_code == 200 and "Filter not understood" in bad.text
    assert "<script" not in page  # the table works with scripts off


async def test_page_miner_text_is_escaped(client: httpx.AsyncClient, agent: Agent) -> None:
    agent.state.asics[("127.60.0.1", 4028)] = dataclasses.replace(
        agent.state.asics[("127.60.0.1", 4028)],  # type: ignore[arg-type]
        model=XSS,
        errors=(XSS,),
    )
    page = (await client.get("/")).text
    assert XSS not in page and "<script" not in page


# --- the hour, power explained, curtailment ----------------------------------------------


async def test_hour_and_last_24_hours(tmp_path: Path) -> None:
    agent = Agent(config(tmp_path, devices=SITE_METER), clock=lambda: NOW)
    fill(agent)
    async with serving(agent) as client:
        await _check_hour(agent, client)


async def _check_hour(agent: Agent, client: httpx.AsyncClient) -> None:
    # the ledger holds two hours of the site meter; the book an allocation for today
    hour_start = NOW.replace(minute=0, second=0)
    for minute in range(0, 121, 10):
        at = hour_start - timedelta(hours=2) + timedelta(minutes=minute)
        reading = MeterReading(
            "127.62.0.1", 1, "schneider-pm5560", at, p_kw=600.0, import_kwh=1000 + 10 * minute
        )
        agent.ledger.record("substation", reading)
    text = "\n".join(["date,hour,mwh", *(f"2026-11-25,{h},0.55" for h in range(1, 25))])
    change = agent.quota.book.offer(text, "csv", site="ekibastuz-1")
    assert change.changed, change
    body = (await client.get("/api/status")).json()
    hour = body["hour"]
    assert (hour["used_kwh"], hour["allocation_kwh"], hour["forecast_kwh"]) == (123.4, 600.0, 580.2)
    assert hour["allowed_kw"] == 600.0 and hour["remaining_kwh"] == 476.6
    history = hour["history"]
    assert len(history) == 24 and history[-1]["current"] is True
    assert history[-1]["start"] == "2026-11-25T09:00:00Z"
    closed = {h["start"]: h for h in history}
    # 600 kW for an hour is 600 kWh; allocation 0.55 MWh
    assert closed["2026-11-25T07:00:00Z"]["kwh"] == pytest.approx(600.0)
    assert closed["2026-11-25T07:00:00Z"]["allocation_kwh"] == 550.0
    assert closed["2026-11-24T10:00:00Z"]["kwh"] is None  # nothing metered then
    assert closed["2026-11-24T10:00:00Z"]["allocation_kwh"] is None  # no allocation held
    page = (await client.get("/")).text
    assert '<td class="num" id="hour-used">123.4 kWh / 600.0 kWh</td>' in page
    assert "600.0 kW (57 min left)" in page  # allowed for the rest of the hour
    day = page[page.index('<svg id="chart-day"') :]
    day = day[: day.index("</svg>")]
    assert day.count('class="c-used') == 3 and "<path" in day  # bars and the allocation step


async def test_power_explained(client: httpx.AsyncClient, agent: Agent) -> None:
    agent.state.balance = balance_from_readings(
        agent.state.site_meter_history[-1],
        [],
        agent.state.asic_readings(),
        agent.quota.balance_policy,
    )
    p = (await client.get("/api/status")).json()["power_explained"]
    assert p["meter_kw"] == 612.5 and p["status"] == "alarm"
    # the mining miners' own reports (9,950 W), 3 % losses on top, the rest unexplained
    miners = p["miners"]
    assert miners["kw"] == pytest.approx(9.95) and miners["overhead_kw"] == pytest.approx(
        0.2985, abs=1e-3
    )
    assert miners["remainder_kw"] == pytest.approx(612.5 - 9.95 * 1.03, abs=1e-3)
    # the PDUs are summed and shown, but they do not cover the site: not compared
    assert p["pdus"]["kw"] == 12.0 and p["pdus"]["compared"] is False
    page = (await client.get("/")).text
    section = page[page.index('<section id="power">') :]
    section = section[: section.index("</section>")]
    assert "ALARM" in section and "+602.3 kW" in section and "612.5 kW" in section
    assert '<svg id="chart-power"' in section and "not compared" in section


async def test_curtailment_plan_in_dry_run(client: httpx.AsyncClient, agent: Agent) -> None:
    agent.state.quota = dataclasses.replace(agent.state.quota, allowed_kw=606.0)
    agent.curtailer.run(agent.state.quota, NOW)  # the real planner; dry run: nothing is sent
    body = (await client.get("/api/curtailment")).json()
    assert body["mode"] == "dry_run"
    plan = body["plan"]
    assert plan["allowed_kw"] == 606.0 and plan["load_kw"] == 612.5
    assert plan["actions"], plan
    first = plan["actions"][0]
    assert first["kind"] == "sleep" and first["reason"]["code"] and first["reason"]["text"]
    assert body["asleep"] == [] and body["limited"] == []  # nothing acts in a dry run
    # the reasons in the asked language
    ru = (await client.get("/api/curtailment", params={"lang": "ru"})).json()
    assert ru["plan"]["reason"]["text"] != plan["reason"]["text"]
    # each planned miner says so in the table
    planned = (await client.get("/api/miners", params={"q": first["device_id"]})).json()
    assert planned["miners"][0]["curtailment"]["planned"]["kind"] == "sleep"
    page = (await client.get("/")).text
    section = page[page.index('<section id="curtailment">') :]
    section = section[: section.index("</section>")]
    assert 'data-mode="dry_run"' in section and "[quota] enforce = false" in section
    assert first["device_id"] in section and first["reason"]["text"].split(":")[0] in section


# --- who may read it ---------------------------------------------------------------------

TOKEN = "s3cret-dashboard-token-0123"


@pytest.mark.parametrize("path", ["/", "/api/status", "/api/miners", "/metrics", "/healthz"])
async def test_a_foreign_host_is_refused(client: httpx.AsyncClient, path: str) -> None:
    # DNS rebinding: a page on evil.example points its name at 127.0.0.1 and reads the answer
    r = await client.get(path, headers={"Host": "evil.example:9120"})
    assert r.status_code == 403
    assert "[dashboard] hosts" in r.text and "Miners" not in r.text


async def test_loopback_names_and_configured_hosts_are_answered(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    for host in ("127.0.0.1", "localhost:9120", "[::1]:9120"):
        assert (await client.get("/healthz", headers={"Host": host})).status_code == 200
    agent = Agent(config(tmp_path, extra='hosts = ["kuat.farm.lan"]'), clock=lambda: NOW)
    fill(agent)
    async with serving(agent) as c:
        ok = await c.get("/healthz", headers={"Host": "KUAT.farm.lan:9120"})
        refused = await c.get("/healthz", headers={"Host": "other.farm.lan"})
    assert ok.status_code == 200 and refused.status_code == 403


@pytest.fixture
async def lan_client(agent: Agent) -> AsyncIterator[httpx.AsyncClient]:
    """The rules of a dashboard listening on every interface, served on loopback (tests keep
    to 127.0.0.0/8): the guard is the one built for "0.0.0.0" with a token."""
    async with serving(agent, Guard.of("0.0.0.0", (), TOKEN)) as c:
        yield c


async def test_beyond_loopback_the_token_is_required(
    lan_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for path in ("/", "/api/status", "/api/miners", "/api/curtailment", "/metrics"):
        r = await lan_client.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == 'Bearer realm="kuat"'
    wrong = await lan_client.get("/api/status", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = await lan_client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["site"] == "ekibastuz-1"
    # a browser signs in once with ?token=: a cookie (not the token) and the address without it
    signed = await lan_client.get("/", params={"token": TOKEN, "lang": "kk"})
    assert signed.status_code == 303 and signed.headers["location"] == "/?lang=kk"
    cookie = signed.cookies["kuat_dashboard"]
    assert TOKEN not in cookie and "HttpOnly" in signed.headers["set-cookie"]
    page = await lan_client.get("/?lang=kk", cookies={"kuat_dashboard": cookie})
    assert page.status_code == 200 and "Майнерлер" in page.text
    assert (await lan_client.get("/", params={"token": "nope"})).status_code == 401
    # on every interface, the machine's own addresses are answered; names are not
    lan = {"Authorization": f"Bearer {TOKEN}", "Host": "192.168.10.5:9120"}
    assert (await lan_client.get("/healthz", headers=lan)).status_code == 200
    rebound = {"Authorization": f"Bearer {TOKEN}", "Host": "evil.example"}
    assert (await lan_client.get("/healthz", headers=rebound)).status_code == 403
    assert TOKEN not in caplog.text


async def test_a_configured_token_is_required_on_loopback_too(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    agent = Agent(config(tmp_path, extra=f'token = {{ file = "{secret}" }}'), clock=lambda: NOW)
    fill(agent)
    async with serving(agent) as c:
        bare = await c.get("/api/status")
        bearer = await c.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bare.status_code == 401 and bearer.status_code == 200


def test_listen_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config('[site]\nid = "s1"\n[dashboard]\nlisten = "0.0.0.0:9120"\n')
    [problem] = err.value.problems
    assert problem.path == "dashboard" and "token" in problem.message
    secret = tmp_path / "token"
    secret.write_text(TOKEN)
    cfg = parse_config(
        '[site]\nid = "s1"\n[dashboard]\nlisten = "0.0.0.0:9120"\n'
        f'token = {{ file = "{secret}" }}\n'
    )
    assert cfg.dashboard.address() == ("0.0.0.0", 9120)
    assert TOKEN not in repr(cfg)


@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        ('{ value = "s3cret-dashboard-token-0123" }', "not inline"),
        ('{ file = "{short}" }', "at least 16 characters"),
        ('{ credential = "dashboard-token" }', "CREDENTIALS_DIRECTORY"),
    ],
)
def test_dashboard_token_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str, fragment: str
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    short = tmp_path / "short"
    short.write_text("abc")
    token = token.replace("{short}", str(short))
    with pytest.raises(ConfigError) as err:
        parse_config(f'[site]\nid = "s1"\n[dashboard]\ntoken = {token}\n')
    assert fragment in str(err.value) and "dashboard" in str(err.value)


def test_dashboard_token_from_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dashboard-token").write_text(TOKEN)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg = parse_config(
        '[site]\nid = "s1"\n[dashboard]\nlisten = "[::]:9120"\n'
        'token = { credential = "dashboard-token" }\nhosts = ["Kuat.Farm.lan"]\n'
    )
    assert cfg.dashboard.token is not None and cfg.dashboard.token.get() == TOKEN
    assert cfg.dashboard.hosts == ["kuat.farm.lan"]


@pytest.mark.parametrize("name", ["http://kuat.lan", "kuat.lan:9120", "*.lan", ""])
def test_dashboard_hosts_refused(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f'[site]\nid = "s1"\n[dashboard]\nhosts = ["{name}"]\n')
    assert "host name alone" in str(err.value)


async def test_fifty_thousand_miners_cost_one_page_of_rows(
    client: httpx.AsyncClient, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At farm scale a request filters and sorts every miner from its reading but builds and
    encodes only the page asked for (bench/dashboard.py times it against the status snapshot)."""
    asics = agent.state.asics
    asics.clear()
    for i in range(50_000):
        ip = f"10.{20 + i // 65025}.{(i // 255) % 255}.{i % 255 + 1}"
        asics[(ip, 4028)] = AsicReading(
            ip, 4028, NOW, model="Antminer S21", serial=f"SN{i:07d}", hashrate_ths=100.0,
            power_w=3000.0 + (i * 7919) % 1000,
        )  # fmt: skip
    built = 0
    row = Fleet.row

    def counting(self: Fleet, key: tuple[str, int], r: AsicReading | DeviceError) -> Any:
        nonlocal built
        built += 1
        return row(self, key, r)

    monkeypatch.setattr(Fleet, "row", counting)
    params = {"sort": "power", "order": "desc", "per_page": "50"}
    two = (await client.get("/api/miners", params={**params, "page": "2"})).json()
    three = (await client.get("/api/miners", params={**params, "page": "3"})).json()
    assert built == 100  # two pages of 50, not 50,000 rows twice
    assert (three["total"], three["matched"], three["pages"]) == (50_000, 50_000, 1000)
    # 1,000 power figures, 50 miners each: page 1 is every 3,999 W, page 2 every 3,998 W …
    assert [m["power_w"] for m in two["miners"] + three["miners"]] == [3998.0] * 50 + [3997.0] * 50
    ids = [m["id"] for m in two["miners"]]
    assert ids == sorted(ids)  # ties stay in id order
    filtered = (await client.get("/api/miners", params={"q": "sn0049999"})).json()
    assert [m["id"] for m in filtered["miners"]] == ["SN0049999"]


async def test_every_figure_on_the_russian_page_is_written_the_russian_way(
    client: httpx.AsyncClient,
) -> None:
    # the hour, power explained, miners table and charts too, not only the status rows
    text = re.sub(r"<[^>]+>", " ", (await client.get("/", params={"lang": "ru"})).text)
    assert not re.search(r"\d,\d{3}\b", text)  # "2,072" reads as 2.072 in Russian
    assert not re.search(r"\d (kW|kWh|W|TH/s|J/TH)\b", text), re.findall(r".{20}\d kWh?.{5}", text)
    assert "кВт" in text and "ТХ/с" in text
