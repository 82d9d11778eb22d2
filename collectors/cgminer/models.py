"""Model table (data in models.toml): nameplate hashrate and unit quirks per model."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

_VENDOR_WORDS = re.compile(
    r"\b(bitmain|antminer|microbt|whatsminer|canaan|avalonminer|avalon|auradine|teraflux)\b"
)
_SUFFIX = re.compile(r"(_.*|v\d\d.*)$")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    nominal_ths: float | None = None
    ghs_key_unit: str = "GH"
    nominal_w: float | None = None


def normalise(model: str) -> str:
    """'Antminer S19 Pro' -> 's19pro'; 'M60S_VK40' -> 'm60s'; 'M31S+V20' -> 'm31s+';
    'Antminer S21 XP Hyd.' -> 's21xphyd' (S21-era firmware abbreviates with a dot)."""
    text = _VENDOR_WORDS.sub("", model.lower())
    text = text.replace(" ", "").replace(".", "")
    return _SUFFIX.sub("", text)


@cache
def _table() -> dict[str, ModelInfo]:
    raw = tomllib.loads(resources.files(__package__).joinpath("models.toml").read_text("utf-8"))
    return {
        key: ModelInfo(
            nominal_ths=v.get("nominal_ths"),
            ghs_key_unit=v.get("ghs_key_unit", "GH"),
            nominal_w=v.get("nominal_w"),
        )
        for key, v in raw["models"].items()
    }


@lru_cache(maxsize=4096)
def lookup(model: str | None) -> ModelInfo | None:
    # every reading asks: a farm has a handful of models, so the two regexes run once each
    if not model:
        return None
    return _table().get(normalise(model))


def estimated_power_w(model: str | None, hashrate_ths: float | None) -> float | None:
    """Spec-sheet power scaled by how hard the miner hashes now, for a miner that reports none.

    An estimate for planning only: the energy books use the meter, never this.
    """
    info = lookup(model)
    if info is None or info.nominal_w is None:
        return None
    if hashrate_ths is None or not info.nominal_ths:
        return info.nominal_w
    # Fans and control boards draw even when hashboards idle; clamp to a sane band.
    return info.nominal_w * min(max(hashrate_ths / info.nominal_ths, 0.05), 1.2)
