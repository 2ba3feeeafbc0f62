"""Benchmark: the bursty trace "for real at small scale", side by side with the simulator.

The same arrival shape the serving simulator uses (``phalanx.simulation.serving.
bursty_trace``: a Poisson base, bursts, a quiet spell), scaled down to a few minutes and a
few replicas, is sent open-loop (each request at its trace time, latency counted from that
time) through the router of a real ``phalanx up`` server (SQLite store, local backend) to a
Service whose replicas are real processes started by the scheduler: the echo server
(``python -m phalanx.serving.echo``) answering ``/sleep/<ms>`` after the request's service
time from the trace, which stands for a model server whose work is on an accelerator (the
replica's CPU stays free, as the simulator assumes). The router holds each replica to
``--slots`` requests at once (``maxConcurrency``), as the simulator does.

Two real runs:

  1. autoscaled: ``minReplicas 0``, the concurrency target, ``scaleToZeroAfter``; the real
     router, autoscaler, scheduler and readiness probes;
  2. fixed at the peak: ``minReplicas = maxReplicas = ceil(peak concurrency / target)``, all
     ready before the first request.

Replica-seconds of a real run: the Service's replica Jobs (pending, starting, ready or
draining) counted every ``--poll-s`` from the API, integrated over the run. Then the
simulator runs the same trace with the same settings and, as the replica start-up time, the
one the real run measured (its first request's wait at zero, less the request's own service
time): its prediction side by side with what happened.

    python bench/serving_burst.py [--duration-s 180] [--seed 1] [--stable-window-s 12]
                                  [--panic-window-s 3] [--skip-fixed]

Figures depend on the machine's load: the script prints it before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from phalanx.client import Client
from phalanx.serving.autoscaler import AutoscalerSpec
from phalanx.simulation.serving import (
    FixedPolicy,
    KpaPolicy,
    Request,
    ServingResult,
    bursty_trace,
    peak_concurrency,
    simulate_serving,
)
from phalanx.testing import queue_manifests


@dataclass(frozen=True, slots=True)
class Settings:
    duration_s: float
    seed: int
    slo_s: float
    target: float
    slots: int
    startup_delay_s: float
    scale_to_zero_after_s: float
    max_replicas: int
    poll_s: float
    stable_window_s: float
    panic_window_s: float


def scaled_trace(settings: Settings) -> list[Request]:
    """The simulator's bursty shape in ``duration_s``: a base of 3 requests/s, bursts of 40/s
    for 12 s about every 60 s, a quiet spell for the last quarter but 20 s; service times
    0.25 s ± 50 %. (The 30-minute trace has bursts every 300 s against a 60 s stable window;
    here the windows shrink with the spacing: ``--stable-window-s``, ``--panic-window-s``.)"""
    d = settings.duration_s
    return bursty_trace(
        random.Random(settings.seed),
        duration_s=d,
        base_rps=3.0,
        burst_rps=40.0,
        burst_every_s=60.0,
        burst_s=12.0,
        quiet_from_s=0.75 * d - 20.0,
        quiet_s=0.25 * d,
        service_s=0.25,
    )


class Server:
    """A ``phalanx up`` process on a fresh data dir; its client and router address."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log = (data_dir.parent / "server.log").open("ab")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "phalanx.cli", "--data-dir", str(data_dir), "up"),
                # Replicas run this interpreter, from wherever it is installed: as the user
                # who runs the benchmark, not a separate pod user (who may not read it).
                *("--port", "0", "--pod-user", "none"),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        info_path = data_dir / "server.json"
        deadline = time.monotonic() + 60
        while not info_path.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"phalanx up did not start; see {self.log.name}")
            time.sleep(0.05)
        info = json.loads(info_path.read_text())
        self.client = Client(server=info["url"], data_dir=data_dir)
        host, port = info["router_url"].removeprefix("http://").rsplit(":", 1)
        self.router = (host, int(port))

    def service(self, name: str) -> dict[str, object]:
        data = self.client._request("GET", f"/api/v1/services/{name}").json()
        assert isinstance(data, dict)
        return data

    def stop(self) -> None:
        self.client.close()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def service_manifest(name: str, settings: Settings, lo: int, hi: int) -> dict[str, object]:
    echo = (
        f"exec {sys.executable} -m phalanx.serving.echo --port $PORT "
        f"--startup-delay-s {settings.startup_delay_s:g}"
    )
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "queue": "q",
            "template": {
                "command": ["sh", "-c", echo],
                "resources": {"cpu": "100m", "memory": "64Mi"},
            },
            "readinessProbe": {"path": "/healthz", "period": "100ms"},
            "minReplicas": lo,
            "maxReplicas": hi,
            "autoscaling": {
                "metric": "concurrency",
                "target": settings.target,
                "stableWindow": f"{settings.stable_window_s:g}s",
                "panicWindow": f"{settings.panic_window_s:g}s",
            },
            "scaleToZeroAfter": f"{settings.scale_to_zero_after_s:g}s",
            "maxConcurrency": settings.slots,
            "queueLimit": 100_000,
            "coldStartTimeout": "120s",
        },
    }


async def send_trace(
    router: tuple[str, int], prefix: str, trace: Sequence[Request]
) -> list[tuple[float, float, int]]:
    """Each request at its time on a connection of its own: (scheduled at, latency from
    then, status), 0 for a connection that failed."""
    start = time.monotonic() + 0.5
    out: list[tuple[float, float, int]] = []

    async def one(request: Request) -> None:
        await asyncio.sleep(max(0.0, start + request.at - time.monotonic()))
        due = start + request.at
        status = 0
        try:
            reader, writer = await asyncio.open_connection(*router)
            ms = round(request.service_s * 1000)
            writer.write(
                f"GET {prefix}/sleep/{ms} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode()
            )
            head = await reader.readline()
            await reader.read()
            writer.close()
            status = int(head.split()[1]) if head else 0
        except (OSError, ValueError, IndexError):
            status = 0
        out.append((request.at, time.monotonic() - due, status))

    await asyncio.gather(*(one(r) for r in trace))
    return sorted(out)


class ReplicaMeter:
    """Counts the Service's replica Jobs every ``poll_s`` (a thread): replica-seconds."""

    def __init__(self, server: Server, name: str, poll_s: float) -> None:
        self.server, self.name, self.poll_s = server, name, poll_s
        self.replica_seconds = 0.0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReplicaMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.poll_s):
            replicas = self.server.service(self.name)["replicas"]
            assert isinstance(replicas, list)
            now = time.monotonic()
            self.replica_seconds += len(replicas) * (now - last)
            self.peak = max(self.peak, len(replicas))
            last = now


@dataclass(frozen=True, slots=True)
class RealResult:
    name: str
    latencies_s: tuple[float, ...]
    failed: int
    replica_seconds: float
    peak: int
    first_wait_s: float
    scale_events: int

    def slo_share(self, slo_s: float) -> float:
        total = len(self.latencies_s) + self.failed
        return sum(1 for x in self.latencies_s if x <= slo_s) / total if total else 1.0


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def run_real(
    server: Server, name: str, trace: Sequence[Request], settings: Settings, lo: int, hi: int
) -> RealResult:
    server.client.apply([service_manifest(name, settings, lo, hi)])
    deadline = time.monotonic() + 120
    while int(server.service(name)["ready"]) < lo:  # type: ignore[call-overload]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{lo} replicas of {name} were not ready within 120 s")
        time.sleep(0.1)
    time.sleep(0.5)  # the router reads the routes
    with ReplicaMeter(server, name, settings.poll_s) as meter:
        answers = asyncio.run(send_trace(server.router, f"/{name}", trace))
        # The simulator counts a replica until it stops: so does this, when it scales to
        # zero (fixed replicas count for as long as the trace).
        deadline = time.monotonic() + settings.stable_window_s + settings.scale_to_zero_after_s + 30
        while lo == 0 and server.service(name)["replicas"] and time.monotonic() < deadline:
            time.sleep(settings.poll_s)
    ok = [lat for _, lat, status in answers if status == 200]
    failed = sum(1 for _, _, status in answers if status != 200)
    first_wait = answers[0][1] - trace[0].service_s if answers else 0.0
    events = server.service(name).get("events", [])
    assert isinstance(events, list)
    server.client.delete("Service", name)
    deadline = time.monotonic() + 60
    while any(j["name"].startswith(f"{name}-") for j in server.client.jobs()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return RealResult(
        name,
        tuple(ok),
        failed,
        meter.replica_seconds,
        meter.peak,
        first_wait,
        sum(1 for e in events if str(e.get("reason", "")).startswith("Scaled")),
    )


def row(name: str, share: float, lat: Sequence[float], rs: float, base: float, peak: int) -> str:
    return (
        f"{name:<34} {share * 100:>7.2f}% {pct(lat, 50) * 1000:>8.0f} {pct(lat, 99) * 1000:>9.0f}"
        f" {rs:>10.0f} {rs / base if base else 0:>8.2f}x {peak:>4}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration-s", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--slo-ms", type=float, default=500.0)
    parser.add_argument("--target", type=float, default=3.0)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--startup-delay-s", type=float, default=2.0)
    parser.add_argument("--scale-to-zero-after-s", type=float, default=20.0)
    parser.add_argument("--poll-s", type=float, default=0.5)
    parser.add_argument("--stable-window-s", type=float, default=12.0)
    parser.add_argument("--panic-window-s", type=float, default=3.0)
    parser.add_argument("--skip-fixed", action="store_true")
    args = parser.parse_args()
    settings = Settings(
        duration_s=args.duration_s,
        seed=args.seed,
        slo_s=args.slo_ms / 1000,
        target=args.target,
        slots=args.slots,
        startup_delay_s=args.startup_delay_s,
        scale_to_zero_after_s=args.scale_to_zero_after_s,
        max_replicas=1,
        poll_s=args.poll_s,
        stable_window_s=args.stable_window_s,
        panic_window_s=args.panic_window_s,
    )
    trace = scaled_trace(settings)
    peak = peak_concurrency(trace)
    fixed_n = max(1, math.ceil(peak / args.target))
    settings = replace(settings, max_replicas=2 * fixed_n)  # as compare_policies does
    print("load before:", os.getloadavg())
    print(
        f"trace: {len(trace)} requests over {args.duration_s:g} s (seed {args.seed}); peak "
        f"concurrency {peak:.1f}; target {args.target:g}/replica, {args.slots} slots/replica; "
        f"replica start-up delay {args.startup_delay_s:g} s; windows {args.stable_window_s:g} s"
        f" / {args.panic_window_s:g} s; scaleToZeroAfter {args.scale_to_zero_after_s:g} s; SLO "
        f"{args.slo_ms:g} ms; fixed at the peak: {fixed_n}"
    )
    with tempfile.TemporaryDirectory(prefix="phalanx-burst-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        server = Server(data_dir)
        try:
            server.client.apply(queue_manifests(cpu=64))
            auto = run_real(server, "burst", trace, settings, 0, settings.max_replicas)
            fixed = None
            if not args.skip_fixed:
                fixed = run_real(server, "fixed", trace, settings, fixed_n, fixed_n)
        finally:
            server.stop()
    startup_s = max(0.1, auto.first_wait_s)
    spec = AutoscalerSpec(
        target=args.target,
        max_replicas=settings.max_replicas,
        scale_to_zero_after_s=args.scale_to_zero_after_s,
        stable_window_s=args.stable_window_s,
        panic_window_s=args.panic_window_s,
    )
    sim_auto: ServingResult = simulate_serving(
        trace, KpaPolicy(spec), startup_s=startup_s, replica_concurrency=args.slots
    )
    sim_fixed = simulate_serving(
        trace, FixedPolicy(fixed_n), startup_s=startup_s, replica_concurrency=args.slots
    )
    slo = args.slo_ms / 1000
    base_sim = sim_fixed.replica_seconds
    base_real = fixed.replica_seconds if fixed is not None else fixed_n * args.duration_s
    print(
        f"\nreplica start-up measured for real (first request's wait at zero less its service "
        f"time): {auto.first_wait_s:.2f} s; the simulator uses it"
    )
    print(
        f"{'run':<34} {'in SLO':>8} {'p50 ms':>8} {'p99 ms':>9} {'replica-s':>10}"
        f" {'vs fixed':>9} {'max':>4}"
    )
    rows: list[tuple[str, ServingResult | RealResult, float]] = [
        (f"simulated: fixed at the peak ({fixed_n})", sim_fixed, base_sim),
        ("simulated: autoscaled, to zero", sim_auto, base_sim),
        *([] if fixed is None else [(f"real: fixed at the peak ({fixed_n})", fixed, base_real)]),
        ("real: autoscaled, to zero", auto, base_real),
    ]
    for name, result, base in rows:
        peak_n = result.max_replicas if isinstance(result, ServingResult) else result.peak
        print(
            row(
                name,
                result.slo_share(slo),
                result.latencies_s,
                result.replica_seconds,
                base,
                peak_n,
            )
        )
    print(
        f"real autoscaled: {auto.failed} request(s) failed; {auto.scale_events} scaling "
        f"event(s) recorded" + ("" if fixed is None else f"; fixed: {fixed.failed} failed")
    )
    print("\nload after:", os.getloadavg())


if __name__ == "__main__":
    main()
