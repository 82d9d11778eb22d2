"""One site from several publishers: the register's merge of a site split across agents.

A site split across agents (``[cluster]``) has one register stream per agent — its own retained
inventory, ``seq`` and status under ``{site}/agent/{agent_id}/`` — because each agent numbers
its own events and overwriting one retained inventory with another would lose a hall. A
single-agent site has one stream under ``{site}/`` (stream key ``""``). The register wants one
site: this module merges the streams' miner lists, pure, so any register back-end can port it.

The rule: a miner id belongs to the stream whose copy of it was seen last (``last_seen``; on a
tie a copy that is not ``offline``, then the current owner, then the smaller agent id). A miner
that a hall's agent lost and another agent found — moved between shards — is therefore *one*
miner whose owner changes: one site-level ``moved`` change, never ``added`` twice; the first
agent's copy (``offline``, and ``removed`` a day later) no longer matters once another agent has
seen the miner since. Overlapping shards (two agents polling the same miner) converge on the
freshest copy.

``SiteMerge.update`` re-decides the owner of the ids a message touched and returns the
site-level changes, which the reference receiver reports beside each message:

* ``added`` — no stream had the miner; ``removed`` — no stream has it any more;
* ``moved`` — its owner (``agent_id``) or its address/location changed, with ``from``/``to``;
* ``changed`` — hardware facts changed (as in the events), with ``changes``.

Run state and last-seen times are not changes, as in the publisher's events. Changes derive
from the merged state, not from the events, so a duplicate, a replayed inventory or the events a
rebuild skipped give no change twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kuat.uplink.inventory import HARDWARE_FIELDS

__all__ = ["SiteMerge"]

Record = Mapping[str, Any]


def _rank(stream: str, rec: Record, owner: str | None) -> tuple[str, bool, bool]:
    last_seen = rec.get("last_seen")
    # ISO 8601 UTC with "Z" and whole seconds sorts as text; a malformed one ranks lowest
    seen = last_seen if isinstance(last_seen, str) else ""
    return seen, rec.get("state") != "offline", stream == owner


def _place(stream: str, rec: Record) -> dict[str, Any]:
    return {
        "agent_id": stream or None,
        "ip": rec.get("ip"),
        "port": rec.get("port"),
        "location": rec.get("location"),
    }


@dataclass
class SiteMerge:
    """The owner of each miner id of one site, and the copy the site view shows."""

    owners: dict[str, str] = field(default_factory=dict)  # miner id -> stream key
    shown: dict[str, Record] = field(default_factory=dict)  # miner id -> the owner's copy

    def update(
        self, streams: Mapping[str, Mapping[str, Record]], ids: Iterable[str]
    ) -> list[dict[str, Any]]:
        """Re-decide ``ids`` from every stream's miners (stream key -> id -> record) and return
        the site-level changes, ordered like the events: removed, moved, changed, added."""
        removed: list[dict[str, Any]] = []
        moved: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        added: list[dict[str, Any]] = []
        for ident in sorted(set(ids)):
            old_owner = self.owners.get(ident)
            old = self.shown.get(ident)
            # in agent id order: on a full tie max() keeps the first, the smaller agent id
            copies = [(s, streams[s][ident]) for s in sorted(streams) if ident in streams[s]]
            if not copies:
                if old is not None and old_owner is not None:
                    del self.owners[ident], self.shown[ident]
                    removed.append(_change("removed", ident, old_owner, old))
                continue
            owner, rec = max(copies, key=lambda c: _rank(c[0], c[1], old_owner))
            self.owners[ident], self.shown[ident] = owner, rec
            if old is None or old_owner is None:
                added.append(_change("added", ident, owner, rec))
                continue
            before, after = _place(old_owner, old), _place(owner, rec)
            if before != after:
                moved.append({**_change("moved", ident, owner, rec), "from": before, "to": after})
            diffs = {
                f: {"from": old.get(f), "to": rec.get(f)}
                for f in HARDWARE_FIELDS
                if old.get(f) != rec.get(f)
            }
            if diffs:
                changed.append({**_change("changed", ident, owner, rec), "changes": diffs})
        return [*removed, *moved, *changed, *added]

    def miners(self) -> dict[str, dict[str, Any]]:
        """The site view: every miner once, its owner's copy, with the owner as ``agent_id``
        (null for a single-agent site's stream)."""
        return {
            ident: {**rec, "agent_id": self.owners[ident] or None}
            for ident, rec in sorted(self.shown.items())
        }


def _change(kind: str, ident: str, owner: str, rec: Record) -> dict[str, Any]:
    return {"type": kind, "miner_id": ident, "agent_id": owner or None, "miner": dict(rec)}
