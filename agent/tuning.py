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

import gc

GC_THRESHOLDS = (20_000, 10, 10)


def freeze_long_lived() -> None:
    """Move every object the collector tracks now out of its reach: called once, when the first
    miner cycle ends (or is cut), so the per-miner state it built (memos, identities, curtailer
    records, line prefixes: ~10 objects a miner) is not walked again by every full pass. At
    50,000 miners those passes held the loop 450-780 ms each (bench/farm_scale.py, its longest
    GC pass column). Frozen objects are still freed when their last reference goes; what is not
    is cyclic garbage already there at the freeze: once, bounded by one cycle's leftovers."""
    gc.freeze()


def apply_gc_tuning() -> None:
    gc.collect()
    gc.freeze()  # start-up objects live for the whole run: never scan them again
    gc.set_threshold(*GC_THRESHOLDS)
