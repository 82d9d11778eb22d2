"""PoolConfigurable (checklist item 7's fix): a miner's pools replaced through its firmware's own
write path and confirmed by reading them back, against the simulator over real sockets on
127.73.N.1 (stock Antminer web UI, Whatsminer API v2 update_pools and v3 set.miner.pools,
ePIC /coin, Vnish /settings, LuxOS addpool/switchpool/removepool, Braiins OS REST pools/batch,
Avalon setpool and the reboot that applies it)."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kuat.collectors.capabilities import ActionResult, PoolConfigurable, PoolTarget
from kuat.collectors.cgminer import control
from kuat.collectors.cgminer.collector import AsicPoller
from kuat.collectors.cgminer.control import MinerAccess
from kuat.collectors.cgminer.firmware.whatsminer.btminer_auth import (
    v3_decrypt_param,
    v3_digest,
    v3_set_request,
)
from kuat.collectors.cgminer.handle import miner_handle
from kuat.collectors.cgminer.sim import AsicFarmSimulator, SimMiner
from kuat.collectors.readings import AsicReading

WEB_PORT = 18097
SECRET = "Kz7_pass"
_ranges = itertools.count(1)
ACCREDITED = (
    PoolTarget("stratum+tcp://pool.kz.example:3333", "farm1.w1", "x"),
    PoolTarget("stratum+tcp://backup.kz.example:443", "farm1.w1", "secret-pool-pass"),
)


@asynccontextmanager
async def one_miner(personality: str) -> AsyncIterator[SimMiner]:
    sim = AsicFarmSimulator(
        1,
        first_ip=f"127.73.{next(_ranges) % 250 + 1}.1",
        personalities=[personality],
        web_port=WEB_PORT,
    )
    sim.miners[0].admin_password = SECRET
    await sim.start()
    try:
        yield sim.miners[0]
    finally:
        await sim.stop()


async def pools_of(m: SimMiner) -> list[tuple[str, str | None]]:
    r = await AsicPoller(web_port=None).poll(m.ip, m.port)
    assert isinstance(r, AsicReading), r
    return [(p.url, p.user) for p in r.pools]


async def write_accredited(
    m: SimMiner, firmware: str, access: MinerAccess | None = None
) -> ActionResult:
    """ACCREDITED through the miner's PoolConfigurable handle; the write must be done."""
    h = miner_handle(m.ip, m.port, firmware, access=access, confirm_s=3.0)
    assert isinstance(h, PoolConfigurable)
    res = await h.set_pools(ACCREDITED, "item 7")
    assert res.outcome == "done", res
    return res


def _access() -> MinerAccess:
    return MinerAccess(web_port=WEB_PORT, whatsminer_password=SECRET)


async def test_stock_antminer_pools_written_through_the_web_ui_and_confirmed() -> None:
    async with one_miner("antminer") as m:
        m.set_work_mode(1)  # asleep for the quota: writing pools must not wake it
        assert m.sleeping
        h = miner_handle(m.ip, m.port, "bitmain", access=_access(), confirm_s=3.0)
        assert isinstance(h, PoolConfigurable)
        res = await h.set_pools(ACCREDITED, "item 7: pool not accredited")
        assert res.outcome == "done", res
        assert await pools_of(m) == [(p.url, p.user) for p in ACCREDITED]
        assert m.conf_writes[-1]["pools"][1]["pass"] == "secret-pool-pass"
        assert m.sleeping and m.conf_writes[-1]["miner-mode"] == 1
        assert "secret-pool-pass" not in res.detail


async def test_stock_antminer_wrong_web_password_is_refused() -> None:
    async with one_miner("antminer") as m:
        access = MinerAccess(web_port=WEB_PORT, web_password="not-it")
        res = await control.set_pools(m.ip, m.port, "bitmain", ACCREDITED, "t", access=access)
        assert res.outcome == "refused", res
        assert "not-it" not in res.detail
        assert m.conf_writes == []


async def test_whatsminer_update_pools_encrypted_and_confirmed() -> None:
    async with one_miner("whatsminer") as m:
        before = await pools_of(m)
        four = (
            *ACCREDITED,
            PoolTarget("stratum+tcp://c.kz:1", "u"),
            PoolTarget("stratum+tcp://d.kz:1", "u"),
        )
        res = await control.set_pools(
            m.ip, m.port, "whatsminer", four, "item 7", access=_access(), confirm_s=3.0
        )
        assert res.outcome == "done", res
        # btminer keeps three pools: the fourth is not written, and the result says so
        assert await pools_of(m) == [(p.url, p.user) for p in four[:3]] != before
        assert "1 more not written" in res.detail
        assert m.requests["update_pools"] == 1


async def test_whatsminer_wrong_admin_password_is_refused_with_a_hint() -> None:
    async with one_miner("whatsminer") as m:
        before = await pools_of(m)
        access = MinerAccess(whatsminer_password="wrong-one")
        res = await control.set_pools(m.ip, m.port, "whatsminer", ACCREDITED, "t", access=access)
        assert res.outcome == "refused" and "admin password" in res.detail, res
        assert "wrong-one" not in res.detail
        assert await pools_of(m) == before


async def test_no_write_path_and_no_pools_are_said_plainly() -> None:
    h = miner_handle("10.0.0.5", 4028, "cgminer")  # an unknown cgminer derivative
    assert not isinstance(h, PoolConfigurable)
    res = await control.set_pools("127.0.0.1", 9, "cgminer", ACCREDITED, "t")
    assert res.outcome == "unsupported" and "cgminer" in res.detail
    res = await control.set_pools("127.0.0.1", 9, "bitmain", (), "t")
    assert res.outcome == "refused" and "no pools" in res.detail


async def test_whatsminer_v3_set_miner_pools_encrypted_and_confirmed() -> None:
    async with one_miner("whatsminer_v3") as m:
        h = miner_handle(m.ip, m.port, "whatsminer_v3", access=_access(), confirm_s=3.0)
        assert isinstance(h, PoolConfigurable)
        res = await h.set_pools(ACCREDITED, "item 7")
        assert res.outcome == "done", res
        assert [(p["url"], p["user"], p["pass"]) for p in m.pools] == [
            (p.url, p.user, p.password) for p in ACCREDITED
        ]
        assert m.requests["set.miner.pools"] == 1


async def test_whatsminer_v3_pool_passwords_never_go_in_clear() -> None:
    # the param is encrypted under the command's own digest: the wire shows no pool password
    req = v3_set_request(
        "set.miner.pools",
        [{"pool": "stratum+tcp://pool.kz:3333", "worker": "w", "passwd": "secret-pool-pass"}],
        account="super",
        password="pw",
        salt="abcdefgh",
        ts=1700000000,
    )
    assert isinstance(req["param"], str) and "secret" not in json.dumps(req)
    key = v3_digest("set.miner.pools", "pw", "abcdefgh", 1700000000)
    assert v3_decrypt_param(key, req["param"])[0]["passwd"] == "secret-pool-pass"


async def test_whatsminer_v3_wrong_password_is_refused_and_nothing_changes() -> None:
    async with one_miner("whatsminer_v3") as m:
        before = list(m.pools)
        access = MinerAccess(whatsminer_password="wrong-one")
        res = await control.set_pools(m.ip, m.port, "whatsminer_v3", ACCREDITED, "t", access=access)
        assert res.outcome == "refused" and "admin password" in res.detail, res
        assert "wrong-one" not in res.detail
        assert m.pools == before


async def test_epic_coin_writes_the_stratum_configs_and_confirms_them() -> None:
    async with one_miner("epic") as m:
        h = miner_handle(m.ip, m.port, "epic", confirm_s=3.0)
        assert isinstance(h, PoolConfigurable)
        res = await h.set_pools(ACCREDITED, "item 7")
        assert res.outcome == "done", res
        assert await pools_of(m) == [(p.url, p.user) for p in ACCREDITED]
        assert m.pools[1]["pass"] == "secret-pool-pass"
        bad = MinerAccess(epic_password="not-it")
        res = await control.set_pools(m.ip, m.port, "epic", ACCREDITED[:1], "t", access=bad)
        assert res.outcome == "refused" and "BadPassword" in res.detail, res
        assert await pools_of(m) == [(p.url, p.user) for p in ACCREDITED]


async def test_vnish_settings_pools_then_the_restart_it_asks_for() -> None:
    async with one_miner("vnish") as m:
        access = MinerAccess(web_port=WEB_PORT)
        h = miner_handle(m.ip, m.port, "vnish", access=access, confirm_s=3.0)
        assert isinstance(h, PoolConfigurable)
        res = await h.set_pools(ACCREDITED, "item 7")
        # the simulator applies saved pools only on a mining restart: done proves it was sent
        assert res.outcome == "done", res
        assert await pools_of(m) == [(p.url, p.user) for p in ACCREDITED]
        wrong = MinerAccess(web_port=WEB_PORT, vnish_password="not-it")
        res = await control.set_pools(m.ip, m.port, "vnish", ACCREDITED[:1], "t", access=wrong)
        assert res.outcome == "refused", res
        assert len(await pools_of(m)) == 2


async def test_luxos_adds_switches_and_removes_until_only_the_accredited_pools_are_left() -> None:
    async with one_miner("luxos") as m:
        m.sleeping = True  # asleep for the quota: LuxOS changes pools live, it stays asleep
        await write_accredited(m, "luxos")
        assert await pools_of(m) == [(p.url, p.user) for p in ACCREDITED]
        assert m.pools[1]["pass"] == "secret-pool-pass" and m.sleeping
        # no session: LuxOS documents its pool commands as logon_required false
        assert m.requests["addpool"] == 2 and m.requests["removepool"] == 3
        assert m.requests["logon"] == 0


async def test_luxos_pool_with_a_comma_is_refused_before_anything_is_sent() -> None:
    async with one_miner("luxos") as m:
        before = await pools_of(m)
        bad = (PoolTarget("stratum+tcp://pool.kz.example:3333", "farm1,w1", "x"),)
        res = await control.set_pools(m.ip, m.port, "luxos", bad, "t")
        assert res.outcome == "refused" and "comma" in res.detail, res
        assert m.requests["addpool"] == 0 and await pools_of(m) == before


async def test_braiins_rest_pool_group_replaces_the_pools_and_is_confirmed() -> None:
    async with one_miner("braiins") as m:
        res = await write_accredited(m, "braiins", MinerAccess(braiins_web_port=WEB_PORT))
        assert await pools_of(m) == [(p.url, p.user) for p in ACCREDITED]
        assert m.pools[1]["pass"] == "secret-pool-pass"
        assert "secret-pool-pass" not in res.detail


async def test_braiins_wrong_password_is_refused_and_a_sleeping_one_is_not_restarted() -> None:
    async with one_miner("braiins") as m:
        before = await pools_of(m)
        wrong = MinerAccess(braiins_web_port=WEB_PORT, braiins_password="not-it")
        res = await control.set_pools(m.ip, m.port, "braiins", ACCREDITED, "t", access=wrong)
        assert res.outcome == "refused" and "not-it" not in res.detail, res
        m.sleeping = True  # paused for the quota: bosminer's restart would set it mining
        access = MinerAccess(braiins_web_port=WEB_PORT)
        res = await control.set_pools(m.ip, m.port, "braiins", ACCREDITED, "t", access=access)
        assert res.outcome == "failed" and "asleep" in res.detail, res
        assert await pools_of(m) == before and m.sleeping


async def test_avalon_setpool_into_every_slot_then_the_reboot_that_applies_them() -> None:
    async with one_miner("avalon") as m:
        m.reboot_s = 1.0  # its API is away while it boots: the confirmation waits it out
        res = await write_accredited(m, "avalon")
        # three slots and none can be emptied: the last pool fills the third, no foreign
        # pool stays behind as a failover
        want = [(p.url, p.user) for p in (*ACCREDITED, ACCREDITED[-1])]
        assert await pools_of(m) == want
        assert m.requests["setpool"] == 3 and m.requests["ascset"] == 1
        assert "admin" not in res.detail and "secret-pool-pass" not in res.detail


async def test_avalon_wrong_login_is_refused_with_the_firmwares_words() -> None:
    async with one_miner("avalon") as m:
        before = await pools_of(m)
        wrong = MinerAccess(avalon_password="not-it")
        res = await control.set_pools(m.ip, m.port, "avalon", ACCREDITED, "t", access=wrong)
        assert res.outcome == "refused" and "userpass err" in res.detail, res
        assert "not-it" not in res.detail
        assert m.requests["ascset"] == 0 and await pools_of(m) == before
        m.sleeping = True  # soft-off for the quota: the reboot would set it mining
        res = await control.set_pools(m.ip, m.port, "avalon", ACCREDITED, "t")
        assert res.outcome == "failed" and "asleep" in res.detail, res
        assert m.requests["setpool"] == 1 and m.sleeping


async def test_luxos_refused_addpool_says_why_hides_the_password_and_removes_nothing() -> None:
    async with one_miner("luxos") as m:
        before = await pools_of(m)
        bad = (PoolTarget("stratum+tcp://pool.kz.example:3333", "", "secret-pool-pass"),)
        res = await control.set_pools(m.ip, m.port, "luxos", bad, "t")
        assert res.outcome == "refused" and "Invalid addpool details" in res.detail, res
        assert "secret-pool-pass" not in res.detail
        assert m.requests["removepool"] == 0 and await pools_of(m) == before
