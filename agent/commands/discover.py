"""``kuat discover``: scan addresses for miners, show what answers, optionally write the
``[[asic.groups]]`` that would poll them."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kuat.collectors.cgminer.ports import DEFAULT_PORTS, DEFAULT_WEB_PORT

# The scanner is imported where used: `kuat --help` loads every command module.
if TYPE_CHECKING:
    from kuat.collectors.cgminer.discover import Found

# File descriptors one worker may hold at once: its probe or poll connection, plus a share of
# the poller's background web fetches; and a margin for everything else the process has open.
_FDS_PER_WORKER = 2
_FD_MARGIN = 64


def _fail(message: str) -> typer.Exit:
    """One line on stderr and exit 2: usage errors, before any traffic."""
    typer.echo(f"kuat discover: {message}", err=True)
    return typer.Exit(2)


def _parse_ports(text: str) -> list[int]:
    ports: list[int] = []
    for part in text.split(","):
        p = part.strip()
        if not p.isdigit() or not 1 <= int(p) <= 65535:
            raise _fail(f"--ports: {p!r} is not a port number (1-65535)")
        ports.append(int(p))
    return list(dict.fromkeys(ports))


def _ensure_fd_room(concurrency: int) -> None:
    """Raise the soft open-file limit as far as needed (and allowed): a probe that fails with
    EMFILE would otherwise stop the scan halfway."""
    try:
        import resource
    except ImportError:  # not on POSIX: nothing to check
        return
    need = concurrency * _FDS_PER_WORKER + _FD_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
        if soft < need:
            most = max(1, (soft - _FD_MARGIN) // _FDS_PER_WORKER)
            raise _fail(
                f"--concurrency {concurrency} needs ~{need} open files but the limit is {soft}; "
                f"use --concurrency {most} or raise ulimit -n"
            )


def _summary(found: list[Found], addresses: int, elapsed_s: float) -> str:
    from kuat.collectors.cgminer.discover import product_line

    lines: Counter[str] = Counter()
    seen: set[str] = set()
    for f in found:
        if f.identified and f.ip not in seen:
            seen.add(f.ip)
            lines[product_line(f)] += 1
    parts = ", ".join(f"{n} {name}" for name, n in sorted(lines.items(), key=lambda x: -x[1]))
    text = f"found {len(seen)} miners on {addresses} addresses in {elapsed_s:.1f} s"
    text += f": {parts}" if parts else ""
    others = {f.ip for f in found} - seen
    if others:
        text += f"; {len(others)} more hosts with open ports but no cgminer API"
    return text


def _table(found: list[Found]) -> None:
    from rich.console import Console
    from rich.table import Table

    # piped output keeps whole rows rather than wrapping them at 80 columns
    console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name, justify in (
        ("IP", "left"),
        ("port", "right"),
        ("vendor", "left"),
        ("model", "left"),
        ("firmware", "left"),
        ("serial", "left"),
        ("MAC", "left"),
        ("TH/s", "right"),
        ("note", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for f in found:
        table.add_row(
            f.ip,
            str(f.port),
            f.vendor or "-",
            f.model or "-",
            f.firmware_family or "-",
            f.serial or "-",
            f.mac or "-",
            f"{f.hashrate_ths:.1f}" if f.hashrate_ths is not None else "-",
            f.note,
        )
    console.print(table)


def _run_scan(
    targets: list[str],
    ports: list[int],
    *,
    timeout: float,
    concurrency: int,
    web_port: int,
    show_progress: bool,
) -> list[Found]:
    import asyncio

    from kuat.collectors.cgminer.discover import discover

    if not show_progress:
        return asyncio.run(
            discover(targets, ports, timeout_s=timeout, concurrency=concurrency, web_port=web_port)
        )
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("addresses"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("scan", total=None)

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return asyncio.run(
            discover(
                targets,
                ports,
                timeout_s=timeout,
                concurrency=concurrency,
                web_port=web_port,
                on_progress=on_progress,
            )
        )


def discover_cmd(
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="CIDR|RANGE|IP...",
            help="Addresses to scan: 10.1.0.0/24, 10.1.0.10-10.1.0.60 or 10.1.0.7.",
            show_default=False,
        ),
    ],
    ports: Annotated[str, typer.Option(help="Ports to probe, comma-separated.")] = ",".join(
        map(str, DEFAULT_PORTS)
    ),
    timeout: Annotated[
        float, typer.Option(help="Seconds a TCP connect may take before the port counts closed.")
    ] = 1.0,
    concurrency: Annotated[int, typer.Option(help="Probes in flight at once.")] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    write_config: Annotated[
        Path | None,
        typer.Option(
            "--write-config",
            metavar="FILE",
            help="Write the [[asic.groups]] for the miners found (a new file; append it to a "
            "config that has its [site]).",
        ),
    ] = None,
    web_port: Annotated[
        int,
        typer.Option(
            help="The miners' web UI port (only recorded, and used for stock "
            "Antminers' serials when it is among --ports)."
        ),
    ] = DEFAULT_WEB_PORT,
) -> None:
    """Find miners: a TCP probe of every address and port, then one API poll of each open
    cgminer API port (vendor, model, firmware, serial, MAC, hashrate)."""
    from kuat.collectors.cgminer.discover import ScanError, config_fragment, merge_spans

    # every check before the first packet: a typo must not cost a /16 scan
    try:
        spans = merge_spans(targets)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    port_list = _parse_ports(ports)
    if timeout <= 0:
        raise _fail(f"--timeout must be positive, not {timeout}")
    if concurrency < 1:
        raise _fail(f"--concurrency must be at least 1, not {concurrency}")
    if not 1 <= web_port <= 65535:
        raise _fail(f"--web-port {web_port} is not 1-65535")
    if write_config is not None and write_config.exists():
        # the file is meant to be appended to a config: never clobber the config itself
        raise _fail(f"--write-config: {write_config} exists; not overwriting it")
    _ensure_fd_room(concurrency)
    # the poller warns once per stock miner whose web UI refuses us; here that is in the table
    logging.getLogger("kuat.collectors.cgminer").setLevel(logging.ERROR)

    addresses = sum(len(s) for s in spans)
    started = time.monotonic()
    try:
        found = _run_scan(
            targets,
            port_list,
            timeout=timeout,
            concurrency=concurrency,
            web_port=web_port,
            show_progress=not as_json and sys.stderr.isatty(),
        )
    except ScanError as exc:
        typer.echo(f"kuat discover: {exc}", err=True)
        raise typer.Exit(1) from None
    elapsed = time.monotonic() - started
    summary = _summary(found, addresses, elapsed)

    if as_json:
        doc = {
            "targets": targets,
            "ports": port_list,
            "addresses": addresses,
            "elapsed_s": round(elapsed, 3),
            "found": [asdict(f) for f in found],
        }
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        typer.echo(summary, err=True)  # stdout stays pure JSON
    else:
        if found:
            _table(found)
        typer.echo(summary)

    if write_config is not None:
        if not any(f.identified for f in found):
            typer.echo(f"no miners found; {write_config} not written", err=True)
            return
        stamp = datetime.now(UTC).replace(microsecond=0).isoformat()
        header = f"kuat discover {' '.join(targets)} --ports {','.join(map(str, port_list))}\n"
        header += f"{stamp}: {summary}"
        try:
            with write_config.open("x", encoding="utf-8") as fh:
                fh.write(config_fragment(found, header))
        except OSError as exc:
            typer.echo(f"kuat discover: cannot write {write_config}: {exc.strerror}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"wrote {write_config}", err=True)


def register(app: typer.Typer) -> None:
    app.command("discover")(discover_cmd)
