"""Miner faults as an operator meets them: the running agent polls simulated Whatsminers whose
firmware reports error codes; each fault is logged once in the configured language (not at every
poll), counted on /metrics, and logged once more when it clears; a miner that stops answering
for a poll raises nothing again when it comes back."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kuat.agent.config import parse_config
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from tests.agent.test_dashboard import free_port

_ranges = itertools.count(1)


def config(tmp_path: Path, asics: AsicFarmSimulator, language: str) -> str:
    hosts = ", ".join(f'"{ip}"' for ip, _ in asics.targets)
    return f"""
[site]
id = "faults"
[agent]
state_dir = "{tmp_path}"
language = "{language}"
[intervals]
asic = 1
[asic]
timeout_s = 1
[[asic.groups]]
hosts = [{hosts}]
[dashboard]
listen = "127.0.0.1:{free_port()}"
"""


def faults_metric(text: str) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels["severity"]): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith("kuat_miner_faults")
    }


async def scrape(agent: Agent) -> dict[tuple[str, str], float]:
    assert agent.dashboard is not None
    async with httpx.AsyncClient(base_url=agent.dashboard.url.rstrip("/"), timeout=5) as c:
        return faults_metric((await c.get("/metrics")).text)


async def test_a_fault_is_said_once_in_russian_counted_and_cleared(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kuat.faults")
    first = f"127.75.{next(_ranges) % 250 + 1}.1"
    async with AsicFarmSimulator(2, first_ip=first, personalities=["whatsminer"]) as asics:
        sick, healthy = asics.miners
        sick.error_codes = [531, 110]  # a hash board gone (critical), a fan (warning)
        agent = Agent(parse_config(config(tmp_path, asics, "ru")))
        task = asyncio.create_task(agent.run())
        try:
            await asyncio.sleep(3.5)  # several polls
            assert await scrape(agent) == {
                ("kuat_miner_faults", "critical"): 1.0,
                ("kuat_miner_faults", "warning"): 1.0,
                ("kuat_miner_faults", "info"): 0.0,
                ("kuat_miner_faults_raised_total", "critical"): 1.0,
                ("kuat_miner_faults_raised_total", "warning"): 1.0,
                ("kuat_miner_faults_raised_total", "info"): 0.0,
            }
            # the miner misses polls, then answers again with the same faults: nothing new
            await asics.stop()
            await asyncio.sleep(2.5)
            await asics.start()
            await asyncio.sleep(2.5)
            sick.error_codes = [110]  # the board is back
            await asyncio.sleep(2.5)
            got = await scrape(agent)
        finally:
            agent.request_stop()
            await asyncio.wait_for(task, 20)
    assert got[("kuat_miner_faults", "critical")] == 0.0
    assert got[("kuat_miner_faults_raised_total", "critical")] == 1.0  # raised once, in all
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "kuat.faults"]
    raised = [m for lvl, m in said if "сообщает о неисправности" in m]
    assert len(raised) == 2, said
    assert any(lvl == logging.ERROR and "531" in m and "критическая" in m for lvl, m in said)
    assert any(lvl == logging.WARNING and "110" in m for lvl, m in said)
    cleared = [m for _, m in said if "устранена" in m]
    assert len(cleared) == 1 and "531" in cleared[0], said
    assert all(healthy.serial not in m for _, m in said)
