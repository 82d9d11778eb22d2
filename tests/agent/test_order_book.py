"""Curtailment orders survive a restart (issue 11, defect 5): a withdrawn order replayed to a
restarted agent stays withdrawn; a revised one stays revised."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kuat.agent.config import parse_config
from kuat.agent.order_book import PersistentOrderBook
from kuat.agent.quota_job import QuotaJob
from kuat.agent.state import SiteState
from kuat.quota.orders import limit_kw, sign_order

KEY = "kegoc-shared-secret-0123456789abcdef"
SITE = "ekibastuz-1"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # 17:00 Astana
DURING = NOW + timedelta(hours=2)


def order(**over: object) -> str:
    doc: dict[str, object] = {
        "id": "KEGOC-0042",
        "issuer": "kegoc",
        "site": SITE,
        "target_mw": 5.0,
        "start": "2026-11-25T18:00:00+05:00",
        "end": "2026-11-25T22:00:00+05:00",
        "issued_at": "2026-11-25T16:55:00+05:00",
        **over,
    }
    return sign_order(doc, KEY.encode())


def job(state_dir: Path) -> QuotaJob:
    cfg = parse_config(
        f'[site]\nid = "{SITE}"\nowner_bin = "230140000045"\n'
        f'[agent]\nstate_dir = "{state_dir}"\n'
        f'[quota.orders.issuers]\nkegoc = "{KEY}"\n'
    )
    return QuotaJob(cfg, SiteState(), state_dir)


def test_a_withdrawn_order_replayed_after_a_restart_stays_withdrawn(tmp_path: Path) -> None:
    first = job(tmp_path)
    first.offer_order(order(), "mqtt", NOW)
    assert limit_kw(first.orders, DURING)[0] == 5000.0
    first.offer_order(order(cancelled=True, issued_at="2026-11-25T16:58:00+05:00"), "mqtt", NOW)
    assert limit_kw(first.orders, DURING) == (None, None)

    restarted = job(tmp_path)  # a new process: only the state directory is shared
    restarted.offer_order(order(), "mqtt (replayed)", NOW)
    assert limit_kw(restarted.orders, DURING) == (None, None)


def test_a_revised_order_stays_revised_and_ended_ones_are_forgotten(tmp_path: Path) -> None:
    book = PersistentOrderBook(tmp_path / "orders.db")
    book.offer(order(), {"kegoc": KEY.encode()}, now=NOW, site=SITE)
    book.offer(
        order(target_mw=3.0, issued_at="2026-11-25T16:57:00+05:00"),
        {"kegoc": KEY.encode()},
        now=NOW,
        site=SITE,
    )
    book.close()
    again = PersistentOrderBook(tmp_path / "orders.db")
    again.offer(order(), {"kegoc": KEY.encode()}, now=NOW, site=SITE)  # the older version
    assert limit_kw(again, DURING)[0] == 3000.0
    again.prune(NOW + timedelta(days=1))
    again.close()
    assert len(PersistentOrderBook(tmp_path / "orders.db")) == 0


def test_a_damaged_order_store_is_moved_aside_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "orders.db"
    path.write_bytes(b"not a database at all" * 200)
    with caplog.at_level(logging.ERROR):
        book = PersistentOrderBook(path)
    assert book.quarantine is not None and book.quarantine.moved_to.exists()
    assert any(str(path) in r.getMessage() for r in caplog.records)
    assert len(book) == 0
