"""The serving data plane's commands: ``phalanx serve-model PATH`` (an Open Inference
Protocol V2 server for one scikit-learn or ONNX model) and ``phalanx router`` (the serving
router on its own, reading routes from a running server).

``RemoteRoutes`` is the standalone router's ``RouteSource`` and ``LoadSink``: a background
thread polls ``GET /api/v1/routes`` (every ``poll_interval_s``; every ``fast_poll_s`` while a
request waits for a replica) and posts ``POST /api/v1/routes/load`` with
``{"samples": [...], "demand": [...]}``, with the client's server address and token. The
router's event loop only reads the latest routes and appends to a buffer: it never waits for
the server. If the server cannot be reached, the router keeps routing with the routes it has.

Heavy imports (numpy, onnxruntime, uvicorn) happen inside the commands.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from phalanx.client import locate_server
from phalanx.serving.endpoints import LoadSample, Route, load_to_json, route_from_json

log = logging.getLogger(__name__)

ROUTES_PATH = "/api/v1/routes"
LOAD_PATH = "/api/v1/routes/load"


class RemoteRoutes:
    """Routes from a phalanx server's API, and load reported back to it (see the module
    docstring). ``start()`` fetches once (raising ``RemoteRoutesError`` when the server does
    not answer or refuses) and starts the thread; ``stop()`` posts what is left and stops."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        poll_interval_s: float = 1.0,
        fast_poll_s: float = 0.05,
        fast_for_s: float = 60.0,
        verify: Any = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=10, verify=verify, transport=transport
        )
        self.poll_interval_s = poll_interval_s
        self.fast_poll_s = fast_poll_s
        self.fast_for_s = fast_for_s
        self._routes: tuple[Route, ...] = ()
        self._lock = threading.Lock()
        self._samples: list[LoadSample] = []
        self._demand: set[str] = set()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._fast_until = 0.0
        self._failing = False
        #: Names this router's samples, so that the server sums them with other routers'.
        self.source = f"router:{socket.gethostname()}:{os.getpid()}"

    # -- RouteSource / LoadSink (called on the router's loop: never block) -------------------

    def routes(self) -> Sequence[Route]:
        return self._routes

    def report(self, samples: Sequence[LoadSample]) -> None:
        with self._lock:
            self._samples.extend(dataclasses.replace(s, source=self.source) for s in samples)
            del self._samples[:-1000]  # a server away for long: keep the newest

    def demand(self, service: str) -> None:
        with self._lock:
            self._demand.add(service)
        self._wake.set()

    # -- the thread -------------------------------------------------------------------------

    def start(self) -> None:
        self.fetch()
        self._thread = threading.Thread(target=self._run, name="phalanx-routes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(15)
        self._http.close()

    def fetch(self) -> None:
        """Read the routes now. Raises RemoteRoutesError naming the server and the fix."""
        try:
            response = self._http.get(ROUTES_PATH)
        except httpx.HTTPError as exc:
            raise RemoteRoutesError(
                f"cannot reach the phalanx server at {self.url}: {exc}"
            ) from exc
        if response.status_code in (401, 403):
            raise RemoteRoutesError(
                f"the server at {self.url} refused GET {ROUTES_PATH} ({response.status_code}): "
                "give a token that may read routes (--token or $PHALANX_TOKEN)"
            )
        if response.status_code != 200:
            raise RemoteRoutesError(
                f"GET {self.url}{ROUTES_PATH} answered {response.status_code}: "
                f"{response.text[:300]}"
            )
        try:
            routes = tuple(route_from_json(item) for item in response.json())
        except (KeyError, TypeError, ValueError) as exc:
            raise RemoteRoutesError(
                f"GET {self.url}{ROUTES_PATH} answered routes this router cannot read: {exc}"
            ) from exc
        if routes != self._routes:
            self._routes = routes

    def flush(self) -> None:
        """Post the buffered samples and demand now (kept for the next try on failure)."""
        with self._lock:
            samples, self._samples = self._samples, []
            demand, self._demand = sorted(self._demand), set()
        if not samples and not demand:
            return
        body = {"samples": [load_to_json(s) for s in samples], "demand": demand}
        try:
            response = self._http.post(LOAD_PATH, json=body)
            response.raise_for_status()
        except httpx.HTTPError:
            with self._lock:
                self._samples[:0] = samples
                self._demand.update(demand)
            raise
        if demand:
            self._fast_until = time.monotonic() + self.fast_for_s

    def _run(self) -> None:
        while not self._stopping.is_set():
            fast = time.monotonic() < self._fast_until or bool(self._demand)
            self._wake.wait(self.fast_poll_s if fast else self.poll_interval_s)
            self._wake.clear()
            try:
                self.flush()
                self.fetch()
            except (httpx.HTTPError, RemoteRoutesError) as exc:
                if not self._failing:
                    log.warning("the router keeps its last routes: %s", exc)
                self._failing = True
            else:
                if self._failing:
                    log.warning("the phalanx server at %s answers again", self.url)
                self._failing = False
        with contextlib.suppress(httpx.HTTPError):
            self.flush()


class RemoteRoutesError(Exception):
    """The server cannot give routes; the message names the server and the fix."""


def _port_default() -> int:
    for name in ("PHALANX_PORT", "PORT"):
        value = os.environ.get(name)
        if value:
            return int(value)
    return 8080


def serve_model(
    path: Annotated[
        Path,
        typer.Argument(help="Model file: *.joblib/*.pkl (scikit-learn) or *.onnx (ONNX)."),
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="Model name (default: the file's stem).")
    ] = None,
    version: Annotated[str, typer.Option("--version", help="Model version.")] = "1",
    host: Annotated[
        str,
        typer.Option(
            "--host",
            envvar="PHALANX_HOST",
            help="Address to listen on (0.0.0.0 in a pod).",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(
            "--port", help="Port (0: a free one). Default: $PHALANX_PORT, $PORT, else 8080."
        ),
    ] = None,
) -> None:
    """Serve one scikit-learn or ONNX model over the Open Inference Protocol (V2) REST API."""
    try:
        from phalanx.serving.modelserver import InferenceError, load_model, serve
    except ImportError as exc:
        typer.echo(
            f"error: serve-model needs the serve extra ({exc.name} is missing): "
            "pip install 'phalanx[serve]'",
            err=True,
        )
        raise typer.Exit(1) from None
    try:
        model = load_model(path, name, version)
    except InferenceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # a corrupt file, a missing library of the pickle, ...
        typer.echo(f"error: cannot load model {path}: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None

    def listening(bound: int) -> None:
        typer.echo(
            f"serving model {model.name} (version {model.version}, {model.platform}) on "
            f"http://{host}:{bound}/v2/models/{model.name}",
        )

    try:
        serve(model, host, _port_default() if port is None else port, on_listening=listening)
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(1) from None


def router(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: a free one).")] = 8000,
    poll_interval_s: Annotated[
        float, typer.Option("--poll-interval", help="Seconds between route reads.")
    ] = 1.0,
) -> None:
    """Run the serving router alone, in front of the services of a running server (its
    routes from GET /api/v1/routes; load and demand posted back)."""
    from phalanx.serving.router import Router, new_event_loop, serve_forever

    root = ctx.find_root().obj
    location = locate_server(
        getattr(root, "server", None), getattr(root, "token", None), getattr(root, "data_dir", None)
    )
    verify: Any = location.ca_file or True
    remote = RemoteRoutes(
        location.url, location.token, poll_interval_s=poll_interval_s, verify=verify
    )
    try:
        remote.start()
    except RemoteRoutesError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None

    def ready(bound: int) -> None:
        typer.echo(
            f"router on http://{host}:{bound}, routes from {location.url} "
            f"({len(remote.routes())} service(s) now)"
        )

    try:
        serve_forever(Router(remote, remote), host, port, ready, loop_factory=new_event_loop)
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        remote.stop()
