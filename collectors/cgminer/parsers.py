"""Replies -> AsicReading: firmware detection and the field engine. Pure functions, no I/O.

Every firmware module declares, per reading field, which command feeds it and how to read it
(collectors/cgminer/firmware/*). The engine runs those extractors on whatever replies arrived:
a missing reply or an odd shape leaves that one field None and adds a note to ``errors``, so a
half-broken miner still yields the fields it did report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kuat.collectors.cgminer.client import Replies, is_error_reply
from kuat.collectors.cgminer.firmware import Firmware, declarations
from kuat.collectors.cgminer.firmware.common import FirmwareSpec, clues, is_web, shared
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
    notes: list[str] = [f"{cmd}: {msg}" for cmd, msg in replies.errors.items()]
    notes.extend(values.pop("errors", ()))
    bodies = replies.bodies
    ok: dict[str, Any] = {}
    for c in spec.commands:
        if is_web(c):
            ok[c] = web.get(c) if web else None
            continue
        b = bodies.get(c)
        ok[c] = None if b is None or is_error_reply(b) else b
    for name, commands, extract in spec.plan:
        args = [ok[c] for c in commands]
        if args.count(None) == len(args):
            continue
        try:
            value = extract(*args)
        except Exception as e:  # one odd field must not cost the whole reading
            notes.append(f"{name}: unreadable {'/'.join(commands)} reply ({type(e).__name__})")
            continue
        if value is not None:
            values[name] = value
    notes.extend(values.pop("errors", ()))
    state = values.pop("state", None)
    reading_fields = {k: v for k, v in values.items() if k in _READING_FIELDS}
    for key in _SHARED_TEXT:
        v = reading_fields.get(key)
        if isinstance(v, str):
            reading_fields[key] = shared(v)

    model = reading_fields.get("model")
    info = lookup(model)
    if info is not None:
        if info.ghs_key_unit == "MH" and spec.ghs_keys_may_be_mh:
            # Scrypt Antminers put MH/s in the "GHS" keys
            for key in ("hashrate_ths",):
                if reading_fields.get(key) is not None:
                    reading_fields[key] = reading_fields[key] / 1e3
        if reading_fields.get("hashrate_nominal_ths") is None:
            reading_fields["hashrate_nominal_ths"] = info.nominal_ths

    for key in ("hashrate_ths", "hashrate_nominal_ths"):
        if reading_fields.get(key) is not None:
            # 6 significant digits: float noise from unit division is not information
            reading_fields[key] = float(f"{reading_fields[key]:.6g}")
    hashrate = reading_fields.get("hashrate_ths")
    power = reading_fields.get("power_w")
    if state is None:
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
        vendor=spec.vendor_of(reading_fields.get("model")) if spec.vendor_of else spec.vendor,
        firmware_family=spec.family,
        state=state,
        errors=tuple(dict.fromkeys(notes)),
        **{k: v for k, v in reading_fields.items() if v is not None},
    )


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
