"""Vnish (AnthillOS) on Antminers: bmminer's cgminer API, with the firmware named in ``Type``.

``version``/``stats`` answer like stock bmminer, except that ``Type`` carries the firmware:
``"Antminer S19 (Vnish 1.2.6)"``, ``"Antminer S9 (vnish 3.8.6)"`` (the case varies by release).
Everything the API reports is read as on stock firmware (firmware/bitmain.py); the model drops
the suffix so models.toml finds it, and the firmware is the Vnish version.

What the API lacks (serial, MAC, watts, the power preset, and whether mining was stopped on
purpose) comes from Vnish's own web API (collectors/cgminer/vnish_web.py), which the poller
merges in.
"""

from __future__ import annotations

import re

from kuat.collectors.cgminer.firmware import Firmware, bitmain
from kuat.collectors.cgminer.firmware.common import Body, FirmwareSpec, Source, item, text

FAMILY = Firmware.VNISH
_SUFFIX = re.compile(r"\s*\((vnish)\s*([^)]*)\)\s*$", re.IGNORECASE)


def _type(version: Body | None, stats: Body | None) -> str | None:
    head = item(version, "VERSION") or item(stats, "STATS") or {}
    return text(head.get("Type"))


def split_type(kind: str | None) -> tuple[str | None, str | None]:
    """'Antminer S19 (Vnish 1.2.6)' -> ('Antminer S19', '1.2.6'); no suffix -> (kind, None)."""
    if kind is None:
        return None, None
    m = _SUFFIX.search(kind)
    if m is None:
        return kind, None
    return text(kind[: m.start()]), text(m.group(2))


def is_vnish_type(kind: str | None) -> bool:
    return kind is not None and _SUFFIX.search(kind) is not None


def _model(version: Body | None, stats: Body | None) -> str | None:
    return split_type(_type(version, stats))[0]


def _firmware(version: Body | None, stats: Body | None) -> str | None:
    v = split_type(_type(version, stats))[1]
    return f"Vnish {v}" if v else None


FIELDS: dict[str, Source] = {
    **bitmain.FIELDS,
    "model": Source(("version", "stats"), _model),
    "firmware": Source(("version", "stats"), _firmware),
}

SPEC = FirmwareSpec(family=FAMILY, vendor="Bitmain", fields=FIELDS)
