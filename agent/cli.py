"""``kuat``: the command line of the agent."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from kuat.agent.exitcodes import Exit, for_findings

# Only typer and the standard library at import: `kuat --version` and `kuat --help` must not
# pay for the config models (pydantic), the collectors, paho or babel; each command imports
# what it needs when it runs.
if TYPE_CHECKING:
    from kuat.agent.config import KuatConfig

T = TypeVar("T")

app = typer.Typer(
    help="kuat — edge agent for digital-mining farms: miners, PDUs and meters, the electricity "
    "quota, grid-connection checks and the hardware register.",
    no_args_is_help=True,
    # Rich markup would swallow "[agent] language" and "[[asic.groups]]" in help texts.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
probe_app = typer.Typer(
    help="Poll one device once and print its normalized reading (what the agent would see).",
    no_args_is_help=True,
)
app.add_typer(probe_app, name="probe")


@probe_app.callback()
def _probe_quietly() -> None:
    """Poll one device once and print its normalized reading (what the agent would see)."""
    # A probe reports its one outcome itself, in one line; the collectors' own log lines (a hub
    # logging its link down, for the agent's journal) would say the same thing twice.
    quiet = logging.getLogger("kuat")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"kuat {version('kuat')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("kuat (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print kuat's version and exit."
        ),
    ] = False,
) -> None:
    """kuat — edge agent for digital-mining farms."""


ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Configuration file (TOML).", show_default=True)
]
CredentialsOpt = Annotated[
    Path | None,
    typer.Option(
        "--credentials-dir",
        help="Where { credential = NAME } secrets are read from outside systemd: a file per name "
        "(systemd sets $CREDENTIALS_DIRECTORY from LoadCredential= itself).",
    ),
]


def _run_async(coro: Coroutine[Any, Any, T], event_loop: str = "asyncio") -> T:
    """Run ``coro`` on ``event_loop`` (``[agent] event_loop``: the config has checked that
    uvloop is installed when it names it)."""
    import asyncio  # not at import: it brings ssl, and `kuat --help` needs neither

    if event_loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


def _use_credentials_dir(path: Path | None) -> None:
    # Set before the config is read: secrets are resolved while it is validated.
    if path is not None:
        os.environ["CREDENTIALS_DIRECTORY"] = str(path)


def _setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # pymodbus logs every failed connect at ERROR; the meter hub reports outages itself, once.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    # APScheduler warns on every skipped overlapping run; the agent reports overruns itself.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


def _load_or_exit(path: Path) -> KuatConfig:
    from kuat.agent.config import ConfigError, load_config

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        typer.echo(exc.render(), err=True)
        raise typer.Exit(2) from None
    _warn_renamed(cfg)
    return cfg


def _warn_renamed(cfg: KuatConfig) -> None:
    """Each deprecated key the config still uses, once, on stderr (the journal under systemd)."""
    from kuat.agent.i18n import message

    for old, new in cfg.asic.renamed_keys():
        typer.echo(message("config.renamed_key", cfg.agent.language, old=old, new=new), err=True)


@app.command("check-config")
def check_config(
    path: Annotated[Path, typer.Argument(help="Configuration file (TOML).")],
    credentials_dir: CredentialsOpt = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print {"ok": true, ...} or {"ok": false, "problems": [{"path", "line", '
            '"message"}]} on stdout.',
        ),
    ] = False,
) -> None:
    """Validate a configuration file and what the run will open (secrets, certificate, key and CA
    files, schedule and order directories): print OK, or every problem with its key and line."""
    from kuat.agent.config import ConfigError, load_config

    _use_credentials_dir(credentials_dir)
    if as_json:
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            problems = [
                {"path": p.path, "line": p.line, "message": p.message} for p in exc.problems
            ]
            typer.echo(json.dumps({"ok": False, "file": str(path), "problems": problems}))
            raise typer.Exit(Exit.CONFIG) from None
        _warn_renamed(cfg)
        summary = {
            "ok": True,
            "file": str(path),
            "site": cfg.site.id,
            "miners": len(cfg.asic_targets()),
            "pdus": len(cfg.pdu),
            "meters": len(cfg.meter),
        }
        typer.echo(json.dumps(summary))
        return
    cfg = _load_or_exit(path)
    typer.echo(
        f"OK: site {cfg.site.id}, {len(cfg.asic_targets())} miners, {len(cfg.pdu)} PDUs, "
        f"{len(cfg.meter)} meters"
    )


config_app = typer.Typer(help="The configuration as the agent sees it.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _without_nulls(table: dict[str, Any]) -> dict[str, Any]:
    # TOML has no null: a key left unset is simply not written.
    return {k: _value_without_nulls(v) for k, v in table.items() if v is not None}


def _value_without_nulls(value: object) -> object:
    if isinstance(value, dict):
        return _without_nulls(value)
    if isinstance(value, list):
        return [_value_without_nulls(v) for v in value]
    return value


@config_app.command("show")
def config_show(
    path: Annotated[Path, typer.Argument(help="Configuration file (TOML).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
    credentials_dir: CredentialsOpt = None,
) -> None:
    """Print the effective configuration: every key with its value or default, secrets masked
    (a secret shows where it comes from, an inline one as **********)."""
    _use_credentials_dir(credentials_dir)
    cfg = _load_or_exit(path)
    data = cfg.model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        import tomli_w

        typer.echo(tomli_w.dumps(_without_nulls(data)), nl=False)


@app.command()
def run(
    config: ConfigOpt = Path("/etc/kuat/kuat.toml"),
    once: Annotated[
        bool, typer.Option("--once", help="Run every job once, flush, print the status, exit.")
    ] = False,
    test: Annotated[
        bool,
        typer.Option(
            "--test",
            help="With --once: poll everything and print the line protocol it would send; write "
            "nothing (no spool, outbox or ledger in the state directory, no uplink, no device "
            "control).",
        ),
    ] = False,
    exit_zero: Annotated[
        bool,
        typer.Option(
            "--exit-zero",
            help="With --once: exit 0 when the run completed, even if a check failed or devices "
            "were down.",
        ),
    ] = False,
    credentials_dir: CredentialsOpt = None,
) -> None:
    """Run the agent (under systemd: Type=notify). SIGTERM or Ctrl-C stops it cleanly.

    With --once the exit code tells what the run found: 0 all well, 3 a check failed (item 5 or 7,
    or the quota over), 4 devices down; 2 a configuration error."""
    # Caught before the seconds of imports and set-up, so a stop then is clean too (--once keeps
    # the default: Ctrl-C interrupts it).
    early = None if once else _EarlyStop()
    _use_credentials_dir(credentials_dir)
    if test and not once:
        typer.echo("--test goes with --once", err=True)
        raise typer.Exit(Exit.CONFIG)
    cfg = _load_or_exit(config)
    _setup_logging(cfg.agent.log_level)
    from kuat.agent.runtime import Agent

    if test:
        _run_test(cfg)
        return
    agent = Agent(cfg)
    if once:
        snap = _run_async(agent.run_once(), cfg.agent.event_loop)
        from kuat.agent.status import render_text

        typer.echo(render_text(snap, cfg.agent.language))
        if not exit_zero:
            statuses = (snap.quota_status, snap.grid_status, snap.pools_status)
            raise typer.Exit(for_findings(statuses, snap.devices_down))
        return
    _run_async(agent.run(stop_requested=early.requested if early else None), cfg.agent.event_loop)


class _EarlyStop:
    """SIGTERM or SIGINT while ``kuat run`` starts (imports, config, opening the spool take
    seconds) is noted, not fatal: the agent starts, sees it and stops cleanly (exit 0), as
    systemd expects of a unit stopped during start-up. The running agent installs its own
    handlers over these."""

    def __init__(self) -> None:
        self.signum: int | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._note)

    def _note(self, signum: int, _frame: object) -> None:
        self.signum = signum

    def requested(self) -> bool:
        return self.signum is not None


def _run_test(cfg: KuatConfig) -> None:
    """``run --once --test`` (like ``telegraf --test``): the real jobs once, against a throw-away
    state directory with no uplinks and curtailment in dry-run, then the spooled lines printed."""
    import tempfile

    from kuat.agent.runtime import Agent
    from kuat.agent.status import render_text

    with tempfile.TemporaryDirectory(prefix="kuat-test-") as tmp:
        quota = cfg.quota.model_copy(update={"enforce": False, "http": None, "mqtt": None})
        dry = cfg.model_copy(
            update={
                "agent": cfg.agent.model_copy(update={"state_dir": Path(tmp)}),
                "influx": None,
                "mqtt": None,
                "quota": quota,
            }
        )
        agent = Agent(dry)
        snap = _run_async(agent.run_once())
        from kuat.uplink.spool import Spool

        spool = Spool(Path(tmp) / "spool.db")
        try:
            after: int | None = None
            while batch := spool.take(5000, after=after):
                for line in batch.lines:
                    typer.echo(line)
                after = batch.ids[-1]
        finally:
            spool.close()
    typer.echo(render_text(snap, cfg.agent.language), err=True)


@app.command()
def demo(
    duration: Annotated[
        float | None, typer.Option(help="Stop by itself after this many seconds.")
    ] = None,
    miners: Annotated[
        int, typer.Option(min=1, help="Simulated miners (each on its own 127.x.y.z).")
    ] = 240,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Where the demo keeps its spool and outbox (default: a fresh temp dir)."),
    ] = None,
    lang: Annotated[str, typer.Option(help="Language of the status screen: kk, ru or en.")] = "en",
    plain: Annotated[
        bool,
        typer.Option("--plain", help="Print one status line per cycle instead of a live table."),
    ] = False,
    enforce: Annotated[
        bool,
        typer.Option(
            "--enforce",
            help="Let the planner act on the simulated miners (default: dry run, plan shown).",
        ),
    ] = False,
    hidden_load: Annotated[
        bool,
        typer.Option(
            "--hidden-load",
            help="Add load no registered device explains to the meter: the balance alarms.",
        ),
    ] = False,
    base: Annotated[
        str,
        typer.Option(help="First miner's address in 127.0.0.0/8; meters and PDUs on x.y.250.1-3."),
    ] = "127.10.0.1",
    listen: Annotated[
        str, typer.Option(help='The dashboard\'s host:port ("" turns it off).')
    ] = "127.0.0.1:9120",
) -> None:
    """Start a simulated farm on loopback and run the real agent against it, with a live status."""
    from kuat.agent.config import listen_address
    from kuat.agent.demo import DemoLayout, DemoLayoutError, DemoOptions, run_demo
    from kuat.agent.demo_text import say
    from kuat.agent.i18n import LANGS

    if lang not in LANGS:  # which language to say it in is the question: all three
        for each in LANGS:
            typer.echo(say("bad_lang", each, value=lang), err=True)
        raise typer.Exit(2)
    language = next(x for x in LANGS if x == lang)  # the same text, typed as a Lang

    try:
        DemoLayout.of(base, miners)
    except DemoLayoutError as exc:
        typer.echo(say(exc.key, language, value=base, miners=miners, devices=exc.devices), err=True)
        raise typer.Exit(2) from None
    try:
        listen_address(listen)
    except ValueError as exc:
        typer.echo(say("bad_listen", language, error=exc), err=True)
        raise typer.Exit(2) from None
    _setup_logging("warning")
    opts = DemoOptions(
        miners=miners,
        duration_s=duration,
        state_dir=state_dir,
        lang=language,
        plain=plain,
        enforce=enforce,
        hidden_load=hidden_load,
        base=base,
        listen=listen,
    )
    raise typer.Exit(_run_async(run_demo(opts)))


# --- probe ------------------------------------------------------------------------------


def _split_hostport(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host and not host.endswith(":"):
        return host.strip("[]"), int(port)
    return text.strip("[]"), default_port


def _emit(result: object, as_json: bool) -> None:
    from kuat.collectors.readings import DeviceError, to_jsonable

    if isinstance(result, DeviceError):
        typer.echo(result.describe(), err=True)
        raise typer.Exit(1)
    data = to_jsonable(result)
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        for key, value in data.items():
            typer.echo(f"{key:>22}: {json.dumps(value, ensure_ascii=False)}")


JsonOpt = Annotated[bool, typer.Option("--json", help="Print the reading as JSON.")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds before giving up on the device.")]


@probe_app.command("asic")
def probe_asic(
    target: Annotated[str, typer.Argument(metavar="HOST[:PORT]", help="Miner API address.")],
    web_port: Annotated[
        int | None,
        typer.Option(
            help="Port of the miner's web UI or HTTP API, for serial/MAC (0: do not ask; "
            "default: its firmware's usual port)."
        ),
    ] = None,
    timeout: TimeoutOpt = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """One poll of a miner's cgminer-family API (port 4028 unless given)."""
    from kuat.collectors.cgminer.access import web_ports
    from kuat.collectors.cgminer.collector import AsicPoller

    host, port = _split_hostport(target, 4028)

    async def once():
        # a port given is where every firmware's web API is looked for; 0 (None) turns them off
        ports = {} if web_port is None else dict.fromkeys(web_ports(), web_port or None)
        poller = AsicPoller(timeout_s=timeout, web_timeout_s=timeout, **ports)
        try:
            # A probe is one look: wait for an identity read in the background within the
            # deadline.
            return await poller.poll(host, port, wait_identity=True)
        finally:
            await poller.aclose()

    _emit(_run_async(once()), as_json)


@probe_app.command("pdu")
def probe_pdu(
    target: Annotated[str, typer.Argument(metavar="HOST[:PORT]", help="PDU SNMP address.")],
    community: Annotated[str | None, typer.Option(help="SNMPv2c community.")] = None,
    v3_user: Annotated[str | None, typer.Option(help="SNMPv3 user (authPriv).")] = None,
    v3_auth_key: Annotated[str | None, typer.Option(help="SNMPv3 authentication key.")] = None,
    v3_priv_key: Annotated[str | None, typer.Option(help="SNMPv3 privacy key.")] = None,
    v3_auth_proto: Annotated[str, typer.Option(help="MD5, SHA, SHA224, SHA256, …")] = "SHA",
    v3_priv_proto: Annotated[str, typer.Option(help="DES, AES, AES192, AES256")] = "AES",
    v3_context: Annotated[str, typer.Option(help="SNMPv3 context name.")] = "",
    profile: Annotated[
        str, typer.Option(help="auto, apc, raritan, sentry4, eaton, vertiv or a profile file.")
    ] = "auto",
    timeout: TimeoutOpt = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """One SNMP poll of a PDU (port 161 unless given)."""
    from kuat.collectors.snmp.collector import PduPoller, SnmpAuth

    if (community is None) == (v3_user is None):
        typer.echo("give either --community or --v3-user with its keys", err=True)
        raise typer.Exit(2)
    if v3_user is not None and not (v3_auth_key and v3_priv_key):
        typer.echo("SNMPv3 needs --v3-auth-key and --v3-priv-key (authPriv)", err=True)
        raise typer.Exit(2)
    auth = SnmpAuth(
        community=community,
        v3_user=v3_user,
        v3_auth_key=v3_auth_key,
        v3_priv_key=v3_priv_key,
        v3_auth_proto=v3_auth_proto,
        v3_priv_proto=v3_priv_proto,
        v3_context=v3_context,
    )
    host, port = _split_hostport(target, 161)

    async def once():
        poller = PduPoller(timeout_s=timeout)
        try:
            return await poller.poll(host, port, auth=auth, profile=profile)
        finally:
            poller.close()

    _emit(_run_async(once()), as_json)


@probe_app.command("meter")
def probe_meter(
    target: Annotated[
        str | None, typer.Argument(metavar="HOST[:PORT]", help="Meter address (TCP).")
    ] = None,
    protocol: Annotated[
        str, typer.Option(help="modbus (Modbus/TCP, port 502) or dlms (DLMS/COSEM, port 4059).")
    ] = "modbus",
    unit: Annotated[int, typer.Option(help="Modbus unit (slave) id.")] = 1,
    profile: Annotated[
        str | None,
        typer.Option(
            help="Register-map or OBIS profile name or file (see --list-profiles); "
            "dlms: spodes unless given."
        ),
    ] = None,
    client: Annotated[
        int | None, typer.Option(help="DLMS client address (16 public; 32 with --password).")
    ] = None,
    server: Annotated[int, typer.Option(help="DLMS server (logical device) address.")] = 1,
    password: Annotated[
        str | None,
        typer.Option(help="DLMS low-level security password.", envvar="KUAT_DLMS_PASSWORD"),
    ] = None,
    transport: Annotated[
        str, typer.Option(help="DLMS transport: tcp (wrapper) or hdlc (through a TCP gateway).")
    ] = "tcp",
    list_profiles: Annotated[
        bool, typer.Option("--list-profiles", help="Print the built-in profile names and exit.")
    ] = False,
    timeout: TimeoutOpt = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """One poll of a meter: Modbus/TCP (port 502) or DLMS/COSEM (--protocol dlms, port 4059)."""
    from kuat.collectors.dlms import list_profiles as dlms_names
    from kuat.collectors.modbus.collector import MeterPoller
    from kuat.collectors.modbus.collector import list_profiles as names

    if protocol not in ("modbus", "dlms"):
        typer.echo(f"--protocol must be modbus or dlms, not {protocol!r}", err=True)
        raise typer.Exit(2)
    if list_profiles:
        for name in names() if protocol == "modbus" else dlms_names():
            typer.echo(name)
        return
    if protocol == "dlms":
        if target is None or transport not in ("tcp", "hdlc"):
            typer.echo("give HOST[:PORT]; --transport is tcp or hdlc", err=True)
            raise typer.Exit(2)
        _emit(
            _run_async(
                _probe_dlms(
                    target, profile or "spodes", client, server, password, transport, timeout
                )
            ),
            as_json,
        )
        return
    if target is None or profile is None:
        typer.echo("give HOST[:PORT] and --profile (see --list-profiles)", err=True)
        raise typer.Exit(2)
    host, port = _split_hostport(target, 502)

    async def once():
        poller = MeterPoller(timeout_s=timeout)
        try:
            return await poller.poll(host, port, unit=unit, profile=profile)
        finally:
            await poller.close()

    _emit(_run_async(once()), as_json)


async def _probe_dlms(
    target: str,
    profile: str,
    client: int | None,
    server: int,
    password: str | None,
    transport: str,
    timeout_s: float,
) -> object:
    from kuat.collectors.dlms import DlmsMeter, DlmsPoller

    host, port = _split_hostport(target, 4059)
    meter = DlmsMeter(
        host=host,
        port=port,
        transport="hdlc" if transport == "hdlc" else "tcp",
        client_address=client if client is not None else (32 if password else 16),
        server_address=server,
        password=password,
        profile=profile,
        timeout_s=timeout_s,
    )
    return await DlmsPoller().poll(meter)


def main() -> None:
    from kuat.agent.commands import register_all

    register_all(app)
    app()


if __name__ == "__main__":
    main()
