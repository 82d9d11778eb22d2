"""The shipped systemd unit: verified by systemd, hardened, in step with the example config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "kuat.service"
EXAMPLE = ROOT / "config" / "kuat.example.toml"
INSTALL_ROOT = "/opt/kuat"  # where the README installs the clone; the unit's paths start there
MAX_EXPOSURE = 1.5


def _systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing (Debian package systemd)")
        pytest.skip("systemd-analyze is not installed")
    return exe


def _unit_here(tmp_path: Path) -> Path:
    """The unit with its install path pointed at this venv, so verify finds the binary."""
    kuat = Path(sys.executable).parent / "kuat"
    text = UNIT.read_text().replace(f"{INSTALL_ROOT}/.venv/bin/kuat", str(kuat))
    out = tmp_path / "kuat.service"
    out.write_text(text)
    return out


def test_systemd_verifies_the_unit_without_a_word(tmp_path: Path) -> None:
    exe = _systemd_analyze()
    proc = subprocess.run(
        [exe, "verify", str(_unit_here(tmp_path))], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def test_unit_exposure_is_at_most_1_5(tmp_path: Path) -> None:
    exe = _systemd_analyze()
    proc = subprocess.run(
        [exe, "security", "--offline=true", "--no-pager", str(_unit_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", proc.stdout + proc.stderr)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, proc.stdout


def _credentials_in_example() -> tuple[set[str], set[str]]:
    """Credential names the example config uses (active) and shows commented out (optional)."""
    active: set[str] = set()
    optional: set[str] = set()
    for line in EXAMPLE.read_text().splitlines():
        names = re.findall(r'\{\s*credential\s*=\s*"([^"]+)"\s*\}', line)
        code = line.split("#", 1)[0]
        for name in names:
            (active if name in code else optional).add(name)
    return active, optional - active


def _load_credentials() -> tuple[set[str], set[str]]:
    active: set[str] = set()
    commented: set[str] = set()
    for line in UNIT.read_text().splitlines():
        m = re.match(r"^(#?)LoadCredential=([^:]+):", line.strip())
        if m:
            (commented if m.group(1) else active).add(m.group(2))
    return active, commented


def test_load_credential_lines_cover_every_credential_the_example_names() -> None:
    used, optional = _credentials_in_example()
    active, commented = _load_credentials()
    # Every credential the example config asks for is loaded: copying both as they are works.
    assert used - active == set(), f"unit lacks LoadCredential= for {sorted(used - active)}"
    # The unit loads nothing the example does not name (a missing file would stop the unit).
    assert active - used == set(), f"unit loads credentials the example never uses: {active - used}"
    # The example's commented-out secrets are commented in the unit too, ready to switch on.
    assert optional <= commented, f"no commented LoadCredential= for {sorted(optional - commented)}"


def test_documentation_points_at_a_file_that_ships() -> None:
    docs = [
        ln.split("=", 1)[1]
        for ln in UNIT.read_text().splitlines()
        if ln.startswith("Documentation=")
    ]
    assert docs, "the unit has no Documentation="
    for url in docs:
        assert url.startswith(f"file://{INSTALL_ROOT}/"), url
        assert (ROOT / url.removeprefix(f"file://{INSTALL_ROOT}/")).is_file(), url
