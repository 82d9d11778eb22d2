"""One register filing for a site split across agents: ``kuat register merge`` of the agents'
own ``kuat register export --format json`` documents (each agent's spool holds only its shard).

The owner files once per site. Each agent exports its shard for the same ``--since``; the merge
is what one agent watching every hall would have exported, miner by miner:

* a miner **included** by one shard and **excluded** by another moved between shards (its hall
  went to another agent): the site neither gained nor lost it, so it is not a row; a line of
  ``warnings`` says so, with both locations (``moved`` entries need addresses the rows do not
  carry);
* a miner included (or excluded) by several shards: one row, the one seen last;
* a miner that came and went in one shard (``transient``) but is included by another moved
  there: its include stands;
* ``moved`` / ``changed`` / ``transient`` entries of the same miner: the latest one;
* ``history_from``: the latest of the shards' (the site's history is complete only from when
  every shard's is); ``inventory_at``: the oldest (the filing is as old as its oldest part);
  ``inventory_seq`` is 0 (each shard numbers its own events); warnings keep their file's name.

The documents must be of the same owner, site and ``--since``: a mismatch, or a file that is not
such a document, is refused with every problem named at once (``FilingError``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from kuat.collectors.errors import KuatError

__all__ = ["FilingError", "merge_exports", "problems_of"]

EXPORT_SCHEMA = "kuat.register-export.v1"
_SAME = ("owner_bin", "site", "since")


class FilingError(KuatError, ValueError):
    """Exports that cannot be merged; ``problems`` names each file and what is wrong."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def problems_of(docs: Sequence[tuple[str, Any]]) -> list[str]:
    """Every reason ``docs`` cannot be merged, each naming its file (empty: they can)."""
    problems: list[str] = []
    good: list[tuple[str, dict[str, Any]]] = []
    for name, doc in docs:
        if not isinstance(doc, dict) or doc.get("schema") != EXPORT_SCHEMA:
            problems.append(f"{name}: not a `kuat register export --format json` document")
        elif not isinstance(doc.get("rows"), list):
            problems.append(f"{name}: 'rows' is not a list")
        else:
            good.append((name, doc))
    if good:
        first_name, first = good[0]
        for key in _SAME:
            for name, doc in good[1:]:
                if doc.get(key) != first.get(key):
                    problems.append(
                        f"{name}: {key} is {doc.get(key)!r}, {first_name} has {first.get(key)!r}"
                    )
    return problems


def _latest(entries: Sequence[Mapping[str, Any]], key: str) -> Mapping[str, Any]:
    return max(entries, key=lambda e: e.get(key) or "")


def _by_miner(docs: Sequence[tuple[str, Any]], field: str) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for _, doc in docs:
        for entry in doc.get(field) or []:
            out.setdefault(entry["miner_id"], []).append(entry)
    return out


def merge_exports(docs: Sequence[tuple[str, Any]], now: datetime) -> dict[str, Any]:
    """The site's filing from its shards' export documents (``(file name, document)``)."""
    if not docs:
        raise FilingError(["no export to merge"])
    if problems := problems_of(docs):
        raise FilingError(problems)
    rows: list[Mapping[str, Any]] = []
    notes: list[str] = []
    for mid, entries in _by_miner(docs, "rows").items():
        incl = [r for r in entries if r["action"] == "include"]
        excl = [r for r in entries if r["action"] == "exclude"]
        if incl and excl:  # left one shard, arrived in another: a move, not a filing row
            arrived, left = _latest(incl, "at"), _latest(excl, "at")
            notes.append(
                f"miner {arrived.get('serial') or mid} moved between agents' shards "
                f"({left.get('location') or '?'} -> {arrived.get('location') or '?'}, "
                f"{arrived.get('at')}): still on the site, not filed"
            )
        else:
            rows.append(_latest(incl or excl, "last_seen" if incl else "at"))
    moved = [_latest(e, "at") for e in _by_miner(docs, "moved").values()]
    included = {r["miner_id"] for r in rows if r["action"] == "include"}
    transient = [
        _latest(e, "at") for mid, e in _by_miner(docs, "transient").items() if mid not in included
    ]
    changed = [_latest(e, "at") for e in _by_miner(docs, "changed").values()]
    rows.sort(key=lambda r: (r["action"] != "include", r["serial"] or r["mac"] or r["miner_id"]))

    first = docs[0][1]
    histories = [doc.get("history_from") for _, doc in docs]
    inventories = [doc.get("inventory_at") for _, doc in docs]
    return {
        "schema": EXPORT_SCHEMA,
        "owner_bin": first["owner_bin"],
        "site": first["site"],
        "owner": next((d["owner"] for _, d in docs if d.get("owner")), None),
        "data_centre": next((d["data_centre"] for _, d in docs if d.get("data_centre")), None),
        "generated_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "inventory_at": None if None in inventories else min(inventories),
        "inventory_seq": 0,
        "since": first.get("since"),
        "period_from": first.get("period_from"),
        "history_from": None if None in histories else max(histories),
        "include": len(included),
        "exclude": sum(1 for r in rows if r["action"] == "exclude"),
        "rows": rows,
        "moved": sorted(moved, key=lambda e: e["miner_id"]),
        "changed": sorted(changed, key=lambda e: e["miner_id"]),
        "transient": sorted(transient, key=lambda e: e["miner_id"]),
        "warnings": [f"{name}: {w}" for name, doc in docs for w in doc.get("warnings") or []]
        + notes,
    }
