"""Recorded SNMP walks of real PDUs (snmpsim .snmprec), each with its .src.txt note."""
