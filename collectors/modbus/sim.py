"""A Modbus TCP meter simulator driven by a profile, on pymodbus 3.16's server.

It serves exactly the registers the profile reads — everything else answers exception 2
(illegal data address), as real meters do — so the poller's read planner meets the same holes
it meets in the field. ``set(p_kw=…, v_ln=(…, …, …))`` takes reading values in the reading's
units and encodes them the way the meter would (scale, unit, type, word order, SunSpec scale
factors), so a demo can make the meter follow a simulated farm.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Iterable
from typing import Any, cast

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from kuat.collectors.modbus.profile import FIELD_UNITS, TRIPLE_FIELDS, RegisterSpec, load_profile
from kuat.collectors.modbus.values import choose_sunssf, encode_field

__all__ = ["DEFAULT_VALUES", "MeterBus", "MeterSimulator"]

#: What a freshly started simulated meter shows: a 3-phase 400 V supply carrying 100 kW.
DEFAULT_VALUES: dict[str, Any] = {
    "p_kw": 100.0,
    "p_kw_phases": (33.3, 33.3, 33.4),
    "q_kvar": 10.0,
    "s_kva": 100.5,
    "v_ln": (230.0, 230.0, 230.0),
    "v_ll": (400.0, 400.0, 400.0),
    "i_a": (145.0, 145.0, 145.0),
    "pf": 0.99,
    "f_hz": 50.0,
    "import_kwh": 1000.0,
    "export_kwh": 0.0,
    "demand_kw": 100.0,
}


class MeterSimulator:
    def __init__(
        self,
        profile: str = "schneider-pm5560",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unit: int = 1,
        omit: Iterable[str] = (),
        gaps_readable: bool = False,
    ) -> None:
        """``port=0`` picks a free TCP port (read ``.port`` after ``start()``).

        ``gaps_readable``: a read over unmapped registers between mapped ones answers zeros
        there, as many meters do; by default it answers exception 2, as strict ones do.

        ``omit`` names fields (``"demand_kw"``, ``"v_ll"``) whose registers this meter lacks,
        like a cheaper model of the family: reads touching them answer exception 2.
        """
        self.profile = load_profile(profile)
        self._host = host
        self._port = port
        self.unit = unit
        omitted = set(omit)
        unknown = omitted - set(FIELD_UNITS)
        if unknown:
            raise ValueError(f"omit: not reading fields: {', '.join(sorted(unknown))}")
        self._specs = [r for r in self.profile.registers if r.field not in omitted]
        self._values: dict[tuple[str, int | None], float | None] = {}
        self._image: dict[int, int] = {}
        self._raw: dict[int, int] = {}
        self._fc_at: dict[int, int] = {}
        self._server: ModbusTcpServer | None = None
        self.gaps_readable = gaps_readable
        #: reads answered with exception 2 (illegal data address)
        self.refused = 0
        #: Modbus exception code every request answers with, e.g. 4 (device failure); None = off
        self.fault: int | None = None
        #: seconds each request is held before the answer (to provoke client timeouts)
        self.delay_s: float = 0.0
        #: True: this unit stops answering at all, like a dead meter on an RS-485 bus (on a
        #: server started with ignore_missing_devices, as MeterBus does)
        self.silent: bool = False
        #: every request received, as (function code, address, count), holes included
        self.requests: list[tuple[int, int, int]] = []
        self._layout()
        self.set(**DEFAULT_VALUES)

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    # --- values ---------------------------------------------------------------------------

    def set(self, **values: Any) -> None:
        """Set reading values (field names of ``MeterReading``, in its units).

        Per-phase fields take a 3-tuple; ``None`` makes the meter report "not available".
        Fields the profile does not map are accepted and ignored, so a demo can feed every
        simulated meter the same numbers whatever its model.
        """
        before = dict(self._values)
        try:
            self._set(values)
            self._render()
        except ValueError:
            self._values = before  # all or nothing: a refused value leaves the meter as it was
            raise

    def _set(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name not in FIELD_UNITS:
                raise ValueError(f"{name!r} is not a MeterReading measurement field")
            if name in TRIPLE_FIELDS:
                triple = (None, None, None) if value is None else tuple(value)
                if len(triple) != 3:
                    raise ValueError(f"{name} takes three values (one per phase)")
                for phase, v in enumerate(triple, start=1):
                    self._values[(name, phase)] = _number(name, v)
            else:
                self._values[(name, None)] = _number(name, value)

    def _render(self) -> None:
        specs_by_sf: dict[int, list[RegisterSpec]] = {}
        for spec in self._specs:
            if spec.scale_addr is not None:
                specs_by_sf.setdefault(spec.scale_addr, []).append(spec)
        # one SunSpec scale factor serves several points: pick one that fits them all
        sf_of: dict[int, int] = {}
        for addr, specs in specs_by_sf.items():
            values = [self._values.get((s.field, s.phase)) or 0.0 for s in specs]
            sf_of[addr] = choose_sunssf(values, specs)
            self._image[addr] = sf_of[addr] & 0xFFFF
        for spec in self._specs:
            value = self._values.get((spec.field, spec.phase))
            sf = sf_of.get(spec.scale_addr, 0) if spec.scale_addr is not None else 0
            try:
                words = encode_field(spec, value, sf)
            except (OverflowError, ValueError, struct.error) as exc:
                raise ValueError(f"{spec.label}={value} does not fit {spec.type}: {exc}") from None
            for i, w in enumerate(words):
                self._image[spec.addr + i] = w
        for e in self.profile.expects:
            for i, allowed in enumerate(e.words):
                self._image[e.addr + i] = max(allowed)
        self._image.update(self._raw)

    def set_raw(self, addr: int, words: list[int] | None) -> None:
        """Pin raw register words at ``addr`` (None unpins), e.g. a vendor's odd encoding.

        Pinned words win over what ``set`` encodes, until unpinned.
        """
        if words is None:
            while addr in self._raw:  # the pinned run starting at addr
                del self._raw[addr]
                addr += 1
            self._render()
            return
        for i, w in enumerate(words):
            if addr + i not in self._fc_at:
                raise ValueError(f"register {addr + i} is not served by this profile")
            if not 0 <= w <= 0xFFFF:
                raise ValueError(f"register word {w} outside 0..65535")
            self._raw[addr + i] = w
        self._image.update(self._raw)

    # --- layout ---------------------------------------------------------------------------

    def _layout(self) -> None:
        """Which addresses exist, and under which function code."""
        spans = [(s.fc, s.addr, s.count) for s in self._specs]
        spans += [(s.fc, s.scale_addr, 1) for s in self._specs if s.scale_addr is not None]
        spans += [(e.fc, e.addr, len(e.words)) for e in self.profile.expects]
        for fc, addr, count in spans:
            for a in range(addr, addr + count):
                if self._fc_at.setdefault(a, fc) != fc:
                    # pymodbus' simulator shares one register space between FC3 and FC4
                    raise ValueError(
                        f"address {a} is read with both FC3 and FC4; "
                        "the simulator cannot serve that"
                    )
                self._image.setdefault(a, 0)

    def _simdata(self) -> list[SimData]:
        if self.gaps_readable:
            lo, hi = min(self._fc_at), max(self._fc_at)
            return [SimData(address=lo, values=[0] * (hi - lo + 1), datatype=DataType.REGISTERS)]
        runs: list[list[int]] = []
        for a in sorted(self._fc_at):
            if runs and runs[-1][-1] == a - 1:
                runs[-1].append(a)
            else:
                runs.append([a])
        return [
            SimData(address=r[0], values=[0] * len(r), datatype=DataType.REGISTERS) for r in runs
        ]

    async def _on_request(
        self,
        func_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if self.silent:
            raise NoSuchIdException(f"unit {self.unit} is silent")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fault is not None:
            return ExcCodes(self.fault)
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # a meter's measurements are read-only
        for a in range(address, address + count):
            fc = self._fc_at.get(a)
            if fc is None and self.gaps_readable:
                registers[a - start_address] = 0
                continue
            if fc != func_code:
                return ExcCodes.ILLEGAL_ADDRESS
            registers[a - start_address] = self._image[a]
        return None

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests.append((pdu.function_code, pdu.address, pdu.count))
        elif pdu.function_code & 0x80 and getattr(pdu, "exception_code", None) == 2:
            self.refused += 1  # also the ones pymodbus answers itself, outside our data
        return pdu

    # --- lifecycle --------------------------------------------------------------------------

    def device(self) -> SimDevice:
        """This meter as a pymodbus device (for a ``MeterBus`` of several units)."""
        return SimDevice(id=self.unit, simdata=self._simdata(), action=self._on_request)

    async def start(self) -> None:
        if self._server is not None:
            return
        device = self.device()
        server = ModbusTcpServer(device, address=(self._host, self._port), trace_pdu=self._trace)
        await server.serve_forever(background=True)
        self._server = server
        self._port = _listening_port(server.transport)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def __aenter__(self) -> MeterSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _listening_port(transport: asyncio.BaseTransport) -> int:
    """The port a TCP server listens on (port 0 asks the OS for a free one)."""
    # pymodbus annotates its transport as BaseTransport; a TCP listener's is the asyncio.Server
    listener = cast(asyncio.Server, transport)
    port: int = listener.sockets[0].getsockname()[1]
    return port


def _number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number or None, got {value!r}")
    return float(value)


class MeterBus:
    """Several simulated meters (their unit ids) on one line, RTU-framed: an RS-485 bus on a
    serial port (``serial_port``, e.g. one end of a pseudo-terminal pair) or a transparent
    serial-to-TCP gateway (``host``/``port``). A meter removed with ``silence(unit)`` stops
    answering, like a dead unit on the bus."""

    def __init__(
        self,
        meters: Iterable[MeterSimulator],
        *,
        serial_port: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
    ) -> None:
        self.meters = list(meters)
        self.serial_port = serial_port
        self.host = host
        self.port = port
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self._server: ModbusSerialServer | ModbusTcpServer | None = None

    def silence(self, unit: int, silent: bool = True) -> None:
        """The unit stops (or resumes) answering."""
        for m in self.meters:
            if m.unit == unit:
                m.silent = silent

    async def start(self) -> None:
        if self._server is not None:
            return
        devices = [m.device() for m in self.meters]
        if self.serial_port is not None:
            server: ModbusSerialServer | ModbusTcpServer = ModbusSerialServer(
                devices,
                framer=FramerType.RTU,
                port=self.serial_port,
                baudrate=self.baudrate,
                parity=self.parity,
                stopbits=self.stopbits,
                ignore_missing_devices=True,
            )
        else:
            server = ModbusTcpServer(
                devices,
                framer=FramerType.RTU,
                address=(self.host, self.port),
                ignore_missing_devices=True,
            )
        await server.serve_forever(background=True)
        self._server = server
        if self.serial_port is None:
            self.port = _listening_port(server.transport)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def __aenter__(self) -> MeterBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
