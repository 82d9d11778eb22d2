"""Per-firmware field maps: which API command feeds which reading field, as data.

Each module (or subpackage, where a backend brings its own HTTP client) exports ``SPEC``; the
engine (collectors.cgminer.parsers) sends the union of a spec's commands once per poll and runs
every field's extractor on the replies it names.

``Firmware`` names them. It is a ``StrEnum``: a member *is* its string ("vnish"), so readings,
telemetry tags, config files and callers that still pass plain strings keep working unchanged.
"""

from __future__ import annotations

import enum
import functools
import importlib
import pkgutil
from typing import Any, TypeVar

T = TypeVar("T")


class Firmware(enum.StrEnum):
    """A firmware kuat has a backend for; the value is the reading's ``firmware_family``."""

    BITMAIN = "bitmain"  # stock bmminer / cgminer 4.x on Antminers
    CGMINER = "cgminer"  # an unknown cgminer derivative: the common keys only
    WHATSMINER = "whatsminer"  # btminer API v1/v2 on 4028
    WHATSMINER_V3 = "whatsminer_v3"  # btminer API v3 on 4433 (M6x, M7x)
    LUXOS = "luxos"
    BRAIINS = "braiins"
    AVALON = "avalon"
    VNISH = "vnish"
    EPIC = "epic"  # ePIC UMC/PowerPlay: HTTP on 4028
    AURADINE = "auradine"  # FluxOS


@functools.cache
def _modules() -> tuple[Any, ...]:
    # imported on first use, not here: the backends import Firmware from this module
    return tuple(
        importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)
    )


def declarations(kind: type[T]) -> list[T]:
    """Every module-level ``kind`` instance the backends of this package declare (their
    ``FirmwareSpec``s, their ``Controls``): a new firmware is found by adding its module."""
    found: dict[int, T] = {}
    for m in _modules():
        for v in vars(m).values():
            if isinstance(v, kind):
                found.setdefault(id(v), v)
    return list(found.values())
