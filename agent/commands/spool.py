"""``kuat spool``: look at the agent's spool and at damaged spool files it moved aside.

When the agent finds its spool damaged at start (truncated, overwritten, not a database) it
renames the file to ``spool.db.damaged-<UTC time>``, logs that, counts it on the dashboard
(``kuat_spool_quarantined_files``) and starts a fresh spool. These commands are the operator's
next step:

* ``kuat spool status -c CONFIG`` — the live spool's counts and the damaged files beside it;
* ``kuat spool inspect FILE`` — what SQLite still reads from a damaged file, table by table;
* ``kuat spool salvage FILE -c CONFIG`` — put what is readable back into the live spool
  (telemetry lines queued again, register events and history restored, register counters
  never lowered), then rename the file to ``…salvaged-…`` so it no longer counts as waiting.
  Stop the agent first (``systemctl stop kuat``): one spool file, one writer.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Annotated

import typer

# kuat.uplink.spool and the config are imported where used: `kuat --help` loads every command
# module (kuat.agent.cli).

SALVAGED_MARK = ".salvaged-"
DEFAULT_STATE_DIR = "/var/lib/kuat"  # agent.config.AgentSection.state_dir


def _spool_path(config: Path) -> Path:
    """The spool of the config's ``[agent] state_dir``.

    Only that key is needed, so a config whose secrets cannot be read here (systemd
    credentials, a root-only file) still names its spool; a file that is not TOML at all is
    refused as ``check-config`` would.
    """
    import tomllib

    from kuat.agent.config import ConfigError, load_config

    try:
        return Path(load_config(config).agent.state_dir) / "spool.db"
    except ConfigError as exc:
        try:
            data = tomllib.loads(config.read_text(encoding="utf-8"))
            agent = data.get("agent", {})
            state_dir = (
                agent.get("state_dir", DEFAULT_STATE_DIR) if isinstance(agent, dict) else None
            )
        except (OSError, ValueError, RecursionError):
            state_dir = None
        if not isinstance(state_dir, str):
            typer.echo(exc.render(), err=True)
            raise typer.Exit(2) from None
        return Path(state_dir) / "spool.db"


def register(app: typer.Typer) -> None:
    spool_app = typer.Typer(
        help="The agent's spool: status, and damaged spool files to inspect or salvage.",
        no_args_is_help=True,
    )
    app.add_typer(spool_app, name="spool")

    @spool_app.command("status")
    def status(
        config: Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Counts of the live spool and the damaged files waiting beside it."""
        from kuat.uplink.spool import Spool, quarantined_files

        path = _spool_path(config)
        damaged = quarantined_files(path)
        counts = None
        if path.exists():
            with Spool(path) as spool:
                counts = spool.counts()
        if as_json:
            body = {
                "spool": str(path),
                "counts": None if counts is None else dataclasses.asdict(counts),
                "damaged": [str(p) for p in damaged],
            }
            typer.echo(json.dumps(body, indent=2))
            return
        if counts is None:
            typer.echo(f"{path}: no spool yet")
        else:
            typer.echo(
                f"{path}: {counts.pending:,} lines pending, {counts.dropped:,} dropped, "
                f"{counts.dead:,} dead-lettered, {counts.outbox:,} register messages waiting"
                + (", disk full" if counts.disk_full else "")
            )
        for p in damaged:
            typer.echo(f"damaged, waiting for salvage: {p} ({p.stat().st_size:,} bytes)")
        if damaged:
            raise typer.Exit(1)

    @spool_app.command("inspect")
    def inspect(
        file: Annotated[Path, typer.Argument(help="A damaged spool file (spool.db.damaged-…).")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """What can still be read from a damaged spool file, table by table."""
        from kuat.uplink.spool import read_damaged

        if not file.is_file():
            typer.echo(f"{file}: no such file", err=True)
            raise typer.Exit(2)
        report = read_damaged(file)
        seqs = {
            k.removeprefix("seq:"): v
            for k, v in report.rows.get("meta", [])
            if isinstance(k, str) and k.startswith("seq:")
        }
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "file": str(file),
                        "readable": report.readable,
                        "problems": report.problems,
                        "rows": report.counts(),
                        "unreadable": report.unreadable,
                        "register_seq": seqs,
                    },
                    indent=2,
                )
            )
            return
        typer.echo(f"{file}: {'readable in part' if report.readable else 'not readable at all'}")
        for problem in report.problems[:10]:
            typer.echo(f"  problem: {problem}")
        for table, n in report.counts().items():
            lost = report.unreadable.get(table)
            typer.echo(
                f"  {table}: {n:,} rows readable" + (f", {lost:,} unreadable" if lost else "")
            )
        for key, value in seqs.items():
            typer.echo(f"  register seq {key}: {value}")

    @spool_app.command("salvage")
    def salvage(
        file: Annotated[Path, typer.Argument(help="A damaged spool file (spool.db.damaged-…).")],
        config: Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")],
        keep: Annotated[
            bool, typer.Option("--keep", help="Leave the damaged file's name as it is.")
        ] = False,
    ) -> None:
        """Put what is readable back into the live spool (stop the agent first)."""
        from kuat.uplink.spool import QUARANTINE_MARK, Spool, read_damaged, salvage_into

        if not file.is_file():
            typer.echo(f"{file}: no such file", err=True)
            raise typer.Exit(2)
        path = _spool_path(config)
        if file.resolve() == path.resolve():
            typer.echo(f"{file} is the live spool, not a damaged copy", err=True)
            raise typer.Exit(2)
        report = read_damaged(file)
        if not report.readable:
            typer.echo(f"{file}: nothing readable ({'; '.join(report.problems)})", err=True)
            raise typer.Exit(1)
        with Spool(path) as spool:
            done = salvage_into(report, spool)
        typer.echo(
            f"salvaged from {file} into {path}: {done.get('telemetry', 0):,} telemetry lines, "
            f"{done.get('outbox', 0):,} register messages, "
            f"{done.get('register_history', 0):,} register history rows"
        )
        if not keep and QUARANTINE_MARK in file.name:
            target = file.with_name(file.name.replace(QUARANTINE_MARK, SALVAGED_MARK, 1))
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{file}{suffix}")
                if src.exists():
                    os.replace(src, Path(f"{target}{suffix}"))
            typer.echo(f"renamed to {target}")
