"""Model table (data in models.toml): nameplate hashrate and unit quirks per model."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

_VENDOR_WORDS = re.compile(r"\b(bitmain|antminer|microbt|whatsminer|canaan|avalonminer|avalon)\b")
_SUFFIX = re.compile(r"(_.*|v\d\d.*)$")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    nominal_ths: float | None = None
    ghs_key_unit: str = "GH"


def normalise(model: str) -> str:
    """'Antminer S19 Pro' -> 's19pro'; 'M60S_VK40' -> 'm60s'; 'M31S+V20' -> 'm31s+'."""
    text = _VENDOR_WORDS.sub("", model.lower())
    text = text.replace(" ", "")
    return _SUFFIX.sub("", text)


@cache
def _table() -> dict[str, ModelInfo]:
    raw = tomllib.loads(resources.files(__package__).joinpath("models.toml").read_text("utf-8"))
    return {
        key: ModelInfo(nominal_ths=v.get("nominal_ths"), ghs_key_unit=v.get("ghs_key_unit", "GH"))
        for key, v in raw["models"].items()
    }


def lookup(model: str | None) -> ModelInfo | None:
    if not model:
        return None
    return _table().get(normalise(model))
