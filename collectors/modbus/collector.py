"""Modbus TCP meter poller.

One ``_Hub`` per (host, port), in the manner of Home Assistant's modbus integration: a gateway
in front of an RS485 bus serves one request at a time, so every poll of every unit behind it
goes through the hub's lock, and the hub owns the one TCP connection, reconnecting when it
drops. Outages are logged once when they start and once when they end, never per poll: a meter
polled every 2 s during a night-long outage must not bury the rest of the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from kuat.collectors.modbus.plan import Block, Span, plan, split
from kuat.collectors.modbus.profile import MeterProfile, ProfileError, list_profiles, load_profile
from kuat.collectors.modbus.values import BadValue, Words, check_expects, reading_fields
from kuat.collectors.readings import DeviceError, DeviceKind, MeterReading

__all__ = ["MeterPoller", "ModbusLink", "list_profiles", "load_profile"]

log = logging.getLogger(__name__)

_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class _QuietConnectFailures(logging.Filter):
    """Drop pymodbus' per-attempt "Failed to connect" warning.

    The hub reports an outage once when it starts and once when it ends; pymodbus would add a
    warning on every poll of an unreachable meter (every 1–5 s, all night). Only that one
    message is dropped; everything else pymodbus logs still passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to connect")


def _quiet_pymodbus_connect_failures() -> None:
    pm_log = logging.getLogger("pymodbus.logging")
    if not any(isinstance(f, _QuietConnectFailures) for f in pm_log.filters):
        pm_log.addFilter(_QuietConnectFailures())


@dataclass(frozen=True, slots=True)
class ModbusLink:
    """The line a meter answers on. ``tcp``: Modbus/TCP (MBAP) to a meter or gateway; ``rtu-tcp``:
    RTU frames over TCP through a transparent serial gateway; ``serial``: RTU on an RS-485 line
    (``device``, e.g. /dev/ttyUSB0). Units on one link share it: one hub owns the line and polls
    them in turn."""

    kind: str = "tcp"  # "tcp" | "rtu-tcp" | "serial"
    host: str = ""
    port: int = 502
    device: str = ""
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    gap_s: float = 0.0  # silence kept between two requests (slow converters need it)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.kind, self.device or self.host, self.port if self.kind != "serial" else 0)

    @property
    def rtu(self) -> bool:
        return self.kind in ("rtu-tcp", "serial")

    def describe(self) -> str:
        if self.kind == "serial":
            return f"{self.device} ({self.baudrate} {self.bytesize}{self.parity}{self.stopbits})"
        return f"{self.host}:{self.port}" + (" (RTU over TCP)" if self.kind == "rtu-tcp" else "")


class _UnitSilent(Exception):
    """On an RTU line, a unit that does not answer is that unit's failure, not the line's."""


# A link down longer than this may come back with another meter behind it.
RELEARN_AFTER_S = 60.0


class _LinkError(Exception):
    """The TCP connection is unusable (refused, reset, silent)."""


class _ModbusError(Exception):
    """The device answered with a Modbus exception."""

    def __init__(self, code: int, block: Block) -> None:
        super().__init__(code, block)
        self.code = code
        self.block = block


class _NothingReadable(Exception):
    """Every read answered exception 2: wrong profile, wrong unit, or not a meter."""


@dataclass
class _Learned:
    """What a device showed us about its holes, so later polls skip the probing."""

    blocks: list[Block]
    missing: set[Span] = field(default_factory=set)


class _Hub:
    def __init__(self, link: ModbusLink, timeout_s: float) -> None:
        self.link = link
        self.host = link.host or link.device
        self.port = link.port
        self.timeout_s = timeout_s
        self.lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._outage_since: float | None = None
        self._faulty_units: dict[int, float] = {}
        self._learned: dict[tuple[int, str], _Learned] = {}

    @property
    def name(self) -> str:
        return self.link.describe()

    # --- connection ---------------------------------------------------------------------

    async def _connect(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.drop()
        # retries/reconnect off: the hub decides when to reconnect (next poll), and a retry
        # inside pymodbus would silently double the time a poll may take.
        link = self.link
        client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if link.kind == "serial":
            client = AsyncModbusSerialClient(
                link.device,
                framer=FramerType.RTU,
                baudrate=link.baudrate,
                bytesize=link.bytesize,
                parity=link.parity,
                stopbits=link.stopbits,
                timeout=self.timeout_s,
                retries=0,
                reconnect_delay=0,
                reconnect_delay_max=0,
            )
        else:
            client = AsyncModbusTcpClient(
                link.host,
                port=link.port,
                framer=FramerType.RTU if link.kind == "rtu-tcp" else FramerType.SOCKET,
                timeout=self.timeout_s,
                retries=0,
                reconnect_delay=0,
                reconnect_delay_max=0,
            )
        started = time.monotonic()
        if not await client.connect():
            client.close()
            if time.monotonic() - started >= self.timeout_s * 0.9:
                raise _LinkError(f"connect timed out after {self.timeout_s:g} s")
            raise _LinkError("connection refused or host unreachable")
        self._client = client
        # a reconnect after a long outage may mean a replaced meter or new firmware: learn its
        # holes again; after a short one (a poll cut by its deadline) keep what was learned,
        # or a meter probed on a slow line could never finish its first poll
        if self._outage_since is None or time.monotonic() - self._outage_since > RELEARN_AFTER_S:
            self._learned.clear()
        return client

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    def drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- reads ----------------------------------------------------------------------------

    async def _read(
        self, client: AsyncModbusTcpClient | AsyncModbusSerialClient, block: Block, unit: int
    ) -> list[int]:
        read = client.read_holding_registers if block.fc == 3 else client.read_input_registers
        if self.link.gap_s:
            await asyncio.sleep(self.link.gap_s)
        try:
            reply = await read(block.addr, count=block.count, device_id=unit)
        except ModbusException as exc:
            if self.link.rtu and client.connected:
                # the line is fine (the port is open): this unit did not answer
                raise _UnitSilent(
                    f"unit {unit} did not answer {block.describe()} within {self.timeout_s:g} s"
                ) from None
            self.drop()
            raise _LinkError(
                f"no reply to {block.describe()} within {self.timeout_s:g} s ({type(exc).__name__})"
            ) from None
        if reply.isError():
            raise _ModbusError(int(getattr(reply, "exception_code", 0)), block)
        regs = list(reply.registers)
        if len(regs) < block.count:
            raise _LinkError(
                f"short reply to {block.describe()}: {len(regs)} of {block.count} registers"
            )
        return regs[: block.count]

    async def fetch(self, profile: MeterProfile, unit: int) -> Words:
        client = await self._connect()
        key = (unit, profile.path)
        learned = self._learned.get(key)
        first_time = learned is None
        if learned is None:
            learned = _Learned(
                plan(profile.spans(), max_gap=profile.max_gap, max_count=profile.max_count)
            )
        words: Words = {}
        good: list[Block] = []
        queue = deque(learned.blocks)
        while queue:
            block = queue.popleft()
            try:
                regs = await self._read(client, block, unit)
            except _ModbusError as exc:
                if exc.code != 2:
                    raise
                parts = split(block)
                if parts:
                    queue.extendleft(reversed(parts))
                else:
                    learned.missing.add(block.spans[0])
                # kept at once: a poll cut by its deadline mid-probe (a slow line, a loaded
                # host) leaves what it learned to the next poll instead of starting over
                self._learned[key] = _Learned([*good, *queue], learned.missing)
                continue
            good.append(block)
            words.update(((block.fc, block.addr + i), w) for i, w in enumerate(regs))
        if not good:
            raise _NothingReadable
        self._learned[key] = _Learned(good, learned.missing)
        if first_time and learned.missing:
            # said once per connection, so "why is demand_kw null?" has an answer in the log
            where = ", ".join(f"{a}" for _, a, _ in sorted(learned.missing))
            log.info(
                "meter %s unit %d has no registers %s (%s): those values read null",
                self.name,
                unit,
                where,
                profile.name,
            )
        return words

    # --- outage bookkeeping (log once per outage) ----------------------------------------

    def link_failed(self, cause: str) -> None:
        self.drop()
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.error("meter link %s down: %s", self.name, cause)

    def link_ok(self) -> None:
        if self._outage_since is not None:
            log.warning(
                "meter link %s recovered after %.1f s",
                self.name,
                time.monotonic() - self._outage_since,
            )
            self._outage_since = None

    def unit_failed(self, unit: int, cause: str) -> None:
        if unit not in self._faulty_units:
            self._faulty_units[unit] = time.monotonic()
            log.error("meter %s unit %d failing: %s", self.name, unit, cause)

    def unit_ok(self, unit: int) -> None:
        since = self._faulty_units.pop(unit, None)
        if since is not None:
            log.warning(
                "meter %s unit %d recovered after %.1f s", self.name, unit, time.monotonic() - since
            )


def _labels(profile: MeterProfile, block: Block) -> str:
    names = [
        r.label for r in profile.registers if block.addr <= r.addr < block.end and r.fc == block.fc
    ]
    if len(names) > 4:
        names = [*names[:4], "…"]
    return ", ".join(names)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MeterPoller:
    """Polls Modbus TCP meters. One instance per process; it keeps one connection per gateway."""

    def __init__(
        self, *, timeout_s: float = 2.0, clock: Callable[[], datetime] | None = None
    ) -> None:
        """``clock`` stamps readings' ``taken_at`` (an aware UTC instant); default: real time.
        The agent passes its own, so a test on an accelerated clock gets consistent stamps."""
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        self._clock = clock or _utcnow
        _quiet_pymodbus_connect_failures()
        self._hubs: dict[tuple[str, str, int], _Hub] = {}
        self._profiles: dict[str, MeterProfile] = {}

    def _profile(self, name_or_path: str) -> MeterProfile:
        prof = self._profiles.get(name_or_path)
        if prof is None:
            prof = self._profiles[name_or_path] = load_profile(name_or_path)
        return prof

    def _hub(self, link: ModbusLink, timeout_s: float) -> _Hub:
        hub = self._hubs.get(link.key)
        if hub is None:
            hub = self._hubs[link.key] = _Hub(link, timeout_s)
        return hub

    async def poll(
        self,
        host: str,
        port: int = 502,
        *,
        unit: int = 1,
        profile: str = "schneider-pm5560",
        timeout_s: float | None = None,
        link: ModbusLink | None = None,
    ) -> MeterReading | DeviceError:
        """One reading, or a DeviceError saying why not. Never raises (except cancellation).

        ``timeout_s`` (this meter's ``[[meter]] timeout_s``; default: the poller's) bounds the
        connect plus all reads of the poll, counted from the moment the connection's lock is
        ours (polls of units behind one gateway or on one RS-485 line queue for it). ``link``:
        RTU on a serial line or over TCP (default: Modbus/TCP to ``host:port``).
        """
        deadline = self.timeout_s if timeout_s is None else timeout_s
        if link is None:
            link = ModbusLink("tcp", host, port)
        taken_at = self._clock()

        def error(cause: str) -> DeviceError:
            return DeviceError(
                kind=DeviceKind.METER, host=host, port=port, taken_at=taken_at, cause=cause
            )

        try:
            prof = self._profile(profile)
        except ProfileError as exc:
            return error(str(exc))
        if not 0 <= unit <= 255:
            return error(f"unit {unit} outside 0..255")

        hub = self._hub(link, deadline)
        async with hub.lock:
            try:
                async with asyncio.timeout(deadline):
                    words = await hub.fetch(prof, unit)
            except TimeoutError:
                cause = f"timed out after {deadline:g} s"
                if link.rtu and hub.connected:
                    # one silent unit on a bus: the others on the line are still there
                    hub.unit_failed(unit, cause)
                else:
                    hub.link_failed(cause)
                return error(cause)
            except _UnitSilent as exc:
                hub.link_ok()
                hub.unit_failed(unit, str(exc))
                return error(str(exc))
            except _LinkError as exc:
                hub.link_failed(str(exc))
                return error(str(exc))
            except (OSError, ModbusException) as exc:  # anything pymodbus lets through
                cause = f"connection error: {exc}"
                hub.link_failed(cause)
                return error(cause)
            except _ModbusError as exc:
                hub.link_ok()
                name = _EXCEPTION_NAMES.get(exc.code, "unknown")
                labels = _labels(prof, exc.block)
                cause = f"Modbus exception {exc.code} ({name}) reading {exc.block.describe()}" + (
                    f" for {labels}" if labels else ""
                )
                hub.unit_failed(unit, cause)
                return error(cause)
            except _NothingReadable:
                hub.link_ok()
                cause = (
                    f"unit {unit} answered 'illegal data address' for every register of "
                    f"profile {prof.name}: wrong profile or unit?"
                )
                hub.unit_failed(unit, cause)
                return error(cause)
            hub.link_ok()

        # decoding is pure and cheap: no need to hold the gateway while doing it
        mismatch = check_expects(prof, words)
        if mismatch:
            hub.unit_failed(unit, mismatch)
            return error(mismatch)
        try:
            fields = reading_fields(prof, words)
        except BadValue as exc:
            hub.unit_failed(unit, str(exc))
            return error(str(exc))
        hub.unit_ok(unit)
        return MeterReading(host=host, unit=unit, profile=prof.name, taken_at=taken_at, **fields)

    async def close(self) -> None:
        for hub in self._hubs.values():
            async with hub.lock:
                hub.drop()
        self._hubs.clear()
