"""DLMS/COSEM meter client on ``dlms-cosem``: readings by OBIS code and the meter's load profile.

The commercial (tariff) meter a Kazakh farm settles on speaks DLMS/COSEM (IEC 62056); Russian
meters carry its SPODES profile. kuat reads it over the TCP wrapper (IEC 62056-47, port 4059)
or over HDLC (IEC 62056-46), through a TCP gateway in front of its optical/RS-485 port or on a
serial line itself (``links``), with no authentication (the public client), low-level security
(a password) or high-level security with GMAC and ciphering (HLS-GMAC: two keys, ``hls``).

``dlms-cosem`` is a blocking library, so each session runs in a worker thread. The poll's
deadline is kept from the event loop: when it passes, the line is shut from outside (the
blocked read in the thread returns at once) and the poll is a ``DeviceError`` — a silent meter
never holds a cycle longer than its ``timeout_s``. One lock per meter keeps sessions to it one at
a time: meters serve one association per port.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import structlog
from dlms_cosem import cosem, enumerations, exceptions, utils
from dlms_cosem import time as dlms_time
from dlms_cosem.client import DataResultError, DlmsClient, HLSError
from dlms_cosem.cosem.capture_object import CaptureObject
from dlms_cosem.cosem.selective_access import RangeDescriptor
from dlms_cosem.io import HdlcTransport
from dlms_cosem.security import (
    HighLevelSecurityGmacAuthentication,
    LowLevelSecurityAuthentication,
    NoSecurityAuthentication,
)

from kuat.collectors.dlms.links import SerialIO, TcpIO, hdlc_transport, wrapper_transport
from kuat.collectors.dlms.profile import (
    DLMS_UNITS,
    ObisProfile,
    ObjectSpec,
    ProfileError,
    load_profile,
    obis_text,
    scaled,
    unit_factor,
)
from kuat.collectors.errors import KuatError
from kuat.collectors.readings import DeviceError, DeviceKind, MeterReading

__all__ = ["DlmsMeter", "DlmsPoller", "Interval", "hour_energy"]

log = logging.getLogger(__name__)

# Astana time (UTC+5, no daylight saving): what a Kazakh meter's clock keeps when its clock
# value leaves the deviation unspecified.
DEFAULT_TZ = timezone(timedelta(hours=5))


def _quiet_structlog() -> None:
    """dlms-cosem logs every frame through structlog, to stdout by default — which would
    corrupt ``kuat probe … --json`` and print the LLS password inside the AARQ bytes. Only
    warnings and above pass, to stderr."""
    if not structlog.is_configured():
        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        )


@dataclass(frozen=True)
class DlmsMeter:
    """How to reach one DLMS meter. The password and the HLS keys are kept out of ``repr``.

    With ``encryption_key`` and ``authentication_key`` (16 bytes each, security suite 0) the
    association is high-level security with GMAC and every APDU is ciphered
    (general-glo-ciphering) under ``system_title``, kuat's own 8-byte title."""

    host: str  # TCP address (of the meter or its gateway); "" on a serial line
    port: int = 4059
    transport: Literal["tcp", "hdlc"] = "tcp"  # a serial line is always hdlc
    client_address: int = 16  # 16: public client (no auth); SPODES reader with LLS: 32
    server_address: int = 1  # logical device (1: management)
    physical_address: int | None = None  # HDLC lower address (the meter's serial-based one)
    password: str | None = field(default=None, repr=False)
    profile: str = "spodes"
    timeout_s: float = 5.0
    clock_tz: timezone = DEFAULT_TZ
    serial_port: str | None = None  # HDLC on this serial line (RS-485) instead of TCP
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    encryption_key: bytes | None = field(default=None, repr=False)  # global unicast (EK)
    authentication_key: bytes | None = field(default=None, repr=False)  # (AK)
    system_title: bytes = b"KUA\x00\x00\x00\x00\x01"
    # The meter's record of the last client invocation counter, read by the public client
    # before kuat's first ciphered session (a meter refuses a counter it has seen); None: not
    # read, start at 1.
    invocation_counter_obis: tuple[int, ...] | None = (0, 0, 43, 1, 0, 255)
    # The [[meter]] entry's name, for errors that point at its configuration (its keys).
    config_name: str | None = None

    @property
    def keys_of(self) -> str:
        return f"of [[meter]] {self.config_name}" if self.config_name else "given"

    @property
    def hls(self) -> bool:
        return self.encryption_key is not None and self.authentication_key is not None

    @property
    def name(self) -> str:
        if self.serial_port:
            where = self.serial_port
            return f"{where}@{self.physical_address}" if self.physical_address else where
        return f"{self.host}:{self.port}"

    @property
    def where(self) -> str:
        """The host (or serial line) a DeviceError names."""
        return self.serial_port or self.host

    @property
    def ident(self) -> tuple[str, int, int, int | None]:
        """One meter (logical device), among others on its line."""
        return (self.where, self.port, self.server_address, self.physical_address)

    @property
    def line_name(self) -> str:
        return self.serial_port or f"{self.host}:{self.port}"

    @property
    def line(self) -> tuple[str, int, int]:
        """What one session holds: a serial line or HDLC gateway is one bus, whatever meter
        on it is addressed; a TCP-wrapper meter serves each logical device on its own."""
        if self.serial_port:
            return (self.serial_port, 0, 0)
        if self.transport == "hdlc":
            return (self.host, self.port, 0)
        return (self.host, self.port, self.server_address)


@dataclass(frozen=True, slots=True)
class Interval:
    """One load-profile entry: the meter's energy imported in (start, end]."""

    start: datetime  # UTC
    end: datetime  # UTC
    kwh: float | None  # None: the meter marked the entry as not available


class PollFailed(KuatError):
    """One-line cause; becomes DeviceError.cause."""


def hour_energy(intervals: list[Interval], start: datetime) -> tuple[float | None, int]:
    """The meter's kWh in the hour starting at ``start`` (UTC) from its intervals, and how
    many intervals made it; None when the hour is not fully covered."""
    end = start + timedelta(hours=1)
    inside = [i for i in intervals if start <= i.start and i.end <= end]
    covered = sum((i.end - i.start).total_seconds() for i in inside if i.kwh is not None)
    if not inside or abs(covered - 3600) > 1:
        return None, len(inside)
    return round(sum(i.kwh or 0.0 for i in inside), 6), len(inside)


class _Session:
    """One blocking association (run in a worker thread)."""

    def __init__(self, meter: DlmsMeter, deadline_s: float, *, invocation_counter: int = 1) -> None:
        self.meter = meter
        self.io: TcpIO | SerialIO
        if meter.serial_port:
            self.io = SerialIO(
                meter.serial_port,
                baudrate=meter.baudrate,
                parity=meter.parity,
                stopbits=meter.stopbits,
                bytesize=meter.bytesize,
                deadline_s=deadline_s,
            )
        else:
            self.io = TcpIO(meter.host, meter.port, timeout=deadline_s)
        if meter.serial_port or meter.transport == "hdlc":
            transport = hdlc_transport(
                meter.client_address, meter.server_address, meter.physical_address, self.io
            )
        else:
            transport = wrapper_transport(meter.client_address, meter.server_address, self.io)
        if meter.hls:
            self.client = DlmsClient(
                transport=transport,
                authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
                encryption_key=meter.encryption_key,
                authentication_key=meter.authentication_key,
                client_system_title=meter.system_title,
                client_initial_invocation_counter=invocation_counter,
            )
        else:
            auth: Any = (
                LowLevelSecurityAuthentication(secret=meter.password.encode())
                if meter.password
                else NoSecurityAuthentication()
            )
            self.client = DlmsClient(transport=transport, authentication=auth)
        self.aborted = False

    def abort(self) -> None:
        """From the event loop: unblock the worker thread's read."""
        self.aborted = True
        self.io.abort()

    def open(self) -> None:
        try:
            self.client.connect()
        except exceptions.CommunicationError as exc:
            cause = exc.__cause__
            if self.io.is_open and isinstance(self.client.transport, HdlcTransport):
                # the line is up, but nothing answered the HDLC connect (SNRM)
                m = self.meter
                raise PollFailed(
                    f"no answer within {m.timeout_s:g} s to HDLC connect (server "
                    f"{m.server_address}, physical {m.physical_address}: wrong address"
                    f"{' or line settings' if m.serial_port else ''}?)"
                ) from None
            if isinstance(cause, TimeoutError | socket.timeout):
                raise PollFailed("connect timed out") from None
            raise PollFailed(f"cannot connect: {cause or exc}") from None
        try:
            self.client.associate()
        except (HLSError, exceptions.DecryptionError) as exc:
            raise PollFailed(
                "HLS-GMAC authentication failed: "
                + (
                    "the meter's answer does not decipher"
                    if isinstance(exc, exceptions.DecryptionError)
                    else "the meter refused kuat's proof or gave a wrong one"
                )
                + f"; are encryption_key and authentication_key {self.meter.keys_of} this "
                "meter's?"
            ) from None
        except exceptions.DlmsClientException as exc:
            text = str(exc)
            if "REJECTED" in text.upper() and self.meter.hls:
                raise _HlsRefused(
                    f"association refused with HLS-GMAC (client {self.meter.client_address}): "
                    f"encryption_key or authentication_key {self.meter.keys_of} is not this "
                    "meter's, or the meter does not know system_title"
                ) from None
            if "REJECTED" in text.upper():
                raise PollFailed(
                    f"association refused (client {self.meter.client_address}, "
                    f"server {self.meter.server_address}"
                    f"{', wrong password?' if self.meter.password else ', password needed?'})"
                ) from None
            raise PollFailed(f"association failed: {text.splitlines()[0]}") from None

    def close(self) -> None:
        if not self.aborted:
            with contextlib.suppress(Exception):
                self.client.release_association()
        with contextlib.suppress(Exception):
            self.client.disconnect()

    def get(self, interface: int, obis: tuple[int, ...], attribute: int, access: Any = None) -> Any:
        """One attribute as Python values; PollFailed naming the object when refused."""
        attr = cosem.CosemAttribute(
            interface=enumerations.CosemInterface(interface),
            instance=cosem.Obis(*obis),
            attribute=attribute,
        )
        try:
            raw = self.client.get(attr, access_descriptor=access)
        except DataResultError as exc:
            raise _Refused(f"{obis_text(obis)} attribute {attribute}: {exc}") from None
        return utils.parse_as_dlms_data(raw)


class _HlsRefused(PollFailed):
    """The meter refused a ciphered (HLS-GMAC) association."""


class _Refused(PollFailed):
    """The meter answered a GET with a data-access error (object undefined, denied…)."""


class DlmsPoller:
    """Reads DLMS meters; one instance per process (it remembers each meter's scalers)."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        _quiet_structlog()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._locks: dict[tuple[str, int, int], asyncio.Lock] = {}  # one per line
        # (meter ident, obis) -> (scaler, unit): attribute 3 does not change while the
        # meter runs; read once, not every poll (a second round trip per object).
        self._scalers: dict[tuple[Any, ...], tuple[int, str]] = {}
        self._profiles: dict[str, ObisProfile] = {}
        # meter ident -> the next HLS client invocation counter (see _run_session)
        self._counters: dict[tuple[Any, ...], int] = {}
        self._missing_logged: set[tuple[tuple[str, int, int, int | None], str]] = set()

    def _profile(self, name: str) -> ObisProfile:
        prof = self._profiles.get(name)
        if prof is None:
            prof = self._profiles[name] = load_profile(name)
        return prof

    def _lock(self, meter: DlmsMeter) -> asyncio.Lock:
        key = meter.line
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _bounded(
        self, meter: DlmsMeter, work: Callable[[_Session], Any], wait_s: float | None = None
    ) -> Any:
        """Run a session in a thread under the meter's deadline. The wait for its line counts
        in that deadline, unless ``wait_s`` gives it a budget of its own (meters sharing a
        serial line or gateway: the deadline then starts once the line is this session's)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        holder: dict[str, _Session] = {}
        waited = meter.timeout_s if wait_s is None else wait_s
        try:
            async with asyncio.timeout(waited):
                await self._lock(meter).acquire()
        except TimeoutError:
            raise PollFailed(
                f"line busy: another session on {meter.line_name} (a load-profile read or "
                f"another meter on it) held it for {waited:g} s"
            ) from None
        deadline = (loop.time() if wait_s is not None else started) + meter.timeout_s
        try:
            future = loop.run_in_executor(None, _run_session, meter, work, holder, self._counters)
            # a session still finishing when this poll is cancelled (shutdown) must not leave
            # an unretrieved exception behind
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            try:
                return await asyncio.wait_for(asyncio.shield(future), deadline - loop.time())
            except TimeoutError:
                session = holder.get("session")
                if session is not None:
                    session.abort()
                # the thread ends promptly once its line is shut; wait so the next session
                # of this meter never overlaps it, and keep its cause when it says more (which
                # step went unanswered)
                said = f"no answer within {meter.timeout_s:g} s"
                try:
                    await asyncio.wait_for(future, 2.0)
                except PollFailed as exc:
                    if str(exc).startswith(said):
                        said = str(exc)
                except Exception:
                    pass
                raise PollFailed(said) from None
        finally:
            self._lock(meter).release()

    # --- readings ---------------------------------------------------------------------------

    async def poll(
        self, meter: DlmsMeter, *, wait_s: float | None = None
    ) -> MeterReading | DeviceError:
        """One reading, or a DeviceError saying why not. Never raises (except cancellation).
        ``wait_s``: how long it may queue for a line shared with other meters (see _bounded)."""
        taken_at = self._clock()

        def error(cause: str) -> DeviceError:
            return DeviceError(DeviceKind.METER, meter.where, meter.port, taken_at, cause)

        try:
            prof = self._profile(meter.profile)
        except ProfileError as exc:
            return error(str(exc))
        try:
            values, missing = await self._bounded(
                meter, lambda s: self._read(s, meter, prof), wait_s
            )
        except TimeoutError:
            return error(f"no answer within {meter.timeout_s:g} s")
        except PollFailed as exc:
            return error(str(exc))
        if not values and missing:
            return error(
                f"no object of profile {prof.name} readable (first: {missing[0]}): "
                "wrong profile, client address or server address?"
            )
        for text in missing:
            key = (meter.ident, text)
            if key not in self._missing_logged:
                # once per meter and object, so "why is v_ln null?" has an answer in the log
                self._missing_logged.add(key)
                log.info("meter %s: %s; that value reads null", meter.name, text)
        return MeterReading(
            host=meter.where,
            unit=meter.server_address,
            profile=prof.name,
            taken_at=taken_at,
            **_fields(prof, values),
        )

    def _scaler(self, session: _Session, meter: DlmsMeter, spec: ObjectSpec) -> tuple[int, str]:
        if spec.interface == 1:
            return spec.scaler or 0, spec.unit or ""
        key = (*meter.ident, spec.obis)
        known = self._scalers.get(key)
        if known is None:
            su = session.get(spec.interface, spec.obis, 3)
            if not isinstance(su, list) or len(su) != 2:
                raise PollFailed(f"{spec.obis_text} scaler_unit is not a structure: {su!r}")
            scaler, unit_code = int(su[0]), int(su[1])
            unit = DLMS_UNITS.get(unit_code)
            if unit is None:
                raise PollFailed(f"{spec.obis_text} reports unit code {unit_code}, unknown")
            try:
                unit_factor(unit, spec.field)
            except ValueError as exc:
                raise PollFailed(f"{spec.obis_text} ({spec.label}): {exc}") from None
            known = self._scalers[key] = (scaler, unit)
        return known

    def _read(
        self, session: _Session, meter: DlmsMeter, prof: ObisProfile
    ) -> tuple[dict[ObjectSpec, float | None], list[str]]:
        values: dict[ObjectSpec, float | None] = {}
        missing: list[str] = []
        for spec in prof.objects:
            try:
                scaler, unit = self._scaler(session, meter, spec)
                raw = session.get(spec.interface, spec.obis, 2)
            except _Refused as exc:
                missing.append(str(exc))
                continue
            values[spec] = scaled(raw, scaler, unit, spec)
        return values, missing

    # --- load profile -------------------------------------------------------------------------

    async def intervals(
        self, meter: DlmsMeter, start: datetime, end: datetime
    ) -> list[Interval] | DeviceError:
        """The meter's load-profile entries whose interval ends in (start, end] (UTC)."""
        taken_at = self._clock()
        try:
            prof = self._profile(meter.profile)
            if prof.load_profile is None:
                raise PollFailed(f"profile {prof.name} has no [load_profile]")
            return await self._bounded(
                meter, lambda s: self._read_intervals(s, meter, prof, start, end)
            )
        except (ProfileError, PollFailed) as exc:
            return DeviceError(DeviceKind.METER, meter.where, meter.port, taken_at, str(exc))
        except TimeoutError:
            return DeviceError(
                DeviceKind.METER,
                meter.where,
                meter.port,
                taken_at,
                f"no answer within {meter.timeout_s:g} s",
            )

    def _read_intervals(
        self,
        session: _Session,
        meter: DlmsMeter,
        prof: ObisProfile,
        start: datetime,
        end: datetime,
    ) -> list[Interval]:
        lp = prof.load_profile
        assert lp is not None
        captured = session.get(7, lp.obis, 3)
        columns = [tuple(c[1]) if len(c) > 1 else () for c in captured or []]
        try:
            t_col = columns.index(lp.clock)
            e_col = columns.index(lp.column)
        except ValueError:
            names = ", ".join(".".join(str(b) for b in c) for c in columns) or "none"
            raise PollFailed(
                f"load profile {obis_text(lp.obis)} does not capture the clock and "
                f"{obis_text(lp.column)} (captures: {names})"
            ) from None
        period_s = int(session.get(7, lp.obis, 4) or 0)
        if not 60 <= period_s <= 86400:
            raise PollFailed(f"load profile capture period {period_s} s is not usable")
        spec = ObjectSpec("import_kwh", None, lp.column, 3, None, None)
        scaler, unit = self._scaler(session, meter, spec)
        # a counter needs the entry before the window to difference the first one
        lookback = timedelta(seconds=period_s) if lp.kind == "counter" else timedelta(0)
        frm = (start - lookback + timedelta(seconds=1)).astimezone(meter.clock_tz)
        to = end.astimezone(meter.clock_tz)
        access = RangeDescriptor(
            restricting_object=CaptureObject(
                cosem_attribute=cosem.CosemAttribute(
                    interface=enumerations.CosemInterface.CLOCK,
                    instance=cosem.Obis(*lp.clock),
                    attribute=2,
                ),
                data_index=0,
            ),
            from_value=frm,
            to_value=to,
        )
        rows = session.get(7, lp.obis, 2, access) or []
        entries: list[tuple[datetime, float | None]] = []
        for row in rows:
            if not isinstance(row, list) or len(row) <= max(t_col, e_col):
                raise PollFailed("load profile entry does not match its capture objects")
            stamp = row[t_col]
            if not isinstance(stamp, bytes | bytearray):
                raise PollFailed("load profile entry has no time stamp")
            at, _status = dlms_time.datetime_from_bytes(bytes(stamp))
            if at.tzinfo is None:
                at = at.replace(tzinfo=meter.clock_tz)
            entries.append((at.astimezone(UTC), scaled(row[e_col], scaler, unit, spec)))
        entries.sort(key=lambda e: e[0])
        step = timedelta(seconds=period_s)
        out: list[Interval] = []
        if lp.kind == "delta":
            out = [Interval(t - step, t, v) for t, v in entries]
        else:
            for (t0, v0), (t1, v1) in itertools.pairwise(entries):
                kwh = None if v0 is None or v1 is None or v1 < v0 else round(v1 - v0, 6)
                out.append(Interval(t0, t1, kwh))
        return [i for i in out if start < i.end <= end]


def _run_session(
    meter: DlmsMeter,
    work: Callable[[_Session], Any],
    holder: dict[str, _Session],
    counters: dict[tuple[Any, ...], int],
) -> Any:
    """Blocking, in a worker thread: open a session, do ``work``, close; PollFailed only.
    The session is handed to the loop side through ``holder``, for ``abort``. ``counters``:
    the next client invocation counter per HLS meter, carried from session to session."""
    if not meter.hls:
        return _guarded(_held(meter, holder), work)
    fresh = meter.ident not in counters
    if fresh:
        counters[meter.ident] = _meter_counter(meter, holder) + 1
    try:
        return _ciphered(meter, work, holder, counters)
    except _HlsRefused:
        if fresh or meter.invocation_counter_obis is None:
            raise
        # the counter kuat remembered is behind the meter's (another client with this system
        # title used it, or the meter was reset): read the meter's record and try once more
        counters[meter.ident] = _meter_counter(meter, holder) + 1
        return _ciphered(meter, work, holder, counters)


def _held(meter: DlmsMeter, holder: dict[str, _Session], counter: int = 1) -> _Session:
    session = _Session(meter, meter.timeout_s, invocation_counter=counter)
    holder["session"] = session
    return session


def _ciphered(
    meter: DlmsMeter,
    work: Callable[[_Session], Any],
    holder: dict[str, _Session],
    counters: dict[tuple[Any, ...], int],
) -> Any:
    session = _held(meter, holder, counters[meter.ident])
    try:
        return _guarded(session, work)
    finally:
        # used or not, a counter is never offered twice (the meter refuses a replay)
        counters[meter.ident] = session.client.client_invocation_counter


def _meter_counter(meter: DlmsMeter, holder: dict[str, _Session]) -> int:
    """The last client invocation counter the meter took, read by the public client (no
    authentication); 0 when the meter does not offer it."""
    obis = meter.invocation_counter_obis
    if obis is None:
        return 0
    public = replace(
        meter, client_address=16, encryption_key=None, authentication_key=None, password=None
    )
    session = _Session(public, meter.timeout_s)
    holder["session"] = session

    def read(s: _Session) -> int:
        try:
            return int(s.get(1, obis, 2) or 0)
        except _Refused as exc:
            log.warning(
                "meter %s: invocation counter not readable (%s); HLS starts at 1", meter.name, exc
            )
            return 0

    counter: int = _guarded(session, read)
    return counter


def _guarded(session: _Session, work: Callable[[_Session], Any]) -> Any:
    """Open ``session``, do ``work``, close it; any failure as a PollFailed with its cause."""
    meter = session.meter
    try:
        session.open()
        return work(session)
    except PollFailed:
        raise
    except (exceptions.CommunicationError, OSError) as exc:
        cause = exc.__cause__ or exc
        if session.aborted or isinstance(cause, TimeoutError | socket.timeout):
            raise PollFailed(f"no answer within {meter.timeout_s:g} s") from None
        raise PollFailed(f"connection error: {cause}") from None
    except exceptions.DecryptionError:
        raise PollFailed(
            "the meter's answer does not decipher: is encryption_key this meter's?"
        ) from None
    except Exception as exc:  # a malformed reply must not escape as anything but a cause
        if session.aborted:
            raise PollFailed(f"no answer within {meter.timeout_s:g} s") from None
        raise PollFailed(f"unusable reply ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    finally:
        session.close()


def _fields(prof: ObisProfile, values: dict[ObjectSpec, float | None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    triples: dict[str, list[float | None]] = {}
    for spec in prof.objects:
        value = values.get(spec)
        if spec.phase is None:
            out[spec.field] = value
        else:
            triples.setdefault(spec.field, [None, None, None])[spec.phase - 1] = value
    for name, triple in triples.items():
        out[name] = tuple(triple)
    return out
