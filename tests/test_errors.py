"""One root error type: every exception class kuat defines for callers derives from KuatError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import kuat.agent
import kuat.collectors
import kuat.quota
import kuat.uplink
from kuat.agent.config import ConfigError, parse_config
from kuat.collectors.errors import KuatError
from kuat.quota.schedule import ScheduleError, parse_schedule


def _modules() -> list[str]:
    names = []
    for pkg in (kuat.agent, kuat.collectors, kuat.quota, kuat.uplink):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            names.append(info.name)
    return sorted(names)


def _public_errors() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Exception)
                and obj.__module__ == name
                and not attr.startswith("_")
            ):
                found[f"{name}.{attr}"] = obj
    return [found[k] for k in sorted(found)]


def test_every_public_error_class_derives_from_kuat_error() -> None:
    errors = _public_errors()
    assert len(errors) >= 10  # the walk found kuat's errors at all
    outside = [f"{e.__module__}.{e.__qualname__}" for e in errors if not issubclass(e, KuatError)]
    assert outside == []


def test_refusals_are_caught_as_kuat_error_and_as_before() -> None:
    with pytest.raises(KuatError):
        parse_config("[site]\nid = 1\n")
    with pytest.raises(ConfigError):
        parse_config("[site]\nid = 1\n")
    # a refused schedule is still a ValueError for existing callers
    with pytest.raises(ValueError) as err:
        parse_schedule("not a schedule", "csv")
    assert isinstance(err.value, ScheduleError) and isinstance(err.value, KuatError)
