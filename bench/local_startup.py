"""Benchmark: `phalanx up` to a job running, and the control plane's memory (ARCHITECTURE §12:
under 2 s and under 150 MB RSS). Starts a real server on virtual nodes in a temporary data dir.

    python bench/local_startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from phalanx.client import Client
from phalanx.testing import queue_manifests

QUEUE = queue_manifests(gpu=8, cpu=8, memory="8Gi")
JOB = {
    "apiVersion": "phalanx.dev/v1alpha1",
    "kind": "Job",
    "metadata": {"name": "hello"},
    "spec": {
        "queue": "q",
        "podSets": [
            {
                "name": "w",
                "replicas": 2,
                "command": [sys.executable, "-c", "import time; time.sleep(5)"],
                "resources": {"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": 1},
            }
        ],
    },
}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_run() -> tuple[float, float, float]:
    data_dir = Path(tempfile.mkdtemp(prefix="phalanx-bench-"))
    port = _port()
    started = time.perf_counter()
    server = subprocess.Popen(
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
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        while not (data_dir / "token").exists():
            time.sleep(0.01)
        while True:
            try:
                Client(server=url, data_dir=data_dir).health()
                break
            except Exception:
                time.sleep(0.02)
        up_s = time.perf_counter() - started
        client = Client(server=url, data_dir=data_dir)
        client.apply(QUEUE)
        client.apply([JOB])
        client.wait_for("hello", "Running", timeout_s=30, poll_s=0.02)
        running_s = time.perf_counter() - started
        rss = _rss_mib(server.pid)
        client.cancel("hello")
        client.close()
        return up_s, running_s, rss
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = [one_run() for _ in range(args.runs)]
    for i, (up_s, running_s, rss) in enumerate(results):
        print(
            f"run {i}: server answering after {up_s:.2f}s, 2-pod job running after {running_s:.2f}s, server RSS {rss:.0f} MiB"
        )
    print(
        f"median: up {statistics.median(r[0] for r in results):.2f}s, job running {statistics.median(r[1] for r in results):.2f}s "
        f"(budget 2 s), RSS {statistics.median(r[2] for r in results):.0f} MiB (budget 150 MB)"
    )


if __name__ == "__main__":
    main()
