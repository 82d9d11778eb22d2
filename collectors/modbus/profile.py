"""Meter profiles: which registers feed which ``MeterReading`` field, loaded from TOML files.

The register maps are data (``profiles/NAME.toml``) so that a farm can add a meter without a
release; the file format is documented at the top of ``profiles/schneider-pm5560.toml``.
Everything is validated once at load time, so a poll never meets a half-understood profile:
a malformed file is refused with its path and the offending key.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from kuat.collectors.errors import KuatError
from kuat.collectors.modbus.decode import RegType, WordOrder, width

#: The unit each reading field is expressed in (the unit is also in the field's name).
FIELD_UNITS: dict[str, str] = {
    "p_kw": "kW",
    "p_kw_phases": "kW",
    "q_kvar": "kvar",
    "s_kva": "kVA",
    "v_ln": "V",
    "v_ll": "V",
    "i_a": "A",
    "pf": "",
    "f_hz": "Hz",
    "import_kwh": "kWh",
    "export_kwh": "kWh",
    "demand_kw": "kW",
}
TRIPLE_FIELDS = frozenset({"p_kw_phases", "v_ln", "v_ll", "i_a"})

# unit -> (dimension, factor to the dimension's base unit). Spellings are the ones meter
# manuals actually print; "mvar"-style lower-case guesses are refused rather than guessed.
_UNITS: dict[str, tuple[str, float]] = {
    "W": ("power", 1.0),
    "kW": ("power", 1e3),
    "MW": ("power", 1e6),
    "var": ("reactive", 1.0),
    "VAr": ("reactive", 1.0),
    "VAR": ("reactive", 1.0),
    "kvar": ("reactive", 1e3),
    "kVAr": ("reactive", 1e3),
    "kVAR": ("reactive", 1e3),
    "Mvar": ("reactive", 1e6),
    "MVAr": ("reactive", 1e6),
    "VA": ("apparent", 1.0),
    "kVA": ("apparent", 1e3),
    "MVA": ("apparent", 1e6),
    "Wh": ("energy", 1.0),
    "kWh": ("energy", 1e3),
    "MWh": ("energy", 1e6),
    "V": ("voltage", 1.0),
    "kV": ("voltage", 1e3),
    "A": ("current", 1.0),
    "kA": ("current", 1e3),
    "mA": ("current", 1e-3),
    "Hz": ("frequency", 1.0),
    "": ("ratio", 1.0),
    "-": ("ratio", 1.0),
    "%": ("ratio", 0.01),
}
_FC = (3, 4)  # holding / input registers; meters expose measurements through these two
_TRANSFORMS = ("pf4q",)
MAX_READ = 125  # Modbus limit for one FC3/FC4 request
# Reads span any gap by default: most meters allow it (the fewest requests), and the poller
# learns per device which gaps a meter refuses (exception 2) and reads around them from then on.
DEFAULT_MAX_GAP = MAX_READ

PROFILE_DIR = "profiles"


class ProfileError(KuatError, ValueError):
    """A profile that cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    field: str
    phase: int | None  # 1..3 for the three-phase fields, else None
    addr: int  # protocol (0-based) address, profile base already added
    fc: int
    type: RegType
    word_order: WordOrder
    unit: str
    scale: float
    factor: float  # raw * factor = value in the field's unit (scale and unit conversion)
    transform: str | None = None
    invalid: frozenset[int] = frozenset()
    scale_addr: int | None = None  # SunSpec-style sunssf register: value *= 10 ** sf
    verified: bool = True
    note: str = ""

    @property
    def count(self) -> int:
        return width(self.type)

    @property
    def label(self) -> str:
        return self.field if self.phase is None else f"{self.field}[{self.phase}]"


@dataclass(frozen=True, slots=True)
class Expect:
    """An identification register the meter must hold (e.g. SunSpec's "SunS" marker)."""

    addr: int
    fc: int
    words: tuple[frozenset[int], ...]  # allowed values for each word


@dataclass(frozen=True, slots=True)
class MeterProfile:
    name: str
    title: str
    path: str
    registers: tuple[RegisterSpec, ...]
    expects: tuple[Expect, ...] = ()
    max_gap: int = DEFAULT_MAX_GAP
    max_count: int = MAX_READ

    def spans(self) -> list[tuple[int, int, int]]:
        """Every (fc, addr, count) this profile reads, including scale-factor and ID registers."""
        out: set[tuple[int, int, int]] = set()
        for r in self.registers:
            out.add((r.fc, r.addr, r.count))
            if r.scale_addr is not None:
                out.add((r.fc, r.scale_addr, 1))
        for e in self.expects:
            out.add((e.fc, e.addr, len(e.words)))
        return sorted(out)


def list_profiles() -> list[str]:
    """Names of the profiles shipped with kuat."""
    root = resources.files("kuat.collectors.modbus") / PROFILE_DIR
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def _looks_like_path(name_or_path: str) -> bool:
    return "/" in name_or_path or "\\" in name_or_path or name_or_path.endswith(".toml")


def load_profile(name_or_path: str) -> MeterProfile:
    """A shipped profile by name (``schneider-pm5560``) or a user's TOML file by path."""
    if _looks_like_path(name_or_path):
        path = Path(name_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read profile: {exc.strerror or exc}") from None
        return _parse(text, str(path), _seen=())
    return _load_builtin(name_or_path, _seen=())


def _load_builtin(name: str, _seen: tuple[str, ...]) -> MeterProfile:
    res = resources.files("kuat.collectors.modbus") / PROFILE_DIR / f"{name}.toml"
    if not res.is_file():
        known = ", ".join(list_profiles())
        raise ProfileError(f"unknown meter profile {name!r}; known: {known}")
    return _parse(res.read_text(encoding="utf-8"), f"{PROFILE_DIR}/{name}.toml", _seen)


# --- parsing ------------------------------------------------------------------------------


class _Ctx:
    """Carries the file name so every error message can say where it came from."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: str, msg: str) -> ProfileError:
        return ProfileError(f"{self.path}: {key}: {msg}")

    def get(
        self,
        table: dict[str, Any],
        key: str,
        where: str,
        kind: type | tuple[type, ...],
        default: Any = ...,
    ) -> Any:
        full = f"{where}.{key}" if where else key
        if key not in table:
            if default is ...:
                raise self.fail(full, "missing")
            return default
        value = table[key]
        # bool is an int to Python; a TOML `true` where a number belongs is still a mistake
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(full, f"expected {_kind_name(kind)}, got {value!r}")
        if not isinstance(value, kind):
            raise self.fail(full, f"expected {_kind_name(kind)}, got {value!r}")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


_TOP_KEYS = {
    "name",
    "title",
    "source",
    "fc",
    "word_order",
    "max_gap",
    "max_count",
    "address_base",
    "extends",
    "registers",
    "expect",
}
_REG_KEYS = {
    "field",
    "phase",
    "addr",
    "fc",
    "type",
    "word_order",
    "unit",
    "scale",
    "transform",
    "invalid",
    "scale_addr",
    "verified",
    "note",
}


def _parse(text: str, path: str, _seen: tuple[str, ...]) -> MeterProfile:
    ctx = _Ctx(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    for key in doc:
        if key not in _TOP_KEYS:
            raise ctx.fail(key, f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")

    name = ctx.get(doc, "name", "", str)
    title = ctx.get(doc, "title", "", str, "")
    ctx.get(doc, "source", "", str, "")
    fc_default = _fc(ctx, ctx.get(doc, "fc", "", int, 3), "fc")
    wo_default = _word_order(ctx, ctx.get(doc, "word_order", "", str, "ABCD"), "word_order")
    base = ctx.get(doc, "address_base", "", int, 0)

    inherited: dict[tuple[str, int | None], RegisterSpec] = {}
    expects: list[Expect] = []
    max_gap, max_count = DEFAULT_MAX_GAP, MAX_READ
    if "extends" in doc:
        parent_name = ctx.get(doc, "extends", "", str)
        if parent_name in _seen or parent_name == name:
            raise ctx.fail("extends", f"circular: {' -> '.join((*_seen, name, parent_name))}")
        try:
            parent = _load_builtin(parent_name, (*_seen, name))
        except ProfileError as exc:
            raise ctx.fail("extends", str(exc)) from None
        inherited = {(r.field, r.phase): r for r in parent.registers}
        expects = list(parent.expects)
        max_gap, max_count = parent.max_gap, parent.max_count

    max_gap = ctx.get(doc, "max_gap", "", int, max_gap)
    if max_gap < 0:
        raise ctx.fail("max_gap", "must be >= 0")
    max_count = ctx.get(doc, "max_count", "", int, max_count)
    if not 1 <= max_count <= MAX_READ:
        raise ctx.fail("max_count", f"must be 1..{MAX_READ}")

    rows = ctx.get(doc, "registers", "", list, [])
    if not rows and not inherited:
        raise ctx.fail("registers", "a profile needs at least one [[registers]] entry")
    own: dict[tuple[str, int | None], RegisterSpec] = {}
    for i, row in enumerate(rows):
        where = f"registers[{i}]"
        if not isinstance(row, dict):
            raise ctx.fail(where, "expected a table ([[registers]])")
        spec = _register(ctx, row, where, fc_default, wo_default, base)
        slot = (spec.field, spec.phase)
        if slot in own:
            raise ctx.fail(where, f"{spec.label} is already fed by another register")
        own[slot] = spec
    registers = {**inherited, **own}

    for i, row in enumerate(ctx.get(doc, "expect", "", list, [])):
        where = f"expect[{i}]"
        if not isinstance(row, dict):
            raise ctx.fail(where, "expected a table ([[expect]])")
        expects.append(_expect(ctx, row, where, fc_default, base))

    return MeterProfile(
        name=name,
        title=title,
        path=path,
        registers=tuple(sorted(registers.values(), key=lambda r: (r.fc, r.addr))),
        expects=tuple(expects),
        max_gap=max_gap,
        max_count=max_count,
    )


def _fc(ctx: _Ctx, value: int, key: str) -> int:
    if value not in _FC:
        raise ctx.fail(key, f"function code {value} not supported (use 3 or 4)")
    return value


def _word_order(ctx: _Ctx, value: str, key: str) -> WordOrder:
    try:
        return WordOrder(value.upper())
    except ValueError:
        raise ctx.fail(key, f"{value!r} is not one of {', '.join(WordOrder)}") from None


def _addr(ctx: _Ctx, value: int, base: int, count: int, key: str) -> int:
    addr = base + value
    if addr < 0 or addr + count - 1 > 0xFFFF:
        raise ctx.fail(key, f"address {addr} outside 0..65535")
    return addr


def _register(
    ctx: _Ctx, row: dict[str, Any], where: str, fc_default: int, wo_default: WordOrder, base: int
) -> RegisterSpec:
    for key in row:
        if key not in _REG_KEYS:
            raise ctx.fail(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(_REG_KEYS))})")
    field = ctx.get(row, "field", where, str)
    if field not in FIELD_UNITS:
        raise ctx.fail(
            f"{where}.field", f"{field!r} is not a MeterReading field ({', '.join(FIELD_UNITS)})"
        )
    phase = ctx.get(row, "phase", where, int, None)
    if field in TRIPLE_FIELDS:
        if phase not in (1, 2, 3):
            raise ctx.fail(f"{where}.phase", f"{field} is per phase: phase must be 1, 2 or 3")
    elif phase is not None:
        raise ctx.fail(f"{where}.phase", f"{field} is not a per-phase field")

    type_name = ctx.get(row, "type", where, str)
    try:
        reg_type = RegType(type_name.upper())
    except ValueError:
        raise ctx.fail(
            f"{where}.type", f"{type_name!r} is not one of {', '.join(RegType)}"
        ) from None
    fc = _fc(ctx, ctx.get(row, "fc", where, int, fc_default), f"{where}.fc")
    word_order = _word_order(
        ctx, ctx.get(row, "word_order", where, str, wo_default.value), f"{where}.word_order"
    )
    addr = _addr(ctx, ctx.get(row, "addr", where, int), base, width(reg_type), f"{where}.addr")

    unit = ctx.get(row, "unit", where, str, FIELD_UNITS[field])
    if unit not in _UNITS:
        known = ", ".join(u for u in _UNITS if u)
        raise ctx.fail(f"{where}.unit", f"unknown unit {unit!r} (known: {known})")
    dim, to_base = _UNITS[unit]
    want_dim, want_base = _UNITS[FIELD_UNITS[field]]
    if dim != want_dim:
        raise ctx.fail(
            f"{where}.unit",
            f"{unit!r} cannot feed {field} (needs a {want_dim} unit like {FIELD_UNITS[field]!r})",
        )
    scale = ctx.get(row, "scale", where, (int, float), 1.0)
    if not math.isfinite(scale) or scale == 0:
        raise ctx.fail(f"{where}.scale", f"must be a finite non-zero number, got {scale!r}")

    transform = ctx.get(row, "transform", where, str, None)
    if transform is not None and transform not in _TRANSFORMS:
        raise ctx.fail(
            f"{where}.transform", f"{transform!r} is not one of {', '.join(_TRANSFORMS)}"
        )
    invalid = ctx.get(row, "invalid", where, list, [])
    for j, v in enumerate(invalid):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ctx.fail(f"{where}.invalid[{j}]", f"expected an integer, got {v!r}")
    scale_addr = ctx.get(row, "scale_addr", where, int, None)
    if scale_addr is not None:
        scale_addr = _addr(ctx, scale_addr, base, 1, f"{where}.scale_addr")

    return RegisterSpec(
        field=field,
        phase=phase,
        addr=addr,
        fc=fc,
        type=reg_type,
        word_order=word_order,
        unit=unit,
        scale=float(scale),
        factor=float(scale) * to_base / want_base,
        transform=transform,
        invalid=frozenset(invalid),
        scale_addr=scale_addr,
        verified=ctx.get(row, "verified", where, bool, True),
        note=ctx.get(row, "note", where, str, ""),
    )


def _expect(ctx: _Ctx, row: dict[str, Any], where: str, fc_default: int, base: int) -> Expect:
    for key in row:
        if key not in {"addr", "fc", "words", "note"}:
            raise ctx.fail(f"{where}.{key}", "unknown key (known: addr, fc, words, note)")
    words = ctx.get(row, "words", where, list)
    if not words:
        raise ctx.fail(f"{where}.words", "must not be empty")
    allowed: list[frozenset[int]] = []
    for j, w in enumerate(words):
        options = w if isinstance(w, list) else [w]
        if not options or any(
            isinstance(o, bool) or not isinstance(o, int) or not 0 <= o <= 0xFFFF for o in options
        ):
            raise ctx.fail(f"{where}.words[{j}]", "expected a 16-bit integer or a list of them")
        allowed.append(frozenset(options))
    fc = _fc(ctx, ctx.get(row, "fc", where, int, fc_default), f"{where}.fc")
    addr = _addr(ctx, ctx.get(row, "addr", where, int), base, len(words), f"{where}.addr")
    return Expect(addr=addr, fc=fc, words=tuple(allowed))
