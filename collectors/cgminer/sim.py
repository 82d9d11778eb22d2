"""A farm of simulated cgminer-API miners, each on its own 127.x.y.z address.

Used by the tests, ``kuat demo`` and the benchmarks. Healthy personalities answer like the real
firmware in tests/fixtures/asic (stock Antminer, Whatsminer btminer, LuxOS, Braiins OS) with
numbers that move a little per request; fault personalities misbehave on purpose:

- ``hang``: accepts, never answers;   - ``trickle``: a valid reply, 1 byte every 0.5 s;
- ``flood``: bytes without end;        - ``garbage``: an HTML error page, not JSON;
- ``reject_multi``: stock Antminer that answers "Invalid command" to ``a+b``.

``antminer_s21``: S21-era stock firmware (S21, S21 XP, T21, S21+ Hyd.): ``stats`` sent with
``"new_api": true`` gets the new shape with watts (and the Hydro's coolant in/out, no fans), the
same request without it the old shape; its web UI and sleep are the stock Antminer's.

``auradine``: an Auradine Teraflux on FluxOS, its cgminer-style API (ipreport, psu, temperature,
fan, mode beside summary/pools/version) as in the asic-rs captures; with ``web_port`` set, its
HTTP API (``/token`` for admin + ``web_password``, then ``/mode`` sleep on/off or a power target).

``whatsminer_v3``: new btminer (M60S) that answers only Whatsminer API v3, length-framed JSON on
``v3_port`` (4433 by default), from the real ``get.device.info`` with this miner's serial, MAC
and numbers; nothing listens on its 4028, so a poller must fall back to 4433. Not in the default
mix: existing farms are unchanged. ``set.*`` commands must carry the documented signed token
(account ``super``/``user1-3``, ``ts``, sha256 of command + ``admin_password`` + salt + ts):
``set.miner.service`` stop/start/restart, ``set.miner.power_limit`` and ``set.miner.pools`` (its
param encrypted under the token's digest); anything unsigned or wrongly signed gets "no
permission".

Whatsminer API v2 write commands (``power_off``/``power_on``/``adjust_power_limit``/
``update_pools``) work only
encrypted after ``get_token``, as on real btminer (firmware/whatsminer/btminer_auth.py); in plain
text they get "can't access write cmd", with a wrong password "check token error". A power limit
is reported back and the miner then draws under it.

With ``web_port`` set, stock Antminers (``antminer``, ``reject_multi``) also serve their web UI's
``/cgi-bin/get_system_info.cgi`` (serial, MAC, model), ``get_miner_conf.cgi`` and
``set_miner_conf.cgi`` behind HTTP digest auth, as lighttpd on the real box does;
``SimMiner.web_password`` and ``web_hang`` let tests break it. Braiins miners serve their REST
API there (login, ``miner/details`` with the MAC and, for every other miner, a serial, as real
Braiins OS on an Antminer often has ``serial_number`` null; ``network/``; the power target).

Sleep/wake as the firmware does it: LuxOS ``logon`` + ``curtail`` ``<sid>,sleep|wakeup``,
Whatsminer encrypted ``power_off``/``power_on``, Braiins ``pause``/``resume``, stock Antminer a
``set_miner_conf.cgi`` with ``miner-mode`` 1/0 (applied after ``web_apply_delay_s``, as bmminer
restarts into the new mode). A sleeping stock miner hashes 0 with its fans stopped, at ~10 W.
LuxOS power profiles: ``profiles`` and ``logon`` + ``profileset`` ``<sid>,<name>``; the miner
then runs at that profile's watts and hashrate.

Pool writes: LuxOS ``addpool``/``switchpool``/``removepool`` without a session (replies with
cgminer api.c's codes and texts, which LuxOS's documentation does not print), Braiins REST
``PUT /api/v1/pools/batch`` (the OpenAPI document's shape; bosminer's restart is at once here),
Avalon ``setpool`` applied by ``ascset 0,reboot`` (firmware/avalon/sim.py; Canaan's cgminer source,
no capture). ``pools`` marks the pool ``pool_active`` names as the one mining.

    python -m kuat.collectors.cgminer.sim --count 500 --first-ip 127.20.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import json
import random
import secrets
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from kuat.collectors.cgminer import sim_replies as R
from kuat.collectors.cgminer.firmware.avalon import sim as sim_avalon
from kuat.collectors.cgminer.firmware.whatsminer import btminer_auth as auth

HEALTHY = (
    "antminer",
    "antminer_s21",
    "whatsminer",
    "luxos",
    "braiins",
    "whatsminer_v3",
    "epic",
    "vnish",
    "avalon",
    "auradine",
)
FAULTS = ("hang", "trickle", "flood", "garbage", "reject_multi")
PERSONALITIES = HEALTHY + FAULTS
# stock Antminers have the digest-auth web UI (Braiins and Vnish serve JSON APIs on web_port)
WEB_PERSONALITIES = ("antminer", "antminer_s21", "reject_multi")
# Default mix, roughly a Kazakh hosting site: mostly stock S19s, then Whatsminers, some LuxOS
# and Braiins; weights per 20 miners.
_MIX = ("antminer",) * 10 + ("whatsminer",) * 5 + ("luxos",) * 3 + ("braiins",) * 2

# model, nominal TH/s, nominal W, power limit W
_MODELS: dict[str, tuple[tuple[str, float, float, int], ...]] = {
    "antminer": (
        ("Antminer S19 Pro", 110.0, 3250.0, 3250),
        ("Antminer S19j Pro", 100.0, 3050.0, 3050),
        ("Antminer S19 XP", 140.0, 3010.0, 3010),
    ),
    # S21-era stock firmware: stats with new_api (watts, coolant on the Hydro)
    "antminer_s21": (
        ("Antminer S21", 200.0, 3500.0, 3500),
        ("Antminer S21 XP", 270.0, 3645.0, 3645),
        ("Antminer T21", 190.0, 3610.0, 3610),
        ("Antminer S21+ Hyd.", 319.0, 4785.0, 4785),
    ),
    # as the reading names them; the API itself says "M31S" (sim_replies strips the maker)
    "whatsminer": (
        ("Whatsminer M31S", 76.0, 3220.0, 3600),
        ("Whatsminer M30S++", 112.0, 3472.0, 3600),
    ),
    # nominal: the fixture's three boards' detect-hash-rate, 61.4+53.9+65.7 TH/s
    "whatsminer_v3": (("Whatsminer M60S_VK40", 181.0, 3344.0, 3600),),
    "luxos": (("Antminer S19k Pro", 121.8, 2760.0, 2760),),
    "braiins": (("Antminer S19 XP", 140.0, 3031.0, 3031),),
    "epic": (("Antminer S19 XP", 140.0, 3010.0, 3010),),
    "vnish": (("Antminer S19j Pro", 100.0, 3050.0, 3050),),
    "avalon": (("AvalonMiner 1246", 90.0, 3420.0, 3200),),
    "auradine": (("Auradine AT2880", 260.0, 4680.0, 4680),),
    "reject_multi": (("Antminer S19 Pro", 110.0, 3250.0, 3250),),
}
SLEEP_POWER_W = 10.0

VERBS = ("sleep", "wake", "limit")
# Seconds from a command to the new state showing (reported and drawn), per firmware and
# verb, as the real boxes take; pass it as ``AsicFarmSimulator(apply_delay_s=...)`` (the
# closed-loop benchmark does). Where each figure comes from:
# - stock Antminer: the web UI's work-mode write (set_miner_conf.cgi) restarts bmminer into
#   the new mode, sleep or normal; ~15 s on an S19 is kuat's working figure (issue 16, its
#   plant default), not a measurement on record here.
# - Whatsminer: set.miner.power_limit / adjust_power_limit — "the device will restart to
#   apply the new setting" (Whatsminer API v3 documentation, apidoc.whatsminer.com,
#   btminer_set_power_limit); power_on restarts mining too. The restart's length (20 s a
#   limit, 10 s a wake) is an assumption, the same as kuat's plant default; power_off stops
#   mining within a couple of seconds (an assumption).
# - LuxOS (curtail, profileset), Braiins OS (pause/resume, the tuner's power target): act
#   within a second or two, without restarting the miner (an assumption; Braiins OS can
#   ramp slower in curtailments, its quick_ramping_time_up_s/_down_s in bos-plus-api
#   performance.proto, configurable per box).
# - ePIC (perpetualtune), Vnish (presets): retune the chips, assumed 20 s and 10 s as kuat's
#   plant defaults.
REAL_APPLY_S: dict[str, dict[str, float]] = {
    "antminer": {"sleep": 15.0, "wake": 15.0},
    "antminer_s21": {"sleep": 15.0, "wake": 15.0},
    "reject_multi": {"sleep": 15.0, "wake": 15.0},
    "whatsminer": {"sleep": 2.0, "wake": 10.0, "limit": 20.0},
    "whatsminer_v3": {"sleep": 2.0, "wake": 10.0, "limit": 20.0},
    "luxos": dict.fromkeys(VERBS, 1.0),
    "braiins": dict.fromkeys(VERBS, 1.0),
    "epic": {"sleep": 1.0, "wake": 1.0, "limit": 20.0},
    "vnish": {"sleep": 1.0, "wake": 1.0, "limit": 10.0},
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
    # Avalon: the three pool slots setpool saved, applied by the next reboot; how long a
    # reboot keeps its API away (0: back at once), and until when (on ``clock``)
    avalon_saved_pools: list[dict[str, str]] | None = None
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
    # LuxOS: the profile in use and what it makes the miner run at (0 = nameplate)
    profile: str = R.LUX_DEFAULT_PROFILE
    run_ths: float = 0.0
    run_w: float = 0.0
    # ePIC / Vnish: the power target / preset in use; a garbage HTTP answer; Vnish's cgminer
    # API going quiet while mining is stopped (some builds stop it with the miner)
    epic_power_target: int = 0
    vnish_preset: str = "disabled"
    vnish_tokens: set[str] = field(default_factory=set)
    http_garbage: bool = False
    vnish_api_stops: bool = False
    # Vnish: pools saved through /settings, applied by the next mining restart
    vnish_saved_pools: list[dict[str, str]] | None = None
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
        n_fans = 2 if self.firmware_personality.startswith("whatsminer") else 4
        if R.is_hydro(self):
            n_fans = 0  # water-cooled: no fans at all
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
        if self.firmware_personality == "whatsminer":
            written = self._btminer_v2(request)
            if written is not None:
                return written
        command = str(request.get("command", ""))
        parameter = request.get("parameter")
        self.requests.update(command.split("+"))
        table, desc = R.FIRMWARE_REPLIES[self.firmware_personality]
        if request.get("new_api") is True:
            table = R.NEW_API_REPLIES.get(self.firmware_personality, table)
        self.tick()
        if "+" in command:
            if self.personality == "reject_multi":
                return R.invalid(desc)
            out: dict[str, Any] = {}
            for part in dict.fromkeys(command.split("+")):
                if self.personality == "whatsminer" and part in R.WHATSMINER_ALONE:
                    out[part] = [R.invalid(desc)]
                else:
                    out[part] = [self._single(part, parameter, table, desc)]
            out["id"] = 1
            return out
        return self._single(command, parameter, table, desc)

    def answer_v3(self, request: dict[str, Any]) -> dict[str, Any]:
        """One Whatsminer API v3 request -> its reply (``code`` 0 or an error code)."""
        cmd = str(request.get("cmd", ""))
        param = request.get("param")
        # an encrypted param is counted by its command: its ciphertext differs every time
        plain = param is not None and cmd not in auth.V3_ENCRYPTED
        self.requests[f"{cmd}:{param}" if plain else cmd] += 1
        self.tick()
        if cmd == "get.device.info":
            return R.wm_v3_device_info(self, param)
        if cmd == "get.miner.status":
            return R.wm_v3_miner_status(self, param)
        if cmd.startswith("set."):
            return self._v3_set(cmd, request)
        return R.v3_reply(cmd, "invalid command", R.V3_INVALID_COMMAND)

    # --- Whatsminer write access ---------------------------------------------------------------

    @property
    def v2_salt(self) -> str:
        """The salt of the admin password's md5-crypt hash: fixed per miner, as in its shadow."""
        return self.session_id[-8:]

    def _btminer_v2(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """get_token and the write commands of btminer API v2; None for everything else."""
        if "enc" in request:
            self.requests["enc"] += 1
            return self._btminer_encrypted(request)
        command = str(request.get("command", request.get("cmd", "")))
        if command == "get_token":
            self.requests[command] += 1
            return self._btminer_token()
        if command in R.WM_WRITE_COMMANDS:
            self.requests[command] += 1
            return R.wm_status(R.WM_DENIED, "can't access write cmd", "E")
        return None

    def _btminer_token(self) -> dict[str, Any]:
        token = auth.V2Token(
            time=f"{int(time.time()) % 10000:04d}",
            salt=self.v2_salt,
            newsalt="".join(secrets.choice("0123456789abcdefghjkmnpqrstuvwxyz") for _ in range(8)),
        )
        session = auth.v2_session(self.admin_password, token)
        self.v2_tokens[session.sign] = session.key
        while len(self.v2_tokens) > 32:
            del self.v2_tokens[next(iter(self.v2_tokens))]
        msg = {"time": token.time, "salt": token.salt, "newsalt": token.newsalt}
        return R.wm_status(R.WM_TOKEN_OK, msg)

    def _btminer_encrypted(self, request: dict[str, Any]) -> dict[str, Any]:
        # the miner knows its password: its key is what a client with the right one derives
        key = auth.md5_crypt_body(self.admin_password, self.v2_salt)
        data = request.get("data")
        try:
            plain = json.loads(auth.v2_decrypt(key, data if isinstance(data, str) else ""))
        except (ValueError, UnicodeDecodeError):
            plain = None
        sign = plain.get("token") if isinstance(plain, dict) else None
        if not isinstance(plain, dict) or self.v2_tokens.get(str(sign)) != key:
            return R.wm_status(R.WM_BAD_TOKEN, "check token error", "E")
        command = str(plain.get("cmd", plain.get("command", "")))
        self.requests[command] += 1
        reply = self._btminer_write(command, plain)
        body = json.dumps(reply, separators=(",", ":")).encode()
        return {"enc": auth.v2_encrypt(key, body)}

    def _btminer_write(self, command: str, req: dict[str, Any]) -> dict[str, Any]:
        if command in ("power_off", "power_on"):
            self.sleeping = command == "power_off"
            return R.wm_status(R.WM_CMD_OK, "API command OK")
        if command == "adjust_power_limit":
            raw = str(req.get("power_limit", ""))
            if not raw.isdigit() or not 0 < int(raw) <= self.factory_limit_w:
                return R.wm_status(R.WM_CMD_ERROR, "command error", "E")
            self.apply_power_limit(int(raw))
            return R.wm_status(R.WM_CMD_OK, "API command OK")
        if command == "update_pools":
            # API v2: pool1..3 with worker/passwd; an empty slot is no pool
            self.pools = [
                {
                    "url": str(req.get(f"pool{i}", "")),
                    "user": str(req.get(f"worker{i}", "")),
                    "pass": str(req.get(f"passwd{i}", "")),
                }
                for i in range(1, 4)
                if req.get(f"pool{i}")
            ]
            return R.wm_status(R.WM_CMD_OK, "API command OK")
        if command == "restart_btminer":
            return R.wm_status(R.WM_CMD_OK, "API command OK")
        return R.wm_status(14, "invalid cmd", "E")

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

    def _v3_set(self, cmd: str, request: dict[str, Any]) -> dict[str, Any]:
        ts = request.get("ts")
        signed = (
            request.get("account") in auth.V3_ACCOUNTS
            and isinstance(ts, int)
            and request.get("token") == auth.v3_token(cmd, self.admin_password, self.v3_salt, ts)
        )
        if not signed or not isinstance(ts, int):
            return R.v3_reply(cmd, "no permission", R.V3_NO_PERMISSION)
        param = request.get("param")
        if cmd == "set.miner.service" and param in ("stop", "start", "restart"):
            self.sleeping = param == "stop"
            return R.v3_reply(cmd, "ok")
        if cmd == "set.miner.power_limit" and isinstance(param, int):
            if not 0 < param <= self.factory_limit_w:
                return R.v3_reply(cmd, "fail", R.V3_FAIL)
            self.apply_power_limit(param)
            return R.v3_reply(cmd, "ok")
        if cmd == "set.miner.pools" and isinstance(param, str):
            pools = self._v3_pools_param(cmd, param, ts)
            if pools is None:
                return R.v3_reply(cmd, "invalid param", R.V3_INVALID_ITEM)
            self.pools = pools
            return R.v3_reply(cmd, "ok")
        if cmd in ("set.miner.service", "set.miner.power_limit", "set.miner.pools"):
            return R.v3_reply(cmd, "invalid param", R.V3_INVALID_ITEM)
        return R.v3_reply(cmd, "invalid command", R.V3_INVALID_COMMAND)

    def _v3_pools_param(self, cmd: str, param: str, ts: int) -> list[dict[str, str]] | None:
        """set.miner.pools' encrypted list of {pool, worker, passwd}, as btminer keeps it (its
        first three); None when it does not decrypt or is not that shape."""
        key = auth.v3_digest(cmd, self.admin_password, self.v3_salt, ts)
        try:
            rows = auth.v3_decrypt_param(key, param)
        except auth.AuthError:
            return None
        if not isinstance(rows, list) or not rows:
            return None
        out = []
        for row in rows[:3]:
            if not isinstance(row, dict) or not isinstance(row.get("pool"), str):
                return None
            out.append(
                {
                    "url": row["pool"],
                    "user": str(row.get("worker", "")),
                    "pass": str(row.get("passwd", "")),
                }
            )
        return out

    @property
    def v3_salt(self) -> str:
        return self.session_id[:8]

    def _single(
        self, command: str, parameter: Any, table: dict[str, Any], desc: str
    ) -> dict[str, Any]:
        control = self._control(command, str(parameter) if parameter is not None else "", desc)
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

    def _control(self, command: str, parameter: str, desc: str) -> dict[str, Any] | None:
        fw = self.firmware_personality
        if fw == "luxos" and command == "curtail":
            sid, _, action = parameter.partition(",")
            if sid != self.session_id or action not in ("sleep", "wakeup"):
                return {"STATUS": R._status(45, "Access denied", desc, "E"), "id": 1}
            self.sleeping = action == "sleep"
            return R.ok(desc, f"Curtail {action}")
        if fw == "luxos" and command == "profileset":
            sid, _, name = parameter.partition(",")
            if sid != self.session_id:
                return {"STATUS": R._status(45, "Access denied", desc, "E"), "id": 1}
            table = R.lux_profiles(self)
            if name not in table:
                return {"STATUS": R._status(322, f"Invalid profile {name}", desc, "E"), "id": 1}
            ths, watts = table[name]

            def apply() -> None:
                self.profile, self.run_ths = name, ths
                self.run_w, self.power_limit_w = float(watts), watts

            self.limit_later(apply)
            return {
                "PROFILE": [{"Board": 0, "FrequencyStep": 5, "Profile": name, "VoltageStep": 0.05}],
                "STATUS": R._status(321, "Profile Set", desc),
                "id": 1,
            }
        if fw == "luxos" and command == "logoff":
            return R.ok(desc, "Session closed")
        if fw == "luxos" and command in ("addpool", "switchpool", "removepool"):
            return self._lux_pools(command, parameter, desc)
        if fw == "avalon" and command == "ascset":
            return sim_avalon.ascset(self, parameter)
        if fw == "avalon" and command == "setpool":
            return sim_avalon.setpool(self, parameter)
        if fw == "braiins" and command in ("pause", "resume"):
            self.sleeping = command == "pause"
            return R.ok(desc, "Paused" if self.sleeping else "Resumed")
        return None

    def _lux_pools(self, command: str, parameter: str, desc: str) -> dict[str, Any]:
        """cgminer's pool commands as LuxOS answers them, without a session (the codes and
        texts are cgminer api.c's: 55 added, 27 switching, 68 removed; 26 bad id, 67 active)."""

        def err(code: int, msg: str) -> dict[str, Any]:
            return {"STATUS": R._status(code, msg, desc, "E"), "id": 1}

        if command == "addpool":
            parts = parameter.split(",")
            if len(parts) < 2 or not parts[0] or not parts[1]:
                return err(53, f"Invalid addpool details '{parameter}'")
            self.pools.append({"url": parts[0], "user": parts[1], "pass": ",".join(parts[2:3])})
            n = len(self.pools) - 1
            return {"STATUS": R._status(55, f"Added pool {n}: '{parts[0]}'", desc), "id": 1}
        n = int(parameter) if parameter.isdigit() else -1
        if not 0 <= n < len(self.pools):
            return err(26, f"Invalid pool id {n} - range is 0 - {len(self.pools) - 1}")
        url = self.pools[n]["url"]
        if command == "switchpool":
            self.pool_active = n
            return {"STATUS": R._status(27, f"Switching to pool {n}:'{url}'", desc), "id": 1}
        active = self.pool_active if self.pool_active < len(self.pools) else 0
        if n == active:
            return err(67, f"Cannot remove active pool {n}:'{url}'")
        del self.pools[n]
        if n < active:
            self.pool_active = active - 1
        return {"STATUS": R._status(68, f"Removed pool {n}:'{url}'", desc), "id": 1}


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
        if p == "vnish" and self.miner.sleeping and self.miner.vnish_api_stops:
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


class _V3Protocol(asyncio.Protocol):
    """Whatsminer API v3 framing: 4-byte little-endian length, then JSON, both ways.

    Like the real firmware the connection stays open for more requests (the client closes it);
    zero-length frames are heartbeats and get no reply; a frame longer than 64 KiB is not a
    request and closes the connection.
    """

    _MAX_REQUEST = 64 * 1024

    def __init__(self, miner: SimMiner) -> None:
        self.miner = miner
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is no asyncio.Transport subclass (client.py says the same)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 4 and self.transport is not None:
            n = int.from_bytes(self.buf[:4], "little")
            if n > self._MAX_REQUEST:
                self.transport.close()
                return
            if len(self.buf) < 4 + n:
                return
            raw = bytes(self.buf[4 : 4 + n])
            del self.buf[: 4 + n]
            if n == 0:
                continue  # heartbeat
            try:
                request = json.loads(raw)
            except ValueError:
                request = None
            if isinstance(request, dict):
                reply = self.miner.answer_v3(request)
            else:
                reply = R.v3_reply("", "invalid json", R.V3_INVALID_ITEM)
            body = json.dumps(reply, separators=(",", ":")).encode()
            self.transport.write(len(body).to_bytes(4, "little") + body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


# --- the stock web UI -----------------------------------------------------------------------

WEB_USER = "root"
_MAX_HEAD = 8192
_MAX_POST = 64 * 1024


async def _serve_web(
    miner: SimMiner, reader: asyncio.StreamReader, w: asyncio.StreamWriter
) -> None:
    """One request per connection (``Connection: close``): enough for httpx's digest handshake."""
    try:
        head = await _read_head(reader)
        if head is None:
            return
        length = head[2].get("content-length", "0")
        if not length.isdigit() or int(length) > _MAX_POST:
            return
        # read the body even when the answer is a 401: closing with unread bytes sends an RST,
        # and the client would lose the challenge it needs for the digest handshake
        body = await reader.readexactly(int(length))
        if miner.web_hang:
            # a wedged CGI: the request is read, nothing comes back until the client gives up
            while await reader.read(1024):
                pass
            return
        w.write(_web_response(miner, *head, body))
        await w.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        w.close()


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]] | None:
    """(method, path, lower-cased headers) of one request, or None if it is not HTTP."""
    raw = await reader.readuntil(b"\r\n\r\n")
    if len(raw) > _MAX_HEAD:
        return None
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


def _web_response(
    miner: SimMiner, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    if not _digest_ok(miner, method, headers.get("authorization", "")):
        nonce = secrets.token_hex(16)
        miner.web_nonces.append(nonce)
        challenge = f'Digest realm="{R.BM_WEB_REALM}", nonce="{nonce}", qop="auth"'
        return _http(
            miner, 401, b"401 - Unauthorized", "text/html", {"WWW-Authenticate": challenge}
        )
    route = (method, path.split("?")[0])
    if route == ("GET", "/cgi-bin/get_system_info.cgi"):
        doc: dict[str, Any] = R.bm_system_info(miner)
    elif route == ("GET", "/cgi-bin/get_miner_conf.cgi"):
        doc = R.bm_miner_conf(miner)
    elif route == ("POST", "/cgi-bin/set_miner_conf.cgi"):
        doc = R.bm_set_result(_set_miner_conf(miner, body))
    else:
        return _http(miner, 404, b"404 - Not Found", "text/html", {})
    return _http(miner, 200, json.dumps(doc).encode(), "application/json", {})


def _set_miner_conf(miner: SimMiner, body: bytes) -> bool:
    """Apply a posted config as the firmware does: the whole config is replaced, pools included,
    so a client that forgot to send the pools leaves the miner with none."""
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    raw = doc.get("miner-mode", doc.get("bitmain-work-mode"))
    mode = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    if isinstance(raw, str) and raw.strip().isdigit():
        mode = int(raw)
    if mode not in (0, 1, 2, 3):
        return False
    miner.conf_writes.append(doc)
    pools = doc.get("pools")
    miner.pools = [
        {"url": str(p["url"]), "user": str(p.get("user", "")), "pass": str(p.get("pass", ""))}
        for p in (pools if isinstance(pools, list) else [])
        if isinstance(p, dict) and p.get("url")
    ]
    miner.set_work_mode(mode)
    return True


def _http(miner: SimMiner, status: int, body: bytes, ctype: str, extra: dict[str, str]) -> bytes:
    miner.web_requests[status] += 1
    reason = {200: "OK", 401: "Unauthorized", 404: "Not Found"}[status]
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}"]
    head += [f"Content-Length: {len(body)}", "Connection: close", "Server: lighttpd/1.4.48"]
    head += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _digest_params(header: str) -> dict[str, str]:
    """``Digest k="v", k2=v2`` -> dict; values never contain commas in what httpx sends."""
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "digest":
        return {}
    out = {}
    for part in rest.split(","):
        k, sep, v = part.strip().partition("=")
        if sep:
            out[k.strip().lower()] = v.strip().strip('"')
    return out


def _md5(s: str) -> str:
    return hashlib.md5(s.encode(), usedforsecurity=False).hexdigest()


def _digest_ok(miner: SimMiner, method: str, header: str) -> bool:
    """RFC 2617 digest, MD5, qop=auth, as lighttpd's mod_auth checks it."""
    p = _digest_params(header)
    needed = ("username", "realm", "nonce", "uri", "response", "nc", "cnonce", "qop")
    if any(k not in p for k in needed) or p["qop"] != "auth":
        return False
    if (
        p["username"] != WEB_USER
        or p["realm"] != R.BM_WEB_REALM
        or p["nonce"] not in miner.web_nonces
    ):
        return False
    ha1 = _md5(f"{WEB_USER}:{R.BM_WEB_REALM}:{miner.web_password}")
    ha2 = _md5(f"{method}:{p['uri']}")
    expect = _md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{ha2}")
    return secrets.compare_digest(expect, p["response"])


# --- ePIC and Vnish HTTP JSON APIs ------------------------------------------------------------

Route = Any  # (miner, method, path, headers, body) -> (status, JSON document or None)


async def _start_http(m: SimMiner, port: int, route: Route) -> asyncio.Server:
    return await asyncio.start_server(
        lambda r, w: _serve_http(m, r, w, route),
        host=m.ip,
        port=port,
        reuse_address=True,
        backlog=64,
        limit=_MAX_HEAD,
    )


async def _serve_http(
    m: SimMiner, reader: asyncio.StreamReader, w: asyncio.StreamWriter, route: Route
) -> None:
    """One request per connection. A cgminer-style request (``{"command": ...}``) gets the
    400 an HTTP server sends to anything that is not HTTP, as ePIC's 4028 does."""
    try:
        first = await reader.readexactly(1)
        if first in (b"{", b"["):
            w.write(_json_http(m, 400, None, reason="Bad Request"))
            await w.drain()
            return
        raw = first + await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > _MAX_POST:
            return
        body = await reader.readexactly(int(length))
        if m.web_hang:
            while await reader.read(1024):
                pass
            return
        if m.http_garbage:
            page = b"<html><body>502 Bad Gateway</body></html>"
            head = f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {len(page)}"
            w.write(f"{head}\r\nConnection: close\r\n\r\n".encode() + page)
            await w.drain()
            return
        m.tick()
        status, doc = route(m, parts[0], parts[1].split("?")[0], headers, body)
        w.write(_json_http(m, status, doc))
        await w.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        w.close()


def _json_http(m: SimMiner, status: int, doc: Any, reason: str = "") -> bytes:
    m.web_requests[status] += 1
    body = b"" if doc is None else json.dumps(doc).encode()
    head = [f"HTTP/1.1 {status} {reason or 'OK'}", "Content-Type: application/json"]
    head += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _epic_route(
    m: SimMiner, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, Any]:
    gets = {"/summary": R.epic_summary, "/capabilities": R.epic_capabilities}
    if method == "GET" and path in gets:
        return 200, gets[path](m)
    if method == "GET" and path == "/network":
        return 200, R.epic_network(m)
    if method != "POST" or path not in ("/miner", "/perpetualtune/algo", "/coin"):
        return 404, None
    req = _json_body(body)
    if not isinstance(req, dict) or "param" not in req:
        return 200, {"result": False, "error": "MissingParam"}
    if req.get("password") != m.web_password:
        return 200, {"result": False, "error": "BadPassword"}
    param = req["param"]
    if path == "/coin":
        return 200, _epic_coin(m, param)
    if path == "/miner" and param in ("Stop", "Autostart"):
        m.sleeping = param == "Stop"
        return 200, {"result": True, "error": None}
    lo, hi = R.EPIC_POWER_RANGE
    if path == "/perpetualtune/algo" and isinstance(param, dict) and param.get("algo") == "Power":
        target = param.get("target")
        if isinstance(target, int) and lo <= target <= hi:

            def apply() -> None:
                m.epic_power_target = m.power_limit_w = target
                m.run_w = float(target)
                m.run_ths = m.nominal_ths * target / m.nominal_power_w

            m.limit_later(apply)
            return 200, {"result": True, "error": None}
    return 200, {"result": False, "error": "MissingParam"}


def _epic_coin(m: SimMiner, param: Any) -> dict[str, Any]:
    """``/coin``: up to three stratum_configs replace the pools (ePIC's OpenAPI document)."""
    configs = param.get("stratum_configs") if isinstance(param, dict) else None
    if (
        not isinstance(configs, list)
        or not 1 <= len(configs) <= 3
        or not all(isinstance(c, dict) and isinstance(c.get("pool"), str) for c in configs)
    ):
        return {"result": False, "error": "InvalidStratumConfigs"}
    m.pools = [
        {"url": c["pool"], "user": str(c.get("login", "")), "pass": str(c.get("password", ""))}
        for c in configs
    ]
    return {"result": True, "error": None}


def _vnish_route(
    m: SimMiner, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, Any]:
    if method == "GET" and path == "/api/v1/info":
        return 200, R.vnish_info(m)
    if method == "GET" and path == "/api/v1/summary":
        return 200, R.vnish_summary(m)
    if method == "GET" and path == "/api/v1/perf-summary":
        return 200, R.vnish_perf_summary(m)
    if method == "POST" and path == "/api/v1/unlock":
        req = _json_body(body)
        if not isinstance(req, dict) or req.get("pw") != m.web_password:
            return 403, {"unlock_timeout": None}
        token = secrets.token_urlsafe(24)
        m.vnish_tokens.add(token)
        return 200, {"token": token}
    writes = (
        "/api/v1/mining/stop",
        "/api/v1/mining/start",
        "/api/v1/settings",
        "/api/v1/mining/restart",
    )
    if path not in writes and path != "/api/v1/autotune/presets":
        return 404, None
    auth = headers.get("authorization", "")
    if not auth.startswith("Bearer ") or auth[7:] not in m.vnish_tokens:
        return 401, None
    if method == "GET" and path == "/api/v1/autotune/presets":
        return 200, R.vnish_presets()
    if method == "POST" and path in writes[:2]:
        m.sleeping = path.endswith("/stop")
        return 200, None
    if method == "POST" and path == "/api/v1/mining/restart":
        # bmminer restarts with the saved settings: saved pools take effect now
        if m.vnish_saved_pools is not None:
            m.pools, m.vnish_saved_pools = m.vnish_saved_pools, None
        return 200, None
    if method == "POST" and path == "/api/v1/settings":
        req = _json_body(body)
        pools = ((req or {}).get("miner") or {}).get("pools")
        if pools is not None:
            return _vnish_pools(m, pools)
        preset = (((req or {}).get("miner") or {}).get("overclock") or {}).get("preset")
        if not isinstance(preset, str) or not (preset == "disabled" or preset.isdigit()):
            return 500, {"err": "invalid preset"}
        watts = int(preset) if preset.isdigit() else int(m.nominal_power_w)

        def apply() -> None:
            m.vnish_preset = preset
            m.run_w, m.power_limit_w = float(watts), watts
            m.run_ths = m.nominal_ths * watts / m.nominal_power_w

        m.limit_later(apply)
        return 200, {"restart_required": False, "reboot_required": False}
    return 404, None


def _vnish_pools(m: SimMiner, pools: Any) -> tuple[int, Any]:
    """Saved, applied at the next mining restart (the answer says one is needed), as Vnish
    does with a new pool list; at most three url/user/pass entries (its OpenAPI schema)."""
    if (
        not isinstance(pools, list)
        or not 1 <= len(pools) <= 3
        or not all(isinstance(p, dict) and {"url", "user", "pass"} <= p.keys() for p in pools)
    ):
        return 500, {"err": "invalid pools"}
    m.vnish_saved_pools = [
        {"url": str(p["url"]), "user": str(p["user"]), "pass": str(p["pass"])} for p in pools
    ]
    return 200, {"restart_required": True, "reboot_required": False}


def _braiins_route(
    m: SimMiner, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, Any]:
    """Braiins OS 25.07+ public REST API: login, identity reads and the tuner's power target."""
    if method == "POST" and path == "/api/v1/auth/login":
        req = _json_body(body)
        if (
            not isinstance(req, dict)
            or req.get("username") != "root"
            or req.get("password") != m.web_password
        ):
            return 401, {"message": "Invalid username or password"}
        token = secrets.token_urlsafe(12)
        m.vnish_tokens.add(token)  # one token set per miner serves every web API here
        return 200, {"token": token, "timeout_s": 3600}
    reads = {"/api/v1/miner/details": R.bos_miner_details, "/api/v1/network/": R.bos_network}
    writes = ("/api/v1/performance/power-target", "/api/v1/pools/batch")
    if path not in writes and path not in reads:
        return 404, {"message": "Not Found"}
    if headers.get("authorization", "") not in m.vnish_tokens:
        return 401, {"message": "Unauthorized"}
    if path in reads:
        return (200, reads[path](m)) if method == "GET" else (405, {"message": "Not Allowed"})
    req = _json_body(body)
    if path == "/api/v1/pools/batch":
        return _bos_pool_groups(m, method, req)
    watt = req.get("watt") if isinstance(req, dict) else None
    if method != "PUT" or not isinstance(watt, int):
        return 400, {"message": "Invalid request body"}
    low, high = int(m.nominal_power_w * 0.4), int(m.factory_limit_w * 1.2)
    if not low <= watt <= high:
        return 400, {"message": f"Power target {watt} W out of range {low}-{high} W"}

    def apply() -> None:
        m.power_limit_w = watt
        m.run_w = float(min(watt, m.nominal_power_w * 1.2))
        m.run_ths = m.nominal_ths * m.run_w / m.nominal_power_w

    m.limit_later(apply)
    return 200, {"watt": watt}


def _bos_pool_groups(m: SimMiner, method: str, groups: Any) -> tuple[int, Any]:
    """``PUT /api/v1/pools/batch`` (OpenAPI 25.07 ``setBatchPools``): the groups replace every
    group; the miner mines on the first group's pools, in order (bosminer restarts into them,
    at once here). The reply echoes the groups with the uids it gave them."""
    if method != "PUT":
        return 405, {"message": "Not Allowed"}
    if (
        not isinstance(groups, list)
        or not groups
        or not all(isinstance(g, dict) and isinstance(g.get("pools"), list) for g in groups)
        or not all(
            isinstance(p, dict) and isinstance(p.get("url"), str) and isinstance(p.get("user"), str)
            for g in groups
            for p in g["pools"]
        )
    ):
        return 400, {"message": "Invalid request body"}
    out = [
        {
            **g,
            "uid": f"group{gi}",
            "pools": [{**p, "uid": str(n)} for n, p in enumerate(g["pools"])],
        }
        for gi, g in enumerate(groups)
    ]
    m.pools = [
        {"url": p["url"], "user": p["user"], "pass": str(p.get("password") or "")}
        for p in groups[0]["pools"]
    ]
    m.pool_active = 0
    return 200, out


def _auradine_route(
    m: SimMiner, method: str, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, Any]:
    """FluxOS's HTTP API as pyasic drives it: a token for user/password, then /mode writes."""
    req = _json_body(body)
    if method == "POST" and path == "/token":
        if not isinstance(req, dict) or (req.get("user"), req.get("password")) != (
            "admin",
            m.web_password,
        ):
            return 200, {"STATUS": [{"STATUS": "E", "Msg": "Invalid user or password"}]}
        token = secrets.token_urlsafe(12)
        m.vnish_tokens.add(token)  # one token set per miner serves every web API here
        return 200, {"STATUS": [{"STATUS": "S", "Msg": "Token"}], "Token": [{"Token": token}]}
    if path != "/mode":
        return 404, {"STATUS": [{"STATUS": "E", "Msg": "Not found"}]}
    if headers.get("token", "") not in m.vnish_tokens:
        return 401, {"STATUS": [{"STATUS": "E", "Msg": "Unauthorized"}]}
    if method != "POST" or not isinstance(req, dict):
        return 400, {"STATUS": [{"STATUS": "E", "Msg": "Bad request"}]}
    if req.get("sleep") in ("on", "off"):
        m.sleeping = req["sleep"] == "on"
    elif req.get("tune") == "power" and isinstance(req.get("power"), int):
        if not 0 < req["power"] <= m.factory_limit_w:
            return 200, {"STATUS": [{"STATUS": "E", "Msg": "Power out of range"}]}
        m.apply_power_limit(req["power"])
    else:
        return 200, {"STATUS": [{"STATUS": "E", "Msg": "Invalid mode"}]}
    return 200, {"STATUS": [{"STATUS": "S", "Msg": "Mode set"}]}


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
        models = _MODELS.get(personality, _MODELS["antminer"])
        model, ths, watts, limit = models[i % len(models)]
        prefix = {
            "whatsminer": "HTM3",
            "whatsminer_v3": "BTM3CS40HD240831",  # the fixture's 33-character shape
            "luxos": "JYZZ",
            "braiins": "YNAH",
            "auradine": "AU",
        }.get(personality, "JYZZ")
        n = 33 - len(prefix) if personality == "whatsminer_v3" else 13
        serial = prefix + "".join(r.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(n))
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
        # the passwords these firmwares ship with (stock Antminer's web UI: root)
        miner.web_password = {
            "epic": "letmein",
            "vnish": "admin",
            "braiins": "",
            "auradine": "admin",
            "avalon": "admin",
        }.get(personality, "root")
        # both identity paths: known by serial (odd i) and by MAC alone (even i)
        miner.bos_rest_serial = i % 2 == 1
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
            if m.personality == "whatsminer_v3":
                v3 = await loop.create_server(
                    functools.partial(_V3Protocol, m),
                    host=m.ip,
                    port=self.v3_port,
                    reuse_address=True,
                    backlog=64,
                )
                self._servers.append(v3)
                continue
            if m.personality == "epic":
                # ePIC has no cgminer API: its HTTP API is on the API port
                self._servers.append(await _start_http(m, m.port, _epic_route))
                continue
            if m.personality == "vnish" and self.web_port is not None:
                self._servers.append(await _start_http(m, self.web_port, _vnish_route))
            if m.personality == "braiins" and self.web_port is not None:
                self._servers.append(await _start_http(m, self.web_port, _braiins_route))
            if m.personality == "auradine" and self.web_port is not None:
                self._servers.append(await _start_http(m, self.web_port, _auradine_route))
            glue = m.personality == "antminer" and i % 5 == 0
            server = await loop.create_server(
                functools.partial(_MinerProtocol, m, glue),
                host=m.ip,
                port=m.port,
                reuse_address=True,
                backlog=64,
            )
            self._servers.append(server)
            if self.web_port is not None and m.serves_web:
                web = await asyncio.start_server(
                    functools.partial(_serve_web, m),
                    host=m.ip,
                    port=self.web_port,
                    reuse_address=True,
                    backlog=64,
                    limit=_MAX_HEAD,
                )
                self._servers.append(web)

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
