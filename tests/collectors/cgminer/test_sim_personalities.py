"""The simulator's firmwares are declared beside their backends (firmware/<name>/sim.py) and
found there: a farm of every one of them answers, over real sockets, as the poller expects."""

from __future__ import annotations

import itertools
from pathlib import Path

from kuat.collectors.cgminer import sim
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.readings import AsicReading

WEB_PORT = 18098
_ranges = itertools.count(1)
FIRMWARE = Path(sim.__file__).parent / "firmware"

# personality -> the firmware family the poller must read it as
EXPECTED = {
    "antminer": "bitmain",
    "antminer_s21": "bitmain",
    "whatsminer": "whatsminer",
    "whatsminer_v3": "whatsminer_v3",
    "luxos": "luxos",
    "braiins": "braiins",
    "epic": "epic",
    "vnish": "vnish",
    "avalon": "avalon",
    "auradine": "auradine",
}


def test_every_personality_comes_from_a_backend_folder() -> None:
    assert set(sim.HEALTHY) == set(EXPECTED)
    assert set(sim.FAULTS) == {"hang", "trickle", "flood", "garbage", "reject_multi"}
    folders = {p.parent.name for p in FIRMWARE.glob("*/sim.py")}
    assert folders >= {"bitmain", "whatsminer", "luxos", "braiins", "epic", "vnish", "avalon"}
    # the farm itself names no firmware's replies: no per-firmware reply module beside it
    assert not (FIRMWARE.parent / "sim_avalon.py").exists()


async def test_a_farm_of_every_personality_is_read() -> None:
    farm = sim.AsicFarmSimulator(
        len(sim.HEALTHY),
        first_ip=f"127.76.{next(_ranges)}.1",
        personalities=sim.HEALTHY,
        web_port=WEB_PORT,
    )
    async with farm:
        readings = await AsicPoller(timeout_s=3.0, web_port=WEB_PORT).poll_many(farm.targets)
        for m, r in zip(farm.miners, readings, strict=True):
            assert isinstance(r, AsicReading), (m.personality, r)
            assert r.firmware_family == EXPECTED[m.personality], (m.personality, r)
            assert r.hashrate_ths is not None and r.hashrate_ths > 0, (m.personality, r)
