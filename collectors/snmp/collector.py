"""Poll one PDU over SNMP (v2c or v3 authPriv) and turn a profile's tables into a PduReading.

One poll walks the columns the profile needs, under one deadline; the profile's scalars
(identity, total) ride in a GETBULK as non-repeaters, and with ``auto`` sysObjectID too,
once a PDU's first poll (a GET of it alone) has picked the profile. A GETBULK carries
several columns, each continued only until its own end (``walk_groups``,
``_Session.walk_columns``): a table's columns together at a PDU's first poll; afterwards
columns grouped by the rows the last poll counted, each asked for those rows plus one, so
that one reply shows its end. A table that grew since is still read whole: its walk goes on.
Embedded PDU agents are slow and drop requests when flooded: later polls of the four
recorded PDUs send 22 requests for 933 varbinds where a walk per column sent 70 for 2,497
(``PduPoller(per_column_walks=True)`` keeps that way; bench/snmp_poll.py --agent-load, and
README.md for the CPU it saves snmpsim and kuat). Nothing here raises out of ``poll``: every
failure becomes a ``DeviceError`` whose cause names what failed.

SNMPv2c reads go through kuat's own client (v2c.py, ber.py: a tenth of pysnmp's CPU per
varbind, bench/snmp_poll.py); SNMPv3 and every SET go through pysnmp's engine (engine.py,
imported on first use: a farm without SNMPv3 never loads pysnmp).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from kuat.collectors.capabilities import ActionResult
from kuat.collectors.errors import KuatError
from kuat.collectors.readings import (
    DeviceError,
    DeviceKind,
    PduBreaker,
    PduInlet,
    PduOutlet,
    PduPhase,
    PduReading,
)
from kuat.collectors.snmp import ber
from kuat.collectors.snmp.profile import (
    KEY_FIELDS,
    TEXT_FIELDS,
    Column,
    Profile,
    ProfileError,
    Section,
    builtin_profiles,
    detect_profile,
    list_profiles,
    resolve_profile,
)
from kuat.collectors.snmp.v2c import Address, NoResponse, V2cClient, resolve

if TYPE_CHECKING:
    from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

    from kuat.collectors.snmp.engine import EngineSession

__all__ = [
    "AUTH_PROTOCOLS",
    "PRIV_PROTOCOLS",
    "PduPoller",
    "SnmpAuth",
    "SnmpPdu",
    "list_profiles",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
MAX_REPETITIONS = 40  # a column's rows asked by one GETBULK, when its length is not known
# varbinds asked by one GETBULK of several columns: pysnmp's agent (snmpsim's) answers no more
MAX_VARBINDS = 64

# The SNMPv3 protocols by name (pysnmp's objects for them: kuat.collectors.snmp.engine, which
# alone imports pysnmp: ~0.1 s and more of every start, spent only where SNMPv3 or a SET is used).
AUTH_PROTOCOLS = frozenset({"MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"})
# names as net-snmp and snmpsim spell them; *BLMT are the draft-blumenthal key extensions
PRIV_PROTOCOLS = frozenset(
    {"DES", "3DES", "AES", "AES128", "AES192", "AES256", "AES192BLMT", "AES256BLMT"}
)


@dataclass(frozen=True)
class SnmpAuth:
    """SNMP credentials. v3 (authPriv) when ``v3_user`` is set, else v2c ``community``.

    Secrets are excluded from ``repr`` so that logging an auth object never leaks them.
    """

    community: str | None = field(default=None, repr=False)
    v3_user: str | None = None
    v3_auth_key: str | None = field(default=None, repr=False)
    v3_priv_key: str | None = field(default=None, repr=False)
    v3_auth_proto: str = "SHA"
    v3_priv_proto: str = "AES"
    v3_context: str = ""

    def problem(self) -> str | None:
        """Why these credentials cannot be used, or None."""
        if self.v3_user:
            if not self.v3_auth_key or not self.v3_priv_key:
                return "SNMPv3 needs both an auth key and a priv key (authPriv)"
            if len(self.v3_auth_key) < 8 or len(self.v3_priv_key) < 8:
                return "SNMPv3 keys must be at least 8 characters"
            if self.v3_auth_proto.upper() not in AUTH_PROTOCOLS:
                return f"unknown SNMPv3 auth protocol {self.v3_auth_proto!r}"
            if self.v3_priv_proto.upper() not in PRIV_PROTOCOLS:
                return f"unknown SNMPv3 priv protocol {self.v3_priv_proto!r}"
            return None
        if not self.community:
            return "no SNMP community and no SNMPv3 user given"
        return None

    def describe(self) -> str:
        return f"SNMPv3 user {self.v3_user!r}" if self.v3_user else "SNMPv2c"


class PollFailed(KuatError):
    """One-line cause of a failed poll; becomes DeviceError.cause."""


class _Refused(PollFailed):
    """The agent answered a SET with an error status: it will not do it (read-only, access)."""


class _AgentError(PollFailed):
    """The agent answered a GET with an error status (a v1 proxy's noSuchName, genErr …)."""


# --- value conversion ---------------------------------------------------------------------

Raw = int | str | None


def _scaled(raw: Raw, col: Column, decimals: Raw) -> float | None:
    if raw is None or (isinstance(raw, str) and not raw.lstrip("-").isdigit()):
        return None
    number = int(raw)
    if number in col.missing:
        return None
    value = number * col.multiplier / col.divisor
    if isinstance(decimals, int) and 0 < decimals < 10:
        value /= 10**decimals
    # 54 / 10 -> 5.4, not 5.4000000000000004: readings are compared and shown by people
    return round(value, 9) if math.isfinite(value) else None


def _text(raw: Raw, col: Column) -> str | None:
    if raw is None:
        return None
    if col.value_map is not None:
        return col.value_map.get(str(raw))
    return str(raw)


def _index_key(index: str) -> tuple[int, ...]:
    return tuple(int(p) for p in index.split(".") if p.isdigit())


# --- table assembly -----------------------------------------------------------------------

Walks = dict[str, dict[str, Raw]]  # column OID -> {instance index -> raw value}


def _rows(col: Column, oid: str, walks: Walks) -> dict[str, Raw]:
    """Instances of one column, keyed by row index after the profile's suffix is stripped."""
    instances = walks.get(oid, {})
    if not col.suffix:
        return instances
    tail = "." + col.suffix
    return {i[: -len(tail)]: v for i, v in instances.items() if i.endswith(tail)}


def _field_values(col: Column, walks: Walks) -> dict[str, Raw]:
    merged: dict[str, Raw] = {}
    for oid in col.oids:  # first column with a non-empty value wins, row by row
        for index, value in _rows(col, oid, walks).items():
            if merged.get(index) is None:
                merged[index] = value
    return merged


def _section_rows(section: Section, walks: Walks) -> list[dict[str, Any]]:
    per_field = {name: _field_values(col, walks) for name, col in section.fields.items()}
    decimals = {
        name: _rows(col, col.decimals, walks)
        for name, col in section.fields.items()
        if col.decimals
    }
    indexes = sorted(set().union(*per_field.values()), key=_index_key)
    rows: list[dict[str, Any]] = []
    for ordinal, index in enumerate(indexes, start=1):
        row: dict[str, Any] = {}
        for name, col in section.fields.items():
            if col.from_index and not col.oids:
                key: Any = {"full": index, "last": index.rsplit(".", 1)[-1], "ordinal": ordinal}
                row[name] = key[col.from_index]
                continue
            raw = per_field[name].get(index)
            if name in TEXT_FIELDS:
                row[name] = _text(raw, col)
            else:
                row[name] = _scaled(raw, col, decimals.get(name, {}).get(index))
        for key_name in KEY_FIELDS & row.keys():
            if row[key_name] is None:  # a label column with a hole: fall back to the index
                row[key_name] = index
        rows.append(row)
    return rows


def build_reading(
    host: str,
    profile: Profile,
    scalars: dict[str, Raw],
    walks: Walks,
    taken_at: datetime,
) -> PduReading:
    """Pure: the walked values of a profile -> a reading (no I/O; unit-testable)."""
    sections: dict[str, list[dict[str, Any]]] = {}
    for name, section in profile.sections.items():
        rows = _section_rows(section, walks)
        if section.required and not rows:
            walked = ", ".join(sorted(section.walked()))
            raise PollFailed(f"{profile.name} profile: no {name} rows (walked {walked})")
        sections[name] = rows

    inlets = tuple(
        PduInlet(
            id=str(r["id"]),
            **{k: r.get(k) for k in ("phase", "volts", "amps", "watts", "kwh", "pf")},
        )
        for r in sections.get("inlets", [])
    )
    phases = tuple(
        PduPhase(id=str(r["id"]), volts=r.get("volts"), amps=r.get("amps"), watts=r.get("watts"))
        for r in sections.get("phases", [])
    )
    breakers = tuple(
        PduBreaker(id=str(r["id"]), amps=r.get("amps")) for r in sections.get("breakers", [])
    )
    outlets = tuple(
        PduOutlet(
            index=int(r["index"]) if str(r["index"]).isdigit() else n,
            name=r.get("name"),
            amps=r.get("amps"),
            watts=r.get("watts"),
            kwh=r.get("kwh"),
            state=r.get("state"),
        )
        for n, r in enumerate(sections.get("outlets", []), start=1)
    )
    total: float | None = None
    if profile.total_watts is not None:
        t = profile.total_watts
        if t.oid is not None:
            total = _scaled(
                scalars.get(t.oid),
                Column(
                    oids=(t.oid,),
                    multiplier=t.multiplier,
                    divisor=t.divisor,
                    missing=frozenset({-1}),
                ),
                None,
            )
        else:
            parts = [r.get("watts") for r in sections.get(t.sum_of or "", [])]
            known = [p for p in parts if p is not None]
            # a sum with an unknown part is unknown, not an under-count
            if parts and len(known) == len(parts):
                total = round(sum(known) * t.multiplier / t.divisor, 9)
    return PduReading(
        host=host,
        vendor=profile.vendor,
        model=_identity(profile, scalars, "model"),
        serial=_identity(profile, scalars, "serial"),
        taken_at=taken_at,
        inlets=inlets,
        phases=phases,
        breakers=breakers,
        outlets=outlets,
        total_watts=total,
    )


# --- SNMP I/O -----------------------------------------------------------------------------

_Agent = tuple[str, int, SnmpAuth]  # one PDU: its address and the credentials it is read with
_MAX_COLUMNS = MAX_VARBINDS // 4  # columns of one GETBULK: at least 4 rows of each a reply
# names past their columns' ends that walk_groups accepts to save a request: snmpsim spends
# on a GETBULK the CPU of ~6 varbinds answered (bench/snmp_poll.py --agent-load, 2026-12-05)
_SPARE_VARBINDS = 5


def _chunks(columns: list[str], size: int) -> list[list[str]]:
    return [columns[i : i + size] for i in range(0, len(columns), size)]


def walk_groups(profile: Profile, rows: dict[str, int]) -> list[list[str]]:
    """The profile's columns in the groups walked together, each group one GETBULK a round.

    Columns whose length is not known yet (a PDU's first poll): a table's (a section's)
    columns together, as snmptable walks a table. Columns whose ``rows`` the last poll
    counted: by that count across tables, as many as one reply holds with one name past each
    column's end (``MAX_VARBINDS``), so that a short column (a label, a 1-row inlet table)
    does not ride along past its end with long ones; groups of short columns share a request
    while that costs at most ``_SPARE_VARBINDS`` more names than asking them apart. Columns
    longer than ``MAX_REPETITIONS`` are walked over several requests in any case."""
    groups: list[list[str]] = []
    taken: set[str] = set()
    by_rows: dict[int, list[str]] = {}
    for section in profile.sections.values():
        columns = sorted(section.walked() - taken)
        taken.update(columns)
        groups += _chunks([c for c in columns if c not in rows], _MAX_COLUMNS)
        for column in columns:
            if column in rows:
                by_rows.setdefault(rows[column], []).append(column)
    shared: list[tuple[int, list[str]]] = []  # (repetitions, columns) of one request each
    for count in sorted(by_rows):
        wanted = count + 1
        if wanted > MAX_REPETITIONS:
            groups += _chunks(by_rows[count], _MAX_COLUMNS)
            continue
        for chunk in _chunks(by_rows[count], MAX_VARBINDS // wanted):
            if shared:
                repetitions, columns = shared[-1]
                fits = wanted * (len(columns) + len(chunk)) <= MAX_VARBINDS
                if fits and (wanted - repetitions) * len(columns) <= _SPARE_VARBINDS:
                    shared[-1] = (wanted, columns + chunk)
                    continue
            shared.append((wanted, chunk))
    return groups + [columns for _, columns in shared]


class _Session:
    """One device's requests within one poll or switch: get, walk, set."""

    what: str  # "SNMPv2c" / "SNMPv3 user 'x'", for causes

    async def get(self, oids: Iterable[str], purpose: str) -> dict[str, Raw]:
        raise NotImplementedError

    async def walk(self, column: str) -> dict[str, Raw]:
        raise NotImplementedError

    async def set_int(self, oid: str, value: int) -> None:
        raise NotImplementedError

    async def bulk(
        self, starts: list[bytes], repetitions: int, doing: str, non_repeaters: int = 0
    ) -> ber.Response:
        """One GETBULK from ``starts``, its reply as ber.py reads v2c's."""
        raise NotImplementedError

    async def walk_columns(
        self, walks: list[_ColumnWalk], scalars: Sequence[str] = ()
    ) -> dict[str, Raw]:
        """Walk several columns with one GETBULK per round, as net-snmp's snmptable does, each
        ending as pysnmp's bulk walk ends one column (``_ColumnWalk.take``); the next round
        asks only for the columns still going, from where each got to.

        ``scalars`` ride along in the first request as its non-repeaters, and are returned
        as ``get`` returns them (``_Scalars``): one request fewer a poll."""
        going = walks
        lead = _Scalars(scalars)
        ahead = lead.starts()
        while going:
            count = len(going)
            room = max(1, (MAX_VARBINDS - len(ahead)) // count)
            repetitions = min(MAX_REPETITIONS, room, max(w.wanted() for w in going))
            doing = _walking(going)
            response = await self.bulk(
                [*ahead, *(w.start for w in going)], repetitions, doing, len(ahead)
            )
            if response.error_status and ahead:  # the same walk again; the scalars by a GET
                ahead = lead.skip()
                continue
            if response.error_status == 2:  # noSuchName from a v1 proxy: pysnmp ends quietly
                if count > 1:  # which column it ended is not said for sure: each goes on alone
                    for walk in going:
                        await self.walk_columns([walk])
                break
            if response.error_status:
                status = ber.error_status_name(response.error_status)
                index = response.error_index
                named = _walking(going[index - 1 : index]) if 0 < index <= count else doing
                raise PollFailed(f"{named}: agent answered {status}")
            varbinds = response.varbinds
            if not varbinds:
                break
            if ahead:  # a reply cut short among them leaves the columns to the next round
                lead.take(varbinds[: len(ahead)])
                varbinds = varbinds[len(ahead) :]
                ahead = []
            # a GETBULK's reply holds its columns' names row by row: column i at i, i+count…
            going = [w for i, w in enumerate(going) if w.take(varbinds[i::count])]
        if ahead:  # no column to walk: they were never asked
            lead.skip()
        if lead.unsure:
            lead.found.update(await self.get(lead.unsure, "reading sysObjectID"))
        return lead.found


class _Scalars:
    """Scalars read as non-repeaters of a GETBULK: each the GETNEXT of its parent (the name
    without its last arc), which answers the scalar itself when it exists. A name past it
    (or the MIB's end) says it does not: None, as a GET answers noSuchObject. A name
    between the two (the parent's .0 before a .1) settles nothing: ``unsure``, for a GET."""

    def __init__(self, oids: Sequence[str]) -> None:
        self.oids = [o for o in oids if o.count(".") >= 2]  # a parent of 2 arcs or more
        self.unsure = [o for o in oids if o.count(".") < 2]
        self.found: dict[str, Raw] = {}

    def starts(self) -> list[bytes]:
        return [ber.encode_oid(o.rsplit(".", 1)[0]) for o in self.oids]

    def skip(self) -> list[bytes]:
        """Leave them all to the GET (no request carries them): no starts left."""
        self.unsure += self.oids
        self.oids = []
        return []

    def take(self, varbinds: list[ber.Varbind]) -> None:
        self.unsure += self.oids[len(varbinds) :]  # a reply cut short before them
        try:
            for oid, (name, tag, value) in zip(self.oids, varbinds, strict=False):
                wanted = ber.encode_oid(oid)
                if name == wanted:
                    self.found[oid] = _raw_v2c(value)
                elif tag == ber.END_OF_MIB_VIEW or ber.oid_arcs(name) > ber.oid_arcs(wanted):
                    self.found[oid] = None
                else:
                    self.unsure.append(oid)
        except ber.BerError as exc:
            raise PollFailed(
                f"reading sysObjectID: the agent answered an unreadable name: {exc}"
            ) from exc


def _raw_v2c(value: ber.Value) -> Raw:
    """A decoded v2c value -> Raw, as ``_raw`` turns the same value from pysnmp (but for an
    Opaque, whose trailing NULs pysnmp kept: here it is stripped like any OCTET STRING)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip().strip("\x00") or None
    return value


def _walking(walks: list[_ColumnWalk]) -> str:
    return "walking " + ", ".join(w.column for w in walks)


@dataclass(slots=True)
class _ColumnWalk:
    """One column's walk: what it found so far and where the next request starts."""

    column: str
    expected: int | None = None  # the rows the last poll of this PDU found in it, if any
    start: bytes = b""
    prefix: bytes = b""
    found: dict[str, Raw] = field(default_factory=dict)
    rows: int = 0  # names inside the column so far

    def __post_init__(self) -> None:
        self.prefix = self.start = ber.encode_oid(self.column)

    def wanted(self) -> int:
        """Repetitions that reach one name past the column's end, if it is as long as last
        time; a column that has grown since goes on as a new one does."""
        if self.expected is None or self.rows > self.expected:
            return MAX_REPETITIONS
        return self.expected - self.rows + 1

    def take(self, varbinds: list[ber.Varbind]) -> bool:
        """This column's names of one reply; False once it ended: at the first name outside
        the column or the first exception value, as pysnmp's bulk walk ends."""
        if not varbinds:  # the agent cut its reply short before this column's turn
            return True
        prefix, size = self.prefix, len(self.prefix)
        found = self.found
        try:
            for oid, tag, value in varbinds:
                if tag in ber.EXCEPTIONS or not oid.startswith(prefix):
                    return False
                self.rows += 1
                if len(oid) > size:
                    found[ber.oid_text(oid, size)] = _raw_v2c(value)
            last = varbinds[-1][0]
            increasing = ber.oid_arcs(last) > ber.oid_arcs(self.start)
        except ber.BerError as exc:
            raise PollFailed(
                f"walking {self.column}: the agent answered an unreadable name: {exc}"
            ) from exc
        if not increasing:  # an agent answering names not after the one asked loops us
            raise PollFailed(
                f"walking {self.column}: the agent's names do not increase at {ber.oid_text(last)}"
            )
        self.start = last
        return True


@dataclass
class _V2cSession(_Session):
    """SNMPv2c reads on kuat's own client (v2c.py, ber.py): a walk costs a fraction of the
    CPU pysnmp's engine spends. A SET goes through pysnmp (``setter``), as it is rare."""

    client: V2cClient
    addr: Address
    community: bytes
    timeout_s: float
    retries: int
    setter: Callable[[], Awaitable[EngineSession]]
    what: str = "SNMPv2c"

    async def _request(
        self,
        pdu: int,
        oids: list[bytes],
        doing: str,
        max_repetitions: int = 0,
        non_repeaters: int = 0,
    ) -> ber.Response:
        try:
            response = await self.client.request(
                self.addr,
                self.community,
                pdu,
                oids,
                timeout_s=self.timeout_s,
                retries=self.retries,
                max_repetitions=max_repetitions,
                non_repeaters=non_repeaters,
            )
        except NoResponse as exc:
            raise PollFailed(f"{doing}: {exc} ({self.what})") from exc
        return response

    async def get(self, oids: Iterable[str], purpose: str) -> dict[str, Raw]:
        encoded = [ber.encode_oid(o) for o in oids]
        if not encoded:
            return {}
        response = await self._request(ber.GET, encoded, purpose)
        if response.error_status:
            status = ber.error_status_name(response.error_status)
            raise _AgentError(f"{purpose}: agent answered {status}")
        try:
            return {ber.oid_text(oid): _raw_v2c(value) for oid, _tag, value in response.varbinds}
        except ber.BerError as exc:
            raise PollFailed(f"{purpose}: the agent answered an unreadable name: {exc}") from exc

    async def walk(self, column: str) -> dict[str, Raw]:
        """The column's instances by index, walked alone (as kuat did before ``walk_columns``)."""
        walk = _ColumnWalk(column)
        await self.walk_columns([walk])
        return walk.found

    async def bulk(
        self, starts: list[bytes], repetitions: int, doing: str, non_repeaters: int = 0
    ) -> ber.Response:
        return await self._request(ber.GETBULK, starts, doing, repetitions, non_repeaters)

    async def set_int(self, oid: str, value: int) -> None:
        await (await self.setter()).set_int(oid, value)


class PduPoller:
    """Polls PDUs; one instance serves many devices and many concurrent polls."""

    def __init__(
        self,
        *,
        timeout_s: float = 3.0,
        retries: int = 1,
        deadline_s: float | None = None,
        max_inflight: int = 4,
        v2c_via_pysnmp: bool = False,
        per_column_walks: bool = False,
    ) -> None:
        """``timeout_s``/``retries`` apply to each SNMP request; ``deadline_s`` bounds a whole
        poll (default: three requests' worth of timeouts and retries), so a slow walk
        cannot hold a collector cycle hostage. ``max_inflight`` caps concurrent requests to
        one device: the embedded agents of PDUs drop requests when flooded.
        ``v2c_via_pysnmp`` reads v2c through pysnmp's engine as kuat did before its own
        client: for the benchmark and the tests that show both give the same readings.
        ``per_column_walks`` polls as kuat did before ``walk_columns``: one walk of
        ``MAX_REPETITIONS`` per column (pysnmp's bulk walk for SNMPv3), sysObjectID read
        alone first with ``auto``, nothing remembered between polls: for the benchmark and
        the tests that weigh one against the other.
        """
        self.timeout_s = timeout_s
        self.retries = retries
        self.deadline_s = deadline_s if deadline_s is not None else timeout_s * (retries + 1) * 3
        self.max_inflight = max(1, max_inflight)
        self.v2c_via_pysnmp = v2c_via_pysnmp
        self.per_column_walks = per_column_walks
        # what the last poll of a PDU (address and credentials: one address may serve several
        # agents by community or context) found: its detected profile, and its columns' rows
        self._profiles: dict[_Agent, Profile] = {}
        self._rows: dict[_Agent, dict[str, int]] = {}
        # v2c reads go through one V2cClient (one socket); SNMPv3 and SET through one
        # pysnmp engine, built on first need: building one costs ~47 ms of CPU, and a reply
        # arriving after its poll was cut finds a live socket to be dropped on. Both are
        # bound to the event loop that made them (a new loop gets new ones).
        self._engine: SnmpEngine | None = None
        self._engine_loop: asyncio.AbstractEventLoop | None = None
        self._client: V2cClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def engine(self) -> SnmpEngine:
        from kuat.collectors.snmp.engine import new_engine

        loop = asyncio.get_running_loop()
        if self._engine is None or self._engine_loop is not loop:
            self._engine, self._engine_loop = new_engine(), loop
        return self._engine

    def client(self) -> V2cClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client, self._client_loop = V2cClient(), loop
        return self._client

    def close(self) -> None:
        """Close the sockets (at shutdown; a later poll opens new ones)."""
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = self._engine_loop = None
        if self._client is not None:
            self._client.close()
            self._client = self._client_loop = None

    async def _run(
        self,
        host: str,
        port: int,
        auth: SnmpAuth,
        profile: str,
        work: Callable[[_Session, Profile | None, _Agent], Awaitable[_T]],
        deadline_s: float | None = None,
    ) -> _T:
        """Open a session, resolve a named profile, run ``work``; failures raise PollFailed
        only.

        ``deadline_s`` (default: the poller's) bounds the whole of it, retries included."""
        problem = auth.problem()
        if problem:
            raise PollFailed(problem)
        chosen: Profile | None = None
        if profile != "auto":
            try:
                chosen = resolve_profile(profile)
            except ProfileError as exc:
                raise PollFailed(str(exc)) from exc
        deadline = self.deadline_s if deadline_s is None else deadline_s
        # a request waits its full timeout before the retry: an agent that is merely slow
        # (an embedded PDU, a loaded simulator) would only be hammered harder by early retries
        request_timeout = min(self.timeout_s, deadline)
        try:
            async with asyncio.timeout(deadline):
                session = await self._session(host, port, auth, request_timeout)
                return await work(session, chosen, (host, port, auth))
        except PollFailed:
            raise
        except TimeoutError as exc:
            raise PollFailed(
                f"poll did not finish within {deadline:g} s ({auth.describe()})"
            ) from exc
        except Exception as exc:  # a collector cycle must survive anything a device sends
            raise PollFailed(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc

    async def _session(self, host: str, port: int, auth: SnmpAuth, timeout_s: float) -> _Session:
        """A v2c session on kuat's own client, or a pysnmp one for SNMPv3."""

        async def engine_session() -> EngineSession:
            from kuat.collectors.snmp.engine import EngineSession, udp_target

            try:
                target = await udp_target(host, port, timeout_s, self.retries)
            except Exception as exc:
                raise PollFailed(f"cannot resolve {host}: {exc}") from exc
            return EngineSession(self.engine(), auth, target, auth.describe())

        if auth.v3_user or self.v2c_via_pysnmp:
            return await engine_session()
        try:
            addr = await resolve(host, port)
        except OSError as exc:
            raise PollFailed(f"cannot resolve {host}: {exc}") from exc
        return _V2cSession(
            self.client(),
            addr,
            (auth.community or "").encode(),
            timeout_s,
            self.retries,
            engine_session,
        )

    async def _settle_profile(
        self, session: _Session, chosen: Profile | None, agent: _Agent, identity: bool = True
    ) -> tuple[Profile, dict[str, Raw]]:
        """The profile (detected from sysObjectID for ``auto``) and its identity scalars: in
        one GET when the profile is given, or when ``auto`` found it at the last poll (a
        second GET only if the sysObjectID now says otherwise)."""
        guess = chosen
        if guess is None and not self.per_column_walks:
            guess = self._profiles.get(agent)
        try:
            first = await session.get(
                [SYS_OBJECT_ID, *(guess.scalars() if guess else [])], "reading sysObjectID"
            )
        except _AgentError:
            if chosen is not None or guess is None:
                raise
            # a v1 proxy refuses a whole GET for one object its PDU lacks: another PDU there?
            self._profiles.pop(agent, None)
            return await self._settle_profile(session, None, agent)
        if chosen is not None:
            return chosen, first
        sys_oid = first.get(SYS_OBJECT_ID)
        if not sys_oid:
            raise PollFailed("no sysObjectID to pick a profile from; pass --profile")
        detected = detect_profile(str(sys_oid))
        if detected is None:
            raise PollFailed(unknown_device(str(sys_oid)))
        if not self.per_column_walks:
            self._profiles[agent] = detected
        if detected is guess or not identity:
            return detected, first
        return detected, await session.get(detected.scalars(), "reading identity")

    async def _walk_each(self, session: _Session, profile: Profile) -> Walks:
        """Every column the profile needs walked alone, concurrently (``max_inflight``)."""
        gate = asyncio.Semaphore(self.max_inflight)
        columns = profile.columns()

        async def walk(column: str) -> dict[str, Raw]:
            async with gate:
                return await session.walk(column)

        return dict(zip(columns, await asyncio.gather(*map(walk, columns)), strict=True))

    async def _read_tables(
        self, session: _Session, chosen: Profile | None, agent: _Agent
    ) -> tuple[Profile, dict[str, Raw], Walks]:
        """The profile, its scalars and its columns, walked in groups (``walk_groups``),
        concurrently (``max_inflight``); the scalars ride in a GETBULK. With ``auto``, the
        profile the last poll detected is walked at once and sysObjectID read with it: if
        that now names another profile, the PDU is read again as a new one."""
        guess = chosen or self._profiles.get(agent)
        if guess is None:
            profile, _ = await self._settle_profile(session, None, agent, identity=False)
        else:
            profile = guess
        wanted = profile.scalars()
        if chosen is None and guess is not None:
            wanted = [SYS_OBJECT_ID, *wanted]
        rows = self._rows.get(agent, {})
        groups = [[_ColumnWalk(c, rows.get(c)) for c in g] for g in walk_groups(profile, rows)]
        gate = asyncio.Semaphore(self.max_inflight)

        async def walk_group(group: list[_ColumnWalk], scalars: list[str]) -> dict[str, Raw]:
            async with gate:
                return await session.walk_columns(group, scalars)

        found = await asyncio.gather(
            *(walk_group(g, wanted if n == len(groups) - 1 else []) for n, g in enumerate(groups))
        )
        scalars = found[-1] if found else await session.get(wanted, "reading sysObjectID")
        if chosen is None and guess is not None:
            sys_oid = scalars.get(SYS_OBJECT_ID)
            if not sys_oid or detect_profile(str(sys_oid)) is not guess:
                self._profiles.pop(agent, None)  # another PDU answers here now
                self._rows.pop(agent, None)
                return await self._read_tables(session, None, agent)
        walks = [w for group in groups for w in group]
        self._rows[agent] = {w.column: w.rows for w in walks}
        return profile, scalars, {w.column: w.found for w in walks}

    async def poll(
        self,
        host: str,
        port: int = 161,
        *,
        auth: SnmpAuth,
        profile: str = "auto",
        deadline_s: float | None = None,
    ) -> PduReading | DeviceError:
        """One reading or a DeviceError; never raises. ``deadline_s`` is this PDU's own
        deadline (``[[pdu]] timeout_s``): past it the poll is a DeviceError."""
        taken_at = datetime.now(UTC)

        async def read(session: _Session, chosen: Profile | None, agent: _Agent) -> PduReading:
            if self.per_column_walks:
                profile, scalars = await self._settle_profile(session, chosen, agent)
                walks = await self._walk_each(session, profile)
            else:
                profile, scalars, walks = await self._read_tables(session, chosen, agent)
            return build_reading(host, profile, scalars, walks, taken_at)

        try:
            return await self._run(host, port, auth, profile, read, deadline_s)
        except PollFailed as exc:
            return DeviceError(DeviceKind.PDU, host, port, taken_at, str(exc))

    async def switch_outlet(
        self,
        host: str,
        port: int = 161,
        *,
        auth: SnmpAuth,
        index: int,
        on: bool,
        reason: str,
        profile: str = "auto",
    ) -> ActionResult:
        """Switch one outlet (the reading's ``PduOutlet.index``) by SNMP SET; never raises.

        ``done`` once the agent accepted the SET (``detail`` says whether the outlet state
        read back already matches), ``refused`` when the agent rejects it (read-only
        community, no write access), ``unsupported`` when the profile has no outlet control.
        """
        action = f"outlet {index} {'on' if on else 'off'}"
        device = f"{host}:{port}"

        async def switch(session: _Session, named: Profile | None, agent: _Agent) -> ActionResult:
            nonlocal device
            chosen, scalars = await self._settle_profile(session, named, agent)
            device = _identity(chosen, scalars, "serial") or device
            control = chosen.outlet_control
            if control is None:
                return ActionResult(
                    device, action, "unsupported", f"{chosen.name} profile has no outlet control"
                )
            oid, value = control.target(index, on)
            log.info("pdu %s: %s (%s) via %s = %d", device, action, reason, oid, value)
            await session.set_int(oid, value)
            return ActionResult(
                device, action, "done", await _read_back(session, chosen, index, on)
            )

        try:
            return await self._run(host, port, auth, profile, switch)
        except _Refused as exc:
            return ActionResult(device, action, "refused", str(exc))
        except PollFailed as exc:
            return ActionResult(device, action, "failed", str(exc))


async def _read_back(session: _Session, profile: Profile, index: int, on: bool) -> str:
    """What the outlet's state column says right after the SET (agents may lag a little)."""
    outlets = profile.sections.get("outlets")
    state = outlets.fields.get("state") if outlets else None
    if state is None or not state.oids or profile.outlet_control is None:
        return "state not readable with this profile"
    instance = profile.outlet_control.instance.format(index=index)
    oid = f"{state.oids[0]}.{instance}" + (f".{state.suffix}" if state.suffix else "")
    now = _text((await session.get([oid], "reading the outlet state back")).get(oid), state)
    wanted = "on" if on else "off"
    return f"state reads {wanted}" if now == wanted else f"requested; state still reads {now}"


def unknown_device(sys_oid: str) -> str:
    """Why auto-detection found nothing, and what to do about it."""
    known = sorted(builtin_profiles().values(), key=lambda p: p.vendor.lower())
    vendors = ", ".join(f"{p.vendor} ({p.name})" for p in known)
    return (
        f"no PDU profile matches sysObjectID {sys_oid}; kuat knows {vendors}. Give profile = "
        "NAME if it is one of these, or write a profile file for this PDU (the format of "
        "collectors/snmp/profiles/*.toml: its sys_object_ids, identity and tables) and give "
        "its path"
    )


def _identity(profile: Profile, scalars: dict[str, Raw], key: str) -> str | None:
    for oid in profile.identity.get(key, ()):
        value = scalars.get(oid)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


@dataclass
class SnmpPdu:
    """One configured PDU: what the scheduler polls and the quota engine switches.

    Satisfies ``kuat.collectors.capabilities.Pollable`` and ``OutletSwitchable``.
    """

    host: str
    auth: SnmpAuth
    port: int = 161
    profile: str = "auto"
    poller: PduPoller = field(default_factory=PduPoller)

    async def poll(self) -> PduReading | DeviceError:
        return await self.poller.poll(self.host, self.port, auth=self.auth, profile=self.profile)

    async def switch_outlet(self, index: int, on: bool, reason: str) -> ActionResult:
        return await self.poller.switch_outlet(
            self.host,
            self.port,
            auth=self.auth,
            index=index,
            on=on,
            reason=reason,
            profile=self.profile,
        )
