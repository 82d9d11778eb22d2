"""Shared shapes of the cgminer-family API and the spec type the firmware modules fill in.

A backend's ``FirmwareSpec`` says, as data, where each reading field comes from: a ``Source``
names the replies its pure extractor reads. A name is an API command ("stats", "get.device.info")
or, when it starts with "/", an endpoint of the backend's HTTP API (``WebApi``: a derivative
firmware's web API, the stock web UI, Braiins OS's REST API). The poller (collector.py) sends
each transport's deduplicated set once per poll and knows no firmware by name.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, overload

from kuat.collectors.cgminer.firmware import Firmware

if TYPE_CHECKING:
    import httpx

    from kuat.collectors.cgminer.access import MinerAccess

Body = dict[str, Any]
# An extractor gets one reply body (or None) per command of its Source, in order, and returns
# the field's value or None. It may raise on odd shapes; the engine turns that into a note.
Extractor = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Source:
    commands: tuple[str, ...]
    extract: Extractor


def is_web(name: str) -> bool:
    """True for an HTTP endpoint of the backend's ``WebApi``, False for an API command."""
    return name[:1] == "/"


@dataclass(frozen=True, slots=True)
class Credential:
    """A port, account or password a backend reads from ``MinerAccess`` (access.py), with its
    factory default. Declared at module level in the backend that needs it; two backends may
    declare the same name (``web_port``, where several firmwares serve their web API) with the same
    default.

    ``firmware`` and ``key`` say where a site sets it: key ``key`` of the agent's
    ``[asic.credentials.<firmware>]`` table (agent/config.py builds that table from these
    declarations, ``doc`` is its meaning in config/REFERENCE.md). A credential without a
    firmware is a setting the backends share (``web_port``), not set per firmware. ``port``: an
    HTTP API port ("web": a probe's --web-port sets it) or another API transport's ("api")."""

    name: str
    default: Any
    secret: bool = False
    firmware: Firmware | None = None
    key: str = ""
    doc: str = ""
    port: Literal["web", "api"] | None = None


# What a backend's HTTP reads are: (client, host, port, access, endpoints, deadline) ->
# (bodies by endpoint, one-line causes by endpoint). A body is whatever the extractors of the
# endpoint read (a decoded document, or a smaller record made of it). Never raises for the
# device's sake, except a transport-kind WebApi (ePIC), which raises ApiError as a client does.
WebFetch = Callable[
    ["httpx.AsyncClient", str, int, "MinerAccess", tuple[str, ...], float],
    Awaitable[tuple[dict[str, Any], dict[str, str]]],
]


@dataclass(frozen=True, slots=True)
class WebApi:
    """How a backend reads its HTTP endpoints, and when."""

    # in notes and log lines: "the web UI", "the Braiins OS REST API"
    name: str
    # the MinerAccess field with its port; None: the miner's API port itself (ePIC)
    port: str | None
    fetch: WebFetch
    # identity read off the hot path by background workers, at most once per identity
    # interval (a slow CGI, a login per read); else read within the poll, after the API answered
    background: bool = False
    # what the web API alone makes of a miner whose API gave no answer: the reading's base
    # values, or None when it cannot stand for the API (e.g. only while mining is stopped)
    alone: Callable[[Mapping[str, Any]], Mapping[str, Any] | None] | None = None


# How the API commands of a firmware travel: the cgminer JSON API on the target's port, its
# length-framed cousin (Whatsminer API v3) on its own port, or none (HTTP only: ePIC).
Transport = Literal["cgminer", "v3", "http"]


class Clues(NamedTuple):
    """What detection looks at, worked out once from the discovery replies (version, summary,
    stats, pools; error replies too: btminer refuses ``version`` but signs the refusal). A
    NamedTuple: detection runs on every poll, and a tuple is the cheapest record to build."""

    bodies: Mapping[str, Body]
    descriptions: str  # every reply's STATUS Description, lower case
    version: Body  # the VERSION row
    vkeys: frozenset[str]  # its keys, lower case
    stats_head: Body  # the first STATS row
    kind: str  # the model's Type from version, stats or the new_api INFO header, lower case


def clues(bodies: Mapping[str, Body]) -> Clues:
    version = item(bodies.get("version"), "VERSION") or {}
    stats_head = item(bodies.get("stats"), "STATS") or {}
    # S21-era new_api stats: the header is a top-level INFO with "type" (firmware/bitmain/)
    info = (bodies.get("stats") or {}).get("INFO")
    info_type = info.get("type") if isinstance(info, dict) else None
    return Clues(
        bodies,
        " ".join([status_description(b) for b in bodies.values()]).lower(),
        version,
        frozenset([k.lower() for k in version]),
        stats_head,
        str(version.get("Type") or stats_head.get("Type") or info_type or "").lower(),
    )


@dataclass(frozen=True, slots=True)
class FirmwareSpec:
    family: Firmware
    vendor: str | None
    fields: Mapping[str, Source]
    # commands this firmware refuses inside "a+b" (btminer's get_* and status)
    alone: frozenset[str] = frozenset()
    # commands a control action uses, for the simulator and control.py
    sleep_command: tuple[str, str | None] | None = None
    wake_command: tuple[str, str | None] | None = None
    extra_commands: tuple[str, ...] = ()
    # identity-only replies the poller may reuse between polls (see collector.STICKY_POLLS)
    sticky: frozenset[str] = frozenset()
    # commands some builds of this firmware lack: their refusal is no error in the reading
    optional: frozenset[str] = frozenset()
    # extra keys for every cgminer request of this firmware (Bitmain's {"new_api": true}), and
    # the commands whose reply they change: a first poll (discovery, sent without them) asks
    # those again with them
    request: Mapping[str, Any] | None = None
    request_changes: tuple[str, ...] = ()
    # whether the discovery replies (bodies by command) come from a build that may answer the
    # request keys at all; False skips that second look (None: always taken). A farm's first
    # cycle asks it of every such miner, one more connection each.
    requery_if: Callable[[Mapping[str, Any]], bool] | None = None
    # how the discovery replies show this firmware; tried in ``detect_rank`` order, lowest first
    # (a derivative before the firmware it derives from); None: found another way (API v3)
    detect: Callable[[Clues], bool] | None = None
    detect_rank: int = 100
    # Scrypt Antminers on this firmware write MH/s into the "GHS" keys (models.toml ghs_key_unit)
    ghs_keys_may_be_mh: bool = False
    # the endpoints ("/...") the fields name, and how they are read
    web: WebApi | None = None
    transport: Transport = "cgminer"
    # a transport on a port of its own (v3): the MinerAccess field with it. A target on that
    # port, or on the default one when it gives no answer and was last seen as one of
    # ``fallback_from`` (or never seen), is polled this way (collector.py)
    api_port: str | None = None
    fallback_from: frozenset[Firmware] = frozenset()
    # a firmware whose model names its maker (ePIC runs on other makers' machines): the vendor
    vendor_of: Callable[[str | None], str | None] | None = None
    # the deduplicated command set, in first-use order; derived once, sent every poll
    commands: tuple[str, ...] = field(init=False)
    # of those, the API commands and the HTTP endpoints
    api_commands: tuple[str, ...] = field(init=False, repr=False)
    web_paths: tuple[str, ...] = field(init=False, repr=False)
    # (field, its commands, its extractor) for every field: what the engine runs per poll
    plan: tuple[tuple[str, tuple[str, ...], Extractor], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        seen: dict[str, None] = {}
        for src in self.fields.values():
            for c in src.commands:
                seen.setdefault(c, None)
        for c in self.extra_commands:
            seen.setdefault(c, None)
        object.__setattr__(self, "commands", tuple(seen))
        # what the WebApi fetches: every reply of an HTTP-only firmware, else the endpoints
        http_only = self.transport == "http"
        web = tuple(c for c in seen if http_only or is_web(c))
        object.__setattr__(self, "web_paths", web)
        object.__setattr__(self, "api_commands", tuple(c for c in seen if c not in web))
        if web and self.web is None:
            raise ValueError(f"{self.family}: fields read {web} but the spec declares no WebApi")
        if self.web is not None and self.web.background:
            # the poller tells a reboot or another box from the API's model and uptime: a
            # background document feeding them would hide that
            for name in ("model", "uptime_s"):
                feeds = self.fields.get(name)
                if feeds is not None and any(c in web for c in feeds.commands):
                    raise ValueError(f"{self.family}: {name} must come from the API")
        plan = tuple((name, src.commands, src.extract) for name, src in self.fields.items())
        object.__setattr__(self, "plan", plan)


# --- value helpers ---------------------------------------------------------------------------


def num(v: Any) -> float | None:
    """A finite number from a number or numeric string; anything else is 'not reported'."""
    cls = v.__class__
    # exact-type checks first: every field of every poll comes through here, and a decoder
    # gives plain float/int/str (bool is an int subclass, never a number here)
    if cls is float:
        return v if math.isfinite(v) else None
    if cls is int or (isinstance(v, int | float) and not isinstance(v, bool)):
        try:
            f = float(v)
        except OverflowError:  # an integer beyond float range (10**400) is no reading
            return None
    elif isinstance(v, str):
        try:
            f = float(v.strip().strip("'\""))
        except ValueError:
            return None
    else:
        return None
    return f if math.isfinite(f) else None


def integer(v: Any) -> int | None:
    f = num(v)
    return int(f) if f is not None and abs(f) < 2**63 else None


def text(v: Any) -> str | None:
    if isinstance(v, str):
        if (
            v
            and v[0] not in _QUOTES
            and v[-1] not in _QUOTES
            and not (v[0].isspace() or v[-1].isspace())
        ):
            return v  # the usual, already clean: no new string
        s = v.strip().strip("'\"").strip()
        return s or None
    return None


_QUOTES = "'\""


_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")
_BARE_MAC = re.compile(r"^[0-9A-Fa-f]{12}$")


def mac(v: Any) -> str | None:
    """MACs lower-case with colons (readings.normal_mac, the register's spelling), so one miner
    seen by two firmwares, the register and the telemetry has one identity."""
    s = text(v)
    if s is None:
        return None
    if _BARE_MAC.match(s):
        s = ":".join(s[i : i + 2] for i in range(0, 12, 2))
    if not _MAC.match(s):
        return None
    return s.replace("-", ":").lower()


def item(body: Body | None, key: str, index: int = 0) -> dict[str, Any] | None:
    """``body[key][index]`` if it is a dict (the cgminer reply shape), else None."""
    if body is None:
        return None
    lst = body.get(key)
    if isinstance(lst, list) and len(lst) > index and isinstance(lst[index], dict):
        return lst[index]
    return None


def items(body: Body | None, key: str) -> Iterator[dict[str, Any]]:
    if body is None:
        return
    lst = body.get(key)
    if isinstance(lst, list):
        for x in lst:
            if isinstance(x, dict):
                yield x


def merged(body: Body | None, key: str) -> dict[str, Any]:
    """All dicts of ``body[key]`` merged, a later one's value winning a key both have: bmminer
    splits STATS into a header and a data part. The order of the keys is not kept."""
    lst = body.get(key) if body is not None else None
    if not isinstance(lst, list):
        return {}
    parts = [x for x in lst if isinstance(x, dict)]
    if not parts:
        return {}
    # a copy of the last part (its ~80 keys cloned at once, not inserted one by one), then the
    # keys only earlier parts have, the later part first
    out = dict(parts[-1])
    for x in reversed(parts[:-1]):
        for k, v in x.items():
            if k not in out:
                out[k] = v
    return out


def first_num(d: Mapping[str, Any] | None, *keys: str) -> float | None:
    if not d:
        return None
    for k in keys:
        v = num(d.get(k))
        if v is not None:
            return v
    return None


def positive(values: Any) -> tuple[float, ...]:
    """Numbers > 0; firmware writes 0 for an empty slot, which is 'no sensor', not 0 °C.
    Each is the object every miner's readings share for it (shared_float): temperatures."""
    out = []
    for v in values:
        f = num(v)
        if f is not None and f > 0:
            got = _FLOATS.get(f)  # shared_float's usual case inline: a poll's hot path
            out.append(got if got is not None else shared_float(f))
    return tuple(out)


def one_temp(v: Any) -> tuple[float, ...]:
    """One temperature as a tuple of it (empty when it is not a number), 0 and below kept (an
    inlet in a Kazakh winter); shared as ``positive``'s are."""
    f = num(v)
    return () if f is None else (shared_float(f),)


def temps_rows(temps: Body | None) -> Any:
    """Board and chip temperatures of a ``temps`` reply's TEMPS rows (the command Braiins OS
    and LuxOS both answer, in the same shape); None when it has no rows."""
    from kuat.collectors.readings import AsicTemps

    rows = list(items(temps, "TEMPS"))
    if not rows:
        return None
    return AsicTemps(
        board=positive(r.get("Board") for r in rows), chip=positive(r.get("Chip") for r in rows)
    )


def fans_rows(fans: Body | None) -> tuple[int, ...] | None:
    """The RPM of each FANS row of a ``fans`` reply (Braiins OS, LuxOS); None with no rows."""
    rows = list(items(fans, "FANS"))
    if not rows:
        return None
    return tuple(shared_int(v) for r in rows if (v := integer(r.get("RPM"))) is not None)


def status_description(body: Body | None) -> str:
    if body is None:
        return ""
    st = body.get("STATUS")
    if isinstance(st, list) and st and isinstance(st[0], dict):
        d = st[0].get("Description", "")
    else:
        d = body.get("Description", "")
    return d if d.__class__ is str else str(d)


_POOL_INFO: Any = None  # readings.PoolInfo, once pools() has run


def pools(body: Body | None) -> tuple[Any, ...] | None:
    """POOLS -> PoolInfo; the active pool is the one stratum says, else the best-priority alive."""
    global _POOL_INFO
    pool_info = _POOL_INFO
    if pool_info is None:
        # imported here, once: keep this module free of reading types at import time
        from kuat.collectors.readings import PoolInfo

        pool_info = _POOL_INFO = PoolInfo
    if body is None or "POOLS" not in body:
        return None
    rows: list[tuple[str, dict[str, Any]]] = []
    active_idx: int | None = None
    lst = body["POOLS"]
    for p in lst if isinstance(lst, list) else ():
        if not isinstance(p, dict):
            continue
        url = text(p.get("URL"))
        if url:
            if active_idx is None and p.get("Stratum Active") is True:
                active_idx = len(rows)
            rows.append((url, p))
    if active_idx is None:
        alive = [
            (integer(p.get("Priority")) or 0, i)
            for i, (_, p) in enumerate(rows)
            if str(p.get("Status", "")).lower() == "alive"
        ]
        if alive:
            active_idx = min(alive)[1]
    intern = sys.intern
    out = []
    for i, (url, p) in enumerate(rows):
        user, status = text(p.get("User")), text(p.get("Status"))
        # shared() inline and the fields by position: three pools per poll of every miner
        out.append(
            pool_info(
                intern(url),
                intern(user) if user is not None else None,
                intern(status) if status is not None else None,
                i == active_idx,
            )
        )
    return tuple(out)


@overload
def shared(s: str) -> str: ...
@overload
def shared(s: str | None) -> str | None: ...
def shared(s: str | None) -> str | None:
    """One string object for a value thousands of miners repeat (pool URLs, users, statuses,
    models, firmware builds): every reading of a 50,000-miner cycle is held at once, and a
    decoder makes a new object per reply (bench/asic_poll.py --scale measures the saving)."""
    return sys.intern(s) if s is not None else None


_INTS: dict[int, int] = {}
_INTS_MAX = 4096


_FLOATS: dict[float, float] = {}


def shared_float(f: float) -> float:
    """One float object for a value many miners repeat (temperatures: whole or tenth degrees
    in a narrow range), as ``shared_int``; NaN is never shared (it equals nothing)."""
    if f.__class__ is not float:
        return f  # an int stays one (61 and 61.0 are one key)
    got = _FLOATS.get(f)
    if got is not None:
        return got
    if len(_FLOATS) < _INTS_MAX and f == f:
        _FLOATS[f] = f
    return f


def shared_int(i: int) -> int:
    """One int object for a value many miners repeat (fan rpm): ints above 256 are a new object
    each, and every reading of a 50,000-miner cycle is held at once. Bounded: past _INTS_MAX
    distinct values the rest are returned as they are."""
    got = _INTS.get(i)
    if got is not None:
        return got
    if len(_INTS) < _INTS_MAX:
        _INTS[i] = i
    return i
