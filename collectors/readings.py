"""Typed readings: what every collector yields and everything downstream consumes.

Units are in the field names. A value the device does not report is ``None``, never 0,
because 0 W and "unknown" mean very different things to the quota engine.
Field names and order follow the probe JSON fixed in DESIGN.md, so ``to_jsonable`` of a
reading *is* the probe output.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

AsicState = Literal["mining", "sleeping", "error"]
FaultSeverity = Literal["info", "warning", "critical"]


class DeviceKind(enum.StrEnum):
    ASIC = "asic"
    PDU = "pdu"
    METER = "meter"


# --- ASIC -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolInfo:
    url: str
    user: str | None = None
    status: str | None = None
    active: bool = False


@dataclass(frozen=True, slots=True)
class AsicTemps:
    board: tuple[float, ...] = ()
    chip: tuple[float, ...] = ()
    inlet: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class FirmwareFault:
    """An error code the firmware itself reports, normalised across firmwares.

    ``code`` is the firmware's own code as text (MicroBT "110", Bitmain "E0012"…), ``text`` what
    it means in English as the maker documents it (the operator's language is the alert's job),
    ``severity`` how soon a person should look: "critical" (the miner stops or is at risk:
    power, temperature, hash board), "warning" (it mines, degraded: a fan, a pool, low
    hashrate), "info" (anything else).
    """

    code: str
    text: str
    severity: FaultSeverity = "warning"


def normal_mac(mac: str | None) -> str | None:
    """A MAC as the register keys it: lower case, ``:``-separated ("aa:bb:cc:dd:ee:ff").

    One spelling for every firmware and every consumer (the register, the telemetry ``device``
    tag, the item-7 offenders), so the same miner joins across all three.
    """
    if not mac:
        return None
    s = mac.strip().lower().replace("-", ":")
    return s or None


@dataclass(frozen=True, slots=True)
class AsicReading:
    ip: str
    port: int
    taken_at: datetime
    vendor: str | None = None
    firmware_family: str | None = None
    model: str | None = None
    serial: str | None = None
    mac: str | None = None
    firmware: str | None = None
    hashrate_ths: float | None = None
    hashrate_nominal_ths: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    temps_c: AsicTemps = field(default_factory=AsicTemps)
    fans_rpm: tuple[int, ...] = ()
    # hydro and immersion models: the coolant entering and leaving the miner (mean over the
    # hash boards that report it), °C
    coolant_in_c: float | None = None
    coolant_out_c: float | None = None
    pools: tuple[PoolInfo, ...] = ()
    uptime_s: int | None = None
    state: AsicState = "mining"
    # kuat's notes on this poll (a command refused, a field unreadable), one line each
    errors: tuple[str, ...] = ()
    # the firmware's own error codes (FirmwareFault), normalised
    faults: tuple[FirmwareFault, ...] = ()

    @property
    def device_id(self) -> str:
        """Identity is the serial, else the MAC: an IP change is the same miner moving.

        Parsers give ``mac`` in the register's spelling (``normal_mac``), so this is the
        register's id too."""
        # interned: an address id is asked for by the curtailer, the pool check, the inventory
        # and the telemetry each cycle, and each would keep a copy of its own
        return self.serial or self.mac or sys.intern(f"{self.ip}:{self.port}")

    @property
    def active_pool(self) -> PoolInfo | None:
        return next((p for p in self.pools if p.active), None)


# --- PDU --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PduInlet:
    id: str
    phase: str | None = None
    volts: float | None = None
    amps: float | None = None
    watts: float | None = None
    kwh: float | None = None
    pf: float | None = None


@dataclass(frozen=True, slots=True)
class PduPhase:
    id: str
    volts: float | None = None
    amps: float | None = None
    watts: float | None = None


@dataclass(frozen=True, slots=True)
class PduBreaker:
    id: str
    amps: float | None = None


@dataclass(frozen=True, slots=True)
class PduOutlet:
    index: int
    name: str | None = None
    amps: float | None = None
    watts: float | None = None
    kwh: float | None = None
    state: Literal["on", "off"] | None = None


@dataclass(frozen=True, slots=True)
class PduReading:
    host: str
    vendor: str | None
    model: str | None
    serial: str | None
    taken_at: datetime
    inlets: tuple[PduInlet, ...] = ()
    phases: tuple[PduPhase, ...] = ()
    breakers: tuple[PduBreaker, ...] = ()
    outlets: tuple[PduOutlet, ...] = ()
    total_watts: float | None = None

    @property
    def device_id(self) -> str:
        return self.serial or self.host


# --- Meter ------------------------------------------------------------------------------

Triple = tuple[float | None, float | None, float | None]
NO_TRIPLE: Triple = (None, None, None)


@dataclass(frozen=True, slots=True)
class MeterReading:
    host: str
    unit: int
    profile: str
    taken_at: datetime
    p_kw: float | None = None
    p_kw_phases: Triple = NO_TRIPLE
    q_kvar: float | None = None
    s_kva: float | None = None
    v_ln: Triple = NO_TRIPLE
    v_ll: Triple = NO_TRIPLE
    i_a: Triple = NO_TRIPLE
    pf: float | None = None
    f_hz: float | None = None
    import_kwh: float | None = None
    export_kwh: float | None = None
    demand_kw: float | None = None

    @property
    def device_id(self) -> str:
        return f"{self.host}/{self.unit}"


Reading = AsicReading | PduReading | MeterReading


# --- Failures ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceError:
    """A poll that produced no reading. Collectors return these; they never raise out of a cycle.

    ``cause`` is one line a person can act on ("timed out after 2.0 s waiting for the first
    byte", "reply is not JSON at byte 220"), without the device name, which ``describe`` adds.
    """

    kind: DeviceKind
    host: str
    port: int | None
    taken_at: datetime
    cause: str

    @property
    def device_id(self) -> str:
        return f"{self.host}:{self.port}" if self.port is not None else self.host

    def describe(self) -> str:
        return f"{self.kind} {self.device_id}: {self.cause}"


PollResult = AsicReading | PduReading | MeterReading | DeviceError


def to_jsonable(obj: Any) -> Any:
    """Readings (or anything built of dataclasses, tuples, datetimes) to plain JSON values.

    Times become ISO 8601 UTC with a ``Z``; tuples become lists; dataclass fields keep their order.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, datetime):
        text = obj.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, tuple | list):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    return obj
