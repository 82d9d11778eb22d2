"""Read planning, pure: which Modbus requests fetch a profile's registers.

Fewer requests matter on a meter: an RS485 gateway at 9600 baud spends ~40 ms per round trip,
and a site polls its meters every 1–5 s. So neighbouring registers are merged into one read,
bridging gaps of any size by default (over the 11 shipped maps: 19 reads instead of 32 at a
16-register gap limit) — but some meters refuse a read that touches an unmapped register
(exception 2, illegal data address). When that happens the block is split at its largest gap
and each half retried, down to single spans; a span that still fails is simply not there. The
poller remembers per device the reads that succeeded, so only its first poll pays for probing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MAX_READ = 125

Span = tuple[int, int, int]  # (function code, address, register count)


@dataclass(frozen=True, slots=True)
class Block:
    """One read request covering one or more spans."""

    fc: int
    addr: int
    count: int
    spans: tuple[Span, ...]

    @property
    def end(self) -> int:  # exclusive
        return self.addr + self.count

    def describe(self) -> str:
        last = self.end - 1
        where = f"register {self.addr}" if last == self.addr else f"registers {self.addr}..{last}"
        return f"{where} (FC{self.fc})"


def _block(spans: list[Span]) -> Block:
    fc = spans[0][0]
    start = min(s[1] for s in spans)
    end = max(s[1] + s[2] for s in spans)
    return Block(fc=fc, addr=start, count=end - start, spans=tuple(spans))


def plan(
    spans: Iterable[Span], *, max_gap: int = MAX_READ, max_count: int = MAX_READ
) -> list[Block]:
    """Group spans into as few reads as possible.

    A new block starts when the next span would leave more than ``max_gap`` unused registers
    or push the block past ``max_count`` registers. Overlapping spans share a block.
    """
    if not 1 <= max_count <= MAX_READ:
        raise ValueError(f"max_count must be 1..{MAX_READ}")
    if max_gap < 0:
        raise ValueError("max_gap must be >= 0")
    blocks: list[Block] = []
    ordered = sorted(set(spans))  # by function code, then address
    current: list[Span] = []
    cur_start = cur_end = 0
    for span in ordered:
        fc, addr, count = span
        if count > max_count:
            raise ValueError(f"span at {addr} has {count} registers, over max_count {max_count}")
        if current and (
            fc != current[0][0]
            or addr - cur_end > max_gap
            or max(cur_end, addr + count) - cur_start > max_count
        ):
            blocks.append(_block(current))
            current = []
        if not current:
            cur_start, cur_end = addr, addr + count
        current.append(span)
        cur_end = max(cur_end, addr + count)
    if current:
        blocks.append(_block(current))
    return blocks


def split(block: Block) -> list[Block]:
    """Two smaller blocks after ``block`` answered exception 2; [] when it is a single span.

    The cut goes at the widest gap between spans, because an unmapped register is most likely
    in a gap; a block without gaps is halved.
    """
    spans = sorted(block.spans)
    if len(spans) < 2:
        return []
    best_i, best_gap = len(spans) // 2, -1
    end = spans[0][1] + spans[0][2]
    for i in range(1, len(spans)):
        gap = spans[i][1] - end
        if gap > best_gap:
            best_i, best_gap = i, gap
        end = max(end, spans[i][1] + spans[i][2])
    if best_gap <= 0:
        best_i = len(spans) // 2
    return [_block(spans[:best_i]), _block(spans[best_i:])]
