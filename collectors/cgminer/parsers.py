"""Replies -> AsicReading: firmware detection and the field engine. Pure functions, no I/O.

Every firmware module declares, per reading field, which command feeds it and how to read it
(collectors/cgminer/firmware/*). The engine runs those extractors on whatever replies arrived:
a missing reply or an odd shape leaves that one field None and adds a note to ``errors``, so a
half-broken miner still yields the fields it did report.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kuat.collectors.cgminer.client import Replies, is_error_reply
from kuat.collectors.cgminer.firmware import Firmware, declarations
from kuat.collectors.cgminer.firmware.common import FirmwareSpec, clues, shared
from kuat.collectors.cgminer.models import lookup
from kuat.collectors.readings import AsicReading, AsicTemps

# Every backend's spec (firmware/<name>.py), found by looking through the firmware package.
SPECS: dict[Firmware, FirmwareSpec] = {s.family: s for s in declarations(FirmwareSpec)}
# detection order: each backend's rank, a derivative before the firmware it derives from
_DETECTABLE = tuple(
    sorted((s for s in SPECS.values() if s.detect is not None), key=lambda s: s.detect_rank)
)

# What the first poll of an unknown miner sends: enough to detect every family above.
DISCOVERY_COMMANDS: tuple[str, ...] = ("summary", "stats", "pools", "version")

_READING_FIELDS = {f.name for f in dataclasses.fields(AsicReading)}
# text every miner of a model repeats: one shared object each (firmware.common.shared)
_SHARED_TEXT = ("model", "firmware")
# Fields whose "nothing reported" is an empty value rather than None.
_EMPTY: dict[str, Any] = {"temps_c": AsicTemps(), "fans_rpm": (), "pools": (), "errors": ()}


def detect_family(bodies: Mapping[str, dict[str, Any]]) -> Firmware | None:
    """The firmware family from version/summary/stats replies, or None if nothing answered.

    Error replies count too: btminer refuses ``version`` but signs the refusal "btminer".
    """
    c = clues(bodies)
    for spec in _DETECTABLE:
        if spec.detect(c):  # type: ignore[misc]
            return spec.family
    if not bodies or all(is_error_reply(b) for b in bodies.values()):
        return None
    return Firmware.CGMINER


def build_reading(
    ip: str,
    port: int,
    taken_at: datetime,
    spec: FirmwareSpec,
    replies: Replies,
    web: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> AsicReading:
    """Every field of ``spec`` from the API replies and the web API's documents (``web``, by
    endpoint), over ``base`` (values that stand when no field gives one)."""
    values: dict[str, Any] = dict(base) if base else {}
    errors = replies.errors
    notes: list[str] = [f"{cmd}: {msg}" for cmd, msg in errors.items()] if errors else []
    if "errors" in values:
        notes.extend(values.pop("errors"))
    bodies = replies.bodies
    ok: dict[str, Any] = {}
    for c in spec.commands:
        if c[:1] == "/":  # is_web(c), inline: this runs per command of every poll
            ok[c] = web.get(c) if web else None
            continue
        b = bodies.get(c)
        ok[c] = None if b is None or is_error_reply(b) else b
    for name, commands, extract in spec.plan:
        # one or two replies per field, nearly always: no argument list built for those
        try:
            if len(commands) == 1:
                a = ok[commands[0]]
                if a is None:
                    continue
                value = extract(a)
            elif len(commands) == 2:
                a, b = ok[commands[0]], ok[commands[1]]
                if a is None and b is None:
                    continue
                value = extract(a, b)
            else:
                args = [ok[c] for c in commands]
                if args.count(None) == len(args):
                    continue
                value = extract(*args)
        except Exception as e:  # one odd field must not cost the whole reading
            notes.append(f"{name}: unreadable {'/'.join(commands)} reply ({type(e).__name__})")
            continue
        if value is not None:
            values[name] = value
    if "errors" in values:
        notes.extend(values.pop("errors"))
    state = values.pop("state", None)
    if base is None and _plain(spec):
        # every value came from a field of the plan, not None, each a reading field: no copy
        fields = values
    else:
        # the reading's own fields with a value (a base may carry None or keys of its own)
        fields = {k: v for k, v in values.items() if v is not None and k in _READING_FIELDS}
    for key in _SHARED_TEXT:
        v = fields.get(key)
        if v.__class__ is str:
            fields[key] = shared(v)

    model = fields.get("model")
    info = lookup(model)
    if info is not None:
        if info.ghs_key_unit == "MH" and spec.ghs_keys_may_be_mh:
            # Scrypt Antminers put MH/s in the "GHS" keys
            rate = fields.get("hashrate_ths")
            if rate is not None:
                fields["hashrate_ths"] = rate / 1e3
        if "hashrate_nominal_ths" not in fields and info.nominal_ths is not None:
            fields["hashrate_nominal_ths"] = info.nominal_ths

    hashrate = fields.get("hashrate_ths")
    if hashrate is not None:
        # 6 significant digits: float noise from unit division is not information
        fields["hashrate_ths"] = hashrate = _six_digits(hashrate)
    nominal = fields.get("hashrate_nominal_ths")
    if nominal is not None:
        fields["hashrate_nominal_ths"] = _six_digits_nominal(nominal)
    if state is None:
        power = fields.get("power_w")
        if hashrate is not None and hashrate > 0:
            state = "mining"
        elif hashrate == 0 and power is not None and power < 150:
            # not hashing and drawing control-board power only: asleep, not broken
            state = "sleeping"
        else:
            state = "error"
            notes.append("hashrate is 0" if hashrate == 0 else "no hashrate reported")
    return AsicReading(
        ip=ip,
        port=port,
        taken_at=taken_at,
        vendor=spec.vendor_of(fields.get("model")) if spec.vendor_of else spec.vendor,
        firmware_family=spec.family,
        state=state,
        errors=tuple(dict.fromkeys(notes)) if notes else (),
        **fields,
    )


# spec -> whether _plain; by id, the spec kept with its answer (a FirmwareSpec holds dicts: no
# hash), so an id is never another spec's
_PLAIN: dict[int, tuple[FirmwareSpec, bool]] = {}


def _plain(spec: FirmwareSpec) -> bool:
    """True if every field of ``spec``'s plan, but state and errors (taken out before), is a
    reading field."""
    got = _PLAIN.get(id(spec))
    if got is not None and got[0] is spec:
        return got[1]
    names = {name for name, _, _ in spec.plan} - {"state", "errors"}
    plain = names <= _READING_FIELDS
    _PLAIN[id(spec)] = (spec, plain)
    return plain


def _six_digits(x: float) -> float:
    return float(f"{x:.6g}")


# A nominal rate is one of a few per farm (the model's, or the firmware's ideal rate): its
# rounding is looked up, not formatted, on every poll
_six_digits_nominal = functools.lru_cache(maxsize=1024)(_six_digits)


def parse_replies(
    ip: str,
    port: int,
    taken_at: datetime,
    bodies: Mapping[str, dict[str, Any]],
    family: Firmware | str | None = None,
) -> AsicReading | None:
    """Convenience for fixtures and tools: per-command bodies -> reading (None if undetectable)."""
    fam = family or detect_family(bodies)
    if fam is None:
        return None
    replies = Replies(bodies=dict(bodies))
    for cmd, body in bodies.items():
        if is_error_reply(body):
            replies.errors[cmd] = "miner says: error"
    return build_reading(ip, port, taken_at, SPECS[Firmware(fam)], replies)
