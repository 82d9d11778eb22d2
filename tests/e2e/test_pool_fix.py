"""Checklist item 7 fixed by the running agent ([compliance] fix_pools): miners found on a pool
that is not accredited get the accredited pools through their own firmware's write path, read
back; a dry run only says what it would do; a miner that refuses is not asked every cycle."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

import pytest

from kuat.agent.config import ConfigError, parse_config
from kuat.agent.runtime import Agent
from kuat.collectors.cgminer.sim import AsicFarmSimulator, SimMiner

ACCREDITED = "pool.kz.example"
POOLS = [
    (f"stratum+tcp://{ACCREDITED}:3333", "kzfarm.{worker}"),
    (f"stratum+tcp://backup.{ACCREDITED}:443", "kzfarm.backup"),
]


def written(m: SimMiner) -> list[tuple[str, str]]:
    """POOLS as a miner gets them: its own worker name (the simulator's users are
    "kzfarm.kuat0000N") in place of {worker}."""
    worker = m.pools[0]["user"].partition(".")[2]
    return [(u, w.replace("{worker}", worker)) for u, w in POOLS]


WEB_PORT = 18211
_ranges = itertools.count(1)


def config(
    tmp_path: Path,
    asics: AsicFarmSimulator,
    *,
    enforce: bool,
    language: str = "en",
    whatsminer_password: str = "admin",
) -> str:
    hosts = ", ".join(f'"{ip}"' for ip, _ in asics.targets)
    pools = "".join(
        f'\n[[compliance.pools]]\nurl = "{u}"\nuser = "{w}"\npassword = "x"\n' for u, w in POOLS
    )
    return f"""
[site]
id = "pools"
[agent]
state_dir = "{tmp_path}"
language = "{language}"
[intervals]
asic = 1
[asic]
timeout_s = 2
web_port = {WEB_PORT}
credentials.braiins.web_port = {WEB_PORT}
credentials.auradine.web_port = {WEB_PORT}
credentials.whatsminer.password = "{whatsminer_password}"
[[asic.groups]]
hosts = [{hosts}]
[quota]
enforce = {"true" if enforce else "false"}
[compliance]
accredited_pools = ["{ACCREDITED}", "backup.{ACCREDITED}"]
fix_pools = true
{pools}
"""


def farm(*personalities: str) -> AsicFarmSimulator:
    # every simulated miner starts on f2pool/antpool: none of them accredited here
    return AsicFarmSimulator(
        len(personalities),
        first_ip=f"127.74.{next(_ranges) % 250 + 1}.1",
        personalities=list(personalities),
        web_port=WEB_PORT,
    )


async def run_for(agent: Agent, seconds: float) -> None:
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(seconds)
    agent.request_stop()
    await asyncio.wait_for(task, 30)


def on(m: SimMiner) -> list[tuple[str, str]]:
    return [(p["url"], p["user"]) for p in m.pools]


async def test_enforcing_writes_the_accredited_pools_through_each_firmware(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kuat.pools")
    firmwares = (
        "antminer",
        "whatsminer",
        "whatsminer_v3",
        "epic",
        "vnish",
        "luxos",
        "braiins",
        "auradine",
    )
    async with farm(*firmwares, "avalon") as asics:
        asics.miners[0].set_work_mode(1)  # asleep for the quota: the fix must not wake it
        want = [written(m) for m in asics.miners]
        # an Avalon has three slots and cannot empty one: the last pool fills the third
        want[-1].append(want[-1][-1])
        assert want[1] == [(POOLS[0][0], "kzfarm.kuat00001"), POOLS[1]]
        agent = Agent(parse_config(config(tmp_path, asics, enforce=True)))
        await run_for(agent, 6)
        assert [on(m) for m in asics.miners] == want
        assert asics.miners[0].sleeping
        assert {r.outcome for r in agent.pool_fixer.results} == {"done"}, agent.pool_fixer.results
        # each miner written once: once fixed, it is no offender any more
        assert len(agent.pool_fixer.results) == 9
        # the agent's own last view shows them on the accredited pool
        assert agent.pool_fixer.offenders() == []
    done = [r.getMessage() for r in caplog.records if "item 7 fixed" in r.getMessage()]
    assert len(done) == 9 and all("btc.f2pool.com" in m for m in done), done


async def test_dry_run_logs_the_plan_once_in_the_operators_language_and_writes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kuat.pools")
    async with farm("antminer", "whatsminer", "luxos", "avalon") as asics:
        before = [on(m) for m in asics.miners]
        agent = Agent(parse_config(config(tmp_path, asics, enforce=False, language="kk")))
        await run_for(agent, 4)
        assert [on(m) for m in asics.miners] == before
        assert asics.miners[0].conf_writes == []
        # no write was even begun
        assert asics.miners[1].requests["get_token"] == 0
        assert asics.miners[2].requests["addpool"] == 0
        assert asics.miners[3].requests["setpool"] == 0
    plans = [r.getMessage() for r in caplog.records if r.name == "kuat.pools"]
    # one line per miner over several cycles, in Kazakh, naming the pools it would get
    assert len(plans) == 4, plans
    assert all("сынақ режимі" in p and f"{ACCREDITED}:3333" in p for p in plans)


async def test_a_miner_that_refuses_is_said_once_and_not_asked_every_cycle(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kuat.pools")
    async with farm("whatsminer", "auradine") as asics:
        asics.miners[1].web_password = "changed-on-site"  # kuat has the factory admin/admin
        before = [on(m) for m in asics.miners]
        cfg = config(tmp_path, asics, enforce=True, language="ru", whatsminer_password="wrong")
        agent = Agent(parse_config(cfg))
        await run_for(agent, 5)
        assert [on(m) for m in asics.miners] == before
        # each refusing miner was asked once in five cycles
        assert asics.miners[0].requests["get_token"] == 1
        assert asics.miners[1].requests["token"] == 1
        assert asics.miners[1].requests["updatepools"] == 0  # its login failed first
    said = [r.getMessage() for r in caplog.records if r.name == "kuat.pools"]
    assert len(said) == 2, said
    refused = next(m for m in said if "whatsminer" in m)
    assert "П. 7 не исправлен" in refused and "refused" in refused
    assert "wrong" not in refused  # the password never reaches a log line
    assert any("следующая попытка" in m for m in said)


async def test_an_avalon_that_refuses_is_said_once_in_the_operators_language_and_others_are_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kuat.pools")
    async with farm("avalon", "luxos") as asics:
        avalon, luxos = asics.miners
        avalon.web_password = "changed-on-site"  # kuat still has the factory admin/admin
        before = on(avalon)
        want = written(luxos)
        agent = Agent(parse_config(config(tmp_path, asics, enforce=True, language="kk")))
        await run_for(agent, 5)
        assert on(avalon) == before and on(luxos) == want
        # asked once in five cycles, and never rebooted with pools it did not take
        assert avalon.requests["setpool"] == 1 and avalon.requests["ascset"] == 0
        outcomes = sorted(r.outcome for r in agent.pool_fixer.results)
        assert outcomes == ["done", "refused"], agent.pool_fixer.results
    said = [r.getMessage() for r in caplog.records if r.name == "kuat.pools"]
    refused = [m for m in said if "avalon" in m]
    assert len(refused) == 1 and "userpass err" in refused[0], said
    assert "changed-on-site" not in refused[0]
    assert "түзетілмеді" in refused[0]  # in Kazakh, the operator's language


def test_fix_pools_refuses_pools_that_are_not_accredited(tmp_path: Path) -> None:
    text = f"""
[site]
id = "x"
[agent]
state_dir = "{tmp_path}"
[compliance]
accredited_pools = ["{ACCREDITED}"]
fix_pools = true
[[compliance.pools]]
url = "stratum+tcp://btc.f2pool.com:1314"
user = "w"
"""
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    assert "compliance" in str(e.value) and "not in accredited_pools" in str(e.value)
    with pytest.raises(ConfigError, match="at least one"):
        parse_config(text.split("[[compliance.pools]]")[0])
