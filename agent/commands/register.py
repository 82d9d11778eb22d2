"""``kuat register export``: the include/exclude list an owner files with the e-government
register service, from the inventory the agent last built (the retained snapshot in the spool).

Includes are miners in that inventory first seen on or after ``--since``. Excludes are miners
whose ``removed`` event, dated on or after ``--since``, is still in the spool's outbox: once the
broker has acknowledged an event the agent no longer holds it (the register back-end does), so
an owner filing from the agent alone should export at least as often as events are delivered,
or take the excludes from the register back-end. The command only reads the spool: it is safe
while the agent runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from agent.config import ConfigError, KuatConfig, load_config
from uplink.mqtt import topic_base
from uplink.spool import Spool

DEFAULT_PREFIX = "kz/hsc-register/v1"


@dataclass(frozen=True, slots=True)
class Stored:
    """What the agent last put in its spool, as far as the reports need it."""

    inventory: dict[str, Any] | None
    removed_events: list[dict[str, Any]]
    outbox_pending: int | None
    outbox_dead: int | None


def load_or_exit(path: Path) -> KuatConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(exc.render(), err=True)
        raise typer.Exit(2) from None


def read_stored(cfg: KuatConfig) -> Stored:
    """The retained inventory, pending ``removed`` events and outbox counts; all None/empty
    when the agent has never run with this state directory."""
    path = Path(cfg.agent.state_dir) / "spool.db"
    if not path.exists():  # do not create a spool just to read it
        return Stored(None, [], None, None)
    prefix = cfg.mqtt.topic_prefix if cfg.mqtt else DEFAULT_PREFIX
    base = topic_base(prefix, cfg.site.owner_bin, cfg.site.id)
    with Spool(path) as spool:
        raw = spool.retained().get(f"{base}/inventory")
        removed: list[dict[str, Any]] = []
        after = 0
        while batch := spool.outbox_peek(after_id=after, limit=1000):
            after = batch[-1].id
            for msg in batch:
                if msg.topic != f"{base}/events":
                    continue
                try:
                    body = json.loads(msg.payload)
                except ValueError:
                    continue
                if body.get("type") == "removed":
                    removed.append(body)
        counts = spool.counts()
    inventory = json.loads(raw) if raw is not None else None
    return Stored(inventory, removed, counts.outbox, counts.outbox_dead)


def locations(cfg: KuatConfig) -> Mapping[str, str]:
    """ip -> "hall / rack / slot" from the config's miner groups."""
    out: dict[str, str] = {}
    for group in cfg.asic.groups:
        loc = group.location
        text = " / ".join(p for p in (loc.hall, loc.rack, loc.slot) if p)
        for ip, _port in group.targets():
            out[ip] = text
    return out


def register(app: typer.Typer) -> None:
    from agent.reports import register_changes, register_csv, register_json

    register_app = typer.Typer(
        help="The register of hardware-software complexes: lists the owner files.",
        no_args_is_help=True,
    )
    app.add_typer(register_app, name="register")

    @register_app.command("export")
    def export(
        config: Annotated[Path, typer.Option("--config", "-c", help="Configuration file.")],
        since: Annotated[
            str | None,
            typer.Option(help="Astana date YYYY-MM-DD: changes on or after it (default: all)."),
        ] = None,
        fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
        out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    ) -> None:
        """Include/exclude list for the e-government register service, from the last inventory."""
        if fmt not in ("csv", "json"):
            typer.echo(f"--format must be csv or json, not {fmt!r}", err=True)
            raise typer.Exit(2)
        try:
            since_d = date.fromisoformat(since) if since else date(1970, 1, 1)
        except ValueError:
            typer.echo(f"--since must be YYYY-MM-DD, not {since!r}", err=True)
            raise typer.Exit(2) from None
        cfg = load_or_exit(config)
        stored = read_stored(cfg)
        if stored.inventory is None:
            typer.echo(
                f"no inventory in {Path(cfg.agent.state_dir) / 'spool.db'}: the agent has not "
                "built one yet (run it, or `kuat run --once`)",
                err=True,
            )
            raise typer.Exit(1)
        rows = register_changes(stored.inventory, stored.removed_events, since_d, locations(cfg))
        text = register_csv(rows) if fmt == "csv" else register_json(rows, cfg, since_d) + "\n"
        if out is None:
            typer.echo(text, nl=False)
        else:
            out.write_text(text, encoding="utf-8")
            n_in = sum(1 for r in rows if r["action"] == "include")
            typer.echo(f"{out}: {n_in} include, {len(rows) - n_in} exclude", err=True)
