"""Vnish: detection on its cgminer API, identity and watts from its web API, and control, against
the simulator over real sockets."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.firmware.vnish import web as vnish_web
from kuat.collectors.cgminer.firmware.vnish.sim import VNISH_PRESETS
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.readings import AsicReading

FIX = Path(__file__).parents[2] / "fixtures" / "asic"
WEB_PORT = 18093
_ranges = itertools.count(1)


# the 'version' capture of a Vnish S9 is a case folder: tests/cases/asic/vnish/s9-version/


def test_info_fixture_identity() -> None:
    ident = vnish_web.parse_info(json.loads((FIX / "vnish-s19-info.json").read_text()))
    assert ident is not None
    assert ident.serial is None  # "N/A" is no serial
    assert ident.mac == "fe:07:26:3c:be:1b" and ident.firmware == "Vnish 1.2.6"


async def test_poller_reads_vnish_and_controls_it() -> None:
    sim = AsicFarmSimulator(
        2,
        first_ip=f"127.81.{next(_ranges)}.1",
        personalities=["vnish", "antminer"],
        web_port=WEB_PORT,
    )
    async with sim:
        m = sim.miners[0]
        poller = AsicPoller(web_port=WEB_PORT)
        r, stock = await poller.poll_many(sim.targets)
        assert isinstance(r, AsicReading) and r.firmware_family == "vnish", r
        assert isinstance(stock, AsicReading) and stock.firmware_family == "bitmain"
        assert r.model == "Antminer S19j Pro" and r.firmware == "Vnish 1.2.6"
        assert r.serial == m.serial and r.mac == m.mac.lower()
        assert r.power_w is not None and abs(r.power_w - m.power_w) < 50

        wrong = await vnish_web.sleep(m.ip, "quota", web_port=WEB_PORT, password="x")
        assert wrong.outcome == "refused", wrong
        done = await vnish_web.sleep(m.ip, "quota", web_port=WEB_PORT, confirm_s=3)
        assert done.outcome == "done" and m.sleeping, done
        asleep = await poller.poll(m.ip, m.port)
        assert isinstance(asleep, AsicReading) and asleep.state == "sleeping", asleep
        # a build that stops its cgminer API with the miner: the web API still gives a reading
        m.api_stops_asleep = True
        quiet = await poller.poll(m.ip, m.port)
        assert isinstance(quiet, AsicReading) and quiet.state == "sleeping", quiet
        m.api_stops_asleep = False
        woke = await vnish_web.wake(m.ip, "quota", web_port=WEB_PORT, confirm_s=3)
        assert woke.outcome == "done" and not m.sleeping, woke
        limited = await vnish_web.set_power_limit(
            m.ip, 3000, "quota", web_port=WEB_PORT, confirm_s=3
        )
        assert limited.outcome == "done" and m.preset == "2950", limited
        after = await poller.poll(m.ip, m.port)
        assert isinstance(after, AsicReading) and after.power_limit_w == 2950
        await poller.aclose()


async def test_a_target_below_every_preset_is_refused_unsent_and_the_miner_still_limited() -> None:
    # refused, not unsupported: the curtailer learns the floor from a refusal and keeps
    # limiting the miner above it; "unsupported" turned its limits off for good (sleep only)
    low = min(VNISH_PRESETS)
    sim = AsicFarmSimulator(
        1, first_ip=f"127.81.{next(_ranges)}.1", personalities=["vnish"], web_port=WEB_PORT
    )
    async with sim:
        m = sim.miners[0]
        too_low = await vnish_web.set_power_limit(m.ip, low - 500, "quota", web_port=WEB_PORT)
        assert too_low.outcome == "refused", too_low
        assert f"lowest preset draws {low} W" in too_low.detail, too_low
        assert "not sent" in too_low.detail
        assert m.requests["HTTP POST /api/v1/settings"] == 0
        at_floor = await vnish_web.set_power_limit(
            m.ip, low, "quota", web_port=WEB_PORT, confirm_s=3
        )
        assert at_floor.outcome == "done" and m.preset == str(low), at_floor
