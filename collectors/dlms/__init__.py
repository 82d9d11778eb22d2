"""DLMS/COSEM (IEC 62056) meters: the commercial (settlement) meter, SPODES or generic IEC."""

from kuat.collectors.dlms.client import DlmsMeter, DlmsPoller, Interval, hour_energy
from kuat.collectors.dlms.profile import ProfileError, list_profiles, load_profile

__all__ = [
    "DlmsMeter",
    "DlmsPoller",
    "Interval",
    "ProfileError",
    "hour_energy",
    "list_profiles",
    "load_profile",
]
