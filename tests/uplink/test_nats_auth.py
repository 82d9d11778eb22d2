"""NATS authentication without passwords, against a real nats-server: a user NKey ([cluster]
nkey_seed) and a .creds file in operator/JWT mode ([cluster] credentials). The keys and JWTs are
made here with nkeys, the library nats-py signs with; the server checks them on its own."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nats
import nkeys
import pytest

from kuat.agent.cluster import ClusterJob
from kuat.agent.config import ConfigError, parse_config
from kuat.agent.state import SiteState
from kuat.uplink.nats_conn import NatsSettings, connect
from tests.servers import NATS_BINARY, _terminate, _wait_port, find_binary, free_port

pytestmark = pytest.mark.servers


def new_pair(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def jwt(issuer: nkeys.KeyPair, subject: str, nats: dict[str, Any]) -> str:
    """A NATS JWT (v2): ed25519-nkey over header.claims, signed by ``issuer``."""
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        "name": subject[:8],
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims).encode()).digest()).decode()
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(issuer.sign(f'{head}.{body}'.encode()))}"


def creds_file(user_jwt: str, seed: bytes) -> str:
    return (
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed.decode()}\n------END USER NKEY SEED------\n"
    )


@contextmanager
def nats_server(tmp_path: Path, auth: str) -> Iterator[str]:
    """A nats-server on loopback with ``auth`` as its authentication block; yields its URL."""
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\n{auth}\n")
    log = (tmp_path / "nats.log").open("ab")
    proc = subprocess.Popen(
        [find_binary(NATS_BINARY), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    try:
        _wait_port(port, proc, 20.0, "nats-server")
        yield f"nats://127.0.0.1:{port}"
    finally:
        _terminate(proc)


async def round_trip(settings: NatsSettings) -> bytes:
    nc = await connect(settings)
    try:
        sub = await nc.subscribe("kuat.test")
        await nc.publish("kuat.test", b"hello")
        msg = await sub.next_msg(timeout=5)
        return bytes(msg.data)
    finally:
        await nc.close()


def cluster_config(url: str, auth: str) -> str:
    return (
        '[site]\nid = "s1"\n\n[cluster]\nagent_id = "hall-a"\n'
        f'servers = ["{url}"]\ntls = false\nreplicas = 1\n{auth}\n'
    )


async def test_a_user_nkey_from_the_config_connects(tmp_path: Path) -> None:
    user = new_pair(nkeys.PREFIX_BYTE_USER)
    users = f'authorization {{ users = [ {{ nkey: "{user.public_key.decode()}" }} ] }}'
    with nats_server(tmp_path, users) as url:
        seed = tmp_path / "seed"
        seed.write_bytes(user.seed + b"\n")
        cfg = parse_config(cluster_config(url, f'nkey_seed = {{ file = "{seed}" }}'))
        settings = ClusterJob(cfg, SiteState()).settings()
        assert user.seed.decode() not in repr(settings)
        assert await round_trip(settings) == b"hello"

        # the server does check: a key it does not list is refused
        stranger = new_pair(nkeys.PREFIX_BYTE_USER)
        with pytest.raises(Exception, match=r"(?i)authorization"):
            await nats.connect(
                servers=[url], nkeys_seed_str=stranger.seed.decode(), allow_reconnect=False
            )


async def test_a_creds_file_connects_to_a_server_in_operator_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator = new_pair(nkeys.PREFIX_BYTE_OPERATOR)
    account = new_pair(nkeys.PREFIX_BYTE_ACCOUNT)
    user = new_pair(nkeys.PREFIX_BYTE_USER)
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1}
    op_jwt = jwt(operator, operator.public_key.decode(), {"type": "operator"})
    acc_jwt = jwt(
        operator,
        account.public_key.decode(),
        {"type": "account", "limits": {**unlimited, "conn": -1, "leaf": -1, "wildcards": True}},
    )
    user_jwt = jwt(
        account, user.public_key.decode(), {"type": "user", "pub": {}, "sub": {}, **unlimited}
    )
    mode = (
        f'operator: "{op_jwt}"\nresolver: MEMORY\n'
        f'resolver_preload: {{ {account.public_key.decode()}: "{acc_jwt}" }}'
    )
    with nats_server(tmp_path, mode) as url:
        creds_dir = tmp_path / "credentials"
        creds_dir.mkdir()
        (creds_dir / "nats-creds").write_text(creds_file(user_jwt, user.seed))
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds_dir))  # as LoadCredential= does
        cfg = parse_config(cluster_config(url, 'credentials = { credential = "nats-creds" }'))
        settings = ClusterJob(cfg, SiteState()).settings()
        assert "NKEY" not in repr(settings) and user_jwt not in repr(settings)
        assert await round_trip(settings) == b"hello"


def test_the_config_refuses_two_ways_or_a_wrong_secret_without_showing_it() -> None:
    url = "nats://127.0.0.1:4222"
    both = 'username = "kuat"\npassword = "pw"\nnkey_seed = "SUAAAA"'
    with pytest.raises(ConfigError, match="one of username/password, credentials or nkey_seed"):
        parse_config(cluster_config(url, both))
    account_seed = new_pair(nkeys.PREFIX_BYTE_ACCOUNT).seed.decode()  # not a user's
    with pytest.raises(ConfigError) as bad:
        parse_config(cluster_config(url, f'nkey_seed = "{account_seed}"'))
    assert "not a NATS user NKey seed" in bad.value.render()
    assert account_seed not in bad.value.render()
    with pytest.raises(ConfigError, match=r"not a NATS \.creds file"):
        parse_config(cluster_config(url, 'credentials = "just a token"'))
