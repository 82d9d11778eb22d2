"""Find the line of a key path in TOML text, so a config problem can say where it is.

tomllib keeps no positions, so this scans headers and ``key =`` lines, tracking which
``[[array]]`` element each table belongs to. It is a locator, not a parser: when it cannot
place a key exactly it answers with the nearest enclosing table, or None.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=")

Path = tuple[str | int, ...]


def _split(dotted: str) -> list[str]:
    return [p.strip().strip('"') for p in dotted.split(".")]


def index_lines(text: str) -> dict[Path, int]:
    lines: dict[Path, int] = {}
    last_index: dict[Path, int] = {}  # resolved path of an array of tables -> its last element
    current: Path = ()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(raw)
        if header:
            is_array = header.group(1) == "[["
            resolved: list[str | int] = []
            parts = _split(header.group(2))
            for i, part in enumerate(parts):
                resolved.append(part)
                last = i == len(parts) - 1
                key = tuple(resolved)
                if last and is_array:
                    last_index[key] = last_index.get(key, -1) + 1
                    resolved.append(last_index[key])
                elif key in last_index:
                    resolved.append(last_index[key])
            current = tuple(resolved)
            lines.setdefault(current, lineno)
            continue
        key_match = _KEY.match(raw)
        if key_match and not raw.lstrip().startswith("#"):
            lines.setdefault((*current, *_split(key_match.group(1))), lineno)
    return lines


def locate(text: str, loc: Path) -> int | None:
    """Line of ``loc`` (or of its nearest enclosing key or table) in ``text``; None if unknown."""
    table = index_lines(text)
    for n in range(len(loc), 0, -1):
        if loc[:n] in table:
            return table[loc[:n]]
    return None
