"""The power-limit steps the curtailer offers the planner, from what the miners report.

A Whatsminer reports its power limit (the PSU's, 3600 W on an M31S) well above what it draws
(3220 W): the steps are shares of the draw, so a small cut limits the fewest miners (as shares
of 3600 W, 90 % saved nothing and every step less than it should: the bench's 5 % cut limited
9 miners where 8 do, here 4 where 3 do), and a restore sets the limit back to 3600 W."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kuat.agent.config import parse_config
from kuat.agent.curtailment import Curtailer
from kuat.agent.state import SiteState
from kuat.collectors.readings import AsicReading
from kuat.quota.curtail import ActionKind
from kuat.quota.evaluate import QuotaState, QuotaStatus
from kuat.quota.reasons import Code, Reason
from kuat.quota.schedule import EnergySource

NOW = datetime(2026, 11, 25, 8, 50, tzinfo=UTC)
DRAW_W = 3220.0
LIMIT_W = 3600.0
MINERS = 20


def status(load_kw: float, allowed_kw: float) -> QuotaStatus:
    return QuotaStatus(
        site="steps",
        source=EnergySource.GRID,
        at=NOW,
        operating_date="2026-11-25",
        hour_ending=14,
        hour_start=NOW - timedelta(minutes=50),
        hour_end=NOW + timedelta(minutes=10),
        status=QuotaState.OVER,
        reason=Reason.of(Code.CURTAIL_NO_LIMIT),
        allocation_kwh=None,
        allocation_version=1,
        used_kwh=None,
        used_until=NOW,
        p_kw=load_kw,
        forecast_kwh=None,
        remaining_kwh=None,
        allowed_kw=allowed_kw,
        margin_kwh=None,
        under_use=False,
        demand_kw=None,
        demand_interval_start=NOW,
        last_demand_kw=None,
        next_allocation_kwh=1000.0,
    )


def whatsminers(tmp_path: Path, quota: str, miners: int) -> Curtailer:
    """A curtailer (``quota``: its [quota] lines) with ``miners`` M31S Whatsminers read just
    now, each drawing DRAW_W under the PSU's LIMIT_W, the least efficient first, one by one."""
    cfg = parse_config(
        f'[site]\nid = "steps"\n[agent]\nstate_dir = "{tmp_path}"\n[quota]\n{quota}\n'
    )
    state = SiteState()
    for i in range(miners):
        r = AsicReading(
            f"127.95.0.{i + 1}",
            4028,
            NOW,
            vendor="MicroBT",
            firmware_family="whatsminer",
            model="Whatsminer M31S",
            serial=f"HTM3{i:013d}",
            hashrate_ths=76.0 + i,
            power_w=DRAW_W,
            power_limit_w=LIMIT_W,
        )
        state.asics[(r.ip, r.port)] = r
    return Curtailer(cfg, state, clock=lambda: NOW)


def test_steps_are_shares_of_what_a_whatsminer_draws_and_a_restore_goes_back_to_its_limit(
    tmp_path: Path,
) -> None:
    c = whatsminers(tmp_path, "enforce = false\nhysteresis_kw = 2", MINERS)
    load = MINERS * DRAW_W / 1000
    c.run(status(load, 0.95 * load), NOW)  # a 5 % cut: 3.2 kW
    p = c.last_plan
    assert p is not None and {a.kind for a in p.actions} == {ActionKind.LIMIT_POWER}
    # 1288 W saved by each at its lowest step (60 % of 3220 W): three miners; as shares of
    # 3600 W (down to 2160 W) each saved 1060 W, and it took four
    assert len(p.actions) == 3
    assert all(a.target_w in (2898.0, 2576.0, 2254.0, 1932.0) for a in p.actions), p.actions
    # the limit back: the one the miner had, not its draw
    limited = {a.device_id: a.target_w for a in p.actions}
    for rec in c.miners.values():
        if rec.device_id in limited:
            rec.limit_w, rec.limited_at = limited[rec.device_id], NOW - timedelta(hours=1)
    c.run(status(load - 3.5, 2 * load), NOW + timedelta(minutes=1))
    back = c.last_plan
    assert back is not None and len(back.actions) == 3
    assert {a.kind for a in back.actions} == {ActionKind.RESTORE_POWER}
    assert {a.target_w for a in back.actions} == {LIMIT_W}


def test_a_miner_reflashed_between_readings_is_planned_with_its_new_firmware(
    tmp_path: Path,
) -> None:
    # The curtailer plans at every meter reading on the miners' latest readings; a reading it
    # has planned on before keeps its record as it was, a new one brings the firmware it shows.
    c = whatsminers(tmp_path, "enforce = false", 1)
    (key, first), *_ = c.state.asics.items()
    assert isinstance(first, AsicReading)
    unknown = replace(first, firmware_family="cgminer")  # a derivative kuat cannot command
    c.state.asics[key] = unknown
    (_, before), *_ = c.planned_miners(NOW)
    handle = c.miners[unknown.device_id].handle
    (_, again), *_ = c.planned_miners(NOW + timedelta(seconds=5))
    assert c.miners[unknown.device_id].handle is handle
    assert before == again
    assert before.power_steps_w == () and not before.can_sleep
    c.state.asics[key] = replace(first, taken_at=NOW + timedelta(minutes=1))  # re-flashed
    (_, after), *_ = c.planned_miners(NOW + timedelta(minutes=1))
    assert after.power_steps_w and after.can_sleep
    assert after.full_power_w == LIMIT_W


def test_the_planner_sees_each_timer_and_limit_of_the_record_as_itself(tmp_path: Path) -> None:
    # The curtailer builds each miner's planner view positionally at every meter reading (for
    # speed, bench/agent_cycle.py): a view that swapped two fields of one type (the sleep timer
    # for the limit hold, say) would still type-check and hold a miner asleep or limited on the
    # wrong clock. Every field here is distinct, so a swap shows.
    c = whatsminers(tmp_path, "enforce = false", 1)
    (_, r), *_ = c.planned_miners(NOW)  # the record is made
    rec = c.miners[r.device_id]
    rec.switched_at, rec.limited_at = NOW - timedelta(minutes=7), NOW - timedelta(minutes=3)
    rec.limit_w = 2898.0
    rec.sleep_retry_at = NOW + timedelta(minutes=1)  # a failed sleep: not tried again yet
    (_, m), *_ = c.planned_miners(NOW)
    assert (m.device_id, m.power_w, m.hashrate_ths) == (r.device_id, DRAW_W, 76.0)
    assert (m.last_switched, m.last_limited) == (rec.switched_at, rec.limited_at)
    assert (m.full_power_w, m.power_limit_w) == (LIMIT_W, 2898.0)
    assert m.power_steps_w and max(m.power_steps_w) < DRAW_W
    assert (m.asleep, m.can_sleep, m.outlet, m.outlet_off) == (False, False, None, False)
    rec.sleep_retry_at = None
    (_, m), *_ = c.planned_miners(NOW)
    assert m.can_sleep
