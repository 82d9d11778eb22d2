"""Fake SNMPv2c agents on loopback for the client's tests: a bare UDP loop, and a small MIB
that answers GET and GETBULK as an agent does (pysnmp's responder's order), counting what it
is asked."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .ber_samples import read_request, response

Arcs = tuple[int, ...]


def arcs(oid: str) -> Arcs:
    return tuple(int(a) for a in oid.split("."))


@contextmanager
def serve_udp(handle: Callable[[bytes], bytes | None]) -> Iterator[int]:
    """A UDP server on a loopback port, answering each datagram with ``handle(data)``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            reply = handle(data)
            if reply is not None:
                sock.sendto(reply, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        sock.close()


class MibAgent:
    """An agent serving ``mib`` ({OID: (kind, value)}, kinds as ber_samples names them): GET,
    and GETBULK row by row as RFC 3416 lays it out, endOfMibView past the last name. It
    answers at most ``cap`` varbinds (as agents cut a reply to a size), and records every
    request as (PDU tag, max-repetitions, OIDs). ``v1_proxy``: a GETBULK that reaches the
    MIB's end is answered noSuchName, as a proxy to an SNMPv1 agent may answer it."""

    def __init__(
        self, mib: dict[str, tuple[str, Any]], cap: int = 64, *, v1_proxy: bool = False
    ) -> None:
        self.mib = mib
        self.cap = cap
        self.v1_proxy = v1_proxy
        self.requests: list[tuple[int, int, list[str]]] = []

    def _next(self, oid: Arcs) -> tuple[Arcs, str, Any]:
        after = [name for name in map(arcs, self.mib) if name > oid]
        if not after:
            return oid, "endOfMibView", None
        name = min(after)
        return (name, *self.mib[".".join(map(str, name))])

    def __call__(self, data: bytes) -> bytes:
        tag, community, request_id, non_repeaters, repetitions, oids = read_request(data)
        self.requests.append((tag, repetitions, oids))
        binds: list[tuple[Arcs, str, Any]] = []
        if tag == 0xA0:  # GET
            for oid in oids:
                kind, value = self.mib.get(oid, ("noSuchObject", None))
                binds.append((arcs(oid), kind, value))
        else:  # GETBULK: the non-repeaters' next names, then the rest's, row by row
            binds += [self._next(arcs(o)) for o in oids[:non_repeaters]]
            current = [arcs(o) for o in oids[non_repeaters:]]
            for _ in range(repetitions):
                row = [self._next(oid) for oid in current]
                binds += row
                current = [name for name, _kind, _value in row]
            ended = [i for i, (_n, kind, _v) in enumerate(binds) if kind == "endOfMibView"]
            if self.v1_proxy and ended:
                index = ended[0] % len(oids) + 1  # a column's (the non-repeaters end nowhere)
                return response(
                    [],
                    request_id=request_id,
                    community=community,
                    error_status=2,
                    error_index=index,
                )
        return response(binds[: self.cap], request_id=request_id, community=community)
