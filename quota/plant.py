"""The plant: what the site will draw once the commands already sent have acted.

The meter shows the past. A command takes from a fraction of a second to a quarter of a minute
or more (firmware that restarts its mining process into a new work mode or under a new limit)
to change what a miner draws, and a plan made in between
from the meter alone sees the old load: it would cut again what is already being cut. The
plant remembers every action in flight and answers three questions for the planner:

- **Where each miner is going** (:meth:`Plant.adjust`): a miner with a pending sleep is
  planned as asleep, a pending wake as awake at its mining power, a pending limit at its new
  limit; none of them is acted on again until its action is settled.
- **What the meter will show** (:meth:`Plant.in_flight_kw`): the metered load plus, for every
  action the given reading does not contain yet, its change in miner watts times the site's
  overhead. An action is in a reading taken at or after its confirmation (kuat confirms by
  polling the miner about once a second, so at most one reading is ever counted twice, and
  that errs towards cutting less, never towards an extra cut).
- **What to do now** (:meth:`Plant.decide`): one decision of the controller — the quota
  status, the miners as last read, the actions in flight — turned into a plan. The agent's
  curtailer and the closed-loop tests (tests/quota/test_closed_loop.py) run this same step.
- **How long a command takes** (:meth:`Plant.apply_s`): learned per firmware family and verb
  from what kuat observed (send → confirmed), with defaults until then. It sets how far ahead
  the quota engine budgets energy (``QuotaPolicy.actuation_s``) and how long the agent waits
  for a confirmation.

The site overhead (transformer and cable losses, fans, lights: what the meter sees beyond the
miners) is a factor: metered ÷ Σ miners, learned while no action is in flight, or configured.
A plan's saving of 1 kW at the miners is ``overhead`` kW at the meter.

Pure: no I/O and no clock; every instant is an argument.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from kuat.quota.curtail import Action, ActionKind, CurtailPlan, CurtailPolicy, MinerState, plan
from kuat.quota.evaluate import QuotaStatus

# Seconds from send to the new state showing, until kuat has seen its own, for a firmware whose
# backend declares none (``Plant.default_apply_s`` holds what the backends declare: the agent
# passes it in, so this module knows no firmware): most act within a poll.
FALLBACK_APPLY_S = 2.0
# Weight of a new observation in the running estimates (exponentially weighted means): a
# latency is seen once per command; the overhead once per meter reading, and slowly, because
# other site load that comes and goes (a chiller, a workshop) is not overhead.
LEARN_WEIGHT = 0.3
OVERHEAD_WEIGHT = 0.002
# The learned overhead stays in this band: beyond it the meter and the miners disagree for
# another reason (a miner not polled, unregistered load), which is the balance check's business.
OVERHEAD_BOUNDS = (1.0, 1.5)


class Verb(enum.StrEnum):
    SLEEP = "sleep"
    WAKE = "wake"
    LIMIT = "limit"


@dataclass(frozen=True, slots=True)
class Pending:
    """One action sent and not yet settled. ``before_w``/``after_w``: the miner's draw before
    and (expected) after it; ``target_w``: a power limit's new value."""

    device_id: str
    verb: Verb
    family: str | None
    sent_at: datetime
    before_w: float
    after_w: float
    target_w: float | None = None
    outlet: bool = False
    confirmed_at: datetime | None = None

    @property
    def delta_w(self) -> float:
        return self.after_w - self.before_w


def pending_for(a: Action, family: str | None, at: datetime, power_w: float) -> Pending:
    """The action ``a`` as sent at ``at`` to a miner of ``family`` drawing ``power_w`` as
    planned. An outlet acts at once whatever the firmware: it teaches no firmware latency."""
    did = a.device_id
    outlet = a.kind in (ActionKind.OUTLET_OFF, ActionKind.OUTLET_ON)
    fam = None if outlet else family
    if a.kind in (ActionKind.SLEEP, ActionKind.OUTLET_OFF):
        return Pending(did, Verb.SLEEP, fam, at, a.power_w, 0.0, outlet=outlet)
    if a.kind in (ActionKind.RESTORE, ActionKind.OUTLET_ON):
        return Pending(did, Verb.WAKE, fam, at, 0.0, a.power_w, outlet=outlet)
    lower = a.kind is ActionKind.LIMIT_POWER
    after = power_w - a.power_w if lower else power_w + a.power_w
    return Pending(did, Verb.LIMIT, fam, at, power_w, after, target_w=a.target_w)


class _ActsIn(Mapping[str, tuple[float, float]]):
    """Each miner's (sleep, limit) seconds to act, by device id, looked up through its
    firmware's when asked: only a cut asks, and a plan over 50,000 miners that cuts nothing
    built a dict of them at every meter reading (bench/agent_cycle.py)."""

    __slots__ = ("_family_of", "_per")

    def __init__(
        self,
        family_of: Mapping[str, str | None],
        per: Mapping[str | None, tuple[float, float]],
    ) -> None:
        self._family_of = family_of
        self._per = per

    def __getitem__(self, device_id: str) -> tuple[float, float]:
        return self._per[self._family_of[device_id]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._family_of)

    def __len__(self) -> int:
        return len(self._family_of)


@dataclass
class Plant:
    """``overhead``: a configured factor (None: learn it). ``default_apply_s``: seconds from
    send to the new state showing, by (firmware family, verb), as the firmware backends declare
    them, assumed until kuat has seen its own. Mutable memory, pure functions."""

    overhead: float | None = None
    default_apply_s: Mapping[tuple[str, str], float] = field(default_factory=dict)
    learned_overhead: float | None = None
    pending: dict[str, Pending] | None = None
    apply_learned: dict[tuple[str, str], float] | None = None
    last_effect: datetime | None = None  # the latest confirmation, kept after its pending goes

    def __post_init__(self) -> None:
        if self.overhead is not None and not (
            OVERHEAD_BOUNDS[0] <= self.overhead <= OVERHEAD_BOUNDS[1]
        ):
            raise ValueError(f"overhead factor must be in {OVERHEAD_BOUNDS}, got {self.overhead}")
        self.pending = {} if self.pending is None else self.pending
        self.apply_learned = {} if self.apply_learned is None else self.apply_learned

    # --- what kuat did and saw ------------------------------------------------------------

    def sent(self, p: Pending) -> None:
        assert self.pending is not None
        self.pending[p.device_id] = p

    def settled(self, device_id: str, done: bool, at: datetime) -> None:
        """A command's result: done (confirmed at ``at``: learn its latency, keep it as the
        miner's known state until a fresh reading shows it) or anything else (forget it: the
        miner is where its readings say)."""
        assert self.pending is not None and self.apply_learned is not None
        p = self.pending.get(device_id)
        if p is None:
            return
        if not done:
            del self.pending[device_id]
            return
        self.pending[device_id] = replace(p, confirmed_at=at)
        self.last_effect = at if self.last_effect is None else max(self.last_effect, at)
        if p.family is not None:
            key = (p.family, p.verb.value)
            seen = max((at - p.sent_at).total_seconds(), 0.0)
            old = self.apply_learned.get(key)
            self.apply_learned[key] = seen if old is None else old + LEARN_WEIGHT * (seen - old)

    def rename(self, old_id: str, new_id: str) -> None:
        """A miner known by another id now (its serial came in): its action goes along."""
        assert self.pending is not None
        p = self.pending.pop(old_id, None)
        if p is not None:
            self.pending[new_id] = replace(p, device_id=new_id)

    def readings_seen(self, taken_at: Mapping[str, datetime]) -> None:
        """Drop confirmed actions whose miner has been read since: the reading tells it now."""
        assert self.pending is not None
        for did, p in list(self.pending.items()):
            t = taken_at.get(did)
            if p.confirmed_at is not None and t is not None and t > p.confirmed_at:
                del self.pending[did]

    def observe_overhead(self, metered_kw: float | None, miners_kw: float | None) -> None:
        """Learn metered ÷ Σ miners, only in a steady state (nothing in flight)."""
        assert self.pending is not None
        if self.overhead is not None or self.pending:
            return
        if metered_kw is None or not miners_kw or miners_kw <= 0 or metered_kw <= 0:
            return
        lo, hi = OVERHEAD_BOUNDS
        seen = min(max(metered_kw / miners_kw, lo), hi)
        old = self.learned_overhead
        self.learned_overhead = seen if old is None else old + OVERHEAD_WEIGHT * (seen - old)

    # --- what the planner asks ------------------------------------------------------------

    @property
    def overhead_factor(self) -> float:
        if self.overhead is not None:
            return self.overhead
        return self.learned_overhead if self.learned_overhead is not None else 1.0

    def apply_s(self, family: str | None, verb: Verb) -> float:
        assert self.apply_learned is not None
        if family is None:
            return FALLBACK_APPLY_S
        key = (family, verb.value)
        learned = self.apply_learned.get(key)
        if learned is not None:
            return learned
        return self.default_apply_s.get(key, FALLBACK_APPLY_S)

    def slowest_apply_s(self, families: Iterable[str | None]) -> float:
        """The longest any present firmware takes to act on a curtailment (sleep or limit)."""
        fams = set(families) or {None}
        return max(self.apply_s(f, v) for f in fams for v in (Verb.SLEEP, Verb.LIMIT))

    def settling(self, reading_at: datetime | None, meter_s: float) -> tuple[bool, float]:
        """Actions a reading taken at ``reading_at`` may show or not: unconfirmed ones (a fast
        firmware acts before kuat's re-read confirms it) and ones confirmed less than a meter
        interval before it (a meter averages over its interval). Counted as in flight, they
        may be counted twice. Returns: is a cut among them, and the kW at the meter of the
        restores among them."""
        assert self.pending is not None
        cut, restore_w = False, 0.0
        for p in self.pending.values():
            settled = (
                p.confirmed_at is not None
                and reading_at is not None
                and (reading_at - p.confirmed_at).total_seconds() > meter_s
            )
            if settled:
                continue
            if p.delta_w < 0:
                cut = True
            else:
                restore_w += p.delta_w
        return cut, self.overhead_factor * restore_w / 1000.0

    def last_confirmed_at(self, within: timedelta, now: datetime) -> datetime | None:
        """The latest confirmation within ``within`` before ``now``: readings before it show
        a plant that is no longer there."""
        last = self.last_effect
        return last if last is not None and now - last <= within else None

    def in_flight_kw(self, reading_at: datetime | None) -> float:
        """What the actions a reading taken at ``reading_at`` does not contain will change
        at the meter (kW, negative for a cut)."""
        assert self.pending is not None
        k = self.overhead_factor
        total = 0.0
        for p in self.pending.values():
            in_reading = (
                p.confirmed_at is not None
                and reading_at is not None
                and reading_at > p.confirmed_at
            )
            if not in_reading:
                total += p.delta_w
        return k * total / 1000.0

    def adjust(self, miners: Sequence[MinerState]) -> list[MinerState]:
        """The miners as they will be once every pending action has acted; one whose
        action is not confirmed yet is busy (no second command crosses it)."""
        assert self.pending is not None
        out: list[MinerState] = []
        for m in miners:
            p = self.pending.get(m.device_id)
            if p is None:
                out.append(m)
                continue
            busy = p.confirmed_at is None
            if p.verb is Verb.LIMIT:
                out.append(
                    replace(
                        m,
                        asleep=False,
                        power_w=p.after_w,
                        power_limit_w=p.target_w,
                        last_limited=p.sent_at,
                        busy=busy,
                    )
                )
            else:
                asleep = p.verb is Verb.SLEEP
                power = max(p.before_w, p.after_w)  # its mining power either way
                out.append(
                    replace(
                        m,
                        asleep=asleep,
                        power_w=power,
                        last_switched=p.sent_at,
                        outlet_off=asleep and p.outlet,
                        busy=busy,
                    )
                )
        return out

    def landing(self, now: datetime, reading_at: datetime | None) -> list[tuple[float, float]]:
        """The actions a reading at ``reading_at`` does not show yet, as (seconds from
        ``now`` until each is expected to act, its change at the meter in kW): what the
        quota's energy budget for the next moments needs (``evaluate``'s ``landing``)."""
        assert self.pending is not None
        out = []
        for p in self.pending.values():
            confirmed = p.confirmed_at
            if confirmed is not None and reading_at is not None and reading_at > confirmed:
                continue  # the reading shows it
            due = (p.sent_at - now).total_seconds() + self.apply_s(p.family, p.verb)
            out.append((max(due, 0.0), self.overhead_factor * p.delta_w / 1000.0))
        return out

    # --- one decision ---------------------------------------------------------------------

    def decide(
        self,
        status: QuotaStatus,
        miners: Sequence[MinerState],
        now: datetime,
        policy: CurtailPolicy,
        *,
        read_at: Mapping[str, datetime],
        families: Iterable[str | None],
        meter_s: float,
        allowed_kw: float | None,
        next_allowed_kw: float | None,
        family_of: Mapping[str, str | None] | None = None,
    ) -> CurtailPlan:
        """Plan on the freshest status with every action in flight counted.

        ``read_at``: when each miner was last read (a read after a confirmation lets the
        action go); ``families``: the firmware present (the slowest sets how long a decision
        takes to act: one ``meter_s`` plus its apply time); ``family_of``: each miner's
        firmware (by device id): a cut by a firmware faster than the slowest counts the
        energy it saves by acting sooner (kuat.quota.curtail, "A cut that acts sooner");
        None: every cut as the slowest. ``allowed_kw`` and
        ``next_allowed_kw``: this hour's allowed power and the next hour's allocation as mean
        kW, each already under any order in force (the caller's business). No restore is
        planned while a cut may still be on its way into the readings, and no cut for an
        excess a restore on its way may explain (:meth:`settling`)."""
        self.readings_seen(read_at)
        load = status.decision_kw if status.decision_kw is not None else status.p_kw
        awake_w = sum((m.power_w or 0.0) for m in miners if not m.asleep)
        self.observe_overhead(load, awake_w / 1000.0)
        planned = self.adjust(miners)
        acts_in = None
        if family_of is not None:
            # a meter interval plus the firmware's apply time, per family (not per miner: this
            # runs at every meter reading)
            per = {
                f: (meter_s + self.apply_s(f, Verb.SLEEP), meter_s + self.apply_s(f, Verb.LIMIT))
                for f in set(family_of.values())
            }
            acts_in = _ActsIn(family_of, per)
        expected = None if load is None else load + self.in_flight_kw(status.used_until)
        # A cut counted twice makes the load look low (a restore it would undo at once), a
        # restore counted twice makes it look high (a cut): while either may be, the
        # decision it would skew waits (no restore; a cut only beyond those restores).
        cutting, restoring_kw = self.settling(status.used_until, meter_s)
        return plan(
            allowed_kw,
            planned,
            now,
            policy,
            load_kw=expected,
            overhead_factor=self.overhead_factor,
            hour_left_s=(status.hour_end - now).total_seconds(),
            next_allowed_kw=next_allowed_kw,
            restore=not cutting,
            settling_kw=restoring_kw,
            actuation_s=meter_s + self.slowest_apply_s(families),
            acts_in_s=acts_in,
            decision_s=meter_s,
        )
