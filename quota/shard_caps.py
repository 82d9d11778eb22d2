"""Power caps per shard: how the site controller splits the allowed power between the agents
that share a site, and what a shard holds to when the controller goes quiet. Pure: no I/O.

The split (``split_caps``), for an allowed power ``A`` and shards with present load ``L_i`` of
which ``C_i`` can be curtailed (miners kuat may sleep or limit; the rest, ``L_i - C_i``, is
firm: cooling, exempt machines):

- headroom (``A >= sum L``): each shard keeps its load and gets a share of the headroom in
  proportion to the power it could add (``capacity_kw - load_kw``: its sleeping and limited
  miners at full power), so a hall that was curtailed can wake again; when no shard can add
  anything, in proportion to load (equal shares when nothing runs);
- a cut that curtailment can cover (``sum L - sum C <= A < sum L``): the cut is shared in
  proportion to each shard's curtailable load, so nobody is asked to shed what it cannot;
- a cut beyond all curtailable load (``A < sum L - sum C``): every curtailable kW goes and the
  firm loads are scaled down together (the shards will report a shortfall).

``A`` is the site's allowed power less what the site meter shows beyond the reported loads
(``shareable_kw``): a silent shard's miners still draw power nobody's cap governs.

In every case the caps add up to ``A`` and none is negative (tests/quota/test_shard_caps.py).

Holding (``CapHolder``): a shard plans inside the last cap it received for ``hold_s`` after
receiving it, then falls back to ``safe_default_kw``. A cap carries the controller's lease
revision, which grows with every renewal; a cap with a revision below one already seen comes
from a deposed controller and is dropped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from kuat.collectors.errors import KuatError


class CapError(KuatError, ValueError):
    """A cap or load message that is not what kuat publishes (the only error the parsers raise)."""


@dataclass(frozen=True)
class ShardLoad:
    shard: str  # the agent id
    load_kw: float
    curtailable_kw: float  # part of load_kw (clamped to it)
    # what the shard draws with every miner awake at full power (None: its load)
    capacity_kw: float | None = None


def split_caps(allowed_kw: float, shards: Sequence[ShardLoad]) -> dict[str, float]:
    """Each shard's cap in kW; see the module's docstring for the rule."""
    if not shards:
        return {}
    a = max(0.0, allowed_kw)
    loads = [max(0.0, s.load_kw) for s in shards]
    curt = [min(max(0.0, s.curtailable_kw), ld) for s, ld in zip(shards, loads, strict=True)]
    total = sum(loads)
    total_c = sum(curt)
    firm = [ld - c for ld, c in zip(loads, curt, strict=True)]
    total_f = sum(firm)
    if a >= total:
        head = a - total
        room = [
            max(0.0, (s.capacity_kw if s.capacity_kw is not None else ld) - ld)
            for s, ld in zip(shards, loads, strict=True)
        ]
        weights = room if sum(room) > 0 else loads if total > 0 else [1.0] * len(shards)
        caps = [ld + head * w / sum(weights) for ld, w in zip(loads, weights, strict=True)]
    elif total_c > 0 and total - total_c <= a:
        cut = total - a
        caps = [ld - cut * c / total_c for ld, c in zip(loads, curt, strict=True)]
    else:
        caps = [f * a / total_f for f in firm] if total_f > 0 else [0.0] * len(shards)
    caps = [max(0.0, c) for c in caps]
    # rounding may leave the sum a hair off A: give the difference to the largest cap
    drift = a - sum(caps)
    i = max(range(len(caps)), key=caps.__getitem__)
    caps[i] = max(0.0, caps[i] + drift)
    return {s.shard: c for s, c in zip(shards, caps, strict=True)}


def shareable_kw(
    allowed_kw: float, site_kw: float | None, reported: Sequence[ShardLoad], silent_kw: float
) -> float:
    """The part of the site's allowed power the reporting shards may share.

    What the site meter shows beyond the loads the shards reported (a silent shard, a dead
    agent's miners that keep running, cooling and losses) is kept back, since no cap will
    move it. Without a site reading, the silent shards' last reported loads (``silent_kw``) are
    kept back instead."""
    if site_kw is None:
        unreported = silent_kw
    else:
        unreported = max(0.0, site_kw - sum(max(0.0, ld.load_kw) for ld in reported))
    return max(0.0, allowed_kw - unreported)


# --- messages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cap:
    shard: str
    cap_kw: float
    controller: str  # agent id of the controller that set it
    revision: int  # the controller's lease revision (fencing token)
    at_unix: float  # when the controller set it


def cap_message(cap: Cap) -> bytes:
    return json.dumps(
        {
            "shard": cap.shard,
            "cap_kw": round(cap.cap_kw, 3),
            "controller": cap.controller,
            "revision": cap.revision,
            "at": round(cap.at_unix, 3),
        }
    ).encode()


def load_message(load: ShardLoad, at_unix: float) -> bytes:
    return json.dumps(
        {
            "shard": load.shard,
            "load_kw": round(load.load_kw, 3),
            "curtailable_kw": round(load.curtailable_kw, 3),
            "capacity_kw": None if load.capacity_kw is None else round(load.capacity_kw, 3),
            "at": round(at_unix, 3),
        }
    ).encode()


def _object(raw: bytes, what: str) -> dict[str, object]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CapError(f"{what} message is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CapError(f"{what} message is not a JSON object")
    return data


def _str(data: dict[str, object], key: str, what: str) -> str:
    v = data.get(key)
    if not isinstance(v, str) or not v:
        raise CapError(f"{what} message: {key!r} is missing or not a text")
    return v


def _num(data: dict[str, object], key: str, what: str) -> float:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise CapError(f"{what} message: {key!r} is missing or not a number >= 0")
    return float(v)


def parse_cap(raw: bytes) -> Cap:
    d = _object(raw, "cap")
    revision = d.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        raise CapError("cap message: 'revision' is missing or not a positive integer")
    return Cap(
        shard=_str(d, "shard", "cap"),
        cap_kw=_num(d, "cap_kw", "cap"),
        controller=_str(d, "controller", "cap"),
        revision=revision,
        at_unix=_num(d, "at", "cap"),
    )


def parse_load(raw: bytes) -> tuple[ShardLoad, float]:
    d = _object(raw, "load")
    load = ShardLoad(
        shard=_str(d, "shard", "load"),
        load_kw=_num(d, "load_kw", "load"),
        curtailable_kw=_num(d, "curtailable_kw", "load"),
        # absent from an older agent's message: its load is all it is known to draw
        capacity_kw=_num(d, "capacity_kw", "load") if d.get("capacity_kw") is not None else None,
    )
    return load, _num(d, "at", "load")


# --- a shard's side: hold the last cap, then the safe default ------------------------------


class CapSource(Enum):
    CONTROLLER = "controller"  # a cap received within fresh_s
    HELD = "held"  # the controller is quiet: the last cap, held for hold_s
    DEFAULT = "default"  # nothing for hold_s (or never): the configured safe default


@dataclass(frozen=True)
class CapPolicy:
    hold_s: float
    safe_default_kw: float
    # a cap older than this is reported as held (the controller publishes every quota interval)
    fresh_s: float = 30.0


class CapHolder:
    """The cap one shard plans inside. ``now`` is a monotonic clock reading throughout."""

    def __init__(self, shard: str, policy: CapPolicy) -> None:
        self.shard = shard
        self.policy = policy
        self.last: Cap | None = None
        self.received: float = -math.inf
        self.max_revision = 0

    def offer(self, cap: Cap, now: float) -> bool:
        """Take a cap received at ``now``; False (ignored) when it is for another shard or
        from a controller deposed since (a lower lease revision than one already seen)."""
        if cap.shard != self.shard or cap.revision < self.max_revision:
            return False
        self.max_revision = cap.revision
        self.last = cap
        self.received = now
        return True

    def cap_kw(self, now: float) -> tuple[float, CapSource]:
        age = now - self.received
        if self.last is None or age > self.policy.hold_s:
            return self.policy.safe_default_kw, CapSource.DEFAULT
        if age <= self.policy.fresh_s:
            return self.last.cap_kw, CapSource.CONTROLLER
        return self.last.cap_kw, CapSource.HELD
