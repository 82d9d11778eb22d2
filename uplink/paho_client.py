"""One way to build kuat's MQTT v5 clients (register publisher, schedule/order source, reference
register receiver): TLS with server verification, optional client certificate and password,
reconnect back-off. Callbacks stay with each user."""

from __future__ import annotations

import ssl
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["paho_client"]


def paho_client(
    client_id: str,
    *,
    tls: bool,
    ca_cert: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    username: str | None = None,
    password: str | None = None,
    reconnect_min_s: float = 1.0,
    reconnect_max_s: float = 60.0,
) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if tls:
        client.tls_set(
            ca_certs=str(ca_cert) if ca_cert else None,
            certfile=str(client_cert) if client_cert else None,
            keyfile=str(client_key) if client_key else None,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    if username is not None:
        client.username_pw_set(username, password)
    # paho annotates the delays as int; it computes with them as float seconds
    client.reconnect_delay_set(reconnect_min_s, reconnect_max_s)  # type: ignore[arg-type]
    return client
