from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kuat.collectors.modbus import MeterPoller

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "meter"


@pytest.fixture
async def poller() -> AsyncIterator[MeterPoller]:
    p = MeterPoller(timeout_s=0.5)
    yield p
    await p.close()
