"""Hourly allocations (what KOREM sold the farm for each hour of a day) and the book holding them.

A schedule is 24 energy volumes in MWh, one per hour-ending hour 1..24 of an Astana operating
day (always 24: Kazakhstan keeps no daylight saving), for one site, one date and one energy
source. It arrives as text — a file the operator drops in, or an HTTP body — so parsing is
strict and collects *every* problem before refusing: an operator fixing a file wants the whole
list at once, not one error per retry.

CSV format
----------
One row per hour; ``hour`` and ``mwh`` are required columns, ``date`` is required either as a
column or as a caller default; ``site``, ``source``, ``version`` and ``description`` are optional
columns (caller defaults apply) and must be the same on every row. Lines starting with ``#`` and
blank lines are ignored. The separator is ``,`` or, as in Russian-locale spreadsheet exports,
``;`` — in which case a decimal comma is accepted in ``mwh``::

    # KOREM register of winners, session of 2026-11-24
    site,date,source,version,hour,mwh
    almaty-1,2026-11-25,grid,3,1,12.5
    almaty-1,2026-11-25,grid,3,2,12.5
    ...
    almaty-1,2026-11-25,grid,3,24,11.0

JSON format
-----------
An object with ``date`` (ISO), optional ``site``, ``source``, ``version``, ``description``, and the
volumes either as ``mwh``, a list of exactly 24 numbers (hour-ending 1 first), or as ``hours``, a
list of ``{"hour": n, "mwh": x}`` objects::

    {"site": "almaty-1", "date": "2026-11-25", "source": "grid", "version": 3,
     "description": "KOREM register 2026-11-24",
     "hours": [{"hour": 1, "mwh": 12.5}, {"hour": 2, "mwh": 12.5}, ..., {"hour": 24, "mwh": 11.0}]}

``source`` is one of ``grid`` (bought on KOREM), ``own_ongrid``, ``own_offgrid`` (own
generation, on or off the unified power system) or ``bilateral`` (a direct contract); they are
accounted separately because the digital-mining fee per kWh depends on the source.

Plausibility: a value above ``max_mwh_per_hour`` (default 1000 MWh, far beyond any Kazakh farm)
is refused; pass the site's permitted capacity in MW as the cap for a tight check — an hour's
energy cannot exceed the power the connection allows for an hour. This is what catches a kWh
file sent in an MWh column.
"""

from __future__ import annotations

import csv
import datetime
import enum
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from kuat.collectors.errors import KuatError
from kuat.quota.reasons import Code, Reason
from kuat.quota.reasons import show_value as _show

HOURS = 24
DEFAULT_MAX_MWH_PER_HOUR = 1000.0


class EnergySource(enum.StrEnum):
    GRID = "grid"
    OWN_ONGRID = "own_ongrid"
    OWN_OFFGRID = "own_offgrid"
    BILATERAL = "bilateral"


class ScheduleError(KuatError, ValueError):
    """A schedule refused, with every reason found (not just the first)."""

    def __init__(self, reasons: list[Reason]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(f"{r.code}{dict(r.params)}" for r in reasons))


@dataclass(frozen=True, slots=True)
class HourlyAllocation:
    site: str
    date: date
    mwh: tuple[float, ...]  # index 0 is hour-ending 1
    source: EnergySource = EnergySource.GRID
    version: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        # Built directly (not parsed) allocations still must be well formed.
        if len(self.mwh) != HOURS:
            raise ValueError(f"an allocation has {HOURS} hours, got {len(self.mwh)}")

    def kwh(self, hour_ending: int) -> float:
        return self.mwh[hour_ending - 1] * 1000.0

    @property
    def total_mwh(self) -> float:
        return math.fsum(self.mwh)

    @property
    def key(self) -> tuple[str, datetime.date, EnergySource]:  # `date` is the field here
        return (self.site, self.date, self.source)


# --- parsing ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Raw:
    """What a text said, before validation; field values are still text or JSON values."""

    fields: dict[str, list[Any]]  # site/date/source/version/description -> every value seen
    hours: list[tuple[Any, Any, str]]  # (hour, mwh, where) in file order
    # False when the volumes could not even be located: counting hours would only add noise.
    volumes_found: bool = True


def _check(
    raw: _Raw,
    reasons: list[Reason],
    *,
    site: str | None,
    day: date | None,
    source: EnergySource | str | None,
    version: int | None,
    description: str,
    max_mwh_per_hour: float,
    decimal_comma: bool = False,
) -> HourlyAllocation:
    def one(name: str, default: Any) -> Any:
        seen = [v for v in raw.fields.get(name, []) if v not in (None, "")]
        distinct = list(dict.fromkeys(_show(v) for v in seen))
        if len(distinct) > 1:
            reasons.append(Reason.of(Code.SCHEDULE_INCONSISTENT_FIELD, field=name, values=distinct))
            return None
        return seen[0] if seen else default

    site_v = one("site", site)
    if site_v is None and not any(r.params.get("field") == "site" for r in reasons):
        reasons.append(Reason.of(Code.SCHEDULE_MISSING_FIELD, field="site"))

    date_v: date | None = None
    date_in = one("date", day)
    if isinstance(date_in, date):
        date_v = date_in
    elif date_in is None:
        if not any(r.params.get("field") == "date" for r in reasons):
            reasons.append(Reason.of(Code.SCHEDULE_MISSING_FIELD, field="date"))
    else:
        try:
            date_v = date.fromisoformat(_show(date_in).strip())
        except ValueError:
            reasons.append(Reason.of(Code.SCHEDULE_BAD_DATE, value=_show(date_in)))

    source_v: EnergySource | None = None
    source_in = one("source", source if source is not None else EnergySource.GRID)
    if source_in is not None:
        try:
            source_v = EnergySource(_show(source_in).strip().lower())
        except ValueError:
            reasons.append(
                Reason.of(
                    Code.SCHEDULE_BAD_SOURCE,
                    value=_show(source_in),
                    allowed=[s.value for s in EnergySource],
                )
            )

    version_v: int | None = None
    version_in = one("version", version if version is not None else 1)
    if version_in is not None:
        # bool is an int in Python; a "version": true is a mistake, not version 1.
        if isinstance(version_in, (bool, float)):
            version_in = str(version_in)
        text = _show(version_in).strip()
        # ASCII digits only, and not 5,000 of them: int() accepts "²" and refuses long ones
        # with a ValueError of its own; a version is a small counter.
        if text.isascii() and text.isdigit() and len(text) <= 9:
            version_v = int(text)
        else:
            reasons.append(Reason.of(Code.SCHEDULE_BAD_VERSION, value=text))
            version_v = None

    desc_v = one("description", description) or description

    values: dict[int, float] = {}
    duplicates: list[int] = []
    for hour_in, mwh_in, where in raw.hours:
        hour = _as_hour(hour_in)
        if hour is None:
            reasons.append(
                Reason.of(Code.SCHEDULE_HOUR_OUT_OF_RANGE, value=_show(hour_in), at=where)
            )
            continue
        if hour in values:
            if hour not in duplicates:
                duplicates.append(hour)
            continue
        value = _as_number(mwh_in, decimal_comma)
        if value is None:
            reasons.append(
                Reason.of(Code.SCHEDULE_VALUE_NOT_NUMERIC, hour=hour, value=_show(mwh_in), at=where)
            )
            values[hour] = math.nan
            continue
        if value < 0:
            reasons.append(Reason.of(Code.SCHEDULE_VALUE_NEGATIVE, hour=hour, mwh=value))
        elif value > max_mwh_per_hour:
            reasons.append(
                Reason.of(
                    Code.SCHEDULE_VALUE_TOO_LARGE, hour=hour, mwh=value, cap_mwh=max_mwh_per_hour
                )
            )
        values[hour] = value
    for hour in duplicates:
        reasons.append(Reason.of(Code.SCHEDULE_HOUR_DUPLICATE, hour=hour))
    if raw.volumes_found and len(raw.hours) != HOURS:
        reasons.append(Reason.of(Code.SCHEDULE_HOURS_COUNT, got=len(raw.hours), expected=HOURS))
    missing = [h for h in range(1, HOURS + 1) if h not in values]
    if missing and raw.volumes_found:
        reasons.append(Reason.of(Code.SCHEDULE_HOUR_MISSING, hours=missing))

    if reasons:
        raise ScheduleError(reasons)
    assert site_v is not None and date_v is not None
    assert source_v is not None and version_v is not None
    return HourlyAllocation(
        site=str(site_v).strip(),
        date=date_v,
        mwh=tuple(values[h] for h in range(1, HOURS + 1)),
        source=source_v,
        version=version_v,
        description=str(desc_v),
    )


def _as_hour(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        value = value.strip()
        # "²" is a digit to str.isdigit but not to int(); "0001" is fine, 5,000 digits are not.
        if not (value.isascii() and value.isdigit() and len(value) <= 4):
            return None
        value = int(value)
    if isinstance(value, int) and 1 <= value <= HOURS:
        return value
    return None


def _as_number(value: Any, decimal_comma: bool) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # a JSON integer of 400 digits
            return None
    elif isinstance(value, str):
        text = value.strip().replace("\u00a0", "").replace(" ", "")
        if decimal_comma:
            text = text.replace(",", ".")
        try:
            number = float(text)
        except ValueError:
            return None
    else:
        return None
    # "nan" and "inf" parse as floats but are not energy volumes.
    return number if math.isfinite(number) else None


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, line


def parse_csv(
    text: str,
    *,
    site: str | None = None,
    day: date | None = None,
    source: EnergySource | str | None = None,
    version: int | None = None,
    description: str = "",
    max_mwh_per_hour: float = DEFAULT_MAX_MWH_PER_HOUR,
) -> HourlyAllocation:
    """Parse a CSV schedule (see the module docstring); raise :class:`ScheduleError`."""
    text = text.lstrip("\ufeff")  # Excel writes a BOM
    lines = list(_lines(text))
    reasons: list[Reason] = []
    if not lines:
        raise ScheduleError([Reason.of(Code.SCHEDULE_EMPTY)])
    header_line = lines[0][1]
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    # The reader sees only the kept lines; ``line_num`` (kept lines consumed so far) maps a
    # row back to the file's numbering even when a quoted cell spans lines.
    numbers = [n for n, _ in lines]
    rows = csv.reader(io.StringIO("\n".join(line for _, line in lines)), delimiter=delimiter)

    def at(kept: int) -> int:
        return numbers[min(max(kept, 1), len(numbers)) - 1]

    try:
        header = [h.strip().lower() for h in next(rows)]
    except csv.Error as exc:
        raise ScheduleError(
            [Reason.of(Code.SCHEDULE_BAD_CSV, line=at(rows.line_num), error=str(exc))]
        ) from None
    for column in ("hour", "mwh"):
        if column not in header:
            reasons.append(
                Reason.of(Code.SCHEDULE_MISSING_COLUMN, column=column, found=header[:20])
            )
    if reasons:
        raise ScheduleError(reasons)
    raw = _Raw(fields={}, hours=[])
    while True:
        first = rows.line_num + 1
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a cell over the csv module's 128 KB field limit
            reasons.append(Reason.of(Code.SCHEDULE_BAD_CSV, line=at(first), error=str(exc)))
            break
        number = at(first)
        if len(row) != len(header):
            reasons.append(
                Reason.of(Code.SCHEDULE_BAD_ROW, line=number, got=len(row), expected=len(header))
            )
            continue
        cells = dict(zip(header, (c.strip() for c in row), strict=True))
        for name in ("site", "date", "source", "version", "description"):
            if name in cells:
                raw.fields.setdefault(name, []).append(cells[name])
        raw.hours.append((cells["hour"], cells["mwh"], f"line {number}"))
    return _check(
        raw,
        reasons,
        site=site,
        day=day,
        source=source,
        version=version,
        description=description,
        max_mwh_per_hour=max_mwh_per_hour,
        decimal_comma=delimiter == ";",
    )


def parse_json(
    text: str,
    *,
    site: str | None = None,
    day: date | None = None,
    source: EnergySource | str | None = None,
    version: int | None = None,
    description: str = "",
    max_mwh_per_hour: float = DEFAULT_MAX_MWH_PER_HOUR,
) -> HourlyAllocation:
    """Parse a JSON schedule (see the module docstring); raise :class:`ScheduleError`."""
    duplicate_keys: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        # json.loads keeps the last of two equal keys silently; a schedule must not.
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                duplicate_keys.append(k)
            out[k] = v
        return out

    try:
        doc = json.loads(text, object_pairs_hook=pairs)
    except ValueError as exc:
        raise ScheduleError([Reason.of(Code.SCHEDULE_NOT_JSON, error=str(exc))]) from None
    except RecursionError:
        raise ScheduleError(
            [Reason.of(Code.SCHEDULE_NOT_JSON, error="nested too deeply")]
        ) from None
    if not isinstance(doc, dict):
        raise ScheduleError([Reason.of(Code.SCHEDULE_BAD_SHAPE, expected="object")])
    reasons = [
        Reason.of(Code.SCHEDULE_INCONSISTENT_FIELD, field=k, values=["duplicate key"])
        for k in dict.fromkeys(duplicate_keys)
    ]
    raw = _Raw(fields={}, hours=[])
    for name in ("site", "date", "source", "version", "description"):
        if doc.get(name) is not None:
            raw.fields[name] = [doc[name]]
    if "mwh" in doc and "hours" in doc:
        reasons.append(Reason.of(Code.SCHEDULE_BAD_SHAPE, expected="either mwh or hours"))
        raw.volumes_found = False
    elif isinstance(doc.get("mwh"), list):
        raw.hours = [(i, v, f"mwh[{i - 1}]") for i, v in enumerate(doc["mwh"], start=1)]
    elif isinstance(doc.get("hours"), list):
        for i, item in enumerate(doc["hours"]):
            if isinstance(item, dict):
                raw.hours.append((item.get("hour"), item.get("mwh"), f"hours[{i}]"))
            else:
                reasons.append(Reason.of(Code.SCHEDULE_BAD_SHAPE, expected="{hour, mwh}", at=i))
    else:
        reasons.append(Reason.of(Code.SCHEDULE_BAD_SHAPE, expected="mwh list or hours list"))
        raw.volumes_found = False
    return _check(
        raw,
        reasons,
        site=site,
        day=day,
        source=source,
        version=version,
        description=description,
        max_mwh_per_hour=max_mwh_per_hour,
    )


def parse_schedule(text: str, fmt: str, **kwargs: Any) -> HourlyAllocation:
    """``fmt`` is ``"csv"`` or ``"json"`` (a file suffix or a Content-Type's subtype)."""
    kind = fmt.lower().rsplit("/", 1)[-1].lstrip(".")
    if kind == "json":
        return parse_json(text, **kwargs)
    if kind in ("csv", "txt"):
        return parse_csv(text, **kwargs)
    raise ValueError(f"unknown schedule format {fmt!r}: use csv or json")


# --- the book ---------------------------------------------------------------------------


class BookOutcome(enum.StrEnum):
    ADDED = "added"
    REPLACED = "replaced"
    UNCHANGED = "unchanged"
    KEPT = "kept"  # an older or conflicting version was offered; the held one stays
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class BookChange:
    """What offering a schedule to the book did, for the log line naming its source."""

    outcome: BookOutcome
    site: str | None
    date: str | None  # ISO; collectors' to_jsonable converts datetimes but not dates
    source: EnergySource | None
    version: int | None
    previous_version: int | None
    description: str
    reasons: tuple[Reason, ...]

    @property
    def changed(self) -> bool:
        return self.outcome in (BookOutcome.ADDED, BookOutcome.REPLACED)


class ScheduleBook:
    """Allocations by (site, date, source). Newer versions replace; refused ones change nothing.

    Mutable on purpose (the agent keeps one across cycles) but still free of I/O: the agent
    reads files or HTTP bodies and hands the text here.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, date, EnergySource], HourlyAllocation] = {}

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[HourlyAllocation]:
        return iter(sorted(self._held.values(), key=lambda a: (a.site, a.date, a.source)))

    def add(self, alloc: HourlyAllocation) -> BookChange:
        held = self._held.get(alloc.key)

        def change(outcome: BookOutcome, *reasons: Reason) -> BookChange:
            return BookChange(
                outcome,
                alloc.site,
                alloc.date.isoformat(),
                alloc.source,
                alloc.version,
                held.version if held else None,
                alloc.description,
                reasons,
            )

        common = {"site": alloc.site, "date": alloc.date, "source": alloc.source}
        if held is None:
            self._held[alloc.key] = alloc
            return change(
                BookOutcome.ADDED, Reason.of(Code.SCHEDULE_ADDED, **common, version=alloc.version)
            )
        if alloc.version > held.version:
            self._held[alloc.key] = alloc
            return change(
                BookOutcome.REPLACED,
                Reason.of(
                    Code.SCHEDULE_REPLACED, **common, version=alloc.version, previous=held.version
                ),
            )
        if alloc.version == held.version:
            if alloc.mwh == held.mwh:
                return change(
                    BookOutcome.UNCHANGED,
                    Reason.of(Code.SCHEDULE_UNCHANGED, **common, version=alloc.version),
                )
            # Same version, other numbers: someone re-issued without bumping the version.
            # Keeping the held one is safe; the operator must see that it happened.
            return change(
                BookOutcome.KEPT,
                Reason.of(Code.SCHEDULE_VERSION_CONFLICT, **common, version=alloc.version),
            )
        return change(
            BookOutcome.KEPT,
            Reason.of(
                Code.SCHEDULE_OLDER_VERSION, **common, version=alloc.version, held=held.version
            ),
        )

    def offer(self, text: str, fmt: str, **kwargs: Any) -> BookChange:
        """Parse and add; a refused text keeps whatever was held and says why."""
        try:
            alloc = parse_schedule(text, fmt, **kwargs)
        except ScheduleError as exc:
            return BookChange(
                BookOutcome.REFUSED,
                kwargs.get("site"),
                kwargs["day"].isoformat() if kwargs.get("day") else None,
                None,
                None,
                None,
                str(kwargs.get("description", "")),
                (Reason.of(Code.SCHEDULE_REFUSED, count=len(exc.reasons)), *exc.reasons),
            )
        return self.add(alloc)

    def get(
        self, site: str, day: date, source: EnergySource = EnergySource.GRID
    ) -> HourlyAllocation | None:
        return self._held.get((site, day, EnergySource(source)))

    def sites(self) -> list[str]:
        return sorted({k[0] for k in self._held})

    def prune(self, before: date) -> int:
        """Forget days before ``before`` (the agent passes yesterday); returns how many."""
        old = [k for k in self._held if k[1] < before]
        for k in old:
            del self._held[k]
        return len(old)
