"""Curtailment orders: authentication, every refusal reason, the book, the binding limit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kuat.agent.i18n import LANGS, render
from kuat.quota.orders import (
    CurtailmentOrder,
    OrderBook,
    OrderError,
    OrderOutcome,
    canonical_body,
    limit_kw,
    limit_reason,
    sign_order,
    tighter,
    verify_order,
)
from kuat.quota.reasons import Code, Reason

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # 17:00 Astana
KEY = b"kegoc-shared-secret-0123456789abcdef"
SECRETS = {"kegoc": KEY, "korem": b"korem-shared-secret-0123456789abcd"}
SITE = "ekibastuz-1"


def base(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "KEGOC-0042",
        "issuer": "kegoc",
        "site": SITE,
        "target_mw": 5.0,
        "start": "2026-11-25T18:00:00+05:00",
        "end": "2026-11-25T22:00:00+05:00",
        "issued_at": "2026-11-25T16:55:00+05:00",
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not None}


def signed(secret: bytes = KEY, **over: Any) -> str:
    return sign_order(base(**over), secret)


def codes(text: str | bytes, **kw: Any) -> list[Code]:
    with pytest.raises(OrderError) as exc:
        verify_order(text, SECRETS, now=kw.pop("now", NOW), site=kw.pop("site", SITE), **kw)
    return [r.code for r in exc.value.reasons]


def test_a_signed_order_verifies_and_times_are_utc() -> None:
    o = verify_order(signed(), SECRETS, now=NOW, site=SITE)
    assert o == CurtailmentOrder(
        id="KEGOC-0042",
        issuer="kegoc",
        target_mw=5.0,
        start=datetime(2026, 11, 25, 13, tzinfo=UTC),
        end=datetime(2026, 11, 25, 17, tzinfo=UTC),
        issued_at=datetime(2026, 11, 25, 11, 55, tzinfo=UTC),
        site=SITE,
    )
    assert o.target_kw == 5000.0


def test_signature_is_over_the_canonical_body_not_the_layout() -> None:
    # An issuer may pretty-print and order keys as it likes; the signature covers the content.
    doc = json.loads(signed())
    pretty = json.dumps(dict(reversed(list(doc.items()))), indent=4, ensure_ascii=True)
    assert verify_order(pretty, SECRETS, now=NOW).id == "KEGOC-0042"
    assert canonical_body({"b": 1, "a": "қуат", "signature": "x"}) == '{"a":"қуат","b":1}'.encode()


def test_uppercase_hex_signature_is_accepted() -> None:
    doc = json.loads(signed())
    doc["signature"] = doc["signature"].upper()
    assert verify_order(json.dumps(doc), SECRETS, now=NOW).issuer == "kegoc"


def tampered(field: str, value: Any) -> str:
    doc = json.loads(signed())
    doc[field] = value
    return json.dumps(doc)


# (case, text, expected codes in order) — every refusal names each problem it finds.
CASES: list[tuple[str, str, list[Code]]] = [
    ("not json", "{oops", [Code.ORDER_NOT_JSON]),
    ("not an object", "[1, 2]", [Code.ORDER_BAD_SHAPE]),
    ("NaN is not a number", signed().replace("5.0", "NaN"), [Code.ORDER_NOT_JSON]),
    (
        "duplicate key",
        signed()[:-1] + ', "target_mw": 50.0}',
        [Code.ORDER_DUPLICATE_KEY],
    ),
    ("target raised after signing", tampered("target_mw", 50.0), [Code.ORDER_BAD_SIGNATURE]),
    (
        "end moved after signing",
        tampered("end", "2026-11-26T22:00:00+05:00"),
        [Code.ORDER_BAD_SIGNATURE],
    ),
    ("field added after signing", tampered("note", "x"), [Code.ORDER_BAD_SIGNATURE]),
    ("signed with another key", signed(b"x" * 32), [Code.ORDER_BAD_SIGNATURE]),
    ("signature not text", tampered("signature", 12), [Code.ORDER_BAD_SIGNATURE]),
    ("unsigned", json.dumps(base()), [Code.ORDER_MISSING_FIELD]),
    ("unknown issuer", signed(issuer="acme"), [Code.ORDER_UNKNOWN_ISSUER]),
    ("issuer signs as another", sign_order(base(issuer="korem"), KEY), [Code.ORDER_BAD_SIGNATURE]),
    ("order for another site", signed(site="aksu-2"), [Code.ORDER_WRONG_SITE]),
    (
        "end before start",
        signed(end="2026-11-25T17:30:00+05:00"),
        [Code.ORDER_END_BEFORE_START],
    ),
    ("empty window", signed(end="2026-11-25T18:00:00+05:00"), [Code.ORDER_END_BEFORE_START]),
    ("negative target", signed(target_mw=-1), [Code.ORDER_NEGATIVE_TARGET]),
    ("target is text", signed(target_mw="5"), [Code.ORDER_BAD_FIELD]),
    ("target is a bool", signed(target_mw=True), [Code.ORDER_BAD_FIELD]),
    ("target overflows", signed(target_mw=10**400), [Code.ORDER_BAD_FIELD]),
    (
        "expired",
        signed(start="2026-11-25T10:00:00+05:00", end="2026-11-25T16:00:00+05:00"),
        [Code.ORDER_EXPIRED],
    ),
    (
        "too far ahead",
        signed(start="2026-11-30T18:00:00+05:00", end="2026-11-30T22:00:00+05:00"),
        [Code.ORDER_TOO_FAR_AHEAD],
    ),
    (
        "issued in the future",
        signed(issued_at="2026-11-25T18:00:00+05:00"),
        [Code.ORDER_ISSUED_IN_FUTURE],
    ),
    ("naive time", signed(start="2026-11-25T18:00:00"), [Code.ORDER_BAD_FIELD]),
    ("not a time", signed(start="tomorrow"), [Code.ORDER_BAD_FIELD]),
    ("missing id", signed(id=None), [Code.ORDER_MISSING_FIELD]),
    ("blank id", signed(id=" "), [Code.ORDER_BAD_FIELD]),
    ("cancelled not bool", signed(cancelled="yes"), [Code.ORDER_BAD_FIELD]),
    ("site not text", signed(site=7), [Code.ORDER_BAD_FIELD]),
    (
        "every problem at once",
        sign_order(
            base(
                site="aksu-2",
                target_mw=-3,
                start="2026-11-25T16:00:00+05:00",
                end="2026-11-25T15:00:00+05:00",
                issued_at="2026-11-26T00:00:00+05:00",
            ),
            b"wrong-key-wrong-key-wrong-key-00",
        ),
        [
            Code.ORDER_BAD_SIGNATURE,
            Code.ORDER_NEGATIVE_TARGET,
            Code.ORDER_WRONG_SITE,
            Code.ORDER_END_BEFORE_START,
            Code.ORDER_EXPIRED,
            Code.ORDER_ISSUED_IN_FUTURE,
        ],
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_refusals(case: str, text: str, expected: list[Code]) -> None:
    assert codes(text) == expected


def test_site_is_optional_on_either_side() -> None:
    assert verify_order(signed(site=None), SECRETS, now=NOW, site=SITE).site is None
    assert verify_order(signed(site="aksu-2"), SECRETS, now=NOW).site == "aksu-2"


def test_an_empty_secret_is_no_secret() -> None:
    with pytest.raises(OrderError) as exc:
        verify_order(sign_order(base(), b""), {"kegoc": b""}, now=NOW)
    assert [r.code for r in exc.value.reasons] == [Code.ORDER_UNKNOWN_ISSUER]


def test_limits_are_arguments() -> None:
    far = signed(start="2026-11-30T18:00:00+05:00", end="2026-11-30T22:00:00+05:00")
    assert verify_order(far, SECRETS, now=NOW, max_ahead=timedelta(days=7)).id == "KEGOC-0042"
    early = signed(issued_at="2026-11-25T17:03:00+05:00")  # 3 min ahead of our clock
    assert verify_order(early, SECRETS, now=NOW).id == "KEGOC-0042"
    assert Code.ORDER_ISSUED_IN_FUTURE in codes(early, max_skew=timedelta(minutes=1))


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        verify_order(signed(), SECRETS, now=datetime(2026, 11, 25, 12))


# --- hypothesis: a changed body never verifies ------------------------------------------

_json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(["id", "issuer", "site", "target_mw", "start", "end", "issued_at", "x"]),
    value=_json_values,
)
def test_any_changed_field_never_verifies(key: str, value: Any) -> None:
    doc = json.loads(signed())
    if doc.get(key, object()) == value and type(doc.get(key)) is type(value):
        return  # not a change
    doc[key] = value
    with pytest.raises(OrderError) as exc:
        verify_order(json.dumps(doc), SECRETS, now=NOW, site=SITE)
    found = {r.code for r in exc.value.reasons}
    # The issuer itself may be what changed: then the key is unknown (or another's key fails).
    assert found & {
        Code.ORDER_BAD_SIGNATURE,
        Code.ORDER_UNKNOWN_ISSUER,
        Code.ORDER_MISSING_FIELD,
        Code.ORDER_BAD_FIELD,
    }, found


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_flipping_any_byte_never_verifies(data: st.DataObject) -> None:
    text = signed().encode()
    i = data.draw(st.integers(0, len(text) - 1), label="index")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != text[i]), label="byte")
    mutated = text[:i] + bytes([new]) + text[i + 1 :]
    try:
        order = verify_order(mutated, SECRETS, now=NOW, site=SITE)
    except OrderError:
        return
    # Only a flip that leaves the parsed content identical may pass (e.g. hex case in the
    # signature, or whitespace); then the order is the very one that was signed.
    assert order == verify_order(signed(), SECRETS, now=NOW, site=SITE)


# --- the book ---------------------------------------------------------------------------


def order(
    oid: str = "A",
    mw: float = 5.0,
    start_h: float = 1,
    end_h: float = 5,
    issued_h: float = 0,
    issuer: str = "kegoc",
    cancelled: bool = False,
) -> CurtailmentOrder:
    return CurtailmentOrder(
        id=oid,
        issuer=issuer,
        target_mw=mw,
        start=NOW + timedelta(hours=start_h),
        end=NOW + timedelta(hours=end_h),
        issued_at=NOW + timedelta(hours=issued_h),
        cancelled=cancelled,
    )


def test_book_adds_replaces_by_newer_issue_and_keeps_out_replays() -> None:
    book = OrderBook()
    assert book.add(order()).outcome == OrderOutcome.ADDED
    assert book.add(order()).outcome == OrderOutcome.UNCHANGED
    revised = order(mw=8.0, issued_h=0.5)
    change = book.add(revised)
    assert change.outcome == OrderOutcome.REPLACED and change.changed
    assert change.reasons[0].params["previous_mw"] == 5.0
    # A replay of the first version (older issue time) is kept out.
    kept = book.add(order())
    assert kept.outcome == OrderOutcome.KEPT and not kept.changed
    assert kept.reasons[0].code == Code.ORDER_NOT_NEWER
    # Same issue time, other content: ambiguous, the held one stays.
    assert book.add(order(mw=1.0, issued_h=0.5)).outcome == OrderOutcome.KEPT
    assert book.get("kegoc", "A") == revised
    # The same id from another issuer is another order.
    assert book.add(order(issuer="korem")).outcome == OrderOutcome.ADDED
    assert len(book) == 2


def test_cancellation_stays_until_the_end_so_replays_cannot_revive() -> None:
    book = OrderBook()
    book.add(order())
    assert book.add(order(issued_h=0.2, cancelled=True)).outcome == OrderOutcome.CANCELLED
    assert limit_kw(book, NOW + timedelta(hours=2)) == (None, None)
    assert book.add(order()).outcome == OrderOutcome.KEPT
    assert book.prune(NOW + timedelta(hours=5)) == []  # a withdrawn order does not "end"
    assert len(book) == 0


def test_limit_is_the_tightest_active_order() -> None:
    book = OrderBook()
    assert limit_kw(book, NOW) == (None, None)
    a = order("A", mw=5.0, start_h=1, end_h=5)
    b = order("B", mw=3.0, start_h=2, end_h=3)
    c = order("C", mw=3.0, start_h=2, end_h=4)
    for o in (a, b, c):
        book.add(o)
    assert limit_kw(book, NOW) == (None, None)  # none started yet
    assert limit_kw(book, NOW + timedelta(hours=1)) == (5000.0, a)
    assert limit_kw(book, NOW + timedelta(hours=2.5)) == (3000.0, c)  # tie: the longer one
    assert limit_kw(book, NOW + timedelta(hours=3)) == (3000.0, c)  # B's end is exclusive
    assert limit_kw(book, NOW + timedelta(hours=4.5)) == (5000.0, a)
    assert limit_kw(book, NOW + timedelta(hours=5)) == (None, None)


def test_prune_forgets_ended_orders_and_says_so() -> None:
    book = OrderBook()
    book.add(order("A", end_h=2))
    book.add(order("B", end_h=6))
    ended = book.prune(NOW + timedelta(hours=2))
    assert [(r.code, r.params["id"]) for r in ended] == [(Code.ORDER_ENDED, "A")]
    assert [o.id for o in book] == ["B"]


def test_offer_refuses_with_every_reason_and_changes_nothing() -> None:
    book = OrderBook()
    assert book.offer(signed(), SECRETS, now=NOW, site=SITE).outcome == OrderOutcome.ADDED
    bad = book.offer(tampered("target_mw", 50.0), SECRETS, now=NOW, site=SITE)
    assert bad.outcome == OrderOutcome.REFUSED and bad.order is None
    assert [r.code for r in bad.reasons] == [Code.ORDER_REFUSED, Code.ORDER_BAD_SIGNATURE]
    assert limit_kw(book, NOW + timedelta(hours=1.5))[0] == 5000.0


def test_tighter() -> None:
    assert tighter(None, None) is None
    assert tighter(5.0, None) == 5.0
    assert tighter(None, 3.0) == 3.0
    assert tighter(5.0, 3.0) == 3.0


# --- every order reason renders in kk / ru / en -----------------------------------------


def produced_order_reasons() -> list[Reason]:
    """One of each ORDER_* reason from real calls (also used by tests/quota/test_messages)."""
    out: list[Reason] = []
    for _, text, _ in CASES:
        out += OrderBook().offer(text, SECRETS, now=NOW, site=SITE).reasons
    book = OrderBook()
    out += book.add(order()).reasons
    out += book.add(order()).reasons
    out += book.add(order(mw=2.0, issued_h=0.5)).reasons
    out += book.add(order()).reasons
    out += book.add(order("B", issued_h=0.5, cancelled=True)).reasons
    out += book.prune(NOW + timedelta(hours=6))
    out.append(limit_reason(order()))
    return out


def test_every_order_code_is_produced_and_renders() -> None:
    reasons = produced_order_reasons()
    order_codes = {c for c in Code if c.name.startswith("ORDER_")}
    assert order_codes - {r.code for r in reasons} == set()
    for r in reasons:
        for lang in LANGS:
            text = render(r, lang)
            assert "{" not in text, (r, lang, text)
    added = next(r for r in reasons if r.code == Code.ORDER_ADDED)
    assert render(added, "en") == (
        "Order A from kegoc: at most 5 MW from 2026-11-25T18:00+05:00 to 2026-11-25T22:00+05:00"
    )
    assert "5 МВт" in render(added, "ru") and "өкімі" in render(added, "kk")


# --- hostile text: only OrderError (issue 11) ------------------------------------------------


def test_a_lone_surrogate_signature_is_a_bad_signature_not_a_crash() -> None:
    text = json.dumps({**base(), "signature": "\ud800"})
    assert Code.ORDER_BAD_SIGNATURE in codes(text)


def test_deep_nesting_is_not_json() -> None:
    assert codes("[" * 1000 + "]" * 1000) == [Code.ORDER_NOT_JSON]


def test_an_unknown_issuer_with_a_lone_surrogate_is_quoted_printably() -> None:
    with pytest.raises(OrderError) as exc:
        verify_order(json.dumps({**base(), "issuer": "x\ud800"}), SECRETS, now=NOW, site=SITE)
    (reason,) = [r for r in exc.value.reasons if r.code == Code.ORDER_UNKNOWN_ISSUER]
    reason.params["issuer"].encode("utf-8")  # printable in a log line
