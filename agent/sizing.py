"""How many miners to poll at once: enough that a cycle fits its interval even when every miner
answers at its deadline, no more than the process may hold open, and not wastefully many."""

from __future__ import annotations

import math
import resource

# A cycle should finish in this share of its interval, leaving room for the other jobs.
BUDGET_SHARE = 0.6
MIN_CONCURRENCY = 16
# Sockets this process may spend on miners: the rest of the fd limit is for the spool, the
# uplinks, the meters and the PDUs.
FD_SHARE = 0.5


def asic_concurrency(targets: int, timeout_s: float, interval_s: float) -> int:
    """Concurrency for ``targets`` miners: the worst case (every poll hits ``timeout_s``) must
    fit ``BUDGET_SHARE`` of ``interval_s``."""
    if targets <= 0:
        return MIN_CONCURRENCY
    budget = max(interval_s * BUDGET_SHARE, timeout_s)
    waves = max(1, math.floor(budget / timeout_s))  # rounds of deadline-long polls that fit
    need = math.ceil(targets / waves)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = max(MIN_CONCURRENCY, int(soft * FD_SHARE)) if soft > 0 else 10_000
    return max(MIN_CONCURRENCY, min(need, ceiling, targets))


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one (allowed without privileges)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
        except (ValueError, OSError):
            return soft
    return soft
