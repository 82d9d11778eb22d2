"""The agent's process settings (agent/tuning.py)."""

from __future__ import annotations

import ctypes.util

import pytest

from kuat.agent import tuning


@pytest.mark.skipif(ctypes.util.find_library("c") is None, reason="no C library to tune")
def test_mmap_threshold_is_fixed_on_glibc() -> None:
    # glibc answers 1 when it takes the setting; elsewhere (musl, macOS) there is no mallopt
    # or it refuses, and the agent runs untuned
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert tuning.fix_mmap_threshold() is True
