"""Run the control plane and its API in one process: ``phalanx up``.

``serve(settings)`` opens the store, the local backend and the ControlPlane, listens on
``127.0.0.1:8470`` by default, and blocks until SIGINT/SIGTERM; then it stops the control
loop (pods keep running; the next start adopts them). While it runs, ``<data_dir>/server.json``
says where it is (``{url, pid, token_file}``) so that the client and the CLI find it without
flags; the bearer token lives in ``<data_dir>/token`` (mode 0600), created once and reused.

With ``ha`` (high availability: several servers on one PostgreSQL store, see
docs/high-availability.md) several servers may share one data dir, as the local backend needs
(pods, logs and checkpoints live there): each writes its own ``server-<pid>.json``, and
``server.json`` names the leader, rewritten by each new leader, so that the CLI follows it.
The token file is shared. A server without ``ha`` still refuses a data dir another one uses.

Transport: on loopback the API is plain HTTP unless ``--tls-cert/--tls-key`` are given; on any
other address it is HTTPS (the given pair, or a self-signed one made in the data dir, see
``phalanx.api.tls``) unless ``--insecure``. Every request needs a token either way.
Must not import client or cli.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn

from phalanx import __version__
from phalanx.api.app import create_app
from phalanx.api.tls import is_loopback_host, self_signed_pair
from phalanx.auth import AuditLog
from phalanx.backends.base import Backend
from phalanx.backends.local.backend import LocalBackend
from phalanx.backends.local.isolation import (
    PodUser,
    PodUserError,
    others_can_run,
    resolve_pod_user,
    secure_data_dir,
)
from phalanx.backends.local.nodes import discover_nodes, parse_nodes_option
from phalanx.controllers.leader import LeaseConfig, Role
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.pipelines.reconciler import PipelineRunReconciler, ScheduleReconciler
from phalanx.serving.controller import ServiceController, ServingConfig
from phalanx.serving.llm.gateway import GatewayThread
from phalanx.serving.router import RouterThread
from phalanx.store import open_store

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8470
SERVER_FILE = "server.json"
TOKEN_FILE = "token"
#: With ``ha``, each server's own ``server-<pid>.json`` (server.json names the leader).
HA_SERVER_PREFIX = "server-"


class ServerError(RuntimeError):
    """The server cannot start: another one runs on the data directory, or the port is taken."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What ``phalanx up`` was asked for. ``nodes``: ``"4x8"`` or a YAML file, None to discover
    this machine; ``store_url``: a SQLAlchemy URL, None for SQLite under ``data_dir``;
    ``port`` 0 picks a free port (server.json tells which)."""

    data_dir: Path
    nodes: str | None = None
    store_url: str | None = None
    #: ``local`` (this machine or virtual nodes) or ``kubernetes`` (kubeconfig or in-cluster).
    backend: str = "local"
    kubeconfig: str | None = None
    namespace: str = "default"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    log_level: str = "info"
    tick_s: float = 0.2
    #: High availability: one of several control planes on a shared PostgreSQL ``store_url``;
    #: a lease of ``lease_ttl_s`` seconds elects the one that runs the loop.
    ha: bool = False
    lease_ttl_s: float = 10.0
    #: TLS: a certificate and key (PEM). Without them a server bound to an address other
    #: than loopback makes a self-signed pair in the data dir, unless ``insecure``.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: The CA that signed ``tls_cert``, named in server.json for the client to trust.
    tls_ca: Path | None = None
    #: Serve plain HTTP on an address other than loopback (tokens cross the network in the
    #: clear; a warning says so).
    insecure: bool = False
    #: The serving router beside the API, on ``host``: its port (0: any free port; None: no
    #: router in this process, e.g. when ``phalanx router`` runs apart).
    router_port: int | None = 0
    #: The LLM gateway beside the API, on ``host``: its port (0: any free port; None: none,
    #: the default; ``phalanx gateway`` runs it apart). See docs/llm.md.
    gateway_port: int | None = None
    #: Local backend: the user pods run as (``none``: the server's own); None: the dedicated
    #: ``phalanx-pod`` when the server runs as root, else the server's (see isolation.py).
    pod_user: str | None = None


def _pod_user(settings: ServerSettings) -> PodUser | None:
    """Who local pods run as; raises ServerError (the message says what to do)."""
    if settings.backend != "local":
        return None
    try:
        return resolve_pod_user(settings.pod_user)
    except PodUserError as exc:
        raise ServerError(str(exc)) from exc


def _make_backend(
    settings: ServerSettings, data_dir: Path, pod_user: PodUser | None = None
) -> Backend:
    """The backend ``settings`` names; raises ServerError for an unknown one."""
    if settings.backend == "local":
        nodes = parse_nodes_option(settings.nodes) if settings.nodes else discover_nodes()
        return LocalBackend(data_dir, nodes, pod_user=pod_user)
    if settings.backend == "kubernetes":
        if settings.nodes:
            raise ServerError(
                "--nodes declares local virtual nodes; with --backend kubernetes the cluster's Nodes are used"
            )
        from phalanx.backends.kubernetes import KubernetesBackend, KubernetesError

        try:
            return KubernetesBackend(kubeconfig=settings.kubeconfig, namespace=settings.namespace)
        except KubernetesError as exc:
            raise ServerError(str(exc)) from exc
    raise ServerError(f"unknown backend {settings.backend!r}; use local or kubernetes")


def load_or_create_token(data_dir: Path) -> str:
    """Return the token in ``<data_dir>/token``, creating it (mode 0600) on first use. Servers
    starting together on one data dir (``ha``) end up with the same token: it is written to
    a private file that is then linked into place only if no token is there yet."""
    path = data_dir / TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing
    token = secrets.token_urlsafe(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    try:
        os.link(tmp, path)  # fails if another server wrote one meanwhile
    except FileExistsError:
        with contextlib.suppress(FileNotFoundError):
            existing = path.read_text(encoding="utf-8").strip()
            if existing:
                return existing
        tmp.replace(path)  # an empty file was there: ours wins
        return token
    except OSError:  # no hard links on this file system: the last writer wins
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    path.chmod(0o600)
    return token


def is_process_alive(pid: int) -> bool:
    """Return whether a process with ``pid`` exists (ours or another user's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_phalanx_process(pid: int) -> bool:
    """Return whether ``pid`` is alive and, where /proc tells, runs phalanx (pids get reused
    after a crash; an unrelated process must not block the start)."""
    if not is_process_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"phalanx" in cmdline


def _check_not_running(info_path: Path, is_ha: bool = False) -> None:
    """Raise ServerError if server.json (or, for high availability, a ``server-<pid>.json``)
    names a live process, unless both it and this server run with ``ha``; remove the files
    of servers that are gone."""
    paths = [info_path, *sorted(info_path.parent.glob(f"{HA_SERVER_PREFIX}*.json"))]
    for path in paths:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except ValueError:
            info = {}
        pid = info.get("pid") if isinstance(info, dict) else None
        if not (isinstance(pid, int) and (pid == os.getpid() or _is_phalanx_process(pid))):
            path.unlink(missing_ok=True)
            continue
        is_other_ha = isinstance(info, dict) and info.get("ha") is True
        if is_ha and is_other_ha:
            continue
        where = f"{info_path.parent} (pid {pid}, {info.get('url', '?')})"
        if is_ha:
            raise ServerError(
                f"a phalanx server without --ha is running for {where}; stop it with "
                "`phalanx down`, then start every control plane with --ha and the same "
                "PostgreSQL --store-url"
            )
        message = f"a phalanx server is already running for {where}; stop it with `phalanx down`"
        if is_other_ha:
            message += "; or start this one with --ha and the same --store-url to run beside it"
        raise ServerError(message)


def check_ha_store(store_url: str | None) -> None:
    """Raise ServerError unless ``store_url`` is a PostgreSQL URL: high availability needs a
    store every control plane reaches; SQLite belongs to one process's data dir."""
    if store_url is None or not store_url.startswith("postgresql"):
        given = "the default SQLite store" if store_url is None else repr(store_url.split("@")[-1])
        raise ServerError(
            f"--ha needs a PostgreSQL store shared by every control plane, not {given}; pass "
            "--store-url postgresql+psycopg://USER:PASSWORD@HOST/DB (or set PHALANX_STORE_URL)"
            ", the same for each"
        )


#: glibc's mallopt parameter M_ARENA_MAX.
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Ask glibc's malloc to keep at most ``arenas`` arenas (it makes up to eight per core,
    one per thread that allocates at once). The API's worker threads, the loop and SQLite
    allocate from many threads; with the default, memory freed in one arena was not reused by
    the others and the server's RSS after 10,000 submitted jobs was about 25 MiB higher
    (docs/control-plane.md, Performance). Returns whether it was applied (glibc only; the
    environment's MALLOC_ARENA_MAX, when set, wins)."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc
        return False


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise ServerError(
            f"cannot listen on {host}:{port}: {os.strerror(exc.errno) if exc.errno else exc}; "
            "is another server using that port? choose another with --port"
        ) from exc
    # Connections accepted from this socket inherit TCP_NODELAY. asyncio sets it only on
    # sockets whose protocol number says TCP, which create_server's (protocol 0) do not: a
    # reply written in two parts (head, body) then waited for the client's delayed ACK,
    # about 40 ms per request on a kept-alive connection.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _url(host: str, port: int, scheme: str = "http") -> str:
    connect_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in connect_host:
        connect_host = f"[{connect_host}]"
    return f"{scheme}://{connect_host}:{port}"


def transport_security(settings: ServerSettings, data_dir: Path) -> tuple[Path, Path, Path] | None:
    """(certificate, key, CA to name in server.json) to serve with, None for plain HTTP.

    Loopback: TLS only when a certificate is given. Any other address: the given pair, else a
    self-signed one made in the data dir, unless ``insecure`` (then a warning). Raises
    ServerError for half a pair or a file that is not there."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ServerError("--tls-cert and --tls-key go together: give both (PEM files), or neither")
    if settings.tls_cert is not None and settings.tls_key is not None:
        for option, path in (("--tls-cert", settings.tls_cert), ("--tls-key", settings.tls_key)):
            if not path.is_file():
                raise ServerError(f"{option} {path}: no such file; give a PEM file")
        ca = settings.tls_ca or settings.tls_cert
        return settings.tls_cert.resolve(), settings.tls_key.resolve(), ca.resolve()
    if is_loopback_host(settings.host):
        return None
    if settings.insecure:
        log.warning(
            "serving plain HTTP on %s (--insecure): bearer tokens cross the network "
            "unencrypted; anyone on the path can read them and act as their users",
            settings.host,
        )
        return None
    cert, key = self_signed_pair(data_dir, settings.host)
    log.info(
        "serving HTTPS on %s with the self-signed certificate %s; clients elsewhere trust it "
        "with PHALANX_CA_FILE (or give --tls-cert/--tls-key)",
        settings.host,
        cert,
    )
    return cert, key, cert


def _write_json_atomically(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


class ApiServer:
    """A control plane with its API, bound to a socket and ready to ``run()``.

    ``run()`` blocks until SIGINT/SIGTERM (when run in the main thread) or ``request_stop()``.
    Building opens the store and backend and starts the control loop; ``run()`` always stops
    them again, even when serving fails.
    """

    def __init__(self, settings: ServerSettings) -> None:
        limit_malloc_arenas()  # before the threads that would each get an arena start
        self.settings = settings
        if settings.ha:
            check_ha_store(settings.store_url)
        data_dir = settings.data_dir.expanduser().resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        pod_user = _pod_user(settings)
        if pod_user is not None and not others_can_run(sys.executable):
            log.warning(
                "pods run as %s, which cannot run %s (a directory above it is closed to "
                "other users): pods whose command is that Python will fail with 'permission "
                "denied'. Install Python where other users can run it, or pass --pod-user "
                "none to run pods as this server's user",
                pod_user.name,
                sys.executable,
            )
        secure_data_dir(data_dir, is_shared_with_pods=pod_user is not None)  # before any file
        self.data_dir = data_dir
        self.info_path = data_dir / SERVER_FILE
        #: This server's own info file: server.json, or server-<pid>.json with ``ha``.
        self.own_info_path = (
            data_dir / f"{HA_SERVER_PREFIX}{os.getpid()}.json" if settings.ha else self.info_path
        )
        _check_not_running(self.info_path, settings.ha)
        self.token = load_or_create_token(data_dir)
        backend = _make_backend(settings, data_dir, pod_user)
        self.tls = transport_security(settings, data_dir)
        self._socket = _listen(settings.host, settings.port)
        port = int(self._socket.getsockname()[1])
        self.url = _url(settings.host, port, "https" if self.tls else "http")
        try:
            self.store = open_store(settings.store_url, data_dir)
            self.backend = backend
            lease = LeaseConfig(ttl_s=settings.lease_ttl_s) if settings.ha else None
            self.plane = ControlPlane(
                self.store,
                self.backend,
                ControlPlaneConfig(
                    data_dir=data_dir, tick_s=settings.tick_s, lease=lease, freeze_heap=True
                ),
            )
            self.plane.role_listeners.append(self._on_role)
            # Pipeline runs: each step a job owned by its run (phalanx.pipelines).
            self.plane.reconcilers += [
                PipelineRunReconciler(self.plane),
                ScheduleReconciler(self.store, self.plane.cancel_job),
            ]
            # Services: their reconciler runs in the loop; the router beside the API reads
            # its routes and reports load to it.
            self.services = ServiceController.attach(self.plane, ServingConfig())
            self.router: RouterThread | None = None
            self.router_url = ""
            if settings.router_port is not None:
                # The router beside the API is served like it: HTTPS with the same pair.
                router_tls = None
                if self.tls:
                    router_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                    router_tls.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
                self.router = RouterThread(
                    self.services,
                    self.services,
                    settings.host,
                    settings.router_port,
                    ssl=router_tls,
                )
                try:
                    router_port = self.router.start()
                except OSError as exc:
                    raise ServerError(
                        f"cannot listen on {settings.host}:{settings.router_port} for the "
                        f"serving router: {exc}; choose another with --router-port (0: any)"
                    ) from exc
                self.router_url = _url(settings.host, router_port, "https" if self.tls else "http")
                self.services.config.router_url = self.router_url
            # The LLM gateway beside the API: the same routes and load sink as the router.
            self.gateway: GatewayThread | None = None
            self.gateway_url = ""
            if settings.gateway_port is not None:
                gateway_tls = None
                if self.tls:
                    gateway_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                    gateway_tls.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
                self.gateway = GatewayThread(
                    self.services,
                    self.services,
                    settings.host,
                    settings.gateway_port,
                    ssl=gateway_tls,
                )
                try:
                    gateway_port = self.gateway.start()
                except OSError as exc:
                    raise ServerError(
                        f"cannot listen on {settings.host}:{settings.gateway_port} for the "
                        f"LLM gateway: {exc}; choose another with --gateway-port (0: any)"
                    ) from exc
                self.gateway_url = _url(
                    settings.host, gateway_port, "https" if self.tls else "http"
                )
            self.plane.start()
        except BaseException:
            self._socket.close()
            if getattr(self, "router", None) is not None:
                self.router.stop()  # type: ignore[union-attr]
            if getattr(self, "gateway", None) is not None:
                self.gateway.stop()  # type: ignore[union-attr]
            raise
        # Open watch streams end within one poll once uvicorn is asked to exit (by a signal
        # or request_stop), rather than holding the graceful shutdown to its timeout.
        app = create_app(self.plane, self.token, is_stopping=lambda: self._server.should_exit)
        self._audit: AuditLog = app.state.audit
        config = uvicorn.Config(
            app,
            log_level=settings.log_level,
            ws="none",
            lifespan="off",
            timeout_graceful_shutdown=5,
            ssl_certfile=str(self.tls[0]) if self.tls else None,
            ssl_keyfile=str(self.tls[1]) if self.tls else None,
        )
        self._server = uvicorn.Server(config)

    def request_stop(self) -> None:
        """Ask ``run()`` to finish its in-flight requests and return."""
        self._server.should_exit = True

    def run(self) -> None:
        """Serve until asked to stop, then stop the control loop and remove server.json."""
        previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int | None] = {}
        if threading.current_thread() is threading.main_thread():
            # uvicorn handles SIGINT/SIGTERM while serving, then re-raises the signal under the
            # handler it found; with ours in place that re-raise cannot kill the process before
            # the control loop is stopped and server.json removed below.
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self._on_signal)
        try:
            _write_json_atomically(self.own_info_path, self._info())
            log.info(
                "phalanx %s serving %s (pid %d, data dir %s, token in %s)",
                __version__,
                self.url,
                os.getpid(),
                self.data_dir,
                self.data_dir / TOKEN_FILE,
            )
            self._server.run(sockets=[self._socket])
        finally:
            self._shutdown()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop()

    def _info(self) -> dict[str, object]:
        return {
            "url": self.url,
            "pid": os.getpid(),
            "token_file": str(self.data_dir / TOKEN_FILE),
            "ca_file": str(self.tls[2]) if self.tls else "",
            "data_dir": str(self.data_dir),
            "version": __version__,
            "started_at": time.time(),
            "ha": self.settings.ha,
            "router_url": self.router_url,
            "gateway_url": self.gateway_url,
        }

    def _on_role(self, role: Role) -> None:
        """A new leader names itself in server.json, so that the CLI follows it."""
        if role is Role.LEADER:
            _write_json_atomically(self.info_path, self._info())
            log.info("leading; %s names this server (%s)", self.info_path, self.url)

    def _shutdown(self) -> None:
        try:
            if self.router is not None:
                self.router.stop()
            if self.gateway is not None:
                self.gateway.stop()
            self.plane.stop()
            self.services.close()
        finally:
            with contextlib.suppress(Exception):
                self._audit.close()
            with contextlib.suppress(Exception):
                self.backend.close()
            with contextlib.suppress(Exception):
                self.store.close()
            self._socket.close()
            self._remove_info()
            log.info("phalanx stopped; pods keep running and are adopted by the next start")

    def _remove_info(self) -> None:
        for path in {self.info_path, self.own_info_path}:
            try:
                info = json.loads(path.read_text(encoding="utf-8"))
            except (FileNotFoundError, ValueError):
                continue
            if isinstance(info, dict) and info.get("pid") == os.getpid():
                path.unlink(missing_ok=True)


def serve(settings: ServerSettings) -> None:
    """Run phalanx in the foreground until SIGINT/SIGTERM; raise ServerError if it cannot
    start (already running for this data directory, port taken)."""
    ApiServer(settings).run()
