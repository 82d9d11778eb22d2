"""The agent's configuration: TOML, validated once at start, every problem reported at once.

An unknown key is an error (a typo must never pass silently). Each problem names its key path
and, where the TOML text lets us find it, its line. Secrets are never inline by necessity: any
secret may be ``{ file = "/etc/kuat/secrets/x" }`` or ``{ credential = "x" }`` (read from
systemd's ``$CREDENTIALS_DIRECTORY``), and a resolved secret never appears in a repr or a log.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from kuat.agent.i18n import Lang
from kuat.agent.tomlpos import locate
from kuat.collectors.cgminer.access import MinerAccess
from kuat.collectors.cgminer.access import by_firmware as credential_tables
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.common import Credential
from kuat.collectors.dlms.profile import parse_obis
from kuat.collectors.errors import KuatError
from kuat.quota.grid import GridConnection
from kuat.quota.orders import IssuerKey, load_public_key
from kuat.quota.pools import pool_host


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- secrets ----------------------------------------------------------------------------


class SecretRef(Strict):
    """Where a secret comes from. Exactly one of the three."""

    file: Path | None = None
    credential: str | None = None
    value: SecretStr | None = None

    _resolved: SecretStr | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _exactly_one_and_readable(self) -> SecretRef:
        given = [n for n in ("file", "credential", "value") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of file, credential or value")
        # Read now, so a missing secret is refused at start with the other problems.
        self._resolved = self._read()
        return self

    def get(self) -> str:
        """The secret's text. Call only where it is used; never log it."""
        assert self._resolved is not None
        return self._resolved.get_secret_value()

    def _read(self) -> SecretStr:
        if self.value is not None:
            return self.value
        if self.credential is not None:
            cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
            if not cred_dir:
                raise ValueError(
                    f"credential {self.credential!r} asked for, but $CREDENTIALS_DIRECTORY is not "
                    "set (under systemd: LoadCredential= in the unit; by hand: --credentials-dir "
                    "DIR, a file per credential name)"
                )
            path = Path(cred_dir) / self.credential
        else:
            assert self.file is not None
            path = self.file
        try:
            return SecretStr(path.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None


def _secret(v: Any) -> Any:
    # A bare string is accepted as an inline value: convenient for a lab, discouraged in the docs.
    return {"value": v} if isinstance(v, str) else v


# --- files the run will open: checked at start, so check-config says what the run would hit ----


def _existing(path: Path) -> Path:
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    return path


def _pem_ca(path: Path) -> Path:
    """A CA bundle the TLS client will load: it must exist and parse as PEM certificates."""
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(path))
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable PEM CA certificate: {exc}") from None
    return path


CaFile = Annotated[Path, AfterValidator(_pem_ca)]
ExistingPath = Annotated[Path, AfterValidator(_existing)]


def _http_url(v: str) -> str:
    if not v.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return v.rstrip("/")


class ClientCert(Strict):
    """A TLS client identity: the certificate and its key go together or not at all."""

    # PEM client certificate for TLS client authentication; checked at start that it loads with
    # client_key.
    client_cert: ExistingPath | None = None
    # PEM private key of client_cert (root-only file).
    client_key: ExistingPath | None = None

    @model_validator(mode="after")
    def _cert_pair(self) -> ClientCert:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        if self.client_cert is not None and self.client_key is not None:
            # The TLS handshake would fail on a key that does not match its certificate (or a
            # file that is not PEM): say so now, naming both files, rather than at first connect.
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
                    str(self.client_cert), str(self.client_key)
                )
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(
                    f"client_cert {self.client_cert} and client_key {self.client_key} do not load "
                    f"as a PEM certificate and its key: {exc}"
                ) from None
        return self


class Broker(ClientCert):
    """An MQTT broker kuat talks to over TLS."""

    # Broker host name or address.
    host: str
    # Broker port (8883: MQTT over TLS).
    port: Annotated[int, Field(ge=1, le=65535)] = 8883
    # TLS on (the default); off only for a lab broker on loopback.
    tls: bool = True
    # PEM CA bundle to verify the broker with, instead of the system's; checked at start.
    ca_cert: CaFile | None = None
    # User name, when the broker asks for one.
    username: str | None = None
    # Password for username (a secret).
    password: SecretRef | None = None
    # Stable, so the broker keeps the persistent session (and queued QoS 1 messages) under it.
    client_id: str | None = None
    # MQTT version: "5", or "3.1.1" for a broker that speaks nothing newer (NATS's MQTT listener).
    protocol: Literal["5", "3.1.1"] = "5"
    # More nodes of the same broker cluster, "host:port", tried in turn when the one in use
    # fails (same TLS settings and credentials).
    failover: list[str] = []

    _coerce_password = field_validator("password", mode="before")(_secret)

    @field_validator("failover")
    @classmethod
    def _failover(cls, v: list[str]) -> list[str]:
        for entry in v:
            host, sep, port = entry.rpartition(":")
            if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"failover entry {entry!r} is not host:port")
        return v

    def failover_endpoints(self) -> list[tuple[str, int]]:
        return [
            (e.rpartition(":")[0].strip("[]"), int(e.rpartition(":")[2])) for e in self.failover
        ]


# --- sections ---------------------------------------------------------------------------


class SiteConfig(Strict):
    # The site's id: an InfluxDB tag and an MQTT topic level (a-z, 0-9, '-', '_').
    id: str
    # A name people read: reports and the dashboard.
    name: str = ""
    # BIN (business identification number, 12 digits) of the licensed digital miner.
    owner_bin: str = "000000000000"
    # The digital-mining licence number, for the register and reports.
    licence_number: str = ""
    # Licence sub-type: I owns or holds the data centre, II places its hardware in another's.
    licence_subtype: Literal["I", "II"] = "I"
    # The data centre's id in the register (needed when data_centre_registered).
    data_centre_id: str = ""
    # Checklist item 7: the farm mines from a registered digital-mining data centre.
    data_centre_registered: bool = False
    # The data centre's address, for the register and reports.
    address: str = ""
    # KOREM trading zone of the connection: north-south or west.
    grid_zone: Literal["north-south", "west"] = "north-south"

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        # The id becomes an InfluxDB tag and an MQTT topic level: keep it plain.
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", v):
            raise ValueError("use 1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit")
        return v

    @model_validator(mode="after")
    def _dc_id(self) -> SiteConfig:
        if self.data_centre_registered and not self.data_centre_id.strip():
            raise ValueError("data_centre_registered = true needs the register's data_centre_id")
        return self

    @field_validator("owner_bin")
    @classmethod
    def _bin(cls, v: str) -> str:
        if not re.fullmatch(r"\d{12}", v):
            raise ValueError("a BIN (business identification number) is 12 digits")
        return v


class AgentSection(Strict):
    # Where the spool, outbox, ledger and order book live (systemd StateDirectory=kuat).
    state_dir: Path = Path("/var/lib/kuat")
    # Journal verbosity: debug, info, warning or error.
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Operator messages (status, reports, alerts): kk, ru or en.
    language: Lang = "en"
    # The event loop `kuat run` drives everything on: asyncio (Python's own) or uvloop (pip
    # install 'kuat[uvloop]'), worth it on the largest farms: at 50,000 miners the agent took 62 %
    # of a core on uvloop against 74 % (README, bench/farm_scale.py).
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"

    @field_validator("event_loop")
    @classmethod
    def _loop_installed(cls, v: str) -> str:
        if v == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise ValueError(
                "uvloop is not installed here: pip install 'kuat[uvloop]', or leave event_loop "
                'as "asyncio"'
            )
        return v


class Intervals(Strict):
    """Seconds between runs of each job."""

    # Seconds between polls of every miner.
    asic: Annotated[float, Field(ge=1, le=3600)] = 60
    # Seconds between polls of every PDU.
    pdu: Annotated[float, Field(ge=1, le=3600)] = 30
    # Seconds between polls of the Modbus meters (a meter's own interval_s may differ).
    meter: Annotated[float, Field(ge=0.5, le=600)] = 5
    # Seconds between quota evaluations when no site-meter reading triggers one.
    quota: Annotated[float, Field(ge=1, le=600)] = 10
    # Seconds between register inventory snapshots and change events.
    inventory: Annotated[float, Field(ge=5, le=86400)] = 300
    # Seconds between telemetry flushes from the spool to InfluxDB.
    flush: Annotated[float, Field(ge=1, le=600)] = 10


class MinerLocation(Strict):
    # Hall of the miners in the group (the register's location).
    hall: str = ""
    # Rack of the miners in the group.
    rack: str = ""
    # Slot, when a group is a single miner.
    slot: str = ""


class MinerGroup(Strict):
    """A set of miners sharing a port and location prefix.

    ``hosts`` entries are an address, a CIDR block (``10.1.0.0/24``, network and broadcast
    addresses left out) or an inclusive range (``10.1.0.10-10.1.0.60``).
    """

    # Miners: addresses, CIDR blocks (network and broadcast left out) or inclusive a-b ranges.
    hosts: Annotated[list[str], Field(min_length=1)]
    # The miners' cgminer API port.
    port: Annotated[int, Field(ge=1, le=65535)] = 4028
    # Where the group stands: hall, rack, slot.
    location: MinerLocation = MinerLocation()

    @field_validator("hosts")
    @classmethod
    def _hosts_parse(cls, v: list[str]) -> list[str]:
        for h in v:
            expand_hosts(h)  # raises ValueError naming the bad entry
        return v

    # the (address, port) pairs, made once: the agent's poll list and the inventory's
    # locations hold the same ones, not a copy each (issue 15: ~6 MB at 50,000 miners)
    _targets: tuple[tuple[str, int], ...] | None = PrivateAttr(default=None)

    def targets(self) -> list[tuple[str, int]]:
        if self._targets is None:
            self._targets = tuple((ip, self.port) for h in self.hosts for ip in expand_hosts(h))
        return list(self._targets)


# --- miner credentials: the tables the firmware backends declare -----------------------------
#
# Each backend (collectors/cgminer/firmware/<name>.py) declares the credentials it needs as
# ``Credential``s: name, default, which firmware table and key. The tables below are built from
# those declarations, so a new firmware brings its own keys and nothing here changes.


def _credential_field(c: Credential) -> tuple[Any, Any]:
    if c.secret:
        return SecretRef, Field(SecretRef(value=SecretStr(str(c.default))), description=c.doc)
    if c.port is not None:
        return Annotated[int, Field(ge=1, le=65535)], Field(c.default, description=c.doc)
    return type(c.default), Field(c.default, description=c.doc)


def _firmware_table(firmware: Firmware, declared: Mapping[str, Credential]) -> type[Strict]:
    secrets = [k for k, c in declared.items() if c.secret]
    validators = {"_coerce": field_validator(*secrets, mode="before")(_secret)} if secrets else {}
    fields: dict[str, Any] = {k: _credential_field(c) for k, c in declared.items()}
    model: type[Strict] = create_model(
        f"{firmware.name.title().replace('_', '')}Credentials",
        __base__=Strict,
        __doc__=f"What kuat needs to reach {firmware.value} miners beyond their API, as the "
        f"{firmware.value} backend declares it; unset keys keep the firmware's factory default.",
        __validators__=validators,
        **fields,
    )
    return model


def _credentials_model() -> type[Strict]:
    tables = {f: _firmware_table(f, d) for f, d in credential_tables().items()}
    fields: dict[str, Any] = {f.value: (m, Field(default_factory=m)) for f, m in tables.items()}
    model: type[Strict] = create_model(
        "AsicCredentials",
        __base__=Strict,
        __doc__="Passwords, accounts and ports per firmware, one table each "
        "([asic.credentials.<firmware>]), used to read what a miner's API lacks and to curtail "
        "([quota] enforce = true). Leave out what still has its factory default; secrets as "
        "everywhere ({ file = ... } or { credential = ... }). The old flat [asic] keys "
        "(web_password and the like) still work, with a warning.",
        **fields,
    )
    return model


if TYPE_CHECKING:
    AsicCredentials = Strict
else:
    AsicCredentials = _credentials_model()


def web_ports_at(port: int) -> dict[str, dict[str, int]]:
    """[asic.credentials] tables that put every firmware's own web API port at ``port`` (a
    simulated farm serves them all on one)."""
    out: dict[str, dict[str, int]] = {}
    for f, declared in credential_tables().items():
        for key, c in declared.items():
            if c.port == "web":
                out.setdefault(f.value, {})[key] = port
    return out


def _old_key_names() -> dict[str, tuple[str, str]]:
    """Old [asic] key (a credential's MinerAccess name) -> (firmware, key) it now goes by."""
    return {c.name: (f.value, key) for f, d in credential_tables().items() for key, c in d.items()}


def _move_old_keys(data: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    old = _old_key_names()
    found = [k for k in data if k in old]
    if not found:
        return data, []
    data = dict(data)
    creds = data.get("credentials", {})
    if not isinstance(creds, dict):
        return data, []  # the table itself is wrong: validation says so
    creds = dict(creds)
    renamed: list[tuple[str, str]] = []
    for name in found:
        firmware, key = old[name]
        table = creds.get(firmware, {})
        if not isinstance(table, dict):
            continue
        new = f"asic.credentials.{firmware}.{key}"
        if key in table:
            raise ValueError(f"asic.{name} and {new} are the same setting: keep only {new}")
        creds[firmware] = {**table, key: data.pop(name)}
        renamed.append((f"asic.{name}", new))
    data["credentials"] = creds
    return data, renamed


def _old_loc(loc: tuple[str | int, ...], given: Any) -> tuple[str | int, ...]:
    """An error in a credential the config wrote under its old [asic] key names that key."""
    if len(loc) < 4 or loc[:2] != ("asic", "credentials") or not isinstance(given, dict):
        return loc
    for name, (firmware, key) in _old_key_names().items():
        if loc[2:4] == (firmware, key) and name in given:
            return ("asic", name, *loc[4:])
    return loc


class AsicSection(Strict):
    # Per-miner deadline for one full poll: past it the miner is reported down.
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 3.0
    # "auto": sized from the cycle budget (see agent.sizing), or a fixed number of miners at once.
    concurrency: Annotated[int, Field(ge=1, le=10_000)] | Literal["auto"] = "auto"
    # Share of [intervals] asic over which a cycle's polls are spread (miner i of N starts at
    # i/N of it), so a large farm is read at an even pace instead of in one burst at the cycle's
    # start; 0 polls them all at once. The last polls still leave timeout_s before the next cycle,
    # and the first cycle after a start polls every miner at once (discovery, the inventory).
    spread: Annotated[float, Field(ge=0, le=0.95)] = 0.8
    # A miner that floods is cut off after this many bytes of one reply.
    max_reply_bytes: Annotated[int, Field(ge=4096, le=16 * 1024 * 1024)] = 65536
    # The miners' web port, where firmware without its own port setting serves its web UI or
    # API (stock Antminers tell serial and MAC only there: kuat asks once per
    # identity_interval_s, in the background). web_port = 0 turns the stock web UI's off.
    web_port: Annotated[int, Field(ge=0, le=65535)] = 80
    # Seconds between identity fetches (serial, MAC) from a miner's web or REST API.
    identity_interval_s: Annotated[float, Field(ge=60)] = 3600.0
    # Passwords, accounts and ports per firmware, as [asic.credentials.<firmware>].
    credentials: AsicCredentials = Field(default_factory=AsicCredentials)
    # The miners, as [[asic.groups]].
    groups: list[MinerGroup] = []

    # the old [asic] keys a run was given, each with the key it now goes by
    _renamed: tuple[tuple[str, str], ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _old_credential_keys(cls, data: Any, handler: Any) -> AsicSection:
        """A credential written the old way, as an [asic] key named after its MinerAccess field
        (``web_password``), is read into its firmware's table and remembered as renamed."""
        if not isinstance(data, dict):
            return handler(data)  # a section already made keeps what it was told
        data, renamed = _move_old_keys(data)
        section = handler(data)
        assert isinstance(section, AsicSection)
        section._renamed = tuple(renamed)
        return section

    def renamed_keys(self) -> tuple[tuple[str, str], ...]:
        """(old key, new key) for every deprecated credential key the config used."""
        return self._renamed

    def miner_access(self) -> MinerAccess:
        """How kuat reaches each firmware's miners: every credential set here, the rest at the
        defaults their backends declare."""
        given: dict[str, Any] = {}
        for firmware, declared in credential_tables().items():
            table = getattr(self.credentials, firmware.value)
            for key, c in declared.items():
                value = getattr(table, key)
                given[c.name] = value.get() if isinstance(value, SecretRef) else value
        # web_port = 0 turns off reading the stock web UI, not the web port writes go to
        given["web_port"] = self.web_port or MinerAccess.default("web_port")
        return MinerAccess(**given)


class SnmpV3(Strict):
    # SNMPv3 user (authPriv).
    user: str
    # Authentication passphrase (a secret).
    auth_key: SecretRef
    # Privacy (encryption) passphrase (a secret).
    priv_key: SecretRef
    # Authentication protocol.
    auth_proto: Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"] = "SHA"
    # Privacy protocol.
    priv_proto: Literal["DES", "AES", "AES192", "AES256"] = "AES"
    # SNMPv3 context name, when the PDU needs one.
    context: str = ""

    _coerce = field_validator("auth_key", "priv_key", mode="before")(_secret)


class PduConfig(Strict):
    # The PDU's name: its device id in telemetry, the register and the dashboard.
    name: str
    # The PDU's address.
    host: str
    # SNMP port.
    port: Annotated[int, Field(ge=1, le=65535)] = 161
    # MIB layout: auto (by sysObjectID), apc, raritan, sentry4, eaton, vertiv, or a profile file.
    profile: str = "auto"
    # SNMPv2c community (a secret); or [pdu.v3] for SNMPv3 authPriv.
    community: SecretRef | None = None
    # SNMPv3 authPriv credentials, instead of a community.
    v3: SnmpV3 | None = None
    # The deadline of one whole poll (every column walked): past it the PDU is reported down.
    # A 650-varbind walk of a busy PDU takes seconds; the PDU job waits for this, not less.
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 10.0
    # Outlet index -> the miner it feeds, "ip" or "ip:port" (cgminer API port, 4028 if not
    # given): lets curtailment cut a miner that cannot sleep. Normalised to "ip:port".
    outlets: dict[int, str] = {}

    _coerce = field_validator("community", mode="before")(_secret)

    @field_validator("outlets", mode="before")
    @classmethod
    def _outlets(cls, v: object) -> object:
        # TOML table keys are always strings: "1" = "10.20.1.5" must become outlet 1
        if not isinstance(v, dict):
            return v
        out: dict[int, str] = {}
        for key, value in v.items():
            try:
                index = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"outlet key {key!r} is not an outlet number") from None
            if index < 1:
                raise ValueError(f"outlet {index}: outlet numbers start at 1")
            if not isinstance(value, str):
                raise ValueError(f'outlet {index}: give the miner as "ip" or "ip:port"')
            host, port = miner_address(value)
            out[index] = f"{host}:{port}"
        if len(set(out.values())) < len(out):
            raise ValueError("a miner is listed under two outlets of the same PDU")
        return out

    def outlet_targets(self) -> dict[tuple[str, int], int]:
        """(miner ip, port) -> the outlet feeding it."""
        return {miner_address(addr): index for index, addr in self.outlets.items()}

    @model_validator(mode="after")
    def _one_auth(self) -> PduConfig:
        if (self.community is None) == (self.v3 is None):
            raise ValueError("give either community (SNMPv2c) or [v3] (SNMPv3 authPriv)")
        return self


_DLMS_KEYS = (
    "transport",
    "client_address",
    "server_address",
    "physical_address",
    "password",
    "encryption_key",
    "authentication_key",
    "system_title",
    "invocation_counter_obis",
)


class MeterConfig(Strict):
    """A meter. ``role``: ``commercial`` is the settlement (tariff) meter, usually DLMS/COSEM,
    read slowly, its load profile reconciled with kuat's ledger after each hour; ``site`` is
    the fast operational meter of the whole site the quota paces on; ``feeder`` meters a part.
    """

    # The meter's name: its device id in telemetry, the ledger and reports.
    name: str
    host: str = ""  # TCP address; a meter on a serial line gives serial_port instead
    # modbus (TCP, RTU over TCP, RTU on a serial line) or dlms (DLMS/COSEM, IEC 62056).
    protocol: Literal["modbus", "dlms"] = "modbus"
    port: Annotated[int, Field(ge=1, le=65535)] = 502  # 4059 for dlms (IEC 62056-47)
    unit: Annotated[int, Field(ge=0, le=255)] = 1  # Modbus unit id
    # Modbus RTU: on an RS-485 line (serial_port, e.g. /dev/ttyUSB0), or RTU frames over TCP
    # through a transparent gateway (framing = "rtu"). Meters on one line share it: one hub
    # owns it and polls their units in turn.
    framing: Literal["socket", "rtu"] = "socket"
    # The RS-485 line of a Modbus RTU meter, e.g. /dev/ttyUSB0 (instead of host).
    serial_port: str | None = None
    # Serial line speed.
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    # Serial parity: N, E or O.
    parity: Literal["N", "E", "O"] = "N"
    # Serial stop bits.
    stopbits: Literal[1, 2] = 1
    # Serial data bits.
    bytesize: Literal[7, 8] = 8
    gap_s: Annotated[float, Field(ge=0, le=1)] = 0.0  # silence kept between two requests
    profile: str = "schneider-pm5560"  # "spodes" for dlms; or a profile file
    # commercial (the settlement meter), site (the whole site, fast: the quota paces on it) or
    # feeder (a part).
    role: Literal["commercial", "site", "feeder"] = "site"
    # The deadline of one poll of this meter: past it the meter is reported down.
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    # Seconds between polls of this meter when slower than [intervals] meter (a tariff meter
    # serves one association at a time and is read by others too); dlms default 30.
    interval_s: Annotated[float, Field(ge=0.5, le=3600)] | None = None
    # DLMS/COSEM: "tcp" wrapper, or "hdlc" through a TCP gateway in front of its port; a dlms
    # meter with serial_port speaks HDLC on that line (baudrate, parity... as above).
    transport: Literal["tcp", "hdlc"] = "tcp"
    client_address: Annotated[int, Field(ge=1, le=127)] = 16  # 16 public; SPODES LLS reader 32
    # DLMS server (logical device) address.
    server_address: Annotated[int, Field(ge=0, le=16383)] = 1
    physical_address: Annotated[int, Field(ge=0, le=16383)] | None = None  # HDLC lower address
    password: SecretRef | None = None  # low-level security (LLS)
    # High-level security (HLS-GMAC, suite 0) with ciphering, where the meter demands it: the
    # global unicast encryption (block cipher) key, 32 hex digits (a secret).
    encryption_key: SecretRef | None = None
    # HLS-GMAC: the authentication key, 32 hex digits (a secret); with encryption_key.
    authentication_key: SecretRef | None = None
    # HLS-GMAC: kuat's own system title, 16 hex digits (8 bytes), as the meter is set up to know.
    system_title: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{16}$")] = "4B55410000000001"
    # HLS-GMAC: the meter's record of the last client invocation counter, read by the public
    # client before the first ciphered session so kuat continues above it ("" : not read).
    invocation_counter_obis: str = "0.0.43.1.0.255"
    # Reconciliation of a commercial meter's closed hour with kuat's ledger: an alarm beyond
    # max(tolerance_kwh, tolerance_fraction x the meter's figure).
    tolerance_kwh: Annotated[float, Field(ge=0)] = 1.0
    # Reconciliation tolerance as a fraction of the meter's hourly figure (with tolerance_kwh).
    tolerance_fraction: Annotated[float, Field(ge=0, le=1)] = 0.01

    _coerce = field_validator("password", "encryption_key", "authentication_key", mode="before")(
        _secret
    )

    @model_validator(mode="before")
    @classmethod
    def _protocol_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("role") == "submeter":  # the name before feeder
            data["role"] = "feeder"
        if data.get("protocol") == "dlms":
            data.setdefault("port", 4059)
            data.setdefault("profile", "spodes")
            data.setdefault("timeout_s", 5.0)
            data.setdefault("interval_s", 30.0)
        else:
            given = [k for k in _DLMS_KEYS if k in data]
            if given:
                raise ValueError(f'{", ".join(given)}: DLMS keys, but protocol is not "dlms"')
        return data

    @model_validator(mode="after")
    def _where(self) -> MeterConfig:
        if self.protocol == "dlms":
            if bool(self.host) == bool(self.serial_port):
                raise ValueError(
                    "a dlms meter needs host (its TCP address or its gateway's) or serial_port "
                    "(HDLC on an RS-485 line), one of them"
                )
            self._hls_keys()  # refused at start, not at the first poll
            if self.invocation_counter_obis:
                try:
                    parse_obis(self.invocation_counter_obis)
                except ValueError as exc:
                    raise ValueError(f"invocation_counter_obis: {exc}") from None
        if self.protocol == "modbus" and bool(self.host) == bool(self.serial_port):
            raise ValueError("give either host (Modbus/TCP) or serial_port (RS-485), not both")
        if self.serial_port and self.framing != "socket" and self.protocol == "modbus":
            raise ValueError("framing is for TCP links; a serial_port is always RTU")
        return self

    def hls_keys(self) -> tuple[bytes, bytes] | None:
        """(encryption key, authentication key) for HLS-GMAC, or None. ValueError naming the
        key (never its value) when one is missing or not 16 bytes of hex."""
        return self._hls_keys()

    def _hls_keys(self) -> tuple[bytes, bytes] | None:
        given = [k for k in ("encryption_key", "authentication_key") if getattr(self, k)]
        if not given:
            return None
        if len(given) == 1:
            other = ({"encryption_key", "authentication_key"} - set(given)).pop()
            raise ValueError(f"{given[0]} is given without {other}: HLS-GMAC needs both")
        if self.password is not None:
            raise ValueError("password (LLS) and HLS-GMAC keys exclude each other: give one")
        keys = []
        for name in ("encryption_key", "authentication_key"):
            ref: SecretRef = getattr(self, name)
            text = ref.get().replace(" ", "")
            try:
                key = bytes.fromhex(text)
            except ValueError:
                key = b""
            if len(key) != 16:
                raise ValueError(f"{name} must be 32 hex digits (16 bytes, security suite 0)")
            keys.append(key)
        return keys[0], keys[1]


class QuotaHttpSection(ClientCert):
    """The energy company's schedule endpoint, polled with If-None-Match."""

    # The schedules' URL (https://); fetched with If-None-Match, so an unchanged body is a 304.
    url: str
    # Signed curtailment orders from the same company (a JSON list of orders), optional.
    orders_url: str | None = None
    # Bearer token the endpoint asks for (a secret).
    token: SecretRef | None = None
    # Seconds between fetches (a Retry-After from the server is honoured).
    interval_s: Annotated[float, Field(ge=10, le=86400)] = 300.0
    # Deadline of one request.
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    # Verify the server's certificate (keep on).
    verify_tls: bool = True
    # PEM CA bundle to verify the server with, instead of the system's; checked at start.
    ca_cert: CaFile | None = None

    _coerce = field_validator("token", mode="before")(_secret)
    _url = field_validator("url", "orders_url")(_http_url)


class QuotaMqttSection(Broker):
    """The energy company's broker: schedules and orders pushed to the farm, quota results back."""

    # Topic prefix: schedules on {topic_prefix}/{site}/schedule, orders on .../orders.
    topic_prefix: str = "kz/quota/v1"
    # Publish the quota results for the energy company on this broker: each closed hour once on
    # {topic_prefix}/{site}/hours, the current hour on .../state (retained). The broker's ACL
    # must let this client publish there.
    publish_results: bool = True
    # Seconds between two states of the current hour (closed hours go out once each).
    results_interval_s: Annotated[float, Field(ge=5, le=3600)] = 60.0


class OrdersSection(Strict):
    """Curtailment orders: who may sign them; unlisted issuers are refused."""

    # HMAC-SHA256 issuers: issuer name -> shared key (a secret, at least 16 bytes).
    issuers: dict[str, SecretRef] = {}
    # Ed25519 issuers: issuer name -> public key (PEM, 64 hex digits or base64 of the raw 32
    # bytes) or { file = "/etc/kuat/keys/NAME.pub" }. Not a secret, and nothing on the farm can
    # forge an order with it: preferred over a shared key. An issuer is in one table only.
    public_keys: dict[str, str] = {}
    # A directory of signed order files (JSON), reread when they change: the way an order
    # arrives when the dispatcher emails it or a script drops it on the host.
    directory: ExistingPath | None = None
    # An order that starts further ahead than this many hours is refused.
    max_ahead_h: Annotated[float, Field(gt=0, le=168)] = 48.0
    # Clock difference tolerated between the issuer and the farm when judging an order's times.
    max_skew_s: Annotated[float, Field(ge=0, le=3600)] = 300.0

    @field_validator("issuers", mode="before")
    @classmethod
    def _coerce_keys(cls, v: object) -> object:
        return {k: _secret(s) for k, s in v.items()} if isinstance(v, dict) else v

    @field_validator("public_keys", mode="before")
    @classmethod
    def _read_key_files(cls, v: object) -> object:
        if not isinstance(v, dict):
            return v
        out: dict[object, object] = {}
        for name, key in v.items():
            if isinstance(key, dict) and set(key) == {"file"}:
                try:
                    key = Path(str(key["file"])).read_text("ascii")
                except (OSError, UnicodeDecodeError) as exc:
                    raise ValueError(f"public key of issuer {name!r}: {exc}") from None
            out[name] = key
        return out

    @model_validator(mode="after")
    def _long_keys(self) -> OrdersSection:
        short = [k for k, ref in self.issuers.items() if len(ref.get().encode()) < 16]
        if short:
            raise ValueError(f"order keys must be at least 16 bytes: {', '.join(short)}")
        both = sorted(self.issuers.keys() & self.public_keys.keys())
        if both:
            # Which algorithm would an order of theirs be checked with? The config must say.
            raise ValueError(f"issuer in both issuers and public_keys: {', '.join(both)}")
        for name, text in self.public_keys.items():
            try:
                load_public_key(text)
            except ValueError as exc:
                raise ValueError(f"public key of issuer {name!r}: {exc}") from None
        return self

    def issuer_keys(self) -> dict[str, IssuerKey]:
        """Every issuer's key as ``verify_order`` takes it (HMAC bytes or an Ed25519 key)."""
        keys: dict[str, IssuerKey] = {n: ref.get().encode() for n, ref in self.issuers.items()}
        keys.update((n, load_public_key(t)) for n, t in self.public_keys.items())
        return keys


class QuotaSection(Strict):
    # A file, or a directory of files (one per day and source), in the formats of
    # quota.schedule: the agent rereads a file when it changes.
    schedules: ExistingPath | None = None
    # Warn when the hour's forecast passes this fraction of its allocation.
    warn_fraction: Annotated[float, Field(gt=0, le=1)] = 0.95
    # kWh over the allocation that still counts as within it (the contract's tolerance).
    tolerance_kwh: Annotated[float, Field(ge=0)] = 0.0
    # Curtailment: the plan is always made and logged; commands go out only with enforce.
    enforce: bool = False
    # A miner woken stays on at least this long before it may be put to sleep again.
    min_on_s: Annotated[float, Field(ge=0, le=86400)] = 600.0
    # A miner put to sleep stays off at least this long before it may be woken.
    min_off_s: Annotated[float, Field(ge=0, le=86400)] = 600.0
    # Miners are restored only while this much headroom below the allowed power remains.
    hysteresis_kw: Annotated[float, Field(ge=0)] = 20.0
    # kW kept in reserve below the allowed power when planning a cut.
    margin_kw: Annotated[float, Field(ge=0)] = 0.0
    # Power limits before sleep, on firmware with a power target (README: the firmware table):
    # off, only sleep (and outlets) are used.
    power_limit: bool = True
    # A power-limit step, in percent of the miner's full power.
    power_limit_step_pct: Annotated[float, Field(gt=0, le=50)] = 10.0
    # The lowest power limit, in percent of full power; below it the miner is put to sleep.
    power_limit_min_pct: Annotated[float, Field(ge=10, lt=100)] = 60.0
    # At least this long between two power-limit changes of one miner.
    power_limit_hold_s: Annotated[float, Field(ge=0, le=86400)] = 120.0
    # The horizon rule (README, "Curtailment"): a restore less than this many seconds before
    # the hour's end must also fit the next hour's allocation, else it is held.
    wake_min_run_s: Annotated[float, Field(ge=0, le=3600)] = 600.0
    # Decisions use the median metered load of this many seconds of readings (0: the last one).
    decision_window_s: Annotated[float, Field(ge=0, le=300)] = 10.0
    # An excursion from that median is believed once it has lasted this long (seconds: a
    # shorter spike is ignored, a step acts after it) ...
    spike_s: Annotated[float, Field(ge=0, le=60)] = 2.0
    # ... or at once when its energy away from the median exceeds this (kWh).
    spike_kwh: Annotated[float, Field(ge=0)] = 0.05
    # Metered / sum of the miners' power (cooling, losses); left out: learned from the meter.
    overhead_factor: Annotated[float, Field(ge=1.0, le=1.5)] | None = None
    http: QuotaHttpSection | None = None
    mqtt: QuotaMqttSection | None = None
    orders: OrdersSection = OrdersSection()


class GridSection(Strict):
    """Technical conditions of the grid connection (inspection checklist item 5)."""

    # Number of the technical conditions for the connection (checklist item 5).
    tc_number: str = ""
    # Date of the technical conditions.
    tc_date: date | None = None
    # The energy transmitting organization that issued them.
    issuer: str = ""
    # The transformer substation the farm is connected at.
    substation: str = ""
    # Connection voltage in kV (item 5 asks for 35 kV or more).
    voltage_kv: Annotated[float, Field(gt=0)]
    # Permitted capacity in MW (item 5 asks for 1 MW or more); measured demand is checked against
    # it.
    permitted_mw: Annotated[float, Field(gt=0)]
    # Date the farm was connected: before 2023-04-01 the 35 kV / 1 MW thresholds do not apply.
    connected_on: date
    # Generation not connected to the unified power system: outside item 5.
    off_grid: bool = False

    def connection(self) -> GridConnection:
        return GridConnection(
            tc_number=self.tc_number,
            tc_date=self.tc_date,
            issuer=self.issuer,
            substation=self.substation,
            voltage_kv=self.voltage_kv,
            permitted_mw=self.permitted_mw,
            connected_on=self.connected_on,
            off_grid=self.off_grid,
        )


class BalanceSection(Strict):
    """Meter vs registered devices: load no registered device explains raises an alarm."""

    overhead_kw: Annotated[float, Field(ge=0)] = 0.0  # cooling, lighting, network
    overhead_fraction: Annotated[float, Field(ge=0, le=1)] = 0.03  # PSU and cable losses
    # Unexplained load below this many kW is no alarm.
    tolerance_kw: Annotated[float, Field(ge=0)] = 5.0
    # Nor below this fraction of the metered load.
    tolerance_fraction: Annotated[float, Field(ge=0, le=1)] = 0.03
    # Only when every outlet feeding the site is on a listed PDU is their sum comparable.
    pdus_cover_site: bool = False
    # Unexplained load is an alarm once it has lasted this many seconds: while miners switch,
    # the meter's and the miners' readings are seconds apart and differ for a moment.
    alarm_after_s: Annotated[float, Field(ge=0, le=3600)] = 60.0


class PoolWrite(Strict):
    """One accredited pool that ``fix_pools`` writes to a miner found off the accredited pools."""

    # Stratum URL of the pool; its host must be one of accredited_pools.
    url: Annotated[str, Field(min_length=1)]
    # User the miner mines under at that pool; "{worker}" in it becomes the miner's own worker
    # name (what follows the first "." of the user it mines under now, else its address).
    user: Annotated[str, Field(min_length=1)]
    # Pool password (most pools ignore it; a secret).
    password: SecretRef = SecretRef(value=SecretStr("x"))

    _coerce = field_validator("password", mode="before")(_secret)


class ComplianceSection(Strict):
    # Checklist item 7: host names of the accredited Kazakh pools the miners may mine through.
    accredited_pools: list[str] = []
    # Checklist item 7's fix: a miner found mining on a pool that is not accredited gets `pools`
    # written through its firmware's own write path and read back; only with [quota] enforce =
    # true, otherwise the plan is logged.
    fix_pools: bool = False
    # The pools fix_pools writes, in priority order (most firmware keeps the first three).
    pools: list[PoolWrite] = []

    @model_validator(mode="after")
    def _fix_pools_accredited(self) -> ComplianceSection:
        if self.fix_pools and not self.pools:
            raise ValueError("fix_pools = true needs at least one [[compliance.pools]] to write")
        allowed = {h for h in (pool_host(a) for a in self.accredited_pools) if h}
        for i, p in enumerate(self.pools):
            host = pool_host(p.url)
            if host is None or host not in allowed:
                raise ValueError(
                    f"pools[{i}].url {p.url!r}: its host is not in accredited_pools, so writing"
                    " it would not fix item 7"
                )
        return self


class InfluxSection(Strict):
    # InfluxDB 2.x/3.x or VictoriaMetrics base URL (http:// or https://); credentials in it are
    # never logged.
    url: str
    # InfluxDB organization (InfluxDB 2.x).
    org: str = ""
    # Bucket (InfluxDB 2.x), database (InfluxDB 3) or ignored (VictoriaMetrics).
    bucket: str = "kuat"
    # API token (a secret).
    token: SecretRef | None = None
    # Verify the server's certificate (keep on).
    verify_tls: bool = True
    # PEM CA bundle to verify the server with; checked at start.
    ca_cert: CaFile | None = None
    # Deadline of one write request.
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    # Lines per write request.
    batch_lines: Annotated[int, Field(ge=1, le=100_000)] = 5000

    _coerce = field_validator("token", mode="before")(_secret)
    _url = field_validator("url")(_http_url)


class TelemetryTarget(InfluxSection):
    """One more database the telemetry goes to (the energy company's, say), beside [influx].

    Each target has a spool of its own (telemetry-NAME.db under the state directory): its own
    position, back-off, size cap and dead letters, so one slow or unreachable target never holds
    the other back. Lines are copied to each target's spool as they are recorded.
    """

    # A short name (a-z, 0-9, '-', '_'): the spool file, the logs and the metrics say it.
    name: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")]
    # Measurements this target receives (e.g. ["quota", "meter", "settlement"]); empty: all.
    measurements: list[str] = []
    # Lines kept while this target is unreachable; beyond it its oldest are dropped and counted.
    max_rows: Annotated[int, Field(ge=1000)] = 1_000_000


class MqttSection(Broker):
    """The register's broker."""

    # Topic prefix of the register messages (the site id follows).
    topic_prefix: str = "kz/hsc-register/v1"
    # How long the register history behind `kuat register export --since` keeps events: a
    # yearly filing needs a year and some slack.
    history_retention_days: Annotated[int, Field(ge=30, le=3650)] = 400


class SpoolSection(Strict):
    # Telemetry lines kept while InfluxDB is unreachable; beyond it the oldest are dropped, counted
    # and alerted.
    max_rows: Annotated[int, Field(ge=1000)] = 5_000_000


class DashboardSection(Strict):
    """The agent's own read-only web page, /api/status, /api/miners, /api/curtailment, /healthz
    and /metrics (agent.dashboard).

    Loopback by default: the page shows the farm's layout and faults, so exposing it on the farm
    LAN is a decision the operator writes down ("0.0.0.0:9120"), never a default.
    """

    listen: str = "127.0.0.1:9120"  # host:port; "" turns the dashboard off
    # The token a client must present (required when listen is not a loopback address): a file
    # { file = "/etc/kuat/secrets/dashboard-token" } or a systemd credential
    # { credential = "dashboard-token" }; at least 16 characters; never logged. A browser opens
    # /?token=… once (kept as a cookie); scripts send "Authorization: Bearer …".
    token: SecretRef | None = None
    # Host names the dashboard answers to besides its listen address (e.g. ["kuat.farm.lan"]);
    # a request naming any other Host is refused, so a web page cannot read it by DNS rebinding.
    hosts: list[str] = []

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        listen_address(v)  # raises ValueError saying what is wrong
        return v

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        out = []
        for name in v:
            n = name.strip().lower().rstrip(".")
            if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", n):
                raise ValueError(f"{name!r}: give a host name alone (no scheme, port or wildcard)")
            out.append(n)
        return out

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> DashboardSection:
        address = self.address()
        if address is not None and not is_loopback(address[0]) and self.token is None:
            raise ValueError(
                f"listen = {self.listen!r} is beyond loopback: give token = "
                '{ file = "..." } or { credential = "..." } so only those who hold it can read '
                "the dashboard"
            )
        if self.token is not None and self.token.value is not None:
            # the config file is read by more people than the secrets directory
            raise ValueError("token: give it as { file = ... } or { credential = ... }, not inline")
        if self.token is not None and len(self.token.get()) < MIN_TOKEN_CHARS:
            raise ValueError(f"token: at least {MIN_TOKEN_CHARS} characters (it guards the farm)")
        return self

    def address(self) -> tuple[str, int] | None:
        return listen_address(self.listen)


def _is_user_seed(seed: str) -> bool:
    import nkeys  # nats-py's own NKey library, only when a seed is configured

    try:
        pair = nkeys.from_seed(bytearray(seed.strip().encode()))
    except (nkeys.NkeysError, ValueError, TypeError):
        return False
    return bool(pair.public_key.startswith(b"U"))


class ClusterSection(ClientCert):
    """This agent's share of a site split across several agents, coordinated through NATS: one
    of them (the controller, elected through a lease) gives each its power cap."""

    # This agent's id, unique on the site: the lease holder's name, the shard a cap is for, and
    # the `agent` tag on every telemetry line.
    agent_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    # The NATS cluster's nodes, "nats://host:port" (tls://host:port with TLS); the client
    # reconnects to another one when the node in use fails.
    servers: Annotated[list[str], Field(min_length=1)]
    # TLS on (the default); off only for a lab cluster on loopback.
    tls: bool = True
    # PEM CA bundle to verify the NATS servers with, instead of the system's; checked at start.
    ca_cert: CaFile | None = None
    # User name, when the NATS servers ask for one.
    username: str | None = None
    # Password for username (a secret).
    password: SecretRef | None = None
    # A NATS credentials file (.creds: the user JWT and its NKey seed, as `nsc` writes it) for
    # servers in operator/JWT mode; a secret: { credential = "nats-creds" } under systemd, or
    # { file = "/etc/kuat/secrets/kuat.creds" }. Instead of username/password or nkey_seed.
    credentials: SecretRef | None = None
    # The NKey seed ("SU...") of a user the servers list by its public key
    # (authorization { users = [{ nkey: "U..." }] }); a secret. Instead of username/password.
    nkey_seed: SecretRef | None = None
    # JetStream key-value bucket of the controller lease (one per site).
    bucket: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = "kuat_lease"
    # Copies of the lease bucket: 3 on a three-node cluster, 1 on a single server.
    replicas: Annotated[int, Field(ge=1, le=5)] = 3
    # Seconds a lease lives unless renewed (renewed every third of it): a dead controller is
    # replaced within lease_ttl_s + lease_ttl_s / 3.
    lease_ttl_s: Annotated[float, Field(ge=2, le=600)] = 15.0
    # Seconds a shard keeps planning inside its last cap once the controller goes quiet.
    cap_hold_s: Annotated[float, Field(ge=0, le=86400)] = 120.0
    # The cap (kW) a shard plans inside when it has heard no controller for cap_hold_s: what
    # this shard may draw without anyone watching the site's hour.
    safe_default_kw: Annotated[float, Field(ge=0)] = 0.0
    # This agent's halls: the [[asic.groups]] whose location.hall is listed (none: every hall).
    halls: list[str] = []
    # This agent's miners by address: addresses, CIDR blocks or a-b ranges, as in
    # [[asic.groups]] hosts (none: no filter by address).
    hosts: list[str] = []

    _coerce_password = field_validator("password", "credentials", "nkey_seed", mode="before")(
        _secret
    )

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> ClusterSection:
        ways = [
            name
            for name, given in (
                ("username", self.username is not None or self.password is not None),
                ("credentials", self.credentials is not None),
                ("nkey_seed", self.nkey_seed is not None),
            )
            if given
        ]
        if len(ways) > 1:
            raise ValueError(f"give one of username/password, credentials or nkey_seed, not {ways}")
        # Checked now so a wrong file is named at start, never its contents (a secret).
        if self.nkey_seed is not None and not _is_user_seed(self.nkey_seed.get()):
            raise ValueError("nkey_seed is not a NATS user NKey seed (one line starting SU)")
        if self.credentials is not None:
            text = self.credentials.get()
            if "BEGIN NATS USER JWT" not in text or "BEGIN USER NKEY SEED" not in text:
                raise ValueError(
                    "credentials is not a NATS .creds file (a user JWT and an NKey seed block)"
                )
        return self

    @field_validator("servers")
    @classmethod
    def _servers(cls, v: list[str]) -> list[str]:
        for url in v:
            scheme, sep, rest = url.partition("://")
            if not sep or scheme not in ("nats", "tls") or not rest:
                raise ValueError(
                    f"servers entry {url!r} is not nats://host:port or tls://host:port"
                )
        return v

    @field_validator("hosts")
    @classmethod
    def _hosts_parse(cls, v: list[str]) -> list[str]:
        for h in v:
            expand_hosts(h)
        return v

    def owns(self, group: MinerGroup) -> list[tuple[str, int]]:
        """The targets of ``group`` in this agent's share."""
        if self.halls and group.location.hall not in self.halls:
            return []
        targets = group.targets()
        if self.hosts:
            mine = {ip for h in self.hosts for ip in expand_hosts(h)}
            targets = [t for t in targets if t[0] in mine]
        return targets


class KuatConfig(Strict):
    site: SiteConfig
    agent: AgentSection = AgentSection()
    intervals: Intervals = Intervals()
    asic: AsicSection = AsicSection()
    pdu: list[PduConfig] = []
    meter: list[MeterConfig] = []
    quota: QuotaSection = QuotaSection()
    grid: GridSection | None = None
    compliance: ComplianceSection = ComplianceSection()
    balance: BalanceSection = BalanceSection()
    influx: InfluxSection | None = None
    # More telemetry databases beside [influx], each with its own spool and filter.
    telemetry: list[TelemetryTarget] = []
    mqtt: MqttSection | None = None
    spool: SpoolSection = SpoolSection()
    # a factory: the section checks its listen address with helpers defined further down
    dashboard: DashboardSection = Field(default_factory=DashboardSection)
    # A site split across several agents (absent: this agent runs the whole site alone).
    cluster: ClusterSection | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> KuatConfig:
        for kind, items in (
            ("pdu", self.pdu),
            ("meter", self.meter),
            ("telemetry", self.telemetry),
        ):
            names = [i.name for i in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind} names must be unique: {', '.join(dupes)} repeated")
        if sum(1 for m in self.meter if m.role == "site") > 1:
            raise ValueError('at most one meter may have role = "site" (the quota meter)')
        if sum(1 for m in self.meter if m.role == "commercial") > 1:
            raise ValueError(
                'at most one meter may have role = "commercial" (the settlement meter)'
            )
        return self

    @model_validator(mode="after")
    def _cap_outlives_failover(self) -> KuatConfig:
        # A shard must hold its cap across a controller failover (the lease's bound, then one
        # quota interval until the new controller publishes), or it drops to the safe default
        # every time a controller machine dies.
        c = self.cluster
        if c is not None:
            gap = c.lease_ttl_s * 4 / 3 + self.intervals.quota
            if c.cap_hold_s < gap:
                raise ValueError(
                    f"[cluster] cap_hold_s = {c.cap_hold_s} is shorter than a controller failover"
                    f" (lease_ttl_s * 4/3 + [intervals] quota = {gap:g} s)"
                )
        return self

    def asic_targets(self) -> list[tuple[str, int]]:
        seen: dict[tuple[str, int], None] = {}
        for g in self.asic.groups:
            for t in g.targets() if self.cluster is None else self.cluster.owns(g):
                seen.setdefault(t, None)
        return list(seen)

    @property
    def site_meter(self) -> MeterConfig | None:
        """The meter the quota paces on: the fast site meter, else the commercial one."""
        return next((m for m in self.meter if m.role == "site"), None) or self.commercial_meter

    @property
    def commercial_meter(self) -> MeterConfig | None:
        """The settlement meter, whose closed hours are the figure the energy company uses."""
        return next((m for m in self.meter if m.role == "commercial"), None)


# --- hosts ------------------------------------------------------------------------------

MAX_HOSTS_PER_ENTRY = 65536


def miner_address(text: str, default_port: int = 4028) -> tuple[str, int]:
    """ "10.20.1.5" or "10.20.1.6:4028" (IPv6: "[fd00::5]:4028") -> (ip, port); ValueError."""
    host, port = text.strip(), default_port
    if host.startswith("["):
        inner, _, rest = host[1:].partition("]")
        host = inner
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r} is not ip or ip:port")
            port = _port(text, rest[1:])
    elif host.count(":") == 1:
        host, _, p = host.partition(":")
        port = _port(text, p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # readings are matched by IP address, so a name would silently never match
        raise ValueError(f"{text!r}: the miner must be given by its IP address") from None
    return host, port


# A dashboard token shorter than this is guessable over a LAN.
MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    """A listen host only this machine can reach: localhost or a 127.0.0.0/8 or ::1 address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_address(text: str) -> tuple[str, int] | None:
    """ "127.0.0.1:9120", "[::1]:9120", "localhost:9120" -> (host, port); "" -> None (off)."""
    text = text.strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port:
        raise ValueError(
            f'{text!r}: give host:port, e.g. "127.0.0.1:9120" ("0.0.0.0:9120" for every '
            'interface), or "" to turn the dashboard off'
        )
    port_n = _port(text, port)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f'{text!r}: write an IPv6 address in brackets, e.g. "[::1]:9120"')
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{text!r}: the host must be an IP address or localhost") from None
    return host, port_n


def _port(text: str, p: str) -> int:
    if not p.isdigit() or not 1 <= int(p) <= 65535:
        raise ValueError(f"{text!r}: port must be 1-65535")
    return int(p)


def expand_hosts(entry: str) -> list[str]:
    entry = entry.strip()
    try:
        if "/" in entry:
            net = ipaddress.ip_network(entry, strict=False)
            if net.num_addresses > MAX_HOSTS_PER_ENTRY:
                raise ValueError(f"{entry!r} has more than {MAX_HOSTS_PER_ENTRY} addresses")
            return [str(a) for a in (net.hosts() if net.num_addresses > 2 else net)]
        if "-" in entry:
            lo_s, hi_s = (p.strip() for p in entry.split("-", 1))
            lo, hi = ipaddress.ip_address(lo_s), ipaddress.ip_address(hi_s)
            if lo.version != hi.version or int(hi) < int(lo):
                raise ValueError(f"{entry!r} is not an ascending range")
            if int(hi) - int(lo) >= MAX_HOSTS_PER_ENTRY:
                raise ValueError(f"{entry!r} has more than {MAX_HOSTS_PER_ENTRY} addresses")
            return [str(ipaddress.ip_address(i)) for i in range(int(lo), int(hi) + 1)]
        return [str(ipaddress.ip_address(entry))]
    except ValueError as exc:
        if str(exc).startswith(repr(entry)):
            raise
        raise ValueError(f"{entry!r} is not an address, CIDR block or a-b range") from None


# --- loading ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path or '(top level)'}: {self.message}"


class ConfigError(KuatError):
    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.source}: {len(self.problems)} problem(s)"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


def _loc_path(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    # pydantic inserts the tagged-union/function names into loc; keep only keys and indexes.
    return tuple(p for p in loc if isinstance(p, int) or not str(p).startswith("function-"))


def _fmt_path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _message(err: ErrorDetails, loc: tuple[str | int, ...] = ()) -> str:
    kind = err["type"]
    if kind == "extra_forbidden" and loc[:2] == ("asic", "credentials") and len(loc) in (3, 4):
        return _unknown_credential(loc)
    if kind == "extra_forbidden":
        return "unknown key (a typo?)"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _unknown_credential(loc: tuple[str | int, ...]) -> str:
    tables = {f.value: d for f, d in credential_tables().items()}
    name = str(loc[2])
    if len(loc) == 3:
        if name in {f.value for f in Firmware}:
            return f"{name} firmware needs no credentials: no table for it"
        return f"no firmware named {name!r}: tables are {', '.join(tables)}"
    return f"unknown key (a typo?): {name} takes {', '.join(tables[name])}"


def parse_config(text: str, source: str = "<config>") -> KuatConfig:
    """Validate TOML text. Raises ConfigError listing every problem at once."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [Problem("", f"not valid TOML: {exc}")]) from None
    except RecursionError:
        # tomllib recurses per nested array or inline table: [[[[… a thousand deep.
        raise ConfigError(source, [Problem("", "not valid TOML: nested too deeply")]) from None
    except ValueError as exc:
        # An integer of over 4,300 digits: Python's int() limit, raised as a bare ValueError.
        raise ConfigError(source, [Problem("", f"not valid TOML: {exc}")]) from None
    unset: list[Problem] = []
    data = _substitute(data, (), unset, text)
    try:
        cfg = KuatConfig.model_validate(data)
    except ValidationError as exc:
        problems = list(unset)
        for err in exc.errors():
            loc = _old_loc(_loc_path(err["loc"]), data.get("asic"))
            problems.append(Problem(_fmt_path(loc), _message(err, loc), locate(text, loc)))
        raise ConfigError(source, problems) from None
    if unset:
        raise ConfigError(source, unset)
    return cfg


# ${VAR} or ${VAR:-default} in a string value is taken from the environment (containers set
# configuration that way); $${ writes a literal ${.
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute(value: Any, loc: tuple[str | int, ...], unset: list[Problem], text: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, (*loc, k), unset, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, (*loc, i), unset, text) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        got = os.environ.get(name)
        if got is None:
            if default is not None:
                return default
            message = f"environment variable {name} is not set"
            unset.append(Problem(_fmt_path(loc), message, locate(text, loc)))
            return ""
        return got

    return _ENV_REF.sub(one, value)


def load_config(path: Path) -> KuatConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [Problem("", f"cannot read: {exc.strerror}")]) from None
    return parse_config(text, str(path))
