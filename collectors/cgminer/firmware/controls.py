"""Control verbs as a backend declares them: what a firmware can do, how, and what it needs.

Each firmware module (collectors/cgminer/firmware/<name>.py) exports a ``Controls`` for each
firmware it serves: its sleep/wake verb and its power-target verb (small async functions, None
when the firmware has no such write path, with the reason why), the ``MinerAccess`` fields the
verbs read (the credentials and ports), and how long a real box takes to show each action.
``controls_of`` finds every declaration by looking through the firmware package, so a new
firmware adds its module and nothing else: control.py dispatches through this, handle.py derives
its capabilities from it.

A verb gets an ``Act``: the miner, its access, the caller's timeouts and the dispatcher's
confirmation (a re-read through the poller), and returns an ``ActionResult``. An action is done
only when the miner reads back in the new state.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kuat.collectors.capabilities import ActionOutcome, ActionResult, PoolTarget
from kuat.collectors.cgminer.client import ApiError, CgminerClient, is_error_reply, status_of
from kuat.collectors.cgminer.firmware import Firmware, declarations
from kuat.collectors.cgminer.http_json import HttpFailure

if TYPE_CHECKING:
    from kuat.collectors.cgminer.control import MinerAccess
    from kuat.collectors.readings import AsicReading

log = logging.getLogger(__name__)

Verb = Literal["sleep", "wake", "limit", "pools"]
# A reported limit may differ from the requested watts by rounding (LuxOS profiles, REST echoes).
WATTS_SLACK = 0.5
# What a confirmation re-read gives back: (done?, what the last poll showed).
Confirm = Callable[
    [Callable[["AsicReading"], bool], Callable[["AsicReading"], str]],
    Awaitable[tuple[bool, str]],
]


@dataclass(frozen=True, slots=True)
class Act:
    """One requested action on one miner, as the dispatcher hands it to a backend's verb."""

    host: str
    port: int
    firmware: str
    reason: str
    access: MinerAccess = field(repr=False)
    timeout_s: float
    confirm_s: float
    confirm: Confirm = field(repr=False)
    # told once the command is written (the miner answered it) and only its confirmation is
    # left: a caller limiting how many commands it sends at once frees a slot then
    sent: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def device(self) -> str:
        return f"{self.host}:{self.port}"

    def _written(self) -> None:
        if self.sent is not None:
            self.sent()

    def result(
        self, action: str, outcome: ActionOutcome, detail: str, *, floor_w: float | None = None
    ) -> ActionResult:
        return ActionResult(self.device, action, outcome, detail, floor_w)

    async def confirm_state(self, want: str) -> tuple[bool, str]:
        self._written()
        return await self.confirm(lambda r: r.state == want, lambda r: str(r.state))

    async def confirm_limit(self, watts: float) -> tuple[bool, str]:
        def applied(r: AsicReading) -> bool:
            return r.power_limit_w is not None and abs(r.power_limit_w - watts) <= WATTS_SLACK

        self._written()
        return await self.confirm(applied, describe_limit)

    async def state_now(self) -> str:
        """The state one fresh read shows ("mining", "sleeping", …; "unreadable (…)")."""
        _, seen = await self.confirm(lambda r: True, lambda r: str(r.state))
        return seen

    async def confirm_pools(self, pools: tuple[PoolTarget, ...]) -> tuple[bool, str]:
        """Done when the miner reports exactly these pools (url and user) in this order."""
        want = [(p.url, p.user) for p in pools]
        self._written()
        return await self.confirm(
            lambda r: [(p.url, p.user) for p in r.pools] == want, describe_pools
        )


SleepWake = Callable[[Act, bool], Awaitable[ActionResult]]  # (act, to_sleep)
PowerTarget = Callable[[Act, int], Awaitable[ActionResult]]  # (act, watts > 0)
SetPools = Callable[[Act, tuple[PoolTarget, ...]], Awaitable[ActionResult]]  # 1..max_pools


@dataclass(frozen=True, slots=True)
class Controls:
    """A firmware's control verbs as data: which exist, what they need, how long they take."""

    firmware: Firmware
    sleep_wake: SleepWake | None = None
    power_target: PowerTarget | None = None
    # replaces the pool list (the accredited pools, checklist item 7); at most max_pools
    set_pools: SetPools | None = None
    max_pools: int = 3
    # the MinerAccess fields the verbs read (passwords, accounts, ports); tests check the names
    credentials: tuple[str, ...] = ()
    # seconds a confirmation may take ("sleep", "wake", "limit", "pools"); unlisted: default
    confirm_s: Mapping[str, float] = field(default_factory=dict)
    # seconds from send until a real box shows the action ("sleep", "wake", "limit"), what the
    # curtailment plant assumes until it has seen its own (kuat.quota.plant); unlisted: a poll
    apply_s: Mapping[str, float] = field(default_factory=dict)
    # why there is no power target (the quota engine then sleeps such miners instead)
    no_power_target: str = ""
    no_sleep: str = ""

    def confirm_for(self, verb: Verb) -> float:
        return self.confirm_s.get(verb, DEFAULT_CONFIRM_S)


DEFAULT_CONFIRM_S = 10.0


@functools.cache
def _registry() -> dict[Firmware, Controls]:
    """Every ``Controls`` declared by a module of the firmware package, by firmware."""
    return {c.firmware: c for c in declarations(Controls)}


def controls_of(firmware: str) -> Controls | None:
    """The declared controls of ``firmware`` (a Firmware or its string), None if it has none."""
    try:
        return _registry().get(Firmware(firmware))
    except ValueError:
        return None


def all_controls() -> Mapping[Firmware, Controls]:
    return _registry()


def apply_times() -> dict[tuple[str, str], float]:
    """Every backend's declared apply times, as (firmware, verb) -> seconds: the table the
    agent hands the curtailment plant (kuat.quota.plant knows no firmware)."""
    return {(str(f), verb): s for f, c in _registry().items() for verb, s in c.apply_s.items()}


# --- shared pieces the backends' verbs are built from ----------------------------------------


def describe_pools(r: AsicReading) -> str:
    return "pools " + (", ".join(f"{p.url} ({p.user})" for p in r.pools) or "none")


async def asleep_for_a_restart(act: Act, applied_by: str) -> ActionResult | None:
    """For firmware that applies new pools only by restarting (``applied_by``: "restarting
    bosminer"): a miner a fresh read shows asleep for the quota gets no pools now, since the
    restart would set it mining again; the result says so. None: go ahead."""
    if await act.state_now() != "sleeping":
        return None
    return act.result(
        "set_pools",
        "failed",
        f"not written while the miner is asleep for the quota: the firmware applies pools by "
        f"{applied_by}, which would wake it; tried again later",
    )


def comma_in(pools: tuple[PoolTarget, ...]) -> str | None:
    """Why these pools cannot travel as one comma-separated API parameter (LuxOS ``addpool``,
    Avalon ``setpool``), or None: a comma inside a URL, user or password would split it."""
    for p in pools:
        if any("," in v for v in (p.url, p.user, p.password)):
            return (
                f"pool {p.url.split(',')[0]} has a comma in its URL, user or password, which "
                "the miner's API would read as the next parameter"
            )
    return None


def describe_limit(r: AsicReading) -> str:
    limit = "no power limit" if r.power_limit_w is None else f"limit {r.power_limit_w:.0f} W"
    return f"{limit}, {r.state}"


def http_result(
    act: Act, action: str, f: HttpFailure, *, unsupported_hint: str = ""
) -> ActionResult:
    """An HTTP write path's failure as an outcome: the box said no -> refused; no such API ->
    unsupported (with the hint); anything else -> failed."""
    if f.kind in ("auth", "rejected"):
        return act.result(action, "refused", f.detail)
    if f.kind in ("missing", "unreachable", "protocol"):
        detail = f"{f.detail}; {unsupported_hint}" if unsupported_hint else f.detail
        return act.result(action, "unsupported", detail)
    return act.result(action, "failed", f.detail)


# How an API verb is sent: the plain command, or through a session the firmware hands out.
# Returns the reply, or a refusal text when the firmware gave no way in.
Send = Callable[[CgminerClient, str, int, str, str | None], Awaitable["dict[str, Any] | str"]]


async def plain_send(
    client: CgminerClient, host: str, port: int, command: str, parameter: str | None
) -> dict[str, Any] | str:
    return await client.command(host, port, command, parameter)


async def api_sleep_wake(
    act: Act,
    to_sleep: bool,
    command: tuple[str, str | None],
    *,
    send: Send = plain_send,
    at_time: bool = False,
    wake_may_not_answer: bool = False,
) -> ActionResult:
    """Sleep or wake over the cgminer-style API, confirmed by the state a re-read shows.

    ``at_time``: the firmware takes ``<parameter>,1:<unix time>`` and acts at that time (Avalon;
    now means at once). ``wake_may_not_answer``: a box that restarts on wake without a reply is
    judged by the re-read alone."""
    action = "sleep" if to_sleep else "wake"
    name, parameter = command
    if at_time:
        parameter = f"{parameter},1:{int(time.time())}"
    log.info("asic %s: %s requested (%s)", act.device, action, act.reason)
    client = CgminerClient(timeout_s=act.timeout_s)
    reply: dict[str, Any] | str | None
    try:
        reply = await send(client, act.host, act.port, name, parameter)
    except ApiError as e:
        if to_sleep or not wake_may_not_answer:
            return act.result(action, "failed", str(e))
        reply = None
    if isinstance(reply, str):
        return act.result(action, "refused", reply)
    if reply is not None and is_error_reply(reply):
        return act.result(action, "refused", f"miner says: {status_of(reply)[1]}")
    want = "sleeping" if to_sleep else "mining"
    ok, got = await act.confirm_state(want)
    if ok:
        return act.result(action, "done", f"confirmed {want}; reason: {act.reason}")
    return act.result(action, "failed", f"miner accepted {name} but reads {got}")


async def session_send(
    client: CgminerClient, host: str, port: int, command: str, parameter: str | None
) -> dict[str, Any] | str:
    """A LuxOS-style session command (``logon``, ``<sid>,<parameter>``, ``logoff``)."""
    session = await client.command(host, port, "logon")
    rows = session.get("SESSION")
    sid = rows[0].get("SessionID") if isinstance(rows, list) and rows else None
    if not isinstance(sid, str) or not sid:
        return "LuxOS gave no session id"
    try:
        param = f"{sid},{parameter}" if parameter is not None else sid
        return await client.command(host, port, command, param)
    finally:
        # LuxOS has one session at a time: leaving ours open would make the next action's
        # logon fail for a minute. Best effort: the session expires on its own anyway.
        with contextlib.suppress(ApiError):
            await client.command(host, port, "logoff", sid)
