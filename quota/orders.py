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
allowed and are covered by the signature. Times need an explicit UTC offset. JSON Schema:
``uplink/schemas/order.v1.json``.

Canonical body (what a signature covers): the order object without its ``signature`` member,
parsed as I-JSON (no duplicate keys, integers within ±(2**53 - 1)) and serialised by RFC 8785,
the JSON Canonicalization Scheme: members sorted by their names' UTF-16 code units, no
whitespace, strings with only the mandatory escapes (UTF-8, non-ASCII as is), numbers in the
ECMAScript form (``5.0`` → ``5``, ``1E1`` → ``10``, ``1e21`` → ``1e+21``); the UTF-8 bytes of
that text. Any language has a JCS library; the test vectors in ``tests/fixtures/orders/`` give
orders with their canonical bodies and signatures.

Signature, hex (either case) in ``signature``; the algorithm is fixed by the issuer's entry in
the farm's config, never by the order (no algorithm can be chosen by a forger):

* **Ed25519** (RFC 8032) over the canonical body with the issuer's private key, the 64-byte
  signature as 128 hex digits. The farm holds only the public key, so nothing on the farm can
  forge an order. Recommended.
* **HMAC-SHA256** with a shared key over the canonical body, 64 hex digits. Issuers written to
  the earlier form of this spec (Python ``json.dumps(sort_keys=True, separators=(",", ":"),
  ensure_ascii=False)``, which keeps ``5.0`` as written) still verify: for HMAC that body is
  accepted too.

:func:`sign_order` is the reference implementation for issuers and tests.

Replay and revision: within the book an order is replaced only by one with the same
``(issuer, id)`` and a later ``issued_at``, so replaying an older version of a revised order
changes nothing; an ``issued_at`` beyond the clock-skew allowance is refused, so one bogus future
stamp cannot pin an order forever.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

import rfc8785

from kuat.collectors.errors import KuatError
from kuat.quota.clock import ASTANA, as_utc
from kuat.quota.reasons import Code, Reason
from kuat.quota.reasons import show_value as _show

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "CurtailmentOrder",
    "IssuerKey",
    "OrderBook",
    "OrderChange",
    "OrderError",
    "OrderOutcome",
    "canonical_body",
    "limit_kw",
    "load_public_key",
    "sign_order",
    "tighter",
    "verify_order",
]

DEFAULT_MAX_AHEAD = timedelta(days=2)  # orders follow the day-ahead market; further is a mistake
DEFAULT_MAX_SKEW = timedelta(minutes=5)  # issuer's clock vs ours
SIGNATURE = "signature"
_REQUIRED = ("id", "issuer", "target_mw", "start", "end", "issued_at")


class OrderError(KuatError, ValueError):
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

# An issuer's key as the farm holds it: a shared HMAC-SHA256 secret, or an Ed25519 public key.
# cryptography (~9 MB of an agent's RSS) is imported where an Ed25519 key is made or used: a
# farm with no public key configured (HMAC issuers, or no orders at all) never loads it.
IssuerKey: TypeAlias = "bytes | Ed25519PublicKey"


def canonical_body(doc: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the object minus ``signature``, RFC 8785 (JCS).

    Raises ``ValueError`` for what JCS cannot hold (an integer beyond ±(2**53 - 1), a lone
    surrogate): no issuer following the spec can have signed such an order.
    """
    body = {k: v for k, v in doc.items() if k != SIGNATURE}
    try:
        return rfc8785.dumps(body)
    except RecursionError:  # parsed just under json's depth limit, deeper than JCS recurses
        raise ValueError("nested too deeply") from None


def _legacy_body(doc: Mapping[str, Any]) -> bytes:
    """The HMAC body of the spec before JCS (numbers as written), still accepted for HMAC."""
    body = {k: v for k, v in doc.items() if k != SIGNATURE}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _mac(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def sign_order(doc: Mapping[str, Any], key: bytes | Ed25519PrivateKey) -> str:
    """The order as JSON text with its ``signature`` (what an issuer sends).

    ``key``: the shared HMAC-SHA256 secret, or the issuer's Ed25519 private key. An order JCS
    cannot hold (an integer beyond I-JSON) raises ``ValueError`` for Ed25519; with HMAC it is
    signed in the earlier form, which HMAC verification still accepts (tests use this to get a
    well-signed order carrying a hostile value).
    """
    signed = {k: v for k, v in doc.items() if k != SIGNATURE}
    if not isinstance(key, bytes):  # an Ed25519PrivateKey
        signed[SIGNATURE] = key.sign(canonical_body(signed)).hex()
    else:
        try:
            body = canonical_body(signed)
        except ValueError:
            body = _legacy_body(signed)
        signed[SIGNATURE] = _mac(key, body)
    return json.dumps(signed, ensure_ascii=False)


def load_public_key(text: str) -> Ed25519PublicKey:
    """An issuer's Ed25519 public key from the config: PEM (``-----BEGIN PUBLIC KEY-----``),
    or the raw 32 bytes as 64 hex digits or as base64; ``ValueError`` says what is wrong."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError, TypeError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"not a PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"a {type(key).__name__.lstrip('_')}, not an Ed25519 public key")
        return key
    raw: bytes
    if all(c in "0123456789abcdefABCDEF" for c in text) and len(text) % 2 == 0:
        raw = bytes.fromhex(text)  # base64 of 32 bytes ends in "=": never all hex
    else:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not PEM, 64 hex digits or base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this is {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def _signature_ok(key: IssuerKey, doc: Mapping[str, Any], signature: Any) -> bool:
    given = signature.strip().lower() if isinstance(signature, str) else ""
    try:
        body = canonical_body(doc)
    except ValueError:  # a value JCS cannot hold (nothing a conforming issuer signed)
        body = None
    if not isinstance(key, bytes):  # an Ed25519PublicKey, so cryptography is loaded
        from cryptography.exceptions import InvalidSignature

        if body is None or len(given) != 128:
            return False
        try:
            key.verify(bytes.fromhex(given), body)
        except (InvalidSignature, ValueError):  # ValueError: not hex
            return False
        return True
    # surrogatepass: a lone surrogate (valid in JSON text, not in UTF-8) is simply not the
    # hex digest, never an encoding error.
    given_bytes = given.encode("utf-8", "surrogatepass")
    ok = False
    makers: tuple[Callable[[], bytes | None], ...] = (lambda: body, lambda: _legacy_body(doc))
    for make in makers:
        try:
            candidate = make()
        except ValueError:
            candidate = None
        expected = _mac(key, candidate).encode() if candidate is not None else b""
        # compare_digest: the time taken must not tell how many leading digits matched; both
        # forms are always compared, so neither does which form matched.
        ok |= bool(expected) and hmac.compare_digest(given_bytes, expected)
    return ok


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
    secrets: Mapping[str, IssuerKey],
    *,
    now: datetime,
    site: str | None = None,
    max_ahead: timedelta = DEFAULT_MAX_AHEAD,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> CurtailmentOrder:
    """Parse, authenticate and check an order; raise :class:`OrderError` naming every problem.

    ``secrets`` maps issuer names to their keys: a shared HMAC-SHA256 secret (``bytes``) or an
    Ed25519 public key. ``site``, when given, is the receiving site: an order naming another
    site is refused.
    """
    now = as_utc(now)
    doc = _load(text)
    reasons: list[Reason] = []

    issuer = _text(doc, "issuer", reasons)
    signature = doc.get(SIGNATURE)
    if issuer is not None:
        key = secrets.get(issuer)
        # An empty HMAC key would make every signature trivially forgeable: no key at all.
        if key is None or (isinstance(key, bytes) and not key):
            reasons.append(Reason.of(Code.ORDER_UNKNOWN_ISSUER, issuer=_show(issuer)))
        elif signature is None:
            reasons.append(Reason.of(Code.ORDER_MISSING_FIELD, field=SIGNATURE))
        elif not _signature_ok(key, doc, signature):
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
        secrets: Mapping[str, IssuerKey],
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
