"""The lines a DLMS meter answers on: the TCP wrapper, HDLC through a TCP gateway, HDLC on a
serial line (RS-485 or the optical port's converter).

``dlms-cosem`` brings the framing; what is here fixes the parts of its I/O a field meter
exposes. Its blocking TCP read spins forever on a socket the peer has shut; its serial read
returns nothing at a timeout and its HDLC layer then waits for ever; its HDLC reader takes a
flag byte inside a frame for the frame's end; and its HDLC server address drops a zero upper
byte of a four-byte address (a meter whose physical address is above 127, as
serial-number-derived addresses are, was addressed with three bytes and never answered). Each
read here is bounded by the session's deadline, and ``abort`` unblocks a read from another
thread at once.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import serial
from dlms_cosem import exceptions
from dlms_cosem.hdlc import state as hdlc_state
from dlms_cosem.hdlc.address import HdlcAddress
from dlms_cosem.hdlc.frames import HDLC_FLAG as FLAG
from dlms_cosem.io import BlockingTcpIO, HdlcTransport, TcpTransport

__all__ = ["SerialIO", "TcpIO", "hdlc_transport", "server_hdlc_address", "wrapper_transport"]


class TcpIO(BlockingTcpIO):
    """dlms-cosem's blocking TCP I/O, but a closed connection is an error: its own ``recv``
    spins forever on the empty reads of a socket the peer (or ``abort``) has shut."""

    def recv(self, amount: int = 1) -> bytes:
        sock = self.tcp_socket
        if sock is None:
            raise exceptions.CommunicationError("not connected")
        data = b""
        while len(data) < amount:
            try:
                chunk = sock.recv(amount - len(data))
            except OSError as exc:
                raise exceptions.CommunicationError("could not receive") from exc
            if not chunk:
                raise exceptions.CommunicationError("connection closed by the meter")
            data += chunk
        return data

    @property
    def is_open(self) -> bool:
        return self.tcp_socket is not None

    def abort(self) -> None:
        sock = self.tcp_socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class SerialIO:
    """A serial line (pyserial) whose reads end at the session's deadline with an error —
    dlms-cosem's own returns an empty read at its timeout and its HDLC layer asks again,
    for ever, so a silent meter held its worker thread."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int,
        parity: str,
        stopbits: int,
        bytesize: int,
        deadline_s: float,
    ) -> None:
        self.port = port
        self.settings = {
            "baudrate": baudrate,
            "parity": parity,
            "stopbits": stopbits,
            "bytesize": bytesize,
        }
        self.deadline = time.monotonic() + deadline_s
        self.serial: serial.Serial | None = None
        self.aborted = False

    def connect(self) -> None:
        try:
            self.serial = serial.Serial(self.port, timeout=0.1, **self.settings)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise exceptions.CommunicationError(f"cannot open {self.port}: {exc}") from exc
        # bytes left on the line by an earlier, aborted session are not this session's answer
        self.serial.reset_input_buffer()

    def disconnect(self) -> None:
        if self.serial is not None:
            with contextlib.suppress(Exception):
                self.serial.close()
        self.serial = None

    def send(self, data: bytes) -> None:
        if self.serial is None:
            raise exceptions.CommunicationError("serial line not open")
        try:
            self.serial.write(data)
        except (serial.SerialException, OSError) as exc:
            raise exceptions.CommunicationError(f"cannot write to {self.port}") from exc

    def _read(self, take: Any) -> bytes:
        if self.serial is None:
            raise exceptions.CommunicationError("serial line not open")
        left = self.deadline - time.monotonic()
        if left <= 0 or self.aborted:
            raise exceptions.CommunicationError("no answer") from TimeoutError()
        self.serial.timeout = left
        try:
            data: bytes = take(self.serial)
        except (serial.SerialException, OSError) as exc:
            raise exceptions.CommunicationError(f"cannot read from {self.port}") from exc
        return data

    def recv(self, amount: int = 1) -> bytes:
        data = self._read(lambda s: s.read(amount))
        if len(data) < amount:
            raise exceptions.CommunicationError("no answer") from TimeoutError()
        return data

    def recv_until(self, end: bytes) -> bytes:
        data = self._read(lambda s: s.read_until(end))
        if not data.endswith(end):
            raise exceptions.CommunicationError("no answer") from TimeoutError()
        return data

    @property
    def is_open(self) -> bool:
        return self.serial is not None

    def abort(self) -> None:
        """From another thread: end a blocked read now."""
        self.aborted = True
        s = self.serial
        if s is not None:
            with contextlib.suppress(Exception):
                s.cancel_read()


def server_hdlc_address(logical: int, physical: int | None) -> HdlcAddress:
    """The meter's HDLC address in the form IEC 62056-46 gives it: one byte (logical only),
    two (logical and physical, both below 128) or four. dlms-cosem leaves out every zero byte
    unless told the address is extended — and then keeps them in every form — so the
    four-byte form is asked for exactly when a part needs it."""
    four = physical is not None and max(logical, physical) > 127
    return HdlcAddress(
        logical_address=logical,
        physical_address=physical,
        address_type="server",
        extended_addressing=four,
    )


class _Hdlc(HdlcTransport):
    """dlms-cosem's HDLC transport, with frames read by their length.

    Its own reader takes a frame to end at the next flag byte. IEC 62056-46 does no byte
    stuffing, so a flag inside a frame (in ciphered data, or as the last byte of the check
    sequence, one frame in 128) was taken for the end: the real closing flag was then read as
    the opening one of a next frame that never came, and the session hung to its deadline.
    """

    def recv_frame(self) -> bytes:
        """One whole frame, opening flag to closing flag, by the format field's length."""
        while True:
            if self.io.recv(1) != FLAG:
                continue  # noise between frames
            fmt = self.io.recv(2)
            while fmt[:1] == FLAG:  # a closing flag followed by an opening one
                fmt = fmt[1:] + self.io.recv(1)
            length = int.from_bytes(fmt, "big") & 0x7FF
            if fmt[0] >> 4 != 0xA or length < 7:
                continue
            frame: bytes = FLAG + fmt + self.io.recv(length - 1)
            return frame

    def next_event(self) -> Any:
        conn = self.hdlc_connection
        while True:
            event = conn.next_event()
            if event is not hdlc_state.NEED_DATA:
                return event
            # a frame that did not parse (damaged) is dropped; the next one replaces it, its
            # end known, so that a flag inside it is not searched for as its end
            frame = self.recv_frame()
            conn.buffer = bytearray(frame)
            conn.buffer_search_position = len(frame) - 1

    @property
    def server_hdlc_address(self) -> HdlcAddress:
        return server_hdlc_address(self.server_logical_address, self.server_physical_address)

    @property
    def client_hdlc_address(self) -> HdlcAddress:
        # a client address is always one byte, whatever the server's form
        return HdlcAddress(self.client_logical_address, None, "client")


def hdlc_transport(client: int, server: int, physical: int | None, io: Any) -> Any:
    return _Hdlc(
        client_logical_address=client,
        server_logical_address=server,
        server_physical_address=physical,
        io=io,
    )


def wrapper_transport(client: int, server: int, io: Any) -> Any:
    return TcpTransport(client_logical_address=client, server_logical_address=server, io=io)
