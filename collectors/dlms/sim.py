"""A DLMS/COSEM meter simulator on ``dlms-cosem``'s own codec (MIT): AARQ/AARE with no,
low-level (password) or high-level (HLS-GMAC, ciphered; ``sim_hls``) authentication, GET
(normal, with block transfer) of register values, scaler_unit and a load profile read by time
range, RLRQ/RLRE.

Over the TCP wrapper (IEC 62056-47) or HDLC (IEC 62056-46, ``sim_hdlc``), on a TCP socket or
a serial line. It is the real protocol on a real socket — tests and ``kuat demo`` talk to it
with the same client the agent uses on a field meter. It serves the objects of a profile file,
so it answers exactly what that profile asks (and "object undefined" for anything else, or for
the objects a test removes with ``omit``). ``set(import_kwh=…, p_kw=…)`` takes reading values in the
reading's units; the load profile is captured from the import counter at each period boundary,
the way a meter closes its intervals, or given entry by entry with ``add_entry``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import serial
from dlms_cosem import dlms_data as dd
from dlms_cosem import enumerations
from dlms_cosem import time as dlms_time
from dlms_cosem.cosem.selective_access import RangeDescriptor
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.protocol.wrappers import WrapperHeader

from kuat.collectors.dlms.client import DEFAULT_TZ
from kuat.collectors.dlms.profile import (
    DLMS_UNITS,
    ObisProfile,
    ObjectSpec,
    load_profile,
    unit_factor,
)
from kuat.collectors.dlms.sim_hdlc import HdlcLink
from kuat.collectors.dlms.sim_hls import HlsMeter, HlsSession
from kuat.collectors.modbus.profile import FIELD_UNITS, TRIPLE_FIELDS

__all__ = ["DlmsMeterSimulator"]

_UNIT_CODES = {v: k for k, v in DLMS_UNITS.items()}
# How the simulated meter stores each unit: (scaler, signed) — a realistic resolution.
_STORE = {
    "W": (0, True),
    "var": (0, True),
    "VA": (0, False),
    "Wh": (0, False),
    "V": (-2, False),
    "A": (-3, False),
    "Hz": (-2, False),
    "": (-3, True),
}
_CLOCK = (0, 0, 1, 0, 0, 255)
_BLOCK = 480  # bytes of data per GET block: small enough that a day's profile takes several


PUBLIC_CLIENT = 16
INVOCATION_COUNTER = (0, 0, 43, 1, 0, 255)  # the client invocation counter the meter last took


@dataclass
class _Conn:
    """One client's association state on a connection (or on the serial line)."""

    associated: bool = False
    pending: bytes = b""  # the rest of a block transfer
    hls: HlsSession | None = None  # a ciphered (HLS-GMAC) association


def _stream_writer(writer: asyncio.StreamWriter) -> Callable[[bytes], Awaitable[None]]:
    async def write(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    return write


class _SerialEnd:
    """The meter's end of a serial line, read from the event loop (pyserial opens and sets
    the line up; the loop watches its descriptor)."""

    def __init__(self, port: str, baudrate: int) -> None:
        self.serial = serial.Serial(port, baudrate=baudrate, timeout=0)
        self.reader = asyncio.StreamReader()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.serial.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data = self.serial.read(4096)
        except (serial.SerialException, OSError):
            data = b""
        if data:
            self.reader.feed_data(data)

    async def read(self, n: int) -> bytes:
        return await self.reader.readexactly(n)

    async def write(self, data: bytes) -> None:
        self.serial.write(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.serial.fileno())
        self.serial.close()


class _Null:
    """COSEM null-data (tag 0, no value): dlms-cosem's NullData cannot encode itself."""

    def to_bytes(self) -> bytes:
        return b"\x00"


_NULL = _Null()


@dataclass
class _Entry:
    end: datetime  # UTC
    value: float  # Wh over the interval (delta) or the counter at its end (counter)


class DlmsMeterSimulator:
    def __init__(
        self,
        profile: str = "spodes",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        server_address: int = 1,
        password: str | None = None,
        capture_period_s: int = 1800,
        clock_tz: timezone = DEFAULT_TZ,
        omit: Iterable[str] = (),
        transport: Literal["tcp", "hdlc"] = "tcp",
        physical_address: int | None = None,
        serial_port: str | None = None,
        baudrate: int = 9600,
        hls_keys: tuple[bytes, bytes] | None = None,
        system_title: bytes = b"SIM00001",
    ) -> None:
        """``port=0`` picks a free port (read ``.port`` after ``start()``). With ``password``
        an association must carry it (low-level security); without, anyone may read.
        ``omit`` names reading fields whose objects this meter lacks (answered "object
        undefined"). ``transport="hdlc"`` frames in HDLC on the TCP socket (a meter behind a
        serial-to-TCP gateway); ``serial_port`` serves HDLC on that serial line instead (one
        end of a pseudo-terminal pair). With ``physical_address`` only frames carrying it are
        this meter's, as on a multi-drop line. ``hls_keys`` (encryption key, authentication
        key) makes it demand HLS-GMAC with ciphering of every client but the public one (16),
        which may read only the invocation counter (``sim_hls``)."""
        self.profile: ObisProfile = load_profile(profile)
        self.host = host
        self.port = port
        self.server_address = server_address
        self.password = password
        self.hls = HlsMeter(*hls_keys, system_title) if hls_keys else None
        self.transport = "hdlc" if serial_port else transport
        self.physical_address = physical_address
        self.serial_port = serial_port
        self.baudrate = baudrate
        self._serial: _SerialEnd | None = None
        self._serial_task: asyncio.Task[None] | None = None
        self.capture_period_s = capture_period_s
        self.clock_tz = clock_tz
        omitted = set(omit)
        self._specs = [s for s in self.profile.objects if s.field not in omitted]
        self._values: dict[tuple[str, int | None], float | None] = {}
        self.entries: list[_Entry] = []
        self._counter_wh: float | None = None
        self._counter_at: datetime | None = None
        #: seconds each request is held before the answer; math.inf = never answer
        self.delay_s: float = 0.0
        #: every request received: ("aarq", client address) / ("get", obis text, attribute)
        self.requests: list[tuple[Any, ...]] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- values ---------------------------------------------------------------------------

    def set(self, *, at: datetime | None = None, **values: Any) -> None:
        """Reading values in the reading's units (per-phase fields take 3-tuples). A new
        ``import_kwh`` closes every load-profile interval whose end it passed."""
        for name, value in values.items():
            if name not in FIELD_UNITS:
                raise ValueError(f"{name!r} is not a MeterReading measurement field")
            if name in TRIPLE_FIELDS:
                for phase, v in enumerate(tuple(value), start=1):
                    self._values[(name, phase)] = v
            else:
                self._values[(name, None)] = value
        if values.get("import_kwh") is not None:
            self._advance(float(values["import_kwh"]) * 1000, at or datetime.now(UTC))

    def add_entry(self, end: datetime, value: float) -> None:
        """One load-profile entry by hand: kWh of the interval ending at ``end`` (a delta
        profile) or the import counter in kWh at ``end`` (a counter profile)."""
        self.entries.append(_Entry(end.astimezone(UTC), value * 1000))
        self.entries.sort(key=lambda e: e.end)

    def _advance(self, wh: float, at: datetime) -> None:
        at = at.astimezone(UTC)
        if self._counter_at is not None and self._counter_wh is not None and at > self._counter_at:
            step = self.capture_period_s
            t0, w0 = self._counter_at, self._counter_wh
            boundary = datetime.fromtimestamp((int(t0.timestamp()) // step + 1) * step, UTC)
            while boundary <= at:
                frac = (boundary - t0).total_seconds() / (at - t0).total_seconds()
                counter = w0 + (wh - w0) * frac
                self._capture(boundary, counter)
                boundary += timedelta(seconds=step)
        self._counter_wh, self._counter_at = wh, at

    def _capture(self, end: datetime, counter_wh: float) -> None:
        assert self.profile.load_profile is not None
        if self.profile.load_profile.kind == "counter":
            self.entries.append(_Entry(end, counter_wh))
            return
        prev = getattr(self, "_last_capture_wh", None)
        self._last_capture_wh = counter_wh
        if prev is not None:
            self.entries.append(_Entry(end, counter_wh - prev))

    # --- object model ---------------------------------------------------------------------

    def _spec(self, obis: tuple[int, ...]) -> ObjectSpec | None:
        return next((s for s in self._specs if s.obis == obis), None)

    def _unit(self, spec: ObjectSpec) -> str:
        return spec.unit if spec.unit is not None else FIELD_UNITS[spec.field]

    def _register_value(self, spec: ObjectSpec, attribute: int) -> Any:
        unit = self._unit(spec)
        scaler, signed = _STORE.get(unit, (0, True))
        if attribute == 3:
            return dd.DataStructure([dd.IntegerData(scaler), dd.EnumData(_UNIT_CODES[unit])])
        value = self._values.get((spec.field, spec.phase))
        if value is None or not math.isfinite(value):
            return _NULL
        raw = round(value / unit_factor(unit, spec.field) / 10.0**scaler)
        return dd.DoubleLongData(raw) if signed else dd.DoubleLongUnsignedData(max(raw, 0))

    def _answer(self, interface: int, obis: tuple[int, ...], attribute: int, access: Any) -> Any:
        """DLMS data for one attribute, or a DataAccessResult."""
        err = enumerations.DataAccessResult
        lp = self.profile.load_profile
        if lp is not None and obis == lp.obis:
            if interface != 7:
                return err.OBJECT_CLASS_INCONSISTENT
            return self._profile_attribute(attribute, access)
        if lp is not None and obis == lp.column and interface == 3 and attribute == 3:
            return dd.DataStructure([dd.IntegerData(0), dd.EnumData(_UNIT_CODES["Wh"])])
        spec = self._spec(obis)
        if spec is None:
            return err.OBJECT_UNDEFINED
        if interface != spec.interface:
            return err.OBJECT_CLASS_INCONSISTENT
        if attribute not in (2, 3) or (attribute == 3 and interface == 1):
            return err.OBJECT_UNDEFINED
        return self._register_value(spec, attribute)

    def _profile_attribute(self, attribute: int, access: Any) -> Any:
        lp = self.profile.load_profile
        assert lp is not None
        if attribute == 3:  # capture objects: the clock, then the energy register
            return dd.DataArray(
                [
                    dd.DataStructure(
                        [
                            dd.UnsignedLongData(8),
                            dd.OctetStringData(bytes(_CLOCK)),
                            dd.IntegerData(2),
                            dd.UnsignedLongData(0),
                        ]
                    ),
                    dd.DataStructure(
                        [
                            dd.UnsignedLongData(3),
                            dd.OctetStringData(bytes(lp.column)),
                            dd.IntegerData(2),
                            dd.UnsignedLongData(0),
                        ]
                    ),
                ]
            )
        if attribute == 4:
            return dd.DoubleLongUnsignedData(self.capture_period_s)
        if attribute == 7:
            return dd.DoubleLongUnsignedData(len(self.entries))
        if attribute != 2:
            return enumerations.DataAccessResult.OBJECT_UNDEFINED
        rows = self.entries
        if isinstance(access, RangeDescriptor):
            lo, hi = access.from_value, access.to_value
            if lo.tzinfo is None:
                lo, hi = lo.replace(tzinfo=self.clock_tz), hi.replace(tzinfo=self.clock_tz)
            rows = [e for e in rows if lo <= e.end <= hi]
        return dd.DataArray(
            [
                dd.DataStructure(
                    [
                        dd.OctetStringData(
                            dlms_time.datetime_to_bytes(e.end.astimezone(self.clock_tz))
                        ),
                        dd.DoubleLongUnsignedData(max(0, round(e.value))),
                    ]
                )
                for e in rows
            ]
        )

    # --- protocol ---------------------------------------------------------------------------

    def _aare(self, aarq: acse.ApplicationAssociationRequest, client: int) -> tuple[bytes, bool]:
        if self.hls is not None:  # the public client of an HLS meter: no authentication
            ok = aarq.authentication in (None, enumerations.AuthenticationMechanism.NONE)
        else:
            ok = self.password is None or (
                aarq.authentication == enumerations.AuthenticationMechanism.LLS
                and aarq.authentication_value == self.password.encode()
            )
        proposed = aarq.user_information.content.proposed_conformance
        aare = acse.ApplicationAssociationResponse(
            result=(
                enumerations.AssociationResult.ACCEPTED
                if ok
                else enumerations.AssociationResult.REJECTED_PERMANENT
            ),
            result_source_diagnostics=(
                enumerations.AcseServiceUserDiagnostics.NULL
                if ok
                else enumerations.AcseServiceUserDiagnostics.AUTHENTICATION_FAILED
            ),
            authentication=aarq.authentication if ok else None,
            user_information=acse.UserInformation(
                content=xdlms.InitiateResponse(
                    negotiated_conformance=proposed, server_max_receive_pdu_size=1024
                )
            ),
        )
        return aare.to_bytes(), ok

    def _respond(self, conn: _Conn, apdu: bytes, client: int) -> bytes:
        """The meter's answer to one APDU from ``client`` (the transport is the caller's)."""
        tag = apdu[0]
        if tag == 0x60:
            self.requests.append(("aarq", client))
            conn.hls = None
            aarq = acse.ApplicationAssociationRequest.from_bytes(apdu)
            if self.hls is not None and client != PUBLIC_CLIENT:
                out, conn.hls = self.hls.associate(aarq)
                conn.associated = False  # until the client answers the challenge
                return out
            out, conn.associated = self._aare(aarq, client)
            return out
        if tag == 0x62:
            conn.associated, conn.hls = False, None
            return acse.ReleaseResponse(reason=enumerations.ReleaseResponseReason.NORMAL).to_bytes()
        if conn.hls is not None and self.hls is not None:
            if tag != xdlms.GeneralGlobalCipher.TAG:
                return bytes([0xD8, 1, 2])  # a plain request in a ciphered association
            plain = self.hls.unwrap(apdu, conn.hls)
            if plain is None:
                return bytes([0xD8, 1, 2])
            if not conn.hls.proven:
                try:
                    action = xdlms.ActionRequestFactory.from_bytes(plain)
                except Exception:  # anything but reply_to_HLS before the proof: refused
                    return bytes([0xD8, 1, 2])
                answer = self.hls.reply_to_hls(action, conn.hls)
                conn.associated = conn.hls.proven
                return self.hls.wrap(answer)
            return self.hls.wrap(self._plain(conn, plain))
        return self._plain(conn, apdu)

    def _plain(self, conn: _Conn, apdu: bytes) -> bytes:
        if apdu[0] == 0xC0 and conn.associated:
            try:
                out, conn.pending = self._get(apdu, conn.pending, public=conn.hls is None)
            except Exception:  # a request the codec cannot parse: refuse, stay up
                out, conn.pending = bytes([0xD8, 1, 2]), b""
            return out
        return bytes([0xD8, 1, 2])  # anything else: an exception response, as a meter sends

    async def _hold(self) -> bool:
        """Wait ``delay_s`` before an answer; False: this meter is silent, drop the answer
        (it hears the request and says nothing, as a meter that hung does)."""
        if self.delay_s == math.inf:
            return False
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return True

    def _track(self) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        return task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = self._track()
        try:
            if self.transport == "hdlc":
                await self._serve_hdlc(reader.readexactly, _stream_writer(writer))
            else:
                await self._serve_wrapper(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def _serve_wrapper(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = _Conn()
        while True:
            head = await reader.readexactly(8)
            header = WrapperHeader.from_bytes(head)
            apdu = await reader.readexactly(header.length)
            if not await self._hold():
                continue
            if header.destination_wport != self.server_address:
                continue  # not for this logical device: a meter stays silent
            out = self._respond(conn, apdu, header.source_wport)
            reply = WrapperHeader(
                source_wport=header.destination_wport,
                destination_wport=header.source_wport,
                length=len(out),
            ).to_bytes()
            writer.write(reply + out)
            await writer.drain()

    async def _serve_hdlc(
        self, read: Callable[[int], Awaitable[bytes]], write: Callable[[bytes], Awaitable[None]]
    ) -> None:
        conn = _Conn()

        async def held_write(data: bytes) -> None:
            if await self._hold():
                await write(data)

        def accepts(logical: int, physical: int | None) -> bool:
            if logical != self.server_address:
                return False
            return self.physical_address is None or physical == self.physical_address

        def disconnected() -> None:
            conn.associated, conn.pending, conn.hls = False, b"", None

        link = HdlcLink(
            read,
            held_write,
            lambda apdu, client: self._respond(conn, apdu, client),
            accepts,
            disconnected,
        )
        await link.serve()

    def _get(self, apdu: bytes, pending: bytes, *, public: bool = False) -> tuple[bytes, bytes]:
        request = xdlms.GetRequestFactory.from_bytes(apdu)
        invoke = request.invoke_id_and_priority
        if isinstance(request, xdlms.GetRequestNext):
            return self._block(pending, request.block_number + 1, invoke)
        assert isinstance(request, xdlms.GetRequestNormal)
        attr = request.cosem_attribute
        obis = (
            attr.instance.a,
            attr.instance.b,
            attr.instance.c,
            attr.instance.d,
            attr.instance.e,
            attr.instance.f,
        )
        self.requests.append(("get", ".".join(map(str, obis)), attr.attribute))
        result: Any
        if self.hls is not None and obis == INVOCATION_COUNTER and attr.attribute == 2:
            # what the public client may read of an HLS meter: the counter to continue from
            result = dd.DoubleLongUnsignedData(max(self.hls.client_counter, 0))
        elif self.hls is not None and public:
            result = enumerations.DataAccessResult.READ_WRITE_DENIED
        else:
            result = self._answer(
                int(attr.interface), obis, attr.attribute, request.access_selection
            )
        if isinstance(result, enumerations.DataAccessResult):
            return xdlms.GetResponseNormalWithError(result, invoke).to_bytes(), b""
        data = result.to_bytes()
        if len(data) > _BLOCK:
            return self._block(data, 1, invoke)
        # dlms-cosem's GetResponseNormal.to_bytes appends the invoke byte wrongly; encode here
        return bytes([0xC4, 0x01, invoke.to_bytes()[0], 0x00]) + data, b""

    def _block(self, data: bytes, number: int, invoke: Any) -> tuple[bytes, bytes]:
        chunk, rest = data[:_BLOCK], data[_BLOCK:]
        if rest:
            return xdlms.GetResponseWithBlock(chunk, number, invoke).to_bytes(), rest
        return xdlms.GetResponseLastBlock(chunk, number, invoke).to_bytes(), b""

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None or self._serial is not None:
            return
        if self.serial_port is not None:
            self._serial = _SerialEnd(self.serial_port, self.baudrate)
            self._serial_task = asyncio.create_task(self._serve_serial(self._serial))
            return
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve_serial(self, end: _SerialEnd) -> None:
        """The meter on its serial line: one HDLC link for as long as it runs. A client that
        gives up mid-exchange leaves the link state behind, as on a real line: its next SNRM
        resets it."""
        while True:
            try:
                await self._serve_hdlc(end.read, end.write)
            except asyncio.CancelledError:
                return
            except (ConnectionError, asyncio.IncompleteReadError):
                continue  # a broken exchange: the meter waits for the next SNRM

    async def stop(self) -> None:
        if self._serial is not None:
            if self._serial_task is not None:
                self._serial_task.cancel()
                with contextlib.suppress(BaseException):
                    await self._serial_task
            self._serial.close()
            self._serial = self._serial_task = None
        if self._server is None:
            return
        self._server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> DlmsMeterSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
