"""An SNMPv2c manager on one UDP socket: GET and GETBULK for the PDU poll's hot path.

One ``V2cClient`` per poller and event loop sends every v2c request of every PDU from one
socket and matches answers by request-id, address and community. It replaces pysnmp's
engine for v2c reads only (see ber.py for why); pysnmp still serves SNMPv3 and SET.

Timing matches pysnmp's: each attempt waits its full timeout, then the same request is sent
again, ``retries`` times. An answer that arrives after its request gave up, from another
address, or with another community, is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import random
import socket
from typing import Any

from kuat.collectors.errors import KuatError
from kuat.collectors.snmp.ber import BerError, Response, decode_response, encode_request

__all__ = ["NO_RESPONSE", "Address", "NoResponse", "V2cClient", "resolve"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
# pysnmp's words for a timeout, kept so causes read the same whichever stack asked
NO_RESPONSE = "No SNMP response received before timeout"
# Every PDU's answers land on one socket: a farm's polls in flight at once (4 walks x 500 PDUs,
# ~1.4 kB each) would overflow a default receive buffer and turn into retries
_RECEIVE_BUFFER = 4 * 1024 * 1024


class NoResponse(KuatError):
    """Every attempt of a request timed out; the message says so (and what else arrived)."""


async def resolve(host: str, port: int) -> Address:
    """The IPv4 address to send to (pysnmp's UDP target is IPv4 too); OSError if none."""
    try:
        return str(ipaddress.IPv4Address(host)), port
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
    )
    if not infos:
        raise OSError(f"no IPv4 address for {host}")
    return str(infos[0][4][0]), port


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: V2cClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client._received(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:  # ICMP errors: the attempt times out
        log.debug("snmp socket: %s", exc)


class V2cClient:
    """Sends v2c requests and awaits their Response; one socket, opened on first use."""

    def __init__(self) -> None:
        self._transport: asyncio.DatagramTransport | None = None
        self._opening = asyncio.Lock()
        # request-id -> (address, community, waiter)
        self._pending: dict[int, tuple[Address, bytes, asyncio.Future[Response]]] = {}
        self._ids = itertools.count(random.randrange(1, 2**30))
        self._garbled: dict[Address, str] = {}  # the last undecodable datagram, per sender

    async def _socket(self) -> asyncio.DatagramTransport:
        if self._transport is not None:
            return self._transport
        async with self._opening:  # concurrent first requests share one socket
            if self._transport is None:
                transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
                    lambda: _Protocol(self), family=socket.AF_INET
                )
                sock = transport.get_extra_info("socket")
                with contextlib.suppress(OSError):  # the kernel caps it at net.core.rmem_max
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
                self._transport = transport
            return self._transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        for *_, waiter in self._pending.values():  # their polls end as DeviceErrors
            if not waiter.done():
                waiter.set_exception(NoResponse("the poller was closed"))
        self._pending.clear()

    def _received(self, data: bytes, addr: Address) -> None:
        try:
            response = decode_response(data)
        except BerError as exc:
            self._garbled[addr] = str(exc)
            log.debug("snmp: undecodable datagram from %s:%d: %s", *addr, exc)
            return
        pending = self._pending.get(response.request_id)
        if pending is None:
            return  # its request already gave up, or never was ours
        sent_to, community, waiter = pending
        if addr != sent_to or response.community != community or waiter.done():
            return
        waiter.set_result(response)

    async def request(
        self,
        addr: Address,
        community: bytes,
        pdu: int,
        oids: list[bytes],
        *,
        timeout_s: float,
        retries: int,
        max_repetitions: int = 0,
        non_repeaters: int = 0,
    ) -> Response:
        """Send one GET/GETBULK and return its Response; ``NoResponse`` after every attempt
        timed out. Cancellation (a poll's deadline) stops it at once."""
        transport = await self._socket()
        request_id = next(self._ids) & 0x7FFFFFFF
        message = encode_request(
            pdu,
            request_id,
            community,
            oids,
            non_repeaters=non_repeaters,
            max_repetitions=max_repetitions,
        )
        loop = asyncio.get_running_loop()
        try:
            for _ in range(retries + 1):
                waiter: asyncio.Future[Response] = loop.create_future()
                self._pending[request_id] = (addr, community, waiter)
                transport.sendto(message, addr)
                try:
                    async with asyncio.timeout(timeout_s):
                        return await waiter
                except TimeoutError:
                    continue
        finally:
            self._pending.pop(request_id, None)
        garbled = self._garbled.pop(addr, None)
        unreadable = f"; what {addr[0]} sent could not be read: {garbled}" if garbled else ""
        raise NoResponse(NO_RESPONSE + unreadable)
