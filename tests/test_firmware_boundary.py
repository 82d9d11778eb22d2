"""Firmware knowledge lives in the backends (collectors/cgminer/firmware/): agent/ and quota/ name
no firmware, so adding one touches its backend, its simulator personality and its case folders.

Every member of the Firmware enum is looked for in every source file of agent/ and quota/ (code,
strings and comments alike, any case, as a word or part of an identifier: ``vnish_password``
counts). Texts a person reads (the gettext catalogs) may name a firmware; they are not .py files.
"""

from __future__ import annotations

import re
from pathlib import Path

from kuat.collectors.cgminer.firmware import Firmware

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("agent", "quota")

# "cgminer" is also the name of the miners' API protocol and of the collectors' package: those
# uses are not the firmware member (an unknown cgminer derivative).
NOT_THE_MEMBER = re.compile(r"collectors[./]cgminer|cgminer(?:[- ]family)? API|cgminer-family")

# (file, member) -> why it may stand there. Keep it short: each entry is a place a new firmware
# might have to be added by hand.
ALLOWED: dict[tuple[str, Firmware], str] = {
    ("agent/demo.py", Firmware.WHATSMINER): "the demo farm's mix names simulator personalities",
    ("agent/demo.py", Firmware.LUXOS): "the demo farm's mix names simulator personalities",
    ("agent/demo.py", Firmware.BRAIINS): "the demo farm's mix names simulator personalities",
}


def _pattern(member: Firmware) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z]){re.escape(member.value)}(?![a-z])", re.IGNORECASE)


def mentions() -> dict[tuple[str, Firmware], list[int]]:
    """(file, member) -> the line numbers that name it."""
    found: dict[tuple[str, Firmware], list[int]] = {}
    patterns = {m: _pattern(m) for m in Firmware}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                line = NOT_THE_MEMBER.sub("", line)
                for member, pattern in patterns.items():
                    if pattern.search(line):
                        found.setdefault((rel, member), []).append(n)
    return found


def test_agent_and_quota_name_no_firmware() -> None:
    unexpected = {
        f"{path}:{lines} names {member.value}"
        for (path, member), lines in mentions().items()
        if (path, member) not in ALLOWED
    }
    assert not unexpected, (
        "firmware knowledge belongs to its backend (declare it there, pass it in as data): "
        + "; ".join(sorted(unexpected))
    )


def test_the_allowlist_is_still_needed() -> None:
    stale = set(ALLOWED) - set(mentions())
    assert not stale, f"no longer named, drop from ALLOWED: {sorted(stale)}"


def test_the_search_sees_an_identifier_built_on_a_firmware_name() -> None:
    # the check itself: a key such as vnish_password counts, a longer word does not
    assert _pattern(Firmware.VNISH).search("c.vnish_password.get()")
    assert _pattern(Firmware.EPIC).search("ePIC UMC")
    assert not _pattern(Firmware.EPIC).search("epicentre")
    cgminer = _pattern(Firmware.CGMINER)
    assert not cgminer.search(NOT_THE_MEMBER.sub("", "kuat.collectors.cgminer: the cgminer API"))
    assert cgminer.search(NOT_THE_MEMBER.sub("", 'family == "cgminer"'))
