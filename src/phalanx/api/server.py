"""Run the control plane and its API in one process: ``phalanx up``.

``serve(settings)`` opens the store, the local backend and the ControlPlane, listens on
``127.0.0.1:8470`` by default, and blocks until SIGINT/SIGTERM; then it stops the control
loop (pods keep running; the next start adopts them). While it runs, ``<data_dir>/server.json``
says where it is (``{url, pid, token_file}``) so that the client and the CLI find it without
flags; the bearer token lives in ``<data_dir>/token`` (mode 0600), created once and reused.
Must not import client or cli.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn

from phalanx import __version__
from phalanx.api.app import create_app
from phalanx.backends.base import Backend
from phalanx.backends.local.backend import LocalBackend
from phalanx.backends.local.nodes import discover_nodes, parse_nodes_option
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.store import open_store

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8470
SERVER_FILE = "server.json"
TOKEN_FILE = "token"


class ServerError(RuntimeError):
    """The server cannot start: another one runs on the data directory, or the port is taken."""


def default_data_dir() -> Path:
    """Return ``$PHALANX_DATA_DIR``, else ``$XDG_DATA_HOME/phalanx``, else
    ``~/.local/share/phalanx``."""
    explicit = os.environ.get("PHALANX_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "phalanx"


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


def _make_backend(settings: ServerSettings, data_dir: Path) -> Backend:
    """The backend ``settings`` names; raises ServerError for an unknown one."""
    if settings.backend == "local":
        nodes = parse_nodes_option(settings.nodes) if settings.nodes else discover_nodes()
        return LocalBackend(data_dir, nodes)
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
    """Return the token in ``<data_dir>/token``, creating it (mode 0600) on first use."""
    path = data_dir / TOKEN_FILE
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing
    token = secrets.token_urlsafe(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
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


def _check_not_running(info_path: Path) -> None:
    """Raise ServerError if server.json names a live process; remove it if it is stale."""
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except ValueError:
        info = {}
    pid = info.get("pid") if isinstance(info, dict) else None
    if isinstance(pid, int) and (pid == os.getpid() or _is_phalanx_process(pid)):
        raise ServerError(
            f"a phalanx server is already running for {info_path.parent} "
            f"(pid {pid}, {info.get('url', '?')}); stop it with `phalanx down`"
        )
    info_path.unlink(missing_ok=True)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise ServerError(
            f"cannot listen on {host}:{port}: {os.strerror(exc.errno) if exc.errno else exc}; "
            "is another server using that port? choose another with --port"
        ) from exc


def _url(host: str, port: int) -> str:
    connect_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in connect_host:
        connect_host = f"[{connect_host}]"
    return f"http://{connect_host}:{port}"


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
        self.settings = settings
        data_dir = settings.data_dir.expanduser().resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.info_path = data_dir / SERVER_FILE
        _check_not_running(self.info_path)
        self.token = load_or_create_token(data_dir)
        backend = _make_backend(settings, data_dir)
        self._socket = _listen(settings.host, settings.port)
        port = int(self._socket.getsockname()[1])
        self.url = _url(settings.host, port)
        try:
            self.store = open_store(settings.store_url, data_dir)
            self.backend = backend
            self.plane = ControlPlane(
                self.store,
                self.backend,
                ControlPlaneConfig(data_dir=data_dir, tick_s=settings.tick_s),
            )
            self.plane.start()
        except BaseException:
            self._socket.close()
            raise
        app = create_app(self.plane, self.token)
        config = uvicorn.Config(
            app,
            log_level=settings.log_level,
            ws="none",
            lifespan="off",
            timeout_graceful_shutdown=5,
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
            _write_json_atomically(
                self.info_path,
                {
                    "url": self.url,
                    "pid": os.getpid(),
                    "token_file": str(self.data_dir / TOKEN_FILE),
                    "data_dir": str(self.data_dir),
                    "version": __version__,
                    "started_at": time.time(),
                },
            )
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

    def _shutdown(self) -> None:
        try:
            self.plane.stop()
        finally:
            with contextlib.suppress(Exception):
                self.backend.close()
            with contextlib.suppress(Exception):
                self.store.close()
            self._socket.close()
            self._remove_info()
            log.info("phalanx stopped; pods keep running and are adopted by the next start")

    def _remove_info(self) -> None:
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return
        if isinstance(info, dict) and info.get("pid") == os.getpid():
            self.info_path.unlink(missing_ok=True)


def serve(settings: ServerSettings) -> None:
    """Run phalanx in the foreground until SIGINT/SIGTERM; raise ServerError if it cannot
    start (already running for this data directory, port taken)."""
    ApiServer(settings).run()
