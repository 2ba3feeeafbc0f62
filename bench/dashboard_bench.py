"""Benchmark: the web dashboard with many jobs stored (issue: the jobs page's first render
< 300 ms of server time with 10,000 jobs stored; live updates cost O(changes), not O(jobs)).

A real server (uvicorn on a free port, the FastAPI app with the dashboard) over a control
plane on SQLite and the sim backend, with the loop not running, so every job stays Pending
and nothing but the requests below uses the CPU:

  a. the jobs page (``GET /ui/jobs``, 100 jobs a page): its first render on a freshly started
     server (cold caches), then warm renders, then the first render after a write (the
     store's revision moved on); measured at the client on localhost, so an upper bound of
     the server's time;
  b. live updates: a browser's stream (``GET /ui/watch``) open while K jobs are cancelled;
     the time from the first write until the K-th event arrives, and the bytes per event;
     with 1,000 and with 10,000 jobs stored: equal costs mean O(changes);
  c. for contrast, what re-polling the whole list would cost: ``GET /api/v1/jobs`` of all
     the jobs, once.

    python bench/dashboard_bench.py [--jobs 10000] [--small 1000] [--changes 100]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from phalanx.api import create_app
from phalanx.backends.sim import SimBackend
from phalanx.backends.sim.backend import VirtualClock
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.store import Store
from phalanx.testing import make_node

TOKEN = "bench-token"


def manifests(count: int, start: int = 0) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    if start == 0:
        out += [
            {
                "apiVersion": "phalanx.dev/v1alpha1",
                "kind": "ResourceFlavor",
                "metadata": {"name": "default"},
                "spec": {},
            },
            {
                "apiVersion": "phalanx.dev/v1alpha1",
                "kind": "Queue",
                "metadata": {"name": "q"},
                "spec": {
                    "flavors": [
                        {
                            "name": "default",
                            "resources": {"cpu": 64, "memory": "1Ti", "nvidia.com/gpu": 8},
                        }
                    ]
                },
            },
        ]
    for i in range(start, start + count):
        out.append(
            {
                "apiVersion": "phalanx.dev/v1alpha1",
                "kind": "Job",
                "metadata": {"name": f"job-{i:05d}", "labels": {"team": f"t{i % 7}"}},
                "spec": {
                    "queue": "q",
                    "podSets": [
                        {
                            "name": "worker",
                            "replicas": 2,
                            "command": ["python", "train.py", "--epochs", "3"],
                            "resources": {"cpu": 1, "memory": "2Gi", "nvidia.com/gpu": 1},
                        }
                    ],
                },
            }
        )
    return out


def fill(data_dir: Path, jobs: int) -> None:
    """Store ``jobs`` pending jobs (through the control plane's apply, 500 at a time)."""
    with plane_on(data_dir) as plane:
        for start in range(0, jobs, 500):
            plane.apply(manifests(min(500, jobs - start), start))


@contextmanager
def plane_on(data_dir: Path) -> Iterator[ControlPlane]:
    clock = VirtualClock(1_700_000_000.0)
    backend = SimBackend([make_node(f"n{i}").gpus(8).obj() for i in range(4)], clock)
    store = Store(f"sqlite:///{data_dir}/phalanx.db")
    try:
        yield ControlPlane(store, backend, ControlPlaneConfig(data_dir), clock=lambda: clock.now)
    finally:
        store.close()


@contextmanager
def serving(plane: ControlPlane) -> Iterator[str]:
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    app = create_app(plane, TOKEN)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def timed_get(http: httpx.Client, path: str) -> tuple[float, float, httpx.Response]:
    """(wall ms, CPU ms of this process: the server's and the client's) of one GET."""
    t0, c0 = time.perf_counter(), time.process_time()
    response = http.get(path)
    return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000, response


def jobs_page(data_dir: Path, fresh_starts: int) -> None:
    print("a. GET /ui/jobs (100 jobs a page): wall ms at the client on localhost / CPU ms")
    process_firsts, firsts = [], []
    for _ in range(fresh_starts):
        with (
            plane_on(data_dir) as plane,
            serving(plane) as url,
            httpx.Client(base_url=url, cookies={"phalanx_token": TOKEN}, timeout=30) as http,
        ):
            # The process's first requests pay for lazy imports and compiled queries.
            process_firsts.append(timed_get(http, "/api/v1/version")[:2])
            wall, cpu, response = timed_get(http, "/ui/jobs")
            assert response.status_code == 200 and response.text.count("<tr data-job=") == 100
            firsts.append((wall, cpu))
            warm = [timed_get(http, "/ui/jobs")[:2] for _ in range(30)]
            plane.cancel_job("job-00000")
            after_write = timed_get(http, "/ui/jobs")[:2]
            near_end = timed_get(http, "/ui/jobs?continue=9800")[:2]

    def show(pairs: list[tuple[float, float]]) -> str:
        return ", ".join(f"{w:.0f}/{c:.0f}" for w, c in pairs)

    print(f"   the process's first request (GET /api/v1/version): {show(process_firsts)}")
    print(f"   first render of the jobs page on a fresh server: {show(firsts)}")
    walls, cpus = sorted(w for w, _ in warm), sorted(c for _, c in warm)
    print(f"   warm (30): p50 {walls[15]:.0f}/{cpus[15]:.0f}, max {walls[-1]:.0f}/{cpus[-1]:.0f}")
    print(f"   first after a write: {show([after_write])}; a page near the end: {show([near_end])}")


def live_updates(data_dir: Path, label: str, changes: int, first: int) -> float:
    """Write ``changes`` job changes, then stream them from before the first write through
    ``/ui/watch``: the server reads the log and renders each changed job. Returns the ms
    from opening the stream to the last event, per change."""
    with (
        plane_on(data_dir) as plane,
        serving(plane) as url,
        httpx.Client(base_url=url, cookies={"phalanx_token": TOKEN}, timeout=60) as http,
    ):
        http.get("/api/v1/version", headers={"Authorization": f"Bearer {TOKEN}"})
        revision = plane.queries.revision()
        for i in range(first, first + changes):
            plane.cancel_job(f"job-{i:05d}")
        sizes: list[int] = []
        params = {"kinds": "Job", "resourceVersion": str(revision)}
        t0, c0 = time.perf_counter(), time.process_time()
        with http.stream("GET", "/ui/watch", params=params) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    sizes.append(len(line))
                    if len(sizes) >= changes:
                        break
        wall, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
        print(
            f"   {label}: {changes} changes streamed in {wall:.0f} ms wall, {cpu:.0f} ms CPU; "
            f"{wall / changes:.2f} ms and {statistics.mean(sizes):.0f} bytes per change"
        )
        return wall / changes


def whole_list(data_dir: Path, jobs: int) -> None:
    with (
        plane_on(data_dir) as plane,
        serving(plane) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
        ) as http,
    ):
        ms, _, response = timed_get(http, "/api/v1/jobs?limit=5000")
        total, size, token = ms, len(response.content), response.headers.get("X-Continue")
        while token:
            ms, _, response = timed_get(http, f"/api/v1/jobs?limit=5000&continue={token}")
            total, size, token = (
                total + ms,
                size + len(response.content),
                response.headers.get("X-Continue"),
            )
    print(f"c. re-reading the whole list once ({jobs} jobs): {total:.0f} ms, {size / 1e6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--fresh-starts", type=int, default=3)
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min)")
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big", Path(tmp) / "small"
        big.mkdir()
        small.mkdir()
        t0 = time.perf_counter()
        fill(big, args.jobs)
        fill(small, args.small)
        print(f"stored {args.jobs} and {args.small} jobs in {time.perf_counter() - t0:.1f} s")
        jobs_page(big, args.fresh_starts)
        print("b. live updates through GET /ui/watch")
        small_ms = live_updates(small, f"{args.small:>6} jobs stored", args.changes, 100)
        big_ms = live_updates(big, f"{args.jobs:>6} jobs stored", args.changes, 100)
        print(
            f"   ms per change: {small_ms:.2f} with {args.small} jobs, {big_ms:.2f} with "
            f"{args.jobs}: ratio {big_ms / small_ms:.2f} for {args.jobs / args.small:.0f}x the jobs"
        )
        whole_list(big, args.jobs)


if __name__ == "__main__":
    main()
