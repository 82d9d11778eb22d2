"""The config reference, the example and the models cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

from kuat.agent.config_reference import keys, render

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "config" / "REFERENCE.md"
EXAMPLE = ROOT / "config" / "kuat.example.toml"
REGENERATE = "python -m kuat.agent.config_reference > config/REFERENCE.md"


def test_reference_is_generated_from_the_models() -> None:
    assert REFERENCE.read_text() == render(), f"config/REFERENCE.md is stale: run {REGENERATE}"


def test_every_key_says_what_it_means() -> None:
    silent = [f"{k.table}.{k.name}".lstrip(".") for k in keys() if not k.meaning.strip()]
    assert silent == [], "write a comment above these fields in agent/config.py"


def _keys_in_example() -> set[tuple[str, str]]:
    """(table, key) for every key the example writes, commented out or not."""
    shown: set[tuple[str, str]] = set()
    table = ""
    for raw in EXAMPLE.read_text().splitlines():
        line = raw.strip()
        body = line.lstrip("#").strip()
        header = re.match(r"^\[\[?([\w.]+)\]\]?", body)
        if header and (line.startswith("[") or re.match(r"^#\s*\[", line)):
            table = header.group(1)
            if "." in table:  # [a.b.c] writes key c of table a.b (a table of issuers, say)
                parent, _, last = table.rpartition(".")
                shown.add((parent, last))
            continue
        pair = re.match(r"^([\w-]+)\s*=\s*(.*)$", body)
        if pair:
            key, value = pair.groups()
            shown.add((table, key))
            for inner in re.findall(r"([\w-]+)\s*=", value.split("#")[0]):  # inline tables
                shown.add((f"{table}.{key}" if table else key, inner))
    return shown


def test_example_shows_every_key() -> None:
    shown = _keys_in_example()
    missing = [f"{k.table}.{k.name}" for k in keys() if (k.table, k.name) not in shown]
    assert missing == [], "config/kuat.example.toml leaves these keys out"
