"""Bitmain stock firmware (bmminer / cgminer 4.x) and plain cgminer.

The stock API gives no serial or MAC (those live in the web UI); old-shape stats carries chain
temperatures as "a-b-c-d" strings, one number per sensor, and no watts.

S21-era firmware (S21, S21+, S21 XP, T21, the Hydro models) also answers ``stats`` in a new shape
when the request carries ``"new_api": true``: one STATS row with a ``chain`` list (per board
``rate_real``, ``temp_pcb``/``temp_chip``/``temp_pic`` arrays), ``rate_5s``/``rate_avg``/
``rate_ideal`` with a ``rate_unit`` of "GH/s", ``fan`` as a list, ``elapsed`` and the miner's
watts under a name that varies by model (``watt``, ``power``, ``Power``, ``chain_power`` as
"5000 W"); numbers may be strings, and the header (model, build) moves to a top-level ``INFO``.
The poll asks for it on every stock Antminer (``SPEC.request``): firmware without it ignores the
key and answers the old shape, which is read as before. Old-shape S21-era builds name the chain
sensors ``temp_in_pcb_N``/``temp_out_pcb_N`` and ``temp_in_chip_N``/``temp_out_chip_N``.

Hydro models report their coolant in two board-sensor layouts, read only for those models (on
any other model the same positions are ordinary board/chip sensors): the S21+ Hyd. has
``temp_pcb`` [in, board, out, board] beside a 4-value ``temp_pic``; the S21 Hyd./S21 XP Hyd.
family writes ``temp_chip`` [in, out, 0, 0]. Both layouts are as asic-rs documents them (its
telemetry tests, Apache-2.0; tests/cases/asic/bitmain/*hyd*). A hydro miner has no fans, so
"every fan at 0 rpm" is no sleep evidence there.

Sleep (work mode 1, set through the web UI) has no flag on the API either, so ``state`` is
"sleeping" when stats echoes a work mode of 1 (``miner-mode``/``bitmain-work-mode``, on the
builds that do), or when the miner hashes 0 with every reported fan at 0 rpm: a sleeping box
stops its fans, while one that is starting, faulted or overheating keeps them turning, and that
must stay "error". Without that evidence the engine's own rule applies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

import httpx

from kuat.collectors.capabilities import ActionResult, PoolTarget
from kuat.collectors.cgminer.firmware import Firmware
from kuat.collectors.cgminer.firmware.bitmain import web
from kuat.collectors.cgminer.firmware.common import (
    Body,
    Clues,
    Credential,
    FirmwareSpec,
    Source,
    WebApi,
    first_num,
    integer,
    item,
    merged,
    num,
    pools,
    positive,
    shared_float,
    shared_int,
    text,
)
from kuat.collectors.cgminer.firmware.controls import Act, Controls
from kuat.collectors.cgminer.models import normalise
from kuat.collectors.readings import AsicTemps, FaultSeverity, FirmwareFault

log = logging.getLogger(__name__)
_HASH_KEYS = (("GHS 5s", 1e-3), ("GHS av", 1e-3), ("MHS 5s", 1e-6), ("MHS av", 1e-6))
_RATE_UNIT = {"H": 1e-12, "KH": 1e-9, "MH": 1e-6, "GH": 1e-3, "TH": 1.0}
# new_api: the current rate, then the average
_MODERN_RATE_KEYS = ("rate_5s", "rate_avg")
# new_api watts: the name differs by model and build
_WATT_KEYS = ("watt", "power", "Power", "chain_power", "total_power")


def _unit_scale(d: dict[str, Any]) -> float | None:
    """TH/s per unit of ``rate_unit`` ("GH", "GH/s", "TH/s"…); GH when the key is missing."""
    raw = d.get("rate_unit", "GH")
    if not isinstance(raw, str):
        return None
    return _RATE_UNIT.get(raw.strip().upper().removesuffix("/S"))


def _modern_rate(d: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        v = num(d.get(key))
        if v is not None:
            scale = _unit_scale(d)
            return v * scale if scale is not None and v >= 0 else None
    return None


def _hashrate(summary: Body | None, stats: Body | None) -> float | None:
    view = _stats(stats)
    # the field and the sleep rule (_state) both ask, with the same summary
    memo = view.hashrate
    if memo is not None and memo[0] is summary:
        return memo[1]
    rate = _read_hashrate(summary, view)
    view.hashrate = (summary, rate)
    return rate


def _read_hashrate(summary: Body | None, view: _StatsView) -> float | None:
    for d in (item(summary, "SUMMARY"), view.flat):
        if d:
            for key, scale in _HASH_KEYS:
                v = num(d.get(key))
                if v is not None:
                    return v * scale
    if view.modern is not None:
        return _modern_rate(view.modern, _MODERN_RATE_KEYS)
    return None


def _nominal(stats: Body | None) -> float | None:
    view = _stats(stats)
    d = view.flat
    ideal = num(d.get("total_rateideal"))
    if ideal is None and view.modern is not None:
        ideal = num(view.modern.get("rate_ideal"))
    if ideal is None or ideal <= 0:
        return None
    scale = _unit_scale(d)
    return ideal * scale if scale is not None else None


def _watts(v: Any) -> float | None:
    """3369, "3369", "5000 W": watts as the new_api writes them."""
    if isinstance(v, str):
        v = v.strip().removesuffix("W").removesuffix("w")
    f = num(v)
    return f if f is not None and f >= 0 else None


def _power(stats: Body | None) -> float | None:
    """new_api watts (old-shape stats has none: unknown, never 0)."""
    view = _stats(stats)
    for d in (view.modern, view.flat):
        if d:
            for key in _WATT_KEYS:
                v = d.get(key)
                if v is None:
                    continue  # old-shape stats has none of them: no call per key
                w = _watts(v)
                if w is not None:
                    return w
    return None


def _header(version: Body | None, stats: Body | None) -> dict[str, Any]:
    head = item(version, "VERSION") or item(stats, "STATS") or {}
    if "Type" not in head and stats is not None:
        # new_api: the header is a top-level INFO object, with "type" in lower case
        info = stats.get("INFO")
        if isinstance(info, dict):
            return {"Type": info.get("type"), "CompileTime": info.get("CompileTime"), **head}
    return head


def _model(version: Body | None, stats: Body | None) -> str | None:
    return text(_header(version, stats).get("Type"))


def _firmware(version: Body | None, stats: Body | None) -> str | None:
    h = _header(version, stats)
    # the stock web UI shows the build time as "firmware version"
    return text(h.get("CompileTime")) or text(h.get("Miner"))


def _is_hydro(model: str | None) -> bool:
    return model is not None and "hyd" in model.lower()


# Air-cooled generations whose stock firmware predates the new_api stats (module doc): their
# discovery is not asked ``stats`` again with it, one connection fewer per miner in a farm's first
# cycle (half of the site mix; 17 % of the poller's CPU in that cycle, bench/farm_scale.py). A
# model not listed, a hydro one or an unreadable one is asked (its first reading has the watts).
_BEFORE_NEW_API = ("s9", "s17", "s19", "t17", "t19")


def _may_answer_new_api(bodies: Mapping[str, Any]) -> bool:
    model = _model(bodies.get("version"), bodies.get("stats"))
    if model is None or _is_hydro(model):
        return True
    return not normalise(model).startswith(_BEFORE_NEW_API)


class _WebAuth(TypedDict):
    """The web UI's login, passed to web.py's calls (this folder) as keywords."""

    port: int
    username: str
    password: str


class _StatsView:
    """bmminer's STATS merged into one dict, read once per reply by every extractor.

    Five extractors read the same stats reply; building this once per reply (and the fans, which
    two of them need) keeps a poll at one pass over the reply instead of one per field.
    """

    __slots__ = ("coolant", "fans", "fans_read", "flat", "hashrate", "modern")

    def __init__(self, stats: Body | None) -> None:
        self.flat = merged(stats, "STATS")
        self.hashrate: tuple[Body | None, float | None] | None = None  # (summary, _hashrate's)
        # new_api's one aggregate row (its boards in a "chain" list), or None for the old shape
        chains = self.flat.get("chain")
        self.modern: dict[str, Any] | None = (
            self.flat if isinstance(chains, list) or "rate_5s" in self.flat else None
        )
        self.coolant: tuple[float | None, float | None] | None = None  # _coolant's memo
        self.fans: tuple[int, ...] | None = None  # _fans' memo, once fans_read
        self.fans_read = False

    def numbered(self, prefix: str, count: int | None) -> list[tuple[int, Any]]:
        """``prefix1``, ``prefix2``… in index order, limited to ``count`` when the firmware says.

        Looked up by name rather than found by scanning every key: a stats reply has ~70 keys
        and a handful of these, and this runs on every poll of every stock Antminer."""
        keys = _NUMBERED.get(prefix) or _numbered_keys(prefix)
        if count is not None:
            keys = keys[1 : max(0, min(count, MAX_INDEX)) + 1]
        flat = self.flat
        return [(n, flat[k]) for n, k in keys if k in flat]


# Highest ``name<N>`` index read (chains and fans number 1..16 on every Antminer seen; S9
# builds skip to 6-8).
MAX_INDEX = 16
_NUMBERED: dict[str, tuple[tuple[int, str], ...]] = {}


def _numbered_keys(prefix: str) -> tuple[tuple[int, str], ...]:
    keys = _NUMBERED[prefix] = tuple((n, f"{prefix}{n}") for n in range(MAX_INDEX + 1))
    return keys


# One-entry memo: build_reading runs all extractors of one poll synchronously, back to back.
_memo: tuple[Body | None, _StatsView] | None = None


def _stats(stats: Body | None) -> _StatsView:
    global _memo
    if _memo is not None and _memo[0] is stats:
        return _memo[1]
    view = _StatsView(stats)
    _memo = (stats, view)
    return view


# Whole degrees as shared float objects: every stock Antminer reports its chains as integers,
# and 50,000 readings held at once would otherwise carry a new float per sensor (bench --scale).
_DEGREES = tuple(float(d) for d in range(256))
# "0".."255" -> the int: a sensor of a chain string read by lookup, not parsed (int() costs
# twice a lookup; eight such sensors on every poll of every stock Antminer). Anything else
# ("065", " 65", 300) is no key and is parsed as ever.
_SENSOR_INT = {str(d): d for d in range(256)}.__getitem__


def _degrees(best: int) -> float | None:
    if best <= 0:
        return None
    return _DEGREES[best] if best < 256 else float(best)


def _sensor_max(v: Any) -> float | None:
    """'73-45-64-65' -> 73: the hottest sensor of a chain, like the firmware's own tempN."""
    if v.__class__ is str and v[:1] != "-" and v[-1:] != "-" and "-" in v:
        try:  # the usual shape, on every chain of every poll: no strip, one split
            return _degrees(max(map(int, v.split("-"))))
        except ValueError:
            pass
    if v.__class__ is int:
        return _degrees(v)
    if isinstance(v, str) and "-" in v.strip("-"):
        try:
            return _degrees(max(map(int, v.split("-"))))  # the usual all-integer case, fast
        except ValueError:
            vals = positive(v.split("-"))
            return max(vals) if vals else None
    f = num(v)
    return f if f is not None and f > 0 else None


def _chain_temps(view: _StatsView, string_key: str, flat_key: str) -> tuple[float, ...]:
    out: list[float] = []
    flat = view.flat
    found = False
    # ``string_key``1..16 read straight off the merged stats: on every poll of every stock
    # Antminer, eight such strings ("66-38-57-58") and no list of them built first
    for _, key in _NUMBERED.get(string_key) or _numbered_keys(string_key):
        v = flat.get(key, _ABSENT)
        if v is _ABSENT:
            continue
        found = True
        if v.__class__ is str and "-" in v:
            try:  # the usual shape: one split, no strip (an odd one is _sensor_max's)
                best = max(map(_SENSOR_INT, v.split("-")))
            except KeyError:  # a sensor not written as 0..255: parsed as ever
                t = _sensor_max(v)
            else:
                t = _DEGREES[best] if best > 0 else None
        else:
            t = _sensor_max(v)
        if t is not None:
            out.append(t)
    if found:
        return tuple(out)
    # S21-era old shape: an inlet- and an outlet-side sensor string per chain
    side = string_key.replace("temp_", "")
    ins = dict(view.numbered(f"temp_in_{side}_", None))
    outs = dict(view.numbered(f"temp_out_{side}_", None))
    if ins or outs:
        both = []
        for n in sorted(ins.keys() | outs.keys()):
            vals = [t for v in (ins.get(n), outs.get(n)) if (t := _sensor_max(v)) is not None]
            if vals:
                both.append(max(vals))
        return tuple(both)
    for _, v in view.numbered(flat_key, integer(flat.get("temp_num"))):
        t = _sensor_max(v)
        if t is not None:
            out.append(t)
    return tuple(out)


_ABSENT = object()


def _sensors(v: Any) -> list[float | None]:
    """A new_api sensor array (or one number) to values, position kept; 0 and junk are None."""
    vals = v if isinstance(v, list) else [v]
    out: list[float | None] = []
    for x in vals[:64]:
        f = num(x)
        out.append(shared_float(f) if f is not None and 0 < f <= 150 else None)  # temperatures
    return out


def _hottest(vals: list[float | None]) -> float | None:
    real = [v for v in vals if v is not None]
    return max(real) if real else None


def _chains(view: _StatsView) -> list[dict[str, Any]]:
    chains = view.modern.get("chain") if view.modern is not None else None
    return [c for c in chains if isinstance(c, dict)] if isinstance(chains, list) else []


def _board_split(
    chain: dict[str, Any], model: str | None
) -> tuple[float | None, float | None, float | None, float | None]:
    """(board, chip, coolant in, coolant out) of one new_api chain, by the model's layout."""
    pcb, chip = _sensors(chain.get("temp_pcb")), _sensors(chain.get("temp_chip"))
    compact = (model or "").lower().replace(" ", "").replace(".", "")
    if _is_hydro(model) and "s21+" in compact:
        pic = _sensors(chain.get("temp_pic"))
        if len(pcb) == 4 and len(pic) == 4:
            # [in, board, out, board] beside temp_pic [chip, board, board, board]
            return _hottest([pcb[1], pcb[3], *pic[1:]]), pic[0], pcb[0], pcb[2]
    raw_chip = chain.get("temp_chip")
    if (
        _is_hydro(model)
        and isinstance(raw_chip, list)
        and len(raw_chip) == 4
        and all(num(x) == 0 for x in raw_chip[2:])
    ):
        # [in, out, 0, 0]: the coolant pair, no chip reading
        return _hottest(pcb), None, chip[0], chip[1]
    return _hottest(pcb), _hottest(chip), None, None


def _temps(version: Body | None, stats: Body | None) -> Any:
    view = _stats(stats)
    if not view.flat:
        return None
    chains = _chains(view)
    if chains:
        model = _model(version, stats)
        split = [_board_split(c, model) for c in chains]
        return AsicTemps(
            board=tuple(b for b, _, _, _ in split if b is not None),
            chip=tuple(c for _, c, _, _ in split if c is not None),
        )
    board = _chain_temps(view, "temp_pcb", "temp")
    chip = _chain_temps(view, "temp_chip", "temp2_")
    return AsicTemps(board=board, chip=chip)


_NO_COOLANT: tuple[float | None, float | None] = (None, None)


def _coolant(version: Body | None, stats: Body | None) -> tuple[float | None, float | None]:
    """Mean coolant in/out over the boards that report it (hydro models' new_api)."""
    view = _stats(stats)
    if view.modern is None:
        return _NO_COOLANT  # the old shape has no coolant sensors: the common case, kept cheap
    if view.coolant is None:
        model = _model(version, stats)
        ins: list[float] = []
        outs: list[float] = []
        if _is_hydro(model):
            for c in _chains(view):
                _, _, cin, cout = _board_split(c, model)
                if cin is not None:
                    ins.append(cin)
                if cout is not None:
                    outs.append(cout)
        view.coolant = (
            round(sum(ins) / len(ins), 2) if ins else None,
            round(sum(outs) / len(outs), 2) if outs else None,
        )
    return view.coolant


def _fans(stats: Body | None) -> tuple[int, ...] | None:
    view = _stats(stats)
    if not view.fans_read:
        view.fans, view.fans_read = _read_fans(view), True
    return view.fans


def _read_fans(view: _StatsView) -> tuple[int, ...] | None:
    if not view.flat:
        return None
    if view.modern is not None and isinstance(view.modern.get("fan"), list):
        fans = view.modern["fan"][:32]
        return tuple(shared_int(int(f)) for v in fans if (f := num(v)) is not None and f >= 0)
    count = integer(view.flat.get("fan_num"))
    rows = view.numbered("fan", count)
    if count is None:
        # without fan_num, a 0 is an empty header on the board, not a stopped fan
        rows = [(n, v) for n, v in rows if (num(v) or 0) > 0]
    out = []
    for _, v in rows:
        if v.__class__ is int and 0 <= v < 2**53:
            out.append(shared_int(v))  # the usual rpm: no float and back (exact below 2**53)
        elif (f := num(v)) is not None and f >= 0:
            out.append(shared_int(int(f)))
    return tuple(out)


def _uptime(summary: Body | None, stats: Body | None) -> int | None:
    return integer(first_num(item(summary, "SUMMARY"), "Elapsed", "elapsed")) or integer(
        first_num(_stats(stats).flat, "Elapsed", "elapsed")
    )


_MODE_KEYS = ("miner-mode", "bitmain-work-mode")


def _state(summary: Body | None, stats: Body | None, version: Body | None) -> str | None:
    flat = _stats(stats).flat
    for key in _MODE_KEYS:
        if integer(flat.get(key)) == 1:
            return "sleeping"
    fans = _fans(stats)
    if _hashrate(summary, stats) == 0 and fans and not any(fans):
        # a hydro box has no fans at all: its stopped "fans" say nothing
        return None if _is_hydro(_model(version, stats)) else "sleeping"
    return None  # no sleep evidence: mining/error is decided from hashrate by the engine


# --- faults: what stock firmware itself flags --------------------------------------------------
#
# S21-era firmware (new_api; its web UI's summary.cgi has the same shape) keeps a ``status`` list
# in SUMMARY: {"type": "rate"|"network"|"fans"|"temp", "status": "s"|"w"|"e", "code", "msg"},
# "s" being fine, and new_api stats a ``psu`` {"status": "ok"…}. Older stats draws every chip of
# a chain as a letter in ``chain_acsN``: "o" answers, "x" does not (a dead or dropped chip).
_ACS_KEYS = tuple((n, f"chain_acs{n}") for n in range(1, 17))
_STATUS_SEVERITY: dict[str, FaultSeverity] = {"e": "critical", "w": "warning"}


def _faults(summary: Body | None, stats: Body | None) -> tuple[FirmwareFault, ...]:
    out: list[FirmwareFault] = []
    rows = (item(summary, "SUMMARY") or {}).get("status")
    for row in rows[:16] if isinstance(rows, list) else ():
        if not isinstance(row, dict):
            continue
        flag = str(row.get("status", "s")).strip().lower()
        if flag == "s":
            continue
        kind = text(row.get("type")) or "status"
        code = integer(row.get("code"))
        msg = text(row.get("msg")) or f"{kind} problem"
        out.append(
            FirmwareFault(
                f"{kind}:{code if code is not None else flag}",
                msg,
                _STATUS_SEVERITY.get(flag, "info"),
            )
        )
    view = _stats(stats)
    psu = view.modern.get("psu") if view.modern is not None else None
    if isinstance(psu, dict):
        state = text(psu.get("status"))
        if state is not None and state.lower() != "ok":
            out.append(FirmwareFault(f"psu:{state}", f"power supply reports {state}", "critical"))
    flat = view.flat
    for n, key in _ACS_KEYS:
        acs = flat.get(key)
        if isinstance(acs, str) and "x" in acs:
            bad = acs.count("x")
            text_ = f"hash board {n}: {bad} chip{'s' if bad != 1 else ''} not answering"
            out.append(FirmwareFault(f"chain{n}:x{bad}", text_, "warning"))
    return tuple(out)


FIELDS: dict[str, Source] = {
    "model": Source(("version", "stats"), _model),
    "firmware": Source(("version", "stats"), _firmware),
    "hashrate_ths": Source(("summary", "stats"), _hashrate),
    "hashrate_nominal_ths": Source(("stats",), _nominal),
    "power_w": Source(("stats",), _power),
    "temps_c": Source(("version", "stats"), _temps),
    "coolant_in_c": Source(("version", "stats"), lambda v, s: _coolant(v, s)[0]),
    "coolant_out_c": Source(("version", "stats"), lambda v, s: _coolant(v, s)[1]),
    "fans_rpm": Source(("stats",), _fans),
    "pools": Source(("pools",), pools),
    "uptime_s": Source(("summary", "stats"), _uptime),
}


def _detect(c: Clues) -> bool:
    return (
        "bmminer" in c.vkeys
        or any(k.lower() == "bmminer" for k in c.stats_head)
        or "antminer" in c.kind
    )


# The web UI: serial and MAC (the API has neither), and the sleep/wake write path.
WEB_PORT = Credential("web_port", web.DEFAULT_WEB_PORT, port="web")  # [asic] web_port
WEB_USERNAME = Credential(
    "web_username",
    "root",
    firmware=Firmware.BITMAIN,
    key="username",
    doc="User of the stock Antminer web UI (HTTP digest): serial, MAC and sleep.",
)
WEB_PASSWORD = Credential(
    "web_password",
    "root",
    secret=True,
    firmware=Firmware.BITMAIN,
    key="password",
    doc="Password of the stock Antminer web UI (a secret; factory default root).",
)
WEB_TIMEOUT = Credential("web_timeout_s", 5.0)
SYSTEM_INFO = web.SYSTEM_INFO_PATH


async def _read_web_identity(
    client: httpx.AsyncClient,
    host: str,
    port: int,
    access: Any,
    paths: tuple[str, ...],
    deadline: float,
) -> tuple[dict[str, Any], dict[str, str]]:
    left = max(0.0, deadline - asyncio.get_running_loop().time())
    got = await web.fetch_bitmain_identity(
        client,
        host,
        port=port,
        username=access.web_username,
        password=access.web_password,
        timeout_s=left,
    )
    return ({}, {SYSTEM_INFO: got}) if isinstance(got, str) else ({SYSTEM_INFO: got}, {})


# The sleep rule is for stock Bitmain only: an unknown derivative's fans-at-0 proves nothing.
SPEC = FirmwareSpec(
    family=Firmware.BITMAIN,
    vendor="Bitmain",
    fields={
        **FIELDS,
        "state": Source(("summary", "stats", "version"), _state),
        "faults": Source(("summary", "stats"), _faults),
        # the web UI's identity (a web.BitmainIdentity), read in the background
        "serial": Source((SYSTEM_INFO,), lambda i: i.serial),
        "mac": Source((SYSTEM_INFO,), lambda i: i.mac),
    },
    web=WebApi("the web UI", WEB_PORT.name, _read_web_identity, background=True),
    # S21-era stats (module doc); older firmware ignores the key
    request={"new_api": True},
    request_changes=("stats",),
    requery_if=_may_answer_new_api,
    detect=_detect,
    detect_rank=70,
    ghs_keys_may_be_mh=True,
)
# Unknown cgminer derivatives read the same keys; the vendor stays unknown.
GENERIC = FirmwareSpec(family=Firmware.CGMINER, vendor=None, fields=FIELDS, ghs_keys_may_be_mh=True)


# --- control: sleep/wake through the web UI (bmminer's API has no sleep) ----------------------


# What a config edit gives back: the document to post, or None when there is nothing to write.
ConfEdit = Callable[[dict[str, Any], int], dict[str, Any] | None]


async def _rewrite_miner_conf(
    act: Act, action: str, edit: ConfEdit, *, no_mode: str
) -> ActionResult | None:
    """Read ``get_miner_conf.cgi``, let ``edit`` make the new document from it and its work
    mode, post that to ``set_miner_conf.cgi`` (HTTP digest). None when written (or nothing to
    write); else the outcome: 401 or the CGI saying no -> refused; no web UI (connection
    refused, 404) or a conf without a work mode (``no_mode`` says why that matters) ->
    unsupported; anything else -> failed. One client, one exchange, for every verb."""
    a = act.access
    auth = _WebAuth(port=a.web_port, username=a.web_username, password=a.web_password)
    # no proxy from the environment (a site's HTTP_PROXY must not carry LAN miner traffic), no
    # pooled connections (one short exchange per action), lighttpd's self-signed TLS if any
    async with httpx.AsyncClient(
        trust_env=False, limits=httpx.Limits(max_keepalive_connections=0), verify=False
    ) as client:
        conf = await web.read_miner_conf(client, act.host, timeout_s=a.web_timeout_s, **auth)
        if isinstance(conf, web.WebFailure):
            return _web_result(act, action, conf)
        mode = web.work_mode(conf)
        if mode is None:
            return act.result(
                action, "unsupported", f"get_miner_conf shows no work mode: {no_mode}"
            )
        doc = edit(conf, mode)
        if doc is None:
            return None
        failed = await web.write_miner_conf(
            client, act.host, doc, timeout_s=a.web_timeout_s, **auth
        )
        return _web_result(act, action, failed) if failed is not None else None


async def _sleep_wake(act: Act, to_sleep: bool) -> ActionResult:
    """``miner-mode`` 1/0 through the web UI config, then confirm over the API: a sleeping
    stock miner hashes 0 with its fans stopped (``_state``)."""
    action = "sleep" if to_sleep else "wake"
    mode = web.WORK_MODE_SLEEP if to_sleep else web.WORK_MODE_NORMAL
    log.info(
        "asic %s: %s requested (%s) via web UI port %d",
        act.device,
        action,
        act.reason,
        act.access.web_port,
    )

    def edit(conf: dict[str, Any], current: int) -> dict[str, Any] | None:
        # already in that mode: writing again would only restart bmminer for nothing
        return None if current == mode else web.conf_with_work_mode(conf, mode)

    failed = await _rewrite_miner_conf(act, action, edit, no_mode="this firmware has no sleep mode")
    if failed is not None:
        return failed
    want = "sleeping" if to_sleep else "mining"
    ok, got = await act.confirm_state(want)
    if ok:
        detail = f"confirmed {want} (web UI work mode {mode}); reason: {act.reason}"
        return act.result(action, "done", detail)
    return act.result(action, "failed", f"web UI took work mode {mode} but reads {got}")


def _web_result(act: Act, action: str, f: web.WebFailure) -> ActionResult:
    if f.kind in ("auth", "rejected"):
        return act.result(action, "refused", f.detail)
    if f.kind in ("unreachable", "missing"):
        return act.result(
            action, "unsupported", f"{f.detail}; stock firmware sleeps only through its web UI"
        )
    return act.result(action, "failed", f.detail)


async def _set_pools(act: Act, pools: tuple[PoolTarget, ...]) -> ActionResult:
    """The pool list through the same web UI config, posted back with the work mode it had (so
    a sleeping miner stays asleep), confirmed by the pools the API then shows. Pre-S19 web UIs
    take a form, not this JSON document: unsupported there."""
    action = "set_pools"
    log.info(
        "asic %s: pools requested (%s) via web UI port %d",
        act.device,
        act.reason,
        act.access.web_port,
    )

    def edit(conf: dict[str, Any], mode: int) -> dict[str, Any]:
        doc = web.conf_with_work_mode(conf, mode)
        doc["pools"] = [{"url": p.url, "user": p.user, "pass": p.password} for p in pools]
        return doc

    failed = await _rewrite_miner_conf(
        act, action, edit, no_mode="this web UI takes another config shape"
    )
    if failed is not None:
        return failed
    ok, seen = await act.confirm_pools(pools)
    if ok:
        return act.result(action, "done", f"confirmed {len(pools)} pools; reason: {act.reason}")
    return act.result(action, "failed", f"web UI took the pools but the miner reads {seen}")


CONTROLS = Controls(
    firmware=Firmware.BITMAIN,
    sleep_wake=_sleep_wake,
    set_pools=_set_pools,
    credentials=("web_port", "web_username", "web_password", "web_timeout_s"),
    # bmminer restarts into a work mode, and hashes again minutes after a wake
    # bmminer restarts to apply a saved config (a work mode or pools)
    confirm_s={"sleep": 60.0, "wake": 180.0, "pools": 60.0},
    # bmminer restarts into the new work mode (~15 s on an S19)
    apply_s={"sleep": 15.0, "wake": 15.0},
    no_power_target="stock Antminer firmware has no watt limit, only work modes (normal/sleep, "
    "low power on some models) in its web UI",
)
GENERIC_CONTROLS = Controls(
    firmware=Firmware.CGMINER,
    no_power_target="unknown cgminer firmware: no known power limit method",
    no_sleep="unknown cgminer firmware: no known sleep method",
)
