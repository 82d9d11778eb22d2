"""The ASIC poller: one poll per miner -> AsicReading or DeviceError, never an exception.

The first poll of a miner sends the discovery set (summary+stats+pools+version), detects the
firmware and, if that firmware needs more (LuxOS ``config``/``power``, btminer ``get_miner_info``),
fetches the rest within the same deadline. The family is cached per host:port, so later polls
send exactly the firmware's deduplicated command set; each poll re-checks the family on the replies
it already has, so a re-flashed miner is picked up without a restart.

Identity-only replies a firmware marks ``sticky`` (btminer's get_miner_info: a whole extra
connection for a serial that never changes) are reused for up to STICKY_POLLS polls, and re-read
at once when the live MAC differs or the uptime went backwards: an IP that now answers for another
box must never keep the old box's serial.

Whatsminer API v3 (btminer 2024+, M6x/M7x; collectors/cgminer/v3.py). A target on port 4433 is
polled over API v3. A target on 4028 (the config default) falls back to v3 by this rule:

- trigger: the 4028 poll got no answer at all (refused, reset, closed without a byte, or timed
  out connecting / waiting for the first byte: client.NoAnswer), and the miner is not known as
  another firmware (unknown so far, or last seen as v2 btminer). A bad, slow or flooding reply
  is an answer: no fallback. A known Antminer/LuxOS/Braiins that goes down costs nothing extra.
- the 4433 attempt uses what is left of the same deadline, so a poll never takes longer. When
  4028 used the whole deadline (accepted and stayed silent), the next poll tries 4433 first.
- 4433 answering with ``get.device.info`` or ``get.miner.status`` is remembered per host:port:
  later polls go straight to 4433 (family ``whatsminer_v3``). The reading keeps the target's
  port (4028), so inventory and locations, keyed by the configured target, do not see a move.
- forgotten when 4433 stops answering (NoAnswer): the same poll then tries 4028 again, so a
  miner re-flashed to v2-only firmware, or another box on the address, is picked up at once.

Stock Bitmain firmware has no serial or MAC on the API at all; those come from the miner's web UI
(collectors.cgminer.web), fetched off the hot path: a poll only notes that a fetch is due and
merges whatever identity is already cached. Background workers (at most WEB_CONCURRENCY per
firmware) fetch at most once per ``identity_interval_s`` per miner, and at once when the API shows
a reboot or another box behind the address. Braiins OS is the same story (no serial or MAC on its
4028 API) and gets the same treatment from its REST API on ``braiins_web_port``
(collectors.cgminer.braiins_rest; Braiins OS 25.07+): on older releases the fetch fails in the
background, the cause is remembered, and the miner stays known by ip:port as before.

ePIC (UMC/PowerPlay) firmware answers HTTP on 4028 and has no cgminer API (collectors/cgminer/
epic.py). An unknown miner whose 4028 answers our cgminer request with an HTTP status line is
polled over ePIC's HTTP API at once, within the same deadline, and remembered as ``epic``: later
polls GET ``/summary`` only (``/capabilities`` and ``/network``, the identity, are re-read every
STICKY_POLLS polls or after a reboot). When the port stops speaking HTTP, the memo is dropped and
the same poll asks the cgminer API.

Vnish is read on its cgminer API like stock bmminer; serial, MAC, watts, the power preset and
whether mining was stopped on purpose come from its web API (collectors/cgminer/vnish_web.py),
read within the poll, after the API answered: watts and state are live numbers a quota engine
plans on, and one small GET (two with the preset) to a miner already answering costs far less
than a background queue. Its ``/info`` (identity) is re-read like a sticky reply. A failing web
API is a note in the reading, never a lost reading. If a Vnish box stops its cgminer API while
mining is stopped, the web API alone gives the reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from kuat.collectors.cgminer import braiins_rest, epic, vnish_web
from kuat.collectors.cgminer.client import DEFAULT_PORT, ApiError, CgminerClient, NoAnswer, Replies
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.common import FirmwareSpec
from kuat.collectors.cgminer.parsers import DISCOVERY_COMMANDS, SPECS, build_reading, detect_family
from kuat.collectors.cgminer.v3 import V3_PORT, V3Client
from kuat.collectors.cgminer.web import DEFAULT_WEB_PORT, BitmainIdentity, fetch_bitmain_identity
from kuat.collectors.readings import AsicReading, DeviceError, DeviceKind

log = logging.getLogger(__name__)

AsicResult = AsicReading | DeviceError

# Identity replies (FirmwareSpec.sticky) are re-read at least this often, in polls.
STICKY_POLLS = 30
# Miners whose failed identity fetch is logged at warning level, per fetcher; the rest at debug.
IDENTITY_WARNINGS = 20
# Web UI fetches in flight at once: the CGI is slow and identity is never urgent.
WEB_CONCURRENCY = 16
# Uptime may run ahead of our clock by this much before we call it another box on the address.
UPTIME_SLACK_S = 120.0
# Less time than this left after 4028 gave no answer: not worth a connect to 4433 now.
V3_FALLBACK_MIN_S = 0.05
V3_FAMILY = Firmware.WHATSMINER_V3


class _Memo:
    """What the poller remembers about one host:port between polls."""

    __slots__ = ("age", "family", "mac", "sticky", "uptime_s")

    def __init__(self, family: Firmware) -> None:
        self.family = family
        # Identity replies are kept as compact JSON: a decoded LuxOS ``profiles`` reply costs
        # ~4 KB per miner as dicts, a third of that as bytes (bench/asic_poll.py --scale).
        self.sticky: dict[str, bytes] = {}
        self.age = 0
        self.mac: str | None = None
        self.uptime_s: int | None = None

    def reusable(self) -> dict[str, dict[str, Any]]:
        if self.age >= STICKY_POLLS:
            return {}
        return {c: json.loads(b) for c, b in self.sticky.items()}

    def same_box(self, r: AsicReading) -> bool:
        """False if the reply says this is another miner, or the same one rebooted."""
        if self.mac is not None and r.mac is not None and r.mac != self.mac:
            return False
        return not (
            self.uptime_s is not None and r.uptime_s is not None and r.uptime_s < self.uptime_s
        )

    def after(
        self, r: AsicReading, spec: FirmwareSpec, replies: Replies, *, fetched_sticky: bool
    ) -> None:
        if fetched_sticky:
            self.sticky = {
                c: json.dumps(b, separators=(",", ":")).encode()
                for c in spec.sticky
                if (b := replies.ok(c)) is not None
            }
            self.age = 0
        else:
            self.age += 1
        self.mac, self.uptime_s = r.mac, r.uptime_s


def vnish_web_family() -> Firmware:
    return Firmware.VNISH


class _VnishMemo:
    """Vnish's web identity for one host:port, re-read like a sticky reply."""

    __slots__ = ("age", "ident", "mac", "uptime_s")

    def __init__(self) -> None:
        self.ident: vnish_web.VnishIdentity | None = None
        self.age = 0
        self.mac: str | None = None
        self.uptime_s: int | None = None

    def due(self, r: AsicReading) -> bool:
        if self.ident is None or self.age >= STICKY_POLLS:
            return True
        rebooted = (
            self.uptime_s is not None and r.uptime_s is not None and r.uptime_s < self.uptime_s
        )
        return rebooted or (self.mac is not None and r.mac is not None and r.mac != self.mac)

    def seen(self, r: AsicReading, ident: vnish_web.VnishIdentity | None, *, fetched: bool) -> None:
        self.ident = ident
        self.age = 0 if fetched else self.age + 1
        self.mac, self.uptime_s = r.mac, r.uptime_s


class _WebState:
    """One stock miner's web identity and what decides when to read it again."""

    __slots__ = ("api_model", "cause", "done", "due_at", "gen", "identity", "queued", "seen")

    def __init__(self) -> None:
        self.identity: BitmainIdentity | None = None
        self.due_at = 0.0  # loop time when the next fetch may start
        self.queued = False  # waiting for a worker or being fetched
        self.done: asyncio.Event | None = None  # set when the queued fetch ends
        self.gen = 0  # bumped when the box behind the address may have changed
        self.cause: str | None = None  # last failure, so a repeat is not logged again
        self.seen: tuple[float, int] | None = None  # (loop time, uptime_s) at the last poll
        self.api_model: str | None = None

    def moved(self, r: AsicReading, now: float) -> bool:
        """True if the API says the box rebooted or another box now answers here."""
        if self.api_model is not None and r.model is not None and r.model != self.api_model:
            return True
        if self.seen is None or r.uptime_s is None:
            return False
        then, uptime = self.seen
        went_back = r.uptime_s < uptime
        ran_ahead = r.uptime_s - uptime > (now - then) + UPTIME_SLACK_S
        return went_back or ran_ahead


# One identity read of one host: (client, host) -> identity, or a one-line cause.
IdentityFetch = Callable[[httpx.AsyncClient, str], Awaitable[BitmainIdentity | str]]


class _IdentityFetcher:
    """Identity the 4028 API lacks (stock Bitmain's web UI, Braiins OS's REST API), cached per
    host:port, fetched in the background: one fetcher per firmware family.

    A deque of due miners and at most WEB_CONCURRENCY workers that exit when it is empty, rather
    than a task per miner: at 50,000 miners a waiting task each is memory for nothing, and no
    task outlives the work.
    """

    def __init__(self, fetch: IdentityFetch, *, source: str, interval_s: float) -> None:
        """``source`` names where the identity comes from, in log lines ("the web UI")."""
        self.fetch = fetch
        self.source = source
        self.interval_s = interval_s
        self._state: dict[tuple[str, int], _WebState] = {}
        self._queue: deque[tuple[str, int]] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._closed = False
        self._warned = 0

    def observe(self, r: AsicReading) -> None:
        """Note one poll of a stock miner; queue a fetch if one is due. Never waits."""
        key = (r.ip, r.port)
        now = asyncio.get_running_loop().time()
        st = self._state.setdefault(key, _WebState())
        if st.moved(r, now):
            # the cached serial may be another box's: drop it, read afresh now
            st.identity, st.due_at, st.gen = None, now, st.gen + 1
        st.seen = (now, r.uptime_s) if r.uptime_s is not None else None
        st.api_model = r.model
        if not st.queued and now >= st.due_at and not self._closed:
            st.queued, st.due_at, st.done = True, now + self.interval_s, asyncio.Event()
            self._queue.append(key)
            self._kick()

    def apply(self, r: AsicReading) -> AsicReading:
        st = self._state.get((r.ip, r.port))
        ident = st.identity if st else None
        if ident is None:
            return r
        return dataclasses.replace(r, serial=r.serial or ident.serial, mac=r.mac or ident.mac)

    async def wait(self, key: tuple[str, int], until: float) -> None:
        """Wait for this miner's queued fetch, but not past loop time ``until``."""
        st = self._state.get(key)
        if st is None or not st.queued or st.done is None:
            return
        left = until - asyncio.get_running_loop().time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(st.done.wait(), max(0.0, left))

    def identity(self, key: tuple[str, int]) -> BitmainIdentity | None:
        st = self._state.get(key)
        return st.identity if st else None

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
                st.identity, st.cause = result, None
        if st.done is not None:
            st.done.set()  # after the identity is stored: a waiting probe reads it next
            # waiters hold the event already; dropping it saves ~0.8 KB per stock miner
            st.done = None

    async def _fetch(self, client: httpx.AsyncClient, host: str) -> BitmainIdentity | str:
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
        web_username: str = "root",
        web_password: str = "root",
        web_port: int | None = DEFAULT_WEB_PORT,
        web_timeout_s: float = 5.0,
        v3_port: int | None = V3_PORT,
        vnish_web_port: int | None = vnish_web.DEFAULT_WEB_PORT,
        braiins_web_port: int | None = braiins_rest.DEFAULT_WEB_PORT,
        braiins_username: str = "root",
        braiins_password: str = "",
    ) -> None:
        """``web_port=None`` turns the stock-Bitmain web identity fetch off; ``v3_port=None``
        turns the Whatsminer API v3 fallback off (targets on 4433 are still polled over v3);
        ``vnish_web_port=None`` turns reading Vnish's web API off (API fields only);
        ``braiins_web_port=None`` turns the Braiins OS REST identity fetch off. ``web_timeout_s``
        bounds one background identity fetch of either kind."""
        self.timeout_s = timeout_s
        self.concurrency = max(1, concurrency)
        self.client = CgminerClient(timeout_s=timeout_s, max_reply_bytes=max_reply_bytes)
        self.v3 = V3Client(timeout_s=timeout_s, max_reply_bytes=max_reply_bytes)
        self.v3_port = v3_port
        self._memo: dict[tuple[str, int], _Memo] = {}
        # 4028 targets whose last poll timed out with no time left to try 4433: try it first
        self._v3_probe: set[tuple[str, int]] = set()
        # shared by every poll_many call, so overlapping cycles (a slow ASIC cycle and a
        # control confirmation, say) still keep at most `concurrency` miners in flight
        self._sem = asyncio.Semaphore(self.concurrency)
        self.vnish_web_port = vnish_web_port
        self._vnish: dict[tuple[str, int], _VnishMemo] = {}
        # one HTTP client for ePIC and Vnish polls, made in the loop that first needs it
        self._http: httpx.AsyncClient | None = None
        # family -> its background identity fetcher; a family not here has its identity on the
        # API (or none anywhere)
        # keyed by the reading's firmware_family text (a Firmware is that text)
        self._idents: dict[str, _IdentityFetcher] = {}
        if web_port is not None:

            async def bitmain(client: httpx.AsyncClient, host: str) -> BitmainIdentity | str:
                return await fetch_bitmain_identity(
                    client,
                    host,
                    port=web_port,
                    username=web_username,
                    password=web_password,
                    timeout_s=web_timeout_s,
                )

            self._idents[Firmware.BITMAIN] = _IdentityFetcher(
                bitmain, source="the web UI", interval_s=identity_interval_s
            )
        if braiins_web_port is not None:

            async def braiins(client: httpx.AsyncClient, host: str) -> BitmainIdentity | str:
                return await braiins_rest.fetch_braiins_identity(
                    client,
                    host,
                    port=braiins_web_port,
                    username=braiins_username,
                    password=braiins_password,
                    timeout_s=web_timeout_s,
                )

            self._idents[Firmware.BRAIINS] = _IdentityFetcher(
                braiins, source="the Braiins OS REST API", interval_s=identity_interval_s
            )

    def family_of(self, host: str, port: int = DEFAULT_PORT) -> Firmware | None:
        """The firmware family detected at host:port on an earlier poll, if any."""
        memo = self._memo.get((host, port))
        return memo.family if memo else None

    def _ident_fetcher(self, host: str, port: int) -> _IdentityFetcher | None:
        # by the family seen last: a box re-flashed from stock to Braiins (a common upgrade)
        # must not be judged by what the stock web UI said before
        family = self.family_of(host, port)
        return self._idents.get(family) if family else None

    def identity_of(self, host: str, port: int = DEFAULT_PORT) -> BitmainIdentity | None:
        """The identity fetched off the API for a stock Bitmain (web UI) or Braiins OS (REST
        API) miner, if one was fetched."""
        f = self._ident_fetcher(host, port)
        return f.identity((host, port)) if f else None

    def identity_error(self, host: str, port: int = DEFAULT_PORT) -> str | None:
        """Why the last identity fetch (web UI or Braiins REST API) failed, or None if it did
        not (or never ran)."""
        f = self._ident_fetcher(host, port)
        return f.error((host, port)) if f else None

    def fetches_identity(self, family: str | None) -> bool:
        """True if this family's serial/MAC come from a background fetch, not from the poll."""
        return family in self._idents

    async def aclose(self) -> None:
        """Stop the background identity fetches (polls keep working, without new fetches)."""
        for f in self._idents.values():
            await f.aclose()
        if self._http is not None:
            client, self._http = self._http, None
            await client.aclose()

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = epic.http_client()
        return self._http

    async def poll(
        self, host: str, port: int = DEFAULT_PORT, *, wait_identity: bool = False
    ) -> AsicResult:
        """One poll. ``wait_identity``: a stock Bitmain's (or Braiins') identity fetch, if one is
        under way, may use what is left of this poll's deadline, so a one-off probe shows the
        serial."""
        taken_at = datetime.now(UTC)
        try:
            deadline = self.client.deadline()
            reading = await self._poll_routed(host, port, taken_at, deadline)
            if reading.firmware_family == vnish_web_family():
                reading = await self._with_vnish_web(reading, deadline)
            return await self._with_identity(reading, deadline if wait_identity else None)
        except ApiError as e:
            return DeviceError(DeviceKind.ASIC, host, port, taken_at, str(e))
        except Exception as e:  # a parser bug must cost one miner, not the cycle
            return DeviceError(
                DeviceKind.ASIC, host, port, taken_at, f"internal error: {type(e).__name__}: {e}"
            )

    async def _with_identity(self, r: AsicReading, wait_until: float | None) -> AsicReading:
        fetcher = self._idents.get(r.firmware_family or "")
        if fetcher is None:
            return r
        fetcher.observe(r)
        if wait_until is not None:
            await fetcher.wait((r.ip, r.port), wait_until)
        return fetcher.apply(r)

    def uses_v3(self, host: str, port: int = DEFAULT_PORT) -> bool:
        """True if this target is polled over Whatsminer API v3 (its own port or the fallback)."""
        return port in (V3_PORT, self.v3_port) or self.family_of(host, port) == V3_FAMILY

    async def _poll_routed(
        self, host: str, port: int, taken_at: datetime, deadline: float
    ) -> AsicReading:
        """API v3 or the cgminer-family API, by port and by the fallback rule (module doc)."""
        if port in (V3_PORT, self.v3_port):
            return await self._poll_v3(host, port, port, taken_at, deadline)
        key = (host, port)
        memo = self._memo.get(key)
        if memo is not None and memo.family == epic.FAMILY:
            try:
                return await self._poll_epic(host, port, taken_at, deadline)
            except epic.NotEpic:
                # re-flashed, or another box here: forget it and ask the cgminer API now
                del self._memo[key]
                memo = None
        v3_cause: str | None = None
        if self.v3_port is not None and (
            key in self._v3_probe or (memo is not None and memo.family == V3_FAMILY)
        ):
            self._v3_probe.discard(key)
            try:
                return await self._poll_v3(host, self.v3_port, port, taken_at, deadline)
            except NoAnswer as e:
                # v3 went away: re-flashed, or another box here. Forget it and ask 4028 now.
                if memo is not None and memo.family == V3_FAMILY:
                    del self._memo[key]
                v3_cause = str(e)
        try:
            return await self._poll(host, port, taken_at, deadline)
        except NoAnswer as e:
            if memo is not None and memo.family == vnish_web_family() and self.vnish_web_port:
                web_only = await self._poll_vnish_web_only(host, port, taken_at, deadline)
                if web_only is not None:
                    return web_only
            cause = f"{e}; API v3 on port {self.v3_port}: {v3_cause}" if v3_cause else str(e)
            if v3_cause is not None or not self._may_be_v3(key):
                raise NoAnswer(cause) from None
            assert self.v3_port is not None
            if deadline - asyncio.get_running_loop().time() < V3_FALLBACK_MIN_S:
                self._v3_probe.add(key)  # 4028 took the whole deadline: 4433 first next time
                raise
            try:
                reading = await self._poll_v3(host, self.v3_port, port, taken_at, deadline)
            except ApiError as e3:
                raise type(e)(f"{e}; API v3 on port {self.v3_port}: {e3}") from None
            log.info(
                "asic %s:%s: no answer on %s, Whatsminer API v3 answers on %s; using v3",
                host,
                port,
                port,
                self.v3_port,
            )
            return reading
        except ApiError as e:
            if memo is not None or not epic.answered_http(e):
                raise
            reading = await self._poll_epic(host, port, taken_at, deadline)
            log.info("asic %s:%s: HTTP answers on the API port: ePIC firmware", host, port)
            return reading

    async def _poll_epic(
        self, host: str, port: int, taken_at: datetime, deadline: float
    ) -> AsicReading:
        """One ePIC poll: the summary, plus the identity replies when due (module doc)."""
        key = (host, port)
        memo = self._memo.get(key)
        known = memo is not None and memo.family == epic.FAMILY
        reuse = memo.reusable() if memo is not None and known else {}
        due = not reuse or any(c not in reuse for c in epic.STICKY)
        paths = (epic.SUMMARY, *epic.STICKY) if due else (epic.SUMMARY,)
        client = self._http_client()
        bodies, errors, failures = await epic.fetch(client, host, port, paths, deadline)
        epic.raise_for_summary(errors, failures, port, epic.SUMMARY in bodies)
        if memo is None or not known:
            memo = self._memo[key] = _Memo(epic.FAMILY)
        if not due:
            reading = epic.build_epic_reading(host, port, taken_at, {**reuse, **bodies}, errors)
            if memo.same_box(reading):
                memo.age += 1
                memo.mac, memo.uptime_s = reading.mac, reading.uptime_s
                return reading
            # a reboot or another box: the cached identity may not be this box's
            more, more_errors, _ = await epic.fetch(client, host, port, epic.STICKY, deadline)
            bodies.update(more)
            errors.update(more_errors)
        reading = epic.build_epic_reading(host, port, taken_at, bodies, errors)
        memo.sticky = {
            c: json.dumps(bodies[c], separators=(",", ":")).encode()
            for c in epic.STICKY
            if c in bodies
        }
        memo.age = 0
        memo.mac, memo.uptime_s = reading.mac, reading.uptime_s
        return reading

    async def _with_vnish_web(self, r: AsicReading, deadline: float) -> AsicReading:
        """Merge Vnish's web API (watts, preset, state, identity) into an API reading."""
        if self.vnish_web_port is None:
            return r
        st = self._vnish.setdefault((r.ip, r.port), _VnishMemo())
        with_info = st.due(r)
        ident, live, causes = await vnish_web.fetch(
            self._http_client(), r.ip, self.vnish_web_port, with_info=with_info, deadline=deadline
        )
        st.seen(r, ident if with_info else st.ident, fetched=with_info)
        merged = vnish_web.merge(r, st.ident, live)
        if causes:
            merged = dataclasses.replace(merged, errors=(*merged.errors, *causes))
        return merged

    async def _poll_vnish_web_only(
        self, host: str, port: int, taken_at: datetime, deadline: float
    ) -> AsicReading | None:
        """A Vnish box whose cgminer API is down: a reading if the web API says it is stopped."""
        assert self.vnish_web_port is not None
        st = self._vnish.get((host, port))
        ident, live, _ = await vnish_web.fetch(
            self._http_client(), host, self.vnish_web_port, with_info=True, deadline=deadline
        )
        if live is None or live.miner_state not in ("stopped", "shutting-down"):
            return None
        ident = ident or (st.ident if st else None)
        base = AsicReading(
            ip=host,
            port=port,
            taken_at=taken_at,
            vendor="Bitmain",
            firmware_family=vnish_web_family(),
            hashrate_ths=0.0,
            state="sleeping",
            errors=("cgminer API down while mining is stopped; read from the web API",),
        )
        return vnish_web.merge(base, ident, live)

    def _may_be_v3(self, key: tuple[str, int]) -> bool:
        if self.v3_port is None or key[1] != DEFAULT_PORT:
            return False
        memo = self._memo.get(key)
        return memo is None or memo.family in (Firmware.WHATSMINER, V3_FAMILY)

    async def _poll_v3(
        self, host: str, api_port: int, port: int, taken_at: datetime, deadline: float
    ) -> AsicReading:
        """One API v3 poll at ``api_port``; the reading carries ``port`` (the target's)."""
        replies = await self.v3.query(host, api_port, deadline_at=deadline)
        spec = SPECS[V3_FAMILY]
        if all(replies.ok(c) is None for c in spec.commands):
            first = next(iter(replies.errors.values()), "no usable reply")
            raise ApiError(f"miner answered every API v3 command with an error ({first})")
        key = (host, port)
        memo = self._memo.get(key)
        if memo is None or memo.family != V3_FAMILY:
            memo = self._memo[key] = _Memo(V3_FAMILY)
        reading = build_reading(host, port, taken_at, spec, replies)
        memo.mac, memo.uptime_s = reading.mac, reading.uptime_s
        return reading

    async def _poll(self, host: str, port: int, taken_at: datetime, deadline: float) -> AsicReading:
        key = (host, port)
        memo = self._memo.get(key)
        spec = SPECS.get(memo.family) if memo else None
        reuse = memo.reusable() if memo else {}
        if spec is None:
            commands: Sequence[str] = DISCOVERY_COMMANDS
        else:
            commands = [c for c in spec.commands if c not in reuse]
        replies = await self.client.query(
            host,
            port,
            commands,
            alone=spec.alone if spec else (),
            deadline_at=deadline,
            extra=spec.request if spec else None,
        )
        family = detect_family(replies.bodies)
        if family is None:
            first = next(iter(replies.errors.values()), "no usable reply")
            raise ApiError(f"miner answered every command with an error ({first})")
        if spec is None or memo is None or family != spec.family:
            memo = self._memo[key] = _Memo(family)
            spec = SPECS[family]
            reuse = {}
            if spec.request_changes:
                # discovery asked without this firmware's request keys (S21-era new_api stats):
                # ask again with them, so even a first poll (a probe) reads the watts
                await self._requery(host, port, spec, replies, deadline)
        replies.bodies.update(reuse)
        await self._fetch_missing(host, port, spec, replies, deadline)
        if reuse:
            reading = self._reading(host, port, taken_at, spec, replies)
            if memo.same_box(reading):
                memo.after(reading, spec, replies, fetched_sticky=False)
                return reading
            # another box behind this address (or a reboot): identity must be read afresh
            for c in reuse:
                del replies.bodies[c]
            await self._fetch_missing(host, port, spec, replies, deadline)
        reading = self._reading(host, port, taken_at, spec, replies)
        memo.after(reading, spec, replies, fetched_sticky=True)
        return reading

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
        missing = [c for c in spec.commands if c not in replies.bodies]
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

    @staticmethod
    def _reading(
        host: str, port: int, taken_at: datetime, spec: FirmwareSpec, replies: Replies
    ) -> AsicReading:
        wanted = set(spec.commands)
        # discovery commands this firmware does not have are not the miner's fault
        relevant = Replies(
            bodies=replies.bodies,
            errors={
                c: m for c, m in replies.errors.items() if c in wanted and c not in spec.optional
            },
        )
        return build_reading(host, port, taken_at, spec, relevant)

    async def poll_many(self, targets: Sequence[tuple[str, int]]) -> list[AsicResult]:
        """Poll all targets, at most ``concurrency`` at a time; results in target order.

        A fixed pool of workers under the poller's semaphore rather than one task per miner: at
        50,000 miners a task each is memory for nothing. A miner's deadline starts when its own
        poll does, not when the cycle does.
        """
        results: list[AsicResult | None] = [None] * len(targets)
        it = iter(enumerate(targets))

        async def worker() -> None:
            for i, (host, port) in it:
                async with self._sem:
                    results[i] = await self.poll(host, port)

        n = min(self.concurrency, len(targets))
        if n:
            await asyncio.gather(*(worker() for _ in range(n)))
        return [r for r in results if r is not None]
