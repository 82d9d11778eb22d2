"""Asyncio client for the Whatsminer API v3 (btminer 2024+, M6x/M7x; TCP 4433).

Wire format (MicroBT's API v3 documentation, "TCP Data Framing"): each message is a 4-byte
little-endian length followed by that many bytes of JSON; a request is ``{"cmd": ...,
"param": ...}``, a reply ``{"code": 0, "when": ..., "msg": {...}, "desc": <cmd>}`` where a
non-zero ``code`` is an error (-1 fail, -2 invalid command, -3 invalid json item, -4 no
permission, -5 out of memory). Read commands (``get.*``) need no login; ``set.*`` need an
account and a token signed with its password and the miner's salt (btminer_auth.py), which only
``V3Client.set_command`` sends: polling never writes.

A poll is two requests on two connections, concurrently, under one deadline:
``get.device.info`` (identity, PSU, the ``working`` flag) and ``get.miner.status`` with
``summary+pools`` (the documented way to ask for two sections at once). Firmware that refuses
the joined filter gets ``summary`` and ``pools`` singly from then on, remembered per miner, as
the v2 client does for ``a+b``. Timing and the byte cap are client.exchange's, so a hung,
trickling or flooding v3 miner costs exactly what a v2 one does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from kuat.collectors.cgminer.client import (
    DEFAULT_MAX_REPLY_BYTES,
    ApiError,
    Deadlines,
    Replies,
    decode_reply,
    exchange,
    frame,
    is_error_reply,
    status_of,
)
from kuat.collectors.cgminer.firmware.whatsminer.btminer_auth import v3_set_request
from kuat.collectors.cgminer.ports import WHATSMINER_V3_PORT

V3_PORT = WHATSMINER_V3_PORT  # one figure for the CLI, discovery and this client
DEVICE_INFO = "get.device.info"
MINER_STATUS = "get.miner.status"
# the status sections a reading needs; "edevs" (per board) adds nothing the reading shows
STATUS_SECTIONS = ("summary", "pools")


def v3_request(cmd: str, param: Any = None) -> bytes:
    req: dict[str, Any] = {"cmd": cmd}
    if param is not None:
        req["param"] = param
    return _framed(req)


def _framed(req: dict[str, Any]) -> bytes:
    return frame(json.dumps(req, separators=(",", ":")).encode())


class V3Client:
    def __init__(
        self,
        *,
        timeout_s: float = 3.0,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        self.deadlines = Deadlines.from_timeout(timeout_s)
        self.max_reply_bytes = max_reply_bytes
        self._split: set[tuple[str, int]] = set()

    def splits_status(self, host: str, port: int) -> bool:
        """True once this miner refused ``summary+pools`` and gets the sections singly."""
        return (host, port) in self._split

    def deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.deadlines.total_s

    async def command(
        self,
        host: str,
        port: int,
        cmd: str,
        param: Any = None,
        *,
        deadline_at: float | None = None,
    ) -> dict[str, Any]:
        """One command and its decoded reply; errors the miner reports are returned, not raised."""
        raw = await exchange(
            host,
            port,
            v3_request(cmd, param),
            deadlines=self.deadlines,
            deadline_at=deadline_at if deadline_at is not None else self.deadline(),
            max_reply_bytes=self.max_reply_bytes,
            framed=True,
        )
        return decode_reply(raw)

    async def set_command(
        self,
        host: str,
        port: int,
        cmd: str,
        param: Any = None,
        *,
        account: str,
        password: str,
    ) -> dict[str, Any]:
        """One signed ``set.*`` command: the salt from ``get.device.info``, then the command.

        Errors the miner reports are returned (``code`` != 0), as ``command`` does; a miner that
        gives no salt gets ApiError. ``password`` goes into the token's hash only.
        """
        deadline_at = self.deadline()
        info = await self.command(host, port, DEVICE_INFO, "salt", deadline_at=deadline_at)
        msg = info.get("msg")
        salt = msg.get("salt") if isinstance(msg, dict) else None
        if not isinstance(salt, str) or not salt:
            if is_error_reply(info):
                return info
            raise ApiError("get.device.info gave no salt to sign the command with")
        req = v3_set_request(
            cmd, param, account=account, password=password, salt=salt, ts=int(time.time())
        )
        raw = await exchange(
            host,
            port,
            _framed(req),
            deadlines=self.deadlines,
            deadline_at=deadline_at,
            max_reply_bytes=self.max_reply_bytes,
            framed=True,
        )
        return decode_reply(raw)

    async def query(self, host: str, port: int, *, deadline_at: float | None = None) -> Replies:
        """``get.device.info`` and ``get.miner.status`` (summary+pools) as two reply bodies.

        Raises ApiError only when the miner gave nothing at all (NoAnswer if it never answered);
        per-command failures are in ``Replies.errors``.
        """
        deadline_at = deadline_at if deadline_at is not None else self.deadline()
        key = (host, port)
        sections = list(STATUS_SECTIONS) if key in self._split else ["+".join(STATUS_SECTIONS)]
        results = await self._gather(host, port, [None, *sections], deadline_at)
        if key not in self._split and _refused_joined(results[1]):
            # this firmware has no joined filter: remember, and ask section by section now
            self._split.add(key)
            sections = list(STATUS_SECTIONS)
            results = results[:1] + await self._gather(host, port, sections, deadline_at)

        out = Replies()
        errors: list[ApiError] = []
        info = results[0]
        if isinstance(info, ApiError):
            errors.append(info)
            out.errors[DEVICE_INFO] = str(info)
        else:
            out.bodies[DEVICE_INFO] = info
            if is_error_reply(info):
                out.errors[DEVICE_INFO] = _error_text(info)
        status_msg: dict[str, Any] = {}
        for section, res in zip(sections, results[1:], strict=True):
            if isinstance(res, ApiError):
                errors.append(res)
                out.errors.setdefault(MINER_STATUS, f"{section}: {res}")
            elif is_error_reply(res):
                out.errors.setdefault(MINER_STATUS, f"{section}: {_error_text(res)}")
            elif isinstance(res.get("msg"), dict):
                status_msg.update(res["msg"])
        if status_msg:
            # one body whatever the number of requests: the parser reads msg.summary/msg.pools
            out.bodies[MINER_STATUS] = {"code": 0, "msg": status_msg, "desc": MINER_STATUS}
            if "summary" in status_msg:
                out.errors.pop(MINER_STATUS, None)  # pools alone missing is no reading error
        if not out.bodies:
            raise errors[0] if errors else ApiError("miner returned no replies")
        return out

    async def _gather(
        self,
        host: str,
        port: int,
        sections: Sequence[str | None],
        deadline_at: float,
    ) -> list[dict[str, Any] | ApiError]:
        """None stands for get.device.info, a section for get.miner.status with that filter."""
        results = await asyncio.gather(
            *(
                self.command(
                    host,
                    port,
                    DEVICE_INFO if s is None else MINER_STATUS,
                    s,
                    deadline_at=deadline_at,
                )
                for s in sections
            ),
            return_exceptions=True,
        )
        out: list[dict[str, Any] | ApiError] = []
        for res in results:
            if isinstance(res, ApiError | dict):
                out.append(res)
            else:
                raise res
        return out


def _refused_joined(res: dict[str, Any] | ApiError) -> bool:
    """The miner answered the joined status request, but not with a summary."""
    if isinstance(res, ApiError):
        return False
    msg = res.get("msg")
    return is_error_reply(res) or not (isinstance(msg, dict) and "summary" in msg)


def _error_text(body: dict[str, Any]) -> str:
    _, msg, _ = status_of(body)
    return f"miner says: {msg or 'error without a message'}"
