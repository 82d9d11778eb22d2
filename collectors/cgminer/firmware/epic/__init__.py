"""ePIC UMC/PowerPlay: what kuat reads and may do. Its API is HTTP on the API port, not
cgminer's (api.py in this folder has the field parsers, the HTTP and the write paths); this
module declares them: the reading over that transport, the controls and what they need."""

from __future__ import annotations

import logging

from kuat.collectors.capabilities import ActionResult, PoolTarget
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.common import Credential, FirmwareSpec, WebApi
from kuat.collectors.cgminer.firmware.controls import Act, Controls, http_result
from kuat.collectors.cgminer.firmware.epic import api as epic

log = logging.getLogger(__name__)

PASSWORD = Credential(
    "epic_password",
    epic.DEFAULT_PASSWORD,
    secret=True,
    firmware=Firmware.EPIC,
    key="password",
    doc="ePIC UMC password for power targets and sleep (a secret; factory default letmein).",
)

# An unknown miner whose API port answers the cgminer request with an HTTP status line is
# tried this way at once, within the same deadline (collector.py); the summary every poll, the
# identity (capabilities, network) like any sticky reply.
SPEC = FirmwareSpec(
    family=Firmware.EPIC,
    vendor=None,
    fields=epic.FIELDS,
    transport="http",
    web=WebApi("the ePIC API", None, epic.read),
    sticky=frozenset(epic.STICKY),
    vendor_of=epic.vendor_of,
)


async def _sleep_wake(act: Act, to_sleep: bool) -> ActionResult:
    """``POST /miner`` Stop / Autostart, confirmed by the summary's state."""
    verb = epic.sleep if to_sleep else epic.wake
    return await verb(
        act.host,
        act.reason,
        port=act.port,
        password=act.access.epic_password,
        timeout_s=act.timeout_s,
        confirm_s=act.confirm_s,
    )


async def _power_target(act: Act, watts: int) -> ActionResult:
    """The perpetual tuner's Power target, clamped to the box's range (epic.py)."""
    return await epic.set_power_limit(
        act.host,
        watts,
        act.reason,
        port=act.port,
        password=act.access.epic_password,
        timeout_s=act.timeout_s,
        confirm_s=act.confirm_s,
    )


async def _set_pools(act: Act, pools: tuple[PoolTarget, ...]) -> ActionResult:
    """``POST /coin`` with up to three ``stratum_configs`` (ePIC's OpenAPI document, PowerPlay
    1.30.0, as asic-rs keeps it in meta/epic/1.30.0/powerplay.json), ``unique_id`` off so the
    worker names stay as written; confirmed by the pools the summary's StratumConfigs show."""
    action = "set_pools"
    log.info("asic %s: pools requested (%s)", act.device, act.reason)
    param = {
        "coin": "BTC",
        "stratum_configs": [
            {"pool": p.url, "login": p.user, "password": p.password} for p in pools
        ],
        "unique_id": False,
    }
    a = act.access
    refused = await epic.write(act.host, act.port, "/coin", param, a.epic_password, act.timeout_s)
    if refused is not None:
        return http_result(act, action, refused, unsupported_hint="is this an ePIC miner?")
    ok, seen = await act.confirm_pools(pools)
    if ok:
        return act.result(action, "done", f"confirmed {len(pools)} pools; reason: {act.reason}")
    return act.result(action, "failed", f"miner accepted /coin but reads {seen}")


CONTROLS = Controls(
    firmware=Firmware.EPIC,
    sleep_wake=_sleep_wake,
    power_target=_power_target,
    set_pools=_set_pools,
    credentials=("epic_password",),
    # a real box takes minutes to initialise its boards after a wake
    # the mining software restarts on a new coin/pool set, as on a wake
    confirm_s={"wake": 180.0, "limit": 120.0, "pools": 180.0},
    apply_s={"limit": 20.0},  # the tuner walks to a new power target
)
