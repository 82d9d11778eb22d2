"""A small tmpfs for full-disk tests.

Mounting needs root (``mount -t tmpfs``). Where that is not permitted the test is skipped,
except on CI (``CI=true``), where the image is expected to allow it and a skip would hide a
missing check.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """``where`` (created) mounted as a tmpfs of ``size`` (e.g. ``"24m"``) for the block."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        failure = str(exc)
    else:
        failure = "" if done.returncode == 0 else (done.stderr.strip() or "mount failed")
    if failure:
        message = f"cannot mount a tmpfs for the full-disk test: {failure}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=20)


def fill(directory: Path, leave_bytes: int) -> Path:
    """Write a filler file until only about ``leave_bytes`` are free; returns its path."""
    filler = directory / "filler"
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    with filler.open("wb") as f, contextlib.suppress(OSError):
        f.write(b"\0" * max(0, free - leave_bytes))
        f.flush()
        os.fsync(f.fileno())
    return filler
