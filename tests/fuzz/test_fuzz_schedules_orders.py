"""Schedules (CSV, JSON) and curtailment orders: only ScheduleError / OrderError escape."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from kuat.quota.orders import OrderBook, OrderError, sign_order, verify_order
from kuat.quota.schedule import ScheduleBook, ScheduleError, parse_csv, parse_json
from tests.fuzz.common import FUZZ, NASTY, bounded, deep, json_values, mutated_text

CSV_SEED = "site,date,source,version,hour,mwh\n" + "".join(
    f"s1,2026-11-25,grid,3,{h},12.5\n" for h in range(1, 25)
)
CSV_SEMI = CSV_SEED.replace(",", ";").replace("12.5", "12,5")
JSON_SEED = json.dumps(
    {"site": "s1", "date": "2026-11-25", "source": "grid", "version": 3, "mwh": [12.5] * 24}
)
JSON_HOURS = json.dumps(
    {"date": "2026-11-25", "hours": [{"hour": h, "mwh": 1.5} for h in range(1, 25)]}
)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KEY = b"kegoc-shared-secret-0123456789abcdef"
SECRETS = {"kegoc": KEY}
ORDER = {
    "id": "KEGOC-0042",
    "issuer": "kegoc",
    "site": "s1",
    "target_mw": 5.0,
    "start": "2026-11-25T18:00:00+05:00",
    "end": "2026-11-25T22:00:00+05:00",
    "issued_at": "2026-11-25T16:55:00+05:00",
}
ORDER_SEED = sign_order(ORDER, KEY)


def _schedule(text: str, fmt: str) -> None:
    try:
        bounded(parse_csv if fmt == "csv" else parse_json, text, day=NOW.date())
    except ScheduleError as exc:
        assert exc.reasons, "a refusal names at least one reason"
    # the book, as the agent uses it, never raises either
    assert bounded(ScheduleBook().offer, text, fmt, description="fuzz") is not None


@FUZZ
@given(mutated_text([CSV_SEED, CSV_SEMI]))
@example('site,date,hour,mwh\ns1,2026-11-25,"1\n2",3\n')
@example('site,date,hour,mwh\ns1,2026-11-25,"1,3\n')
@example("hour,mwh\n1," + "9" * 140_000 + "\n")
@example("date,hour,mwh\n2026-11-25,²,1\n")
@example("date,hour,mwh\n2026-11-25," + "1" * 5000 + ",1\n")
def test_csv_schedules(text: str) -> None:
    _schedule(text, "csv")


@FUZZ
@given(mutated_text([JSON_SEED, JSON_HOURS]))
@example('{"date": "2026-11-25", "mwh": [1' + "0" * 400 + "]}")
@example(deep(1000))
@example('{"date": "2026-11-25", "mwh": [1e400]}')
def test_json_schedules_text(text: str) -> None:
    _schedule(text, "json")


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "site": json_values(3),
            "date": json_values(3),
            "source": json_values(3),
            "version": json_values(3),
            "description": json_values(3),
            "mwh": st.one_of(st.lists(json_values(3), max_size=30), json_values(5)),
            "hours": st.lists(
                st.fixed_dictionaries({}, optional={"hour": json_values(2), "mwh": json_values(2)}),
                max_size=30,
            ),
        },
    )
)
def test_json_schedules_structured(doc: dict) -> None:
    _schedule(json.dumps(doc), "json")


def _order(text: str | bytes) -> None:
    try:
        bounded(verify_order, text, SECRETS, now=NOW, site="s1")
    except OrderError as exc:
        assert exc.reasons
    change = bounded(OrderBook().offer, text, SECRETS, now=NOW, site="s1")
    for reason in change.reasons:  # what the agent logs must be loggable text
        json.dumps(reason.params, ensure_ascii=False).encode("utf-8")


@FUZZ
@given(mutated_text([ORDER_SEED]))
@example(json.dumps({**ORDER, "signature": "\ud800"}))
@example(deep(1000))
def test_orders_text(text: str) -> None:
    _order(text)


@FUZZ
@given(st.binary(max_size=300))
def test_orders_bytes(raw: bytes) -> None:
    _order(raw)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from([*ORDER, "signature", "cancelled", "extra"]), json_values(4), max_size=9
    ),
    st.booleans(),
)
def test_orders_structured(fields: dict, sign: bool) -> None:
    doc = {**ORDER, **fields}
    _order(_signed_or_plain(doc) if sign else json.dumps(doc))


def _signed_or_plain(doc: dict) -> str:
    try:
        return sign_order(doc, KEY)
    except ValueError:  # e.g. a lone surrogate: no UTF-8 body to sign
        return json.dumps(doc)


def test_nasty_strings_everywhere() -> None:
    """Every nasty string in every order and schedule field, deterministically."""
    for value in NASTY:
        for key in ORDER:
            _order(_signed_or_plain({**ORDER, key: value}))
        for key in ("site", "date", "source", "version", "description"):
            _schedule(json.dumps({**json.loads(JSON_SEED), key: value}), "json")
        _schedule(CSV_SEED.replace("12.5", value, 1), "csv")
