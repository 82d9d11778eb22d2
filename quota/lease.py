"""The quota controller's lease: which agent of a site plans its power, decided without I/O.

Several agents share one site; exactly one of them (the controller) reads the site meter and
gives each shard its power cap. The lease lives in a NATS JetStream key-value bucket whose
entries expire ``ttl_s`` after they were written (the bucket's max age): the I/O side
(``kuat.uplink.nats_lease``) creates the key when it is absent and renews it by a
compare-and-set on the revision it wrote last. This module only decides what to do next and what
a reply means, so every rule below is unit-tested with plain numbers for time.

Safety: an agent acts as controller only until ``sent + ttl_s * guard`` on its own monotonic
clock, where ``sent`` is when it *sent* the write the server accepted. The server stamps that write
no earlier than ``sent``, so the entry cannot expire (and nobody else can create it) before the
holder has stopped acting, as long as the two clocks run at about the same rate (the guard leaves
``1 - guard`` of the TTL for rate error and the server's expiry timer).

Liveness (the failover bound): the holder renews every ``renew_s = ttl_s * renew_fraction``.
When it dies its last write is at most ``ttl_s`` from expiring; the others try to create the key
every ``renew_s``, so one of them holds the lease at most ``ttl_s + renew_s`` (plus one round
trip) after the holder's death. A holder that shuts down cleanly deletes the key, and the next
attempt of another agent (within ``renew_s``) takes it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from enum import Enum

from kuat.collectors.errors import KuatError


class LeaseError(KuatError, ValueError):
    """A lease setting or a lease value read from the bucket that makes no sense."""


@dataclass(frozen=True)
class LeasePolicy:
    agent_id: str
    ttl_s: float
    # renew three times per TTL: two renewals may be lost before the lease lapses
    renew_fraction: float = 1 / 3
    # the share of the TTL the holder trusts its lease for (see the module's note on safety)
    guard: float = 0.8

    def __post_init__(self) -> None:
        if not self.agent_id:
            raise LeaseError("lease: agent_id is empty")
        if not (math.isfinite(self.ttl_s) and self.ttl_s > 0):
            raise LeaseError(f"lease: ttl_s must be > 0, got {self.ttl_s}")
        if not 0 < self.renew_fraction < self.guard:
            raise LeaseError(
                f"lease: renew_fraction {self.renew_fraction} must be > 0 and below guard "
                f"{self.guard} (a renewal must come before the holder's own deadline)"
            )
        if not 0 < self.guard <= 1:
            raise LeaseError(f"lease: guard must be in (0, 1], got {self.guard}")

    @property
    def renew_s(self) -> float:
        return self.ttl_s * self.renew_fraction

    @property
    def failover_bound_s(self) -> float:
        """Longest time from the holder's death until another agent holds the lease (plus one
        round trip to the server)."""
        return self.ttl_s + self.renew_s


class Step(Enum):
    CREATE = "create"  # the key should be absent: create it (fails if another holds it)
    RENEW = "renew"  # we hold it: compare-and-set on our last revision


@dataclass(frozen=True)
class LeaseState:
    """What one agent knows of the lease. ``revision`` is the bucket revision of our last
    accepted write while we hold it (None otherwise); ``held_until`` is the monotonic instant
    after which we must no longer act as controller."""

    revision: int | None = None
    held_until: float = -math.inf
    holder: str | None = None  # who holds it, as last seen (us, another agent, or nobody)

    def is_controller(self, now: float) -> bool:
        return self.revision is not None and now < self.held_until


def next_step(state: LeaseState, now: float) -> Step:
    """Renew while we may still hold it; otherwise try to take it."""
    return Step.RENEW if state.is_controller(now) else Step.CREATE


def on_written(policy: LeasePolicy, revision: int, sent: float) -> LeaseState:
    """The server accepted our create or renewal, sent at monotonic ``sent``."""
    return LeaseState(
        revision=revision, held_until=sent + policy.ttl_s * policy.guard, holder=policy.agent_id
    )


def on_conflict(
    policy: LeasePolicy,
    state: LeaseState,
    now: float,
    holder: str | None,
    revision: int | None = None,
) -> LeaseState:
    """The compare-and-set failed. Normally another agent holds the lease (``holder`` and its
    ``revision`` when we could read them) and we stop acting as controller at once.

    One exception: the key holds *our* value at a newer revision. That is our own renewal whose
    reply was lost (a node died between the write and its answer). We adopt that revision and
    keep our deadline, which the lost write, sent later than the one it is based on, can only
    outlast; the next renewal then succeeds instead of the lease lapsing for a whole TTL."""
    if (
        holder == policy.agent_id
        and revision is not None
        and state.revision is not None
        and revision > state.revision
        and state.is_controller(now)
    ):
        return replace(state, revision=revision)
    return LeaseState(holder=holder)


def on_error(state: LeaseState, now: float) -> LeaseState:
    """No answer (server down, timeout): a holder keeps acting until its own deadline, and
    after it forgets the revision so that the next step is a create."""
    if state.revision is not None and now >= state.held_until:
        return replace(state, revision=None, holder=None)
    return state


def on_released() -> LeaseState:
    return LeaseState()


def lease_value(agent_id: str, at_unix: float, ttl_s: float) -> bytes:
    """The value written under the key: who holds it, for people and for ``on_conflict``."""
    return json.dumps({"agent_id": agent_id, "at": round(at_unix, 3), "ttl_s": ttl_s}).encode()


def holder_of(value: bytes) -> str:
    """The agent id in a lease value; raises ``LeaseError`` for anything else."""
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LeaseError(f"lease value is not JSON: {exc}") from None
    agent = data.get("agent_id") if isinstance(data, dict) else None
    if not isinstance(agent, str) or not agent:
        raise LeaseError("lease value has no agent_id")
    return agent
