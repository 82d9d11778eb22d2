"""A farm of simulated miners, each on its own 127.x.y.z address.

Used by the tests, ``kuat demo`` and the benchmarks. Healthy personalities answer like the real
firmware in tests/cases/asic and tests/fixtures/asic with numbers that move a little per request;
each firmware's personality (its replies, write paths, web or REST API, models and how long its
commands take to act) is declared beside its backend, in collectors/cgminer/firmware/<name>/
sim.py, and found there: this module names none. Fault personalities misbehave on purpose:

- ``hang``: accepts, never answers;   - ``trickle``: a valid reply, 1 byte every 0.5 s;
- ``flood``: bytes without end;        - ``garbage``: an HTML error page, not JSON;

and answer as a stock Antminer would; a firmware may declare faults of its own (the stock
Antminer's ``reject_multi`` answers "Invalid command" to ``a+b``).

With ``web_port`` set, the firmwares that have a web UI or a web/REST API serve it there
(``Personality.web``); ``v3_port`` is where Whatsminer API v3 miners listen. Not in the default
mix: existing farms are unchanged by a new personality.

    python -m kuat.collectors.cgminer.sim --count 500 --first-ip 127.20.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import ipaddress
import json
import pkgutil
import random
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from kuat.collectors.cgminer import firmware
from kuat.collectors.cgminer import sim_replies as R


def _declared() -> dict[str, R.Personality]:
    """Every personality the backend folders declare in their sim.py, by name."""
    found: dict[str, R.Personality] = {}
    for info in pkgutil.iter_modules(firmware.__path__):
        name = f"{firmware.__name__}.{info.name}.sim"
        if not info.ispkg or importlib.util.find_spec(name) is None:
            continue
        for v in vars(importlib.import_module(name)).values():
            if isinstance(v, R.Personality) and found.setdefault(v.name, v) is not v:
                raise ValueError(f"two simulator personalities are named {v.name!r}")
    return found


_DECLARED = _declared()
# misbehaving on the wire; what they say when they answer is a stock Antminer's
_WIRE_FAULTS = ("hang", "trickle", "flood", "garbage")
_SPECS: dict[str, R.Personality] = {
    **_DECLARED,
    **{
        f: dataclasses.replace(
            _DECLARED["antminer"],
            name=f,
            web=None,
            web_ui=False,
            glued_stats=False,
            apply_s={},
            fault=True,
        )
        for f in _WIRE_FAULTS
    },
}
HEALTHY = tuple(n for n, p in _DECLARED.items() if not p.fault)
FAULTS = _WIRE_FAULTS + tuple(n for n, p in _DECLARED.items() if p.fault)
PERSONALITIES = HEALTHY + FAULTS
# the stock Antminers' digest-auth web UI (other firmwares serve JSON APIs on web_port)
WEB_PERSONALITIES = tuple(n for n, p in _SPECS.items() if p.web_ui)
# Default mix, roughly a Kazakh hosting site: mostly stock S19s, then Whatsminers, some LuxOS
# and Braiins; weights per 20 miners.
_MIX = ("antminer",) * 10 + ("whatsminer",) * 5 + ("luxos",) * 3 + ("braiins",) * 2

SLEEP_POWER_W = 10.0

VERBS = ("sleep", "wake", "limit")
# Seconds from a command to the new state showing (reported and drawn), per firmware and
# verb, as the real boxes take; pass it as ``AsicFarmSimulator(apply_delay_s=...)`` (the
# closed-loop benchmark does). Each firmware's sim.py says where its figures come from.
REAL_APPLY_S: dict[str, dict[str, float]] = {
    n: dict(p.apply_s) for n, p in _SPECS.items() if p.apply_s
}


@dataclass(slots=True)
class SimMiner:
    ip: str
    port: int
    personality: str
    model: str
    serial: str
    mac: str
    nominal_ths: float
    nominal_power_w: float
    power_limit_w: int
    rng: random.Random
    # A sleep, a wake and a power limit act ``apply_delay_s[verb]`` after the command (absent:
    # at once), on ``clock`` (in seconds; a benchmark on an accelerated clock passes its own):
    # a stock S19 restarts bmminer into the new mode, btminer restarts mining under a new
    # limit (REAL_APPLY_S). ``sleeping`` reads and sets the state (a property below) and lets
    # anything due act.
    asleep: bool = False
    apply_delay_s: dict[str, float] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    due: tuple[float, bool] | None = None
    limit_due: tuple[float, Callable[[], None]] | None = None
    pools: list[dict[str, str]] = field(default_factory=list)
    pool_active: int = 0  # which of ``pools`` it mines on (LuxOS switchpool moves it)
    # pools a firmware saved to apply at its next mining restart or reboot; how long a reboot
    # keeps its API away (0: back at once), and until when (on ``clock``)
    saved_pools: list[dict[str, str]] | None = None
    reboot_s: float = 0.0
    down_until: float = 0.0
    started: float = field(default_factory=time.monotonic)
    accepted: int = 0
    session_id: str = ""
    hashrate_ths: float = 0.0
    power_w: float = 0.0
    fans_rpm: tuple[int, ...] = ()
    _temps: tuple[tuple[int, int], ...] = ()
    # every command this miner was asked, for tests that check what a poll sends
    requests: Counter[str] = field(default_factory=Counter)
    # web UI: HTTP statuses sent (200 = an authenticated page), and how to misbehave
    web_requests: Counter[int] = field(default_factory=Counter)
    web_password: str = "root"
    web_hang: bool = False
    web_nonces: deque[str] = field(default_factory=lambda: deque(maxlen=64))
    # stock web UI config: the saved work mode (0 normal, 1 sleep), every document posted to
    # set_miner_conf.cgi, and how long bmminer takes to come back in the new mode
    work_mode: int = 0
    conf_writes: list[dict[str, Any]] = field(default_factory=list)
    web_apply_delay_s: float = 0.0
    # the tuning profile or preset in use, or the tuner's power target (0: none), and what it
    # makes the miner run at (0 = nameplate)
    profile: str = ""
    preset: str = "disabled"
    power_target: int = 0
    run_ths: float = 0.0
    run_w: float = 0.0
    # the login tokens a web/REST API handed out; a garbage HTTP answer
    web_tokens: set[str] = field(default_factory=set)
    http_garbage: bool = False
    # the cgminer API goes quiet while mining is stopped (some builds stop it with the miner)
    api_stops_asleep: bool = False
    # Whatsminer write access (API v2 tokens and v3 signatures), the tokens handed out by
    # get_token (sign -> AES key; a miner keeps 32 per client), the highest limit it takes
    admin_password: str = "admin"
    v2_tokens: dict[str, str] = field(default_factory=dict)
    factory_limit_w: int = 0
    # btminer error codes the summary reports ("Error Code Count", "Error Code N"), for tests
    # of the fault alerts
    error_codes: list[int] = field(default_factory=list)
    # Braiins REST miner/details: a serial, or null as on many Antminers running Braiins OS
    bos_rest_serial: bool = False

    @property
    def spec(self) -> R.Personality:
        """What this miner's firmware is, as its backend folder's sim.py declares it."""
        return _SPECS[self.personality]

    @property
    def firmware_personality(self) -> str:
        # fault personalities misbehave on the wire; what they would say is a stock Antminer's
        return self.personality if self.personality in HEALTHY else "antminer"

    @property
    def sleeping(self) -> bool:
        now = self.clock() if self.due is not None or self.limit_due is not None else 0.0
        if self.due is not None and now >= self.due[0]:
            self.asleep, self.due = self.due[1], None
        if self.limit_due is not None and now >= self.limit_due[0]:
            apply, self.limit_due = self.limit_due[1], None
            apply()
        return self.asleep

    @sleeping.setter
    def sleeping(self, value: bool) -> None:
        delay = self.apply_delay_s.get("sleep" if value else "wake", 0.0)
        if delay > 0 and value != self.sleeping:
            self.due = (self.clock() + delay, value)
        else:  # at once; a command back to the present state cancels one still to act
            self.asleep, self.due = value, None

    def limit_later(self, apply: Callable[[], None]) -> None:
        """A new power target: ``apply`` (what the firmware then runs at) acts after the
        firmware's limit delay; a later target replaces one still to act."""
        delay = self.apply_delay_s.get("limit", 0.0)
        if delay > 0:
            self.limit_due = (self.clock() + delay, apply)
        else:
            self.limit_due = None
            apply()

    @property
    def serves_web(self) -> bool:
        return self.personality in WEB_PERSONALITIES

    @property
    def elapsed(self) -> int:
        return int(time.monotonic() - self.started) + 50474

    def tick(self) -> None:
        """New live numbers: every poll sees a slightly different miner, as in the field."""
        r = self.rng
        if self.sleeping:
            self.hashrate_ths = 0.0
            self.power_w = SLEEP_POWER_W + r.uniform(-1.0, 1.0)
            self.fans_rpm = (0,) * len(self.fans_rpm or (0, 0, 0, 0))
            self._temps = tuple((22, 22) for _ in range(3))
            return
        self.hashrate_ths = (self.run_ths or self.nominal_ths) * r.uniform(0.97, 1.03)
        self.power_w = (self.run_w or self.nominal_power_w) * r.uniform(0.985, 1.015)
        n_fans = self.spec.fans(self)
        self.fans_rpm = tuple(int(r.uniform(5000, 6000)) for _ in range(n_fans))
        self._temps = tuple((int(r.uniform(58, 74)), int(r.uniform(66, 82))) for _ in range(3))
        self.accepted += r.randint(1, 6)

    def chain_temps(self) -> tuple[tuple[int, int], ...]:
        """(board, hottest chip) per chain, °C."""
        return self._temps

    def chain_rates_ghs(self) -> list[float]:
        per = self.hashrate_ths * 1e3 / 3
        return [per * f for f in (1.01, 0.98, 1.01)]

    # --- the API ---------------------------------------------------------------------------

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        spec = self.spec
        if spec.intercept is not None:
            written = spec.intercept(self, request)
            if written is not None:
                return written
        command = str(request.get("command", ""))
        parameter = request.get("parameter")
        self.requests.update(command.split("+"))
        table, desc = spec.replies, spec.desc
        if request.get("new_api") is True and spec.new_api is not None:
            table = spec.new_api
        self.tick()
        if "+" in command:
            if not spec.joins:
                return R.invalid(desc)
            out: dict[str, Any] = {}
            for part in dict.fromkeys(command.split("+")):
                if part in spec.alone:
                    out[part] = [R.invalid(desc)]
                else:
                    out[part] = [self._single(part, parameter, table, desc)]
            out["id"] = 1
            return out
        return self._single(command, parameter, table, desc)

    # --- what the firmwares' writes do ----------------------------------------------------------

    @property
    def v2_salt(self) -> str:
        """The salt of the admin password's md5-crypt hash: fixed per miner, as in its shadow."""
        return self.session_id[-8:]

    def apply_power_limit(self, watts: int) -> None:
        """btminer restarts under a new limit (after the limit delay): it then reports it and
        its draw stays below it."""
        self.limit_later(functools.partial(self._run_under_limit, watts))

    def _run_under_limit(self, watts: int) -> None:
        self.power_limit_w = watts
        cap = watts * 0.98  # its regulation keeps a margin, and tick() adds ±1.5 %
        if cap >= self.nominal_power_w:
            self.run_w = self.run_ths = 0.0  # the nameplate fits under the limit
        else:
            self.run_w = cap
            self.run_ths = self.nominal_ths * cap / self.nominal_power_w

    @property
    def v3_salt(self) -> str:
        return self.session_id[:8]

    def _single(
        self, command: str, parameter: Any, table: Mapping[str, Any], desc: str
    ) -> dict[str, Any]:
        if self.spec.control is not None:
            arg = str(parameter) if parameter is not None else ""
            control = self.spec.control(self, command, arg, desc)
            if control is not None:
                return control
        fn = table.get(command)
        return fn(self) if fn is not None else R.invalid(desc)

    def set_work_mode(self, mode: int) -> None:
        """What set_miner_conf.cgi does: save the mode, bmminer restarts into it."""
        self.work_mode = mode

        def apply() -> None:
            if self.work_mode == mode:  # a later write wins, as the last restart does
                self.sleeping = mode == 1

        if self.web_apply_delay_s > 0:
            asyncio.get_running_loop().call_later(self.web_apply_delay_s, apply)
        else:
            apply()


def encode(miner: SimMiner, body: dict[str, Any], glue_stats: bool) -> bytes:
    text = json.dumps(body, separators=(",", ":"))
    if glue_stats:
        # bmminer's own bug, kept on some stock miners: '}{' between the STATS objects
        text = text.replace('},{"STATS":0', '}{"STATS":0', 1)
    return text.encode() + b"\x00"


class _MinerProtocol(asyncio.Protocol):
    def __init__(self, miner: SimMiner, glue_stats: bool) -> None:
        self.miner = miner
        self.glue_stats = glue_stats
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.handles: list[asyncio.TimerHandle] = []
        self.paused = False
        self.flooding = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is no asyncio.Transport subclass (client.py says the same)
        self.transport = cast(asyncio.Transport, transport)
        if self.miner.clock() < self.miner.down_until:
            self.transport.abort()  # rebooting: nothing answers yet

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            request = json.loads(self.buf)
        except ValueError:
            if len(self.buf) > 8192:
                self._close()
            return  # wait for the rest of the request
        self.buf.clear()
        self.respond(request if isinstance(request, dict) else {})

    def respond(self, request: dict[str, Any]) -> None:
        p = self.miner.personality
        assert self.transport is not None
        if p == "hang":
            return
        if self.miner.api_stops_asleep and self.miner.sleeping:
            self._close()
            return
        if p == "garbage":
            self.transport.write(b"<html><body>502 Bad Gateway</body></html>\r\n")
            self._close()
            return
        if p == "flood":
            self.flooding = True
            self._flood()
            return
        reply = encode(self.miner, self.miner.answer(request), self.glue_stats)
        if p == "trickle":
            self._trickle(reply, 0)
            return
        self.transport.write(reply)
        self._close()

    def _trickle(self, reply: bytes, i: int) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(reply[i : i + 1])
        if i + 1 >= len(reply):
            self._close()
            return
        loop = asyncio.get_running_loop()
        self.handles.append(loop.call_later(0.5, self._trickle, reply, i + 1))

    _CHUNK = b'{"STATS":[' + b"1," * 8000

    def _flood(self) -> None:
        while self.transport is not None and not self.transport.is_closing() and not self.paused:
            self.transport.write(self._CHUNK)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.flooding:
            self._flood()

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        for h in self.handles:
            h.cancel()
        self.transport = None


def _addresses(first_ip: str, count: int) -> list[str]:
    ip = ipaddress.IPv4Address(first_ip)
    if not ip.is_loopback:
        raise ValueError(f"simulated miners stay on 127.0.0.0/8, got {first_ip}")
    out: list[str] = []
    while len(out) < count:
        last = int(ip) & 0xFF
        if last not in (0, 255):  # skip network/broadcast-looking addresses
            out.append(str(ip))
        ip += 1
        if not ip.is_loopback:
            raise ValueError(f"{count} miners from {first_ip} run past 127.255.255.255")
    return out


class AsicFarmSimulator:
    def __init__(
        self,
        count: int,
        *,
        first_ip: str = "127.10.0.1",
        port: int = 4028,
        seed: int = 1,
        personalities: Sequence[str] | None = None,
        web_port: int | None = None,
        v3_port: int = 4433,
        apply_delay_s: Mapping[str, float | Mapping[str, float]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``personalities``: one per miner, cycled if shorter; default the site mix.

        ``apply_delay_s``: per personality, seconds from a command to its effect: one figure
        for every verb, or one per verb (``sleep``, ``wake``, ``limit``; REAL_APPLY_S has the
        real firmware's); absent: at once. ``clock``: the seconds those delays run on
        (default: monotonic real time).

        ``web_port``: where stock Antminers serve their web UI; None serves none.
        ``v3_port``: where ``whatsminer_v3`` miners serve API v3 (their ``port`` stays closed).
        """
        self._rng = random.Random(seed)
        self.web_port = web_port
        self.v3_port = v3_port
        mix = tuple(personalities) if personalities else _MIX
        for p in mix:
            if p not in PERSONALITIES:
                raise ValueError(f"unknown personality {p!r}; choose from {PERSONALITIES}")
        self._miners: list[SimMiner] = []
        for i, ip in enumerate(_addresses(first_ip, count)):
            personality = mix[i % len(mix)]
            miner = self._make(i, ip, port, personality)
            delay = (apply_delay_s or {}).get(personality, {})
            miner.apply_delay_s = dict(
                delay if isinstance(delay, Mapping) else dict.fromkeys(VERBS, delay)
            )
            if clock is not None:
                miner.clock = clock
            self._miners.append(miner)
        self._servers: list[asyncio.Server] = []

    def _make(self, i: int, ip: str, port: int, personality: str) -> SimMiner:
        r = random.Random(self._rng.random())
        spec = _SPECS[personality]
        model, ths, watts, limit = spec.models[i % len(spec.models)]
        pick = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
        serial = spec.serial_prefix + "".join(r.choice(pick) for _ in range(spec.serial_len))
        mac = "02:" + ":".join(f"{r.randrange(256):02X}" for _ in range(5))
        worker = f"kuat{i:05d}"
        miner = SimMiner(
            ip=ip,
            port=port,
            personality=personality,
            model=model,
            serial=serial,
            mac=mac,
            nominal_ths=ths,
            nominal_power_w=watts,
            power_limit_w=limit,
            factory_limit_w=limit,
            rng=r,
            pools=[
                {"url": "stratum+tcp://btc.f2pool.com:1314", "user": f"kzfarm.{worker}"},
                {"url": "stratum+tcp://btc-asia.f2pool.com:1314", "user": f"kzfarm.{worker}"},
                {"url": "stratum+tcp://ss.antpool.com:3333", "user": f"kzbackup.{worker}"},
            ],
            session_id=f"{r.getrandbits(48):012x}",
        )
        miner.web_password = spec.web_password  # what the firmware ships with
        # both identity paths: known by serial (odd i) and by MAC alone (even i)
        miner.bos_rest_serial = i % 2 == 1
        if spec.setup is not None:
            spec.setup(miner)
        miner.tick()
        return miner

    @property
    def miners(self) -> list[SimMiner]:
        return self._miners

    @property
    def targets(self) -> list[tuple[str, int]]:
        return [(m.ip, m.port) for m in self._miners]

    def total_power_w(self) -> float:
        return sum(SLEEP_POWER_W if m.sleeping else m.power_w for m in self._miners)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for i, m in enumerate(self._miners):
            spec = m.spec
            if spec.listen is not None:  # not the cgminer API on the API port
                self._servers += await spec.listen(m, R.Ports(m.port, self.web_port, self.v3_port))
                continue
            server = await loop.create_server(
                functools.partial(_MinerProtocol, m, spec.glued_stats and i % 5 == 0),
                host=m.ip,
                port=m.port,
                reuse_address=True,
                backlog=64,
            )
            self._servers.append(server)
            if self.web_port is not None and spec.web is not None:
                self._servers.append(await spec.web(m, self.web_port))

    async def stop(self) -> None:
        for s in self._servers:
            s.close()
        # close_clients is 3.13+; hung/trickle connections are closed by the client side
        for s in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.wait_closed(), 0.5)
        self._servers.clear()

    async def __aenter__(self) -> AsicFarmSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _serve(args: argparse.Namespace) -> None:
    farm = AsicFarmSimulator(
        args.count,
        first_ip=args.first_ip,
        port=args.port,
        seed=args.seed,
        personalities=args.personality or None,
        web_port=args.web_port,
        v3_port=args.v3_port,
    )
    await farm.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # one line on stdout says "ready" so a benchmark or script can start polling
    print(
        f"ready {len(farm.targets)} miners {farm.targets[0][0]}..{farm.targets[-1][0]}", flush=True
    )
    await stop.wait()
    await farm.stop()


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--first-ip", default="127.10.0.1")
    ap.add_argument("--port", type=int, default=4028)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--web-port", type=int, default=None, help="serve stock Antminers' web UI")
    ap.add_argument("--v3-port", type=int, default=4433, help="whatsminer_v3 miners' API v3 port")
    ap.add_argument(
        "--personality",
        action="append",
        choices=PERSONALITIES,
        help="repeat to build a cycle; default is the site mix",
    )
    args = ap.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
