"""Curtailment planner: which miners to put to sleep (or wake) so the site keeps to the power
allowed for the rest of the hour. It returns a plan with a reason for every decision and
executes nothing; the agent carries the plan out through the collectors' control side.

- Sleep the least efficient first (highest J/TH): the hashrate lost per kW saved is smallest.
  A mining miner reporting no hashrate is pure cost and goes first.
- Wake the most efficient first, and only while the load stays ``hysteresis_kw`` below the
  limit, so a site hovering at its limit does not flap miners every cycle.
- Respect minimum on and off times: power-cycling hashboards and PSUs too often wears them and
  a miner needs minutes to reach full hashrate, so a switch the timers forbid is held, and said so.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from quota.clock import as_utc
from quota.reasons import Code, Reason

# A plan names at most this many held switches: at 50,000 miners a full list would be noise.
MAX_HELD = 100


@dataclass(frozen=True, slots=True)
class MinerState:
    """A miner as the planner sees it. For a sleeping miner, ``power_w`` and ``hashrate_ths``
    are what it draws and makes when mining (its last or nominal figures), since that is what
    waking it would add."""

    device_id: str
    power_w: float | None
    hashrate_ths: float | None
    asleep: bool
    last_switched: datetime | None = None  # None: not switched by us, free to switch

    @property
    def j_per_th(self) -> float:
        if self.power_w is None or not self.hashrate_ths or self.hashrate_ths <= 0:
            return math.inf
        return self.power_w / self.hashrate_ths


@dataclass(frozen=True, slots=True)
class CurtailPolicy:
    min_on_s: float = 600.0
    min_off_s: float = 600.0
    hysteresis_kw: float = 20.0
    margin_kw: float = 0.0  # aim this far below the allowed power when curtailing

    def __post_init__(self) -> None:
        if min(self.min_on_s, self.min_off_s, self.hysteresis_kw, self.margin_kw) < 0:
            raise ValueError("curtailment times and margins must be >= 0")


class ActionKind(enum.StrEnum):
    SLEEP = "sleep"
    RESTORE = "restore"


@dataclass(frozen=True, slots=True)
class Action:
    device_id: str
    kind: ActionKind
    power_w: float
    reason: Reason


@dataclass(frozen=True, slots=True)
class CurtailPlan:
    at: datetime
    allowed_kw: float | None
    load_kw: float
    planned_load_kw: float
    actions: tuple[Action, ...]
    held: tuple[Reason, ...]  # switches the timers forbade
    reason: Reason


def _jth(m: MinerState) -> float | None:
    j = m.j_per_th
    return None if math.isinf(j) else round(j, 1)


def plan(
    allowed_kw: float | None,
    miners: Sequence[MinerState],
    now: datetime,
    policy: CurtailPolicy = CurtailPolicy(),  # frozen: a shared default is safe
    *,
    load_kw: float | None = None,
    overhead_kw: float = 0.0,
) -> CurtailPlan:
    """``load_kw`` is the site's present draw (the meter's); without it, Σ awake miners +
    ``overhead_kw``. ``allowed_kw`` comes from :func:`quota.evaluate.evaluate`."""
    now = as_utc(now)
    awake_kw = sum((m.power_w or 0.0) for m in miners if not m.asleep) / 1000.0
    load = load_kw if load_kw is not None else awake_kw + overhead_kw
    if allowed_kw is None:
        return CurtailPlan(now, None, load, load, (), (), Reason.of(Code.CURTAIL_NO_LIMIT))

    def since(m: MinerState) -> float:
        return (
            math.inf if m.last_switched is None else (now - as_utc(m.last_switched)).total_seconds()
        )

    actions: list[Action] = []
    held: list[Reason] = []
    planned = load
    target = allowed_kw - policy.margin_kw
    if load > allowed_kw:
        candidates = sorted(
            (m for m in miners if not m.asleep and (m.power_w or 0) > 0),
            key=lambda m: (-m.j_per_th, -(m.power_w or 0.0), m.device_id),
        )
        for m in candidates:
            if planned <= target:
                break
            wait = policy.min_on_s - since(m)
            if wait > 0:
                if len(held) < MAX_HELD:
                    held.append(
                        Reason.of(
                            Code.CURTAIL_HOLD_MIN_ON, device_id=m.device_id, wait_s=math.ceil(wait)
                        )
                    )
                continue
            power = m.power_w or 0.0
            planned -= power / 1000.0
            actions.append(
                Action(
                    m.device_id,
                    ActionKind.SLEEP,
                    power,
                    Reason.of(
                        Code.CURTAIL_SLEEP,
                        device_id=m.device_id,
                        power_w=round(power),
                        j_per_th=_jth(m),
                    ),
                )
            )
        if planned > allowed_kw:
            reason = Reason.of(Code.CURTAIL_SHORTFALL, excess_kw=round(planned - allowed_kw, 1))
        else:
            reason = (
                actions[0].reason
                if actions
                else Reason.of(
                    Code.CURTAIL_WITHIN_LIMIT,
                    load_kw=round(load, 1),
                    allowed_kw=round(allowed_kw, 1),
                )
            )
        return CurtailPlan(now, allowed_kw, load, planned, tuple(actions), tuple(held), reason)

    asleep = sorted(
        (m for m in miners if m.asleep and m.power_w is not None and m.power_w > 0),
        key=lambda m: (m.j_per_th, m.power_w, m.device_id),
    )
    ceiling = allowed_kw - policy.hysteresis_kw
    for m in asleep:
        power = m.power_w or 0.0
        if planned + power / 1000.0 > ceiling:
            continue  # a smaller, less efficient one further on may still fit
        wait = policy.min_off_s - since(m)
        if wait > 0:
            if len(held) < MAX_HELD:
                held.append(
                    Reason.of(
                        Code.CURTAIL_HOLD_MIN_OFF, device_id=m.device_id, wait_s=math.ceil(wait)
                    )
                )
            continue
        planned += power / 1000.0
        actions.append(
            Action(
                m.device_id,
                ActionKind.RESTORE,
                power,
                Reason.of(
                    Code.CURTAIL_RESTORE,
                    device_id=m.device_id,
                    power_w=round(power),
                    j_per_th=_jth(m),
                ),
            )
        )
    if actions:
        reason = actions[0].reason
    elif asleep and not held:
        reason = Reason.of(
            Code.CURTAIL_HYSTERESIS,
            headroom_kw=round(allowed_kw - load, 1),
            hysteresis_kw=policy.hysteresis_kw,
        )
    else:
        reason = Reason.of(
            Code.CURTAIL_WITHIN_LIMIT, load_kw=round(load, 1), allowed_kw=round(allowed_kw, 1)
        )
    return CurtailPlan(now, allowed_kw, load, planned, tuple(actions), tuple(held), reason)
