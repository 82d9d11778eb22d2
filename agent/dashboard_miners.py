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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from kuat.agent.config import KuatConfig
from kuat.agent.dashboard_curtail import CurtailmentView, MinerCurtailment, action_json
from kuat.agent.dashboard_format import iso_utc
from kuat.agent.i18n import Lang
from kuat.collectors.cgminer.models import estimated_power_w
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


class QueryError(ValueError):
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


@dataclass(slots=True)
class MinerRow:
    id: str
    ip: str
    port: int
    state: str  # mining, sleeping, error; "down": its last poll failed
    taken_at: datetime
    vendor: str | None = None
    model: str | None = None
    firmware_family: str | None = None
    firmware: str | None = None
    hashrate_ths: float | None = None
    hashrate_nominal_ths: float | None = None
    power_w: float | None = None
    power_source: PowerSource | None = None
    j_per_th: float | None = None
    temp_max_c: float | None = None
    reading: AsicReading | None = None
    pool: str | None = None
    errors: tuple[str, ...] = ()
    fault_count: int = 0
    curtail: MinerCurtailment | None = None
    haystack: str = field(default="", repr=False)  # what ``q`` searches, lower case

    def sort_value(self, key: str) -> Any:
        match key:
            case "id":
                return self.id
            case "ip":
                return (self.ip, self.port)
            case "state":
                return self.state
            case "model":
                return self.model
            case "firmware":
                return self.firmware_family
            case "hashrate":
                return self.hashrate_ths
            case "power":
                return self.power_w
            case "efficiency":
                return self.j_per_th
            case "temp":
                return self.temp_max_c
            case "pool":
                return self.pool
            case "faults":
                return self.fault_count
            case _:  # "curtailment"
                return self.curtail.state if self.curtail else None


def outlet_watts(
    cfg: KuatConfig, pdus: Mapping[str, PduReading | DeviceError]
) -> dict[tuple[str, int], float]:
    """(miner ip, port) -> watts measured at the PDU outlet feeding it, where a PDU configured
    with ``outlets`` answered with that outlet's watts. The first PDU naming a miner wins, as
    in curtailment."""
    out: dict[tuple[str, int], float] = {}
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


def _power(
    r: AsicReading, outlets: Mapping[tuple[str, int], float]
) -> tuple[float | None, PowerSource | None]:
    measured = outlets.get((r.ip, r.port))
    if measured is not None:
        return measured, "outlet"
    if r.power_w is not None:
        return r.power_w, "miner"
    rated = estimated_power_w(r.model, r.hashrate_ths) if r.state == "mining" else None
    return (rated, "rated") if rated is not None else (None, None)


def _max(*groups: Iterable[float]) -> float | None:
    best: float | None = None
    for g in groups:
        for v in g:
            if best is None or v > best:
                best = v
    return best


def build_rows(
    asics: Mapping[tuple[str, int], AsicReading | DeviceError],
    outlets: Mapping[tuple[str, int], float],
    curtail: CurtailmentView,
) -> list[MinerRow]:
    rows: list[MinerRow] = []
    for (ip, port), r in asics.items():
        if isinstance(r, DeviceError):
            did = f"{ip}:{port}"
            rows.append(
                MinerRow(
                    did,
                    ip,
                    port,
                    "down",
                    r.taken_at,
                    errors=(r.cause,),
                    fault_count=1,
                    curtail=curtail.miner(did, "down"),
                    haystack=did.lower(),
                )
            )
            continue
        power, source = _power(r, outlets)
        rate = r.hashrate_ths
        pool = r.active_pool or (r.pools[0] if r.pools else None)
        pool_url = pool.url if pool is not None else None
        did = r.device_id
        rows.append(
            MinerRow(
                did,
                ip,
                port,
                r.state,
                r.taken_at,
                r.vendor,
                r.model,
                r.firmware_family,
                r.firmware,
                rate,
                r.hashrate_nominal_ths,
                power,
                source,
                round(power / rate, 1) if power is not None and rate and rate > 0 else None,
                _max(r.temps_c.board, r.temps_c.chip),
                r,
                pool_url,
                r.errors,
                len(r.errors) + len(r.faults),
                curtail.miner(did, r.state, f"{ip}:{port}"),
                " ".join(
                    x for x in (did, ip, r.model, r.firmware_family, r.firmware, pool_url) if x
                ).lower(),
            )
        )
    return rows


def _matches(row: MinerRow, q: MinerQuery) -> bool:
    if q.states and row.state not in q.states:
        return False
    if q.model and q.model not in (row.model or "").lower():
        return False
    if q.firmware and q.firmware not in f"{row.firmware_family or ''} {row.firmware or ''}".lower():
        return False
    if q.pool and q.pool not in (row.pool or "").lower():
        return False
    if q.text and q.text not in row.haystack:
        return False
    if q.sources and (row.power_source or "none") not in q.sources:
        return False
    if q.curtailment and (row.curtail.state if row.curtail else "running") not in q.curtailment:
        return False
    return not (q.faults_only and not row.fault_count)


@dataclass(frozen=True, slots=True)
class MinerPage:
    total: int  # every miner the agent knows
    matched: int  # those the filters keep
    query: MinerQuery
    rows: list[MinerRow]

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.matched / self.query.per_page))


def select(rows: list[MinerRow], q: MinerQuery) -> MinerPage:
    """Filter, sort (unknown values last in either order; ties by id) and cut one page."""
    kept = [r for r in rows if _matches(r, q)] if _filters(q) else list(rows)
    kept.sort(key=lambda r: r.id)
    if q.sort != "id" or q.descending:
        keyed = [(r.sort_value(q.sort), r) for r in kept]
        known = [pair for pair in keyed if pair[0] is not None]
        # stable in both orders: equal values stay in id order
        known.sort(key=lambda pair: pair[0], reverse=q.descending)
        kept = [r for _, r in known] + [r for v, r in keyed if v is None]
    start = (q.page - 1) * q.per_page
    return MinerPage(len(rows), len(kept), q, kept[start : start + q.per_page])


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
        "vendor": row.vendor,
        "model": row.model,
        "firmware_family": row.firmware_family,
        "firmware": row.firmware,
        "hashrate_ths": row.hashrate_ths,
        "hashrate_nominal_ths": row.hashrate_nominal_ths,
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
        "curtailment": None
        if c is None
        else {
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
