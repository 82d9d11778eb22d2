"""How kuat may reach each firmware's miners: ports, accounts and passwords, as the backends
declare them.

Every backend module (collectors/cgminer/firmware/<name>/) declares the ``Credential``s it
reads, with their factory defaults; ``MinerAccess`` takes exactly those names, so a new firmware
adds its own by declaring them, and nothing here changes. A site overrides only what it changed
(``[asic]`` in the config). Passwords stay out of every repr.

    access = MinerAccess(web_password="s3cret", braiins_web_port=8080)
    access.web_port        # 80, the declared default
    MinerAccess(nope=1)    # TypeError naming the key no backend declares
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from kuat.collectors.cgminer.firmware import Firmware, declarations
from kuat.collectors.cgminer.firmware.common import Credential


@functools.cache
def declared() -> Mapping[str, Credential]:
    """Every credential the backends declare, by name."""
    found: dict[str, Credential] = {}
    for c in declarations(Credential):
        seen = found.setdefault(c.name, c)
        if seen != c:
            # one name, one meaning: a site sets it once for every backend that reads it
            raise ValueError(f"credential {c.name!r} is declared twice, differently")
    return found


@functools.cache
def by_firmware() -> Mapping[Firmware, Mapping[str, Credential]]:
    """The credentials a site sets per firmware (``[asic.credentials.<firmware>]``): by firmware,
    then by their key there. Shared settings (no ``firmware``) are left out."""
    out: dict[Firmware, dict[str, Credential]] = {}
    for c in declared().values():
        if c.firmware is None:
            continue
        table = out.setdefault(c.firmware, {})
        if c.key in table or not c.key:
            raise ValueError(f"credential {c.name!r}: key {c.key!r} is empty or taken")
        table[c.key] = c
    return {f: out[f] for f in Firmware if f in out}


def web_ports() -> frozenset[str]:
    """The MinerAccess names of every HTTP API port (a probe's --web-port sets them all)."""
    return frozenset(c.name for c in declared().values() if c.port == "web")


class MinerAccess:
    """A value object: one setting per declared credential, the rest at their defaults."""

    __slots__ = ("_values",)
    _values: dict[str, Any]

    def __init__(self, **given: Any) -> None:
        known = declared()
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise TypeError(f"MinerAccess: no firmware backend declares {', '.join(unknown)}")
        values = {name: c.default for name, c in known.items()}
        values.update(given)
        object.__setattr__(self, "_values", values)

    @staticmethod
    def names() -> frozenset[str]:
        return frozenset(declared())

    @staticmethod
    def default(name: str) -> Any:
        return declared()[name].default

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"MinerAccess has no {name!r} (no backend declares it)") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("MinerAccess is read-only: make a new one with replace()")

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def replace(self, **changes: Any) -> MinerAccess:
        return MinerAccess(**{**self._values, **changes})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MinerAccess) and other._values == self._values

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items(), key=lambda kv: kv[0])))

    def __repr__(self) -> str:
        known = declared()
        shown = ", ".join(
            f"{k}={v!r}" for k, v in sorted(self._values.items()) if not known[k].secret
        )
        return f"MinerAccess({shown})"
