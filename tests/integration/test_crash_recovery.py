"""Kill the control plane with SIGKILL at several instants, restart it, and check that no job
is lost, no pod runs twice and no GPU device is ever held by two pods at once."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from phalanx.client import Client
from phalanx.testing import queue_manifests

pytestmark = pytest.mark.integration

POD = """
import os, time
line = lambda what: open(os.environ["LEDGER"], "a").write(
    f"{time.time():.6f} {what} {os.environ['PHALANX_JOB']} {os.environ['PHALANX_POD_SET']}-{os.environ['PHALANX_INDEX']} "
    f"{os.environ['PHALANX_ATTEMPT']} {os.environ['PHALANX_NODE']} {os.environ['CUDA_VISIBLE_DEVICES']}\\n")
line("start"); time.sleep(float(os.environ["SECONDS_TO_RUN"])); line("end")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    log = (data_dir / "server.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "phalanx.cli",
            "--data-dir",
            str(data_dir),
            "up",
            "--nodes",
            "2x4",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    client = Client(server=f"http://127.0.0.1:{port}", data_dir=data_dir)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            client.health()
            client.close()
            return process
        except Exception:
            assert process.poll() is None, (data_dir / "server.log").read_text()
            time.sleep(0.1)
    raise AssertionError("server did not start")


def _kill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)  # the server alone: its pods live in their own sessions
    process.wait()


def _job(name: str, seconds: float) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "queue": "q",
            "podSets": [
                {
                    "name": "w",
                    "replicas": 2,
                    "command": [sys.executable, "-c", POD],
                    "env": {"SECONDS_TO_RUN": str(seconds)},
                    "resources": {"cpu": "100m", "memory": "32Mi", "nvidia.com/gpu": 2},
                }
            ],
        },
    }


def test_sigkill_at_any_instant_loses_nothing_and_runs_nothing_twice(tmp_path: Path) -> None:
    port = _free_port()
    ledger = tmp_path / "ledger.txt"
    server = _start(tmp_path, port)
    client = Client(server=f"http://127.0.0.1:{port}", data_dir=tmp_path)
    queue = queue_manifests(gpu=64, cpu=64)
    jobs = [_job(f"j{i}", 2.5) for i in range(6)]
    for job in jobs:  # the ledger path travels in the pod env
        job["spec"]["podSets"][0]["env"]["LEDGER"] = str(ledger)  # type: ignore[index]
    try:
        client.apply(queue)
        client.apply(jobs)
        _kill(server)  # 1. right after submission, perhaps mid-admission
        server = _start(tmp_path, port)
        deadline = time.monotonic() + 30
        while not any(j["phase"] == "Running" for j in client.jobs()):
            assert time.monotonic() < deadline, "no job started after the first restart"
            time.sleep(0.05)
        time.sleep(0.3)
        _kill(server)  # 2. mid-run, pods alive and unobserved
        time.sleep(2.0)  # some pods end while nobody watches
        server = _start(tmp_path, port)
        for i in range(6):
            info = client.wait_for(f"j{i}", ("Succeeded", "Failed"), timeout_s=60)
            assert info["phase"] == "Succeeded", info["message"]
            assert info["attempt"] == 1, f"j{i} ran {info['attempt']} attempts"
    finally:
        client.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    starts: dict[tuple[str, str], int] = defaultdict(int)
    spans: dict[tuple[str, str, str], float] = {}
    intervals: dict[tuple[str, str], list[tuple[float, float, str]]] = defaultdict(list)
    for row in ledger.read_text().splitlines():
        at, what, job, pod, _attempt, node, devices = row.split(" ")
        key = (job, pod)
        if what == "start":
            starts[key] += 1
            spans[(job, pod, node + ":" + devices)] = float(at)
        else:
            begin = spans.pop((job, pod, node + ":" + devices))
            for device in devices.split(","):
                intervals[(node, device)].append((begin, float(at), f"{job}/{pod}"))
    assert len(starts) == 12 and set(starts.values()) == {1}, "every pod ran exactly once"
    assert not spans, f"pods that never finished: {spans}"
    for device, used in intervals.items():
        used.sort()
        for (_, end, first), (begin, _, second) in itertools.pairwise(used):
            assert begin >= end, f"{device} held by {first} and {second} at once"
