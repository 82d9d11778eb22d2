"""The dashboard in a real browser: Debian's chromium driven by Playwright against the running
agent watching a simulated farm (miners, a site meter, PDUs on free loopback addresses).

What an operator would check: the page loads, its figures are those of /api/status and
/api/miners, the miners table sorts and filters (server-side links and a plain form: it works
with scripts off, which is how the browser runs it here), the language switch keeps the view,
and the curtailment section tells a dry run from enforcement. A screenshot of each language is
kept under build/test-artifacts/ for a person to look at.

chromium is a system package (``make servers``), Playwright a Python one with its own browser
download disabled; without either the test is skipped, except on CI (``CI=true``), where it
fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from kuat.agent.config import DashboardSection, KuatConfig
from kuat.agent.demo import demo_config, follow_farm, seed_history
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.dlms.sim import DlmsMeterSimulator
from kuat.collectors.modbus.sim import MeterSimulator
from kuat.collectors.snmp.sim import SnmpSimulator
from tests.e2e.fake_site import write_day_files
from tests.servers import find_binary, free_port

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "build" / "test-artifacts"
MINERS = 24
SITE = "demo-ekibastuz"  # demo_config's site id


def _playwright() -> Any:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        message = "Python package playwright not installed (pip install -e '.[test]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return async_playwright


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = find_binary("chromium")
    async with _playwright()() as pw:
        b = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


@dataclass
class Farm:
    asics: AsicFarmSimulator
    meter: MeterSimulator
    snmp: SnmpSimulator
    web_port: int


@pytest.fixture
async def farm() -> AsyncIterator[Farm]:
    web_port = free_port()
    asics = AsicFarmSimulator(MINERS, first_ip="127.46.0.1", seed=11, web_port=web_port)
    meter = MeterSimulator("schneider-pm5560")
    snmp = SnmpSimulator()
    await asics.start()
    await meter.start()
    await asyncio.to_thread(snmp.start)
    follower = asyncio.create_task(follow_farm(asics, meter))
    await asyncio.sleep(0.6)  # the meter holds a first value before the agent reads it
    try:
        yield Farm(asics, meter, snmp, web_port)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await asics.stop()
        await meter.stop()
        await asyncio.to_thread(snmp.stop)


def farm_config(farm: Farm, state_dir: Path, port: int, *, mwh: float, enforce: bool) -> KuatConfig:
    """The demo's configuration on this test's own addresses and dashboard port, with today's
    allocation of ``mwh`` an hour; the ledger seeded with three hours before now."""
    now = datetime.now(UTC)
    schedules = state_dir / "quota.d"
    schedules.mkdir(parents=True)
    write_day_files(schedules, str(mwh), now)
    load_kw = farm.asics.total_power_w() / 1000
    seed_history(state_dir, DlmsMeterSimulator("spodes"), load_kw, now)
    pdus = [(farm.snmp.host, farm.snmp.port, name) for name in farm.snmp.communities[:2]]
    base = demo_config(
        state_dir, farm.asics.targets, pdus, (farm.meter.host, farm.meter.port), schedules
    )
    # Slow polls: the figures hold still long enough to read the page and the API alike.
    intervals = base.intervals.model_copy(
        update={"asic": 20, "pdu": 20, "meter": 5, "quota": 5, "flush": 600, "inventory": 600}
    )
    quota = base.quota.model_copy(update={"enforce": enforce, "min_on_s": 0, "min_off_s": 0})
    asic = base.asic.model_copy(update={"web_port": farm.web_port})
    return base.model_copy(
        update={
            "intervals": intervals,
            "quota": quota,
            "asic": asic,
            "dashboard": DashboardSection(listen=f"127.0.0.1:{port}"),
        }
    )


@contextlib.asynccontextmanager
async def running(cfg: KuatConfig) -> AsyncIterator[Agent]:
    agent = Agent(cfg)
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        agent.request_stop()
        await asyncio.wait_for(task, 30)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 40) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if await check():
                return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


async def warm(base: str) -> None:
    """Every miner answered, the meter read, the quota and the balance evaluated."""

    async def ready() -> bool:
        async with httpx.AsyncClient(base_url=base, timeout=5) as c:
            s = (await c.get("/api/status")).json()
        return (
            s["miners_up"] == MINERS
            and s["metered_kw"] is not None
            and s["pdu_power_w"] is not None
            and s["hour"]["allocation_kwh"] is not None
            and s["power_explained"]["status"] is not None
        )

    await until(ready, "the agent's first full picture of the farm")


async def api(page: Page, path: str) -> Any:
    r = await page.request.get(path)
    assert r.ok, await r.text()
    return await r.json()


async def status_rows(page: Page) -> dict[str, str]:
    cells = await page.locator("table.status").first.locator("tr").all()
    out = {}
    for row in cells:
        out[(await row.locator("th").inner_text()).strip()] = (
            await row.locator("td").inner_text()
        ).strip()
    return out


async def miner_rows(page: Page) -> list[dict[str, str]]:
    rows = []
    for tr in await page.locator("#miners tbody tr").all():
        rows.append(
            {
                "id": await tr.get_attribute("data-id") or "",
                "hashrate": await tr.locator('[data-col="hashrate"]').inner_text(),
                "power": (await tr.locator('[data-col="power"]').inner_text()).splitlines()[0],
                "state": await tr.locator('[data-col="state"]').get_attribute("data-key") or "",
            }
        )
    return rows


def shown(v: float | None, unit: str, digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f} {unit}"


async def matches_api(page: Page, query: str = "") -> list[str]:
    """The page's figures against /api/status and /api/miners read right after it; returns
    the differences (empty: they agree)."""
    s = await api(page, "/api/status")
    m = await api(page, f"/api/miners{query}")
    wrong = []
    rows = await status_rows(page)
    expect = {
        "Miners up": f"{s['miners_up']} / {s['miners_total']}",
        "Total hashrate": shown(s["hashrate_ths"], "TH/s"),
        "Metered power": shown(s["metered_kw"], "kW"),
        "PDU power": shown(s["pdu_power_w"] and s["pdu_power_w"] / 1000, "kW"),
        "Energy this hour / allocation": (
            f"{shown(s['energy_hour_kwh'], 'kWh')} / {shown(s['allocation_kwh'], 'kWh')}"
        ),
        "Forecast to end of hour": shown(s["forecast_kwh"], "kWh"),
    }
    for label, text in expect.items():
        if not rows.get(label, "").startswith(text):
            wrong.append(f"{label}: page {rows.get(label)!r}, API {text!r}")
    used = await page.locator("#hour-used").inner_text()
    hour = s["hour"]
    hour_text = f"{shown(hour['used_kwh'], 'kWh')} / {shown(hour['allocation_kwh'], 'kWh')}"
    if used != hour_text:
        wrong.append(f"hour: page {used!r}, API {hour_text!r}")
    meter = await page.locator("#power-meter td").first.inner_text()
    if meter != shown(s["power_explained"]["meter_kw"], "kW"):
        wrong.append(f"power explained meter: page {meter!r}")
    if int(await page.locator("#miners-total").inner_text()) != m["total"]:
        wrong.append("miners total")
    if int(await page.locator("#miners-matched").inner_text()) != m["matched"]:
        wrong.append("miners matched")
    page_rows = await miner_rows(page)
    api_rows = [
        {
            "id": r["id"],
            "hashrate": shown(r["hashrate_ths"], "TH/s"),
            "power": shown(r["power_w"], "W", 0),
            "state": r["state"],
        }
        for r in m["miners"]
    ]
    if page_rows != api_rows:
        wrong.append(f"miners table: page {page_rows[:3]} …, API {api_rows[:3]} …")
    return wrong


async def agree(page: Page, url: str, query: str = "") -> None:
    """Load ``url`` and compare; a poll landing between the page and the API reads changes
    the figures, so a disagreement is retried on a fresh load (a real one persists)."""
    wrong: list[str] = []
    for _ in range(5):
        await page.goto(url)
        wrong = await matches_api(page, query)
        if not wrong:
            return
        await asyncio.sleep(1)
    raise AssertionError("page and API disagree: " + "; ".join(wrong))


def numbers(texts: list[str]) -> list[float]:
    return [float(re.sub(r"[^\d.]", "", t) or "nan") for t in texts]


async def test_dashboard_in_chromium(browser: Browser, farm: Farm, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # an allocation above the farm's draw: a calm hour, nothing to curtail
    cfg = farm_config(farm, tmp_path, port, mwh=1.0, enforce=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with running(cfg):
        await warm(base)
        page = await browser.new_page(base_url=base, java_script_enabled=False)
        page.set_default_timeout(15_000)
        await agree(page, "/?lang=en")
        assert await page.locator("svg#chart-day").count() == 1
        assert await page.locator("svg#chart-hour").count() == 1
        assert await page.locator("svg#chart-power").count() == 1
        # the last hours come from the ledger: seeded history shows as bars
        assert await page.locator("svg#chart-day rect.c-used").count() >= 3
        assert await page.locator("#curtail-mode").get_attribute("data-mode") == "dry_run"

        # sorting: the column header is a link (a figure's column sorts the highest first);
        # a second click flips the order
        await page.get_by_role("link", name=re.compile(r"^Hashrate")).click()
        assert "sort=hashrate&order=desc" in page.url
        first = numbers([r["hashrate"] for r in await miner_rows(page)])
        await page.get_by_role("link", name=re.compile(r"^Hashrate")).click()
        assert "sort=hashrate" in page.url and "order=desc" not in page.url
        second = numbers([r["hashrate"] for r in await miner_rows(page)])
        assert first == sorted(first, reverse=True) and second == sorted(second)
        assert first[0] > first[-1]
        await page.get_by_role("link", name=re.compile(r"^Hashrate")).click()
        await agree(page, page.url, "?sort=hashrate&order=desc")

        # filtering: the form, submitted by the browser, keeps the sort
        target = (await miner_rows(page))[0]["id"]
        await page.locator('input[name="q"]').fill(target.lower())
        await page.get_by_role("button", name="Apply").click()
        rows = await miner_rows(page)
        assert [r["id"] for r in rows] == [target]
        assert "sort=hashrate" in page.url
        await agree(page, page.url, f"?sort=hashrate&order=desc&q={target.lower()}")
        await page.get_by_role("link", name="Reset").click()
        assert len(await miner_rows(page)) == MINERS

        # languages: the switch keeps the view; a screenshot of each for a person to see
        for lang, name, heading in (
            ("kk", "Қазақша", "Майнерлер"),
            ("ru", "Русский", "Майнеры"),
            ("en", "English", "Miners"),
        ):
            await page.goto("/?lang=" + ("en" if lang != "en" else "ru") + "&sort=power")
            await page.get_by_role("link", name=name).click()
            assert await page.locator("html").get_attribute("lang") == lang
            assert "sort=power" in page.url
            assert (await page.locator("#miners-section h2").inner_text()).startswith(heading)
            await page.screenshot(path=str(ARTIFACTS / f"dashboard-{lang}.png"), full_page=True)
            assert (ARTIFACTS / f"dashboard-{lang}.png").stat().st_size > 10_000
        await page.close()


async def test_enforced_curtailment_in_chromium(
    browser: Browser, farm: Farm, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # 1 kWh an hour against tens of kW: enforcement puts every miner to sleep
    cfg = farm_config(farm, tmp_path, port, mwh=0.001, enforce=True)
    async with running(cfg):

        async def asleep() -> bool:
            async with httpx.AsyncClient(base_url=base, timeout=5) as c:
                body = (await c.get("/api/curtailment")).json()
            return len(body["asleep"]) == MINERS

        await until(asleep, "kuat to put every miner to sleep", timeout_s=60)
        async with httpx.AsyncClient(base_url=base, timeout=5) as c:
            body = (await c.get("/api/curtailment")).json()
            sleeping = (await c.get("/api/miners", params={"curtailment": "asleep"})).json()
        assert body["mode"] == "enforce"
        assert all(m["since"] and m["since"].endswith("Z") for m in body["asleep"])
        assert sleeping["matched"] == MINERS
        assert all(m["curtailment"]["by_kuat"] for m in sleeping["miners"])
        page = await browser.new_page(base_url=base, java_script_enabled=False)
        await page.goto("/?lang=ru")
        assert await page.locator("#curtail-mode").get_attribute("data-mode") == "enforce"
        assert await page.locator("#curtailed-now tr").count() == MINERS + 1  # and its header
        await page.screenshot(path=str(ARTIFACTS / "dashboard-enforce-ru.png"), full_page=True)
        await page.close()
