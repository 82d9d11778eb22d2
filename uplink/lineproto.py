"""InfluxDB line protocol, hand-written for the hot path (50,000 miners per cycle).

The schema (measurements, tags, fields, types) is documented in ``uplink/SCHEMA.md``; keep the
two in step. Rules that matter to whoever reads the data:

* Timestamps are nanoseconds from each reading's ``taken_at``: a batch that is replayed after an
  outage overwrites the same points in InfluxDB instead of adding new ones.
* ``None`` fields are omitted (unknown is not 0); non-finite floats are omitted too (InfluxDB
  rejects them). A point with no fields left produces no line at all.
* A field keeps one type forever (InfluxDB rejects a batch with a type conflict), so the
  encoders below coerce: floats are written as floats even when a device sent an int.
* Every measurement always carries its whole tag set, ``unknown`` standing for a value the
  device did not tell: InfluxDB 3 fixes a table's tag columns at its first write and refuses
  lines that add one later.
* Tags are low-cardinality identities only. IP addresses, names and error texts are not
  written (VictoriaMetrics turns string fields into zero-valued series); they live in the
  register inventory.
* Escaping: commas, spaces, ``=`` and backslashes are backslash-escaped in identifiers;
  ``"`` and backslashes in string field values. Line breaks and tabs are replaced with a space
  (one line is one point, everywhere). A literal backslash in a tag is written as ``\\\\``,
  which VictoriaMetrics and line-protocol v2 parsers read back as one backslash.

``encode_asic`` formats its numbers in C (``uplink/_lpaccel.c``) when that optional extension
was built at install time; ``_encode_asic_pure`` is the reference it must match byte for byte,
the fallback, and what ``KUAT_PURE_LINEPROTO=1`` selects. No string ever goes through the C code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from types import ModuleType

from kuat.collectors.readings import (
    AsicReading,
    DeviceError,
    MeterReading,
    PduReading,
    PollResult,
    PoolInfo,
)

_lpaccel: ModuleType | None
try:
    from kuat.uplink import _lpaccel
except ImportError:  # no C compiler at install time: the pure-Python path, same output
    _lpaccel = None

__all__ = [
    "ACCELERATED",
    "ASIC_STATE_CODES",
    "FieldValue",
    "encode",
    "encode_asic",
    "encode_device_error",
    "encode_meter",
    "encode_pdu",
    "encode_point",
    "escape_key",
    "escape_measurement",
    "measurement_of",
    "to_ns",
    "with_tag",
]

FieldValue = float | int | bool | str

#: ``asic.state`` as a number Grafana can threshold on.
ASIC_STATE_CODES: dict[str, int] = {"mining": 1, "sleeping": 2, "error": 3}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_KEY_SPECIAL = frozenset("\\, =\n\r\t")
_MEAS_SPECIAL = frozenset("\\, \n\r\t")
# Line breaks and tabs become an (escaped) space: one line is one point, on every parser.
_KEY_TABLE = str.maketrans(
    {"\\": "\\\\", ",": "\\,", " ": "\\ ", "=": "\\=", "\n": "\\ ", "\r": "\\ ", "\t": "\\ "}
)
_MEAS_TABLE = str.maketrans(
    {"\\": "\\\\", ",": "\\,", " ": "\\ ", "\n": "\\ ", "\r": "\\ ", "\t": "\\ "}
)
_STR_TABLE = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": " ", "\r": " "})


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    # The common case has nothing to escape; skip translate's allocation for it.
    if _KEY_SPECIAL.isdisjoint(text):
        return text
    return text.translate(_KEY_TABLE)


def measurement_of(line: str) -> str:
    """The measurement of a line kuat wrote (its names hold no escaped comma or space)."""
    end = len(line)
    for sep in (",", " "):
        j = line.find(sep)
        if j != -1 and j < end:
            end = j
    return line[:end]


def with_tag(line: str, key: str, value: str) -> str:
    """``line`` with one more tag at the end of its series (the agent id of a shared site).
    The series ends at the first space that is not escaped (an odd run of backslashes)."""
    i = line.find(" ")
    while i > 0:
        j = i
        while j > 0 and line[j - 1] == "\\":
            j -= 1
        if (i - j) % 2 == 0:
            break
        i = line.find(" ", i + 1)
    if i < 0:
        return line
    return f"{line[:i]},{escape_key(key)}={escape_key(value)}{line[i:]}"


def escape_measurement(text: str) -> str:
    if _MEAS_SPECIAL.isdisjoint(text):
        return text
    return text.translate(_MEAS_TABLE)


def to_ns(when: datetime) -> int:
    """Exact integer nanoseconds since the epoch (naive times are taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - _EPOCH
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1_000


def _format_value(value: FieldValue) -> str | None:
    # bool before int: bool is an int subclass.
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return '"' + value.translate(_STR_TABLE) + '"'
    raise TypeError(f"unsupported field value type {type(value).__name__}")


def _fields(fields: Mapping[str, FieldValue | None]) -> str:
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        text = _format_value(value)
        if text is not None:
            parts.append(f"{escape_key(key)}={text}")
    return ",".join(parts)


#: The value of a tag the device did not tell (a model not reported, say).
UNKNOWN_TAG = "unknown"


def _tags(tags: Mapping[str, str | None]) -> str:
    # Sorted by key: InfluxDB's preferred order, and stable series keys for caching. Every tag
    # is always written: InfluxDB 3 fixes a table's tag columns at its first write and refuses
    # a later line that brings a new tag, so a tag must never appear only "sometimes".
    return "".join(
        f",{escape_key(k)}={escape_key(v or UNKNOWN_TAG)}" for k, v in sorted(tags.items())
    )


def encode_point(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, FieldValue | None],
    time: datetime,
) -> str | None:
    """One line for a point of any measurement (``quota``, ``compliance``, ``agent``…).

    Empty or ``None`` tags are written as ``unknown`` (see ``_tags``). Returns ``None`` when no
    field has a value. Field types follow the Python type (``int`` → ``i`` integer, ``float``,
    ``bool``, ``str``), so the producer must keep each field's type stable — write ``float(x)``
    where x may be whole.
    """
    body = _fields(fields)
    if not body:
        return None
    return f"{escape_measurement(measurement)}{_tags(tags)} {body} {to_ns(time)}"


def _f(value: float | None) -> float | None:
    return None if value is None else float(value)


def _max(values: tuple[float, ...]) -> float | None:
    return float(max(values)) if values else None


def _series_text(measurement: str, tags: tuple[tuple[str, str | None], ...]) -> str:
    return escape_measurement(measurement) + _tags(dict(tags))


# Identities repeat every cycle; caching the escaped prefix keeps encoding cheap.
_series = lru_cache(maxsize=65_536)(_series_text)


def _asic_prefix(
    site: str, device: str, vendor: str | None, model: str | None, family: str | None
) -> str:
    # "device" sorts first of the tags (_tags), so the prefix is the device's tag before the
    # rest, and the rest is shared by every miner of a model: one cached string per model,
    # not per miner (a per-miner cache of these prefixes held ~0.4 KB a miner, 20 MB at
    # 50,000 miners, for an escape check that costs less than a microsecond)
    return (
        f"asic,device={escape_key(device or UNKNOWN_TAG)}{_asic_rest(site, vendor, model, family)}"
    )


@lru_cache(maxsize=4096)
def _asic_rest(site: str, vendor: str | None, model: str | None, family: str | None) -> str:
    return _tags({"site": site, "vendor": vendor, "model": model, "firmware_family": family})


_isfinite = math.isfinite
_state_code = ASIC_STATE_CODES.get


def _pool_ok(pools: tuple[PoolInfo, ...]) -> int | None:
    # AsicReading.active_pool's generator, unrolled: this runs for every miner every cycle.
    for p in pools:
        if p.active:
            return 1 if (p.status or "").strip().lower() == "alive" else 0
    return 0 if pools else None


def _encode_asic_pure(r: AsicReading, site: str) -> list[str]:
    # The reference encoder, and the fallback when the C accelerator is missing or declines an
    # input. The field set is fixed, so it is written out field by field with pre-escaped keys
    # instead of going through the generic dict path (bench/uplink.py measures the difference
    # against influxdb-client's Point). tests/uplink/test_lineproto_accel.py holds the C path
    # to this one byte for byte: change both together.
    parts: list[str] = []
    add = parts.append
    v: float | int | None = r.hashrate_ths
    if v is not None and _isfinite(v):
        add(f"hashrate_ths={float(v)!r}")
    v = r.hashrate_nominal_ths
    if v is not None and _isfinite(v):
        add(f"hashrate_nominal_ths={float(v)!r}")
    v = r.power_w
    if v is not None and _isfinite(v):
        add(f"power_w={float(v)!r}")
    v = r.power_limit_w
    if v is not None and _isfinite(v):
        add(f"power_limit_w={float(v)!r}")
    temps = r.temps_c
    if temps.board and _isfinite(t := max(temps.board)):
        add(f"temp_board_max_c={float(t)!r}")
    if temps.chip and _isfinite(t := max(temps.chip)):
        add(f"temp_chip_max_c={float(t)!r}")
    if temps.inlet and _isfinite(t := max(temps.inlet)):
        add(f"temp_inlet_max_c={float(t)!r}")
    if r.fans_rpm:
        add(f"fan_min_rpm={int(min(r.fans_rpm))}i")
    if r.uptime_s is not None:
        add(f"uptime_s={int(r.uptime_s)}i")
    state = _state_code(r.state)
    if state is not None:
        add(f"state_code={state}i")
    pool_ok = _pool_ok(r.pools)
    if pool_ok is not None:
        add(f"pool_ok={pool_ok}i")
    add(f"error_count={len(r.errors)}i")
    tail = _asic_tail(r)
    if tail:
        add(tail)
    prefix = _asic_prefix(site, r.device_id, r.vendor, r.model, r.firmware_family)
    return [f"{prefix} {','.join(parts)} {to_ns(r.taken_at)}"]


def _asic_tail(r: AsicReading) -> str:
    """The fields after ``error_count``, most miners have none: the coolant temperatures of
    hydro/immersion models and the count of firmware error codes. Written here for both paths
    (the C accelerator stops at ``error_count``), so the bytes stay the same."""
    cin, cout, faults = r.coolant_in_c, r.coolant_out_c, r.faults
    if cin is None and cout is None and not faults:
        return ""
    out = []
    if cin is not None and _isfinite(cin):
        out.append(f"coolant_in_c={float(cin)!r}")
    if cout is not None and _isfinite(cout):
        out.append(f"coolant_out_c={float(cout)!r}")
    if faults:
        out.append(f"fault_count={len(faults)}i")
    return ",".join(out)


def _encode_asic_accel(r: AsicReading, site: str) -> list[str]:
    # The numbers go to C; everything that is a string (escaped identities, pool status) and
    # the timestamp stay here. Python attribute reads are cheaper than the C API's generic
    # getattr, so the fields are passed as arguments rather than the reading itself.
    try:
        t = r.temps_c
        fields = _asic_fields(  # type: ignore[misc]
            r.hashrate_ths,
            r.hashrate_nominal_ths,
            r.power_w,
            r.power_limit_w,
            t.board,
            t.chip,
            t.inlet,
            r.fans_rpm,
            r.uptime_s,
            _state_code(r.state),
            _pool_ok(r.pools),
            r.errors,
        )
    except Exception:
        # The accelerator raises TypeError for anything but plain numbers (and errors here are
        # as varied as the inputs): the reference path then writes the line, or raises exactly
        # the error it always raised.
        return _encode_asic_pure(r, site)
    tail = _asic_tail(r)
    if tail:
        fields = f"{fields},{tail}"
    prefix = _asic_prefix(site, r.device_id, r.vendor, r.model, r.firmware_family)
    return [f"{prefix} {fields} {to_ns(r.taken_at)}"]


#: Whether encode_asic uses the C accelerator (``uplink/_lpaccel.c``). It is optional: built
#: when a C compiler is there at install time; ``KUAT_PURE_LINEPROTO=1`` turns it off (tests,
#: debugging). Both paths write the same bytes.
ACCELERATED = _lpaccel is not None and os.environ.get("KUAT_PURE_LINEPROTO", "") in ("", "0")
_asic_fields = None if _lpaccel is None else _lpaccel.asic_fields
encode_asic = _encode_asic_accel if ACCELERATED else _encode_asic_pure


def encode_pdu(r: PduReading, site: str) -> list[str]:
    ts = to_ns(r.taken_at)
    ident = (("site", site), ("device", r.device_id), ("vendor", r.vendor), ("model", r.model))
    lines: list[str] = []

    def add(
        measurement: str,
        extra: tuple[tuple[str, str | None], ...],
        fields: dict[str, FieldValue | None],
    ) -> None:
        body = _fields(fields)
        if body:
            lines.append(f"{_series(measurement, ident + extra)} {body} {ts}")

    add("pdu", (), {"total_w": _f(r.total_watts)})
    for i in r.inlets:
        add(
            "pdu_inlet",
            (("inlet", i.id), ("phase", i.phase)),
            {
                "volts": _f(i.volts),
                "amps": _f(i.amps),
                "watts": _f(i.watts),
                "kwh": _f(i.kwh),
                "pf": _f(i.pf),
            },
        )
    for p in r.phases:
        add(
            "pdu_phase",
            (("phase", p.id),),
            {"volts": _f(p.volts), "amps": _f(p.amps), "watts": _f(p.watts)},
        )
    for b in r.breakers:
        add("pdu_breaker", (("breaker", b.id),), {"amps": _f(b.amps)})
    for o in r.outlets:
        add(
            "pdu_outlet",
            (("outlet", str(o.index)),),
            {
                "amps": _f(o.amps),
                "watts": _f(o.watts),
                "kwh": _f(o.kwh),
                "on": None if o.state is None else int(o.state == "on"),
            },
        )
    return lines


_PHASES = ("l1", "l2", "l3")
_PAIRS = ("l12", "l23", "l31")


def encode_meter(r: MeterReading, site: str) -> list[str]:
    fields: dict[str, float | None] = {"p_kw": _f(r.p_kw)}
    for name, value in zip(_PHASES, r.p_kw_phases, strict=False):
        fields[f"p_kw_{name}"] = _f(value)
    fields["q_kvar"] = _f(r.q_kvar)
    fields["s_kva"] = _f(r.s_kva)
    for name, value in zip(_PHASES, r.v_ln, strict=False):
        fields[f"v_ln_{name}"] = _f(value)
    for name, value in zip(_PAIRS, r.v_ll, strict=False):
        fields[f"v_ll_{name}"] = _f(value)
    for name, value in zip(_PHASES, r.i_a, strict=False):
        fields[f"i_a_{name}"] = _f(value)
    fields.update(
        pf=_f(r.pf),
        f_hz=_f(r.f_hz),
        import_kwh=_f(r.import_kwh),
        export_kwh=_f(r.export_kwh),
        demand_kw=_f(r.demand_kw),
    )
    body = _fields(fields)
    if not body:
        return []
    prefix = _series("meter", (("site", site), ("device", r.device_id), ("profile", r.profile)))
    return [f"{prefix} {body} {to_ns(r.taken_at)}"]


def encode_device_error(e: DeviceError, site: str) -> list[str]:
    """A failed poll → ``agent,site,kind,device device_up=0i``.

    The device tag is the poll endpoint (host:port), the only identity a failed poll has.
    There is no ``device_up=1`` line for successes: a device's own points are the up signal.
    """
    prefix = _series("agent", (("site", site), ("kind", str(e.kind)), ("device", e.device_id)))
    return [f"{prefix} device_up=0i {to_ns(e.taken_at)}"]


def encode(results: Iterable[PollResult], site: str) -> list[str]:
    """Line protocol for a cycle's poll results (any mix of readings and errors)."""
    lines: list[str] = []
    for r in results:
        if isinstance(r, AsicReading):
            lines.extend(encode_asic(r, site))
        elif isinstance(r, PduReading):
            lines.extend(encode_pdu(r, site))
        elif isinstance(r, MeterReading):
            lines.extend(encode_meter(r, site))
        elif isinstance(r, DeviceError):
            lines.extend(encode_device_error(r, site))
        else:
            raise TypeError(f"not a poll result: {type(r).__name__}")
    return lines
