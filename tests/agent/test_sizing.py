"""Poll concurrency sized from the cycle budget."""

from __future__ import annotations

import resource

import pytest

from kuat.agent.sizing import asic_concurrency


@pytest.fixture(autouse=True)
def plenty_of_fds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1_048_576, 1_048_576))


@pytest.mark.parametrize(
    ("targets", "timeout_s", "interval_s", "expected"),
    [
        (240, 2.0, 5.0, 240),  # one 2 s wave fits the 3 s budget: all at once
        (50_000, 3.0, 60.0, 4167),  # 12 deadline-long waves fit the 36 s budget
        (1000, 3.0, 600.0, 16),  # plenty of time: the floor
        (5, 3.0, 60.0, 16),
    ],
)
def test_worst_case_cycle_fits_the_budget(
    targets: int, timeout_s: float, interval_s: float, expected: int
) -> None:
    n = asic_concurrency(targets, timeout_s, interval_s)
    assert n == expected
    waves = -(-targets // n)
    assert waves * timeout_s <= max(interval_s * 0.6, timeout_s)


def test_open_file_limit_caps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1024, 1024))
    assert asic_concurrency(50_000, 3.0, 60.0) == 512
