"""Shared fixtures: real server processes (VictoriaMetrics, Mosquitto) from tests/servers.py."""

from tests.servers import (  # noqa: F401  (imported so pytest registers the fixtures)
    mosquitto,
    mosquitto_tls,
    tls_certs,
    victoria_metrics,
)
