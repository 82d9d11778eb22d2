"""Per-firmware field maps: which API command feeds which reading field, as data.

Each module exports ``SPEC``; the engine (collectors.cgminer.parsers) sends the union of a spec's
commands once per poll and runs every field's extractor on the replies it names.

``Firmware`` names them. It is a ``StrEnum``: a member *is* its string ("vnish"), so readings,
telemetry tags, config files and callers that still pass plain strings keep working unchanged.
"""

from __future__ import annotations

import enum


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
