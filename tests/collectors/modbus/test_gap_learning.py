"""The read planner spans gaps by default and learns, per meter, the gaps it refuses.

On a meter that reads across unmapped registers the poller issues the gap-free optimum (the
fewest requests the 125-register limit allows) from the first poll; on one that refuses them
(exception 2) only the first poll probes, and every later poll issues only reads that succeed.
"""

from __future__ import annotations

import pytest

from kuat.collectors.modbus.collector import MeterPoller
from kuat.collectors.modbus.plan import plan
from kuat.collectors.modbus.profile import list_profiles, load_profile
from kuat.collectors.modbus.sim import MeterSimulator
from kuat.collectors.readings import MeterReading

PROFILES = list_profiles()


def test_spanning_gaps_needs_19_reads_over_the_shipped_maps() -> None:
    total = sum(len(plan(load_profile(n).spans())) for n in list_profiles())
    legacy = sum(len(plan(load_profile(n).spans(), max_gap=16)) for n in list_profiles())
    assert (total, legacy) == (19, 32)


@pytest.mark.parametrize("name", PROFILES)
async def test_gap_tolerant_meter_gets_the_optimum(name: str) -> None:
    optimum = len(plan(load_profile(name).spans(), max_count=load_profile(name).max_count))
    async with MeterSimulator(name, gaps_readable=True) as sim:
        poller = MeterPoller(timeout_s=1.0)
        try:
            for _ in range(2):
                sim.requests.clear()
                r = await poller.poll(sim.host, sim.port, profile=name)
                assert isinstance(r, MeterReading), r
                assert len(sim.requests) == optimum
            assert sim.refused == 0
        finally:
            await poller.close()


@pytest.mark.parametrize("name", PROFILES)
async def test_strict_meter_probes_once_then_reads_only_what_works(name: str) -> None:
    async with MeterSimulator(name) as sim:
        poller = MeterPoller(timeout_s=1.0)
        try:
            first = await poller.poll(sim.host, sim.port, profile=name)
            assert isinstance(first, MeterReading), first
            refused_first = sim.refused
            for _ in range(2):
                again = await poller.poll(sim.host, sim.port, profile=name)
                assert isinstance(again, MeterReading), again
            assert sim.refused == refused_first  # no failed read after the first poll
            if name == "schneider-pm5560":  # a map with holes: the first poll had to probe
                assert refused_first > 0
        finally:
            await poller.close()
