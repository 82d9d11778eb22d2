"""systemd's notify protocol: READY, STATUS, WATCHDOG and STOPPING on $NOTIFY_SOCKET.

The protocol is one datagram of ``KEY=VALUE`` lines; a dependency would be larger than this.
Outside systemd (no $NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading '@' in the environment.
        self._addr = "\0" + addr[1:] if addr.startswith("@") else addr

    @property
    def enabled(self) -> bool:
        return bool(self._addr)

    def send(self, **fields: str) -> bool:
        if not self._addr:
            return False
        payload = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(payload, self._addr)
        except OSError:
            return False  # systemd gone or socket unwritable: never a reason to stop the agent
        return True

    def ready(self, status: str) -> bool:
        return self.send(ready="1", status=status)

    def status(self, status: str) -> bool:
        return self.send(status=status)

    def watchdog(self) -> bool:
        return self.send(watchdog="1")

    def stopping(self) -> bool:
        return self.send(stopping="1")


def watchdog_interval_s() -> float | None:
    """Half of WatchdogSec, as systemd recommends, or None when the watchdog is off."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None
