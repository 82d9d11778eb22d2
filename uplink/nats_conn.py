"""A NATS connection to any node of the site's cluster, reconnecting for ever.

The servers list is every node's URL: nats-py connects to one of them and, when that node dies,
reconnects to another (and learns the others the cluster announces), so the lease and the caps
outlive one node. Subscriptions are restored by the client on reconnect.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.aio.client import Client, RawCredentials

log = logging.getLogger("kuat.uplink.nats")


@dataclass(frozen=True)
class NatsSettings:
    servers: Sequence[str]
    name: str  # the agent id: the servers' monitoring pages show who is connected
    tls: bool = False
    ca_cert: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    username: str | None = None
    # The secrets, never in a repr or a log line.
    password: str | None = field(default=None, repr=False)
    # the text of a .creds file (user JWT + NKey seed): servers in operator/JWT mode
    credentials: str | None = field(default=None, repr=False)
    # a user NKey seed ("SU..."): servers that list the user by its public NKey
    nkey_seed: str | None = field(default=None, repr=False)
    # how long to wait between rounds over the servers list when all of them are down
    reconnect_wait_s: float = 0.5
    connect_timeout_s: float = 2.0
    # spread agents over the nodes (nats-py's default); off: the list's order is a preference
    randomize: bool = True


def tls_context(s: NatsSettings) -> ssl.SSLContext | None:
    if not s.tls:
        return None
    ctx = ssl.create_default_context(cafile=str(s.ca_cert) if s.ca_cert else None)
    if s.client_cert is not None and s.client_key is not None:
        ctx.load_cert_chain(str(s.client_cert), str(s.client_key))
    return ctx


async def connect(s: NatsSettings) -> Client:
    async def on_disconnect() -> None:
        log.warning("NATS: disconnected, trying the other servers")

    async def on_reconnect() -> None:
        log.info("NATS: reconnected to %s", nc.connected_url.netloc if nc.connected_url else "?")

    async def on_error(exc: Exception) -> None:
        log.debug("NATS: %s", exc)

    nc: Client = await nats.connect(
        servers=list(s.servers),
        name=s.name,
        tls=tls_context(s),
        user=s.username,
        password=s.password,
        # nats-py reads the JWT and signs the server's nonce from these strings at each
        # (re)connect; no file of ours holds a secret
        user_credentials=RawCredentials(s.credentials) if s.credentials else None,
        nkeys_seed_str=s.nkey_seed,
        allow_reconnect=True,
        dont_randomize=not s.randomize,
        max_reconnect_attempts=-1,  # never give up: the site's nodes come back
        reconnect_time_wait=s.reconnect_wait_s,
        connect_timeout=s.connect_timeout_s,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
    )
    return nc
