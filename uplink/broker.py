"""Where and how an MQTT client of kuat connects: one value, built once from the config by the
agent and handed to each client (register publisher, quota results publisher, schedule/order
receiver, reference register receiver), so the four cannot drift apart in how they read the
same settings.

No paho here: the agent builds endpoints at start-up without loading the MQTT library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["BrokerEndpoint", "MqttProtocol"]

MqttProtocol = Literal["5", "3.1.1"]


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """One MQTT broker (or cluster of nodes) and the identity kuat presents to it.

    ``host``/``port`` is the first node; ``failover`` the other nodes of the same cluster, tried
    in turn (same TLS settings and credentials). ``client_id`` is the configured id of the
    persistent session, ``None`` for each client's own default. ``password`` is the resolved
    secret: it never appears in ``repr``.
    """

    host: str
    port: int = 8883
    failover: tuple[tuple[str, int], ...] = ()
    tls: bool = True
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    protocol: MqttProtocol = "5"
    client_id: str | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 86_400
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0

    def __post_init__(self) -> None:
        # A list given by a caller becomes a tuple: the value stays hashable and unchangeable.
        nodes: Sequence[tuple[str, int]] = self.failover
        object.__setattr__(self, "failover", tuple((h, int(p)) for h, p in nodes))

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every node in failover order, the first one first."""
        return [(self.host, self.port), *self.failover]
