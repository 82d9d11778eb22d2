"""Power limits: LuxOS profiles chosen, set and read back over real sockets on
127.79.100-199.N; firmwares without a safe method say so and are sent nothing. (Whatsminer
limits: test_whatsminer_control.py.)"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.firmware.luxos import profile_table
from kuat.collectors.cgminer.firmware.luxos import sim as R
from kuat.collectors.cgminer.sim import AsicFarmSimulator
from kuat.collectors.cgminer.sim_replies import status
from kuat.collectors.readings import AsicReading

_ranges = itertools.count(100)

Farm = Callable[..., AbstractAsyncContextManager[AsicFarmSimulator]]


@pytest.fixture
def farm() -> Farm:
    @asynccontextmanager
    async def make(personalities: Sequence[str]) -> AsyncIterator[AsicFarmSimulator]:
        sim = AsicFarmSimulator(
            len(personalities),
            first_ip=f"127.79.{next(_ranges) % 100 + 100}.1",
            personalities=personalities,
        )
        await sim.start()
        try:
            yield sim
        finally:
            await sim.stop()

    return make


async def poll(host: str, port: int) -> AsicReading:
    r = await AsicPoller(web_port=None).poll(host, port)
    assert isinstance(r, AsicReading), r
    return r


async def test_luxos_limit_picks_the_highest_profile_under_target(farm: Farm) -> None:
    async with farm(["luxos"]) as sim:
        host, port = sim.targets[0]
        m = sim.miners[0]
        table = R.lux_profiles(m)
        before = await poll(host, port)
        assert before.power_limit_w == table[R.LUX_DEFAULT_PROFILE][1]  # 2760 W nameplate

        res = await control.set_power_limit(host, port, "luxos", 2500, "quota share 2.5 kW")
        assert res.outcome == "done", res
        assert res.action == "set_power_limit"
        want_ths, want_w = table["265MHz"]
        assert want_w <= 2500 < table["290MHz"][1]
        assert m.profile == "265MHz"
        assert "265MHz" in res.detail and "quota share 2.5 kW" in res.detail
        # the session was given back: LuxOS allows one at a time
        assert m.requests["logon"] == m.requests["logoff"] == 1

        r = await poll(host, port)
        assert r.power_limit_w == want_w
        assert r.power_w is not None and abs(r.power_w - want_w) < 0.03 * want_w
        assert r.hashrate_ths is not None and abs(r.hashrate_ths - want_ths) < 0.05 * want_ths
        assert r.state == "mining"
        assert sim.total_power_w() < 2500


async def test_luxos_exact_target_and_raise_back(farm: Farm) -> None:
    async with farm(["luxos"]) as sim:
        host, port = sim.targets[0]
        m = sim.miners[0]
        table = R.lux_profiles(m)
        low_w = table["215MHz"][1]
        res = await control.set_power_limit(host, port, "luxos", low_w, "exact")
        assert res.outcome == "done", res
        assert m.profile == "215MHz"
        res = await control.set_power_limit(host, port, "luxos", 10_000, "quota lifted")
        assert res.outcome == "done", res
        assert m.profile == "340MHz"  # the highest there is: never above the target, else max
        assert (await poll(host, port)).power_limit_w == table["340MHz"][1]


async def test_luxos_target_below_every_profile_is_refused_and_not_sent(farm: Farm) -> None:
    # refused, not unsupported: the curtailer learns the floor from a refusal and keeps
    # limiting the miner above it; "unsupported" turned its limits off for good (sleep only)
    async with farm(["luxos"]) as sim:
        host, port = sim.targets[0]
        m = sim.miners[0]
        low_w = R.lux_profiles(m)["190MHz"][1]
        res = await control.set_power_limit(host, port, "luxos", 900, "deep cut")
        assert res.outcome == "refused", res
        assert f"190MHz draws {low_w} W" in res.detail and "not sent" in res.detail
        assert m.profile == R.LUX_DEFAULT_PROFILE
        assert m.requests["profileset"] == m.requests["logon"] == 0
        # the same miner still takes a limit at its lowest profile
        res = await control.set_power_limit(host, port, "luxos", low_w, "cut above its floor")
        assert res.outcome == "done", res
        assert m.profile == "190MHz"


async def test_luxos_without_a_session_is_refused(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy(m: Any) -> dict[str, Any]:  # another tool holds the only session
        return {"STATUS": status(313, "Another session is active", "LUXminer"), "id": 1}

    monkeypatch.setitem(R.LUXOS, "logon", busy)
    async with farm(["luxos"]) as sim:
        host, port = sim.targets[0]
        res = await control.set_power_limit(host, port, "luxos", 2500, "test")
        assert res.outcome == "refused", res
        assert "session" in res.detail
        assert sim.miners[0].profile == R.LUX_DEFAULT_PROFILE


async def test_luxos_unreachable_is_failed() -> None:
    # nothing listens here; no simulator on 127.79.250.x
    res = await control.set_power_limit("127.79.250.7", 4028, "luxos", 2500, "test", timeout_s=1)
    assert res.outcome == "failed", res


@pytest.mark.parametrize(
    ("personality", "family", "why"),
    [
        ("antminer", "bitmain", "work modes"),
        # the simulator serves no REST API here (no web port): an older Braiins OS
        ("braiins", "braiins", "25.07"),
    ],
)
async def test_other_firmwares_say_why_and_are_sent_nothing(
    farm: Farm, personality: str, family: str, why: str
) -> None:
    async with farm([personality]) as sim:
        host, port = sim.targets[0]
        res = await control.set_power_limit(host, port, family, 2500, "test")
        assert res.outcome == "unsupported", res
        assert why in res.detail
        assert sum(sim.miners[0].requests.values()) == 0


@pytest.mark.parametrize("family", ["avalon", "cgminer", "nosuchfirmware"])
async def test_families_without_a_simulator_are_unsupported(family: str) -> None:
    res = await control.set_power_limit("127.79.250.8", 4028, family, 2500, "test")
    assert res.outcome == "unsupported" and res.detail


async def test_profile_table_is_sticky_not_sent_every_poll(farm: Farm) -> None:
    async with farm(["luxos"]) as sim:
        host, port = sim.targets[0]
        m = sim.miners[0]
        poller = AsicPoller(web_port=None)
        readings = [await poller.poll(host, port) for _ in range(4)]
        assert all(isinstance(r, AsicReading) and r.power_limit_w == 2760 for r in readings)
        assert m.requests["profiles"] == 1
        assert m.requests["config"] == 4


def test_profile_table_skips_odd_rows() -> None:
    body = {
        "PROFILES": [
            {"Profile Name": "default", "Watts": 3250},
            {"Profile Name": "", "Watts": 2000},
            {"Profile Name": "nowatts"},
            {"Profile Name": "zero", "Watts": 0},
            "junk",
        ]
    }
    assert profile_table(body) == {"default": 3250.0}
    assert profile_table(None) == {}
