"""``kuat register export``: the include/exclude list an owner files with the e-government
register service. The owner signs and files it; the agent only prepares it.

Sources: the inventory the agent last built (the retained snapshot in the spool: who is there
now) and the durable register history (``kuat.uplink.register_history``: every added / removed /
moved / changed event, kept after delivery for the retention period).

A filing with ``--since DATE`` (Astana date, normally the date of the owner's previous filing)
is the net change over the period [DATE 00:00 Astana, now], miner by miner:

* **include**: present now, and absent at the start of the period (its first added/removed
  event in the period is ``added``). A miner with no such event but first seen in the period
  (history that predates an upgrade) is included too.
* **exclude**: present at the start (its first added/removed event in the period is
  ``removed``) and absent now. A miner removed and back again is neither.
* miners that came and went within the period were never filed: JSON ``transient``, not rows.
* ``moved`` (address / hall / rack / slot) and ``changed`` (hardware facts) of a miner present
  throughout are not include/exclude entries: the register lists hardware per data centre, so
  they go to JSON ``moved`` / ``changed`` (net ``from`` → ``to``) for the owner's records or an
  amendment (e.g. of rated power), not to the CSV.

Without ``--since`` the filing is a full declaration: every miner present now is an include;
excludes are only miners there when the history began and gone now (none, on a site whose
agent has always kept the history). The previous implementation excluded whatever removals
were still undelivered in the outbox, which depended on the broker, not on the hardware.

``history_from`` says from when the history is complete (the agent's first run with it, moved
forward by retention pruning); a ``--since`` before it gets a warning (stderr and JSON
``warnings``): removals before then are unknown. The command only reads the spool: it is safe
while the agent runs.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

# Imported where used: `kuat --help` loads every command module (kuat.agent.cli).
if TYPE_CHECKING:
    from kuat.agent.config import KuatConfig
    from kuat.uplink.register_history import HistoryReader

DEFAULT_PREFIX = "kz/hsc-register/v1"
EXPORT_SCHEMA = "kuat.register-export.v1"  # uplink/schemas/register-export.v1.json

# The CSV the owner uploads: the columns of earlier versions first (scripts index them), then
# when kuat saw the change and the register identity of the miner.
CSV_COLUMNS = (
    "action",
    "manufacturer",
    "model",
    "serial",
    "mac",
    "firmware",
    "rated_ths",
    "rated_w",
    "location",
    "first_seen",
    "last_seen",
    "at",
    "miner_id",
)


@dataclass(frozen=True, slots=True)
class Stored:
    """What the agent last put in its spool, as far as the reports need it."""

    inventory: dict[str, Any] | None
    removed_events: list[dict[str, Any]]
    outbox_pending: int | None
    outbox_dead: int | None


def load_or_exit(path: Path) -> KuatConfig:
    from kuat.agent.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(exc.render(), err=True)
        raise typer.Exit(2) from None


def read_stored(cfg: KuatConfig) -> Stored:
    """The retained inventory, pending ``removed`` events and outbox counts; all None/empty
    when the agent has never run with this state directory."""
    from kuat.uplink.mqtt import topic_base
    from kuat.uplink.spool import Spool

    path = Path(cfg.agent.state_dir) / "spool.db"
    if not path.exists():  # do not create a spool just to read it
        return Stored(None, [], None, None)
    prefix = cfg.mqtt.topic_prefix if cfg.mqtt else DEFAULT_PREFIX
    # an agent of a split site keeps its own shard's stream
    agent_id = cfg.cluster.agent_id if cfg.cluster else None
    base = topic_base(prefix, cfg.site.owner_bin, cfg.site.id, agent_id)
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


def _location_text(m: Mapping[str, Any], by_ip: Mapping[str, str]) -> str:
    loc = m.get("location")
    if loc:
        text = " / ".join(p for p in (loc.get("hall"), loc.get("rack"), loc.get("slot")) if p)
        if text:
            return text
    return by_ip.get(str(m.get("ip")), "")


def _row(
    action: str, m: Mapping[str, Any], at: str | None, seq: int | None, by_ip: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "action": action,
        "miner_id": m["id"],
        "id_source": m.get("id_source"),
        "manufacturer": m.get("manufacturer"),
        "model": m.get("model"),
        "serial": m.get("serial"),
        "mac": m.get("mac"),
        "firmware": m.get("firmware"),
        "rated_ths": m.get("rated_ths"),
        "rated_w": m.get("rated_w"),
        "location": _location_text(m, by_ip),
        "first_seen": m.get("first_seen"),
        "last_seen": m.get("last_seen"),
        "at": at,
        "seq": seq,
    }


def _who(m: Mapping[str, Any]) -> dict[str, Any]:
    return {"miner_id": m["id"], "serial": m.get("serial"), "mac": m.get("mac")}


def since_start(since: date | None) -> datetime | None:
    """00:00 Astana of ``since`` in UTC (None: no lower bound)."""
    from kuat.quota.clock import hour_bounds

    return hour_bounds(since, 1)[0] if since else None


def build_export(
    inventory: Mapping[str, Any],
    history: HistoryReader,
    since: date | None,
    *,
    owner_bin: str,
    site: str,
    now: datetime,
    by_ip: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The export document (``register-export.v1``); see the module docstring for the rules."""
    from kuat.uplink.inventory import iso

    by_ip = by_ip or {}
    start = since_start(since)
    current = {m["id"]: m for m in inventory.get("miners", [])}
    memberships = {ms.miner_id: ms for ms in history.memberships(start)}
    history_from = history.history_from()

    rows: list[dict[str, Any]] = []
    transient: list[dict[str, Any]] = []
    for mid, m in current.items():
        ms = memberships.get(mid)
        if since is None:
            arrived = True  # a full declaration lists everything present
        elif ms is not None:
            arrived = ms.first_type == "added"
        else:  # no added/removed event in the period: new only if first seen in it
            assert start is not None
            arrived = (m.get("first_seen") or "") >= iso(start)
        if arrived:
            last = ms.last if ms is not None and ms.last["type"] == "added" else None
            at = last["at"] if last else m.get("first_seen")
            rows.append(_row("include", m, at, last["seq"] if last else None, by_ip))
    for mid, ms in memberships.items():
        if mid in current:
            continue
        if ms.first_type == "removed":
            ev = ms.last
            rows.append(_row("exclude", ev["miner"], ev["at"], ev["seq"], by_ip))
        else:
            transient.append({**_who(ms.last["miner"]), "at": ms.last["at"]})
    rows.sort(key=lambda r: (r["action"] != "include", r["serial"] or r["mac"] or r["miner_id"]))

    # Moves and hardware changes of miners present throughout, reduced to net from -> to.
    steady = {mid for mid in current if mid not in memberships}
    moved: dict[str, dict[str, Any]] = {}
    changed: dict[str, dict[str, Any]] = {}
    for ev in history.updates(start):
        mid = ev["miner_id"]
        if mid not in steady:
            continue
        if ev["type"] == "moved":
            entry = moved.setdefault(mid, {**_who(current[mid]), "from": ev["from"]})
            entry.update(at=ev["at"], to=ev["to"])
        else:
            entry = changed.setdefault(mid, {**_who(current[mid]), "changes": {}})
            entry["at"] = ev["at"]
            for field, ft in ev["changes"].items():
                was = entry["changes"].get(field, ft)
                entry["changes"][field] = {"from": was["from"], "to": ft["to"]}
    moved_list = [e for e in moved.values() if e["from"] != e["to"]]
    changed_list = []
    for e in changed.values():
        e["changes"] = {f: c for f, c in e["changes"].items() if c["from"] != c["to"]}
        if e["changes"]:
            changed_list.append(e)

    warnings: list[str] = []
    if not history.available:
        warnings.append(
            "the spool has no register history (written by kuat 0.x before it existed): "
            "excludes cannot be listed; run the agent once, then export again"
        )
    elif start is not None and (history_from is None or start < history_from):
        known = iso(history_from) if history_from else "no date yet"
        warnings.append(
            f"the register history is complete only from {known}: removals between "
            f"{iso(start)} and then are not known to kuat"
        )

    return {
        "schema": EXPORT_SCHEMA,
        "owner_bin": owner_bin,
        "site": site,
        "owner": inventory.get("owner"),
        "data_centre": inventory.get("data_centre"),
        "generated_at": iso(now),
        "inventory_at": inventory.get("generated_at"),
        "inventory_seq": inventory.get("seq", 0),
        "since": since.isoformat() if since else None,
        "period_from": iso(start) if start else None,
        "history_from": iso(history_from) if history_from else None,
        "include": sum(1 for r in rows if r["action"] == "include"),
        "exclude": sum(1 for r in rows if r["action"] == "exclude"),
        "rows": rows,
        "moved": moved_list,
        "changed": changed_list,
        "transient": transient,
        "warnings": warnings,
    }


def export_csv(doc: Mapping[str, Any]) -> str:
    """The rows of ``doc`` as the CSV the owner uploads (same rows, same order as the JSON)."""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in doc["rows"]:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in CSV_COLUMNS})
    return out.getvalue()


def emit(doc: Mapping[str, Any], fmt: str, out: Path | None) -> None:
    """A filing to stdout or ``out`` as CSV or JSON; its warnings and a summary on stderr."""
    for warning in doc["warnings"]:
        typer.echo(f"warning: {warning}", err=True)
    text = export_csv(doc) if fmt == "csv" else json.dumps(doc, ensure_ascii=False, indent=2)
    if fmt == "json":
        text += "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    extra = (
        f"; {len(doc['moved'])} moved, {len(doc['changed'])} changed (JSON only)"
        if doc["moved"] or doc["changed"]
        else ""
    )
    typer.echo(f"{out}: {doc['include']} include, {doc['exclude']} exclude{extra}", err=True)


def parse_since(text: str | None, today: date) -> date | None:
    """``--since`` as a date; ValueError with the message the owner sees."""
    if text is None:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since must be a date YYYY-MM-DD, not {text!r}") from None
    if len(text) != 10:  # fromisoformat also takes 20261103; the filing wants one spelling
        raise ValueError(f"--since must be a date YYYY-MM-DD, not {text!r}")
    if day > today:
        raise ValueError(f"--since {text} is in the future (today in Astana is {today})")
    return day


def register(app: typer.Typer) -> None:
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
            typer.Option(
                help="Astana date YYYY-MM-DD (your previous filing): net changes since then. "
                "Default: every miner present, as a full declaration."
            ),
        ] = None,
        fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
        as_json: Annotated[
            bool, typer.Option("--json", help="The same as --format json (as other commands).")
        ] = False,
        out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    ) -> None:
        """Include/exclude list for the e-government register service."""
        if as_json:
            fmt = "json"
        from kuat.quota.clock import ASTANA
        from kuat.uplink.register_history import HistoryReader

        if fmt not in ("csv", "json"):
            typer.echo(f"--format must be csv or json, not {fmt!r}", err=True)
            raise typer.Exit(2)
        now = datetime.now(UTC)
        try:
            since_d = parse_since(since, now.astimezone(ASTANA).date())
        except ValueError as exc:
            typer.echo(str(exc), err=True)
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
        seq_key = f"{cfg.site.owner_bin}/{cfg.site.id}"
        with HistoryReader(Path(cfg.agent.state_dir) / "spool.db", seq_key) as history:
            doc = build_export(
                stored.inventory,
                history,
                since_d,
                owner_bin=cfg.site.owner_bin,
                site=cfg.site.id,
                now=now,
                by_ip=locations(cfg),
            )
        emit(doc, fmt, out)

    @register_app.command("merge")
    def merge(
        files: Annotated[
            list[Path], typer.Argument(help="Each agent's `register export --format json`.")
        ],
        fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
        out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
    ) -> None:
        """One filing for a site split across agents, from each agent's export (same --since)."""
        from kuat.agent.register_filing import FilingError, merge_exports, problems_of

        if fmt not in ("csv", "json"):
            typer.echo(f"--format must be csv or json, not {fmt!r}", err=True)
            raise typer.Exit(2)
        docs: list[tuple[str, Any]] = []
        problems: list[str] = []
        for f in files:
            try:
                docs.append((str(f), json.loads(f.read_text(encoding="utf-8"))))
            except (OSError, ValueError) as exc:
                problems.append(f"{f}: {exc}")
        try:
            if problems := problems + problems_of(docs):  # every file's problem at once
                raise FilingError(problems)
            doc = merge_exports(docs, datetime.now(UTC))
        except FilingError as exc:
            for problem in exc.problems:
                typer.echo(problem, err=True)
            raise typer.Exit(2) from None
        emit(doc, fmt, out)

    @register_app.command("receive")
    def receive(
        host: Annotated[str, typer.Option(help="Broker host.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Broker port.")] = 8883,
        state: Annotated[
            Path, typer.Option(help="Where the receiver keeps its view (JSON, kept across runs).")
        ] = Path("register-view.json"),
        prefix: Annotated[str, typer.Option(help="Topic prefix.")] = DEFAULT_PREFIX,
        client_id: Annotated[
            str, typer.Option(help="Client id of the persistent session.")
        ] = "kuat-register-receiver",
        tls: Annotated[bool, typer.Option("--tls/--no-tls", help="TLS to the broker.")] = True,
        ca_cert: Annotated[Path | None, typer.Option(help="CA file for the broker.")] = None,
        client_cert: Annotated[Path | None, typer.Option(help="Client certificate.")] = None,
        client_key: Annotated[Path | None, typer.Option(help="Client key.")] = None,
        username: Annotated[str | None, typer.Option(help="MQTT user name.")] = None,
        password_file: Annotated[
            Path | None, typer.Option(help="File holding the MQTT password.")
        ] = None,
        duration: Annotated[
            float | None, typer.Option(help="Stop after this many seconds (default: run on).")
        ] = None,
        protocol: Annotated[str, typer.Option(help='MQTT version: "5" or "3.1.1".')] = "5",
        failover: Annotated[
            list[str] | None,
            typer.Option(help="Another broker node host:port, tried in turn (repeatable)."),
        ] = None,
    ) -> None:
        """Reference register receiver: follow every site's register topics (README rules)."""
        import threading

        from kuat.uplink.broker import BrokerEndpoint
        from kuat.uplink.register_receiver import Applied, RegisterReceiver

        def show(a: Applied) -> None:
            line: dict[str, object] = {
                "owner_bin": a.owner_bin,
                "site": a.site,
                "kind": a.kind,
                "outcome": a.outcome,
            }
            if a.agent_id is not None:  # one agent's stream of a split site
                line["agent_id"] = a.agent_id
            # what changed in the one site view: added/removed/moved/changed, no miner bodies
            changes = [{k: v for k, v in c.items() if k != "miner"} for c in a.changes]
            if changes:
                line["changes"] = changes
            typer.echo(json.dumps(line, ensure_ascii=False))

        if protocol not in ("5", "3.1.1"):
            typer.echo(f'--protocol must be "5" or "3.1.1", not {protocol!r}', err=True)
            raise typer.Exit(2)
        nodes: list[tuple[str, int]] = []
        for entry in failover or []:
            node, _, port_text = entry.rpartition(":")
            if not node or not port_text.isdigit():
                typer.echo(f"--failover {entry!r} is not host:port", err=True)
                raise typer.Exit(2)
            nodes.append((node, int(port_text)))
        password = password_file.read_text("utf-8").strip() if password_file else None
        broker = BrokerEndpoint(
            host=host,
            port=port,
            failover=tuple(nodes),
            tls=tls,
            ca_cert=ca_cert,
            client_cert=client_cert,
            client_key=client_key,
            username=username,
            password=password,
            protocol="5" if protocol == "5" else "3.1.1",
            client_id=client_id,
        )
        receiver = RegisterReceiver(broker=broker, state=state, prefix=prefix, on_applied=show)
        receiver.start()
        try:
            threading.Event().wait(duration)
        except KeyboardInterrupt:
            pass
        finally:
            receiver.stop()
