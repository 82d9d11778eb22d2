"""DLMS/COSEM meter profiles: which OBIS objects feed which ``MeterReading`` field, as data.

Like the Modbus register maps, a profile is a TOML file (``profiles/NAME.toml``, or a user's
file by path) validated once at load, so a poll never meets a half-understood profile: a
malformed file is refused with its path and the offending key. The format is documented at the
top of ``profiles/spodes.toml``.

Values are scaled the way COSEM says: a register (interface class 3) carries its own
``scaler_unit`` (attribute 3), read from the meter once per association; a plain data object
(class 1) has none, so its profile entry gives ``scaler`` and ``unit``. The meter's unit is
checked against the field (a voltage object cannot feed ``p_kw``) and converted to the field's
unit (Wh -> kWh).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from kuat.collectors.errors import KuatError
from kuat.collectors.modbus.profile import _UNITS as UNITS
from kuat.collectors.modbus.profile import FIELD_UNITS, TRIPLE_FIELDS

__all__ = [
    "DLMS_UNITS",
    "LoadProfileSpec",
    "ObisProfile",
    "ObjectSpec",
    "ProfileError",
    "list_profiles",
    "load_profile",
    "parse_obis",
]

PROFILE_DIR = "profiles"

#: COSEM unit enumeration (Blue Book, class 3 scaler_unit) -> kuat's unit spelling.
DLMS_UNITS: dict[int, str] = {
    27: "W",
    28: "VA",
    29: "var",
    30: "Wh",
    31: "VAh",
    32: "varh",
    33: "A",
    35: "V",
    44: "Hz",
    255: "",  # "count" / no unit: a power factor
}
# Units a meter may report that the Modbus table does not know (reactive/apparent energy).
_EXTRA_UNITS: dict[str, tuple[str, float]] = {
    "VAh": ("apparent_energy", 1.0),
    "varh": ("reactive_energy", 1.0),
}
_CLASSES = {1: "data", 3: "register", 4: "extended register"}


class ProfileError(KuatError, ValueError):
    """A profile that cannot be used; the message names the file and the key."""


def unit_factor(unit: str, field: str) -> float:
    """Factor from ``unit`` to ``field``'s unit; ValueError when the dimensions differ."""
    have = UNITS.get(unit) or _EXTRA_UNITS.get(unit)
    want = UNITS[FIELD_UNITS[field]]
    if have is None:
        raise ValueError(f"unknown unit {unit!r}")
    if have[0] != want[0]:
        raise ValueError(
            f"unit {unit or 'none'!r} cannot feed {field} (needs {FIELD_UNITS[field]!r})"
        )
    return have[1] / want[1]


def parse_obis(text: str) -> tuple[int, int, int, int, int, int]:
    """ "1.0.1.8.0.255" or "1-0:1.8.0.255" (the F group defaults to 255) -> six integers."""
    cleaned = text.strip().replace("-", ".").replace(":", ".").replace("*", ".")
    parts = cleaned.split(".")
    if len(parts) == 5:
        parts.append("255")
    if len(parts) != 6 or not all(p.isdigit() and int(p) <= 255 for p in parts):
        raise ValueError(f"{text!r} is not an OBIS code (A.B.C.D.E.F, each 0..255)")
    a, b, c, d, e, f = (int(p) for p in parts)
    return a, b, c, d, e, f


def obis_text(code: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in code)


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    field: str
    phase: int | None  # 1..3 for the per-phase fields
    obis: tuple[int, int, int, int, int, int]
    interface: int  # 1 data, 3 register, 4 extended register
    scaler: int | None  # for class 1 (no scaler_unit attribute)
    unit: str | None  # for class 1; for class 3 the unit the meter is expected to report

    @property
    def label(self) -> str:
        return self.field if self.phase is None else f"{self.field}[{self.phase}]"

    @property
    def obis_text(self) -> str:
        return obis_text(self.obis)


@dataclass(frozen=True, slots=True)
class LoadProfileSpec:
    """The meter's own interval energy (profile generic, class 7)."""

    obis: tuple[int, int, int, int, int, int]
    column: tuple[int, int, int, int, int, int]  # the captured energy register
    kind: str  # "delta": each entry is its interval's energy; "counter": a cumulative register
    clock: tuple[int, int, int, int, int, int] = (0, 0, 1, 0, 0, 255)


@dataclass(frozen=True, slots=True)
class ObisProfile:
    name: str
    title: str
    path: str
    objects: tuple[ObjectSpec, ...]
    load_profile: LoadProfileSpec | None


def list_profiles() -> list[str]:
    root = resources.files("kuat.collectors.dlms") / PROFILE_DIR
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str) -> ObisProfile:
    """A shipped profile by name (``spodes``, ``iec``) or a user's TOML file by path."""
    if "/" in name_or_path or "\\" in name_or_path or name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read profile: {exc.strerror or exc}") from None
        return parse_profile(text, str(path))
    res = resources.files("kuat.collectors.dlms") / PROFILE_DIR / f"{name_or_path}.toml"
    if not res.is_file():
        known = ", ".join(list_profiles())
        raise ProfileError(f"unknown DLMS profile {name_or_path!r}; known: {known}")
    return parse_profile(res.read_text(encoding="utf-8"), f"{PROFILE_DIR}/{name_or_path}.toml")


_TOP = {"name", "title", "source", "objects", "load_profile"}
_OBJ = {"field", "phase", "obis", "class", "scaler", "unit", "note"}
_LP = {"obis", "column", "kind", "clock", "note"}


def _fail(path: str, key: str, msg: str) -> ProfileError:
    return ProfileError(f"{path}: {key}: {msg}")


def _get(path: str, table: dict[str, Any], key: str, where: str, kind: type, default: Any = ...):
    full = f"{where}.{key}" if where else key
    if key not in table:
        if default is ...:
            raise _fail(path, full, "missing")
        return default
    value = table[key]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise _fail(path, full, f"expected {kind.__name__}, got {value!r}")
    return value


def _obis(path: str, table: dict[str, Any], key: str, where: str) -> tuple[int, ...]:
    text = _get(path, table, key, where, str)
    try:
        return parse_obis(text)
    except ValueError as exc:
        raise _fail(path, f"{where}.{key}", str(exc)) from None


def _unknown(path: str, table: dict[str, Any], known: set[str], where: str) -> None:
    for key in table:
        if key not in known:
            full = f"{where}.{key}" if where else key
            raise _fail(path, full, f"unknown key (known: {', '.join(sorted(known))})")


def parse_profile(text: str, path: str) -> ObisProfile:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    _unknown(path, doc, _TOP, "")
    name = _get(path, doc, "name", "", str)
    title = _get(path, doc, "title", "", str, "")
    _get(path, doc, "source", "", str, "")
    rows = _get(path, doc, "objects", "", list, [])
    if not rows:
        raise _fail(path, "objects", "a profile needs at least one [[objects]] entry")
    objects: dict[tuple[str, int | None], ObjectSpec] = {}
    for i, row in enumerate(rows):
        where = f"objects[{i}]"
        if not isinstance(row, dict):
            raise _fail(path, where, "expected a table ([[objects]])")
        _unknown(path, row, _OBJ, where)
        spec = _object(path, row, where)
        if (spec.field, spec.phase) in objects:
            raise _fail(path, where, f"{spec.label} is already fed by another object")
        objects[(spec.field, spec.phase)] = spec
    lp = None
    if "load_profile" in doc:
        table = _get(path, doc, "load_profile", "", dict)
        _unknown(path, table, _LP, "load_profile")
        kind = _get(path, table, "kind", "load_profile", str, "delta")
        if kind not in ("delta", "counter"):
            raise _fail(path, "load_profile.kind", f"{kind!r} is not delta or counter")
        lp = LoadProfileSpec(
            obis=_obis(path, table, "obis", "load_profile"),  # type: ignore[arg-type]
            column=_obis(path, table, "column", "load_profile"),  # type: ignore[arg-type]
            kind=kind,
            clock=(
                _obis(path, table, "clock", "load_profile")  # type: ignore[arg-type]
                if "clock" in table
                else (0, 0, 1, 0, 0, 255)
            ),
        )
    return ObisProfile(name, title, path, tuple(objects.values()), lp)


def _object(path: str, row: dict[str, Any], where: str) -> ObjectSpec:
    field = _get(path, row, "field", where, str)
    if field not in FIELD_UNITS:
        raise _fail(path, f"{where}.field", f"{field!r} is not a MeterReading field")
    phase = _get(path, row, "phase", where, int, None)
    if field in TRIPLE_FIELDS:
        if phase not in (1, 2, 3):
            raise _fail(path, f"{where}.phase", f"{field} is per phase: phase must be 1, 2 or 3")
    elif phase is not None:
        raise _fail(path, f"{where}.phase", f"{field} is not a per-phase field")
    interface = _get(path, row, "class", where, int, 3)
    if interface not in _CLASSES:
        raise _fail(path, f"{where}.class", f"{interface} is not 1 (data), 3 or 4 (register)")
    scaler = _get(path, row, "scaler", where, int, None)
    unit = _get(path, row, "unit", where, str, None)
    if interface == 1 and unit is None:
        raise _fail(path, f"{where}.unit", "a class 1 (data) object needs its unit")
    if scaler is not None and not -10 <= scaler <= 10:
        raise _fail(path, f"{where}.scaler", "must be -10..10 (a power of ten)")
    if unit is not None:
        try:
            unit_factor(unit, field)
        except ValueError as exc:
            raise _fail(path, f"{where}.unit", str(exc)) from None
    return ObjectSpec(
        field=field,
        phase=phase,
        obis=_obis(path, row, "obis", where),  # type: ignore[arg-type]
        interface=interface,
        scaler=scaler,
        unit=unit,
    )


def scaled(raw: Any, scaler: int, unit: str, spec: ObjectSpec) -> float | None:
    """A raw COSEM value -> the field's value; None for a value the meter does not have."""
    if raw is None or isinstance(raw, bool | bytes | str | list):
        return None
    value = float(raw) * 10.0**scaler * unit_factor(unit, spec.field)
    if not math.isfinite(value):
        return None
    return float(f"{value:.15g}")
