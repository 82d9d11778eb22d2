"""Process-wide runtime settings of the agent.

A poll cycle allocates hundreds of thousands of short-lived, acyclic objects (replies, readings,
lines) that reference counting frees at once; CPython's default gen-0 threshold (700) would
still walk them many times a second for cycles that are not there. Raising it and freezing
what start-up built (modules, config, targets) cut the client CPU per 1000 polls by ~7-10 % in
bench/asic_poll.py (and by a third at 50,000 miners). Cyclic garbage (asyncio's) still waits
for the larger, rarer passes, which costs memory: at 50,000 miners a gen-0 threshold of 50,000
peaked at 388 MB, 20,000 at 297 MB, against 261 MB untuned — 20,000 keeps the 300 MB target.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable

GC_THRESHOLDS = (20_000, 10, 10)


def _libc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to give back
        return None


_TRIM = _libc_trim()

# glibc's mallopt parameter, and the size from which an allocation gets pages of its own
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024


def _libc_mallopt() -> Callable[[int, int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc
        return None


def fix_mmap_threshold() -> bool:
    """Allocations of MMAP_THRESHOLD and more get pages of their own, given back when freed.
    glibc's default starts there but raises the threshold to the size of each such block
    freed, up to 32 MB: after the first inventory JSON (19 MB at 50,000 miners) or a flush's
    batch is freed, every later one, and each list or dict of the whole farm, comes from the
    heap, whose freed middle stays with the process. Setting the threshold turns that off: at
    10,000 miners glibc's heap after a cycle was 31 MB instead of 50, its free part 6 MB instead
    of 17 (bench/farm_scale.py --heap, one run each). False where there is no glibc."""
    mallopt = _libc_mallopt()
    return mallopt is not None and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1


def release_free_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``). Objects over
    512 bytes (lines, replies, a flush's batches, most of them made in the flush's worker thread,
    whose heap glibc keeps apart) are glibc's; freed, their pages stay with the process: at
    50,000 miners up to 140 MB of glibc's heap was free within a cycle, 14 MB just after a trim
    (bench/farm_scale.py --heap; RSS after a cycle 6.6 KiB a miner against 7.3-7.5, one run
    each; the peak, inside a cycle, is not lowered). One call costs ~5-25 ms of a 200 MB heap:
    after each miner cycle and each flush that sent lines."""
    if _TRIM is not None:
        _TRIM(0)


def freeze_long_lived() -> None:
    """Move every object the collector tracks now out of its reach: called when a miner cycle
    that read miners for the first time ends (or is cut), so the per-miner state it built
    (memos, identities, curtailer records, line prefixes) is not walked again by every full
    pass. At 50,000 miners ~0.3 M objects stay frozen; a full pass still walks each cycle's
    new readings (~0.6 M objects, 440-540 ms on the shared box; bench/farm_scale.py). Frozen
    objects are still freed when their last reference goes; what is not is cyclic garbage
    already there at a freeze: once per such cycle, bounded by its leftovers."""
    gc.freeze()


def apply_gc_tuning() -> None:
    fix_mmap_threshold()
    gc.collect()
    gc.freeze()  # start-up objects live for the whole run: never scan them again
    gc.set_threshold(*GC_THRESHOLDS)
