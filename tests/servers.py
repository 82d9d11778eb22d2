"""Real servers for tests: VictoriaMetrics (an InfluxDB line-protocol sink) and Mosquitto.

Each server runs as a child process on a free 127.0.0.1 port with its data in a temporary
directory, so a test can ``stop()`` it and ``start()`` it again on the same port and data dir
(the outage tests). When a binary is missing the tests are skipped, except on CI
(``CI=true``), where a missing binary is a broken image and must fail loudly.

Fixtures (module scope, to keep the suite fast): ``victoria_metrics``, ``mosquitto``,
``tls_certs``, ``mosquitto_tls``. Register them in a conftest with
``from tests.servers import *  # noqa: F403``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

VM_BINARY = os.environ.get("KUAT_VM_BINARY", "victoria-metrics")
MOSQUITTO_BINARY = os.environ.get("KUAT_MOSQUITTO_BINARY", "mosquitto")
INFLUXD_BINARY = os.environ.get("KUAT_INFLUXD_BINARY", "influxd")  # Debian influxdb (1.x)
NATS_BINARY = os.environ.get("KUAT_NATS_BINARY", "nats-server")
_EXTRA_PATHS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")

__all__ = [
    "Mosquitto",
    "Nats",
    "NatsCluster",
    "TlsFiles",
    "VictoriaMetrics",
    "find_binary",
    "free_port",
    "make_tls_files",
    "mosquitto",
    "mosquitto_tls",
    "tls_certs",
    "victoria_metrics",
]


# --- helpers ----------------------------------------------------------------------------


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the OS picks it; small race accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listen_ports(n: int) -> list[int]:
    """``n`` distinct ``listen_port`` ports."""
    out: list[int] = []
    while len(out) < n:
        if (port := listen_port()) not in out:
            out.append(port)
    return out


def listen_port() -> int:
    """A free TCP port on 127.0.0.1 below the kernel's ephemeral range, for a server that other
    servers dial while it starts: a port from ``free_port`` can meanwhile become the local end
    of such an outgoing connection (a NATS node dialling its routes), and the server that was to
    listen on it exits with "address already in use" (seen once in a full run)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(10_000, max(10_001, ephemeral_low))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


def find_binary(name: str) -> str:
    """Path of a server binary, or skip (fail on CI) the requesting test."""
    found = shutil.which(name) or next(
        (str(Path(d) / name) for d in _EXTRA_PATHS if (Path(d) / name).is_file()), None
    )
    if found is None:
        message = f"server binary {name!r} not found on PATH"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s} s")


def _wait_port_free(port: int, timeout_s: float = 5.0) -> None:
    """After a stop, wait until the port can be bound again (restart on the same port)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return
            except OSError:
                time.sleep(0.02)


def _terminate(proc: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# --- VictoriaMetrics --------------------------------------------------------------------


class VictoriaMetrics:
    """A single-node VictoriaMetrics accepting InfluxDB v2 writes at ``{url}/api/v2/write``.

    Searches see freshly written points at once (``-search.latencyOffset=0s``,
    ``-search.disableCache`` and a ``/internal/force_flush`` before each export).
    Deduplication stays off, so a point written twice shows up twice in ``export`` — which is
    exactly what the exactly-once tests need to see.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *extra_args: str,
        tls: TlsFiles | None = None,
    ) -> None:
        self.binary = find_binary(VM_BINARY)
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra_args = extra_args
        self.tls = tls
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _get(self, path: str, timeout_s: float, method: str = "GET") -> bytes:
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        req = urllib.request.Request(f"{self.url}{path}", method=method)
        with urllib.request.urlopen(req, timeout=timeout_s, context=context) as resp:
            return resp.read()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 20.0) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _wait_port_free(self.port)
        args = [
            self.binary,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.data_dir}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
            *self.extra_args,
        ]
        if self.tls is not None:
            args += [
                "-tls",
                f"-tlsCertFile={self.tls.server_cert}",
                f"-tlsKeyFile={self.tls.server_key}",
            ]
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"victoria-metrics exited ({self._proc.returncode}): "
                    + self.log_path.read_text(errors="replace")[-2000:]
                )
            with contextlib.suppress(OSError, urllib.error.URLError):
                self._get("/health", 1)
                return
            time.sleep(0.05)
        raise RuntimeError(f"victoria-metrics not healthy on {self.url} within {timeout_s} s")

    def stop(self) -> None:
        _terminate(self._proc)
        self._proc = None

    def force_flush(self) -> None:
        self._get("/internal/force_flush", 10)

    def export(self, match: str = '{__name__!=""}') -> list[dict]:
        """Every stored sample of the series matching ``match``, one dict per series.

        Each dict is VictoriaMetrics' export line: ``{"metric": {...labels}, "values": [...],
        "timestamps": [ms...]}``. A line-protocol field ``f`` of measurement ``m`` is the
        metric ``m_f``; tags are labels.
        """
        self.force_flush()
        # An explicit end a day ahead: without one, VictoriaMetrics 1.79 stops short of "now"
        # and leaves out points stamped in the last second (tests/test_servers.py).
        end_s = int(time.time()) + 86_400
        query = urllib.parse.urlencode({"match[]": match, "start": "0", "end": str(end_s)})
        body = self._get(f"/api/v1/export?{query}", 30).decode()
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def query(self, expr: str, time_s: float) -> list[dict]:
        """The result of the instant query ``expr`` at ``time_s`` (``/api/v1/query``)."""
        self.force_flush()
        query = urllib.parse.urlencode({"query": expr, "time": f"{time_s:.3f}"})
        body = json.loads(self._get(f"/api/v1/query?{query}", 30))
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {body}")
        return body["data"]["result"]

    def delete_all(self) -> None:
        """Forget every series (lets module-scoped fixtures isolate tests)."""
        query = urllib.parse.urlencode({"match[]": '{__name__!=""}'})
        self._get(f"/api/v1/admin/tsdb/delete_series?{query}", 10, method="POST")

    def __enter__(self) -> VictoriaMetrics:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- TLS material -----------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: a client certificate signed by a different CA: a server requiring client certs rejects it
    rogue_client_cert: Path
    rogue_client_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A throw-away CA, a server cert for 127.0.0.1/localhost and client certs (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
        return path

    def write_cert(cert: x509.Certificate, path: Path) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def make_ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    def make_leaf(
        cn: str,
        ca_key: ec.EllipticCurvePrivateKey,
        ca_cert: x509.Certificate,
        usage: x509.ObjectIdentifier,
        san: list[x509.GeneralName] | None = None,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    ca_key, ca_cert = make_ca("kuat test CA")
    srv_key, srv_cert = make_leaf(
        "127.0.0.1",
        ca_key,
        ca_cert,
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    cli_key, cli_cert = make_leaf("kuat-agent", ca_key, ca_cert, ExtendedKeyUsageOID.CLIENT_AUTH)
    rogue_ca_key, rogue_ca_cert = make_ca("rogue CA")
    rogue_key, rogue_cert = make_leaf(
        "rogue-agent", rogue_ca_key, rogue_ca_cert, ExtendedKeyUsageOID.CLIENT_AUTH
    )
    return TlsFiles(
        ca_cert=write_cert(ca_cert, directory / "ca.crt"),
        server_cert=write_cert(srv_cert, directory / "server.crt"),
        server_key=write_key(srv_key, directory / "server.key"),
        client_cert=write_cert(cli_cert, directory / "client.crt"),
        client_key=write_key(cli_key, directory / "client.key"),
        rogue_client_cert=write_cert(rogue_cert, directory / "rogue.crt"),
        rogue_client_key=write_key(rogue_key, directory / "rogue.key"),
    )


# --- Mosquitto --------------------------------------------------------------------------


class Mosquitto:
    """Mosquitto 2.x with a plain listener (``port``) and optionally a TLS listener
    (``tls_port``) that requires a client certificate signed by ``tls.ca_cert``.

    Persistence is on (in ``data_dir``), so retained messages and persistent sessions survive
    ``stop()``/``start()`` — SIGTERM makes mosquitto write its database before exiting.
    """

    def __init__(
        self, data_dir: Path, *, port: int | None = None, tls: TlsFiles | None = None
    ) -> None:
        self.binary = find_binary(MOSQUITTO_BINARY)
        self.data_dir = data_dir
        self.port = port or free_port()
        self.tls = tls
        self.tls_port = free_port() if tls else None
        self.config_path = data_dir / "mosquitto.conf"
        self.log_path = data_dir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _config(self) -> str:
        lines = [
            # Children of a root test run would otherwise drop to user "mosquitto" and could
            # not write the tmp data dir.
            *(["user root"] if os.geteuid() == 0 else []),
            "per_listener_settings false",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "autosave_interval 1",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "max_queued_messages 100000",
            f"listener {self.port} 127.0.0.1",
        ]
        if self.tls is not None:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.tls.ca_cert}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "require_certificate true",
                "tls_version tlsv1.2",
            ]
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 10.0) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config())
        _wait_port_free(self.port)
        if self.tls_port:
            _wait_port_free(self.tls_port)
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_port(self.port, self._proc, timeout_s, "mosquitto")
            if self.tls_port:
                _wait_port(self.tls_port, self._proc, timeout_s, "mosquitto (TLS)")
        except RuntimeError as exc:
            log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            raise RuntimeError(f"{exc}\n{log[-2000:]}") from None

    def stop(self) -> None:
        _terminate(self._proc)
        self._proc = None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- InfluxDB 1.x (InfluxQL) ---------------------------------------------------------------


class InfluxDB1:
    """Debian's InfluxDB 1.x: the InfluxQL endpoint the Grafana InfluxQL dashboards query
    (InfluxDB 2.x serves the same language on its v1 compatibility API, InfluxDB 3 natively).
    Database ``kuat``; lines are written with ``write`` (the v1 API, nanoseconds)."""

    def __init__(self, data_dir: Path) -> None:
        self.binary = find_binary(INFLUXD_BINARY)
        self.data_dir = data_dir
        self.port = free_port()
        self.rpc_port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        d = self.data_dir
        conf = d / "influxdb.conf"
        conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{d}/meta"\n'
            f'[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n  query-log-enabled = false\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
        )
        log = (d / "influxd.log").open("ab")
        self._proc = subprocess.Popen(
            [self.binary, "-config", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        _wait_port(self.port, self._proc, timeout_s, "influxd")
        self.query("CREATE DATABASE kuat", method="POST")

    def stop(self) -> None:
        _terminate(self._proc)
        self._proc = None

    def write(self, lines: list[str]) -> None:
        req = urllib.request.Request(
            f"{self.url}/write?db=kuat&precision=ns", data="\n".join(lines).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 204

    def query(self, q: str, method: str = "GET") -> list[dict]:
        """The ``series`` of the one statement ``q`` (an error in it raises)."""
        params = urllib.parse.urlencode({"db": "kuat", "q": q, "epoch": "ms"})
        if method == "POST":
            req = urllib.request.Request(f"{self.url}/query", data=params.encode(), method="POST")
        else:
            req = urllib.request.Request(f"{self.url}/query?{params}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            (result,) = json.loads(resp.read())["results"]
        if "error" in result:
            raise AssertionError(f"{q}: {result['error']}")
        return list(result.get("series", []))

    def __enter__(self) -> InfluxDB1:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- NATS (with its MQTT listener) ---------------------------------------------------------


class Nats:
    """A single nats-server with JetStream and its MQTT 3.1.1 listener (``mqtt_port``): the
    broker a site can run its register traffic on beside NATS itself."""

    def __init__(self, data_dir: Path, *, extra_config: str = "") -> None:
        self.binary = find_binary(NATS_BINARY)
        self.data_dir = data_dir
        self.port = free_port()
        self.mqtt_port = free_port()
        self.extra_config = extra_config  # e.g. an authorization block
        self._proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        conf = self.data_dir / "nats.conf"
        conf.write_text(
            f'server_name: "kuat-test-{self.port}"\n'
            f"listen: 127.0.0.1:{self.port}\n"
            f'jetstream {{ store_dir: "{self.data_dir / "js"}" }}\n'
            f"mqtt {{ listen: 127.0.0.1:{self.mqtt_port} }}\n"
            f"{self.extra_config}\n"
        )
        return conf

    def reload(self, extra_config: str) -> None:
        """New ``extra_config`` read on SIGHUP (connections stay open)."""
        assert self._proc is not None
        self.extra_config = extra_config
        self._write_config()
        self._proc.send_signal(signal.SIGHUP)

    def start(self, timeout_s: float = 20.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self._write_config()
        log = (self.data_dir / "nats.log").open("ab")
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        _wait_port(self.mqtt_port, self._proc, timeout_s, "nats-server (mqtt)")

    def stop(self) -> None:
        _terminate(self._proc)
        self._proc = None

    def __enter__(self) -> Nats:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NatsCluster:
    """Three nats-servers routed into one cluster, JetStream on each (so a stream or key-value
    bucket can have 3 replicas) and each with its MQTT listener: the site's shared broker.

    ``stop_node(i)``/``start_node(i)`` take one node down and bring it back on the same ports
    and store (the failover tests); ``urls`` is the client's servers list."""

    size = 3

    def __init__(self, data_dir: Path) -> None:
        self.binary = find_binary(NATS_BINARY)
        self.data_dir = data_dir
        # the nodes dial each other's routes while they start: ports outside the range their
        # outgoing connections take theirs from (listen_port)
        ports = listen_ports(4 * self.size)
        n = self.size
        self.ports, self.cluster_ports = ports[:n], ports[n : 2 * n]
        self.mqtt_ports = ports[2 * n : 3 * n]
        self.http_ports = ports[3 * n :]  # monitoring (/jsz)
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * self.size

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.ports]

    def _config(self, i: int) -> str:
        routes = ", ".join(
            f"nats-route://127.0.0.1:{p}" for j, p in enumerate(self.cluster_ports) if j != i
        )
        store = self.data_dir / f"n{i}" / "js"
        return (
            f'server_name: "kuat-n{i}-{self.ports[i]}"\n'
            f"listen: 127.0.0.1:{self.ports[i]}\n"
            f"http: 127.0.0.1:{self.http_ports[i]}\n"
            f'jetstream {{ store_dir: "{store}" }}\n'
            # stream_replicas: the MQTT sessions, retained messages and QoS 1 queues in 3 copies.
            # Left unset, nats-server sizes them by the nodes it sees at the first MQTT connect
            # (2 when one route is still coming up), and then one dead node stalls them all.
            # ack_wait: a QoS 1 message a subscriber did not acknowledge (its node died on the
            # way) goes again after 2 s instead of the default 30 s.
            f"mqtt {{ listen: 127.0.0.1:{self.mqtt_ports[i]}, stream_replicas: {self.size},"
            ' ack_wait: "2s" }\n'
            f'cluster {{ name: "kuat-test", listen: 127.0.0.1:{self.cluster_ports[i]},'
            f" routes: [{routes}] }}\n"
        )

    def start_node(self, i: int, timeout_s: float = 20.0) -> None:
        node_dir = self.data_dir / f"n{i}"
        node_dir.mkdir(parents=True, exist_ok=True)
        conf = node_dir / "nats.conf"
        conf.write_text(self._config(i))
        _wait_port_free(self.ports[i])
        log = (node_dir / "nats.log").open("ab")
        proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self._procs[i] = proc
        _wait_port(self.ports[i], proc, timeout_s, f"nats-server node {i}")

    def stop_node(self, i: int) -> None:
        _terminate(self._procs[i])
        self._procs[i] = None

    def alive(self, i: int) -> bool:
        """Whether node ``i`` runs (not killed, not stopped)."""
        proc = self._procs[i]
        return proc is not None and proc.poll() is None

    def kill_node(self, i: int) -> None:
        """SIGKILL: a machine that dies, not one that shuts down."""
        proc = self._procs[i]
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
        self._procs[i] = None

    def start(self, timeout_s: float = 30.0) -> None:
        for i in range(self.size):
            self.start_node(i, timeout_s)
        self.wait_jetstream(timeout_s)

    def wait_jetstream(self, timeout_s: float = 30.0) -> None:
        """Until the cluster has elected its JetStream meta leader and that leader sees every
        running node as a current peer: a bucket with 3 replicas can be placed. (A leader alone
        was not enough: one CI run's 3-replica bucket found no room for 15 s after it.)"""
        deadline = time.monotonic() + timeout_s
        up = [p for p, proc in zip(self.http_ports, self._procs, strict=True) if proc]
        while time.monotonic() < deadline:
            for port in up:
                with (
                    contextlib.suppress(OSError, ValueError),
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/jsz", timeout=1) as r,
                ):
                    meta = json.loads(r.read()).get("meta_cluster", {})
                    # only the leader's view lists the peers ("replicas"), each "current" once
                    # it has caught up with the leader's log
                    current = [p for p in meta.get("replicas") or [] if p.get("current")]
                    if meta.get("leader") and len(current) >= len(up) - 1:
                        return
            time.sleep(0.1)
        raise RuntimeError(
            f"the NATS cluster had no JetStream leader with every node current in {timeout_s} s"
        )

    def stop(self) -> None:
        for i in range(self.size):
            self.stop_node(i)

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path_factory.mktemp("vm") / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def mosquitto_tls(
    tmp_path_factory: pytest.TempPathFactory, tls_certs: TlsFiles
) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto-tls"), tls=tls_certs)
    server.start()
    try:
        yield server
    finally:
        server.stop()
