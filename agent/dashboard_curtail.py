"""What curtailment is doing, as the dashboard shows it: the current plan with each decision's
reason, and per miner whether kuat holds it asleep, limited or cut at its outlet, and since when.

Everything the dashboard reads from the :class:`~kuat.agent.curtailment.Curtailer` goes through
:func:`_records` (its per-miner records) and :func:`curtailment_view` (its plan and mode).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from kuat.agent.dashboard_format import iso_utc
from kuat.agent.i18n import render
from kuat.collectors.readings import AsicReading
from kuat.quota.curtail import Action, CurtailPlan
from kuat.quota.reasons import Reason

if TYPE_CHECKING:
    from kuat.agent.curtailment import Curtailer
    from kuat.agent.i18n import Lang

# "asleep": kuat put it to sleep (or it sleeps by itself: ``by_kuat`` false); "limited": kuat
# set a power limit on it; "outlet_off": kuat switched its PDU outlet off; "running": none.
CurtailState = Literal["running", "asleep", "limited", "outlet_off"]


@dataclass(frozen=True, slots=True)
class MinerCurtailment:
    state: CurtailState
    since: datetime | None  # when kuat switched it (None: not switched by kuat)
    by_kuat: bool
    limit_w: float | None = None
    planned: Action | None = None  # the current plan's decision for it, if any


RUNNING = MinerCurtailment("running", None, False)
ASLEEP = MinerCurtailment("asleep", None, False)  # asleep, and not by kuat's doing


@dataclass(frozen=True, slots=True)
class _Record:
    """kuat's memory of one miner, as the dashboard shows it."""

    switched_at: datetime | None
    limited_at: datetime | None
    limit_w: float | None
    outlet_off: bool


def _records(c: Curtailer) -> dict[str, _Record]:
    """The curtailer's per-miner memory (its MinerRecord), one record per miner it has
    touched."""
    return {
        did: _Record(rec.switched_at, rec.limited_at, rec.limit_w, rec.outlet_off)
        for did, rec in c.miners.items()
        if rec.switched_at or rec.limited_at or rec.limit_w is not None or rec.outlet_off
    }


@dataclass(frozen=True, slots=True)
class CurtailmentView:
    enforce: bool
    plan: CurtailPlan | None
    records: Mapping[str, _Record]
    planned: Mapping[str, Action]

    def touched(self) -> set[str]:
        """The ids (or addresses) of the miners kuat has switched or plans to: every other
        miner is RUNNING, or ASLEEP when it sleeps."""
        return set(self.records) | set(self.planned)

    def miner(self, device_id: str, state: str, address: str | None = None) -> MinerCurtailment:
        """The curtailment state of a miner whose reading says ``state``. ``address``
        ("ip:port"): a stock miner is known by its address until its web page gives its serial,
        and what kuat did to it before then is remembered under the address."""
        rec = self.records.get(device_id)
        if rec is None and address is not None:
            rec = self.records.get(address)
        planned = self.planned.get(device_id)
        if rec is not None and rec.outlet_off:
            return MinerCurtailment("outlet_off", rec.switched_at, True, planned=planned)
        if state == "sleeping":
            since = rec.switched_at if rec is not None else None
            return MinerCurtailment("asleep", since, since is not None, planned=planned)
        if rec is not None and rec.limit_w is not None:
            return MinerCurtailment("limited", rec.limited_at, True, rec.limit_w, planned)
        return (
            RUNNING if planned is None else MinerCurtailment("running", None, False, None, planned)
        )


def curtailment_view(c: Curtailer) -> CurtailmentView:
    plan = c.last_plan
    planned = {a.device_id: a for a in plan.actions} if plan is not None else {}
    return CurtailmentView(c.enforce, plan, _records(c), planned)


def _reason(r: Reason, lang: Lang) -> dict[str, Any]:
    return {"code": str(r.code), "text": render(r, lang)}


def action_json(a: Action, lang: Lang) -> dict[str, Any]:
    return {
        "device_id": a.device_id,
        "kind": a.kind.value,
        "power_w": round(a.power_w, 1),
        "target_w": a.target_w,
        "outlet": a.outlet,
        "reason": _reason(a.reason, lang),
    }


def held_now(
    v: CurtailmentView, readings: Iterable[AsicReading]
) -> dict[str, list[dict[str, Any]]]:
    """What kuat holds curtailed now, and since when: ``asleep``, ``limited`` (with
    ``limit_w``) and ``outlets_off``, each sorted by device id. Only the miners kuat has
    touched are looked at, so 50,000 running miners cost a set lookup each."""
    touched = v.touched()
    asleep: list[dict[str, Any]] = []
    limited: list[dict[str, Any]] = []
    outlets_off: list[dict[str, Any]] = []
    for r in readings:
        did, address = r.device_id, f"{r.ip}:{r.port}"
        if did not in touched and address not in touched:
            continue
        m = v.miner(did, r.state, address)
        if m.state == "asleep" and m.by_kuat:
            asleep.append({"device_id": did, "since": iso_utc(m.since)})
        elif m.state == "limited":
            limited.append({"device_id": did, "limit_w": m.limit_w, "since": iso_utc(m.since)})
        elif m.state == "outlet_off":
            outlets_off.append({"device_id": did, "since": iso_utc(m.since)})
    # a miner cut at its outlet has no fresh reading: it is known from the records alone
    seen = {o["device_id"] for o in outlets_off}
    for did, rec in v.records.items():
        if rec.outlet_off and did not in seen:
            outlets_off.append({"device_id": did, "since": iso_utc(rec.switched_at)})

    def by_id(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(items, key=lambda x: str(x["device_id"]))

    return {"asleep": by_id(asleep), "limited": by_id(limited), "outlets_off": by_id(outlets_off)}


def curtailment_json(
    v: CurtailmentView, readings: Iterable[AsicReading], lang: Lang
) -> dict[str, Any]:
    """/api/curtailment: the mode, the plan (each decision with its reason, the switches the
    timers held) and what kuat holds curtailed now, and since when."""
    p = v.plan
    return {
        "mode": "enforce" if v.enforce else "dry_run",
        "plan": None
        if p is None
        else {
            "at": iso_utc(p.at),
            "allowed_kw": p.allowed_kw,
            "load_kw": round(p.load_kw, 3),
            "planned_load_kw": round(p.planned_load_kw, 3),
            "reason": _reason(p.reason, lang),
            "actions": [action_json(a, lang) for a in p.actions],
            "held": [_reason(r, lang) for r in p.held],
        },
        **held_now(v, readings),
    }
