"""Every miner as a row of the dashboard's table and of ``GET /api/miners``: filtered, sorted
and paged on the server, so the page works without scripts and a farm of 50,000 miners sends
one page, not the fleet.

A row's power says where it comes from: ``outlet`` (measured at the PDU outlet feeding the
miner, from ``[[pdu]] outlets``), ``miner`` (the miner's own report) or ``rated`` (the
model's spec-sheet figure scaled by its hashrate, for a miner that reports none). The meter is
the only figure that counts energy; these explain it (see the "power explained" section).

Query parameters (each refused by name when malformed, so a typo never passes silently):
``state`` (comma list of mining, sleeping, error, down), ``model``, ``firmware``, ``pool``,
``q`` (any of id, address, model, firmware, pool; case-insensitive substrings), ``source``
(outlet, miner, rated, none), ``curtailment`` (running, asleep, limited, outlet_off),
``faults`` (1: only miners with errors or faults), ``sort`` (a column of :data:`SORTS`),
``order`` (asc, desc), ``page`` (from 1) and ``per_page`` (1 to 1000).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from kuat.agent.config import KuatConfig
from kuat.agent.dashboard_curtail import (
    ASLEEP,
    RUNNING,
    CurtailmentView,
    MinerCurtailment,
    action_json,
)
from kuat.agent.dashboard_format import iso_utc
from kuat.agent.i18n import Lang
from kuat.collectors.cgminer.models import estimated_power_w
from kuat.collectors.errors import KuatError
from kuat.collectors.readings import AsicReading, DeviceError, PduReading

PowerSource = Literal["outlet", "miner", "rated"]
STATES = ("mining", "sleeping", "error", "down")
SOURCES = ("outlet", "miner", "rated", "none")
CURTAIL_STATES = ("running", "asleep", "limited", "outlet_off")
SORTS = (
    "id",
    "ip",
    "state",
    "model",
    "firmware",
    "hashrate",
    "power",
    "efficiency",
    "temp",
    "pool",
    "faults",
    "curtailment",
)
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000
# The API refuses parameters it does not know (a typo would silently show everything);
# ``lang`` and ``token`` belong to the page and the guard.
_PARAMS = frozenset(
    {"state", "model", "firmware", "pool", "q", "source", "curtailment", "faults"}
    | {"sort", "order", "page", "per_page", "lang", "token"}
)


class QueryError(KuatError, ValueError):
    """A query parameter the table cannot use; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


@dataclass(frozen=True, slots=True)
class MinerQuery:
    states: frozenset[str] = frozenset()
    model: str = ""
    firmware: str = ""
    pool: str = ""
    text: str = ""
    sources: frozenset[str] = frozenset()
    curtailment: frozenset[str] = frozenset()
    faults_only: bool = False
    sort: str = "id"
    descending: bool = False
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    def params(self, **change: Any) -> dict[str, str]:
        """This query as URL parameters (defaults left out), with ``change`` applied: the page's
        sort, filter and page links."""
        values: dict[str, Any] = {
            "state": ",".join(sorted(self.states)),
            "model": self.model,
            "firmware": self.firmware,
            "pool": self.pool,
            "q": self.text,
            "source": ",".join(sorted(self.sources)),
            "curtailment": ",".join(sorted(self.curtailment)),
            "faults": "1" if self.faults_only else "",
            "sort": "" if self.sort == "id" else self.sort,
            "order": "desc" if self.descending else "",
            "page": "" if self.page == 1 else str(self.page),
            "per_page": "" if self.per_page == DEFAULT_PER_PAGE else str(self.per_page),
        }
        values.update(change)
        return {k: str(v) for k, v in values.items() if v not in ("", None)}


def _choices(params: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> frozenset[str]:
    raw = params.get(name, "")
    picked = frozenset(p.strip() for p in raw.split(",") if p.strip())
    wrong = sorted(picked - set(allowed))
    if wrong:
        raise QueryError(name, f"{', '.join(wrong)} is not one of {', '.join(allowed)}")
    return picked


def _int(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise QueryError(name, f"{raw!r} is not a whole number from {low} to {high}")
    return int(raw)


def parse_query(params: Mapping[str, str], *, strict: bool = True) -> MinerQuery:
    """A query from URL parameters. ``strict``: unknown parameters are refused too (the API);
    the page ignores them (a bookmarked URL of an older version still opens)."""
    if strict:
        unknown = sorted(set(params) - _PARAMS)
        if unknown:
            raise QueryError(unknown[0], f"unknown parameter; known: {', '.join(sorted(_PARAMS))}")
    sort = params.get("sort", "") or "id"
    if sort not in SORTS:
        raise QueryError("sort", f"{sort!r} is not one of {', '.join(SORTS)}")
    order = params.get("order", "") or "asc"
    if order not in ("asc", "desc"):
        raise QueryError("order", f"{order!r} is not asc or desc")
    faults = params.get("faults", "")
    if faults not in ("", "0", "1", "true", "false"):
        raise QueryError("faults", f"{faults!r} is not 1 or 0")
    return MinerQuery(
        states=_choices(params, "state", STATES),
        model=params.get("model", "").strip().lower(),
        firmware=params.get("firmware", "").strip().lower(),
        pool=params.get("pool", "").strip().lower(),
        text=params.get("q", "").strip().lower(),
        sources=_choices(params, "source", SOURCES),
        curtailment=_choices(params, "curtailment", CURTAIL_STATES),
        faults_only=faults in ("1", "true"),
        sort=sort,
        descending=order == "desc",
        page=_int(params, "page", 1, 1, 10**9),
        per_page=_int(params, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE),
    )


# --- rows -------------------------------------------------------------------------------

Key = tuple[str, int]  # (ip, port): how the site state keys its miners
Reading = AsicReading | DeviceError


@dataclass(slots=True)
class MinerRow:
    """A miner as one row of the table: built only for the rows of the page asked for."""

    id: str
    ip: str
    port: int
    state: str  # mining, sleeping, error; "down": its last poll failed
    taken_at: datetime
    reading: AsicReading | None
    power_w: float | None
    power_source: PowerSource | None
    j_per_th: float | None
    temp_max_c: float | None
    pool: str | None
    errors: tuple[str, ...]
    fault_count: int
    curtail: MinerCurtailment

    @property
    def model(self) -> str | None:
        return self.reading.model if self.reading else None

    @property
    def hashrate_ths(self) -> float | None:
        return self.reading.hashrate_ths if self.reading else None


def outlet_watts(cfg: KuatConfig, pdus: Mapping[str, PduReading | DeviceError]) -> dict[Key, float]:
    """(miner ip, port) -> watts measured at the PDU outlet feeding it, where a PDU configured
    with ``outlets`` answered with that outlet's watts. The first PDU naming a miner wins, as
    in curtailment."""
    out: dict[Key, float] = {}
    for p in cfg.pdu:
        reading = pdus.get(p.name)
        targets = p.outlet_targets()
        if not targets or not isinstance(reading, PduReading):
            continue
        watts = {o.index: o.watts for o in reading.outlets if o.watts is not None}
        for target, index in targets.items():
            if index in watts:
                out.setdefault(target, watts[index])
    return out


def _max(*groups: Iterable[float]) -> float | None:
    best: float | None = None
    for g in groups:
        for v in g:
            if best is None or v > best:
                best = v
    return best


def _j_per_th(power: float | None, rate: float | None) -> float | None:
    return round(power / rate, 1) if power is not None and rate and rate > 0 else None


def _pool(r: AsicReading) -> str | None:
    for p in r.pools:
        if p.active:
            return p.url
    return r.pools[0].url if r.pools else None


class Fleet:
    """Every miner as one request sees it: the readings, the watts measured at the outlets and
    what curtailment holds or plans. Filtering and sorting read the readings directly (no
    object per miner: at 50,000 miners that allocation alone is most of a request's cost, and
    wakes the garbage collector); rows are built for the page shown."""

    def __init__(
        self, asics: Mapping[Key, Reading], outlets: Mapping[Key, float], curtail: CurtailmentView
    ) -> None:
        self.asics = asics
        self.outlets = outlets
        self.curtail = curtail
        self._touched = curtail.touched()

    def power(self, key: Key, r: Reading) -> tuple[float | None, PowerSource | None]:
        """Measured at the outlet, else the miner's own report, else rated (mining only)."""
        if isinstance(r, DeviceError):
            return None, None
        measured = self.outlets.get(key)
        if measured is not None:
            return measured, "outlet"
        if r.power_w is not None:
            return r.power_w, "miner"
        rated = estimated_power_w(r.model, r.hashrate_ths) if r.state == "mining" else None
        return (rated, "rated") if rated is not None else (None, None)

    def curtailment(self, key: Key, r: Reading) -> MinerCurtailment:
        state = _state(r)
        did = r.device_id
        address = f"{key[0]}:{key[1]}"
        if did not in self._touched and address not in self._touched:
            return ASLEEP if state == "sleeping" else RUNNING
        return self.curtail.miner(did, state, address)

    def row(self, key: Key, r: Reading) -> MinerRow:
        ip, port = key
        power, source = self.power(key, r)
        curtail = self.curtailment(key, r)
        if isinstance(r, DeviceError):
            return MinerRow(
                r.device_id, ip, port, "down", r.taken_at, None, None, None, None, None, None,
                (r.cause,), 1, curtail,
            )  # fmt: skip
        return MinerRow(
            r.device_id,
            ip,
            port,
            r.state,
            r.taken_at,
            r,
            power,
            source,
            _j_per_th(power, r.hashrate_ths),
            _max(r.temps_c.board, r.temps_c.chip),
            _pool(r),
            r.errors,
            len(r.errors) + len(r.faults),
            curtail,
        )


def _state(r: Reading) -> str:
    return "down" if isinstance(r, DeviceError) else r.state


def _asic(r: Reading) -> AsicReading | None:
    return None if isinstance(r, DeviceError) else r


def _faults(r: Reading) -> int:
    return 1 if isinstance(r, DeviceError) else len(r.errors) + len(r.faults)


def _text(key: Key, r: Reading) -> str:
    """What ``q`` searches: id, address, model, firmware, pool; lower case."""
    a = _asic(r)
    parts = [r.device_id, f"{key[0]}:{key[1]}"]
    if a is not None:
        parts += [a.model or "", a.firmware_family or "", a.firmware or "", _pool(a) or ""]
    return " ".join(parts).lower()


Value = Callable[[Fleet, Key, Reading], Any]
# What each sort orders by (None: unknown, listed last in either order).
_SORT_KEY: dict[str, Value] = {
    "id": lambda f, k, r: r.device_id,
    "ip": lambda f, k, r: k,
    "state": lambda f, k, r: _state(r),
    "model": lambda f, k, r: None if isinstance(r, DeviceError) else r.model,
    "firmware": lambda f, k, r: None if isinstance(r, DeviceError) else r.firmware_family,
    "hashrate": lambda f, k, r: None if isinstance(r, DeviceError) else r.hashrate_ths,
    "power": lambda f, k, r: f.power(k, r)[0],
    "efficiency": lambda f, k, r: _j_per_th(f.power(k, r)[0], getattr(r, "hashrate_ths", None)),
    "temp": lambda f, k, r: None if isinstance(r, DeviceError) else _max(*_temps(r)),
    "pool": lambda f, k, r: None if isinstance(r, DeviceError) else _pool(r),
    "faults": lambda f, k, r: _faults(r),
    "curtailment": lambda f, k, r: f.curtailment(k, r).state,
}


def _temps(r: AsicReading) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return r.temps_c.board, r.temps_c.chip


def _matches(f: Fleet, key: Key, r: Reading, q: MinerQuery) -> bool:
    a = _asic(r)
    if q.states and _state(r) not in q.states:
        return False
    if q.model and (a is None or q.model not in (a.model or "").lower()):
        return False
    if q.firmware and (
        a is None or q.firmware not in f"{a.firmware_family or ''} {a.firmware or ''}".lower()
    ):
        return False
    if q.pool and (a is None or q.pool not in (_pool(a) or "").lower()):
        return False
    if q.text and q.text not in _text(key, r):
        return False
    if q.sources and (f.power(key, r)[1] or "none") not in q.sources:
        return False
    if q.curtailment and f.curtailment(key, r).state not in q.curtailment:
        return False
    return not (q.faults_only and not _faults(r))


@dataclass(frozen=True, slots=True)
class MinerPage:
    total: int  # every miner the agent knows
    matched: int  # those the filters keep
    query: MinerQuery
    rows: list[MinerRow]

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.matched / self.query.per_page))


def select(fleet: Fleet, q: MinerQuery) -> MinerPage:
    """Filter, sort (unknown values last in either order; ties by id) and cut one page."""
    asics = fleet.asics
    keys = list(asics)
    if _filters(q):
        keys = [k for k in keys if _matches(fleet, k, asics[k], q)]
    keys.sort(key=lambda k: asics[k].device_id)
    if q.sort != "id" or q.descending:
        fn = _SORT_KEY[q.sort]
        values = {k: fn(fleet, k, asics[k]) for k in keys}
        known = [k for k in keys if values[k] is not None]
        # stable in both orders: equal values stay in id order
        known.sort(key=values.__getitem__, reverse=q.descending)
        keys = known + [k for k in keys if values[k] is None] if len(known) < len(keys) else known
    start = (q.page - 1) * q.per_page
    rows = [fleet.row(k, asics[k]) for k in keys[start : start + q.per_page]]
    return MinerPage(len(asics), len(keys), q, rows)


def _filters(q: MinerQuery) -> bool:
    return bool(
        q.states or q.model or q.firmware or q.pool or q.text or q.sources or q.curtailment
    ) or (q.faults_only)


# --- JSON -------------------------------------------------------------------------------


def row_json(row: MinerRow, lang: Lang) -> dict[str, Any]:
    r = row.reading
    c = row.curtail
    return {
        "id": row.id,
        "ip": row.ip,
        "port": row.port,
        "state": row.state,
        "taken_at": iso_utc(row.taken_at),
        "vendor": r.vendor if r else None,
        "model": r.model if r else None,
        "firmware_family": r.firmware_family if r else None,
        "firmware": r.firmware if r else None,
        "hashrate_ths": r.hashrate_ths if r else None,
        "hashrate_nominal_ths": r.hashrate_nominal_ths if r else None,
        "power_w": None if row.power_w is None else round(row.power_w, 1),
        "power_source": row.power_source,
        "miner_power_w": r.power_w if r is not None else None,
        "j_per_th": row.j_per_th,
        "temp_max_c": row.temp_max_c,
        "temps_c": None
        if r is None
        else {
            "board": list(r.temps_c.board),
            "chip": list(r.temps_c.chip),
            "inlet": list(r.temps_c.inlet),
        },
        "pool": row.pool,
        "errors": list(row.errors),
        "faults": []
        if r is None
        else [{"code": f.code, "text": f.text, "severity": f.severity} for f in r.faults],
        "curtailment": {
            "state": c.state,
            "by_kuat": c.by_kuat,
            "since": iso_utc(c.since),
            "limit_w": c.limit_w,
            "planned": None if c.planned is None else action_json(c.planned, lang),
        },
    }


def page_json(page: MinerPage, lang: Lang) -> dict[str, Any]:
    q = page.query
    return {
        "total": page.total,
        "matched": page.matched,
        "page": q.page,
        "per_page": q.per_page,
        "pages": page.pages,
        "sort": q.sort,
        "order": "desc" if q.descending else "asc",
        "miners": [row_json(r, lang) for r in page.rows],
    }
