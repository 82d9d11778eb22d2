"""Exit codes of the ``kuat`` commands, for monitoring checks and scripts (README: "Exit codes").

One table for every command, so a check script can tell "kuat could not run" from "kuat ran and
found the farm out of order". ``--exit-zero`` on the reporting commands keeps 0 for a run that
completed whatever it found.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Exit(enum.IntEnum):
    OK = 0
    #: a device did not answer or answered garbage (probe), or the command itself failed
    DEVICE = 1
    #: usage or configuration error: nothing was run
    CONFIG = 2
    #: the run completed and a check failed: item 5 or 7 "fail", or the quota "over"
    CHECK_FAILED = 3
    #: the run completed, the checks did not fail, and devices did not answer
    DEVICES_DOWN = 4


FAILING = {"fail", "over"}


def for_findings(statuses: Iterable[str | None], devices_down: int) -> Exit:
    """The exit code of a completed run: a failed check outranks devices down."""
    if any(s in FAILING for s in statuses if s):
        return Exit.CHECK_FAILED
    if devices_down > 0:
        return Exit.DEVICES_DOWN
    return Exit.OK
