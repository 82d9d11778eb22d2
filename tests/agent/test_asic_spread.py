"""The scheduled miner job spreads a cycle's polls over [asic] spread of its interval, and
never so far that the last poll would lose its deadline to the next cycle."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuat.agent.config import parse_config
from kuat.agent.runtime import Agent


def agent(tmp_path: Path, interval: float, timeout: float, spread: float | None = None) -> Agent:
    share = "" if spread is None else f"spread = {spread}\n"
    return Agent(
        parse_config(
            f'[site]\nid = "s"\n[agent]\nstate_dir = "{tmp_path}"\n[dashboard]\nlisten = ""\n'
            f"[intervals]\nasic = {interval}\n"
            f'[asic]\ntimeout_s = {timeout}\n{share}[[asic.groups]]\nhosts = ["127.0.0.1"]\n'
        )
    )


@pytest.mark.parametrize(
    ("interval", "timeout", "spread", "expected"),
    [
        (60, 3, None, 48.0),  # the default: 80 % of the minute
        (60, 3, 0.5, 30.0),
        (60, 3, 0, 0.0),  # off: every miner at the cycle's start
        (10, 5, None, 4.0),  # 8 s would leave the last miner 2 s of its 5 s deadline
        (2, 3, None, 0.0),  # no room at all: no spreading
    ],
)
def test_spread_is_a_share_of_the_interval_that_leaves_the_deadline(
    tmp_path: Path, interval: float, timeout: float, spread: float | None, expected: float
) -> None:
    assert agent(tmp_path, interval, timeout, spread).asic_spread_s == expected
