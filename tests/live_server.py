"""A real phalanx server for the tests that need one over the network: uvicorn on a free port
in a thread of the test process, the local backend on virtual nodes, pods as real processes;
and the one-pod Python jobs those tests run on it.

What each test sets up (its nodes, its queues and their quotas, its jobs) stays in the test;
this module holds what is the same for all of them: how the server is started, waited for and
stopped, with the environment the CLI and the client read kept from pointing anywhere else.
``tests/`` is on ``sys.path`` (the root ``conftest.py`` puts it there), so a test imports this
with ``from live_server import running_server``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from phalanx.api.server import ApiServer, ServerSettings
from phalanx.testing import job_manifest

#: What the CLI and the client read to find a server and its token: cleared while a test's
#: server runs (XDG_RUNTIME_DIR pointed into the test's directory), so that a ``Client`` or a
#: ``phalanx`` command finds the test's server and never one the machine already runs.
SERVER_ENV = ("PHALANX_SERVER", "PHALANX_TOKEN", "PHALANX_DATA_DIR", "XDG_RUNTIME_DIR")

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0


@contextlib.contextmanager
def isolated_environment(run_dir: Path) -> Iterator[None]:
    """Clear ``SERVER_ENV`` and set ``XDG_RUNTIME_DIR`` to ``run_dir``; restore all on exit."""
    old = {name: os.environ.pop(name, None) for name in SERVER_ENV}
    os.environ["XDG_RUNTIME_DIR"] = str(run_dir)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def running_server(
    tmp: Path,
    *,
    nodes: str,
    thread_name: str,
    stop_timeout_s: float = STOP_TIMEOUT_S,
    **settings: object,
) -> Iterator[ApiServer]:
    """Serve a fresh data directory ``tmp/data`` on ``nodes`` (``"2x4"``: two virtual 4-GPU
    nodes) on a free port, its control loop ticking every 0.05 s, in a daemon thread named
    ``thread_name``; the environment is isolated (``isolated_environment(tmp / "run")``) while
    it runs. ``settings`` are further ``ServerSettings`` fields, or other values for those.
    Yields the server once it has written ``server.json`` (so ``Client(data_dir=...)`` finds
    it); on exit asks it to stop and waits up to
    ``stop_timeout_s`` for its thread.
    Raises ``AssertionError`` when it has not within ``START_TIMEOUT_S``."""
    fields: dict[str, object] = {"port": 0, "log_level": "warning", "tick_s": 0.05}
    fields.update(settings)
    with isolated_environment(tmp / "run"):
        api = ApiServer(ServerSettings(data_dir=tmp / "data", nodes=nodes, **fields))  # type: ignore[arg-type]
        thread = threading.Thread(target=api.run, name=thread_name, daemon=True)
        thread.start()
        try:
            _wait_until_serving(api)
            yield api
        finally:
            api.request_stop()
            thread.join(timeout=stop_timeout_s)


def _wait_until_serving(api: ApiServer) -> None:
    """Until ``run()`` has written ``server.json``: the socket listens from the start, so a
    request sent from then on waits in its backlog until uvicorn takes it."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not api.info_path.exists():
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)


def admin_client(api: ApiServer, timeout_s: float = 5.0) -> httpx.Client:
    """An HTTP client of ``api`` that sends the server's own (admin) token."""
    return httpx.Client(
        base_url=api.url, headers={"Authorization": f"Bearer {api.token}"}, timeout=timeout_s
    )


def python_job(
    name: str,
    code: str,
    *,
    queue: str,
    gpus: float = 0,
    labels: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    max_runtime: str | None = None,
) -> dict[str, object]:
    """The manifest of a Job of one pod (pod set ``worker``: 100m of CPU, 64Mi, ``gpus``) that
    runs ``python -c code`` with this Python; ``env`` for the pod, ``max_runtime`` (``"10m"``)
    for the job, where given."""
    manifest = job_manifest(
        name,
        queue=queue,
        pod_set="worker",
        labels=labels,
        command=[sys.executable, "-c", code],
        resources={"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": gpus},
    )
    spec = manifest["spec"]
    assert isinstance(spec, dict)
    if max_runtime is not None:
        spec["maxRuntime"] = max_runtime
    if env is not None:
        spec["podSets"][0]["env"] = dict(env)
    return manifest
