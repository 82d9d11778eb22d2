"""The poller's minimal socket link (collectors/cgminer/client.py ``_Link``): a request the
kernel does not take in one send goes out whole and in order once the socket drains, a write
made meanwhile queues behind it, and a peer that goes away ends the exchange (no hang)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from kuat.collectors.cgminer.client import _Link


class _Proto:
    """What an exchange sees of its link: bytes in, end of file, loss."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.got = bytearray()
        self.lost: asyncio.Future[Exception | None] = loop.create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got += data

    def eof_received(self) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


def _pair() -> tuple[socket.socket, socket.socket]:
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # a send takes only part
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ours.setblocking(False)
    return ours, peer


async def test_a_request_the_kernel_takes_in_parts_arrives_whole_and_in_order() -> None:
    loop = asyncio.get_running_loop()
    ours, peer = _pair()
    proto = _Proto(loop)
    link = _Link(loop, ours, proto)  # type: ignore[arg-type]
    first = bytes(range(256)) * 2048  # 512 KiB: far over the socket buffers
    second = b"|and then this"
    link.write(first)
    assert link._out, "the kernel took it whole: the test would not test the partial path"
    link.write(second)  # queued behind what is still waiting, not sent ahead of it
    peer.setblocking(False)
    received = bytearray()
    want = len(first) + len(second)
    for _ in range(10_000):
        try:
            received += peer.recv(65536)
        except BlockingIOError:
            await asyncio.sleep(0.001)
        if len(received) >= want:
            break
    assert bytes(received) == first + second
    assert not link._out  # drained: the link no longer watches for writability
    peer.sendall(b"reply")
    peer.close()
    assert await asyncio.wait_for(proto.lost, 5) is None
    assert bytes(proto.got) == b"reply" and link.is_closing()


async def test_a_peer_gone_while_a_request_waits_ends_the_exchange() -> None:
    loop = asyncio.get_running_loop()
    ours, peer = _pair()
    proto = _Proto(loop)
    link = _Link(loop, ours, proto)  # type: ignore[arg-type]
    link.write(b"x" * (1 << 20))
    assert link._out
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()  # reset with unread data: the next send fails
    lost = await asyncio.wait_for(proto.lost, 5)
    assert link.is_closing()
    assert lost is None or isinstance(lost, OSError)
