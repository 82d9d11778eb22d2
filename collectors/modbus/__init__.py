"""Modbus TCP meters: profiles (register maps as data), read planner, poller and simulator."""

from kuat.collectors.modbus.collector import MeterPoller
from kuat.collectors.modbus.profile import MeterProfile, ProfileError, list_profiles, load_profile

__all__ = ["MeterPoller", "MeterProfile", "ProfileError", "list_profiles", "load_profile"]
