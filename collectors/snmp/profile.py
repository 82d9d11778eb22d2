"""PDU profiles: which MIB columns feed which ``PduReading`` field, loaded from TOML.

A profile is data so that a site can add a PDU model without a release. Format
(see ``profiles/apc.toml`` for a commented example)::

    name = "apc"                     # what --profile accepts
    vendor = "APC"                   # PduReading.vendor
    sys_object_ids = ["1.3.6.1.4.1.318.1.3.4"]   # prefixes that `auto` matches
    [identity]                       # scalars, GET; first OID that answers wins
    model = ["1.3.6.1.4.1.318.1.1.12.1.5.0"]
    serial = ["..."]
    [inlets]                         # also [phases], [breakers], [outlets]
    required = true                  # no rows at all -> the poll is a DeviceError
    id = { from_index = "last" }     # or a column spec
    watts = { oid = "<column>", multiplier = 10 }
    [total_watts]                    # { oid = "<scalar>" } or { sum = "inlets" }

A column spec: ``oid`` (a column, or a list tried in order per row), ``suffix`` (only
instances whose index ends in ``.suffix``, which is then stripped: how one row of a
"sensor-type" indexed table is picked), ``divisor``/``multiplier``, ``decimals`` (a column,
with the same suffix, holding the power of ten to divide by), ``missing`` (raw values that
mean "not reported", e.g. -1), ``map`` (raw value -> value, unmapped -> null).
Rows of a section are joined across columns by their (stripped) index.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from kuat.collectors.errors import KuatError

SECTIONS: dict[str, tuple[str, ...]] = {
    "inlets": ("id", "phase", "volts", "amps", "watts", "kwh", "pf"),
    "phases": ("id", "volts", "amps", "watts"),
    "breakers": ("id", "amps"),
    "outlets": ("index", "name", "amps", "watts", "kwh", "state"),
}
# fields whose value is text; every other field is a number
TEXT_FIELDS = frozenset({"id", "phase", "name", "state"})
KEY_FIELDS = frozenset({"id", "index"})
IDENTITY_FIELDS = ("model", "serial")
BUILTIN_PACKAGE = "kuat.collectors.snmp.profiles"


class ProfileError(KuatError, ValueError):
    """A profile file that cannot be used; the message names the file and the key."""


def _oid(text: Any, where: str) -> str:
    if not isinstance(text, str):
        raise ProfileError(f"{where}: an OID must be a string, got {text!r}")
    oid = text.strip().lstrip(".")
    parts = oid.split(".")
    if not oid or not all(p.isdigit() for p in parts):
        raise ProfileError(f"{where}: {text!r} is not a numeric OID")
    return oid


@dataclass(frozen=True, slots=True)
class Column:
    """How one reading field is read from one or more MIB columns."""

    oids: tuple[str, ...] = ()
    suffix: str = ""
    divisor: float = 1.0
    multiplier: float = 1.0
    decimals: str | None = None
    missing: frozenset[int] = frozenset()
    value_map: dict[str, str] | None = None
    from_index: Literal["full", "last", "ordinal"] | None = None

    @classmethod
    def parse(cls, raw: Any, where: str) -> Column:
        if isinstance(raw, str):
            raw = {"oid": raw}
        if not isinstance(raw, dict):
            raise ProfileError(f"{where}: expected a table or an OID string")
        unknown = set(raw) - {
            "oid",
            "suffix",
            "divisor",
            "multiplier",
            "decimals",
            "missing",
            "map",
            "from_index",
        }
        if unknown:
            raise ProfileError(f"{where}: unknown keys {sorted(unknown)}")
        from_index = raw.get("from_index")
        if from_index not in (None, "full", "last", "ordinal"):
            raise ProfileError(f"{where}.from_index: use full, last or ordinal")
        oids_raw = raw.get("oid", [])
        oids = tuple(
            _oid(o, f"{where}.oid")
            for o in (oids_raw if isinstance(oids_raw, list) else [oids_raw])
        )
        if not oids and from_index is None:
            raise ProfileError(f"{where}: needs oid or from_index")
        divisor = float(raw.get("divisor", 1))
        if divisor == 0:
            raise ProfileError(f"{where}.divisor: must not be 0")
        suffix = str(raw.get("suffix", "")).strip(".")
        if suffix and not all(p.isdigit() for p in suffix.split(".")):
            raise ProfileError(f"{where}.suffix: {suffix!r} is not an OID suffix")
        value_map = raw.get("map")
        if value_map is not None and not isinstance(value_map, dict):
            raise ProfileError(f"{where}.map: expected a table of raw value = value")
        return cls(
            oids=oids,
            suffix=suffix,
            divisor=divisor,
            multiplier=float(raw.get("multiplier", 1)),
            decimals=_oid(raw["decimals"], f"{where}.decimals") if "decimals" in raw else None,
            missing=frozenset(int(v) for v in raw.get("missing", [])),
            value_map={str(k): str(v) for k, v in value_map.items()} if value_map else None,
            from_index=from_index,
        )

    def walked(self) -> set[str]:
        return set(self.oids) | ({self.decimals} if self.decimals else set())


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    fields: dict[str, Column]
    required: bool = False

    def walked(self) -> set[str]:
        return set().union(*(c.walked() for c in self.fields.values()))


@dataclass(frozen=True, slots=True)
class Total:
    oid: str | None = None
    sum_of: str | None = None
    multiplier: float = 1.0
    divisor: float = 1.0


@dataclass(frozen=True, slots=True)
class SetCommand:
    oid: str
    value: int


@dataclass(frozen=True, slots=True)
class OutletControl:
    """SNMP SETs that switch one outlet: ``<on|off>.oid`` + ``.`` + ``instance``.

    ``instance`` is a template on the reading's outlet index, e.g. ``"0.{index}"`` where the
    MIB indexes outlets strapping.outlet.
    """

    instance: str
    on: SetCommand
    off: SetCommand

    def target(self, index: int, on: bool) -> tuple[str, int]:
        command = self.on if on else self.off
        return f"{command.oid}.{self.instance.format(index=index)}", command.value


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    vendor: str
    source: str
    description: str = ""
    sys_object_ids: tuple[str, ...] = ()
    identity: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sections: dict[str, Section] = field(default_factory=dict)
    total_watts: Total | None = None
    outlet_control: OutletControl | None = None

    def columns(self) -> list[str]:
        """Every column to walk, once, in a stable order."""
        return sorted(set().union(*(s.walked() for s in self.sections.values())))

    def scalars(self) -> list[str]:
        """Every scalar to GET."""
        oids = {o for group in self.identity.values() for o in group}
        if self.total_watts is not None and self.total_watts.oid:
            oids.add(self.total_watts.oid)
        return sorted(oids)

    def matches(self, sys_object_id: str) -> int:
        """Length of the longest matching sysObjectID prefix; 0 when none matches."""
        oid = sys_object_id.lstrip(".")
        return max(
            (len(p) for p in self.sys_object_ids if oid == p or oid.startswith(p + ".")),
            default=0,
        )


def parse_profile(data: dict[str, Any], source: str) -> Profile:
    where = source
    for key in ("name", "vendor"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ProfileError(f"{where}: missing string key {key!r}")
    allowed = {
        "name",
        "vendor",
        "description",
        "sys_object_ids",
        "identity",
        "total_watts",
        "outlet_control",
    }
    unknown = set(data) - allowed - set(SECTIONS)
    if unknown:
        raise ProfileError(f"{where}: unknown keys {sorted(unknown)}")
    identity: dict[str, tuple[str, ...]] = {}
    for key, oids in dict(data.get("identity", {})).items():
        if key not in IDENTITY_FIELDS:
            raise ProfileError(f"{where}.identity: unknown field {key!r}")
        listed = oids if isinstance(oids, list) else [oids]
        identity[key] = tuple(_oid(o, f"{where}.identity.{key}") for o in listed)
    sections: dict[str, Section] = {}
    for name, allowed_fields in SECTIONS.items():
        raw = data.get(name)
        if raw is None:
            continue
        if not isinstance(raw, dict):
            raise ProfileError(f"{where}.{name}: expected a table")
        cols: dict[str, Column] = {}
        for key, spec in raw.items():
            if key == "required":
                continue
            if key not in allowed_fields:
                raise ProfileError(f"{where}.{name}: unknown field {key!r}")
            cols[key] = Column.parse(spec, f"{where}.{name}.{key}")
        state_map = cols["state"].value_map if "state" in cols else None
        if state_map is not None and not set(state_map.values()) <= {"on", "off"}:
            raise ProfileError(f'{where}.{name}.state.map: values must be "on" or "off"')
        key_field = "index" if name == "outlets" else "id"
        cols.setdefault(key_field, Column(from_index="last"))
        if not any(c.oids for c in cols.values()):
            raise ProfileError(f"{where}.{name}: no column to walk")
        sections[name] = Section(name, cols, bool(raw.get("required", False)))
    total = None
    if "total_watts" in data:
        raw_total = data["total_watts"]
        if "sum" in raw_total and raw_total["sum"] not in sections:
            raise ProfileError(f"{where}.total_watts.sum: no section {raw_total['sum']!r}")
        total = Total(
            oid=_oid(raw_total["oid"], f"{where}.total_watts.oid") if "oid" in raw_total else None,
            sum_of=raw_total.get("sum"),
            multiplier=float(raw_total.get("multiplier", 1)),
            divisor=float(raw_total.get("divisor", 1)),
        )
        if (total.oid is None) == (total.sum_of is None):
            raise ProfileError(f"{where}.total_watts: give exactly one of oid or sum")
    control = None
    if "outlet_control" in data:
        control = _parse_control(data["outlet_control"], f"{where}.outlet_control")
    return Profile(
        name=data["name"],
        vendor=data["vendor"],
        source=source,
        description=str(data.get("description", "")),
        sys_object_ids=tuple(
            _oid(o, f"{where}.sys_object_ids") for o in data.get("sys_object_ids", [])
        ),
        identity=identity,
        sections=sections,
        total_watts=total,
        outlet_control=control,
    )


def _parse_control(raw: Any, where: str) -> OutletControl:
    if not isinstance(raw, dict) or set(raw) != {"instance", "on", "off"}:
        raise ProfileError(f"{where}: needs exactly instance, on and off")
    instance = str(raw["instance"])
    try:
        probe = instance.format(index=1)
    except (KeyError, IndexError, ValueError) as exc:
        raise ProfileError(f"{where}.instance: {instance!r} is not a {{index}} template") from exc
    if "{index}" not in instance or not all(p.isdigit() for p in probe.split(".")):
        raise ProfileError(f"{where}.instance: {instance!r} must be digits, dots and {{index}}")
    commands = {}
    for key in ("on", "off"):
        spec = raw[key]
        if not isinstance(spec, dict) or not isinstance(spec.get("value"), int):
            raise ProfileError(f"{where}.{key}: needs {{ oid = ..., value = <integer> }}")
        commands[key] = SetCommand(_oid(spec.get("oid"), f"{where}.{key}.oid"), spec["value"])
    return OutletControl(instance, commands["on"], commands["off"])


def load_profile_file(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from exc
    return parse_profile(data, str(path))


def builtin_profiles() -> dict[str, Profile]:
    return dict(_builtin_profiles())


@functools.cache
def _builtin_profiles() -> dict[str, Profile]:
    found: dict[str, Profile] = {}
    for entry in resources.files(BUILTIN_PACKAGE).iterdir():
        if entry.name.endswith(".toml"):
            profile = parse_profile(tomllib.loads(entry.read_text("utf-8")), entry.name)
            found[profile.name] = profile
    return found


def list_profiles() -> list[str]:
    """Names ``--profile`` accepts besides ``auto`` and a file path."""
    return sorted(builtin_profiles())


def resolve_profile(name: str) -> Profile:
    """A built-in profile by name, else a path to the user's own TOML file."""
    builtins = builtin_profiles()
    if name in builtins:
        return builtins[name]
    path = Path(name).expanduser()
    if path.suffix == ".toml" or path.exists() or "/" in name:
        return load_profile_file(path)
    raise ProfileError(
        f"unknown profile {name!r}: use auto, one of {', '.join(sorted(builtins))}, "
        "or a path to a .toml profile"
    )


def detect_profile(sys_object_id: str) -> Profile | None:
    """The built-in profile whose sysObjectID prefix matches best."""
    scored = [(p.matches(sys_object_id), p) for p in builtin_profiles().values()]
    best = max(scored, key=lambda s: s[0], default=(0, None))
    return best[1] if best[0] else None
