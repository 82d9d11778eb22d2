"""Asyncio client for the cgminer-family JSON API (TCP 4028).

One request per connection, as cgminer does: send ``{"command": "a+b"}``, read until the miner
closes or sends its NUL terminator. Miners in the field hang, trickle, flood and send almost-JSON,
so every read is bounded in bytes and in time, and every failure becomes an ``ApiError`` whose
message is one line a person can act on. ``ApiError`` never leaves the collector: the poller turns
it into a ``DeviceError``.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import os
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from kuat.collectors.errors import KuatError

DEFAULT_PORT = 4028
DEFAULT_MAX_REPLY_BYTES = 64 * 1024
# Real replies nest 4 or 5 levels (reply, STATS list, a board, its chain list…).
MAX_DEPTH = 32
# A timer that fires this much after its time means the event loop was blocked (a slow
# neighbour coroutine, CPU contention); the miner gets one short second look before failing.
STALL_S = 0.1


class ApiError(KuatError):
    """A request that gave no usable reply; ``str(err)`` is the one-line cause."""


class HttpAnswer(ApiError):
    """An HTTP server answered on the API port (ePIC firmware's 4028, or a web UI)."""


class WrongFirmware(ApiError):
    """The miner answers, but not as the firmware it was last seen as (re-flashed, or another
    box on the address): the poller forgets what it knew and detects it afresh."""


class NoAnswer(ApiError):
    """Nothing came back at all: refused, reset, closed silently, or no byte in time.

    Its own type because only this, never a bad or slow reply, may mean "this API is not
    here": the poller then tries a Whatsminer's API v3 port (collector.AsicPoller).
    """


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Per-miner time limits. ``total_s`` bounds the whole poll, fallbacks included."""

    connect_s: float
    first_byte_s: float
    total_s: float

    @classmethod
    def from_timeout(cls, timeout_s: float) -> Deadlines:
        # A LAN miner that needs more than 2/3 of the budget to accept is as good as down;
        # keeping the rest leaves room to read a slow-but-alive reply.
        return cls(connect_s=timeout_s * 2 / 3, first_byte_s=timeout_s, total_s=timeout_s)


# --- decoding ---------------------------------------------------------------------------

# Repairs for the almost-JSON real firmware sends. Applied only when strict parsing fails,
# so a healthy reply costs one json.loads.
_OBJ_JOIN = re.compile(r"\}\s*\{")  # bmminer: '..."Type":"Antminer L3+"}{"STATS":0,...'
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_NON_FINITE = re.compile(r"(?<=[:,\[])(\s*)[-+]?(?:nan|inf(?:inity)?)\b", re.IGNORECASE)


def _repair(text: str) -> str:
    text = _OBJ_JOIN.sub("},{", text)
    text = _TRAILING_COMMA.sub(r"\1", text)
    return _NON_FINITE.sub(r"\1null", text)


def decode_reply(raw: bytes) -> dict[str, Any]:
    """Bytes off the wire to a JSON object, tolerating the known firmware quirks."""
    end = raw.find(b"\x00")
    if end >= 0:
        raw = raw[:end]
    raw = raw.strip()
    if not raw:
        raise ApiError("reply is empty")
    if raw.startswith(b"HTTP/"):
        status = raw.split(b"\r\n", 1)[0][:60].decode("latin-1")
        raise HttpAnswer(f"an HTTP server answered ({status!r}), not a cgminer-family API")
    if _glued_stats(raw):
        # bmminer's '}{' (a fifth of stock Antminers, every poll): mended before the first
        # parse, not after a failed one
        obj = _decode_glued_stats(raw)
        if obj is None:
            obj = _decode_tolerant(raw)
    else:
        try:
            # the hot path (every reply of every poll): orjson parses a clean reply several
            # times faster than json; anything it refuses (NaN, glued objects, bad UTF-8, huge
            # ints) takes the tolerant path below
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = _decode_tolerant(raw)
    if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        # two top-level objects glued together ("}{" at depth 0): one reply split in two
        merged: dict[str, Any] = {}
        for part in obj:
            merged.update(part)
        obj = merged
    if not isinstance(obj, dict):
        raise ApiError(f"reply is JSON but a {type(obj).__name__}, not an object")
    # Nesting deeper than any firmware's reply would only make the parsers recurse until
    # Python gives up. Counting brackets is cheap; the walk runs only when there are enough
    # of them to nest that deep.
    if len(raw.translate(None, _NOT_OPENERS)) > MAX_DEPTH and _too_deep(obj):
        raise ApiError(f"reply is nested more than {MAX_DEPTH} levels deep: not a miner reply")
    return obj


# every byte but the openers: what translate leaves of a reply is its brackets and braces, one
# pass over it where two counts were two (on every reply)
_NOT_OPENERS = bytes(c for c in range(256) if c not in b"[{")


def _too_deep(obj: Any) -> bool:
    """Whether a container of the decoded reply lies deeper than MAX_DEPTH (``obj`` at 1).

    Walked a level at a time (the containers one level down, no depth carried per node): a
    reply whose brackets outnumber MAX_DEPTH (a LuxOS or Whatsminer poll's, every poll) paid
    a generator and a tuple per container, twice its decode (bench/asic_engine.py)."""
    level = [obj]
    for _ in range(MAX_DEPTH):
        below: list[Any] = []
        add = below.append
        for node in level:
            for v in node.values() if node.__class__ is dict else node:
                if v.__class__ is dict or v.__class__ is list:
                    add(v)
        if not below:
            return False
        level = below
    return True


_GLUED_STATS = b'}{"STATS":'
_STATS_LIST = b'"STATS":['


def _glued_stats(raw: bytes) -> bool:
    """True if bmminer's '}{' follows the STATS header: looked for where bmminer puts it (the
    end of the first STATS object, which holds no object of its own), not searched for through
    the whole reply, which cost as much as a fifth of the parse on every stock Antminer poll. A
    defect elsewhere is still mended, by the general repair when the strict parse fails."""
    i = raw.find(_STATS_LIST)
    if i < 0:
        return False
    end = raw.find(b"}", i)
    return end >= 0 and raw.startswith(_GLUED_STATS, end)


def _decode_glued_stats(raw: bytes) -> Any:
    """bmminer's one defect, '}{' between its two STATS objects, mended in bytes for orjson.

    A fifth of stock Antminers send it on every poll; the general repair below (regexes over
    the decoded text, then the stdlib parser) costs ten times a clean decode, this one search
    and one copy more than a clean decode. None when the reply has that defect and more, or
    another one: the general path decides. ``raw`` holds the defect (the caller looked)."""
    try:
        return orjson.loads(raw.replace(_GLUED_STATS, b'},{"STATS":'))
    except orjson.JSONDecodeError:
        return None


def _decode_tolerant(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except RecursionError:
        raise ApiError("reply is nested too deeply to be a miner reply") from None
    except ValueError as first:
        return _decode_repaired(text, first)


def _decode_repaired(text: str, first: ValueError) -> Any:
    repaired = _repair(text)
    for candidate in (repaired, f"[{repaired}]"):
        try:
            return json.loads(candidate)
        except RecursionError:
            raise ApiError("reply is nested too deeply to be a miner reply") from None
        except ValueError:
            continue
    pos = getattr(first, "pos", 0) or 0
    byte = len(text[:pos].encode("utf-8"))
    near = text[max(0, pos - 12) : pos + 12]
    raise ApiError(f"reply is not JSON at byte {byte} (near {near!r})")


def status_of(body: dict[str, Any]) -> tuple[str | None, str, str]:
    """(letter, message, description) of a reply's STATUS, in either shape firmware uses.

    cgminer: ``"STATUS": [{"STATUS": "S", "Msg": ..., "Description": ...}]``;
    btminer v2 commands: ``"STATUS": "S", "Msg": ..., "Description": ...`` at the top level;
    Whatsminer API v3: ``"code": 0 | -1..-5, "msg": <object or text>, "desc": <command>``.
    """
    st = body.get("STATUS")
    code = body.get("code")
    if st is None and isinstance(code, int) and not isinstance(code, bool) and "msg" in body:
        msg = body.get("msg")
        text = msg if isinstance(msg, str) else ("" if code == 0 else f"code {code}")
        return ("S" if code == 0 else "E"), text, str(body.get("desc", ""))
    if isinstance(st, list) and st and isinstance(st[0], dict):
        s = st[0]
        return _str_or_none(s.get("STATUS")), str(s.get("Msg", "")), str(s.get("Description", ""))
    if isinstance(st, str):
        msg = body.get("Msg")
        return st, msg if isinstance(msg, str) else "", str(body.get("Description", ""))
    return None, "", ""


def _str_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def is_error_reply(body: dict[str, Any]) -> bool:
    st = body.get("STATUS")
    if st.__class__ is list and st and st[0].__class__ is dict:
        # the cgminer shape, nearly every reply: asked on every reply of every poll
        return st[0].get("STATUS") in ("E", "F")
    letter, _, _ = status_of(body)
    return letter in ("E", "F")


# --- one exchange -------------------------------------------------------------------------


class _Exchange(asyncio.Protocol):
    """One request/reply on one connection, with byte cap and timers.

    A Protocol rather than streams: a poll is a few hundred microseconds of CPU and the stream
    layer would be a large share of it at thousands of miners per cycle.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, payload: bytes, cap: int) -> None:
        self.loop = loop
        self.payload = payload
        self.cap = cap
        self.buf = bytearray()
        self.done: asyncio.Future[bytes] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        # a literal IPv4 connect (_begin): its socket while it is under way, when it ended
        self.sock: socket.socket | None = None
        self.connected_at = 0.0
        # exchange's timers now armed (kept here for _connect_timeout to re-arm, dropped when
        # the exchange ends)
        self.timers: tuple[asyncio.TimerHandle, ...] = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream connection's transport; not an isinstance check: uvloop's TCPTransport is
        # not a subclass of asyncio.Transport, and the assertion failed every poll on uvloop
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.payload)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self.buf += data
        if len(self.buf) > self.cap:
            self.fail(
                f"reply exceeds {self.cap} bytes and was cut off (miner floods, or the reply "
                "is larger than max_reply_bytes)"
            )
        elif b"\x00" in data:
            # cgminer ends a JSON reply with NUL; no need to wait for the close
            self.finish()

    def eof_received(self) -> bool:
        self.finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is not None and not self.buf:
                self.done.set_exception(NoAnswer(f"connection lost: {exc}"))
            else:
                self.finish()

    def finish(self) -> None:
        if self.done.done():
            return
        if self.buf:
            self.done.set_result(bytes(self.buf))
        else:
            self.done.set_exception(NoAnswer("miner closed the connection without replying"))
        self.close()

    def fail(self, cause: str, kind: type[ApiError] = ApiError) -> None:
        if not self.done.done():
            self.done.set_exception(kind(cause))
        if self.transport is not None:
            # abort, not close: a flooding or hung peer must not keep our buffers alive
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def end(self) -> None:
        """The exchange is over: its timers cancelled (and let go of: each names this
        protocol), the connection dropped."""
        for t in self.timers:
            t.cancel()
        self.timers = ()
        self.abandon()

    def abandon(self) -> None:
        """Nobody will await ``done`` any more: drop the connection without logging noise."""
        if self.done.done():
            if not self.done.cancelled():
                self.done.exception()  # mark retrieved
        else:
            self.done.cancel()
        sock = self.sock
        if sock is not None:  # still connecting
            self.sock = None
            self.loop.remove_writer(sock.fileno())
            sock.close()
        if self.transport is not None:
            self.transport.abort()


class _FramedExchange(_Exchange):
    """Whatsminer API v3 framing: each message is a 4-byte little-endian length, then JSON.

    The reply is complete when its frame is, so we need not wait for the close (the miner keeps
    the connection open for 300 s). Zero-length frames are the firmware's heartbeats and are
    skipped. The length prefix is checked against the cap before a byte of the body is read,
    so a bogus prefix (a non-v3 service on the port, a corrupt frame) fails at once instead of
    after the deadline.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, payload: bytes, cap: int) -> None:
        super().__init__(loop, payload, cap)
        self.pos = 0  # start of the frame being read, after any heartbeats
        self.want: int | None = None  # its body length, once the prefix is in

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self.buf += data
        while self.want is None and len(self.buf) - self.pos >= 4:
            n = int.from_bytes(self.buf[self.pos : self.pos + 4], "little")
            if n == 0:
                self.pos += 4
                if self.pos > self.cap:
                    self.fail(f"miner sent over {self.cap} bytes of heartbeats and no reply")
                    return
                continue
            if n > self.cap:
                self.fail(
                    f"reply length prefix says {n} bytes, over the {self.cap}-byte cap (not a "
                    "Whatsminer API v3 reply, or larger than max_reply_bytes)"
                )
                return
            self.want = n
        if self.want is not None and len(self.buf) - self.pos - 4 >= self.want:
            self.finish()

    def finish(self) -> None:
        if self.done.done():
            return
        start = self.pos + 4
        if self.want is not None and len(self.buf) - start >= self.want:
            self.done.set_result(bytes(self.buf[start : start + self.want]))
        elif not self.buf:
            self.done.set_exception(NoAnswer("miner closed the connection without replying"))
        else:
            got = max(0, len(self.buf) - start)
            want = "?" if self.want is None else str(self.want)
            self.done.set_exception(
                ApiError(f"miner closed the connection mid-reply ({got} of {want} bytes)")
            )
        self.close()


def frame(body: bytes) -> bytes:
    """One API v3 message: the length as 4 bytes little-endian, then the JSON."""
    return len(body).to_bytes(4, "little") + body


class _Link:
    """The little of an asyncio transport an exchange uses, on a connected socket of its own.

    One request of a few dozen bytes, one reply, then the miner closes: asyncio's socket
    transport (its waiter future, the scheduled connection_made and add_reader, the peer and
    socket names it asks the kernel for, TCP_NODELAY, its write buffer) was a third of what a
    connection cost the agent in Python. Here the request goes out with one send from
    connection_made, and the socket is watched for reading only.
    """

    __slots__ = ("_closed", "_fd", "_loop", "_out", "_proto", "_sock")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, proto: _Exchange
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._proto: _Exchange | None = proto
        self._closed = False
        self._out = b""  # what a full socket buffer did not take yet (never, for a request)
        proto.connection_made(cast(asyncio.Transport, self))
        if not self._closed:
            loop.add_reader(self._fd, self._readable)

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        if self._out:
            self._out += data
            return
        try:
            n = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            self._shut(e)
            return
        if n < len(data):
            self._out = data[n:]
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        try:
            n = self._sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._shut(e)
            return
        self._out = self._out[n:]
        if not self._out:
            self._loop.remove_writer(self._fd)

    def _readable(self) -> None:
        try:
            data = self._sock.recv(DEFAULT_MAX_REPLY_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._shut(e)
            return
        proto = self._proto
        if proto is None:
            return
        if data:
            proto.data_received(data)
        else:
            proto.eof_received()
            self.close()

    def _shut(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        if self._out:
            self._loop.remove_writer(self._fd)
        self._sock.close()
        proto, self._proto = self._proto, None
        if proto is not None:
            # and let go of it: the protocol names this link as its transport, a cycle that
            # would keep both (and the reply buffer) until a full garbage collection
            self._loop.call_soon(proto.connection_lost, exc)

    def close(self) -> None:
        self._shut(None)

    def abort(self) -> None:
        self._shut(None)

    def is_closing(self) -> bool:
        return self._closed


_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)

# a non-blocking connect under way (what loop.sock_connect waits out: BlockingIOError's errnos
# and EINTR)
_IN_PROGRESS = frozenset(
    (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EALREADY, errno.EINTR)
)


def _literal_ipv4(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, host)
    except OSError:
        return False
    return True


def _cannot_connect(e: OSError, port: int) -> NoAnswer:
    """The cause a person reads for a connect that failed."""
    if isinstance(e, ConnectionRefusedError):
        return NoAnswer(f"connection refused on port {port} (is the miner API enabled?)")
    return NoAnswer(f"cannot connect: {e.strerror or e}")


def _begin(loop: asyncio.AbstractEventLoop, proto: _Exchange, host: str, port: int) -> None:
    """Start connecting ``proto`` to a literal IPv4 address; raises OSError if the kernel
    refuses at once. The connect ends in a callback (``_connected``) that sends the request,
    not in the poll's coroutine: a poll wakes its coroutine once, for the reply, where
    awaiting the connect woke it twice (and the connect's timeout scope, its future and the
    task's step were a tenth of a poll's Python, bench/asic_poll.py)."""
    # non-blocking from its creation (Linux): one syscall fewer than setblocking(False) after
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | _NONBLOCK)
    try:
        if not _NONBLOCK:
            sock.setblocking(False)
        err = sock.connect_ex((host, port))
        if err and err not in _IN_PROGRESS:
            # what sock.connect raises; OSError picks the subclass by errno
            raise OSError(err, os.strerror(err))
    except BaseException:
        sock.close()
        raise
    proto.connected_at = loop.time()
    if err:
        proto.sock = sock
        loop.add_writer(sock.fileno(), _connected, proto, host, port)
    else:
        _Link(loop, sock, proto)


def _connected(proto: _Exchange, host: str, port: int) -> None:
    """The connect under way has ended, either way (its socket is writable)."""
    sock = proto.sock
    if sock is None:  # given up on already (its deadline, a cancel)
        return
    proto.sock = None
    loop = proto.loop
    loop.remove_writer(sock.fileno())
    try:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except OSError as e:
        err = e.errno or errno.EBADF
    if err:
        sock.close()
        if not proto.done.done():
            # as loop.sock_connect words it (the cause a person reads is the same)
            failed = OSError(err, f"Connect call failed {(host, port)}")
            proto.done.set_exception(_cannot_connect(failed, port))
        return
    proto.connected_at = loop.time()
    _Link(loop, sock, proto)


async def _connect(loop: asyncio.AbstractEventLoop, proto: _Exchange, host: str, port: int) -> None:
    """Connect ``proto`` to a host name (a literal IPv4 address, every miner in a config, takes
    ``_begin``): the resolver and asyncio's transport."""
    await loop.create_connection(lambda: proto, host, port)


async def exchange(
    host: str,
    port: int,
    payload: bytes,
    *,
    deadlines: Deadlines,
    deadline_at: float,
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    framed: bool = False,
) -> bytes:
    """Send one request, return the raw reply. ``deadline_at`` is the poll's loop-time limit.

    ``framed``: Whatsminer API v3 (length-prefixed; ``payload`` already framed, the reply's
    body is returned without its prefix). Same deadlines and byte cap either way.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    if not _literal_ipv4(host):
        return await _exchange_named(
            loop, host, port, payload, deadlines, deadline_at, max_reply_bytes, framed
        )
    proto = (_FramedExchange if framed else _Exchange)(loop, payload, max_reply_bytes)
    try:
        _begin(loop, proto, host, port)
    except OSError as e:
        proto.abandon()
        raise _cannot_connect(e, port) from None
    # one timer: the connect's deadline, which (connected by then) arms the reply's
    # (_connect_timeout). Module-level callbacks with their state as arguments, not closures
    # that name themselves to reschedule: such a closure is a reference cycle holding the
    # protocol, its socket and its reply buffer until a full garbage collection, on every poll;
    # the protocol's own hold on its timers is dropped below
    connect_by = min(start + deadlines.connect_s, deadline_at)
    proto.timers = (
        loop.call_at(
            connect_by,
            _connect_timeout,
            proto,
            start,
            connect_by,
            deadlines.first_byte_s,
            deadline_at,
            False,
        ),
    )
    try:
        return await proto.done
    finally:
        proto.end()


def _connect_timeout(
    proto: _Exchange,
    start: float,
    when: float,
    first_byte_s: float,
    deadline_at: float,
    graced: bool,
) -> None:
    if proto.done.done():
        return
    loop = proto.loop
    if proto.transport is None:  # still connecting
        now = loop.time()
        if not graced and now - when > STALL_S:
            # We fired late because the event loop was blocked, not because the miner was
            # slow; the connect may have ended unseen. One more look before failing.
            again = now + STALL_S * 2
            args = (proto, start, again, first_byte_s, deadline_at, True)
            proto.timers = (loop.call_at(again, _connect_timeout, *args),)
            return
        proto.fail(f"timed out after {now - start:.1f} s connecting", NoAnswer)
        return
    _arm_reply_timers(proto, start, first_byte_s, deadline_at)


def _arm_reply_timers(
    proto: _Exchange, start: float, first_byte_s: float, deadline_at: float
) -> None:
    """Connected (the request is out): the reply's limits from here. A first-byte limit at the
    total one (the poller's: both are its timeout) is the total timer's own, which fails an
    empty reply the same way: one timer, not two."""
    loop = proto.loop
    first_by = min(proto.connected_at + first_byte_s, deadline_at)
    total = loop.call_at(deadline_at, _total_timeout, proto, start, deadline_at, False)
    if first_by < deadline_at:
        first = loop.call_at(first_by, _first_byte_timeout, proto, start, first_by, False)
        proto.timers = (first, total)
    else:
        proto.timers = (total,)


def _first_byte_timeout(proto: _Exchange, start: float, when: float, graced: bool) -> None:
    if proto.buf:
        return
    loop = proto.loop
    if not graced and loop.time() - when > STALL_S:
        # We fired late because the event loop was blocked, not because the miner was slow;
        # its reply may be sitting unread in the socket. One more look before failing.
        loop.call_later(STALL_S, _first_byte_timeout, proto, start, loop.time() + STALL_S, True)
        return
    proto.fail(f"timed out after {loop.time() - start:.1f} s waiting for the first byte", NoAnswer)


def _total_timeout(proto: _Exchange, start: float, when: float, graced: bool) -> None:
    loop = proto.loop
    if not graced and loop.time() - when > STALL_S:
        loop.call_later(STALL_S, _total_timeout, proto, start, loop.time() + STALL_S, True)
        return
    if proto.buf:
        proto.fail(
            f"timed out after {loop.time() - start:.1f} s with the reply incomplete "
            f"({len(proto.buf)} bytes received; the miner sends too slowly)"
        )
    else:
        _first_byte_timeout(proto, start, when, True)


async def _exchange_named(
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    payload: bytes,
    deadlines: Deadlines,
    deadline_at: float,
    max_reply_bytes: int,
    framed: bool,
) -> bytes:
    """``exchange`` to a host name: connected (and sent) under a timeout scope, one retry if
    only a stall made us late; then the reply's timers."""
    start = loop.time()
    connect_by = min(start + deadlines.connect_s, deadline_at)
    kind = _FramedExchange if framed else _Exchange
    for attempt in (1, 2):
        proto = kind(loop, payload, max_reply_bytes)
        try:
            async with asyncio.timeout_at(connect_by):
                await _connect(loop, proto, host, port)
            break
        except TimeoutError:
            late = loop.time() - connect_by
            t = proto.transport
            if t is not None and not t.is_closing() and late > STALL_S:
                break  # connected and sent; only the stall made the timer win
            proto.abandon()
            if attempt == 2 or late <= STALL_S:
                raise NoAnswer(f"timed out after {loop.time() - start:.1f} s connecting") from None
            connect_by = loop.time() + STALL_S * 2
        except OSError as e:
            proto.abandon()
            raise _cannot_connect(e, port) from None
        except BaseException:
            proto.abandon()
            raise
    proto.connected_at = loop.time()
    _arm_reply_timers(proto, start, deadlines.first_byte_s, deadline_at)
    try:
        return await proto.done
    finally:
        proto.end()


# --- commands -------------------------------------------------------------------------------


@dataclass(slots=True)
class Replies:
    """Per-command reply bodies of one poll, and what went wrong per command."""

    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def ok(self, command: str) -> dict[str, Any] | None:
        body = self.bodies.get(command)
        if body is None or is_error_reply(body):
            return None
        return body


def _payload(
    command: str, parameter: str | None = None, extra: Mapping[str, Any] | None = None
) -> bytes:
    if parameter is None:
        # a poll's request is one of a few per firmware: encode each once, not on every poll
        key = tuple(extra.items()) if extra else ()
        try:
            return _poll_payload(command, key)
        except TypeError:  # an unhashable extra value: encode it as it is
            pass
    return _encode(command, parameter, extra)


@functools.lru_cache(maxsize=256)
def _poll_payload(command: str, extra: tuple[tuple[str, Any], ...]) -> bytes:
    return _encode(command, None, dict(extra))


def _encode(command: str, parameter: str | None, extra: Mapping[str, Any] | None) -> bytes:
    req: dict[str, Any] = {"command": command}
    if parameter is not None:
        req["parameter"] = parameter
    if extra:
        # keys a firmware reads beside the command (FirmwareSpec.request); others ignore them
        req.update(extra)
    return json.dumps(req, separators=(",", ":")).encode()


class CgminerClient:
    """Sends deduplicated command sets; remembers which miners reject ``a+b`` multi-commands."""

    def __init__(
        self,
        *,
        timeout_s: float = 3.0,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        self.deadlines = Deadlines.from_timeout(timeout_s)
        self.max_reply_bytes = max_reply_bytes
        self._no_multi: set[tuple[str, int]] = set()

    def rejects_multi(self, host: str, port: int) -> bool:
        return (host, port) in self._no_multi

    def deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.deadlines.total_s

    async def command(
        self,
        host: str,
        port: int,
        command: str,
        parameter: str | None = None,
        *,
        deadline_at: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One command and its decoded reply; errors the miner reports are returned, not raised."""
        raw = await exchange(
            host,
            port,
            _payload(command, parameter, extra),
            deadlines=self.deadlines,
            deadline_at=deadline_at if deadline_at is not None else self.deadline(),
            max_reply_bytes=self.max_reply_bytes,
        )
        return decode_reply(raw)

    async def query(
        self,
        host: str,
        port: int,
        commands: Sequence[str],
        *,
        alone: Iterable[str] = (),
        deadline_at: float | None = None,
        into: Replies | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Replies:
        """Fetch ``commands``; those in ``alone`` (not joinable on this firmware) go singly.

        Raises ApiError only when the miner gave nothing at all; per-command failures are
        recorded in ``Replies.errors``.
        """
        out = into if into is not None else Replies()
        deadline_at = deadline_at if deadline_at is not None else self.deadline()
        if alone:
            alone_set = set(alone)
            joined = [c for c in commands if c not in alone_set]
            singles = [c for c in commands if c in alone_set]
        else:  # most firmwares join every command: no set, no second pass
            joined, singles = list(commands), []
        if len(joined) == 1 or (joined and (host, port) in self._no_multi):
            singles = joined + singles
            joined = []
        errors: list[ApiError] = []
        # the joined request and the unjoinable singles go out together: one deadline, one wait
        fallback = await self._gather(host, port, joined, singles, deadline_at, out, errors, extra)
        if fallback:
            await self._gather(host, port, [], fallback, deadline_at, out, errors, extra)
        if not out.bodies:
            raise errors[0] if errors else ApiError("miner returned no replies")
        return out

    async def _gather(
        self,
        host: str,
        port: int,
        joined: Sequence[str],
        singles: Sequence[str],
        deadline_at: float,
        out: Replies,
        errors: list[ApiError],
        extra: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Run one joined request and the singles concurrently; return commands to retry singly."""
        requests = ["+".join(joined)] if joined else []
        requests += singles
        results: list[Any]
        if len(requests) == 1:
            # one request (every steady-state poll of a firmware that joins its commands): no
            # task and no gather for it, a cost paid on every poll of every miner
            try:
                results = [
                    await self.command(
                        host, port, requests[0], deadline_at=deadline_at, extra=extra
                    )
                ]
            except ApiError as e:
                results = [e]
        else:
            results = await asyncio.gather(
                *(
                    self.command(host, port, c, deadline_at=deadline_at, extra=extra)
                    for c in requests
                ),
                return_exceptions=True,
            )
        fallback: list[str] = []
        for i, (req, res) in enumerate(zip(requests, results, strict=True)):
            is_joined = bool(joined) and i == 0
            if isinstance(res, ApiError):
                errors.append(res)
                for cmd in joined if is_joined else [req]:
                    out.errors[cmd] = str(res)
            elif isinstance(res, BaseException):
                raise res
            elif is_joined:
                if not self._split_multi(res, joined, out):
                    # Whole request refused: this firmware has no multi-commands. Remember it
                    # so later polls go straight to single commands.
                    self._no_multi.add((host, port))
                    fallback = list(joined)
            else:
                out.bodies[req] = res
                if is_error_reply(res):
                    out.errors[req] = _error_text(res)
        return fallback

    @staticmethod
    def _split_multi(reply: dict[str, Any], joined: Sequence[str], out: Replies) -> bool:
        """Spread a multi-command reply into per-command bodies; False if it was refused whole."""
        found = False
        for cmd in joined:
            part = reply.get(cmd)
            if isinstance(part, list) and part and isinstance(part[0], dict):
                body = part[0]
            elif isinstance(part, dict):
                body = part
            else:
                continue
            found = True
            out.bodies[cmd] = body
            if is_error_reply(body):
                out.errors[cmd] = _error_text(body)
        # not found: refused whole ("Invalid command"), or '+' ignored and one command answered
        return found


def _error_text(body: dict[str, Any]) -> str:
    _, msg, _ = status_of(body)
    return f"miner says: {msg or 'error without a message'}"
