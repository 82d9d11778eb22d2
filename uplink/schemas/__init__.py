"""JSON Schemas (draft 2020-12) of the register's MQTT payloads, one file per version."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["load"]


@cache
def load(name: str) -> dict[str, Any]:
    """A schema by file stem, e.g. ``load("inventory.v1")``."""
    schema: dict[str, Any] = json.loads(
        resources.files(__name__).joinpath(f"{name}.json").read_text("utf-8")
    )
    return schema
