"""The ``phalanx`` command: up, down, apply, get, describe, logs, cancel, delete, demo.

Every command but ``up`` talks to a server through ``phalanx.client``. Errors a user can meet
(unknown job, bad YAML, rejected spec, server down) print one ``error: …`` line each on stderr
and exit 1; usage errors exit 2; no traceback. Heavy imports (uvicorn, FastAPI, the control
plane) happen inside ``up`` only, so the other commands start fast.

The global options (``--server``, ``--data-dir``, ``--token``) are declared once, on the root
command, and copied onto every command by ``_PhalanxGroup``: ``phalanx get jobs --data-dir D``
means ``phalanx --data-dir D get jobs``, and each command's ``--help`` lists them.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec

import typer
from typer.core import TyperGroup

from phalanx import __version__, kinds
from phalanx.cli.ask import ask as ask_command
from phalanx.cli.auth import audit as audit_command
from phalanx.cli.auth import token_app, user_app
from phalanx.cli.daemon import (
    DaemonError,
    how_to_stop,
    is_default_data_dir,
    phalanx_command,
    start_daemon,
    stop_daemon,
)
from phalanx.cli.describe import describe_flavor, describe_job, describe_node, describe_queue
from phalanx.cli.doctor import job_estimates, overload_note, render_report
from phalanx.cli.gateway import gateway as gateway_command
from phalanx.cli.get import Query, WatchPrinter, empty_message, fetch, watch_changes
from phalanx.cli.pipeline import pipeline_app, print_objects, print_run
from phalanx.cli.secrets import describe_secret, print_secrets
from phalanx.cli.service import print_description, print_services, serve, service_app
from phalanx.cli.serving_data import router as router_command
from phalanx.cli.serving_data import serve_model as serve_model_command
from phalanx.cli.simulate import simulate as simulate_command
from phalanx.client import (
    ApiError,
    ApplyOutcome,
    Client,
    ClientError,
    default_data_dir,
    register_server,
    running_servers,
    standard_data_dir,
    unregister_server,
)
from phalanx.model.metadata import LabelSelector, parse_selector

P = ParamSpec("P")

#: The global options, by parameter name (the fields of ``Globals``).
GLOBAL_OPTIONS = ("server", "data_dir", "token")
GLOBAL_PANEL = "Global options (before or after the command)"


class _PhalanxGroup(TyperGroup):
    """The root command: copies its global options onto every command (and the commands of
    any group below), so they are accepted after the command name and listed in its --help."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        shared = [p for p in self.params if p.name in GLOBAL_OPTIONS]
        for param in shared:
            if param.name == "data_dir":
                # Built for every run, not at import: $XDG_DATA_HOME and $HOME decide it, and
                # --help shows the directory this very environment would use.
                param.default = standard_data_dir()
        commands = list(self.commands.values())
        while commands:
            command = commands.pop()
            for param in shared:
                copied = copy.copy(param)
                copied.expose_value = False  # _take_global records it; the command never sees it
                command.params.append(copied)
            commands += getattr(command, "commands", {}).values()


app = typer.Typer(
    name="phalanx",
    cls=_PhalanxGroup,
    help="Queue, gang-schedule and place AI workloads on GPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: The most jobs the server sends per request (``--chunk-size``).
MAX_CHUNK_SIZE = 5000


class OutputFormat(StrEnum):
    """``-o``: more columns, or the API's JSON as JSON or YAML."""

    WIDE = "wide"
    JSON = "json"
    YAML = "yaml"


@dataclass(frozen=True, slots=True)
class Globals:
    """The global options given (on the command line, before or after the command, or in the
    environment); None where not given."""

    server: str | None = None
    token: str | None = None
    data_dir: Path | None = None

    def given(self, name: str, text: str) -> Globals:
        """Return these options with the one named ``name`` (a parameter name) set to ``text``."""
        if name == "server":
            return dataclasses.replace(self, server=text)
        if name == "token":
            return dataclasses.replace(self, token=text)
        if name == "data_dir":
            return dataclasses.replace(self, data_dir=Path(text))
        raise ValueError(f"{name!r} is not a global option")

    def client(self) -> Client:
        """Return a client for the server these options (or the environment) name."""
        return Client(server=self.server, token=self.token, data_dir=self.data_dir)

    def resolved_data_dir(self) -> Path:
        """Return the data directory: ``--data-dir``, ``$PHALANX_DATA_DIR``, or the standard one."""
        return (self.data_dir or default_data_dir()).expanduser().absolute()


def _fail(*lines: str) -> NoReturn:
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    raise typer.Exit(1)


def _api_error_lines(exc: ApiError) -> list[str]:
    """Return one line per field error of a rejected manifest, else the message."""
    if not exc.details:
        return [exc.message]
    prefix = f"{exc.source}: " if exc.source else ""
    lines = []
    for detail in exc.details:
        value = detail.get("value")
        got = "" if value is None else f" (got {value!r})"
        path = detail.get("path") or "(manifest)"
        lines.append(f"{prefix}{path}: {detail.get('message', '')}{got}")
    return lines


@contextmanager
def _reported_errors() -> Iterator[None]:
    """Turn the errors a user can meet into ``error:`` lines and exit code 1."""
    try:
        yield
    except ApiError as exc:
        _fail(*_api_error_lines(exc))
    except (ClientError, DaemonError, TimeoutError) as exc:
        _fail(str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")


def _handles_errors(command: Callable[P, None]) -> Callable[P, None]:
    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        with _reported_errors():
            command(*args, **kwargs)

    return wrapper


def _globals(ctx: typer.Context) -> Globals:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Globals) else Globals()


def _take_global(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> object:
    """Record a global option in the root's Globals as it is parsed: before the command name
    from the command line or the environment, then after it from the command line only, so the
    option nearest the command wins and a default never hides one given earlier."""
    source = ctx.get_parameter_source(param.name) if param.name else None
    is_root = ctx.parent is None
    given = source is not None and source.name in (
        ("COMMANDLINE", "ENVIRONMENT") if is_root else ("COMMANDLINE",)
    )
    if given and param.name and value is not None:
        ctx.find_root().obj = _globals(ctx).given(param.name, str(value))
    return value


def _version(value: bool) -> None:
    if value:
        typer.echo(f"phalanx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            envvar="PHALANX_SERVER",
            callback=_take_global,
            rich_help_panel=GLOBAL_PANEL,
            help="Server URL (default: what `phalanx up` wrote to <data-dir>/server.json).",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="PHALANX_DATA_DIR",
            callback=_take_global,
            rich_help_panel=GLOBAL_PANEL,
            show_default=True,  # standard_data_dir(), set by _PhalanxGroup
            help="Where `phalanx up` keeps the store, pod logs, token and server.json, and where "
            "the other commands find the server.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="PHALANX_TOKEN",
            callback=_take_global,
            rich_help_panel=GLOBAL_PANEL,
            help="Bearer token for the server (default: <data-dir>/token).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """phalanx: queues, gang scheduling and GPU placement in one control plane."""
    # _take_global has recorded the global options in ctx.obj as they were parsed.
    ctx.ensure_object(Globals)


# -- server ---------------------------------------------------------------------------------


@app.command()
def up(
    ctx: typer.Context,
    nodes: Annotated[
        str | None,
        typer.Option(
            "--nodes",
            help="Virtual nodes: NxG (e.g. 4x8) or a nodes YAML file; default: this machine.",
        ),
    ] = None,
    store_url: Annotated[
        str | None,
        typer.Option(
            "--store-url",
            envvar="PHALANX_STORE_URL",
            help="SQLAlchemy URL, e.g. postgresql+psycopg://…; default: SQLite.",
        ),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="local (this machine) or kubernetes.")
    ] = "local",
    kubeconfig: Annotated[
        str | None,
        typer.Option("--kubeconfig", help="Kubernetes config; default $KUBECONFIG or in-cluster."),
    ] = None,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="Namespace for phalanx's own objects.")
    ] = "default",
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0: any free port.")] = 8470,
    router_port: Annotated[
        int | None,
        typer.Option(
            "--router-port",
            min=-1,
            max=65535,
            help="The serving router's port: default --port + 1 (any free port with --port 0); "
            "0: any free port; -1: no router (run `phalanx router` apart).",
        ),
    ] = None,
    gateway_port: Annotated[
        int | None,
        typer.Option(
            "--gateway-port",
            min=0,
            max=65535,
            help="Run the OpenAI-compatible LLM gateway beside the API on this port (0: any "
            "free port); default: none (run `phalanx gateway` apart). See docs/llm.md.",
        ),
    ] = None,
    daemon: Annotated[
        bool,
        typer.Option("--daemon", "-d", help="Run in the background; log to <data-dir>/server.log."),
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="Server log level.")] = "info",
    ha: Annotated[
        bool,
        typer.Option(
            "--ha",
            envvar="PHALANX_HA",
            help="High availability: one of several control planes on the same PostgreSQL "
            "--store-url; a lease elects the leader, the others serve and take over when it "
            "dies. See docs/high-availability.md.",
        ),
    ] = False,
    lease_ttl: Annotated[
        float,
        typer.Option(
            "--lease-ttl",
            min=1.0,
            help="With --ha: seconds the leader's lease lasts unless renewed (every third of "
            "it); a dead leader is replaced within about this long.",
        ),
    ] = 10.0,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert",
            help="Serve HTTPS with this certificate (PEM). Off loopback, without it a "
            "self-signed one is made in the data dir.",
        ),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="The private key of --tls-cert (PEM).")
    ] = None,
    tls_ca: Annotated[
        Path | None,
        typer.Option("--tls-ca", help="The CA of --tls-cert, named in server.json for clients."),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Serve plain HTTP on an address other than loopback (tokens in the clear).",
        ),
    ] = False,
    pod_user: Annotated[
        str | None,
        typer.Option(
            "--pod-user",
            envvar="PHALANX_POD_USER",
            help="Local backend: the unprivileged user pods run as when the server runs as "
            "root (default: phalanx-pod, created if missing); 'none': as the server's user. "
            "See docs/security.md.",
        ),
    ] = None,
) -> None:
    """Start the control plane and its API (foreground unless --daemon)."""
    directory = _globals(ctx).resolved_data_dir()
    if ha:
        from phalanx.api.server import ServerError, check_ha_store

        try:
            check_ha_store(store_url)
        except ServerError as exc:
            _fail(str(exc))
    if daemon:
        up_args = ["--host", host, "--port", str(port), "--log-level", log_level]
        if router_port is not None:
            up_args += ["--router-port", str(router_port)]
        if gateway_port is not None:
            up_args += ["--gateway-port", str(gateway_port)]
        up_args += ["--backend", backend, "--namespace", namespace]
        if kubeconfig:
            up_args += ["--kubeconfig", kubeconfig]
        if nodes:
            up_args += ["--nodes", nodes]
        if store_url:
            up_args += ["--store-url", store_url]
        if ha:
            up_args += ["--ha", "--lease-ttl", str(lease_ttl)]
        for option, path in (
            ("--tls-cert", tls_cert),
            ("--tls-key", tls_key),
            ("--tls-ca", tls_ca),
        ):
            if path is not None:
                up_args += [option, str(path.resolve())]
        if insecure:
            up_args += ["--insecure"]
        if pod_user is not None:
            up_args += ["--pod-user", pod_user]
        with _reported_errors():
            started = start_daemon(directory, up_args, is_ha=ha)
        typer.echo(f"phalanx is up at {started.url} (pid {started.pid})")
        typer.echo(f"  data dir: {directory}\n  log:      {started.log_path}")
        if not is_default_data_dir(directory):
            typer.echo(
                f"  use it with: {phalanx_command('get jobs', directory)} (every command takes "
                f"--data-dir), or export PHALANX_DATA_DIR={shlex.quote(str(directory))}"
            )
        if ha:
            typer.echo(
                f"  stop it with: kill {started.pid} (`{phalanx_command('down', directory)}` "
                "stops the leader named in server.json)"
            )
        else:
            typer.echo(f"  stop it with: {phalanx_command('down', directory)}")
        return
    _serve_foreground(
        directory,
        nodes,
        store_url,
        host,
        port,
        log_level,
        backend,
        kubeconfig,
        namespace,
        ha,
        lease_ttl,
        tls=(tls_cert, tls_key, tls_ca, insecure),
        pod_user=pod_user,
        router_port=router_port,
        gateway_port=gateway_port,
    )


def _serve_foreground(
    directory: Path,
    nodes: str | None,
    store_url: str | None,
    host: str,
    port: int,
    log_level: str,
    backend: str = "local",
    kubeconfig: str | None = None,
    namespace: str = "default",
    ha: bool = False,
    lease_ttl_s: float = 10.0,
    tls: tuple[Path | None, Path | None, Path | None, bool] = (None, None, None, False),
    pod_user: str | None = None,
    router_port: int | None = None,
    gateway_port: int | None = None,
) -> None:
    import logging

    from phalanx.api.server import ApiServer, ServerError, ServerSettings
    from phalanx.backends.local.nodes import NodeSpecError
    from phalanx.model.specs import SpecError
    from phalanx.store import StoreError

    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = ServerSettings(
        data_dir=directory,
        nodes=nodes,
        store_url=store_url,
        backend=backend,
        kubeconfig=kubeconfig,
        namespace=namespace,
        host=host,
        port=port,
        log_level=log_level.lower(),
        ha=ha,
        lease_ttl_s=lease_ttl_s,
        tls_cert=tls[0],
        tls_key=tls[1],
        tls_ca=tls[2],
        insecure=tls[3],
        pod_user=pod_user,
        router_port=(
            (port + 1 if port else 0)
            if router_port is None
            else (None if router_port < 0 else router_port)
        ),
        gateway_port=gateway_port,
    )
    try:
        server = ApiServer(settings)
    except (NodeSpecError, SpecError) as exc:
        _fail(*(f"{e.path}: {e.message} (got {e.value!r})" for e in exc.errors))
    except (ServerError, StoreError, OSError) as exc:
        _fail(str(exc))
    # Listed while it serves, so that commands pointed at another data dir can name this one.
    pid = os.getpid()
    try:
        register_server(server.data_dir, server.url, pid)
    except OSError as exc:
        logging.getLogger(__name__).warning("cannot list this server for other commands: %s", exc)
    try:
        server.run()
    finally:
        unregister_server(server.data_dir, pid)


@app.command()
@_handles_errors
def down(
    ctx: typer.Context,
    timeout_s: Annotated[float, typer.Option("--timeout", help="Seconds to wait.")] = 30,
) -> None:
    """Stop the server started with `phalanx up --daemon` (its pods keep running)."""
    directory = _globals(ctx).resolved_data_dir()
    pid = stop_daemon(directory, timeout_s)
    if pid is not None:
        typer.echo(f"phalanx stopped (pid {pid})")
        return
    # Stopping another data dir's server would surprise; say which runs and how to stop it.
    others = running_servers(excluding=directory)
    if others:
        _fail(f"no phalanx server for data dir {directory}; {how_to_stop(others)}")
    typer.echo(f"phalanx is not running (data dir {directory})")


# -- apply ----------------------------------------------------------------------------------


def _manifest_files(paths: Sequence[str]) -> list[tuple[str, bytes]]:
    """Return (source, YAML bytes) for each -f value: a file, a directory's *.yaml, or -."""
    out: list[tuple[str, bytes]] = []
    for value in paths:
        if value == "-":
            out.append(("<stdin>", sys.stdin.buffer.read()))
            continue
        path = Path(value)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
            if not files:
                _fail(f"{value}: the directory holds no .yaml, .yml or .json files")
            out += [(str(f), f.read_bytes()) for f in files]
        else:
            out.append((value, path.read_bytes()))
    return out


def _outcome_line(outcome: ApplyOutcome) -> str:
    return f"{outcome['kind'].lower()}.phalanx.dev/{outcome['name']} {outcome['action']}"


def _warning_lines(outcome: ApplyOutcome) -> list[str]:
    """``Warning: …`` for each reason the server gives why an accepted job cannot run."""
    name = f"{outcome['kind'].lower()}.phalanx.dev/{outcome['name']}"
    return [f"Warning: {name}: {w['message']} ({w['code']})" for w in outcome.get("warnings") or []]


@app.command()
@_handles_errors
def apply(
    ctx: typer.Context,
    filename: Annotated[
        list[str],
        typer.Option("--filename", "-f", help="YAML file, directory, or - for stdin; repeatable."),
    ],
) -> None:
    """Create or update jobs, queues and flavors from YAML (each file all or nothing)."""
    documents = _manifest_files(filename)
    with _globals(ctx).client() as client:
        for source, text in documents:
            for outcome in client.apply_yaml(text, source=source):
                typer.echo(_outcome_line(outcome))
                for line in _warning_lines(outcome):
                    typer.echo(line, err=True)


# -- get / describe -------------------------------------------------------------------------


def _kind(value: str) -> kinds.Kind:
    """Return the kind named ``value`` (any of its names); an unknown one is a one-line
    error listing the known kinds."""
    try:
        return kinds.lookup(value)
    except kinds.UnknownKindError as exc:
        _fail(str(exc))


def _selector(text: str | None) -> LabelSelector | None:
    if not text:
        return None
    try:
        return parse_selector(text)
    except ValueError as exc:
        _fail(f"--selector: {exc}")


def _emit(data: object, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        import yaml

        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n"))


@app.command()
@_handles_errors
def get(
    ctx: typer.Context,
    kind: Annotated[
        str, typer.Argument(metavar="KIND", help="jobs, queues, nodes or flavors (any name).")
    ],
    name: Annotated[str | None, typer.Argument(metavar="NAME", help="Show only this one.")] = None,
    output: Annotated[
        OutputFormat | None, typer.Option("--output", "-o", help="wide, json or yaml.")
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Jobs of this queue only.")
    ] = None,
    selector: Annotated[
        str | None,
        typer.Option(
            "--selector",
            "-l",
            help="Only objects whose labels match: key=value, key!=value, key or !key, "
            "comma-separated (e.g. team=a,tier!=batch).",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Show at most this many.")
    ] = None,
    chunk_size: Annotated[
        int,
        typer.Option(
            "--chunk-size",
            min=1,
            max=MAX_CHUNK_SIZE,
            help="Read long lists of jobs this many per request.",
        ),
    ] = 500,
    watch: Annotated[
        bool,
        typer.Option("--watch", "-w", help="After the list, print a row per change until Ctrl-C."),
    ] = False,
    output_watch_events: Annotated[
        bool,
        typer.Option("--output-watch-events", help="With --watch, say which event each row is."),
    ] = False,
) -> None:
    """List jobs, queues, nodes or flavors, kubectl style."""
    resolved = _kind(kind)
    if watch and not resolved.is_applied:
        _fail(
            f"{resolved.plural} are observed from the backend, not stored, so they cannot be "
            f"watched; run `phalanx get {resolved.plural}` again instead"
        )
    if resolved is kinds.SERVICE:
        with _globals(ctx).client() as client:
            print_services(client, name, output.value if output is not None else None)
        return
    if resolved is kinds.SECRET:
        chosen = output if output in (OutputFormat.JSON, OutputFormat.YAML) else None
        with _globals(ctx).client() as client:
            print_secrets(
                client, name, None if chosen is None else (lambda data: _emit(data, chosen))
            )
        return
    if resolved in (kinds.PIPELINE, kinds.PIPELINE_RUN):
        with _globals(ctx).client() as client:
            print_objects(client, resolved.plural, name, output.value if output else None)
        return
    query = Query(name, queue, _selector(selector), limit, chunk_size)
    wide = output is OutputFormat.WIDE
    printer = WatchPrinter(
        resolved,
        typer.echo,
        wide=wide,
        output=output.value if output in (OutputFormat.JSON, OutputFormat.YAML) else "table",
        with_events=output_watch_events,
    )
    with _globals(ctx).client() as client:
        listed = fetch(client, resolved, query)
        if wide and resolved is kinds.JOB:
            printer.estimates = job_estimates(client)
        if watch and printer.output != "table":
            for item in listed.items:
                printer.event("ADDED", item, time.time())
        elif output in (OutputFormat.JSON, OutputFormat.YAML):
            assert output is not None
            data: object = listed.items[0] if name is not None else listed.items
            _emit(data, output)
        elif listed.items:
            typer.echo(printer.table(listed.items, time.time()))
            if printer.estimates:
                names = (str(item["name"]) for item in listed.items)
                if note := overload_note(names, printer.estimates):
                    typer.echo(note, err=True)
        else:
            typer.echo(empty_message(resolved, query), err=True)
        if watch:
            try:
                watch_changes(client, resolved, query, listed, printer)
            except KeyboardInterrupt:
                raise typer.Exit(130) from None


@app.command()
@_handles_errors
def describe(
    ctx: typer.Context,
    kind: Annotated[
        str, typer.Argument(metavar="KIND", help="job, queue, flavor or node (any name).")
    ],
    name: Annotated[str, typer.Argument(metavar="NAME", help="Its name.")],
) -> None:
    """Show a job (spec, status, why it waits, pods, timings, events), a queue (quota and
    its use), a flavor or a node in full, with labels and annotations."""
    resolved = _kind(kind)
    now = time.time()
    with _globals(ctx).client() as client:
        if resolved is kinds.JOB:
            job = client.job(name)
            estimate = job_estimates(client).get(name) if job["phase"] == "Pending" else None
            typer.echo(describe_job(job, now, estimate))
        elif resolved is kinds.QUEUE:
            typer.echo(describe_queue(client.queue(name), now))
        elif resolved is kinds.FLAVOR:
            typer.echo(describe_flavor(client.flavor(name), now))
        elif resolved is kinds.NODE:
            typer.echo(describe_node(client.node(name), now))
        elif resolved is kinds.SERVICE:
            print_description(client, name)
        elif resolved is kinds.PIPELINE_RUN:
            print_run(client, name)
        elif resolved is kinds.SECRET:
            typer.echo(describe_secret(client.secret(name)))
        else:
            _fail(f"phalanx describe cannot show {resolved.plural} yet")


# -- jobs -----------------------------------------------------------------------------------


@app.command()
@_handles_errors
def logs(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(metavar="JOB", help="The job.")],
    pod: Annotated[
        str | None,
        typer.Option("--pod", "-p", help="<podset>-<index>, e.g. worker-1; default the first."),
    ] = None,
    attempt: Annotated[
        int | None, typer.Option("--attempt", "-a", min=0, help="Default: the latest.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the pod finishes.")
    ] = False,
) -> None:
    """Print a pod's output."""
    out = sys.stdout
    with _globals(ctx).client() as client:
        if follow:
            try:
                for text in client.follow_logs(job, pod, attempt):
                    out.write(text)
                    out.flush()
            except KeyboardInterrupt:
                raise typer.Exit(130) from None
            return
        offset = 0
        while True:
            chunk = client.logs(job, pod, attempt, offset)
            out.write(chunk["data"])
            if not chunk["data"] or chunk["next_offset"] == offset:
                break
            offset = chunk["next_offset"]
        out.flush()


@app.command()
@_handles_errors
def cancel(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(metavar="JOB", help="The job to cancel.")],
) -> None:
    """Stop a job's pods; the job stays, Cancelled."""
    with _globals(ctx).client() as client:
        before = client.job(job)
        if before["is_finished"]:
            typer.echo(f"job.phalanx.dev/{job} unchanged (already {before['phase']})")
            return
        client.cancel(job)
    typer.echo(f"job.phalanx.dev/{job} cancelled")


@app.command()
@_handles_errors
def delete(
    ctx: typer.Context,
    kind: Annotated[
        str, typer.Argument(metavar="KIND", help="job, queue or flavor (any name of a kind).")
    ],
    name: Annotated[str, typer.Argument(metavar="NAME", help="Its name.")],
) -> None:
    """Delete a job (cancelling it first), a queue no job uses, or a flavor; what the object
    owns (metadata.ownerReferences) is deleted after it."""
    resolved = _kind(kind)
    if not resolved.is_applied:
        _fail(f"{resolved.plural} are observed from the backend and cannot be deleted")
    with _globals(ctx).client() as client:
        client.delete(resolved.plural, name)
    typer.echo(f"{resolved.name.lower()}.phalanx.dev/{name} deleted")


@app.command()
@_handles_errors
def doctor(
    ctx: typer.Context,
    kind: Annotated[
        str | None,
        typer.Argument(
            metavar="[KIND]",
            help="job, node, queue, service or pipelinerun: look at one object only.",
        ),
    ] = None,
    name: Annotated[str | None, typer.Argument(metavar="[NAME]", help="Its name.")] = None,
    output: Annotated[
        OutputFormat | None, typer.Option("--output", "-o", help="json or yaml.")
    ] = None,
) -> None:
    """Name the root causes of what waits, fails or idles, across queues, gangs, nodes and
    runtimes, services and pipeline runs, with the evidence and the fix: everything, or one
    job, node, queue, service or pipeline run."""
    if kind is not None and name is None:
        _fail(f"which {kind}? use: phalanx doctor {kind} NAME (or phalanx doctor for everything)")
    with _globals(ctx).client() as client:
        report = client.doctor(kind or "", name or "")
    if output in (OutputFormat.JSON, OutputFormat.YAML):
        assert output is not None
        _emit(report, output)
    else:
        typer.echo(render_report(report))


@app.command()
@_handles_errors
def mcp(
    ctx: typer.Context,
    transport: Annotated[
        str, typer.Option("--transport", help="stdio, or http (streamable HTTP at /mcp).")
    ] = "stdio",
    host: Annotated[str, typer.Option("--host", help="http: loopback address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="http: port.")] = 8765,
    allow_write: Annotated[
        bool, typer.Option("--allow-write", help="Also offer cancel_job (read-only otherwise).")
    ] = False,
) -> None:
    """Serve phalanx to AI agents over MCP: list/describe jobs, queues and nodes, why a job
    is pending, the doctor, start estimates, events and log tails (secrets masked)."""
    from phalanx.cli.mcp import run_mcp

    try:
        with _globals(ctx).client() as client:
            run_mcp(client, transport, host, port, allow_write=allow_write)
    except ValueError as exc:
        _fail(str(exc))


@app.command()
@_handles_errors
def node(
    ctx: typer.Context,
    action: Annotated[str, typer.Argument(metavar="ACTION", help="release")],
    name: Annotated[str, typer.Argument(metavar="NAME", help="The node.")],
) -> None:
    """Act on a node: ``release`` takes it out of quarantine and forgets its failures."""
    if action != "release":
        _fail(f"unknown node action {action!r}; use: phalanx node release NAME")
    with _globals(ctx).client() as client:
        client.release_node(name)
    typer.echo(f"node/{name} released")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@_handles_errors
def demo(ctx: typer.Context) -> None:
    """Run the guided demo (extra arguments go to the demo)."""
    import importlib

    try:
        module = importlib.import_module("phalanx.cli.demo")
    except ModuleNotFoundError as exc:
        if exc.name != "phalanx.cli.demo":
            raise
        _fail("the demo is not part of this build of phalanx")
    run_demo: Callable[..., object] = module.run_demo
    options = _globals(ctx)
    run_demo(server=options.server, data_dir=options.data_dir, args=list(ctx.args))


app.command("simulate")(simulate_command)
app.command("serve-model")(serve_model_command)
app.command("router")(router_command)
app.command("gateway")(gateway_command)
app.command("serve")(serve)
app.add_typer(service_app, name="service")


@app.command()
def db(
    ctx: typer.Context,
    action: Annotated[str, typer.Argument(metavar="ACTION", help="current or upgrade.")],
    store_url: Annotated[
        str | None,
        typer.Option(
            "--store-url",
            envvar="PHALANX_STORE_URL",
            help="SQLAlchemy URL, e.g. postgresql+psycopg://…; default: SQLite in the data dir.",
        ),
    ] = None,
) -> None:
    """Show the store's schema revision (current) or upgrade it to this release's (upgrade);
    `phalanx up` upgrades at start too."""
    from phalanx.cli.db import run_db

    run_db(action, store_url, _globals(ctx).resolved_data_dir())


app.command("ask")(ask_command)
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.command("audit")(audit_command)


def main() -> None:
    """Entry point of the ``phalanx`` script."""
    app()


if __name__ == "__main__":
    main()
