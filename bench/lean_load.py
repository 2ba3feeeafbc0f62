"""A lean HTTP load generator for the API benchmark: raw keep-alive HTTP/1.1 over asyncio
streams, in a process of its own, so that it measures the server and not the clients.

The SDK client (httpx) costs a few milliseconds of CPU per request, and eight SDK threads in
one Python process share one GIL: on a small machine the clients, not the server, set the
rate. Here each of ``clients`` connections is a coroutine of one separate process (started
with ``spawn``: nothing of the parent's threads or imports), which costs some 100 µs per
request. Standard library only.

``run(job)`` runs a ``SubmitJob`` or ``PageJob`` in that process and returns its ``LeanResult``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SubmitJob:
    """POST /api/v1/apply of jobs ``prefix-0`` … ``prefix-{jobs-1}`` in batches of ``batch``,
    connection c taking every ``clients``-th batch, until done or ``max_s`` have passed. Each
    reply must say ``created`` for every manifest."""

    host: str
    port: int
    token: str
    server_pid: int
    prefix: str
    jobs: int
    batch: int
    clients: int
    max_s: float
    #: A manifest with ``{name}`` where the job's name goes, as JSON text.
    manifest_template: str


@dataclass(frozen=True, slots=True)
class PageJob:
    """``requests`` GET /api/v1/jobs?limit= spread over ``clients`` connections; each page must
    hold ``limit`` jobs. With ``is_parsed`` False the bodies are read but not parsed (nor their
    jobs counted): a diagnostic of how much of the latency is the clients' own JSON parsing,
    which for 100-job pages costs more CPU than the server's answer and, the connections
    sharing one process, makes each request wait for the others' parsing."""

    host: str
    port: int
    token: str
    server_pid: int
    requests: int
    clients: int
    limit: int
    is_parsed: bool = True
    #: Wall-clock time (``time.time()``) to start at once the connections are open, so the
    #: processes of one ``run(job, processes=N)`` start together; 0: at once.
    start_at: float = 0.0


@dataclass(slots=True)
class LeanResult:
    """What a run did: jobs accepted (submissions), requests, the wall seconds of the timed
    part, each request's seconds, the CPU seconds the server and this process used meanwhile,
    and the job of the request answered last."""

    jobs: int = 0
    requests: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    newest: str = ""


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Connection:
    """One keep-alive HTTP/1.1 connection; bodies by Content-Length (as uvicorn sends them
    for every non-streaming route)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self._host, self._port = host, port
        self._auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    async def request(
        self, method: str, target: str, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body) of one request."""
        assert self._reader is not None and self._writer is not None
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n{self._auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        status_line = await self._reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while (line := await self._reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise RuntimeError(f"{method} {target}: a reply without Content-Length: {headers}")
        data = await self._reader.readexactly(int(headers["content-length"]))
        return status, headers, data


async def _connections(host: str, port: int, token: str, count: int) -> list[Connection]:
    connections = [Connection(host, port, token) for _ in range(count)]
    await asyncio.gather(*(c.open() for c in connections))
    return connections


async def _submit(job: SubmitJob) -> LeanResult:
    batches = [list(range(i, min(i + job.batch, job.jobs))) for i in range(0, job.jobs, job.batch)]
    connections = await _connections(job.host, job.port, job.token, job.clients)
    result = LeanResult()
    finished: list[tuple[float, str]] = []
    deadline = time.perf_counter() + job.max_s

    async def work(c: int) -> None:
        for numbers in batches[c :: job.clients]:
            if time.perf_counter() > deadline:
                return
            manifests = ",".join(
                job.manifest_template.replace("{name}", f"{job.prefix}-{n}") for n in numbers
            )
            began = time.perf_counter()
            status, _, data = await connections[c].request(
                "POST", "/api/v1/apply", b'{"manifests":[' + manifests.encode() + b"]}"
            )
            result.latencies_s.append(time.perf_counter() - began)
            if status != 200:
                raise RuntimeError(f"apply answered {status}: {data[:300]!r}")
            outcomes = json.loads(data)
            actions = {o["action"] for o in outcomes}
            if actions != {"created"} or len(outcomes) != len(numbers):
                raise RuntimeError(f"unexpected apply results: {actions}")
            result.jobs += len(numbers)
            result.requests += 1
            finished.append((time.perf_counter(), f"{job.prefix}-{numbers[-1]}"))

    server_cpu, client_cpu, began = cpu_s(job.server_pid), time.process_time(), time.perf_counter()
    try:
        await asyncio.gather(*(work(c) for c in range(job.clients)))
    finally:
        result.seconds = time.perf_counter() - began
        result.server_cpu_s = cpu_s(job.server_pid) - server_cpu
        result.client_cpu_s = time.process_time() - client_cpu
        await asyncio.gather(*(c.close() for c in connections))
    result.newest = max(finished)[1] if finished else ""
    return result


async def _pages(job: PageJob) -> LeanResult:
    connections = await _connections(job.host, job.port, job.token, job.clients)
    result = LeanResult()
    target = f"/api/v1/jobs?limit={job.limit}"
    if job.start_at:
        await asyncio.sleep(max(0.0, job.start_at - time.time()))

    async def work(c: int) -> None:
        for _ in range(c, job.requests, job.clients):
            began = time.perf_counter()
            status, _, data = await connections[c].request("GET", target)
            result.latencies_s.append(time.perf_counter() - began)
            if status != 200:
                raise RuntimeError(f"GET {target} answered {status}: {data[:300]!r}")
            if job.is_parsed and len(json.loads(data)) != job.limit:
                raise RuntimeError(f"a page of {job.limit} jobs was expected")
            result.requests += 1

    server_cpu, client_cpu, began = cpu_s(job.server_pid), time.process_time(), time.perf_counter()
    try:
        await asyncio.gather(*(work(c) for c in range(job.clients)))
    finally:
        result.seconds = time.perf_counter() - began
        result.server_cpu_s = cpu_s(job.server_pid) - server_cpu
        result.client_cpu_s = time.process_time() - client_cpu
        await asyncio.gather(*(c.close() for c in connections))
    return result


def _main(job: SubmitJob | PageJob) -> LeanResult:
    return asyncio.run(_submit(job) if isinstance(job, SubmitJob) else _pages(job))


def run(job: SubmitJob | PageJob, processes: int = 1) -> LeanResult:
    """Run ``job`` in a fresh process; return its result (its error is raised here).

    A ``PageJob`` may be spread over ``processes`` processes, its connections and requests
    shared out between them as evenly as they go, all starting together: then no client
    waits for another's parsing, as with separate users. The result sums the requests and
    the clients' CPU, joins the latencies, and takes the server's CPU over the whole run."""
    context = multiprocessing.get_context("spawn")
    if processes <= 1 or not isinstance(job, PageJob):
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            return pool.submit(_main, job).result()
    processes = min(processes, job.clients)
    start_at = time.time() + 1.5  # spawn, import and connect first
    parts = [
        replace(
            job,
            clients=len(range(p, job.clients, processes)),
            requests=sum(
                len(range(c, job.requests, job.clients)) for c in range(p, job.clients, processes)
            ),
            start_at=start_at,
        )
        for p in range(processes)
    ]
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = [pool.submit(_main, part) for part in parts]
        time.sleep(max(0.0, start_at - time.time()))
        server_cpu = cpu_s(job.server_pid)
        results = [future.result() for future in futures]
        server_cpu_s = cpu_s(job.server_pid) - server_cpu
    return LeanResult(
        requests=sum(r.requests for r in results),
        seconds=max(r.seconds for r in results),
        latencies_s=[s for r in results for s in r.latencies_s],
        server_cpu_s=server_cpu_s,
        client_cpu_s=sum(r.client_cpu_s for r in results),
    )
