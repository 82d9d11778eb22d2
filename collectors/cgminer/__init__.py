"""cgminer-family ASIC collector (Antminer stock, Whatsminer btminer, LuxOS, Braiins OS, Avalon).

client.py talks the 4028 JSON API, firmware/ maps each firmware's replies to reading fields,
parsers.py detects the firmware and builds readings, collector.py is the poller, sim.py the
simulated farm, control.py sleep/wake.
"""

from kuat.collectors.cgminer.collector import AsicPoller

__all__ = ["AsicPoller"]
