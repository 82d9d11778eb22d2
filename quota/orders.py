"""Curtailment orders from the energy company or the System Operator, authenticated.

An order says: site draw must stay at or below ``target_mw`` from ``start`` to ``end``. It
arrives over a channel the farm does not control end to end (an HTTP portal, an MQTT broker
shared with others), and obeying a forged order switches off a farm — so every order is
signed, and an unsigned or badly signed one is refused. Pure: no I/O, ``now`` is an argument.

Wire format (JSON object, UTF-8)::

    {"id": "KEGOC-2026-11-25-0042", "issuer": "kegoc", "site": "ekibastuz-1",
     "target_mw": 5.0,
     "start": "2026-11-25T18:00:00+05:00", "end": "2026-11-25T22:00:00+05:00",
     "issued_at": "2026-11-25T17:30:00+05:00",
     "signature": "9f2c…(64 hex digits)"}

``site`` is optional (an order without it applies to whichever site receives it); when present
it must be the receiving site, so an order for one farm cannot be replayed to another.
``cancelled: true`` withdraws an earlier order with the same ``(issuer, id)``. Other keys are
allowed and are covered by the signature. Times need an explicit UTC offset.

Signature: HMAC-SHA256 with the issuer's shared secret over the *canonical body* — the object
without ``signature``, serialised with keys sorted, no whitespace, UTF-8 (non-ASCII kept as is),
numbers as the JSON parser reads them back (``5``, ``5.0`` and ``5.25`` are kept as written;
write plain decimals, not ``5E0``) — as lowercase or uppercase hex. :func:`sign_order` is the
reference implementation for issuers and tests.

Replay and revision: within the book an order is replaced only by one with the same
``(issuer, id)`` and a later ``issued_at``, so replaying an older version of a revised order
changes nothing; an ``issued_at`` beyond the clock-skew allowance is refused, so one bogus future
stamp cannot pin an order forever.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import math
import reprlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kuat.quota.clock import ASTANA, as_utc
from kuat.quota.reasons import Code, Reason

__all__ = [
    "CurtailmentOrder",
    "OrderBook",
    "OrderChange",
    "OrderError",
    "OrderOutcome",
    "canonical_body",
    "limit_kw",
    "sign_order",
    "tighter",
    "verify_order",
]

DEFAULT_MAX_AHEAD = timedelta(days=2)  # orders follow the day-ahead market; further is a mistake
DEFAULT_MAX_SKEW = timedelta(minutes=5)  # issuer's clock vs ours
SIGNATURE = "signature"
_REQUIRED = ("id", "issuer", "target_mw", "start", "end", "issued_at")
# A value quoted back in a reason: enough to recognise it, never a megabyte or a deep tree.
_SHOW = reprlib.Repr()
_SHOW.maxlevel = 2
_SHOW.maxstring = _SHOW.maxother = _SHOW.maxlong = 80


def _show(value: Any) -> str:
    if isinstance(value, str):
        # A lone surrogate (valid in JSON, not in UTF-8) would break the log line quoting it.
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value if len(value) <= 80 else value[:77] + "..."
    if isinstance(value, bool | float) or value is None:
        return str(value)
    return _SHOW.repr(value)


class OrderError(ValueError):
    """An order refused, with every reason found."""

    def __init__(self, reasons: list[Reason]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(f"{r.code}{dict(r.params)}" for r in reasons))


@dataclass(frozen=True, slots=True)
class CurtailmentOrder:
    id: str
    issuer: str
    target_mw: float
    start: datetime  # UTC
    end: datetime  # UTC, exclusive
    issued_at: datetime  # UTC
    site: str | None = None
    cancelled: bool = False

    @property
    def key(self) -> tuple[str, str]:
        # Two issuers may number their orders alike; one must never overwrite the other's.
        return (self.issuer, self.id)

    @property
    def target_kw(self) -> float:
        return self.target_mw * 1000.0

    def active_at(self, now: datetime) -> bool:
        return not self.cancelled and self.start <= as_utc(now) < self.end


def local(instant: datetime) -> str:
    """Astana time for operator texts: orders are issued and read in local time."""
    return instant.astimezone(ASTANA).isoformat(timespec="minutes")


# --- signing ----------------------------------------------------------------------------


def canonical_body(doc: Mapping[str, Any]) -> bytes:
    """The bytes the signature covers: the object minus ``signature``, canonical JSON."""
    body = {k: v for k, v in doc.items() if k != SIGNATURE}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _mac(secret: bytes, doc: Mapping[str, Any]) -> str:
    return hmac.new(secret, canonical_body(doc), hashlib.sha256).hexdigest()


def sign_order(doc: Mapping[str, Any], secret: bytes) -> str:
    """The order as JSON text with its ``signature`` (what an issuer sends)."""
    signed = {k: v for k, v in doc.items() if k != SIGNATURE}
    signed[SIGNATURE] = _mac(secret, signed)
    return json.dumps(signed, ensure_ascii=False)


# --- parsing and verification -----------------------------------------------------------


def _load(text: str | bytes) -> dict[str, Any]:
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                duplicates.append(k)
            out[k] = v
        return out

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a number")

    try:
        doc = json.loads(text, object_pairs_hook=pairs, parse_constant=no_constants)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OrderError([Reason.of(Code.ORDER_NOT_JSON, error=str(exc))]) from None
    except RecursionError:
        raise OrderError([Reason.of(Code.ORDER_NOT_JSON, error="nested too deeply")]) from None
    if not isinstance(doc, dict):
        raise OrderError([Reason.of(Code.ORDER_BAD_SHAPE, expected="object")])
    if duplicates:
        # Which of two values did the issuer sign? Neither answer is safe: refuse.
        raise OrderError(
            [Reason.of(Code.ORDER_DUPLICATE_KEY, field=_show(k)) for k in dict.fromkeys(duplicates)]
        )
    return doc


def _text(doc: Mapping[str, Any], name: str, reasons: list[Reason]) -> str | None:
    value = doc.get(name)
    if value is None:
        reasons.append(Reason.of(Code.ORDER_MISSING_FIELD, field=name))
        return None
    if not isinstance(value, str) or not value.strip():
        reasons.append(Reason.of(Code.ORDER_BAD_FIELD, field=name, value=_show(value)))
        return None
    return value.strip()


def _time(doc: Mapping[str, Any], name: str, reasons: list[Reason]) -> datetime | None:
    raw = _text(doc, name, reasons)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        reasons.append(Reason.of(Code.ORDER_BAD_FIELD, field=name, value=_show(raw)))
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        # A time without offset is a guess between UTC and Astana: five hours of difference.
        reasons.append(Reason.of(Code.ORDER_BAD_FIELD, field=name, value=_show(raw)))
        return None
    return as_utc(value)


def _number(value: Any) -> float | None:
    # bool is an int in Python, and a 400-digit integer overflows float(): neither is a limit.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def verify_order(
    text: str | bytes,
    secrets: Mapping[str, bytes],
    *,
    now: datetime,
    site: str | None = None,
    max_ahead: timedelta = DEFAULT_MAX_AHEAD,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> CurtailmentOrder:
    """Parse, authenticate and check an order; raise :class:`OrderError` naming every problem.

    ``secrets`` maps issuer names to their shared HMAC keys. ``site``, when given, is the
    receiving site: an order naming another site is refused.
    """
    now = as_utc(now)
    doc = _load(text)
    reasons: list[Reason] = []

    issuer = _text(doc, "issuer", reasons)
    signature = doc.get(SIGNATURE)
    if issuer is not None:
        secret = secrets.get(issuer)
        if not secret:  # an empty key would make every signature trivially forgeable
            reasons.append(Reason.of(Code.ORDER_UNKNOWN_ISSUER, issuer=_show(issuer)))
        elif signature is None:
            reasons.append(Reason.of(Code.ORDER_MISSING_FIELD, field=SIGNATURE))
        else:
            try:
                expected = _mac(secret, doc)
            except ValueError:  # a value JSON cannot hold canonically (nothing we parsed)
                expected = ""
            given = signature.strip().lower() if isinstance(signature, str) else ""
            # compare_digest: the time taken must not tell how many leading digits matched.
            # surrogatepass: a lone surrogate (valid in JSON text, not in UTF-8) is simply
            # not the hex digest, never an encoding error.
            if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode()):
                reasons.append(Reason.of(Code.ORDER_BAD_SIGNATURE, issuer=_show(issuer)))

    order_id = _text(doc, "id", reasons)
    target = doc.get("target_mw")
    target_mw: float | None = None
    number = _number(target)
    if target is None:
        reasons.append(Reason.of(Code.ORDER_MISSING_FIELD, field="target_mw"))
    elif number is None:
        reasons.append(Reason.of(Code.ORDER_BAD_FIELD, field="target_mw", value=_show(target)))
    elif number < 0:
        reasons.append(Reason.of(Code.ORDER_NEGATIVE_TARGET, target_mw=number))
    else:
        target_mw = number

    start = _time(doc, "start", reasons)
    end = _time(doc, "end", reasons)
    issued_at = _time(doc, "issued_at", reasons)

    order_site = doc.get("site")
    if order_site is not None and not isinstance(order_site, str):
        reasons.append(Reason.of(Code.ORDER_BAD_FIELD, field="site", value=_show(order_site)))
        order_site = None
    if site is not None and order_site is not None and order_site != site:
        reasons.append(Reason.of(Code.ORDER_WRONG_SITE, site=_show(order_site), expected=site))

    cancelled = doc.get("cancelled", False)
    if not isinstance(cancelled, bool):
        reasons.append(Reason.of(Code.ORDER_BAD_FIELD, field="cancelled", value=_show(cancelled)))
        cancelled = False

    if start is not None and end is not None and end <= start:
        reasons.append(Reason.of(Code.ORDER_END_BEFORE_START, start=local(start), end=local(end)))
    if end is not None and end <= now:
        reasons.append(Reason.of(Code.ORDER_EXPIRED, end=local(end), now=local(now)))
    if start is not None and start > now + max_ahead:
        reasons.append(
            Reason.of(
                Code.ORDER_TOO_FAR_AHEAD,
                start=local(start),
                max_ahead_h=round(max_ahead.total_seconds() / 3600, 1),
            )
        )
    if issued_at is not None and issued_at > now + max_skew:
        reasons.append(
            Reason.of(Code.ORDER_ISSUED_IN_FUTURE, issued_at=local(issued_at), now=local(now))
        )

    if reasons:
        raise OrderError(reasons)
    assert order_id is not None and issuer is not None and target_mw is not None
    assert start is not None and end is not None and issued_at is not None
    return CurtailmentOrder(
        id=order_id,
        issuer=issuer,
        target_mw=target_mw,
        start=start,
        end=end,
        issued_at=issued_at,
        site=order_site,
        cancelled=cancelled,
    )


# --- the book ---------------------------------------------------------------------------


class OrderOutcome(enum.StrEnum):
    ADDED = "added"
    REPLACED = "replaced"
    CANCELLED = "cancelled"
    UNCHANGED = "unchanged"
    KEPT = "kept"  # not newer than the held version: the held one stays
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class OrderChange:
    outcome: OrderOutcome
    order: CurtailmentOrder | None
    reasons: tuple[Reason, ...]

    @property
    def changed(self) -> bool:
        return self.outcome in (OrderOutcome.ADDED, OrderOutcome.REPLACED, OrderOutcome.CANCELLED)


def _ids(order: CurtailmentOrder) -> dict[str, Any]:
    return {"id": order.id, "issuer": order.issuer}


class OrderBook:
    """Orders by ``(issuer, id)``; a later ``issued_at`` replaces, anything else is kept out.

    A cancellation stays in the book (inactive) until the cancelled order's end, so a replay of
    the original cannot bring it back. Mutable, free of I/O, not thread-safe (the agent feeds
    it on the event loop).
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], CurtailmentOrder] = {}

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[CurtailmentOrder]:
        return iter(sorted(self._held.values(), key=lambda o: (o.start, o.issuer, o.id)))

    def get(self, issuer: str, order_id: str) -> CurtailmentOrder | None:
        return self._held.get((issuer, order_id))

    def add(self, order: CurtailmentOrder) -> OrderChange:
        held = self._held.get(order.key)
        if held is not None and order.issued_at <= held.issued_at:
            if order == held:
                return OrderChange(
                    OrderOutcome.UNCHANGED, held, (Reason.of(Code.ORDER_UNCHANGED, **_ids(order)),)
                )
            return OrderChange(
                OrderOutcome.KEPT,
                held,
                (
                    Reason.of(
                        Code.ORDER_NOT_NEWER,
                        **_ids(order),
                        issued_at=local(order.issued_at),
                        held_issued_at=local(held.issued_at),
                    ),
                ),
            )
        self._held[order.key] = order
        if order.cancelled:
            return OrderChange(
                OrderOutcome.CANCELLED, order, (Reason.of(Code.ORDER_CANCELLED, **_ids(order)),)
            )
        window = {
            "target_mw": order.target_mw,
            "start": local(order.start),
            "end": local(order.end),
        }
        if held is None:
            return OrderChange(
                OrderOutcome.ADDED, order, (Reason.of(Code.ORDER_ADDED, **_ids(order), **window),)
            )
        return OrderChange(
            OrderOutcome.REPLACED,
            order,
            (
                Reason.of(
                    Code.ORDER_REPLACED,
                    **_ids(order),
                    **window,
                    previous_mw=None if held.cancelled else held.target_mw,
                ),
            ),
        )

    def offer(
        self,
        text: str | bytes,
        secrets: Mapping[str, bytes],
        *,
        now: datetime,
        site: str | None = None,
        max_ahead: timedelta = DEFAULT_MAX_AHEAD,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
    ) -> OrderChange:
        """Verify and add; a refused order changes nothing and says why (every reason)."""
        try:
            order = verify_order(
                text, secrets, now=now, site=site, max_ahead=max_ahead, max_skew=max_skew
            )
        except OrderError as exc:
            return OrderChange(
                OrderOutcome.REFUSED,
                None,
                (Reason.of(Code.ORDER_REFUSED, count=len(exc.reasons)), *exc.reasons),
            )
        return self.add(order)

    def active(self, now: datetime) -> list[CurtailmentOrder]:
        return [o for o in self if o.active_at(now)]

    def prune(self, now: datetime) -> list[Reason]:
        """Forget orders that have ended; one ``ORDER_ENDED`` reason per order forgotten."""
        now = as_utc(now)
        ended = [o for o in self if o.end <= now]
        for o in ended:
            del self._held[o.key]
        return [
            Reason.of(Code.ORDER_ENDED, **_ids(o), end=local(o.end))
            for o in ended
            if not o.cancelled
        ]


def limit_kw(book: OrderBook, now: datetime) -> tuple[float | None, CurtailmentOrder | None]:
    """The tightest active order's limit in kW and the order itself; ``(None, None)`` if none."""
    active = book.active(now)
    if not active:
        return None, None
    # Ties: the one ending last binds longest, and the choice must not depend on dict order.
    tightest = min(active, key=lambda o: (o.target_mw, -o.end.timestamp(), o.issuer, o.id))
    return tightest.target_kw, tightest


def tighter(a: float | None, b: float | None) -> float | None:
    """The smaller of two limits, where ``None`` means "no limit"."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def limit_reason(order: CurtailmentOrder) -> Reason:
    """Why the site is held below its quota: for the curtailment log line and the status."""
    return Reason.of(
        Code.ORDER_LIMIT,
        **_ids(order),
        target_mw=order.target_mw,
        end=local(order.end),
    )
