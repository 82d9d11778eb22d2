"""The ASIC poller: one poll per miner -> AsicReading or DeviceError, never an exception.

A generic engine over the firmware backends (collectors/cgminer/firmware/<name>.py): each
backend's ``FirmwareSpec`` says where every field comes from (an API command, or an endpoint of
its ``WebApi``), how it is detected, which replies are identity (``sticky``), which transport
carries its commands and which credentials it needs (``MinerAccess``, access.py). Nothing here
names a firmware.

The first poll of a miner sends the discovery set (summary+stats+pools+version), detects the
firmware and, if that firmware needs more (LuxOS ``config``/``power``, btminer
``get_miner_info``), fetches the rest within the same deadline. The firmware is cached per
host:port, so later polls send exactly its deduplicated command set, once, per transport; each
poll re-checks the firmware on the replies it already has, so a re-flashed miner is picked up
without a restart.

Identity replies a backend marks ``sticky`` (btminer's get_miner_info, a web API's info page,
ePIC's capabilities) are reused for up to STICKY_POLLS polls, and re-read at once when the live
MAC differs or the uptime went backwards: an IP that now answers for another box must never keep
the old box's serial.

Endpoints of a backend's web API are read within the poll, after the API answered (a failing
web API is a note in the reading, never a lost reading), unless the backend marks them
``background``: identity behind a slow CGI or a login (the stock web UI, Braiins OS's REST
API), fetched off the hot path. A poll only notes that a fetch is due and reads whatever is
cached; background workers (at most WEB_CONCURRENCY per backend) fetch at most once per
``identity_interval_s`` per miner, and at once when the API shows a reboot or another box behind
the address. On firmware without such an API the fetch fails in the background, the cause is
remembered, and the miner stays known by ip:port. A backend whose web API can stand for its
API (``WebApi.alone``) is read from it alone when the API gives no answer.

Transports of their own (``FirmwareSpec.transport``):

- "v3" (Whatsminer API v3, v3.py) on its own port (``api_port``, 4433). A target on that port
  is polled that way. A target on 4028 (the config default) falls back to it by this rule:
  trigger: the 4028 poll got no answer at all (refused, reset, closed without a byte, or timed
  out connecting / waiting for the first byte: client.NoAnswer), and the miner is not known as
  another firmware (unknown so far, or last seen as one of ``fallback_from``). A bad, slow or
  flooding reply is an answer: no fallback. The attempt uses what is left of the same
  deadline, so a poll never takes longer; when 4028 used the whole deadline, the next poll
  tries the other port first. An answer is remembered per host:port: later polls go straight
  there (the reading keeps the target's port, so inventory and locations, keyed by the
  configured target, do not see a move); forgotten when it stops answering (NoAnswer), and the
  same poll tries 4028 again.
- "http" (ePIC, epic.py): HTTP on the API port, no cgminer API. An unknown miner whose API
  port answers our request with an HTTP status line is polled that way at once, within the same
  deadline, and remembered; when the port stops speaking HTTP (WrongFirmware), the memo is
  dropped and the same poll asks the cgminer API.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import httpx

from kuat.collectors.cgminer.access import MinerAccess
from kuat.collectors.cgminer.client import (
    DEFAULT_PORT,
    ApiError,
    CgminerClient,
    HttpAnswer,
    NoAnswer,
    Replies,
    WrongFirmware,
)
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.common import FirmwareSpec
from kuat.collectors.cgminer.firmware.whatsminer.v3 import V3Client
from kuat.collectors.cgminer.http_json import http_client
from kuat.collectors.cgminer.parsers import DISCOVERY_COMMANDS, SPECS, build_reading, detect_family
from kuat.collectors.readings import AsicReading, DeviceError, DeviceKind, PoolInfo

log = logging.getLogger(__name__)

AsicResult = AsicReading | DeviceError
_NO_CAUSES: Mapping[str, str] = MappingProxyType({})

# Identity replies (FirmwareSpec.sticky) are re-read at least this often, in polls.
STICKY_POLLS = 30
# Distinct kept identity replies remembered per command, to be shared by the miners that send
# the same bytes (a LuxOS ``profiles`` reply is the same on every box of a model)
STICKY_SHARED = 32
_STICKY_SEEN: dict[str, dict[bytes, bytes]] = {}


def _shared_sticky(command: str, blob: bytes) -> bytes:
    """One bytes object for an identity reply many miners send alike, else ``blob``. Per
    command and bounded, oldest out: replies unique per box (a MAC inside) pass through their
    own few places and never push out the shared ones of another command."""
    seen = _STICKY_SEEN.setdefault(command, {})
    got = seen.get(blob)
    if got is not None:
        return got
    if len(seen) >= STICKY_SHARED:
        del seen[next(iter(seen))]
    seen[blob] = blob
    return blob


# Miners whose failed identity fetch is logged at warning level, per fetcher; the rest at debug.
IDENTITY_WARNINGS = 20
# Web UI fetches in flight at once: the CGI is slow and identity is never urgent.
WEB_CONCURRENCY = 16
# Uptime may run ahead of our clock by this much before we call it another box on the address.
UPTIME_SLACK_S = 120.0
# Less time than this left after 4028 gave no answer: not worth a connect to another port now.
FALLBACK_MIN_S = 0.05
# Backends on a port of their own (v3), and those whose API is HTTP on the API port (ePIC).
_OWN_PORT = tuple(s for s in SPECS.values() if s.api_port is not None)
_HTTP = tuple(s for s in SPECS.values() if s.transport == "http")
# How the engine names a transport in a cause a person reads.
_TRANSPORT = {"v3": "API v3", "http": "HTTP API", "cgminer": "API"}


def _version_sig(bodies: Mapping[str, Any]) -> int | None:
    """A fingerprint of how the firmware names itself (the ``version`` reply: its build, its
    compile time, its Type, the reply's Description), or None without one. Any other firmware
    (a re-flash, another box) answers with another: while it holds, detection would find the
    same family again, and costs ~10 times this (bench/asic_engine.py)."""
    v = bodies.get("version")
    if v.__class__ is not dict:
        return None
    rows, st = v.get("VERSION"), v.get("STATUS")
    if rows.__class__ is not list or not rows or rows[0].__class__ is not dict:
        return None
    head = st[0] if st.__class__ is list and st else None
    desc = head.get("Description") if head.__class__ is dict else None
    try:
        return hash((desc, *rows[0].items()))
    except TypeError:  # a nested value: no fingerprint, detect as ever
        return None


def _same_as(r: AsicReading, name: str, kept: str | None) -> str | None:
    """``r``'s field ``name``, made ``kept`` when it is equal (the reading is not out of the
    poller yet: nobody has seen its own string)."""
    value: str | None = getattr(r, name)
    if value is not None and value is not kept and value == kept:
        object.__setattr__(r, name, kept)
        return kept
    return value


class _Memo:
    """What the poller remembers about one host:port between polls."""

    __slots__ = ("age", "family", "mac", "pools", "serial", "sticky", "uptime_s", "version_sig")

    def __init__(self, family: Firmware) -> None:
        self.family = family
        # Identity replies are kept as compact JSON: a decoded LuxOS ``profiles`` reply costs
        # ~4 KB per miner as dicts, a third of that as bytes (bench/asic_poll.py --scale).
        # (command, reply) pairs, not a dict: a one-entry dict is ~0.2 KB a miner
        self.sticky: tuple[tuple[str, bytes], ...] = ()
        self.age = 0
        # the last reading's serial and MAC (after): the same string objects poll after poll
        self.serial: str | None = None
        self.mac: str | None = None
        self.uptime_s: int | None = None
        # _version_sig of the replies the family was detected on
        self.version_sig: int | None = None
        # the last reading's pools (after): most polls repeat them
        self.pools: tuple[PoolInfo, ...] = ()

    def reusable(self) -> dict[str, dict[str, Any]]:
        if self.age >= STICKY_POLLS:
            return {}
        return {c: json.loads(b) for c, b in self.sticky}

    def same_box(self, r: AsicReading) -> bool:
        """False if the reply says this is another miner, or the same one rebooted."""
        if self.mac is not None and r.mac is not None and r.mac != self.mac:
            return False
        return not (
            self.uptime_s is not None and r.uptime_s is not None and r.uptime_s < self.uptime_s
        )

    def after(
        self,
        r: AsicReading,
        spec: FirmwareSpec,
        replies: Replies,
        web: Mapping[str, Any],
        *,
        fetched_sticky: bool,
    ) -> None:
        if fetched_sticky:
            kept = []
            for c in spec.sticky:
                b = web.get(c) if c in web else replies.ok(c)
                if b is not None:
                    blob = json.dumps(b, separators=(",", ":")).encode()
                    kept.append((c, _shared_sticky(c, blob)))
            # most firmwares keep none: the empty tuple, shared
            self.sticky = tuple(kept)
            self.age = 0
        else:
            self.age += 1
        # A firmware that reports its serial and MAC in every reply (Whatsminer, LuxOS) gives
        # new strings each poll: the reading takes the last poll's, so they are not copies per
        # miner per cycle, nor the curtailer's, the inventory's and the telemetry's keys made
        # from earlier readings copies of their own (issue 15).
        self.serial = _same_as(r, "serial", self.serial)
        self.mac = _same_as(r, "mac", self.mac)
        self.uptime_s = r.uptime_s
        pools = r.pools
        if pools == self.pools:
            if pools is not self.pools:
                # The same pools as the last poll: the reading takes the last poll's objects
                # (it is not out of the poller yet, so nobody has seen the others). Three
                # PoolInfo and their tuple a miner a cycle would otherwise outlive the young
                # collections, for full passes to walk and the heap to scatter (issue 15).
                object.__setattr__(r, "pools", self.pools)
        else:
            self.pools = pools


class _WebState:
    """One stock miner's web identity and what decides when to read it again."""

    __slots__ = ("api_model", "cause", "done", "due_at", "gen", "identity", "queued", "seen")

    def __init__(self) -> None:
        # the backend's documents in its endpoints' order (small records: web.BitmainIdentity),
        # or None; a tuple, not a dict: one per stock miner, 50,000 of them (bench --scale)
        self.identity: tuple[Any, ...] | None = None
        self.due_at = 0.0  # loop time when the next fetch may start
        self.queued = False  # waiting for a worker or being fetched
        # set when the queued fetch ends; made only for someone waiting for it (wait)
        self.done: asyncio.Event | None = None
        self.gen = 0  # bumped when the box behind the address may have changed
        self.cause: str | None = None  # last failure, so a repeat is not logged again
        self.seen: tuple[float, int] | None = None  # (loop time, uptime_s) at the last poll
        self.api_model: str | None = None

    def moved(self, model: str | None, uptime_s: int | None, now: float) -> bool:
        """True if the API says the box rebooted or another box now answers here."""
        if self.api_model is not None and model is not None and model != self.api_model:
            return True
        if self.seen is None or uptime_s is None:
            return False
        then, uptime = self.seen
        went_back = uptime_s < uptime
        ran_ahead = uptime_s - uptime > (now - then) + UPTIME_SLACK_S
        return went_back or ran_ahead


# One identity read of one host: (client, host) -> documents by endpoint, or a one-line cause.
IdentityFetch = Callable[[httpx.AsyncClient, str], Awaitable[Any]]


class _IdentityFetcher:
    """Identity a backend's API lacks, read from its web API in the background (``WebApi.
    background``), cached per host:port: one fetcher per backend.

    A deque of due miners and at most WEB_CONCURRENCY workers that exit when it is empty, rather
    than a task per miner: at 50,000 miners a waiting task each is memory for nothing, and no
    task outlives the work.
    """

    def __init__(
        self,
        fetch: IdentityFetch,
        *,
        source: str,
        interval_s: float,
        paths: tuple[str, ...] = (),
    ) -> None:
        """``source`` names where the identity comes from, in log lines ("the web UI");
        ``paths`` the endpoints ``fetch`` returns documents of."""
        self.fetch = fetch
        self.source = source
        self.paths = paths
        self.interval_s = interval_s
        self._state: dict[tuple[str, int], _WebState] = {}
        self._queue: deque[tuple[str, int]] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._closed = False
        self._warned = 0
        # a place each read holds while it runs (AsicPoller.set_background_admit), or None
        self.admit: Callable[[], AbstractAsyncContextManager[object]] | None = None

    def observe(self, key: tuple[str, int], model: str | None, uptime_s: int | None) -> None:
        """Note one poll of a miner (its API's model and uptime); queue a fetch if one is due.
        Never waits."""
        now = asyncio.get_running_loop().time()
        st = self._state.get(key)
        if st is None:  # not setdefault: that would build a _WebState on every poll
            st = self._state[key] = _WebState()
        if st.moved(model, uptime_s, now):
            # the cached serial may be another box's: drop it, read afresh now
            st.identity, st.due_at, st.gen = None, now, st.gen + 1
        st.seen = (now, uptime_s) if uptime_s is not None else None
        st.api_model = model
        if not st.queued and now >= st.due_at and not self._closed:
            st.queued, st.due_at = True, now + self.interval_s
            self._queue.append(key)
            self._kick()

    def documents(self, key: tuple[str, int]) -> tuple[Any, ...] | None:
        """The documents read for this miner, in ``paths`` order (the same object until the
        next read or drop), or None."""
        st = self._state.get(key)
        return st.identity if st else None

    async def wait(self, key: tuple[str, int], until: float) -> None:
        """Wait for this miner's queued fetch, but not past loop time ``until``."""
        st = self._state.get(key)
        if st is None or not st.queued:
            return
        if st.done is None:
            # made for whoever waits (a probe's poll), not when the fetch is queued: the agent's
            # polls never wait, and an Event with its waiters' deque is ~0.4 KB, held by every
            # stock miner queued, tens of thousands while a large farm's first identities are
            # read over several cycles (farm_scale --tracemalloc: 7,524 of them at 10,000)
            st.done = asyncio.Event()
        left = until - asyncio.get_running_loop().time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(st.done.wait(), max(0.0, left))

    def identity(self, key: tuple[str, int]) -> Any:
        """The identity record read (the first document), or None."""
        st = self._state.get(key)
        docs = st.identity if st else None
        return next((d for d in docs if d is not None), None) if docs else None

    def error(self, key: tuple[str, int]) -> str | None:
        st = self._state.get(key)
        return st.cause if st else None

    async def aclose(self) -> None:
        self._closed = True
        workers = list(self._workers)
        for t in workers:
            t.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    def _kick(self) -> None:
        if self._closed or not self._queue or len(self._workers) >= WEB_CONCURRENCY:
            return
        task = asyncio.get_running_loop().create_task(self._worker())
        self._workers.add(task)
        task.add_done_callback(self._worker_done)

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        self._workers.discard(task)
        self._kick()  # a miner queued while this worker was closing its client

    async def _worker(self) -> None:
        # http only, no pooling: one short exchange per miner an hour, to a different host each
        # time; trust_env=False because a site's HTTP(S)_PROXY must not carry LAN miner traffic
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(trust_env=False, limits=limits, verify=False) as client:
            while self._queue:
                async with contextlib.nullcontext() if self.admit is None else self.admit():
                    if not self._queue:
                        break
                    await self._fetch_one(client, self._queue.popleft())

    async def _fetch_one(self, client: httpx.AsyncClient, key: tuple[str, int]) -> None:
        st = self._state[key]
        gen = st.gen
        try:
            result = await self._fetch(client, key[0])
        finally:
            st.queued = False
        if st.gen == gen:  # else the box changed mid-fetch; the next poll queues a fresh read
            if isinstance(result, str):
                self._failed(key, st, result)
            else:
                st.identity, st.cause = tuple(result.get(p) for p in self.paths), None
        if st.done is not None:
            st.done.set()  # after the identity is stored: a waiting probe reads it next
            # waiters hold the event already; dropping it saves ~0.8 KB per stock miner
            st.done = None

    async def _fetch(self, client: httpx.AsyncClient, host: str) -> Any:
        try:
            return await self.fetch(client, host)
        except Exception as e:  # a bug here must cost one miner's identity, not the worker
            return f"internal error: {type(e).__name__}: {e}"

    def _failed(self, key: tuple[str, int], st: _WebState, cause: str) -> None:
        # once per miner and cause at warning, and for the first IDENTITY_WARNINGS miners only:
        # a farm with the web UI locked down (or on firmware without the API) must not log
        # 50,000 warnings; the identity kept (if any) is still the box's
        level = logging.DEBUG
        if cause != st.cause and self._warned < IDENTITY_WARNINGS:
            level = logging.WARNING
            self._warned += 1
        st.cause = cause
        log.log(
            level,
            "asic %s:%s: no identity from %s (%s); retrying in %.0f s",
            key[0],
            key[1],
            self.source,
            cause,
            self.interval_s,
        )
        if level == logging.WARNING and self._warned == IDENTITY_WARNINGS:
            log.warning(
                "identity from %s failed on %d miners; further failures are logged at debug "
                "level (`kuat probe asic HOST` shows one miner's identity)",
                self.source,
                IDENTITY_WARNINGS,
            )


class AsicPoller:
    def __init__(
        self,
        *,
        timeout_s: float = 3.0,
        max_reply_bytes: int = 65536,
        concurrency: int = 256,
        identity_interval_s: float = 3600.0,
        access: MinerAccess | None = None,
        background_identity: bool = True,
        **settings: Any,
    ) -> None:
        """``settings``: MinerAccess fields over ``access`` (``web_password="…"``,
        ``braiins_web_port=8080``). A port set to None turns off what a backend reads there:
        ``web_port=None`` the stock web UI's identity, ``v3_port=None`` the fallback to
        Whatsminer API v3 (targets on its port are still polled over it), and so on.
        ``web_timeout_s`` bounds one background identity fetch; ``background_identity=False``
        reads none (a control action's confirmation)."""
        self.timeout_s = timeout_s
        self.concurrency = max(1, concurrency)
        given = {k: v for k, v in settings.items() if v is not None}
        self.access = access.replace(**given) if access is not None else MinerAccess(**given)
        # the settings turned off (None): a WebApi or a transport on that port is not used
        self._off = frozenset(k for k, v in settings.items() if v is None)
        self.client = CgminerClient(timeout_s=timeout_s, max_reply_bytes=max_reply_bytes)
        self.v3 = V3Client(timeout_s=timeout_s, max_reply_bytes=max_reply_bytes)
        self._memo: dict[tuple[str, int], _Memo] = {}
        # default-port targets whose last poll timed out with no time left to try the other
        # transport's port: try it first
        self._probe_other: set[tuple[str, int]] = set()
        # port -> the backend whose own transport is there, or None (_own_port_spec)
        self._own_port: dict[int, FirmwareSpec | None] = {}
        # shared by every poll_many call and every confirmation re-read (guarded_poll), so
        # overlapping cycles still keep at most `concurrency` miners in flight
        self._sem = asyncio.Semaphore(self.concurrency)
        # one HTTP client for the web reads within polls, made in the loop that first needs it
        self._http: httpx.AsyncClient | None = None
        # backend -> its background identity fetcher (WebApi.background)
        self._idents: dict[Firmware, _IdentityFetcher] = {
            spec.family: _IdentityFetcher(
                functools.partial(self._read_identity, spec),
                source=spec.web.name,
                interval_s=identity_interval_s,
                paths=spec.web_paths,
            )
            for spec in SPECS.values()
            if background_identity
            and spec.web is not None
            and spec.web.background
            and self._web_on(spec)
        }

    def set_background_admit(
        self, admit: Callable[[], AbstractAsyncContextManager[object]] | None
    ) -> None:
        """A context each background identity read holds while it runs (the agent's: reads
        only while no poll waits for a place, backpressure.PollGate.admit_background)."""
        for f in self._idents.values():
            f.admit = admit

    def _web_on(self, spec: FirmwareSpec) -> bool:
        web = spec.web
        return web is not None and (web.port is None or web.port not in self._off)

    def _port(self, field: str) -> int:
        return int(getattr(self.access, field))

    def family_of(self, host: str, port: int = DEFAULT_PORT) -> Firmware | None:
        """The firmware detected at host:port on an earlier poll, if any."""
        memo = self._memo.get((host, port))
        return memo.family if memo else None

    def _ident_fetcher(self, host: str, port: int) -> _IdentityFetcher | None:
        # by the firmware seen last: a box re-flashed from stock to Braiins (a common upgrade)
        # must not be judged by what the stock web UI said before
        family = self.family_of(host, port)
        return self._idents.get(family) if family else None

    def identity_of(self, host: str, port: int = DEFAULT_PORT) -> Any:
        """The identity record a background fetch read for this miner (web.BitmainIdentity for
        the stock web UI and Braiins OS's REST API), if one was read."""
        f = self._ident_fetcher(host, port)
        return f.identity((host, port)) if f else None

    def identity_error(self, host: str, port: int = DEFAULT_PORT) -> str | None:
        """Why the last background identity fetch failed, or None if it did not (or never
        ran)."""
        f = self._ident_fetcher(host, port)
        return f.error((host, port)) if f else None

    def fetches_identity(self, family: str | None) -> bool:
        """True if this firmware's serial/MAC come from a background fetch, not from the poll."""
        return family in self._idents

    async def aclose(self) -> None:
        """Stop the background identity fetches and close the HTTP client (polls keep working;
        a later web read opens a new client)."""
        for f in self._idents.values():
            await f.aclose()
        if self._http is not None:
            client, self._http = self._http, None
            await client.aclose()

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = http_client()
        return self._http

    async def _read_identity(
        self, spec: FirmwareSpec, client: httpx.AsyncClient, host: str
    ) -> dict[str, Any] | str:
        """One background read of a backend's web API: its documents, or a one-line cause."""
        assert spec.web is not None and spec.web.port is not None
        timeout = float(self.access.get("web_timeout_s") or self.timeout_s)
        deadline = asyncio.get_running_loop().time() + timeout
        docs, causes = await spec.web.fetch(
            client, host, self._port(spec.web.port), self.access, spec.web_paths, deadline
        )
        if not docs:
            return "; ".join(dict.fromkeys(causes.values())) or f"{spec.web.name}: no reply"
        return docs

    async def poll(
        self, host: str, port: int = DEFAULT_PORT, *, wait_identity: bool = False
    ) -> AsicResult:
        """One poll. ``wait_identity``: a background identity fetch, if one is under way, may
        use what is left of this poll's deadline, so a one-off probe shows the serial."""
        taken_at = datetime.now(UTC)
        try:
            deadline = self.client.deadline()
            return await self._poll_routed(host, port, taken_at, deadline, wait_identity)
        except ApiError as e:
            return DeviceError(DeviceKind.ASIC, host, port, taken_at, str(e))
        except Exception as e:  # a parser bug must cost one miner, not the cycle
            return DeviceError(
                DeviceKind.ASIC, host, port, taken_at, f"internal error: {type(e).__name__}: {e}"
            )

    async def guarded_poll(self, host: str, port: int = DEFAULT_PORT) -> AsicResult:
        """One poll inside the poller's concurrency limit (a control action's confirmation)."""
        async with self._sem:
            return await self.poll(host, port)

    def uses_v3(self, host: str, port: int = DEFAULT_PORT) -> bool:
        """True if this target is polled over a transport on its own port (Whatsminer API v3),
        its port's or by the fallback."""
        own = self._own_port_spec(port)
        if own is not None:
            return True
        fam = self.family_of(host, port)
        return any(s.family == fam for s in _OWN_PORT)

    def _own_port_spec(self, port: int) -> FirmwareSpec | None:
        """The backend whose own transport is on this port (its default or the configured)."""
        # asked on every poll; the answer depends only on the port and the poller's settings
        try:
            return self._own_port[port]
        except KeyError:
            pass
        own = self._own_port[port] = self._find_own_port_spec(port)
        return own

    def _find_own_port_spec(self, port: int) -> FirmwareSpec | None:
        for s in _OWN_PORT:
            assert s.api_port is not None
            default = MinerAccess.default(s.api_port)
            if port == default or (s.api_port not in self._off and port == self._port(s.api_port)):
                return s
        return None

    def _fallbacks(self, key: tuple[str, int], memo: _Memo | None) -> list[FirmwareSpec]:
        """Own-port transports this default-port target may have moved to (module doc)."""
        if key[1] != DEFAULT_PORT:
            return []
        return [
            s
            for s in _OWN_PORT
            if s.api_port not in self._off
            and (memo is None or memo.family == s.family or memo.family in s.fallback_from)
        ]

    async def _poll_routed(
        self, host: str, port: int, taken_at: datetime, deadline: float, wait_identity: bool
    ) -> AsicReading:
        """By port and by what answered before (module doc)."""
        own = self._own_port_spec(port)
        if own is not None:
            return await self._poll_spec(own, host, port, port, taken_at, deadline, wait_identity)
        key = (host, port)
        memo = self._memo.get(key)
        known = SPECS.get(memo.family) if memo is not None else None
        if known is not None and known.transport == "http":
            try:
                return await self._poll_spec(
                    known, host, port, port, taken_at, deadline, wait_identity
                )
            except WrongFirmware:
                # re-flashed, or another box here: forget it and ask the cgminer API now
                del self._memo[key]
                memo = known = None
        other_cause: str | None = None
        other: FirmwareSpec | None = None
        for s in self._fallbacks(key, memo):
            if key in self._probe_other or known is s:
                self._probe_other.discard(key)
                api_port = self._port(s.api_port or "")
                try:
                    return await self._poll_spec(
                        s, host, api_port, port, taken_at, deadline, wait_identity
                    )
                except NoAnswer as e:
                    # gone: re-flashed, or another box here. Forget it and ask 4028 now.
                    if known is s:
                        del self._memo[key]
                        memo = known = None
                    other, other_cause = s, str(e)
                break
        try:
            return await self._poll_api(host, port, taken_at, deadline, wait_identity)
        except NoAnswer as e:
            if known is not None and known.web is not None and known.web.alone is not None:
                alone = await self._poll_web_alone(known, host, port, taken_at, deadline)
                if alone is not None:
                    return alone
            if other is not None:
                raise NoAnswer(f"{e}; {self._where(other)}: {other_cause}") from None
            candidates = self._fallbacks(key, memo)
            if not candidates:
                raise
            if deadline - asyncio.get_running_loop().time() < FALLBACK_MIN_S:
                self._probe_other.add(key)  # 4028 took the whole deadline: the other first
                raise
            s = candidates[0]
            try:
                reading = await self._poll_spec(
                    s, host, self._port(s.api_port or ""), port, taken_at, deadline, wait_identity
                )
            except ApiError as e3:
                raise type(e)(f"{e}; {self._where(s)}: {e3}") from None
            log.info(
                "asic %s:%s: no answer on %s, %s answers; using it",
                host,
                port,
                port,
                self._where(s),
            )
            return reading
        except HttpAnswer:
            if memo is not None or not _HTTP:
                raise
            reading = await self._poll_spec(
                _HTTP[0], host, port, port, taken_at, deadline, wait_identity
            )
            log.info("asic %s:%s: HTTP answers on the API port: %s", host, port, _HTTP[0].family)
            return reading

    def _where(self, spec: FirmwareSpec) -> str:
        name = _TRANSPORT[spec.transport]
        return f"{name} on port {self._port(spec.api_port)}" if spec.api_port else name

    async def _poll_api(
        self, host: str, port: int, taken_at: datetime, deadline: float, wait_identity: bool
    ) -> AsicReading:
        """The cgminer-family API: discovery for an unknown miner, else its backend's set."""
        key = (host, port)
        memo = self._memo.get(key)
        spec = SPECS.get(memo.family) if memo else None
        if spec is not None and spec.transport != "cgminer":
            spec = None
        reuse = memo.reusable() if memo is not None and spec is not None else {}
        if spec is None:
            commands: Sequence[str] = DISCOVERY_COMMANDS
        else:
            commands = (
                [c for c in spec.api_commands if c not in reuse] if reuse else spec.api_commands
            )
        replies = await self.client.query(
            host,
            port,
            commands,
            alone=spec.alone if spec else (),
            deadline_at=deadline,
            extra=spec.request if spec else None,
        )
        bodies = replies.bodies
        sig = _version_sig(bodies) if spec is not None else None
        if sig is not None and memo is not None and sig == memo.version_sig:
            family: Firmware | None = memo.family  # the same firmware names itself the same
        else:
            family = detect_family(bodies)
        if family is None:
            first = next(iter(replies.errors.values()), "no usable reply")
            raise ApiError(f"miner answered every command with an error ({first})")
        if spec is None or memo is None or family != spec.family:
            memo = self._memo[key] = _Memo(family)
            spec = SPECS[family]
            reuse = {}
            if spec.request_changes and (spec.requery_if is None or spec.requery_if(bodies)):
                # discovery asked without this firmware's request keys (S21-era new_api stats):
                # ask again with them, so even a first poll (a probe) reads the watts
                await self._requery(host, port, spec, replies, deadline)
        if sig is None:
            sig = _version_sig(bodies)
        if sig != memo.version_sig:  # the same: the int object kept, not one more per poll
            memo.version_sig = sig
        return await self._finish(
            spec, memo, host, port, port, taken_at, deadline, replies, reuse, wait_identity
        )

    async def _poll_spec(
        self,
        spec: FirmwareSpec,
        host: str,
        api_port: int,
        port: int,
        taken_at: datetime,
        deadline: float,
        wait_identity: bool,
    ) -> AsicReading:
        """A poll over a backend's own transport (v3, http) at ``api_port``; the reading
        carries ``port`` (the target's)."""
        key = (host, port)
        memo = self._memo.get(key)
        known = memo is not None and memo.family == spec.family
        reuse = memo.reusable() if memo is not None and known else {}
        if spec.transport == "v3":
            replies = await self.v3.query(host, api_port, deadline_at=deadline)
            if all(replies.ok(c) is None for c in spec.commands):
                first = next(iter(replies.errors.values()), "no usable reply")
                raise ApiError(
                    f"miner answered every {_TRANSPORT[spec.transport]} command with an error "
                    f"({first})"
                )
        else:
            replies = Replies()
            await self._fetch_main_web(spec, host, api_port, replies, reuse, deadline)
        if memo is None or not known:
            memo = self._memo[key] = _Memo(spec.family)
        return await self._finish(
            spec, memo, host, api_port, port, taken_at, deadline, replies, reuse, wait_identity
        )

    async def _fetch_main_web(
        self,
        spec: FirmwareSpec,
        host: str,
        api_port: int,
        replies: Replies,
        reuse: Mapping[str, Any],
        deadline: float,
    ) -> None:
        """An HTTP-only backend's replies (into ``replies``); raises as a client does."""
        assert spec.web is not None
        paths = tuple(p for p in spec.web_paths if p not in reuse and p not in replies.bodies)
        if not paths:
            return
        bodies, errors = await spec.web.fetch(
            self._http_client(), host, api_port, self.access, paths, deadline
        )
        replies.bodies.update(bodies)
        replies.errors.update(errors)

    async def _finish(
        self,
        spec: FirmwareSpec,
        memo: _Memo,
        host: str,
        api_port: int,
        port: int,
        taken_at: datetime,
        deadline: float,
        replies: Replies,
        reuse: dict[str, Any],
        wait_identity: bool,
    ) -> AsicReading:
        """The rest of a poll once the API answered: missing commands, the web API, identity,
        the reading; sticky replies reused unless the reading shows another box."""
        web_reuse: dict[str, Any] = {}
        if reuse:
            web_reuse = {
                c: b for c, b in reuse.items() if c in spec.web_paths and spec.transport != "http"
            }
            for c, b in reuse.items():
                if c not in web_reuse:
                    replies.bodies[c] = b
        # the steady state of most firmwares has every reply and no web read within the poll:
        # no coroutine for what would do nothing (checked here, a cost on every poll)
        if self._missing(spec, replies):
            await self._fetch_missing(host, api_port, spec, replies, deadline)
        causes: Mapping[str, str]
        if self._web_within(spec):
            web, causes = await self._web(spec, host, web_reuse, deadline)
        else:
            web, causes = dict(web_reuse), _NO_CAUSES
        reading = self._build(host, port, taken_at, spec, replies, web, causes)
        if wait_identity:
            reading = await self._wait_identity(reading, spec, replies, web, causes, deadline)
        if reuse:
            if memo.same_box(reading):
                memo.after(reading, spec, replies, web, fetched_sticky=False)
                return reading
            # another box behind this address (or a reboot): identity must be read afresh
            for c in reuse:
                replies.bodies.pop(c, None)
            await self._fetch_missing(host, api_port, spec, replies, deadline)
            web, causes = await self._web(spec, host, {}, deadline)
            reading = self._build(host, port, taken_at, spec, replies, web, causes)
        memo.after(reading, spec, replies, web, fetched_sticky=True)
        return reading

    async def _web(
        self, spec: FirmwareSpec, host: str, reuse: Mapping[str, Any], deadline: float
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """A backend's web endpoints read within the poll (those not reused); (docs, causes)."""
        web = spec.web
        if web is None or not self._web_within(spec):
            return dict(reuse), {}
        assert web.port is not None
        paths = tuple(p for p in spec.web_paths if p not in reuse)
        if not paths:
            return dict(reuse), {}
        docs, causes = await web.fetch(
            self._http_client(), host, self._port(web.port), self.access, paths, deadline
        )
        return {**reuse, **docs}, causes

    def _web_within(self, spec: FirmwareSpec) -> bool:
        """True if this backend's web endpoints are read within the poll (``_web``)."""
        web = spec.web
        return not (
            web is None or web.background or spec.transport == "http" or not self._web_on(spec)
        )

    @staticmethod
    def _missing(spec: FirmwareSpec, replies: Replies) -> bool:
        """True if ``_fetch_missing`` has something to ask."""
        if spec.transport == "http":
            return True
        if spec.transport != "cgminer":
            return False
        bodies = replies.bodies
        return any(c not in bodies for c in spec.api_commands)

    def _build(
        self,
        host: str,
        port: int,
        taken_at: datetime,
        spec: FirmwareSpec,
        replies: Replies,
        web: dict[str, Any],
        causes: Mapping[str, str],
    ) -> AsicReading:
        """The reading, with the background identity read so far (no await: a poll that does
        not wait for an identity fetch builds its reading without a coroutine)."""
        relevant = _relevant(spec, replies, causes)
        fetcher = self._idents.get(spec.family)
        if fetcher is None:
            return build_reading(host, port, taken_at, spec, relevant, web)
        key = (host, port)
        docs = fetcher.documents(key)
        reading = build_reading(
            host, port, taken_at, spec, relevant, _with(web, spec.web_paths, docs)
        )
        # what the API says about the box (background documents never feed these: see
        # FirmwareSpec) decides whether the cached identity still holds
        fetcher.observe(key, reading.model, reading.uptime_s)
        now = fetcher.documents(key)
        if now is not docs:  # dropped (another box, a reboot) or just read: build again
            reading = build_reading(
                host, port, taken_at, spec, relevant, _with(web, spec.web_paths, now)
            )
        return reading

    async def _wait_identity(
        self,
        reading: AsicReading,
        spec: FirmwareSpec,
        replies: Replies,
        web: dict[str, Any],
        causes: Mapping[str, str],
        deadline: float,
    ) -> AsicReading:
        """``reading`` (``_build``'s) once a background fetch under way (queued by this very
        poll, for a miner not seen before) has finished, within the deadline."""
        fetcher = self._idents.get(spec.family)
        if fetcher is None:
            return reading
        key = (reading.ip, reading.port)
        used = fetcher.documents(key)  # the reading's: _build read them last, no await since
        await fetcher.wait(key, deadline)
        now = fetcher.documents(key)
        if now is not used:
            relevant = _relevant(spec, replies, causes)
            reading = build_reading(
                reading.ip,
                reading.port,
                reading.taken_at,
                spec,
                relevant,
                _with(web, spec.web_paths, now),
            )
        return reading

    async def _poll_web_alone(
        self, spec: FirmwareSpec, host: str, port: int, taken_at: datetime, deadline: float
    ) -> AsicReading | None:
        """A miner whose API gave no answer, read from its web API alone if the backend says
        it can stand for the API now (``WebApi.alone``); else None."""
        web = spec.web
        if web is None or web.alone is None or web.port is None or not self._web_on(spec):
            return None
        docs, _ = await web.fetch(
            self._http_client(), host, self._port(web.port), self.access, spec.web_paths, deadline
        )
        base = web.alone(docs)
        if base is None:
            return None
        memo = self._memo.get((host, port))
        kept = memo.reusable() if memo is not None else {}
        docs = {**{c: b for c, b in kept.items() if c in spec.web_paths}, **docs}
        return build_reading(host, port, taken_at, spec, Replies(), docs, base)

    async def _requery(
        self, host: str, port: int, spec: FirmwareSpec, replies: Replies, deadline: float
    ) -> None:
        """The replies a spec's request keys change, asked again with them; a reply replaces
        the one discovery got only if it is usable, so a failed second look costs only time."""
        again = Replies()
        with contextlib.suppress(ApiError):
            await self.client.query(
                host,
                port,
                spec.request_changes,
                alone=spec.alone,
                deadline_at=deadline,
                into=again,
                extra=spec.request,
            )
        for c in spec.request_changes:
            body = again.ok(c)
            if body is not None:
                replies.bodies[c] = body
                replies.errors.pop(c, None)

    async def _fetch_missing(
        self, host: str, port: int, spec: FirmwareSpec, replies: Replies, deadline: float
    ) -> None:
        if spec.transport == "http":
            await self._fetch_main_web(spec, host, port, replies, {}, deadline)
            return
        if spec.transport != "cgminer":
            return  # the v3 client asks its whole set every time
        missing = [c for c in spec.api_commands if c not in replies.bodies]
        if not missing:
            return
        try:
            await self.client.query(
                host,
                port,
                missing,
                alone=spec.alone,
                deadline_at=deadline,
                into=replies,
                extra=spec.request,
            )
        except ApiError as e:
            for c in missing:
                replies.errors.setdefault(c, str(e))

    async def poll_many(
        self,
        targets: Sequence[tuple[str, int]],
        *,
        spread_s: float = 0.0,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        on_result: Callable[[int, AsicResult], object] | None = None,
        admit: Callable[[], AbstractAsyncContextManager[object]] | None = None,
    ) -> list[AsicResult]:
        """Poll all targets, at most ``concurrency`` at a time; results in target order.

        A fixed pool of workers under the poller's semaphore rather than one task per miner: at
        50,000 miners a task each is memory for nothing. A miner's deadline starts when its own
        poll does, not when the cycle does.

        ``spread_s``: the i-th of N polls starts no sooner than ``i * spread_s / N`` seconds
        after the call, so a cycle's polls (and their CPU, sockets and readings) are spread over
        that time instead of all leaving at once; 0 starts each as soon as a slot is free.
        ``clock`` (default: the loop's) and ``sleep`` pace it; tests give a fake clock.
        ``on_result(i, result)`` is called as each poll ends, so a spread cycle's early readings
        are not held back until its last poll.
        ``admit()``: a context each poll holds while it runs, on top of the concurrency limit
        (the agent's backpressure: fewer polls in flight while its event loop runs late).
        """
        results: list[AsicResult | None] = [None] * len(targets)
        it = iter(enumerate(targets))
        now = clock or asyncio.get_running_loop().time
        t0 = now()
        step = spread_s / len(targets) if targets and spread_s > 0 else 0.0

        async def worker() -> None:
            for i, (host, port) in it:
                if step:
                    wait = t0 + i * step - now()
                    if wait > 0:
                        await sleep(wait)
                async with contextlib.nullcontext() if admit is None else admit(), self._sem:
                    results[i] = result = await self.poll(host, port)
                if on_result is not None:
                    on_result(i, result)

        n = min(self.concurrency, len(targets))
        if n:
            await asyncio.gather(*(worker() for _ in range(n)))
        return [r for r in results if r is not None]


def _relevant(spec: FirmwareSpec, replies: Replies, causes: Mapping[str, str]) -> Replies:
    """The replies with the errors a reading notes: discovery commands this firmware does not
    have are not the miner's fault; a web API's failure is a note (one per cause), never a
    lost reading."""
    errors = replies.errors
    if not errors and not causes:
        return replies  # the usual poll: nothing to filter, no copy
    wanted, optional = spec.commands, spec.optional
    kept = {c: m for c, m in errors.items() if c in wanted and c not in optional}
    kept.update(causes)
    return Replies(bodies=replies.bodies, errors=kept)


def _with(
    web: dict[str, Any], paths: tuple[str, ...], docs: tuple[Any, ...] | None
) -> dict[str, Any]:
    """``web`` with a background fetcher's documents (in ``paths`` order) added."""
    if not docs:
        return web
    return {**web, **{p: d for p, d in zip(paths, docs, strict=False) if d is not None}}


def web_api_ports() -> list[str]:
    """The MinerAccess fields naming a web API port some backend reads (``WebApi.port``)."""
    return sorted({s.web.port for s in SPECS.values() if s.web is not None and s.web.port})
