"""The curtailment order book, kept across restarts.

``quota.orders.OrderBook`` is pure and in memory: after a restart it would accept again an
authentic, unexpired order that had been withdrawn (its cancellation forgotten) or revised (the
newer version forgotten). This subclass writes every order the book takes — added, replaced,
cancelled — to ``orders.db`` in the state directory (SQLite, fsync) before the change counts,
and loads the ones not yet ended when it starts, so replaying an old message changes nothing.
Rows leave with the order's end (``prune``), as they do from the book.

A damaged ``orders.db`` is moved aside like a damaged spool (``uplink.spool.open_checked``) and
the book starts empty; that is logged at ERROR because withdrawn orders could then be replayed
until they end.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import datetime
from pathlib import Path

from kuat.quota.orders import CurtailmentOrder, OrderBook, OrderChange
from kuat.quota.reasons import Reason
from kuat.uplink.spool import open_checked

log = logging.getLogger("kuat.quota")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    issuer TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, end_at TEXT NOT NULL,
    PRIMARY KEY (issuer, id)) WITHOUT ROWID;
"""


def _to_json(order: CurtailmentOrder) -> str:
    return json.dumps(
        {
            "id": order.id,
            "issuer": order.issuer,
            "target_mw": order.target_mw,
            "start": order.start.isoformat(),
            "end": order.end.isoformat(),
            "issued_at": order.issued_at.isoformat(),
            "site": order.site,
            "cancelled": order.cancelled,
        },
        ensure_ascii=False,
    )


def _from_json(text: str) -> CurtailmentOrder:
    d = json.loads(text)
    return CurtailmentOrder(
        id=str(d["id"]),
        issuer=str(d["issuer"]),
        target_mw=float(d["target_mw"]),
        start=datetime.fromisoformat(d["start"]),
        end=datetime.fromisoformat(d["end"]),
        issued_at=datetime.fromisoformat(d["issued_at"]),
        site=d.get("site"),
        cancelled=bool(d.get("cancelled", False)),
    )


class PersistentOrderBook(OrderBook):
    """An ``OrderBook`` whose every accepted change is on disk before ``add`` returns."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.quarantine = None
        self._db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db, self.quarantine = open_checked(
                self.path,
                what="order book",
                setup=lambda db: db.executescript(_SCHEMA),
            )
            rows = self._db.execute("SELECT body FROM orders").fetchall()
        except (OSError, sqlite3.Error) as exc:
            # Not writable here (e.g. a report run by another user): the book still works, in
            # memory, and says loudly that a restart would forget what it saw.
            log.error(
                "order book %s cannot be opened (%s): orders are kept in memory only",
                self.path,
                exc,
            )
            self._db = None
            return
        loaded = 0
        for (body,) in rows:
            try:
                order = _from_json(body)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("order book %s: a stored order is unreadable (%s); skipped", path, exc)
                continue
            OrderBook.add(self, order)  # the plain add: it is on disk already
            loaded += 1
        if loaded:
            log.info("order book: %d orders and cancellations restored from %s", loaded, path)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def add(self, order: CurtailmentOrder) -> OrderChange:
        change = super().add(order)
        if change.changed and change.order is not None and self._db is not None:
            try:
                self._store(change.order)
            except sqlite3.Error as exc:  # e.g. a full disk: obeyed now, said loudly
                log.error(
                    "order %s/%s is in force but not saved to %s (%s): a restart would forget it",
                    change.order.issuer,
                    change.order.id,
                    self.path,
                    exc,
                )
        return change

    def _store(self, o: CurtailmentOrder) -> None:
        assert self._db is not None
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "INSERT INTO orders(issuer, id, body, end_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(issuer, id) DO UPDATE SET body = excluded.body, "
                "end_at = excluded.end_at",
                (o.issuer, o.id, _to_json(o), o.end.isoformat()),
            )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def prune(self, now: datetime) -> list[Reason]:
        before = {o.key for o in self}
        reasons = super().prune(now)
        gone = before - {o.key for o in self}
        if gone and self._db is not None:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("DELETE FROM orders WHERE issuer = ? AND id = ?", sorted(gone))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:  # an ended order left on disk is only pruned later
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                log.warning("order book %s: ended orders not pruned yet (%s)", self.path, exc)
        return reasons
