"""SNMP PDU collector: profiles (TOML data per vendor MIB), poller, and an snmpsim simulator."""

from kuat.collectors.snmp.collector import PduPoller, SnmpAuth
from kuat.collectors.snmp.profile import list_profiles

__all__ = ["PduPoller", "SnmpAuth", "list_profiles"]
