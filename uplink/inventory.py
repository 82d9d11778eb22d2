"""The register's view of the hardware: inventory snapshots and the events between two of them.

Pure functions (time and ids are arguments), so every rule is unit-testable:

* identity is the serial, else the MAC, else ``ip:port`` (``id_source`` says which);
* an IP/port change of a known miner is one ``moved`` event, never removed + added;
* a miner missing from a poll stays in the snapshot as ``offline`` until it has not been seen
  for ``forget_after`` (default one day) — an unreachable miner is not a removed one;
* ``changed`` covers the hardware facts (manufacturer, model, serial, MAC, firmware, rated
  TH/s and W, pool), not run state: curtailment must not flood the register.

Payload formats are fixed by the JSON Schemas in ``uplink/schemas/``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal, overload

from kuat.collectors.readings import AsicReading, normal_mac
from kuat.uplink.spool import FilePayload

__all__ = [
    "EVENT_SCHEMA",
    "HARDWARE_FIELDS",
    "INVENTORY_SCHEMA",
    "STATUS_SCHEMA",
    "Events",
    "Location",
    "Miner",
    "Snapshot",
    "SnapshotJson",
    "build_snapshot",
    "diff",
    "diff_events",
    "iso",
    "miner_from_json",
    "miner_to_json",
    "snapshot_from_payload",
    "snapshot_json",
    "snapshot_json_parts",
    "snapshot_payload",
]

INVENTORY_SCHEMA = "kz.hsc-register.inventory.v1"
EVENT_SCHEMA = "kz.hsc-register.event.v1"
STATUS_SCHEMA = "kz.hsc-register.status.v1"

log = logging.getLogger(__name__)

MinerState = Literal["mining", "sleeping", "error", "offline"]
IdSource = Literal["serial", "mac", "endpoint"]
# the facts a "changed" event covers (run state is not one)
HARDWARE_FIELDS = (
    "manufacturer",
    "model",
    "serial",
    "mac",
    "firmware",
    "rated_ths",
    "rated_w",
    "pool",
)


@dataclass(frozen=True, slots=True)
class Location:
    """Where a miner stands in the data centre (from the site's configuration)."""

    hall: str = ""
    rack: str = ""
    slot: str = ""

    def to_json(self) -> dict[str, str]:
        return {"hall": self.hall, "rack": self.rack, "slot": self.slot}


@dataclass(frozen=True, slots=True)
class Miner:
    id: str
    id_source: IdSource
    manufacturer: str | None
    model: str | None
    serial: str | None
    mac: str | None
    firmware: str | None
    rated_ths: float | None
    rated_w: float | None
    ip: str
    port: int
    pool: str | None
    state: MinerState
    first_seen: datetime
    last_seen: datetime
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    site: str
    owner_bin: str
    generated_at: datetime
    miners: Mapping[str, Miner]  # by id
    # Who holds the hardware and where it runs: {bin, licence_number, licence_subtype} and
    # {id, address, grid_zone, registered}; the register needs both beside every list.
    owner: Mapping[str, Any] | None = None
    data_centre: Mapping[str, Any] | None = None


def iso(t: datetime) -> str:
    """ISO 8601 UTC with ``Z``, whole seconds (the register needs no more)."""
    if t.tzinfo is not UTC:
        t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    # isoformat, not strftime: four times as fast, and an inventory writes two of these per
    # miner, twice more per change event (50,000 of them in a farm's first inventory)
    return t.isoformat(timespec="seconds")[:-6] + "Z"


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _normal_mac(mac: str | None) -> str | None:
    # the one spelling the parsers give too: register id == telemetry device tag == offender id
    return normal_mac(mac)


def _identity(r: AsicReading) -> tuple[str, IdSource, str | None, str | None]:
    serial = (r.serial or "").strip() or None
    mac = _normal_mac(r.mac)
    if serial:
        return serial, "serial", serial, mac
    if mac:
        return mac, "mac", serial, mac
    return f"{r.ip}:{r.port}", "endpoint", serial, mac


def _from_reading(
    r: AsicReading, old: Mapping[str, Miner], locations: Mapping[tuple[str, int], Location]
) -> Miner:
    ident, source, serial, mac = _identity(r)
    previous = old.get(ident)
    pool = r.active_pool or (r.pools[0] if r.pools else None)
    return Miner(
        id=ident,
        id_source=source,
        manufacturer=r.vendor,
        model=r.model,
        serial=serial,
        mac=mac,
        firmware=r.firmware,
        rated_ths=r.hashrate_nominal_ths,
        rated_w=r.power_limit_w,
        ip=r.ip,
        port=r.port,
        pool=pool.url if pool else None,
        state=r.state,
        first_seen=previous.first_seen if previous else r.taken_at,
        last_seen=r.taken_at,
        location=locations.get((r.ip, r.port)),
    )


def build_snapshot(
    readings: Iterable[AsicReading],
    *,
    site: str,
    owner_bin: str,
    now: datetime,
    previous: Snapshot | None = None,
    forget_after: timedelta = timedelta(days=1),
    locations: Mapping[tuple[str, int], Location] | None = None,
    owner: Mapping[str, Any] | None = None,
    data_centre: Mapping[str, Any] | None = None,
) -> Snapshot:
    """The inventory after this round of readings, carrying history over from ``previous``.

    ``locations`` maps a polled (ip, port) to where that address is wired in the hall.
    """
    old = previous.miners if previous else {}
    where = locations or {}
    miners: dict[str, Miner] = {}
    for r in sorted(readings, key=lambda r: r.taken_at):  # the newest reading of an id wins
        m = _from_reading(r, old, where)
        miners[m.id] = m
    for ident, m in old.items():
        if ident not in miners and now - m.last_seen < forget_after:
            miners[ident] = m if m.state == "offline" else replace(m, state="offline")
    return Snapshot(site, owner_bin, now, dict(sorted(miners.items())), owner, data_centre)


def miner_to_json(m: Miner) -> dict[str, Any]:
    return {
        "id": m.id,
        "id_source": m.id_source,
        "manufacturer": m.manufacturer,
        "model": m.model,
        "serial": m.serial,
        "mac": m.mac,
        "firmware": m.firmware,
        "rated_ths": m.rated_ths,
        "rated_w": m.rated_w,
        "ip": m.ip,
        "port": m.port,
        "pool": m.pool,
        "state": m.state,
        "first_seen": iso(m.first_seen),
        "last_seen": iso(m.last_seen),
        "location": m.location.to_json() if m.location else None,
    }


def miner_from_json(d: Mapping[str, Any]) -> Miner:
    return Miner(
        **{k: d.get(k) for k in HARDWARE_FIELDS},
        id=d["id"],
        id_source=d["id_source"],
        ip=d["ip"],
        port=d["port"],
        state=d["state"],
        first_seen=_parse_time(d["first_seen"]),
        last_seen=_parse_time(d["last_seen"]),
        location=Location(**d["location"]) if d.get("location") else None,
    )


def snapshot_payload(snap: Snapshot, *, seq: int) -> dict[str, Any]:
    """The retained ``inventory`` message. ``seq`` is the last event seq it already reflects,
    so a register can drop older events and apply only newer ones on top of it."""
    return {**_payload_head(snap, seq), "miners": [miner_to_json(m) for m in snap.miners.values()]}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def snapshot_json(snap: Snapshot, *, seq: int, extra: Mapping[str, Any] | None = None) -> bytearray:
    """``snapshot_payload`` plus ``extra``'s keys after it, as compact UTF-8 JSON: the bytes of
    ``json.dumps({**snapshot_payload(snap, seq=seq), **extra}, ensure_ascii=False,
    separators=(",", ":")).encode()`` (``SnapshotJson.with_seq`` of ``snapshot_json_parts``)."""
    out = snapshot_json_parts(snap, extra=extra).with_seq(seq)
    assert isinstance(out, bytearray)  # nothing is spilled without a directory
    return out


class SnapshotJson:
    """A snapshot's JSON but for its ``seq``, which is known only inside the spool's
    transaction that numbers the events: the publisher serialises the snapshot before that
    transaction and puts the number in inside it (``with_seq``, once)."""

    __slots__ = ("_after", "_before", "_size")

    def __init__(
        self, before_seq: bytes, after_seq: bytearray | IO[bytes], size: int | None = None
    ) -> None:
        self._before = before_seq  # up to and including '"seq":'
        # the rest, miners and extra keys included: a buffer, or a file of ``size`` bytes
        self._after: bytearray | IO[bytes] | None = after_seq
        self._size = size

    def with_seq(self, seq: int) -> bytearray | FilePayload:
        """The whole JSON, call it once. Held in memory, it is the buffer the miners were
        written into (its head moved in place, not the 19 MB of a 50,000-miner snapshot copied),
        handed over, not kept here, so that the caller's last reference frees it; spilled, the
        file with the head to write before it."""
        out = self._after
        if out is None:
            raise RuntimeError("SnapshotJson.with_seq called twice")
        self._after = None
        head = self._before + str(seq).encode()
        if isinstance(out, bytearray):
            out[0:0] = head
            return out
        assert self._size is not None
        return FilePayload(head, out, self._size)


class _Spill:
    """Where ``snapshot_json_parts`` writes: a buffer moved to a temporary file in
    ``directory`` every ``FLUSH`` bytes, or only the buffer when there is no directory or the
    file cannot be made or written (a full disk): the JSON is then held in memory as before."""

    FLUSH = 256 * 1024

    def __init__(self, directory: Path | None) -> None:
        self.buf = bytearray()
        self.file: IO[bytes] | None = None
        self.written = 0
        if directory is not None:
            try:
                # unbuffered: what a failed write left unwritten is still in ``buf``
                self.file = tempfile.TemporaryFile(  # noqa: SIM115 - handed on, closed there
                    dir=directory, prefix="kuat-snapshot-", buffering=0
                )
            except OSError as exc:
                log.debug("snapshot JSON held in memory: no file in %s: %s", directory, exc)

    def flush(self, *, last: bool = False) -> None:
        if self.file is None or (len(self.buf) < self.FLUSH and not last):
            return
        sent = 0
        try:
            with memoryview(self.buf) as view:
                while sent < len(view):
                    n = self.file.write(view[sent:])
                    sent += n or 0
                    self.written += n or 0
        except OSError as exc:
            log.debug("snapshot JSON held in memory: writing its temporary file: %s", exc)
            self._back_to_memory(sent)
            return
        self.buf = bytearray()

    def _back_to_memory(self, sent: int) -> None:
        """The file's bytes, then the buffer's unwritten tail (from ``sent``), in memory."""
        assert self.file is not None
        file, self.file = self.file, None
        done = bytearray()
        for chunk in FilePayload(b"", file, self.written).chunks():  # short: OSError; closed
            done += chunk
        done += memoryview(self.buf)[sent:]
        self.buf = done

    def result(self, before_seq: bytes) -> SnapshotJson:
        self.flush(last=True)
        if self.file is None:
            return SnapshotJson(before_seq, self.buf)
        return SnapshotJson(before_seq, self.file, self.written)


def snapshot_json_parts(
    snap: Snapshot, *, extra: Mapping[str, Any] | None = None, spill_dir: Path | None = None
) -> SnapshotJson:
    """``snapshot_json`` without its ``seq``, written a miner at a time; with ``spill_dir``,
    into a temporary file there rather than memory (``FilePayload``).

    Built whole, a 50,000-miner snapshot (19 MB of JSON) peaked at 67 MB (the tree of dicts,
    the text, its bytes), this way at 38 MB (tracemalloc, synthetic miners), in the same time;
    and its one ``json.dumps`` held the GIL, so the event loop, for the whole dump, where here
    the loop gets its turns between miners (it runs in a worker thread). The buffer it was
    written into is kept as it is (the spool stores any bytes-like value): a ``bytes`` copy of it
    was another 18 MB at the agent's peak (issue 15)."""
    head = _payload_head(snap, 0)
    if "miners" in (extra or {}):
        raise ValueError("extra must not replace the miners")
    for k in extra or {}:
        if k in head:
            raise ValueError(f"extra must not replace {k!r}")
    keys = list(head)
    at = keys.index("seq")
    # the keys before and after seq dumped apart, so the number goes between them unparsed
    before = {k: head[k] for k in keys[:at]}
    after = {k: head[k] for k in keys[at + 1 :]}
    before_seq = (_dumps(before)[:-1] + ',"seq":').encode()
    spill = _Spill(spill_dir)
    spill.buf += b"," + _dumps(after)[1:-1].encode()
    spill.buf += b',"miners":['
    first = True
    for m in snap.miners.values():
        if not first:
            spill.buf += b","
        first = False
        spill.buf += _dumps(miner_to_json(m)).encode()
        spill.flush()
    spill.buf += b"]"
    for k, v in (extra or {}).items():
        spill.buf += f",{_dumps(k)}:{_dumps(v)}".encode()
    spill.buf += b"}"
    return spill.result(before_seq)


def _payload_head(snap: Snapshot, seq: int) -> dict[str, Any]:
    miners = snap.miners.values()
    return {
        "schema": INVENTORY_SCHEMA,
        "owner_bin": snap.owner_bin,
        "site": snap.site,
        "owner": dict(snap.owner) if snap.owner else None,
        "data_centre": dict(snap.data_centre) if snap.data_centre else None,
        "generated_at": iso(snap.generated_at),
        "seq": seq,
        "count": len(miners),
        "totals": {
            "online": sum(m.state != "offline" for m in miners),
            "rated_ths": round(sum(m.rated_ths or 0.0 for m in miners), 3),
            "rated_w": round(sum(m.rated_w or 0.0 for m in miners), 1),
        },
    }


def snapshot_from_payload(payload: Mapping[str, Any]) -> Snapshot:
    """Back from a published snapshot (the publisher restores its last state this way)."""
    miners = [miner_from_json(m) for m in payload["miners"]]
    return Snapshot(
        payload["site"],
        payload["owner_bin"],
        _parse_time(payload["generated_at"]),
        {m.id: m for m in miners},
        payload.get("owner"),
        payload.get("data_centre"),
    )


def _event_body(
    kind: str, m: Miner, snap: Snapshot, at: str, event_id: str, extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    body = {
        "schema": EVENT_SCHEMA,
        "id": event_id,
        "type": kind,
        "owner_bin": snap.owner_bin,
        "site": snap.site,
        "at": at,
        "miner_id": m.id,
        "miner": miner_to_json(m),
    }
    if extra:
        body.update(extra)
    return body


class Events(Sequence[dict[str, Any]]):
    """``diff``'s events, each made as a new dict whenever read (``after``'s keys last, e.g.
    the agent's id).

    What is kept per event is its kind, its miner, its id and its own extra keys: the first
    inventory of a farm is an ``added`` event per miner: as a list of dicts, 53 MB at the peak
    for 50,000 miners written out, 8 MB this way (tracemalloc, synthetic miners), when only one
    at a time is needed."""

    __slots__ = ("_at", "_rows", "_snap", "after")

    def __init__(
        self,
        rows: list[tuple[str, Miner, str, dict[str, Any] | None]],
        snap: Snapshot,
        after: Mapping[str, Any] | None = None,
    ) -> None:
        self._rows = rows
        self._snap = snap
        self._at = iso(snap.generated_at)
        self.after = after

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self._body(row) for row in self._rows[i]]
        return self._body(self._rows[i])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self._rows:
            yield self._body(row)

    def _body(self, row: tuple[str, Miner, str, dict[str, Any] | None]) -> dict[str, Any]:
        kind, m, event_id, extra = row
        body = _event_body(kind, m, self._snap, self._at, event_id, extra)
        if self.after:
            body.update(self.after)
        return body


def _place(m: Miner) -> dict[str, Any]:
    return {"ip": m.ip, "port": m.port, "location": m.location.to_json() if m.location else None}


def diff(
    old: Snapshot | None,
    new: Snapshot,
    *,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> list[dict[str, Any]]:
    """Events turning ``old`` into ``new``, without ``seq`` (the outbox numbers them).

    Order: removed, moved, changed, added — each sorted by miner id, so the output is stable.
    """
    return list(diff_events(old, new, new_id=new_id))


def diff_events(
    old: Snapshot | None,
    new: Snapshot,
    *,
    new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    after: Mapping[str, Any] | None = None,
) -> Events:
    """``diff``'s events, made one at a time when read (``Events``), with ``after``'s keys
    added to each."""
    before = old.miners if old else {}
    now = new.miners
    rows: list[tuple[str, Miner, str, dict[str, Any] | None]] = []
    for ident in sorted(before.keys() - now.keys()):
        rows.append(("removed", before[ident], new_id(), None))
    common = sorted(before.keys() & now.keys())
    for ident in common:
        a, b = before[ident], now[ident]
        if (a.ip, a.port, a.location) != (b.ip, b.port, b.location):
            rows.append(("moved", b, new_id(), {"from": _place(a), "to": _place(b)}))
    for ident in common:
        a, b = before[ident], now[ident]
        changes = {
            f: {"from": getattr(a, f), "to": getattr(b, f)}
            for f in HARDWARE_FIELDS
            if getattr(a, f) != getattr(b, f)
        }
        if changes:
            rows.append(("changed", b, new_id(), {"changes": changes}))
    for ident in sorted(now.keys() - before.keys()):
        rows.append(("added", now[ident], new_id(), None))
    return Events(rows, new, after)
