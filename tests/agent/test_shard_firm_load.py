"""A shard of a split site tells the controller how much of its load it can shed: the miners its
curtailer could sleep, limit or cut at the outlet, not its whole draw. A hall whose miners kuat
cannot act on is firm load, and the controller then asks the other halls for the cut
(kuat.quota.shard_caps; the NATS side is tests/agent/test_cluster_job.py)."""

from __future__ import annotations

import gc
from datetime import timedelta
from pathlib import Path

import pytest

from kuat.agent.config import parse_config
from kuat.agent.curtailment import Curtailer
from kuat.agent.state import SiteState
from kuat.collectors.readings import AsicReading
from kuat.quota.curtail import MinerState, curtailable_w
from kuat.quota.shard_caps import ShardLoad, split_caps
from tests.agent.test_curtailer_steps import NOW, status


def test_what_a_plan_could_take_off_each_kind_of_miner() -> None:
    base = MinerState("m", 3000.0, 100.0, asleep=False, can_sleep=False)
    assert curtailable_w(base) == 0.0  # nothing kuat may do to it: firm
    assert curtailable_w(MinerState("m", 3000.0, 100.0, asleep=False)) == 3000.0  # sleeps
    outlet = MinerState("m", 3000.0, 100.0, asleep=False, can_sleep=False, outlet="pdu-1/3")
    assert curtailable_w(outlet) == 3000.0  # its outlet can be cut
    limited = MinerState(
        "m", 3000.0, 100.0, asleep=False, can_sleep=False, power_steps_w=(2700.0, 2100.0)
    )
    assert curtailable_w(limited) == pytest.approx(900.0)  # down to its lowest step
    assert curtailable_w(MinerState("m", 3000.0, 100.0, asleep=True)) == 0.0  # shed already


def test_a_shard_reports_its_unactionable_miners_as_firm(tmp_path: Path) -> None:
    cfg = parse_config(f'[site]\nid = "steps"\n[agent]\nstate_dir = "{tmp_path}"\n')
    state = SiteState()
    # a plain cgminer build has no sleep, no limit: kuat cannot act on it
    for i, family in enumerate(("whatsminer", "whatsminer", "cgminer")):
        r = AsicReading(
            f"127.96.0.{i + 1}",
            4028,
            NOW,
            firmware_family=family,
            model="Whatsminer M31S" if family == "whatsminer" else "custom",
            serial=f"S{i}",
            hashrate_ths=80.0,
            power_w=3000.0,
        )
        state.asics[(r.ip, r.port)] = r
    curtailer = Curtailer(cfg, state, clock=lambda: NOW)
    assert curtailer.curtailable_kw() is None  # before its first plan: nothing known
    curtailer.run(status(9.0, 20.0), NOW)
    # the two Whatsminers sleep; the cgminer build has no write path
    assert curtailer.curtailable_kw() == pytest.approx(6.0)

    # and the controller's split then asks this hall only for what it can shed
    caps = split_caps(
        10.0,
        [ShardLoad("hall-a", 9.0, curtailer.curtailable_kw() or 0.0), ShardLoad("b", 3.0, 3.0)],
    )
    assert caps["hall-a"] >= 3.0 - 1e-9  # its firm 3 kW stays


def _planned_states() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is MinerState)


def test_the_planned_states_are_kept_only_for_who_asks(tmp_path: Path) -> None:
    # An agent without a cluster never asks what its shard could shed: the planner's view of
    # every miner is not held between plans for nobody (issue 15: ~12 MB at 50,000 miners)
    cfg = parse_config(f'[site]\nid = "steps"\n[agent]\nstate_dir = "{tmp_path}"\n')
    state = SiteState()
    for i in range(20):
        r = AsicReading(
            f"127.96.1.{i + 1}",
            4028,
            NOW,
            firmware_family="whatsminer",
            model="Whatsminer M31S",
            serial=f"K{i}",
            hashrate_ths=80.0,
            power_w=3000.0,
        )
        state.asics[(r.ip, r.port)] = r
    curtailer = Curtailer(cfg, state, clock=lambda: NOW)
    before = _planned_states()
    curtailer.run(status(60.0, 80.0), NOW)
    assert _planned_states() == before
    assert curtailer.curtailable_kw() is None  # asked before a plan keeps one: nothing yet
    curtailer.run(status(60.0, 80.0), NOW + timedelta(seconds=cfg.intervals.quota))
    assert _planned_states() == before + 20
    assert curtailer.curtailable_kw() == pytest.approx(60.0)
