"""The demo's allocation story: when it starts in an hour's last moments, the cut of that hour's
rest is within what the planner lets pass, and the demo says the next hour is the tight one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.demo_quota import starts_late, write_demo_schedule
from kuat.agent.demo_text import say
from kuat.agent.i18n import LANGS
from kuat.quota.clock import hour_of
from kuat.quota.schedule import parse_schedule

# 10:00 UTC is 15:00 in Astana: the end of the hour ending 15
END = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("load_kw", "left_s", "late"),
    [
        (248.0, 35, True),  # CI's demo at 14:59:25: 0.5 kWh of cut, under 1 + 1 kWh
        (248.0, 140, True),
        (248.0, 150, False),  # 2.07 kWh: the planner acts
        (248.0, 600 - 1, False),
        (990.0, 35, True),  # the README's 240-miner demo: late only in its last ~36 s
        (990.0, 60, False),
        (4.0, 30 * 60, False),  # a tiny farm half an hour out: the next hour is not tight
    ],
)
def test_a_demo_starts_late_only_when_its_hours_cut_cannot_show(
    load_kw: float, left_s: int, late: bool
) -> None:
    assert starts_late(load_kw, END - timedelta(seconds=left_s)) is late


def test_started_late_the_next_hour_is_the_tight_one(tmp_path: Path) -> None:
    now = END - timedelta(seconds=35)
    write_demo_schedule(tmp_path, "demo", 248.0, now, used_kwh=240.0)

    def kwh(at: datetime) -> float:
        day, hour = hour_of(at)
        return parse_schedule((tmp_path / f"{day.isoformat()}-grid.csv").read_text(), "csv").kwh(
            hour
        )

    assert kwh(END) < 248.0  # the next hour: tighter than the farm's full draw
    assert kwh(now) >= 240.0  # this one: never already over what it has used


def test_the_late_story_is_told_in_every_language() -> None:
    for lang in LANGS:
        text = say("story_late", lang, share=80, at="15:00", mode="…")
        assert "15:00" in text and "80" in text and "demo.story_late" not in text
