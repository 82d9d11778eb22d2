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

import dataclasses
import re

from kuat.collectors.capabilities import ActionResult
from kuat.collectors.cgminer import vnish_web
from kuat.collectors.cgminer.firmware import Firmware, bitmain
from kuat.collectors.cgminer.firmware.common import Body, Clues, FirmwareSpec, Source, item, text
from kuat.collectors.cgminer.firmware.controls import Act, Controls

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


def _detect(c: Clues) -> bool:
    return "vnish" in c.kind or "vnish" in c.descriptions


SPEC = FirmwareSpec(
    family=FAMILY,
    vendor="Bitmain",
    fields=FIELDS,
    # bmminer with "(Vnish x.y.z)" in Type: tried before the stock rule, which it also fits
    detect=_detect,
    detect_rank=60,
    ghs_keys_may_be_mh=True,
)


# --- control: Vnish's web API (vnish_web.py): mining stop/start, presets at or below a target --


async def _sleep_wake(act: Act, to_sleep: bool) -> ActionResult:
    a = act.access
    verb = vnish_web.sleep if to_sleep else vnish_web.wake
    got = await verb(
        act.host,
        act.reason,
        web_port=a.web_port,
        password=a.vnish_password,
        timeout_s=a.web_timeout_s,
        confirm_s=act.confirm_s,
    )
    # vnish_web names the web port; the caller knows the miner by its API target
    return dataclasses.replace(got, device_id=act.device)


async def _power_target(act: Act, watts: int) -> ActionResult:
    a = act.access
    got = await vnish_web.set_power_limit(
        act.host,
        watts,
        act.reason,
        web_port=a.web_port,
        password=a.vnish_password,
        timeout_s=a.web_timeout_s,
        confirm_s=act.confirm_s,
    )
    return dataclasses.replace(got, device_id=act.device)


CONTROLS = Controls(
    firmware=FAMILY,
    sleep_wake=_sleep_wake,
    power_target=_power_target,
    credentials=("web_port", "vnish_password", "web_timeout_s"),
    confirm_s={"limit": 120.0, "wake": 120.0},
)
