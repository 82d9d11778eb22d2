"""``kuat discover`` as an operator runs it: a separate process against simulated miners (their
own process too) on 127.44.200-209.x, exit codes, JSON, table and the written config fragment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kuat.agent.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
KUAT = [sys.executable, "-m", "kuat.agent.cli"]
BLOCK = "127.44.200"
WEB_PORT = "18045"


def kuat(*args: str) -> subprocess.CompletedProcess[str]:
    # stderr is a pipe here, as in cron or CI: no progress bar may reach it
    return subprocess.run(
        [*KUAT, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env=os.environ
    )


@pytest.fixture(scope="module")
def miners() -> Iterator[None]:
    """Six miners at BLOCK.11-16 (antminer, whatsminer, luxos, twice), the rest of the /24 empty."""
    cmd = [sys.executable, "-m", "kuat.collectors.cgminer.sim", "--count", "6"]
    cmd += ["--first-ip", f"{BLOCK}.11", "--web-port", WEB_PORT]
    for p in ("antminer", "whatsminer", "luxos"):
        cmd += ["--personality", p]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("ready 6 miners"), ready
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_json_lists_exactly_the_miners(miners: None) -> None:
    done = kuat("discover", f"{BLOCK}.0/24", "--ports", f"4028,{WEB_PORT}", "--web-port", WEB_PORT,
                "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["addresses"] == 254
    api = [f for f in doc["found"] if f["port"] == 4028]
    assert [f["ip"] for f in api] == [f"{BLOCK}.{i}" for i in range(11, 17)]
    assert all(f["serial"] for f in api)  # the stock Antminers' from their web UI
    assert {f["firmware_family"] for f in api} == {"bitmain", "whatsminer", "luxos"}
    # stderr: the summary line only, no progress bar
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("found 6 miners on 254 addresses in ")
    assert done.stderr.rstrip().endswith(": 4 Antminer, 2 Whatsminer")


def test_table_and_written_fragment(miners: None, tmp_path: Path) -> None:
    out = tmp_path / "discovered.toml"
    done = kuat("discover", f"{BLOCK}.1-{BLOCK}.40", f"{BLOCK}.12", "--ports", "4028,4433",
                "--write-config", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{BLOCK}.13" in done.stdout and "Whatsminer" in done.stdout
    assert "found 6 miners on 40 addresses" in done.stdout
    fragment = out.read_text()
    assert f'hosts = ["{BLOCK}.11-{BLOCK}.16"]' in fragment
    cfg = parse_config('[site]\nid = "t"\n\n' + fragment)
    assert cfg.asic_targets() == [(f"{BLOCK}.{i}", 4028) for i in range(11, 17)]
    # a second run never overwrites the file (it may be the site's config)
    again = kuat("discover", f"{BLOCK}.11", "--write-config", str(out))
    assert again.returncode == 2 and "exists" in again.stderr
    assert out.read_text() == fragment


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ((f"{BLOCK}.0/33",), f"{BLOCK}.0/33"),
        ((f"{BLOCK}.1", f"{BLOCK}.9-{BLOCK}.2"), f"{BLOCK}.9-{BLOCK}.2"),
        (("not-an-ip",), "not-an-ip"),
        (("10.0.0.0/8",), "10.0.0.0/8"),
        ((f"{BLOCK}.1", "--ports", "4028,http"), "http"),
        ((f"{BLOCK}.1", "--ports", "70000"), "70000"),
        ((f"{BLOCK}.1", "--timeout", "0"), "--timeout"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], named: str) -> None:
    done = kuat("discover", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], done.stderr
