"""ePIC (UMC/PowerPlay): parsing the published reply shapes, detection and control against the
simulator over real sockets on 127.77.x.y."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.firmware.epic import api as epic
from kuat.collectors.cgminer.firmware.epic.sim import EPIC_POWER_RANGE
from kuat.collectors.readings import AsicReading, DeviceError
from tests.collectors.cgminer.conftest import FarmFactory

FIX = Path(__file__).parents[2] / "fixtures" / "asic"


def _load(name: str) -> dict:
    return json.loads((FIX / name).read_text())


def test_fixture_values_read_as_a_person_reads_them() -> None:
    bodies = {
        "summary": _load("epic-s19xp-summary.json"),
        "capabilities": _load("epic-s19xp-capabilities.json"),
        "network": _load("epic-s19xp-network.json"),
    }
    r = epic.build_epic_reading("127.0.0.1", 4028, datetime.now(UTC), bodies, {})
    assert r.firmware_family == "epic" and r.vendor == "Bitmain"
    assert r.model == "Antminer S19 XP"
    assert r.serial == "002000353232510933363631"  # cpuSerial: this build has no miner SN
    assert r.mac == "e6:d4:41:51:64:28"
    assert r.firmware == "PowerPlay-BMS v1.5.13"
    assert r.hashrate_ths == 99.3658  # 49440724 + 49925124 MH/s, to 6 significant digits
    assert r.hashrate_nominal_ths == 143
    assert r.power_w == 2166.6174
    assert r.temps_c.board == (67.0, 64.312)
    assert r.fans_rpm == (5971, 0, 5942, 5745)
    assert r.uptime_s == 23170
    assert r.state == "mining"
    assert r.pools[0].url == "stratum+tcp://mine.ocean.xyz:3334" and r.pools[0].active
    assert r.power_limit_w is None  # VoltageOptimizer targets TH/s, not watts
    assert epic.capability_range(bodies["capabilities"], "Power") is None


async def test_poller_detects_epic_and_controls_it(farm: FarmFactory) -> None:
    async with farm(2, ["epic", "antminer"]) as sim:
        poller = AsicPoller(web_port=None)
        first = await poller.poll_many(sim.targets)
        second = await poller.poll_many(sim.targets)
        m = sim.miners[0]
        assert all(isinstance(r, AsicReading) for r in first + second), first + second
        r = second[0]
        assert r.firmware_family == "epic" and r.serial == m.serial and r.mac == m.mac.lower()
        assert first[1].firmware_family == "bitmain"
        assert poller.family_of(m.ip, m.port) == "epic"

        wrong = await epic.sleep(m.ip, "quota", password="nope", confirm_s=1)
        assert wrong.outcome == "refused", wrong
        done = await epic.sleep(m.ip, "quota", confirm_s=3)
        assert done.outcome == "done" and m.sleeping, done
        assert (await poller.poll(m.ip, m.port)).state == "sleeping"
        woke = await epic.wake(m.ip, "quota", confirm_s=3)
        assert woke.outcome == "done" and not m.sleeping, woke
        limited = await epic.set_power_limit(m.ip, 2500, "quota", confirm_s=3)
        assert limited.outcome == "done", limited
        after = await poller.poll(m.ip, m.port)
        assert isinstance(after, AsicReading) and after.power_limit_w == 2500
        await poller.aclose()


async def test_a_target_below_the_tuners_range_is_refused_unsent_and_the_miner_still_limited(
    farm: FarmFactory,
) -> None:
    # refused, not unsupported: the curtailer learns the floor from a refusal and keeps
    # limiting the miner above it; "unsupported" turned its limits off for good (sleep only)
    lo, _ = EPIC_POWER_RANGE
    async with farm(1, ["epic"]) as sim:
        m = sim.miners[0]
        too_low = await epic.set_power_limit(m.ip, lo - 600, "quota", confirm_s=1)
        assert too_low.outcome == "refused", too_low
        assert f"lowest power target is {lo} W" in too_low.detail, too_low
        assert "not sent" in too_low.detail
        assert m.requests["HTTP POST /perpetualtune/algo"] == 0
        at_floor = await epic.set_power_limit(m.ip, lo, "quota", confirm_s=3)
        assert at_floor.outcome == "done", at_floor
        assert m.power_limit_w == lo


async def test_garbage_or_hung_http_is_a_device_error_naming_the_miner(
    farm: FarmFactory,
) -> None:
    async with farm(2, ["epic", "epic"]) as sim:
        poller = AsicPoller(timeout_s=1.0, web_port=None)
        await poller.poll_many(sim.targets)
        sim.miners[0].http_garbage = True
        sim.miners[1].web_hang = True
        results = await poller.poll_many(sim.targets)
        await poller.aclose()
    garbage, hung = results
    assert isinstance(garbage, DeviceError) and "not JSON" in garbage.cause
    assert isinstance(hung, DeviceError) and "timed out" in hung.cause
    assert f"{sim.miners[1].ip}:4028" in hung.describe()
