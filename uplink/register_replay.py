"""Replay of register events from the agent's durable history, asked for by a register.

MQTT QoS 1 gets a message to the broker; whether the broker then gets it to a subscriber is the
broker's business, and a clustered broker can lose that part while its nodes elect leaders (a
persistent session resumed on another node without its subscription, a store that failed after
the PUBACK: README, "The register on a NATS cluster"). A register that sees a hole in a stream's
``seq`` (an event past it, or an inventory whose ``seq`` is beyond the events it saw) takes the
retained inventory for the state, and asks the agent for the missing events themselves by
publishing a request on ``{stream}/replay``::

    {"schema": "kz.register.replay.v1", "from_seq": 15, "to_seq": 18}

The agent subscribes to its own replay topic and queues the events of that range from its
durable history (``kuat.uplink.register_history``), unchanged (same ``seq`` and ``id``), on its
events topic through its outbox: a register applies none of them twice (the ``id`` rule) and so
counts every event. At most ``MAX_REPLAY`` events per request and ``REPLAY_BUDGET`` per minute
are served, so a register asking too much (or a stranger allowed to publish there) cannot
flood the site's uplink; the broker's ACL should let only the register publish on ``…/replay``.

Parsing raises only ``ReplayError`` (tests/uplink/test_register_replay.py fuzzes it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from kuat.collectors.errors import KuatError

__all__ = [
    "MAX_REPLAY",
    "REPLAY_BUDGET",
    "REPLAY_SCHEMA",
    "ReplayError",
    "ReplayRequest",
    "parse_replay",
    "ranges",
    "replay_payload",
]

REPLAY_SCHEMA = "kz.register.replay.v1"
MAX_REPLAY = 10_000  # events served for one request
REPLAY_BUDGET = 50_000  # events served per minute by one agent's stream


class ReplayError(KuatError, ValueError):
    """A replay request that is not what the contract says (the only error parsing raises)."""


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    from_seq: int
    to_seq: int


def _seq(body: dict[str, object], key: str) -> int:
    v = body.get(key)
    if type(v) is not int or v < 1:  # bool is an int, and no seq
        raise ReplayError(f"replay request: {key!r} must be an integer >= 1")
    return v


def parse_replay(raw: bytes | bytearray) -> ReplayRequest:
    """The request in ``raw``; raises ``ReplayError`` for anything else."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ReplayError(f"replay request is not JSON ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise ReplayError("replay request is not a JSON object")
    if body.get("schema") != REPLAY_SCHEMA:
        raise ReplayError(f"replay request: schema is not {REPLAY_SCHEMA}")
    first, last = _seq(body, "from_seq"), _seq(body, "to_seq")
    if last < first:
        raise ReplayError("replay request: to_seq is below from_seq")
    return ReplayRequest(first, last)


def replay_payload(first: int, last: int) -> bytes:
    return json.dumps({"schema": REPLAY_SCHEMA, "from_seq": first, "to_seq": last}).encode()


def ranges(seqs: Iterable[int], longest: int = MAX_REPLAY) -> list[tuple[int, int]]:
    """Sorted ``seqs`` as inclusive runs of at most ``longest``: the fewest requests."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1 and s - out[-1][0] < longest:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out
