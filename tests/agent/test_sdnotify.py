"""systemd notify: the datagrams systemd would receive."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kuat.agent.sdnotify import Notifier, watchdog_interval_s


def test_ready_and_status_reach_the_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2)
        n = Notifier(path)
        assert n.ready("polling 3 miners")
        assert sock.recv(4096) == b"READY=1\nSTATUS=polling 3 miners"
        assert n.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_without_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and not n.ready("x")


def test_watchdog_interval_is_half(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_s() == 60.0
