"""The HDLC side (IEC 62056-46) of the DLMS meter simulator: what a meter on a serial line, or
behind a serial-to-TCP gateway, speaks.

Its framing is written here from the standard, not taken from the client's library, so a
client bug in framing, addressing, sequence numbers or segmentation shows up as a failed test
instead of being mirrored: SNRM → UA (with the link parameters a meter states), I-frames with
send/receive sequence numbers, segmented APDUs both ways (each segment acknowledged with RR, a
window of one), DISC → UA. A frame for another address on the line is ignored, as a meter on a
multi-drop bus ignores it; a frame whose check sequence is wrong is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dlms_cosem.crc import CRCCCITT

__all__ = ["HdlcLink", "encode_frame"]

FLAG = 0x7E
_CRC = CRCCCITT()
MAX_INFO = 128  # the default maximum information field, both ways (what the UA states)
_LLC_REQUEST = b"\xe6\xe6\x00"
_LLC_RESPONSE = b"\xe6\xe7\x00"
_SNRM, _DISC, _UA, _DM = 0x83, 0x43, 0x63, 0x0F  # without the poll/final bit
_PF = 0x10
# the link parameters a meter answers SNRM with: max information field 128 both ways, window 1
_UA_INFO = bytes.fromhex("818012050180060180070400000001080400000001")


def _crc(data: bytes) -> bytes:
    out: bytes = _CRC.calculate_for(data)
    return out


def encode_frame(
    dest: bytes, src: bytes, control: int, info: bytes = b"", segmented: bool = False
) -> bytes:
    """One frame: format, addresses, control, [HCS, information], FCS, between flags."""
    length = 2 + len(dest) + len(src) + 1 + (2 + len(info) if info else 0) + 2
    fmt = 0xA000 | (0x0800 if segmented else 0) | length
    header = fmt.to_bytes(2, "big") + dest + src + bytes([control])
    body = header + (_crc(header) + info if info else b"")
    return bytes([FLAG]) + body + _crc(body) + bytes([FLAG])


@dataclass(frozen=True)
class Frame:
    dest: bytes  # as on the wire: the meter's address
    src: bytes  # the client's address
    control: int
    info: bytes
    segmented: bool

    @property
    def client(self) -> int:
        return self.src[0] >> 1

    def server(self) -> tuple[int, int | None]:
        """(logical, physical) of the destination address."""
        d = self.dest
        if len(d) == 1:
            return d[0] >> 1, None
        if len(d) == 2:
            return d[0] >> 1, d[1] >> 1
        return (d[0] >> 1) << 7 | d[1] >> 1, (d[2] >> 1) << 7 | d[3] >> 1


def _address(data: bytes, at: int) -> bytes | None:
    """An address field starting at ``at``: bytes up to the one with its low bit set (1, 2 or
    4 of them)."""
    for n in (1, 2, 4):
        if at + n <= len(data) and data[at + n - 1] & 1:
            return (
                bytes(data[at : at + n]) if all(not b & 1 for b in data[at : at + n - 1]) else None
            )
    return None


def decode_frame(frame: bytes) -> Frame | None:
    """A frame between its flags, or None when it is not a well-formed, intact frame."""
    if len(frame) < 9 or frame[0] != FLAG or frame[-1] != FLAG:
        return None
    body = frame[1:-1]
    fmt = int.from_bytes(body[:2], "big")
    if fmt >> 12 != 0xA or fmt & 0x7FF != len(body):
        return None
    if _crc(bytes(body[:-2])) != bytes(body[-2:]):
        return None
    dest = _address(body, 2)
    if dest is None:
        return None
    src = _address(body, 2 + len(dest))
    if src is None or len(src) != 1:
        return None
    at = 2 + len(dest) + 1
    control = body[at]
    rest = body[at + 1 : -2]
    info = b""
    if rest:
        header = bytes(body[: at + 1])
        if len(rest) < 2 or _crc(header) != bytes(rest[:2]):
            return None
        info = bytes(rest[2:])
    return Frame(dest, src, control, info, bool(fmt & 0x0800))


class HdlcLink:
    """One HDLC connection (a TCP connection to the "gateway", or the serial line).

    ``answer(apdu, client_address)`` is the meter: the response APDU, or None to stay silent.
    ``accepts(logical, physical)`` says whether an address is this meter's.
    """

    def __init__(
        self,
        read: Callable[[int], Awaitable[bytes]],
        write: Callable[[bytes], Awaitable[None]],
        answer: Callable[[bytes, int], bytes | None],
        accepts: Callable[[int, int | None], bool],
        on_disconnect: Callable[[], None],
    ) -> None:
        self._read = read
        self._write = write
        self._answer = answer
        self._accepts = accepts
        self._on_disconnect = on_disconnect
        self.connected = False
        self.vs = 0  # the meter's next send sequence number
        self.vr = 0  # the send sequence number expected next from the client
        self._incoming = b""  # a segmented request so far
        self._outgoing: list[bytes] = []  # segments of a response not sent yet
        self._reply_to: tuple[bytes, bytes] = (b"", b"")

    async def next_frame(self) -> bytes:
        """The bytes of one frame, found by its flag and its length (IEC 62056-46 does no
        byte stuffing: a flag inside a frame is data, the format field's length says where
        the frame ends)."""
        while True:
            first = await self._read(1)
            if first[0] != FLAG:
                continue
            fmt = await self._read(2)
            if fmt[0] == FLAG:  # two flags in a row (a closing and an opening one)
                fmt = fmt[1:] + await self._read(1)
            length = int.from_bytes(fmt, "big") & 0x7FF
            if fmt[0] >> 4 != 0xA or length < 7:
                continue
            return bytes([FLAG]) + fmt + await self._read(length - 2 + 1)

    async def serve(self) -> None:
        while True:
            frame = decode_frame(await self.next_frame())
            if frame is None:
                continue  # a damaged frame is dropped; the client's timeout covers it
            if not self._accepts(*frame.server()):
                continue  # another meter's frame on a shared line
            self._reply_to = (frame.src, frame.dest)
            await self._frame(frame)

    async def _send(self, control: int, info: bytes = b"", segmented: bool = False) -> None:
        src, dest = self._reply_to
        await self._write(encode_frame(src, dest, control, info, segmented))

    async def _frame(self, frame: Frame) -> None:
        c = frame.control
        if c & ~_PF == _SNRM:
            self.connected, self.vs, self.vr = True, 0, 0
            self._incoming, self._outgoing = b"", []
            await self._send(_UA | _PF, _UA_INFO)
            return
        if c & ~_PF == _DISC:
            was = self.connected
            self.connected = False
            self._on_disconnect()
            await self._send((_UA if was else _DM) | _PF)
            return
        if not self.connected:
            await self._send(_DM | _PF)
            return
        if c & 1 == 0:  # I-frame
            ns, nr = (c >> 1) & 7, (c >> 5) & 7
            if ns != self.vr or nr != self.vs:
                raise ConnectionError(f"sequence numbers N(S)={ns} N(R)={nr}")
            self.vr = (self.vr + 1) % 8
            self._incoming += frame.info
            if frame.segmented:
                await self._send(0x01 | _PF | self.vr << 5)  # RR: send the next segment
                return
            request, self._incoming = self._incoming, b""
            if not request.startswith(_LLC_REQUEST):
                raise ConnectionError("I-frame without the LLC header")
            out = self._answer(request[3:], frame.client)
            if out is None:
                return
            data = _LLC_RESPONSE + out
            self._outgoing = [data[i : i + MAX_INFO] for i in range(0, len(data), MAX_INFO)]
            await self._next_segment()
            return
        if c & 0x0F == 0x01:  # RR: the client has taken a segment and wants the next
            if self._outgoing:
                await self._next_segment()
            return

    async def _next_segment(self) -> None:
        chunk = self._outgoing.pop(0)
        control = self.vs << 1 | _PF | self.vr << 5
        self.vs = (self.vs + 1) % 8
        await self._send(control, chunk, segmented=bool(self._outgoing))


def reader_of(stream: asyncio.StreamReader) -> Callable[[int], Awaitable[bytes]]:
    async def read(n: int) -> bytes:
        return await stream.readexactly(n)

    return read
