"""Curtailment orders through the agent: a signed order caps the farm, a forged one is refused."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.config import parse_config
from kuat.agent.demo import follow_farm
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.modbus.sim import MeterSimulator
from kuat.quota.orders import sign_order
from tests.e2e.fake_site import write_day_files

KEY = "a-shared-secret-of-the-dispatcher"


def order(issuer_key: str, target_mw: float) -> str:
    now = datetime.now(UTC)
    doc = {
        "id": "KEGOC-TEST-1",
        "issuer": "kegoc",
        "site": "orders",
        "target_mw": target_mw,
        "start": (now - timedelta(minutes=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
        "issued_at": (now - timedelta(seconds=30)).isoformat(),
    }
    return sign_order(doc, issuer_key.encode())


@pytest.mark.parametrize(("signed_with", "obeyed"), [(KEY, True), ("not-the-issuers-key!", False)])
async def test_signed_order_caps_the_farm_and_a_forged_one_is_refused(
    signed_with: str, obeyed: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    asics = AsicFarmSimulator(6, first_ip="127.48.0.1", personalities=["whatsminer", "luxos"])
    async with asics, MeterSimulator("schneider-pm5560") as meter:
        follower = asyncio.create_task(follow_farm(asics, meter))
        await asyncio.sleep(0.6)
        full_kw = asics.total_power_w() / 1000
        schedules = tmp_path / "quota.d"
        schedules.mkdir()
        write_day_files(schedules, f"{full_kw * 3 / 1000:.3f}")  # ample allocation
        orders = tmp_path / "orders.d"
        orders.mkdir()
        # the dispatcher orders the site down to a third of its draw
        (orders / "order.json").write_text(order(signed_with, full_kw / 3 / 1000))
        hosts = ", ".join(f'"{ip}"' for ip, _ in asics.targets)
        cfg = parse_config(
            f'[site]\nid = "orders"\n[agent]\nstate_dir = "{tmp_path}"\n'
            f"[intervals]\nasic = 1\nmeter = 1\nquota = 1\n"
            f"[[asic.groups]]\nhosts = [{hosts}]\n"
            f'[[meter]]\nname = "main"\nhost = "{meter.host}"\nport = {meter.port}\n'
            f'role = "site"\n'
            f'[quota]\nschedules = "{schedules}"\nenforce = true\nmin_on_s = 0\nmin_off_s = 0\n'
            f'[quota.orders]\ndirectory = "{orders}"\n'
            f'[quota.orders.issuers]\nkegoc = "{KEY}"\n'
        )
        agent = Agent(cfg)
        task = asyncio.create_task(agent.run())
        await asyncio.sleep(8)
        agent.request_stop()
        await asyncio.wait_for(task, 20)
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        asleep = sum(m.sleeping for m in asics.miners)
        after_kw = asics.total_power_w() / 1000
    messages = " | ".join(r.getMessage() for r in caplog.records)
    if obeyed:
        assert asleep >= 3, messages
        assert after_kw <= full_kw / 3 + 1.0  # within one kW of the ordered cap
        assert "curtailment order from" in messages
    else:
        assert asleep == 0
        assert "refused" in messages and "order" in messages
