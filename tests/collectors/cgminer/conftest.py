"""Simulated farms on private 127.77.N.0/24 ranges: one range per farm, so no two tests share
an address even when a previous test's sockets are still closing."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from kuat.collectors.cgminer.sim import AsicFarmSimulator

# started per process: two test runs at once on one machine (several people, or CI shards) then
# rarely pick the same range
_ranges = itertools.count(os.getpid() % 250)

FarmFactory = Callable[..., AbstractAsyncContextManager[AsicFarmSimulator]]


@pytest.fixture
def farm() -> FarmFactory:
    @asynccontextmanager
    async def make(
        count: int, personalities: Sequence[str] | None = None, seed: int = 1
    ) -> AsyncIterator[AsicFarmSimulator]:
        sim = AsicFarmSimulator(
            count,
            first_ip=f"127.77.{next(_ranges) % 250}.1",
            personalities=personalities,
            seed=seed,
        )
        await sim.start()
        try:
            yield sim
        finally:
            await sim.stop()

    return make
