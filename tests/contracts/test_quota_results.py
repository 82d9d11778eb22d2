"""Quota results for the energy company: each closed hour once, in order, with the same figures
as `kuat report hourly`, and the current hour retained; through the real agent and a real
Mosquitto, every message validated against the AsyncAPI document's schema."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.config import KuatConfig, parse_config
from kuat.agent.hourly_report import hourly_report
from kuat.agent.ledger import EnergyLedger
from kuat.agent.quota_results import MAX_CATCH_UP, QuotaResults
from kuat.agent.runtime import Agent
from kuat.agent.state import SiteState
from kuat.collectors.readings import MeterReading
from kuat.quota.schedule import ScheduleBook
from kuat.uplink.quota_publisher import QuotaPublisher
from kuat.uplink.spool import Spool
from tests.contracts.contract import validator
from tests.contracts.test_register_wire import channel_of
from tests.servers import Mosquitto
from tests.uplink.test_mqtt import Subscriber, wait_for

NOV1 = datetime(2026, 10, 31, 19, 0, tzinfo=UTC)  # 2026-11-01 00:00 Astana
SITE = "ekibastuz-1"


def _config(tmp_path: Path, broker_port: int | None = None) -> KuatConfig:
    """1 Nov: the site meter at 500 kW all day; a grid allocation of 400 kWh for hours 1-12 and
    480 kWh for 13-24 (so the afternoon hours are over)."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    with EnergyLedger(state / "ledger.db") as led:
        for i in range(24 * 12 + 1):
            at = NOV1 + i * timedelta(minutes=5)
            led.record("site", _reading(at, 1000.0 + 500.0 * i / 12))
    schedules = tmp_path / "quota.d"
    schedules.mkdir(exist_ok=True)
    (schedules / "2026-11-01-grid.json").write_text(
        json.dumps({"date": "2026-11-01", "source": "grid", "mwh": [0.4] * 12 + [0.48] * 12})
    )
    mqtt = (
        f'[quota.mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\ntls = false\n'
        "results_interval_s = 5\n"
        if broker_port
        else ""
    )
    return parse_config(
        f'[site]\nid = "{SITE}"\nowner_bin = "123456789012"\n'
        f'[agent]\nstate_dir = "{state}"\n'
        f'[quota]\nschedules = "{schedules}"\n{mqtt}'
        '[[meter]]\nname = "site"\nhost = "127.0.0.1"\nport = 9\nrole = "site"\n'
    )


def _reading(at: datetime, kwh: float) -> MeterReading:
    return MeterReading("127.0.0.1", 9, "sunspec", at, p_kw=500.0, import_kwh=kwh)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "quota-outbox.db") as sp:
        yield sp


def _queued(spool: Spool, topic_end: str) -> list[dict]:
    return [
        json.loads(m.payload)
        for m in spool.outbox_peek(limit=10_000)
        if m.topic.endswith(topic_end)
    ]


def test_each_closed_hour_once_with_the_report_figures_across_a_restart(
    tmp_path: Path, spool: Spool
) -> None:
    cfg = _config(tmp_path)
    book = ScheduleBook()
    text = (tmp_path / "quota.d" / "2026-11-01-grid.json").read_text()
    book.offer(text, "json", site=SITE)
    ledger = EnergyLedger(tmp_path / "state" / "ledger.db")

    def results() -> QuotaResults:
        pub = QuotaPublisher(spool, site=SITE, owner_bin="123456789012", broker=None)
        return QuotaResults(cfg, SiteState(), ledger, lambda: book, pub)

    job = results()
    # 13:05 Astana: the first run announces the hour that closed, 12:00-13:00, not the past.
    assert job.run(NOV1 + timedelta(hours=13, minutes=5)) == 1
    # Two hours on: 13-14 and 14-15, in order.
    assert job.run(NOV1 + timedelta(hours=15, minutes=5)) == 2
    # A restart of the agent (a new publisher on the same spool) repeats nothing and skips
    # nothing: 15-16 is the next hour.
    job = results()
    assert job.run(NOV1 + timedelta(hours=15, minutes=6)) == 0
    assert job.run(NOV1 + timedelta(hours=16, minutes=5)) == 1

    hours = _queued(spool, "/hours")
    assert [h["seq"] for h in hours] == [1, 2, 3, 4]
    assert [h["hour_ending"] for h in hours] == [13, 14, 15, 16]
    report = hourly_report(
        ledger, cfg, NOV1.date() + timedelta(days=1), NOV1.date() + timedelta(days=1), book=book
    )
    rows = {r["hour_ending"]: r for r in report["hours"]}
    for h in hours:
        validator("quota-hour.v1").validate(h)
        row = rows[h["hour_ending"]]
        assert (h["used_kwh"], h["allocation_kwh"], h["status"]) == (
            row["used_kwh"],
            row["allocation_kwh"],
            row["status"],
        )
    assert hours[0]["used_kwh"] == pytest.approx(500.0)
    assert hours[0]["status"] == "over" and hours[0]["allocation_kwh"] == 480.0
    (state,) = _queued(spool, "/state")  # coalesced: only the newest waits
    validator("quota-state.v1").validate(state)
    assert state["last_closed"]["seq"] == 4 and state["last_closed"]["hour_ending"] == 16

    # The agent off for four days: it sends the last MAX_CATCH_UP hours, oldest first.
    assert job.run(NOV1 + timedelta(days=4, hours=16, minutes=5)) == MAX_CATCH_UP
    ledger.close()


@pytest.mark.servers
def test_the_agent_publishes_hours_and_retained_state_on_the_energy_companys_broker(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    cfg = _config(tmp_path, mosquitto.port)
    live = Subscriber(mosquitto.port, f"kz/quota/v1/{SITE}/#")
    clock_at = NOV1 + timedelta(hours=13, minutes=5)

    async def run_agent() -> Agent:
        agent = Agent(cfg, clock=lambda: clock_at)
        assert "quota_results" in [j.name for j in agent.jobs()]
        task = asyncio.create_task(agent.run())
        await asyncio.to_thread(
            wait_for,
            lambda: bool(live.on("hours")) and bool(live.on("state")),
            15.0,
            "quota results on the broker",
        )
        agent.request_stop()
        await asyncio.wait_for(task, 20)
        return agent

    asyncio.run(run_agent())
    live.close()
    (hour,) = live.on("hours")
    assert (hour.payload["hour_ending"], hour.payload["seq"]) == (13, 1)
    for msg in live.messages:
        _, schema, _ = channel_of(msg.topic)
        validator(schema).validate(msg.payload)
    # A dashboard that connects later gets the state at once, naming the last closed hour.
    late = Subscriber(mosquitto.port, f"kz/quota/v1/{SITE}/state")
    try:
        wait_for(lambda: bool(late.messages), what="retained state")
        assert late.messages[0].retain
        assert late.messages[0].payload["last_closed"]["seq"] == 1
    finally:
        late.close()
