"""A job that overruns is cut before its next start, not at it.

Cut at the very start, the run still held its one instance when that start came, and the
scheduler (max_instances=1) skipped it: at 50,000 miners every cut miner cycle was followed by a
whole idle interval (cycles every 120 s instead of 60, bench/farm_scale.py --phases).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from kuat.agent.config import parse_config
from kuat.agent.runtime import JOB_MIN_BUDGET_S, Agent, JobSpec, job_budget

INTERVAL_S = JOB_MIN_BUDGET_S + 1.0


async def test_an_overrunning_job_has_ended_when_its_next_start_comes(tmp_path: Path) -> None:
    a = Agent(
        parse_config(
            f'[site]\nid = "s"\n[agent]\nstate_dir = "{tmp_path}"\n[dashboard]\nlisten = ""\n'
        )
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    spec = JobSpec("stuck", INTERVAL_S, asyncio.Event().wait)
    try:
        await a._guarded(spec)
    finally:
        await a.uplinks.stop()
    ended = loop.time() - started
    assert a.job_failures == {"stuck": 1}, "the run was not cut"
    assert ended < INTERVAL_S, f"the cut run ended {ended:.2f} s in, at or after its next start"
    assert job_budget(spec) >= JOB_MIN_BUDGET_S


def test_a_budget_is_never_under_the_minimum_nor_the_jobs_own() -> None:
    async def run() -> None: ...

    assert job_budget(JobSpec("flush", 5.0, run)) == JOB_MIN_BUDGET_S
    assert job_budget(JobSpec("pdu", 30.0, run, budget_s=40.0)) == 40.0
    assert job_budget(JobSpec("asic", 60.0, run)) < 60.0
