"""Run snmpsim serving recorded PDU walks: the demo's PDUs and the tests' real devices.

snmpsim is driven as a subprocess (not imported) because its command responder owns a
blocking dispatcher loop and process-wide state; a child process keeps ours clean and is
killed outright on ``stop``.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

from kuat.collectors.errors import KuatError
from kuat.collectors.snmp.ber import BerError, decode_response

RECORDINGS_DIR = Path(__file__).with_name("recordings")
RESPONDER = "snmpsim-command-responder"
_SYS_OBJECT_ID = (1, 3, 6, 1, 2, 1, 1, 2, 0)


class SimulatorError(KuatError, RuntimeError):
    """snmpsim is missing, exited, or never answered."""


def find_responder() -> Path:
    """The responder of the venv we run in: a PATH lookup could find another Python's."""
    candidate = Path(sys.executable).with_name(RESPONDER)
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    raise SimulatorError(
        f"{RESPONDER} not found next to {sys.executable}: the simulated PDUs need kuat's demo "
        "extra (pip install 'kuat[demo]', or make demo)"
    )


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _v2c_get_packet(community: str) -> bytes:
    """A minimal SNMPv2c GET for sysObjectID, built without an event loop.

    ``start`` is synchronous and may be called from inside a running loop (``kuat demo``),
    so the readiness probe cannot use pysnmp's asyncio API.
    """
    proto = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    pdu = proto.GetRequestPDU()
    proto.apiPDU.set_defaults(pdu)
    proto.apiPDU.set_varbinds(pdu, [(_SYS_OBJECT_ID, proto.Null(""))])
    msg = proto.Message()
    proto.apiMessage.set_defaults(msg)
    proto.apiMessage.set_community(msg, community)
    proto.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


def _answers(host: str, port: int, community: str, timeout_s: float = 0.3) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.sendto(_v2c_get_packet(community), (host, port))
            data, _ = sock.recvfrom(65535)
        except OSError:  # timeout, or ICMP port unreachable while it is still starting
            return False
    with contextlib.suppress(Exception):
        decoder.decode(data, asn1Spec=api.PROTOCOL_MODULES[api.SNMP_VERSION_2C].Message())
        return True
    return False


def _control_columns() -> tuple[str, ...]:
    from kuat.collectors.snmp.profile import builtin_profiles  # only the writable mode needs it

    columns = set()
    for profile in builtin_profiles().values():
        if profile.outlet_control is not None:
            columns |= {profile.outlet_control.on.oid, profile.outlet_control.off.oid}
    return tuple(sorted(columns))


def _copy_writable(source: Path, target: Path, columns: tuple[str, ...]) -> None:
    """Copy recordings, turning integer records under ``columns`` into snmpsim writecache."""
    target.mkdir(parents=True, exist_ok=True)
    prefixes = tuple(c + "." for c in columns)
    for rec in source.glob("*.snmprec"):
        lines = []
        for line in rec.read_text(encoding="utf-8").splitlines():
            oid, _, rest = line.partition("|")
            tag, _, value = rest.partition("|")
            if oid.startswith(prefixes) and tag == "2":
                line = f"{oid}|2:writecache|value={value}"
            lines.append(line)
        (target / rec.name).write_text("\n".join(lines) + "\n", encoding="utf-8")


class SnmpSimulator:
    """snmpsim serving every ``NAME.snmprec`` in ``data_dir`` under community (and v3 context) NAME.

    >>> with SnmpSimulator() as sim:            # the four shipped PDU recordings
    ...     sim.port, sim.communities
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        v3_user: str | None = None,
        v3_auth_key: str | None = None,
        v3_priv_key: str | None = None,
        v3_auth_proto: str = "SHA",
        v3_priv_proto: str = "AES",
        start_timeout_s: float = 30.0,
        writable_outlets: bool = False,
    ) -> None:
        """``writable_outlets`` serves copies whose outlet-control columns (those of the
        built-in profiles' ``[outlet_control]``) accept SETs and keep the written value,
        so ``switch_outlet`` can be exercised; the recordings themselves stay untouched.
        """
        self.data_dir = Path(data_dir) if data_dir is not None else RECORDINGS_DIR
        self.writable_outlets = writable_outlets
        self.host = host
        self._requested_port = port
        self.port = port
        self.v3_user = v3_user
        self._v3_auth_key = v3_auth_key
        self._v3_priv_key = v3_priv_key
        self.v3_auth_proto = v3_auth_proto
        self.v3_priv_proto = v3_priv_proto
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    def __repr__(self) -> str:  # keys stay out of logs
        return f"SnmpSimulator({str(self.data_dir)!r}, host={self.host!r}, port={self.port})"

    @property
    def communities(self) -> list[str]:
        return sorted(p.stem for p in self.data_dir.glob("*.snmprec"))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the responder process has used so far (Linux /proc):
        what serving the polls cost the simulated agents, for bench/snmp_poll.py."""
        if self._proc is None:
            raise SimulatorError("snmpsim is not running")
        fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _command(self, responder: Path, port: int, cache_dir: Path, data_dir: Path) -> list[str]:
        cmd = [str(responder), "--cache-dir", str(cache_dir), "--log-level", "error"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # its default drop to "nobody" cannot read a venv under /root or /work
            cmd += ["--process-user=root", "--process-group=root"]
        if self.v3_user:
            cmd += ["--v3-user", self.v3_user]
            if self._v3_auth_key:
                cmd += ["--v3-auth-key", self._v3_auth_key, "--v3-auth-proto", self.v3_auth_proto]
            if self._v3_priv_key:
                cmd += ["--v3-priv-key", self._v3_priv_key, "--v3-priv-proto", self.v3_priv_proto]
        cmd += [
            "--data-dir",
            str(data_dir),
            "--agent-udpv4-endpoint",
            f"{self.host}:{port}",
        ]
        return cmd

    def start(self) -> SnmpSimulator:
        if self.running:
            return self
        responder = find_responder()
        communities = self.communities
        if not communities:
            raise SimulatorError(f"no *.snmprec recordings in {self.data_dir}")
        self._workdir = Path(tempfile.mkdtemp(prefix="kuat-snmpsim-"))
        served = self.data_dir
        if self.writable_outlets:
            served = self._workdir / "data"
            _copy_writable(self.data_dir, served, _control_columns())
        # a port picked by binding :0 can be taken again before snmpsim binds it: retry
        attempts = 1 if self._requested_port else 3
        last_error: list[str] = []  # the log's last line, if any
        for _ in range(attempts):
            port = self._requested_port or _free_udp_port(self.host)
            log_path = self._workdir / "responder.log"
            with log_path.open("wb") as log:
                self._proc = subprocess.Popen(
                    self._command(responder, port, self._workdir / "cache", served),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a Ctrl-C to the demo must not race our stop()
                )
            self.port = port
            if self._wait_ready(communities[0]):
                return self
            last_error = log_path.read_text(errors="replace").strip().splitlines()[-1:]
            self._kill()
        self._cleanup()
        raise SimulatorError(
            f"snmpsim did not answer on {self.host}:{self.port} within "
            f"{self.start_timeout_s:.0f} s: {' '.join(last_error) or 'no output'}"
        )

    def _wait_ready(self, community: str) -> bool:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            if _answers(self.host, self.port, community):
                return True
            time.sleep(0.05)
        return False

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def _cleanup(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def stop(self) -> None:
        self._kill()
        self._cleanup()

    def __enter__(self) -> SnmpSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class CountingRelay:
    """A loopback UDP relay in front of an agent, counting what passes: the requests a
    manager sends and the varbinds the agent answers (the work a PDU's agent is given).

    Serves one manager socket at a time (answers go to whoever sent last), as one
    ``PduPoller`` polls from one socket. For tests and bench/snmp_poll.py.

    >>> with CountingRelay(sim.host, sim.port) as relay:   # poll relay.host, relay.port
    ...     relay.requests, relay.varbinds
    """

    host = "127.0.0.1"

    def __init__(self, agent_host: str, agent_port: int) -> None:
        self.agent = (agent_host, agent_port)
        self.requests = 0
        self.varbinds = 0
        self.port = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def reset(self) -> tuple[int, int]:
        """(requests, varbinds) so far, then both back to 0."""
        counts = self.requests, self.varbinds
        self.requests = self.varbinds = 0
        return counts

    def _relay(self) -> None:
        manager: tuple[str, int] | None = None
        while not self._stop.is_set():
            ready, _, _ = select.select([self._front, self._back], [], [], 0.05)
            if self._front in ready:
                data, manager = self._front.recvfrom(65535)
                self.requests += 1
                self._back.sendto(data, self.agent)
            if self._back in ready:
                data, _ = self._back.recvfrom(65535)
                with contextlib.suppress(BerError):
                    self.varbinds += len(decode_response(data).varbinds)
                if manager is not None:
                    self._front.sendto(data, manager)

    def __enter__(self) -> CountingRelay:
        self._front.bind((self.host, 0))
        self._back.bind((self.host, 0))
        self.port = int(self._front.getsockname()[1])
        self._thread = threading.Thread(target=self._relay, name="snmp-relay", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._front.close()
        self._back.close()
