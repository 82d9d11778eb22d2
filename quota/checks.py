"""The shape shared by inspection-checklist results (items 5 and 7)."""

from __future__ import annotations

import enum


class CheckStatus(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    # the item does not apply at all (item 5: off-grid generation only); never a way to pass
    EXEMPT = "exempt"
    UNKNOWN = "unknown"  # not enough data to say; never reported as a pass
