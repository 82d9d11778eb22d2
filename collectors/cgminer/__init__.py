"""cgminer-family ASIC collector (Antminer stock, Whatsminer btminer, LuxOS, Braiins OS, Avalon).

client.py talks the 4028 JSON API, firmware/ maps each firmware's replies to reading fields,
parsers.py detects the firmware and builds readings, collector.py is the poller, sim.py the
simulated farm, control.py sleep/wake.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kuat.collectors.cgminer.collector import AsicPoller

__all__ = ["AsicPoller"]


def __getattr__(name: str) -> Any:
    # imported when asked for: reading the backends' declarations (the config does, for its
    # credential tables) must not load the poller and every parser with them
    if name == "AsicPoller":
        from kuat.collectors.cgminer.collector import AsicPoller

        return AsicPoller
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
