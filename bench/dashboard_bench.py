"""Benchmark: the web dashboard with many jobs stored (issue: the jobs page's first render
< 300 ms of server time with 10,000 jobs stored; live updates cost O(changes), not O(jobs)).

A real server (uvicorn on a free port, the FastAPI app with the dashboard) over a control
plane on SQLite and the sim backend, with the loop not running, so every job stays Pending
and nothing but the requests below uses the CPU:

  a. the jobs page (``GET /ui/jobs``, 100 jobs a page): its first render on a freshly started
     server, each start in a new process (cold imports, caches and compiled queries), with
     min/median/max over ``--fresh-starts``: once the server's start-up warm-up
     (``phalanx.api.ui.warm_up``) has finished, and, alternately, without it (the start as it
     was before: the baseline, under the same load); then, in the last process,
     warm renders and the first render after a write (the store's revision moved on);
     measured at the client on localhost, so an upper bound of the server's time;
  b. live updates: a browser's stream (``GET /ui/watch``) open while K jobs are cancelled;
     the time from the first write until the K-th event arrives, and the bytes per event;
     with 1,000 and with 10,000 jobs stored: equal costs mean O(changes);
  c. for contrast, what re-polling the whole list would cost: ``GET /api/v1/jobs`` of all
     the jobs, once;
  d. live pipeline runs: ``--runs`` (and a tenth as many) PipelineRuns stored, K of them
     changed, the changes streamed through ``/ui/watch?kinds=PipelineRun`` (the dashboard's
     own stream of the revision log, one API read per changed run): equal costs mean
     O(changes).

    python bench/dashboard_bench.py [--jobs 10000] [--small 1000] [--changes 100]
        [--fresh-starts 5] [--runs 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

import phalanx.api.app as app_module
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


def fresh_start(data_dir: Path, is_warmed_up: bool) -> dict[str, Any]:
    """In a new process (``--fresh-start``): start a server over ``data_dir``, wait for its
    warm-up (or, without it, start as servers did before it), then time the jobs page's
    first render, 30 warm ones, the first after a write and a page near the end. Returns
    (wall ms, CPU ms) pairs by name."""
    if not is_warmed_up:
        app_module.start_warm_up = lambda app, queries: None  # the start before the warm-up
    with plane_on(data_dir) as plane:
        cpu0 = time.process_time()
        with (
            serving(plane) as url,
            httpx.Client(base_url=url, cookies={"phalanx_token": TOKEN}, timeout=30) as http,
        ):
            # The warm-up thread create_app started: the first request would share its work.
            t0 = time.perf_counter()
            for thread in threading.enumerate():
                if thread.name == "warm-up":
                    thread.join(timeout=60)
            warm_up_s = time.perf_counter() - t0
            start_cpu_s = time.process_time() - cpu0
            wall, cpu, response = timed_get(http, "/ui/jobs")
            assert response.status_code == 200 and response.text.count("<tr data-job=") == 100
            warm = [timed_get(http, "/ui/jobs")[:2] for _ in range(30)]
            plane.cancel_job("job-00000")
            after_write = timed_get(http, "/ui/jobs")[:2]
            near_end = timed_get(http, "/ui/jobs?continue=9800")[:2]
    return {
        "first": (wall, cpu),
        "warm_up_wait_ms": warm_up_s * 1000,
        "start_cpu_ms": start_cpu_s * 1000,
        "warm": warm,
        "after_write": after_write,
        "near_end": near_end,
    }


def spread(values: list[float]) -> str:
    return f"min {min(values):.0f}, median {statistics.median(values):.0f}, max {max(values):.0f}"


def jobs_page(data_dir: Path, fresh_starts: int) -> None:
    print("a. GET /ui/jobs (100 jobs a page): wall ms at the client on localhost / CPU ms")
    results: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for _ in range(fresh_starts):  # alternately, so that both see the same load
        for is_warmed_up in (True, False):
            flags = [] if is_warmed_up else ["--without-warm-up"]
            child = subprocess.run(
                [sys.executable, __file__, "--fresh-start", str(data_dir), *flags],
                check=True,
                capture_output=True,
                text=True,
            )
            results[is_warmed_up].append(json.loads(child.stdout.strip().splitlines()[-1]))
    for is_warmed_up, label in ((True, "with"), (False, "without (as before)")):
        firsts = [r["first"] for r in results[is_warmed_up]]
        print(
            f"   first render on a fresh server, {label} the start-up warm-up "
            f"({fresh_starts} processes), wall/CPU each: "
            + ", ".join(f"{w:.0f}/{c:.0f}" for w, c in firsts)
        )
        print(f"     wall ms: {spread([w for w, _ in firsts])}")
        print(f"     CPU ms: {spread([c for _, c in firsts])}")
        starts = [r["start_cpu_ms"] for r in results[is_warmed_up]]
        print(f"     CPU ms of the server's start (until the warm-up ended): {spread(starts)}")
    waits = [r["warm_up_wait_ms"] for r in results[True]]
    print(f"   the warm-up ended this long after the server was up (ms): {spread(waits)}")
    last = results[True][-1]
    walls = sorted(w for w, _ in last["warm"])
    cpus = sorted(c for _, c in last["warm"])
    print(f"   warm (30): p50 {walls[15]:.0f}/{cpus[15]:.0f}, max {walls[-1]:.0f}/{cpus[-1]:.0f}")
    aw, nw = last["after_write"], last["near_end"]
    print(
        f"   first after a write: {aw[0]:.0f}/{aw[1]:.0f}; "
        f"a page near the end: {nw[0]:.0f}/{nw[1]:.0f}"
    )


def streamed(
    http: httpx.Client, params: dict[str, str], count: int
) -> tuple[float, float, list[str]]:
    """Open ``/ui/watch`` with ``params`` and read ``count`` events: (wall ms, CPU ms of this
    process, the events' ``data:`` lines)."""
    events: list[str] = []
    t0, c0 = time.perf_counter(), time.process_time()
    with http.stream("GET", "/ui/watch", params=params) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                events.append(line)
                if len(events) >= count:
                    break
    return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000, events


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
        params = {"kinds": "Job", "resourceVersion": str(revision)}
        wall, cpu, events = streamed(http, params, changes)
        sizes = [len(e) for e in events]
        print(
            f"   {label}: {changes} changes streamed in {wall:.0f} ms wall, {cpu:.0f} ms CPU; "
            f"{wall / changes:.2f} ms and {statistics.mean(sizes):.0f} bytes per change"
        )
        return wall / changes


def run_manifest(name: str, phase: str) -> dict[str, object]:
    """A PipelineRun of three steps as its reconciler leaves it."""
    steps = [
        {"name": f"s{i}", "task": f"m:s{i}", "inputs": {"x": {"step": f"s{i - 1}"}} if i else {}}
        for i in range(3)
    ]
    states = {
        f"s{i}": {"state": "Succeeded" if phase == "Succeeded" else "Pending"} for i in range(3)
    }
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {"name": name},
        "spec": {"pipeline": "flow", "steps": steps},
        "status": {"phase": phase, "steps": states},
    }


def live_runs(data_dir: Path, runs: int, changes: int) -> float:
    """Store ``runs`` PipelineRuns beside the jobs, change ``changes`` of them, then stream
    the changes through ``/ui/watch?kinds=PipelineRun`` (the dashboard's own stream: the
    revision log, then one API read and one row drawn per changed run). Returns ms per
    change."""
    with (
        plane_on(data_dir) as plane,
        serving(plane) as url,
        httpx.Client(base_url=url, cookies={"phalanx_token": TOKEN}, timeout=60) as http,
    ):
        for start in range(0, runs, 1000):
            configs = [
                ("PipelineRun", f"run-{i:05d}", run_manifest(f"run-{i:05d}", "Running"))
                for i in range(start, min(runs, start + 1000))
            ]
            plane.store.apply(configs, [], time.time())
        revision = plane.queries.revision()
        for i in range(changes):
            name = f"run-{i:05d}"
            plane.store.apply([("PipelineRun", name, run_manifest(name, "Succeeded"))], [], 1.0)
        params = {"kinds": "PipelineRun", "resourceVersion": str(revision)}
        wall, cpu, events = streamed(http, params, changes)
        assert all('"type":"MODIFIED"' in e for e in events)
        print(
            f"   {runs:>6} runs stored: {changes} run changes streamed in {wall:.0f} ms wall, "
            f"{cpu:.0f} ms CPU; {wall / changes:.2f} ms per change"
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
    parser.add_argument("--fresh-starts", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--fresh-start", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--without-warm-up", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fresh_start is not None:  # one fresh server, in this new process
        print(json.dumps(fresh_start(args.fresh_start, not args.without_warm_up)))
        return
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
        print("d. live pipeline runs through GET /ui/watch?kinds=PipelineRun")
        few = live_runs(small, args.runs // 10, args.changes)
        many = live_runs(big, args.runs, args.changes)
        print(
            f"   ms per change: {few:.2f} with {args.runs // 10} runs, {many:.2f} with "
            f"{args.runs}: ratio {many / few:.2f} for 10x the runs"
        )


if __name__ == "__main__":
    main()
