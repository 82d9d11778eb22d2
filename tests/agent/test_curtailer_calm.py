"""A plan that had nothing to do is not made again over every miner on each meter reading
while nothing material changes (quota.curtail.calm / stands); what does change is acted on:
a load over the limit is cut at the next reading, and a miner that went down by itself is
restored by the next full plan, at the latest one quota interval on."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

from kuat.agent.config import parse_config
from kuat.agent.curtailment import Curtailer
from kuat.agent.state import SiteState
from kuat.collectors.readings import AsicReading
from kuat.quota.curtail import ActionKind, CurtailPlan, MinerState, calm, stands
from kuat.quota.evaluate import QuotaStatus
from kuat.quota.reasons import Code, Reason
from tests.agent.test_curtailer_steps import NOW
from tests.agent.test_curtailer_steps import status as steps_status

MINERS = 20
DRAW_W = 3220.0
QUOTA_S = 60


def status(load_kw: float, allowed_kw: float, next_kw: float | None = None) -> QuotaStatus:
    nxt = 2 * allowed_kw if next_kw is None else next_kw
    return dataclasses.replace(steps_status(load_kw, allowed_kw), next_allocation_kwh=nxt)


S19 = AsicReading(
    "127.95.0.1",
    4028,
    NOW,
    vendor="Bitmain",
    firmware_family="bitmain",
    model="Antminer S19",
    hashrate_ths=95.0,
    power_w=DRAW_W,
)
LOAD_KW = MINERS * DRAW_W / 1000


def calm_site(tmp_path: Path) -> tuple[Curtailer, SiteState]:
    """Twenty miners, all up, and a first plan with ample room: nothing to do."""
    state = SiteState()
    for i in range(MINERS):
        r = dataclasses.replace(S19, ip=f"127.95.0.{i + 1}", serial=f"S19{i:010d}")
        state.asics[(r.ip, r.port)] = r
    text = (
        f'[site]\nid = "calm"\n[agent]\nstate_dir = "{tmp_path}"\n[intervals]\nquota = {QUOTA_S}\n'
    )
    c = Curtailer(parse_config(text + "[quota]\nenforce = false\n"), state, clock=lambda: NOW)
    c.run(status(LOAD_KW, 2 * LOAD_KW), NOW)
    assert c.last_plan is not None and not c.last_plan.actions
    return c, state


def test_a_load_over_the_limit_after_calm_plans_is_cut_at_the_next_reading(
    tmp_path: Path,
) -> None:
    c, _ = calm_site(tmp_path)
    load = LOAD_KW
    calm_plan = c.last_plan
    c.run(status(load, 2 * load), NOW + timedelta(seconds=5))
    assert c.last_plan is calm_plan  # nothing changed: the plan stands
    c.run(status(load, 0.8 * load), NOW + timedelta(seconds=10))
    cut = c.last_plan
    assert cut is not None and cut is not calm_plan
    assert {a.kind for a in cut.actions} == {ActionKind.SLEEP}


def test_a_lower_next_hour_is_planned_for_at_once(tmp_path: Path) -> None:
    c, _ = calm_site(tmp_path)
    load = LOAD_KW
    first = c.last_plan
    c.run(status(load, 2 * load, next_kw=0.5 * load), NOW + timedelta(seconds=5))
    assert c.last_plan is not first


def test_a_miner_gone_to_sleep_by_itself_is_restored_by_the_next_full_plan(
    tmp_path: Path,
) -> None:
    c, state = calm_site(tmp_path)
    load = LOAD_KW
    key = next(iter(state.asics))
    r = state.asics[key]
    assert isinstance(r, AsicReading)
    later = NOW + timedelta(seconds=5)
    state.asics[key] = dataclasses.replace(
        r, taken_at=later, state="sleeping", power_w=0.0, hashrate_ths=0.0
    )
    c.run(status(load - 3.2, 2 * load), later)
    c.run(status(load - 3.2, 2 * load), NOW + timedelta(seconds=QUOTA_S))
    p = c.last_plan
    assert p is not None
    assert [(a.kind, a.device_id) for a in p.actions] == [(ActionKind.RESTORE, r.device_id)]


def _plan(**kw: object) -> CurtailPlan:
    base: dict[str, object] = {
        "at": NOW,
        "allowed_kw": 100.0,
        "load_kw": 50.0,
        "planned_load_kw": 50.0,
        "actions": (),
        "held": (),
        "reason": Reason.of(Code.CURTAIL_WITHIN_LIMIT),
    }
    return CurtailPlan(**{**base, **kw})  # type: ignore[arg-type]


def test_calm_means_nothing_to_do_and_nothing_to_bring_back() -> None:
    up = MinerState("a", 3000.0, 100.0, False, None)
    assert calm(_plan(), [up])
    assert not calm(_plan(allowed_kw=None), [up])
    assert not calm(_plan(held=(Reason.of(Code.CURTAIL_HOLD_MIN_OFF),)), [up])
    assert not calm(_plan(), [up, MinerState("b", 3000.0, 100.0, True, None)])
    limited = MinerState("c", 2000.0, 70.0, False, None, full_power_w=3000.0, power_limit_w=2000.0)
    assert not calm(_plan(), [up, limited])


def test_a_calm_plan_stands_only_within_this_and_the_next_hour_s_limit() -> None:
    assert stands(50.0, 100.0, 100.0)
    assert stands(50.0, 100.0, None)
    assert not stands(101.0, 100.0, 200.0)
    assert not stands(50.0, 100.0, 40.0)
    assert not stands(None, 100.0, 100.0)
    assert not stands(50.0, None, 100.0)
