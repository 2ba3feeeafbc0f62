"""Benchmark: API throughput and read latency of a local server on SQLite (ARCHITECTURE §12:
≥ 500 job submissions/s one per request, ≥ 5,000/s batched, a 100-job page p99 < 50 ms with
10,000 jobs stored), and the server's memory.

Starts real `phalanx up` servers (virtual nodes, a temporary data dir, SQLite) as
subprocesses and drives them with 8 concurrent clients: keep-alive connections of a lean
load generator (``lean_load``: raw HTTP/1.1 over asyncio streams, in a process of its own), so
that the figures are the server's; the SDK client (``phalanx.client.Client``, httpx, 8 threads
of this process) is measured too, on lines labelled "SDK", as users see it:

  a. one job per POST /api/v1/apply, on a fresh server; then a shorter run through the SDK;
  b. batches of 500 jobs per POST /api/v1/apply, on a second fresh server;
  c. GET /api/v1/jobs?limit=100 on the second server once the loop has caught up with the
     jobs of (b): sequentially, from 8 clients at once in one process, from 8 clients in 8
     processes, then from 8 SDK clients (in-process through ``Queries.page_jobs`` on the same
     database when the route has no ``limit``). Parsing a 100-job page (about 167 KB of JSON)
     costs a client more CPU than the server's answer, so 8 clients sharing one process wait
     for each other's parsing; 8 processes are 8 users, still sharing the machine's cores. The
     same 8-client pages are also read with the bodies not parsed, a diagnostic row with no
     target that shows the clients' share;
  d. the servers' RSS (VmRSS and its peak, VmHWM);
  e. the p99 latency authentication and authorization add (``--auth-only`` for just this):
     see ``auth_overhead``.

No pod is started: the jobs ask for a GPU of a queue whose GPU quota is 0, so they all stay
Pending with a quota reason (the point is the API, and the loop's cost of 10,000 pending
jobs, not running 10,000 processes).

    python bench/api_bench.py [--jobs 10000] [--clients 8] [--batch 500] [--pages-only]

``--pages-only`` stores the jobs by (b) and measures only (c) and (d); ``--batched-only``
measures only (b) and the server's memory after it (d), e.g. ``--batched-only --jobs 10000``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lean_load

from phalanx.client import Client
from phalanx.testing import job_manifest as pod_set_job
from phalanx.testing import queue_manifests

TARGET_SINGLE_PER_S = 500.0
TARGET_BATCH_PER_S = 5_000.0
TARGET_PAGE_P99_MS = 50.0
#: What authentication and authorization may add to a request's p99 (ARCHITECTURE §12).
TARGET_AUTH_ADDED_P99_MS = 1.0
TARGET_RSS_MIB = 150.0
#: A queue with CPU and memory but no GPU quota: every job below waits, none runs.
QUEUE = queue_manifests(gpu=0, cpu=64, memory="64Gi")


def job_manifest(name: str) -> dict[str, object]:
    """A one-pod job asking for one GPU of queue ``q`` (which has none: it stays Pending)."""
    return pod_set_job(
        name,
        labels={"bench": "api"},
        resources={"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": 1},
    )


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


cpu_s = lean_load.cpu_s


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", float("nan")), fields.get("VmHWM", float("nan"))


class Server:
    """A `phalanx up` subprocess on a temporary data dir; a context manager."""

    def __init__(self, nodes: str, log_level: str) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="phalanx-api-bench-"))
        port = _port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "phalanx.cli",
                "--data-dir",
                str(self.data_dir),
                "up",
                "--nodes",
                nodes,
                "--port",
                str(port),
                "--log-level",
                log_level,
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.data_dir / "bench-server.log").open("wb"),
            start_new_session=True,
        )
        self.pid = self.process.pid

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited ({self.process.returncode}); see "
                    f"{self.data_dir / 'bench-server.log'}"
                )
            try:
                with self.client() as client:
                    health = client.health()
                self.pid = int(str(health.get("pid", self.pid)))
                return self
            except Exception:
                time.sleep(0.05)
        raise RuntimeError(f"the server did not answer within 60 s; see {self.data_dir}")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if exc_type is None:  # after a failure the data dir (and its server log) stays
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def client(self, timeout_s: float = 120) -> Client:
        return Client(server=self.url, data_dir=self.data_dir, timeout_s=timeout_s)

    def lean_submit(
        self, prefix: str, jobs: int, clients: int, batch: int, max_s: float
    ) -> Submission:
        """As ``submit``, from the lean load generator's process."""
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        result = lean_load.run(
            lean_load.SubmitJob(
                host,
                int(port),
                self.token(),
                self.pid,
                prefix,
                jobs,
                batch,
                clients,
                max_s,
                json.dumps(job_manifest("{name}"), separators=(",", ":")),
            )
        )
        return Submission(
            result.jobs,
            result.seconds,
            result.requests,
            result.server_cpu_s,
            result.client_cpu_s,
            result.newest,
        )

    def lean_pages(
        self,
        requests: int,
        clients: int,
        limit: int,
        is_parsed: bool = True,
        processes: int = 1,
    ) -> lean_load.LeanResult:
        """``requests`` GET /api/v1/jobs?limit= from the lean load generator's process (see
        lean_load.PageJob for ``is_parsed``)."""
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return lean_load.run(
            lean_load.PageJob(
                host, int(port), self.token(), self.pid, requests, clients, limit, is_parsed
            ),
            processes,
        )

    def token(self) -> str:
        return (self.data_dir / "token").read_text().strip()


def in_parallel(clients: int, work: Callable[[int], object]) -> float:
    """Run ``work(i)`` for i in range(clients) on as many threads; return the wall seconds.
    The first error of any thread is raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def run(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as exc:  # reported to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return elapsed


@dataclass(slots=True)
class Submission:
    jobs: int
    seconds: float
    requests: int
    #: CPU seconds the server and this process (the clients) used meanwhile.
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    #: The job whose request was answered last.
    newest: str = ""

    @property
    def per_s(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


def submit(
    server: Server, prefix: str, jobs: int, clients: int, batch: int, max_s: float
) -> Submission:
    """Submit ``jobs`` jobs in batches of ``batch`` from ``clients`` threads (each takes every
    ``clients``-th batch), stopping early after ``max_s`` seconds. Every reply must say
    ``created``."""
    batches = [list(range(i, min(i + batch, jobs))) for i in range(0, jobs, batch)]
    done = [0] * clients
    requests = [0] * clients
    finished: list[tuple[float, str]] = []  # (when, the last job of a request)
    deadline = time.perf_counter() + max_s

    def work(c: int) -> None:
        with server.client() as client:
            for numbers in batches[c::clients]:
                if time.perf_counter() > deadline:
                    return
                results = client.apply([job_manifest(f"{prefix}-{n}") for n in numbers])
                actions = {r["action"] for r in results}
                if actions != {"created"} or len(results) != len(numbers):
                    raise RuntimeError(f"unexpected apply results: {actions}")
                done[c] += len(numbers)
                requests[c] += 1
                finished.append((time.perf_counter(), f"{prefix}-{numbers[-1]}"))

    server_cpu, client_cpu = cpu_s(server.pid), time.process_time()
    seconds = in_parallel(clients, work)
    return Submission(
        sum(done),
        seconds,
        sum(requests),
        cpu_s(server.pid) - server_cpu,
        time.process_time() - client_cpu,
        max(finished)[1] if finished else "",
    )


def wait_caught_up(server: Server, last_job: str, timeout_s: float) -> float:
    """Wait until the loop has given ``last_job`` (the newest) its pending reason; return the
    seconds that took (nan on timeout)."""
    began = time.perf_counter()
    with server.client() as client:
        while time.perf_counter() - began < timeout_s:
            if client.job(last_job).get("reason_code"):
                return time.perf_counter() - began
            time.sleep(0.1)
    return float("nan")


def has_paged_route(server: Server) -> bool:
    """Whether GET /api/v1/jobs takes ``limit`` (another change adds it)."""
    with server.client() as client:
        spec = client._http.get("/openapi.json").json()
    params = spec["paths"]["/api/v1/jobs"]["get"].get("parameters", [])
    return any(p.get("name") == "limit" for p in params)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def page_latencies_http(server: Server, requests: int, clients: int, limit: int) -> list[float]:
    """Seconds of ``requests`` GET /api/v1/jobs?limit= calls spread over ``clients`` threads."""
    out: list[list[float]] = [[] for _ in range(clients)]

    def work(c: int) -> None:
        with server.client() as client:
            for _ in range(c, requests, clients):
                began = time.perf_counter()
                page = client._get("/jobs", {"limit": limit})
                out[c].append(time.perf_counter() - began)
                items = page.get("items", page) if isinstance(page, dict) else page
                if not isinstance(items, list) or len(items) != limit:
                    raise RuntimeError(f"a page of {limit} jobs was expected, got {type(page)}")

    in_parallel(clients, work)
    return [s for per_client in out for s in per_client]


def page_latencies_in_process(
    server: Server, requests: int, clients: int, limit: int
) -> list[float]:
    """As page_latencies_http, through Queries.page_jobs on the server's database (no HTTP,
    no JSON): for servers whose route has no ``limit`` yet."""
    from phalanx.controllers.health import HealthTracker, QuarantinePolicy
    from phalanx.controllers.queries import Queries
    from phalanx.controllers.state import SpecCache
    from phalanx.store import open_store

    store = open_store(None, server.data_dir, migrate=False)
    health = HealthTracker(store, time.time, QuarantinePolicy())
    # page_jobs reads only the store and the data dir: no backend is needed.
    queries = Queries(store, None, SpecCache(), health, server.data_dir)  # type: ignore[arg-type]
    out: list[list[float]] = [[] for _ in range(clients)]

    def work(c: int) -> None:
        for _ in range(c, requests, clients):
            began = time.perf_counter()
            page = queries.page_jobs(limit=limit)
            out[c].append(time.perf_counter() - began)
            if len(page.items) != limit:
                raise RuntimeError(f"a page of {limit} jobs was expected")

    try:
        in_parallel(clients, work)
    finally:
        store.close()
    return [s for per_client in out for s in per_client]


def _print_cpu(run: Submission) -> None:
    """CPU per job: on a shared machine this says more than the rate (which is bounded by
    what the server and the clients get of its cores)."""
    jobs = max(run.jobs, 1)
    print(
        f"   CPU per job: server {run.server_cpu_s / jobs * 1e6:,.0f} µs, clients "
        f"{run.client_cpu_s / jobs * 1e6:,.0f} µs; the server used "
        f"{run.server_cpu_s / run.seconds:.2f} cores; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


def idle_cpu(server: Server, seconds: float) -> float:
    """The cores ``server`` uses while no request comes (its control loop)."""
    before = cpu_s(server.pid)
    time.sleep(seconds)
    return (cpu_s(server.pid) - before) / seconds


def _print_page_cpu(
    who: str, server_cpu_s: float, seconds: float, idle_cores: float, pages: int
) -> None:
    """Server CPU per page, all of it and above what the loop uses meanwhile anyway."""
    per_page_ms = server_cpu_s / pages * 1000
    above_ms = max(0.0, server_cpu_s - idle_cores * seconds) / pages * 1000
    print(
        f"   server CPU per page ({who}): {per_page_ms:.1f} ms, {above_ms:.1f} ms above its "
        "idle rate"
    )


def auth_overhead(requests: int, rounds: int) -> dict[str, float]:
    """e. What authentication and authorization add to a request: one in-process plane (SQLite,
    a few jobs) served by three apps on loopback, each by uvicorn in a thread: ``none`` (the
    authorization middleware taken out), ``off`` (no token: the middleware with everyone an
    admin) and ``on`` (a ``user``'s token from the store: verified once, then cached; the
    route table and, for GET /jobs/{name}, the env hidden from a non-owner). One keep-alive
    client asks each in turn, ``requests`` times a round, so load drifts hit all three alike.
    Returns p50/p99 in ms of each, and the p99 ``on`` adds over ``none``, median of rounds."""
    import uvicorn

    from phalanx.api import create_app
    from phalanx.api.authz import Authorization
    from phalanx.backends.local.backend import LocalBackend
    from phalanx.backends.local.nodes import parse_nodes_option
    from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
    from phalanx.store import open_store

    data_dir = Path(tempfile.mkdtemp(prefix="phalanx-auth-bench-"))
    store = open_store(None, data_dir)
    backend = LocalBackend(data_dir, parse_nodes_option("2x8"))
    plane = ControlPlane(store, backend, ControlPlaneConfig(data_dir=data_dir))
    plane.apply([*queue_manifests(), *(job_manifest(f"j{i}") for i in range(20))])
    admin_token = "bench-admin-token"
    apps = {
        "none": create_app(plane, None),
        "off": create_app(plane, None),
        "on": create_app(plane, admin_token),
    }
    apps["none"].user_middleware = [
        m for m in apps["none"].user_middleware if m.cls is not Authorization
    ]
    identity = apps["on"].state.identity
    identity.create_user("bench", "user")
    _, user_token = identity.create_token("bench", "bench", None)
    servers: list[uvicorn.Server] = []
    urls: dict[str, str] = {}
    for name, app in apps.items():
        sock = socket.create_server(("127.0.0.1", 0))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="none"))
        threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
        servers.append(server)
        urls[name] = f"http://127.0.0.1:{sock.getsockname()[1]}"
    import httpx

    clients = {
        name: httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {user_token}"} if name == "on" else {},
        )
        for name, url in urls.items()
    }
    deadline = time.monotonic() + 10
    for client in clients.values():
        while True:
            try:
                client.get("/api/v1/version").raise_for_status()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "a bench server did not start"
                time.sleep(0.05)
    paths = ("/api/v1/version", "/api/v1/jobs/j3", "/api/v1/queues")
    cpu = asgi_cpu_ms(apps, {"on": user_token}, paths[:1], requests)
    samples: dict[str, list[float]] = {name: [] for name in clients}
    added: list[float] = []
    try:
        for _ in range(rounds):
            this_round: dict[str, list[float]] = {name: [] for name in clients}
            for i in range(requests):
                path = paths[i % len(paths)]
                for name, client in clients.items():
                    began = time.perf_counter()
                    client.get(path).raise_for_status()
                    this_round[name].append(time.perf_counter() - began)
            for name, values in this_round.items():
                samples[name] += values
            added.append(
                (_percentile(this_round["on"], 0.99) - _percentile(this_round["none"], 0.99)) * 1000
            )
    finally:
        for client in clients.values():
            client.close()
        for server in servers:
            server.should_exit = True
        time.sleep(0.5)
        apps["on"].state.audit.close()
        backend.close()
        store.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    out = {
        f"{name} p{q}": _percentile(values, q / 100) * 1000
        for name, values in samples.items()
        for q in (50, 99)
    }
    out["added p99"] = sorted(added)[len(added) // 2]
    for name, values in cpu.items():
        out[f"{name} cpu p50"] = _percentile(values, 0.5)
        out[f"{name} cpu p99"] = _percentile(values, 0.99)
    out["added cpu p99"] = out["on cpu p99"] - out["none cpu p99"]
    return out


def asgi_cpu_ms(
    apps: dict[str, object], tokens: dict[str, str], paths: Sequence[str], requests: int
) -> dict[str, list[float]]:
    """CPU time (ms, this thread's) of each request handled by calling each app directly,
    no network: on a loaded machine wall-clock percentiles measure the scheduler, this the
    work a request costs. GET routes of async handlers only (no thread pool hop)."""
    import asyncio

    async def one(app: object, path: str, token: str | None) -> float:
        headers = [(b"host", b"bench")]
        if token:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            return None

        began = time.thread_time()
        await app(scope, receive, send)  # type: ignore[operator]
        return (time.thread_time() - began) * 1000

    async def run() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {name: [] for name in apps}
        for i in range(requests):
            for name, app in apps.items():
                out[name].append(await one(app, paths[i % len(paths)], tokens.get(name)))
        return out

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per submission phase")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--batch", type=int, default=500, help="jobs per request in (b)")
    parser.add_argument("--page-requests", type=int, default=200)
    parser.add_argument("--page-limit", type=int, default=100)
    parser.add_argument(
        "--page-via",
        choices=("auto", "http", "in-process"),
        default="auto",
        help="auto: HTTP when GET /api/v1/jobs takes limit, else Queries.page_jobs in-process",
    )
    parser.add_argument(
        "--max-phase-s",
        type=float,
        default=60,
        help="stop a submission phase after this long (the rate is of what was accepted)",
    )
    parser.add_argument(
        "--catch-up-s",
        type=float,
        default=300,
        help="how long to wait for the loop to give the newest job of (b) its pending reason",
    )
    parser.add_argument(
        "--sdk-s",
        type=float,
        default=15,
        help="how long (a) also submits through the SDK client (0: not at all)",
    )
    parser.add_argument("--nodes", default="2x8", help="the servers' --nodes")
    parser.add_argument(
        "--log-level", default="warning", help="the servers' --log-level (info logs each request)"
    )
    parser.add_argument(
        "--auth-requests", type=int, default=1500, help="requests per app and round in (e)"
    )
    parser.add_argument("--auth-rounds", type=int, default=3)
    parser.add_argument(
        "--store-apply",
        choices=("dbapi", "core"),
        default="dbapi",
        help="how the servers' SQLite store writes new jobs: through the DBAPI cursor (the "
        "default) or SQLAlchemy Core (the earlier path, PHALANX_STORE_APPLY=core), to compare",
    )
    parser.add_argument(
        "--auth-only", action="store_true", help="measure only what auth adds (e), in-process"
    )
    parser.add_argument(
        "--pages-only",
        action="store_true",
        help="store the jobs by (b) and measure only pages (c) and memory (d): no (a), no (e)",
    )
    parser.add_argument(
        "--batched-only",
        action="store_true",
        help="measure only batched submissions (b) and memory (d): no (a), (c) or (e)",
    )
    args = parser.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    if args.auth_only:
        print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min)")
        figures = auth_overhead(args.auth_requests, args.auth_rounds)
        for key, value in figures.items():
            print(f"e. {key:<10} {value:8.3f} ms")
        target = TARGET_AUTH_ADDED_P99_MS
        print(f"e. added p99 {figures['added p99']:.3f} ms wall (target < {target} ms)")
        print(f"e. added p99 {figures['added cpu p99']:.3f} ms of CPU per request")
        return

    def row(metric: str, value: float, unit: str, target: float | None, higher: bool) -> None:
        if target is None:
            rows.append((metric, f"{value:,.1f} {unit}", "", ""))
            return
        ratio = value / target if higher else target / value if value else float("inf")
        bound = "≥" if higher else "<"
        rows.append((metric, f"{value:,.1f} {unit}", f"{bound} {target:,.0f}", f"{ratio:.2f}"))

    os.environ["PHALANX_STORE_APPLY"] = args.store_apply  # the servers inherit it
    print(
        f"server: phalanx up --nodes {args.nodes} --log-level {args.log_level}, SQLite "
        f"(new jobs written through {args.store_apply})"
    )
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min)")
    # a. one job per request
    rss_single = (float("nan"), float("nan"))
    if not args.pages_only and not args.batched_only:
        with Server(args.nodes, args.log_level) as server:
            with server.client() as client:
                client.apply(QUEUE)
            single = server.lean_submit("one", args.jobs, args.clients, 1, args.max_phase_s)
            print(f"a. one per request: {single.jobs} jobs in {single.seconds:.1f} s")
            _print_cpu(single)
            row("a. submit, one job per request", single.per_s, "jobs/s", TARGET_SINGLE_PER_S, True)
            if args.sdk_s > 0:
                sdk = submit(server, "sdk", args.jobs, args.clients, 1, args.sdk_s)
                print(f"a. SDK: one per request: {sdk.jobs} jobs in {sdk.seconds:.1f} s")
                _print_cpu(sdk)
                row("a. SDK clients (httpx, 1 process)", sdk.per_s, "jobs/s", None, True)
            rss_single = rss_mib(server.pid)
    # b. batches
    with Server(args.nodes, args.log_level) as server:
        with server.client() as client:
            client.apply(QUEUE)
        batched = server.lean_submit("batch", args.jobs, args.clients, args.batch, args.max_phase_s)
        print(
            f"b. batches of {args.batch}: {batched.jobs} jobs in {batched.requests} requests, "
            f"{batched.seconds:.1f} s"
        )
        _print_cpu(batched)
        row(
            f"b. submit, {args.batch} per request",
            batched.per_s,
            "jobs/s",
            TARGET_BATCH_PER_S,
            True,
        )
        rss, hwm = rss_mib(server.pid)
        if args.batched_only:
            row("d. RSS after (b)", rss, "MiB", TARGET_RSS_MIB, False)
            row("d. peak RSS (VmHWM) in (b)", hwm, "MiB", None, False)
            _print_rows(rows)
            return
        # c. pages, once the loop has seen every job
        caught_up_s = wait_caught_up(server, batched.newest, args.catch_up_s)
        print(f"c. the loop gave the newest job its pending reason {caught_up_s:.1f} s later")
        row("   loop caught up with (b)", caught_up_s, "s", None, False)
        is_http = args.page_via == "http" or (args.page_via == "auto" and has_paged_route(server))
        how = "HTTP GET /api/v1/jobs?limit=" if is_http else "in-process Queries.page_jobs"
        print(f"c. pages of {args.page_limit} with {batched.jobs} jobs stored, via {how}")
        if is_http:
            with server.client() as client:
                size = len(
                    client._http.get("/api/v1/jobs", params={"limit": args.page_limit}).content
                )
            print(f"   a page is {size:,} bytes of JSON, {size / args.page_limit:,.0f} per job")
            row(f"   page size, {args.page_limit} jobs", size / 1000, "KB", None, False)
        idle_cores = idle_cpu(server, 3.0)
        print(f"   the server's CPU while no request comes (its loop): {idle_cores:.2f} cores")
        for clients in (1, args.clients):
            if is_http:
                pages = server.lean_pages(args.page_requests, clients, args.page_limit)
                seconds, server_cpu_s = pages.latencies_s, pages.server_cpu_s
            else:
                seconds = page_latencies_in_process(
                    server, args.page_requests, clients, args.page_limit
                )
                server_cpu_s = 0.0
            p50, p99 = _percentile(seconds, 0.5) * 1000, _percentile(seconds, 0.99) * 1000
            row(f"c. page p50, {clients} client(s)", p50, "ms", None, False)
            row(f"c. page p99, {clients} client(s)", p99, "ms", TARGET_PAGE_P99_MS, False)
            if is_http:
                _print_page_cpu(
                    f"{clients} client(s)", server_cpu_s, pages.seconds, idle_cores, len(seconds)
                )
                print(
                    f"   the clients' CPU per page: {pages.client_cpu_s / len(seconds) * 1000:.1f}"
                    f" ms; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
                )
        if is_http:
            # The same 8 clients as separate processes, as separate users would be: no client
            # waits for another's parsing (the clients still share the machine's cores).
            pages = server.lean_pages(
                args.page_requests, args.clients, args.page_limit, processes=args.clients
            )
            p50 = _percentile(pages.latencies_s, 0.5) * 1000
            p99 = _percentile(pages.latencies_s, 0.99) * 1000
            label = f"{args.clients} clients in {args.clients} processes"
            row(f"c. page p50, {label}", p50, "ms", None, False)
            row(f"c. page p99, {label}", p99, "ms", TARGET_PAGE_P99_MS, False)
            _print_page_cpu(label, pages.server_cpu_s, pages.seconds, idle_cores, pages.requests)
            print(
                f"   the clients' CPU per page: {pages.client_cpu_s / pages.requests * 1000:.1f}"
                f" ms; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            )
            # Diagnostic, no target: the same pages with the bodies read but not parsed. The
            # lean clients share one process, and parsing a 100-job page costs them more CPU
            # than the server's answer: the difference is time spent in the clients.
            pages = server.lean_pages(
                args.page_requests, args.clients, args.page_limit, is_parsed=False
            )
            p99 = _percentile(pages.latencies_s, 0.99) * 1000
            row(f"   page p99, {args.clients} clients not parsing", p99, "ms", None, False)
            print(
                f"   {args.clients} clients reading pages without parsing them: p99 {p99:.1f} ms,"
                f" the clients' CPU per page {pages.client_cpu_s / args.page_requests * 1000:.1f}"
                f" ms, the server's {pages.server_cpu_s / args.page_requests * 1000:.1f} ms"
            )
        if is_http and args.sdk_s > 0:
            server_cpu, began = cpu_s(server.pid), time.perf_counter()
            seconds = page_latencies_http(server, args.page_requests, args.clients, args.page_limit)
            _print_page_cpu(
                f"{args.clients} SDK clients",
                cpu_s(server.pid) - server_cpu,
                time.perf_counter() - began,
                idle_cores,
                len(seconds),
            )
            p99 = _percentile(seconds, 0.99) * 1000
            row(f"c. page p99, {args.clients} SDK clients", p99, "ms", None, False)
        rss, hwm = rss_mib(server.pid)
    # d. memory
    if not args.pages_only:
        row("d. RSS after (a)", rss_single[0], "MiB", TARGET_RSS_MIB, False)
    row("d. RSS after (b)+(c)", rss, "MiB", TARGET_RSS_MIB, False)
    row("d. peak RSS (VmHWM) in (b)+(c)", hwm, "MiB", None, False)
    # e. auth
    if not args.pages_only:
        figures = auth_overhead(args.auth_requests, args.auth_rounds)
        row("e. request p99, no auth middleware", figures["none p99"], "ms", None, False)
        row("e. request p99, a user's token", figures["on p99"], "ms", None, False)
        row("e. p99 added by auth", figures["added p99"], "ms", TARGET_AUTH_ADDED_P99_MS, False)
        row(
            "e. CPU p99 added by auth",
            figures["added cpu p99"],
            "ms",
            TARGET_AUTH_ADDED_P99_MS,
            False,
        )
    _print_rows(rows)


def _print_rows(rows: list[tuple[str, str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'metric':<{width}}  {'value':>16}  {'target':>9}  {'ratio':>5}")
    for metric, value, target, ratio in rows:
        print(f"{metric:<{width}}  {value:>16}  {target:>9}  {ratio:>5}")
    print("\nratio: value over target (≥ 1 meets it)")


if __name__ == "__main__":
    main()
