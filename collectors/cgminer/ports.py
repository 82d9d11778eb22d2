"""The miners' well-known ports, in a module that imports nothing: the CLI's defaults (``kuat
discover --help``) come from here without loading the collector."""

from __future__ import annotations

API_PORT = 4028  # the cgminer JSON API (Antminer, LuxOS, Braiins OS, Avalon, Whatsminer v2)
WHATSMINER_V3_PORT = 4433
DEFAULT_WEB_PORT = 80
# What `kuat discover` probes unless told otherwise.
DEFAULT_PORTS = (API_PORT, WHATSMINER_V3_PORT, DEFAULT_WEB_PORT)
