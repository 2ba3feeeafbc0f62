"""Benchmark: the serving router's overhead, throughput and cold start, and autoscaling on a
bursty trace (ARCHITECTURE §12: router p99 overhead < 2 ms; cold start overhead p99 < 1 s).

Each part runs real processes on this machine, each with its own interpreter: an echo
replica (``python -m phalanx.serving.echo``), the router (this script, ``--role router``: a
``Router`` whose one route points at the replica), and a load generator (this script,
``--role load``: raw keep-alive HTTP/1.1 over asyncio Protocols):

  a. overhead: an open-loop request stream at each ``--rates`` (requests/s, arrivals at fixed
     intervals over 64 connections), once straight to the replica and once through the
     router, alternating in short rounds so both see the same machine; latency counts from
     each request's scheduled time (no coordinated omission). Reported: p50/p99 of both and
     the router's added p50/p99 (the difference of the percentiles).
  b. throughput: a closed loop of ``--clients`` connections for ``--seconds`` against the
     router and, for reference, against the replica alone.
  c. cold start: a router at zero replicas whose sink starts a replica process on demand and
     publishes its route once the process says it listens. For each of ``--cold-runs``
     requests: time to first byte minus the replica's own start-up (spawn to listening).
  d. the bursty trace through the autoscaler in the simulator
     (``phalanx.simulation.serving``): SLO attainment and replica-seconds against fixed
     provisioning at the peak.

    python bench/serving_bench.py [--rates 500,2000] [--seconds 5] [--clients 64]
                                  [--cold-runs 20] [--skip a,b,c,d]

Figures depend on the machine's load: the script prints ``uptime`` before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from phalanx.serving.endpoints import Endpoint, LoadSample, Route
from phalanx.serving.router import Router, new_event_loop

# -- processes ----------------------------------------------------------------------------


def start_replica(name: str = "echo", delay_s: float = 0.0) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "phalanx.serving.echo",
            "--name",
            name,
            "--startup-delay-s",
            str(delay_s),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"the echo replica did not start: {line!r}")
    return proc, int(line.split()[1])


def start_router(backend_port: int, loop_kind: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--role",
            "router",
            "--backend",
            str(backend_port),
            "--loop",
            loop_kind,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"the router did not start: {line!r}")
    return proc, int(line.split()[1])


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _StaticSource:
    def __init__(self, routes: Sequence[Route]) -> None:
        self.current = tuple(routes)

    def routes(self) -> Sequence[Route]:
        return self.current


class _NullSink:
    def report(self, samples: Sequence[LoadSample]) -> None:
        pass

    def demand(self, service: str) -> None:
        pass


def router_role(backend_port: int, loop_kind: str) -> None:
    route = Route(
        "bench", "/", endpoints=(Endpoint(f"http://127.0.0.1:{backend_port}", "r1", "echo-0"),)
    )

    async def main() -> None:
        router = Router(_StaticSource([route]), _NullSink())
        await router.serve("127.0.0.1", 0)
        print(f"PORT {router.port}", flush=True)
        await asyncio.Event().wait()

    loop = new_event_loop(prefer_uvloop=loop_kind == "uvloop")
    with contextlib.suppress(KeyboardInterrupt):
        loop.run_until_complete(main())


# -- the load generator -------------------------------------------------------------------

_REQUEST = b"GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n"


class _LoadConn(asyncio.Protocol):
    """A keep-alive client connection; responses must carry Content-Length."""

    def __init__(self, done: deque[_LoadConn], on_response: object) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.started = 0.0
        self.done = done
        self.on_response = on_response
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, started: float) -> None:
        self.started = started
        assert self.transport is not None
        self.transport.write(_REQUEST)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        i = head.find(b"content-length:")
        length = int(head[i + 15 : head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None])
        if len(self.buf) < end + 4 + length:
            return
        if not head.startswith(b"http/1.1 200"):
            self.errors += 1
        del self.buf[: end + 4 + length]
        self.on_response(self, time.perf_counter() - self.started)  # type: ignore[operator]


async def _open(port: int, n: int, on_response: object) -> list[_LoadConn]:
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(n):
        _, proto = await loop.create_connection(
            lambda: _LoadConn(deque(), on_response), "127.0.0.1", port
        )
        conns.append(proto)
    return conns


async def open_loop(port: int, rate: float, seconds: float, conns_n: int = 64) -> list[float]:
    """Latencies (s) of requests scheduled every 1/rate s, from their scheduled time."""
    latencies: list[float] = []
    idle: deque[_LoadConn] = deque()
    pending: deque[float] = deque()

    def on_response(conn: _LoadConn, _: float) -> None:
        latencies.append(time.perf_counter() - conn.started)
        if pending:
            conn.send(pending.popleft())
        else:
            idle.append(conn)

    conns = await _open(port, conns_n, on_response)
    idle.extend(conns)
    total = int(rate * seconds)
    t0 = time.perf_counter() + 0.01
    for i in range(total):
        at = t0 + i / rate
        now = time.perf_counter()
        if at > now:
            await asyncio.sleep(at - now)
        if idle:
            idle.popleft().send(at)
        else:
            pending.append(at)
    deadline = time.perf_counter() + 10
    while len(latencies) < total and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    if sum(c.errors for c in conns):
        raise RuntimeError(f"{sum(c.errors for c in conns)} non-200 answers")
    return latencies


async def closed_loop(port: int, clients: int, seconds: float) -> float:
    """Requests per second with ``clients`` connections each sending back to back."""
    count = 0
    stop_at = 0.0

    def on_response(conn: _LoadConn, _: float) -> None:
        nonlocal count
        count += 1
        if time.perf_counter() < stop_at:
            conn.send(time.perf_counter())

    conns = await _open(port, clients, on_response)
    for c in conns:  # warm up every path once
        c.send(time.perf_counter())
    await asyncio.sleep(0.3)
    count = 0
    began = time.perf_counter()
    stop_at = began + seconds
    for c in conns:
        c.send(time.perf_counter())
    await asyncio.sleep(seconds)
    measured = count / (time.perf_counter() - began)
    await asyncio.sleep(0.2)
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    return measured


def load_role(mode: str, port: int, rate: float, seconds: float, clients: int) -> None:
    if mode == "open":
        out: object = asyncio.run(open_loop(port, rate, seconds))
    else:
        out = asyncio.run(closed_loop(port, clients, seconds))
    print(json.dumps(out))


def run_load(mode: str, port: int, rate: float, seconds: float, clients: int = 64) -> object:
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--role",
            "load",
            "--mode",
            mode,
            "--port",
            str(port),
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--clients",
            str(clients),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# -- a. and b. ----------------------------------------------------------------------------


def overhead_and_throughput(
    rates: Sequence[float], seconds: float, clients: int, skip: set[str], loop_kind: str
) -> None:
    replica, replica_port = start_replica()
    router, router_port = start_router(replica_port, loop_kind)
    try:
        if "a" not in skip:
            print("\na. router overhead, open loop (ms; latency from the scheduled time)")
            print(
                f"{'rate/s':>8} {'direct p50':>11} {'p99':>7} {'router p50':>11} {'p99':>7}"
                f" {'added p50':>10} {'added p99':>10}"
            )
            for rate in rates:
                direct: list[float] = []
                routed: list[float] = []
                rounds = 3
                for _ in range(rounds):
                    direct += run_load("open", replica_port, rate, seconds / rounds)  # type: ignore[arg-type]
                    routed += run_load("open", router_port, rate, seconds / rounds)  # type: ignore[arg-type]
                d50, d99 = pct(direct, 50) * 1e3, pct(direct, 99) * 1e3
                r50, r99 = pct(routed, 50) * 1e3, pct(routed, 99) * 1e3
                print(
                    f"{rate:>8.0f} {d50:>11.3f} {d99:>7.3f} {r50:>11.3f} {r99:>7.3f}"
                    f" {r50 - d50:>10.3f} {r99 - d99:>10.3f}"
                )
        if "b" not in skip:
            print(f"\nb. throughput, closed loop, {clients} connections, {seconds:g} s")
            direct_rps = float(run_load("closed", replica_port, 0, seconds, clients))  # type: ignore[arg-type]
            before, began = cpu_s(router.pid), time.perf_counter()
            routed_rps = float(run_load("closed", router_port, 0, seconds, clients))  # type: ignore[arg-type]
            router_cpu = cpu_s(router.pid) - before
            wall = time.perf_counter() - began
            # The load generator counts only the timed part; the router's CPU covers the whole
            # run (warm-up and start included), so the CPU per request is an upper bound.
            requests = routed_rps * seconds
            per_request_us = router_cpu / max(1.0, requests) * 1e6
            print(f"  replica alone:      {direct_rps:>8,.0f} req/s")
            print(
                f"  through the router: {routed_rps:>8,.0f} req/s "
                f"(router CPU {router_cpu:.2f} s over {wall:.1f} s: "
                f"{router_cpu / wall * 100:.0f} % of a core)"
            )
            print(
                f"  router CPU per request: {per_request_us:.0f} us, i.e. "
                f"{1e6 / per_request_us:,.0f} req/s per core of router CPU"
            )
    finally:
        stop(router)
        stop(replica)


# -- c. cold start -------------------------------------------------------------------------


@dataclass
class _ColdSource:
    """Routes for one service; ``demand`` starts a replica process and publishes it."""

    current: tuple[Route, ...] = (Route("cold", "/", cold_start_timeout_s=30.0),)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    startup_s: list[float] = field(default_factory=list)
    starting: bool = False

    def routes(self) -> Sequence[Route]:
        return self.current

    def report(self, samples: Sequence[LoadSample]) -> None:
        pass

    def demand(self, service: str) -> None:
        if self.starting or self.procs:
            return
        self.starting = True
        threading.Thread(target=self._start, daemon=True).start()

    def _start(self) -> None:
        began = time.perf_counter()
        proc, port = start_replica("cold")
        self.startup_s.append(time.perf_counter() - began)
        self.procs.append(proc)
        self.current = (
            Route(
                "cold",
                "/",
                cold_start_timeout_s=30.0,
                endpoints=(Endpoint(f"http://127.0.0.1:{port}", "r1", "cold-0"),),
            ),
        )
        self.starting = False

    def scale_to_zero(self) -> None:
        self.current = (Route("cold", "/", cold_start_timeout_s=30.0),)
        for proc in self.procs:
            stop(proc)
        self.procs.clear()


def cold_start(runs: int) -> None:
    source = _ColdSource()
    print(f"\nc. cold start: {runs} requests each at zero replicas (ms)")

    async def main() -> list[tuple[float, float]]:
        router = Router(source, source, refresh_interval_s=0.01)
        await router.serve("127.0.0.1", 0)
        out = []
        try:
            for _ in range(runs):
                source.scale_to_zero()
                await asyncio.sleep(0.1)
                began = time.perf_counter()
                reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
                writer.write(b"GET /x HTTP/1.1\r\nHost: cold\r\nConnection: close\r\n\r\n")
                first = await reader.read(1)
                ttfb = time.perf_counter() - began
                await reader.read()
                writer.close()
                assert first == b"H"
                out.append((ttfb, source.startup_s[-1]))
        finally:
            source.scale_to_zero()
            await router.close()
        return out

    results = asyncio.run(main())
    ttfb = [t for t, _ in results]
    startup = [s for _, s in results]
    overhead = [t - s for t, s in results]
    print(f"  time to first byte: p50 {pct(ttfb, 50) * 1e3:.0f}  p99 {pct(ttfb, 99) * 1e3:.0f}")
    print(
        f"  replica start-up:   p50 {pct(startup, 50) * 1e3:.0f}  p99 {pct(startup, 99) * 1e3:.0f}"
    )
    print(
        f"  overhead:           p50 {pct(overhead, 50) * 1e3:.0f}  p99 "
        f"{pct(overhead, 99) * 1e3:.0f}  max {max(overhead) * 1e3:.0f}"
        f"  mean {statistics.mean(overhead) * 1e3:.0f}"
    )


# -- d. the simulator ---------------------------------------------------------------------


def simulated() -> None:
    from phalanx.simulation.serving import bursty_trace, compare_policies

    print("\nd. a bursty trace through the autoscaler, in the simulator")
    trace = bursty_trace(random.Random(1))
    for line in compare_policies(trace):
        print("  " + line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", default="bench", choices=["bench", "router", "load"])
    parser.add_argument("--backend", type=int, default=0)
    parser.add_argument("--mode", default="open")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--rates", default="500,2000")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--cold-runs", type=int, default=20)
    parser.add_argument("--skip", default="")
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    args = parser.parse_args()
    if args.role == "router":
        router_role(args.backend, args.loop)
        return
    if args.role == "load":
        load_role(args.mode, args.port, args.rate, args.seconds, args.clients)
        return
    print("load before:", os.getloadavg())
    skip = set(filter(None, args.skip.split(",")))
    rates = [float(r) for r in args.rates.split(",")]
    if {"a", "b"} - skip:
        print(f"router event loop: {args.loop}")
        overhead_and_throughput(rates, args.seconds, args.clients, skip, args.loop)
    if "c" not in skip:
        cold_start(args.cold_runs)
    if "d" not in skip:
        simulated()
    print("\nload after:", os.getloadavg())


if __name__ == "__main__":
    main()
