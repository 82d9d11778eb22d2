"""DLMS/COSEM (IEC 62056) meters: the commercial (settlement) meter, SPODES or generic IEC.

The client (``dlms-cosem`` and its cryptography) is imported on first use, not with the
package: ``kuat.agent.config`` checks OBIS codes with ``kuat.collectors.dlms.profile`` and every
command loads the config.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kuat.collectors.dlms.profile import ProfileError, list_profiles, load_profile

if TYPE_CHECKING:
    from kuat.collectors.dlms.client import DlmsMeter, DlmsPoller, Interval, hour_energy

__all__ = [
    "DlmsMeter",
    "DlmsPoller",
    "Interval",
    "ProfileError",
    "hour_energy",
    "list_profiles",
    "load_profile",
]

_LAZY = {"DlmsMeter", "DlmsPoller", "Interval", "hour_energy"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("kuat.collectors.dlms.client"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
