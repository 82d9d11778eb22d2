"""Bitmain stock firmware (bmminer / cgminer 4.x) and plain cgminer.

The stock API gives no serial, MAC or watts (those live in the web UI); stats carries chain
temperatures as "a-b-c-d" strings, one number per sensor.

Sleep (work mode 1, set through the web UI) has no flag on the API either, so ``state`` is
"sleeping" when stats echoes a work mode of 1 (``miner-mode``/``bitmain-work-mode``, on the
builds that do), or when the miner hashes 0 with every reported fan at 0 rpm: a sleeping box
stops its fans, while one that is starting, faulted or overheating keeps them turning, and that
must stay "error". Without that evidence the engine's own rule applies.
"""

from __future__ import annotations

from typing import Any

from kuat.collectors.cgminer.firmware.common import (
    Body,
    FirmwareSpec,
    Source,
    first_num,
    integer,
    item,
    merged,
    num,
    pools,
    positive,
    text,
)

_HASH_KEYS = (("GHS 5s", 1e-3), ("GHS av", 1e-3), ("MHS 5s", 1e-6), ("MHS av", 1e-6))
_RATE_UNIT = {"H": 1e-12, "KH": 1e-9, "MH": 1e-6, "GH": 1e-3, "TH": 1.0}


def _hashrate(summary: Body | None, stats: Body | None) -> float | None:
    for d in (item(summary, "SUMMARY"), _stats(stats).flat):
        if d:
            for key, scale in _HASH_KEYS:
                v = num(d.get(key))
                if v is not None:
                    return v * scale
    return None


def _nominal(stats: Body | None) -> float | None:
    d = _stats(stats).flat
    ideal = num(d.get("total_rateideal"))
    if ideal is None or ideal <= 0:
        return None
    return ideal * _RATE_UNIT.get(str(d.get("rate_unit", "GH")).upper(), 1e-3)


def _header(version: Body | None, stats: Body | None) -> dict[str, Any]:
    return item(version, "VERSION") or item(stats, "STATS") or {}


def _model(version: Body | None, stats: Body | None) -> str | None:
    return text(_header(version, stats).get("Type"))


def _firmware(version: Body | None, stats: Body | None) -> str | None:
    h = _header(version, stats)
    # the stock web UI shows the build time as "firmware version"
    return text(h.get("CompileTime")) or text(h.get("Miner"))


class _StatsView:
    """bmminer's STATS merged into one dict, with ``name<N>`` keys bucketed by name.

    Five extractors read the same stats reply; building this once per reply keeps a poll of
    ~150 keys at one pass instead of one pass per field.
    """

    __slots__ = ("flat", "indexed")

    def __init__(self, stats: Body | None) -> None:
        self.flat = merged(stats, "STATS")
        self.indexed: dict[str, list[tuple[int, Any]]] = {}
        for k, v in self.flat.items():
            # only temp*/fan* keys are read by index; skip the chain_acs strings and the rest
            if k[:1] not in ("t", "f"):
                continue
            stem = k.rstrip("0123456789")
            if stem != k and stem:
                self.indexed.setdefault(stem, []).append((int(k[len(stem) :]), v))

    def numbered(self, prefix: str, count: int | None) -> list[tuple[int, Any]]:
        """``prefix1``, ``prefix2``… in index order, limited to ``count`` when the firmware says."""
        rows = self.indexed.get(prefix, ())
        return sorted((n, v) for n, v in rows if count is None or 1 <= n <= count)


# One-entry memo: build_reading runs all extractors of one poll synchronously, back to back.
_memo: tuple[Body | None, _StatsView] | None = None


def _stats(stats: Body | None) -> _StatsView:
    global _memo
    if _memo is not None and _memo[0] is stats:
        return _memo[1]
    view = _StatsView(stats)
    _memo = (stats, view)
    return view


def _sensor_max(v: Any) -> float | None:
    """'73-45-64-65' -> 73: the hottest sensor of a chain, like the firmware's own tempN."""
    if isinstance(v, str) and "-" in v.strip("-"):
        try:
            best = max(int(x) for x in v.split("-"))  # the usual all-integer case, fast
            return float(best) if best > 0 else None
        except ValueError:
            vals = positive(v.split("-"))
            return max(vals) if vals else None
    f = num(v)
    return f if f is not None and f > 0 else None


def _chain_temps(view: _StatsView, string_key: str, flat_key: str) -> tuple[float, ...]:
    rows = view.numbered(string_key, None)
    if not rows:
        rows = view.numbered(flat_key, integer(view.flat.get("temp_num")))
    return tuple(t for _, v in rows if (t := _sensor_max(v)) is not None)


def _temps(stats: Body | None) -> Any:
    from kuat.collectors.readings import AsicTemps

    view = _stats(stats)
    if not view.flat:
        return None
    board = _chain_temps(view, "temp_pcb", "temp")
    chip = _chain_temps(view, "temp_chip", "temp2_")
    return AsicTemps(board=board, chip=chip)


def _fans(stats: Body | None) -> tuple[int, ...] | None:
    view = _stats(stats)
    if not view.flat:
        return None
    count = integer(view.flat.get("fan_num"))
    rows = view.numbered("fan", count)
    if count is None:
        # without fan_num, a 0 is an empty header on the board, not a stopped fan
        rows = [(n, v) for n, v in rows if (num(v) or 0) > 0]
    return tuple(int(f) for _, v in rows if (f := num(v)) is not None and f >= 0)


def _uptime(summary: Body | None, stats: Body | None) -> int | None:
    return integer(first_num(item(summary, "SUMMARY"), "Elapsed")) or integer(
        first_num(_stats(stats).flat, "Elapsed")
    )


_MODE_KEYS = ("miner-mode", "bitmain-work-mode")


def _state(summary: Body | None, stats: Body | None) -> str | None:
    flat = _stats(stats).flat
    for key in _MODE_KEYS:
        if integer(flat.get(key)) == 1:
            return "sleeping"
    fans = _fans(stats)
    if _hashrate(summary, stats) == 0 and fans and not any(fans):
        return "sleeping"
    return None  # no sleep evidence: mining/error is decided from hashrate by the engine


FIELDS: dict[str, Source] = {
    "model": Source(("version", "stats"), _model),
    "firmware": Source(("version", "stats"), _firmware),
    "hashrate_ths": Source(("summary", "stats"), _hashrate),
    "hashrate_nominal_ths": Source(("stats",), _nominal),
    "temps_c": Source(("stats",), _temps),
    "fans_rpm": Source(("stats",), _fans),
    "pools": Source(("pools",), pools),
    "uptime_s": Source(("summary", "stats"), _uptime),
}

# The sleep rule is for stock Bitmain only: an unknown derivative's fans-at-0 proves nothing.
SPEC = FirmwareSpec(
    family="bitmain",
    vendor="Bitmain",
    fields={**FIELDS, "state": Source(("summary", "stats"), _state)},
)
# Unknown cgminer derivatives read the same keys; the vendor stays unknown.
GENERIC = FirmwareSpec(family="cgminer", vendor=None, fields=FIELDS)
