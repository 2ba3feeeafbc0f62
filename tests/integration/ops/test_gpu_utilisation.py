"""Idle GPUs from measured utilisation: the DCGM exporter's text format (data/dcgm-exporter.prom,
eight H100s of one node, four idle and four busy) served as a static file over HTTP, read
directly and through a real Prometheus (Debian's ``prometheus``) that scrapes it; and NVML,
which must skip cleanly on a machine without a GPU.

The plane is a production control plane over the sim backend; the doctor reads utilisation
through the same readers ``phalanx doctor`` uses.
"""

from __future__ import annotations

import functools
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opsharness import FLAVOR, SimPlane, job, queue

from phalanx.ops.doctor import diagnose
from phalanx.ops.findings import FindingCode
from phalanx.ops.gpu_usage import (
    UsageSources,
    read_dcgm_exporter,
    read_dcgm_prometheus,
    read_nvml,
    read_usage,
)
from phalanx.ops.observation import observe
from prometheus_process import running_prometheus

DATA = Path(__file__).parent / "data"
IDLE_DEVICES = {0, 1, 2, 3}  # DCGM_FI_DEV_GPU_UTIL 0 in the file; 4–7 are at 88–97 %


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def exporter() -> Iterator[str]:
    """The recorded exporter output served as a static file: its metrics URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(DATA)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/dcgm-exporter.prom"
    server.shutdown()
    server.server_close()


def _plane_with_two_jobs(sim: SimPlane) -> dict[str, set[int]]:
    """Jobs ``idle`` and ``busy`` of 4 GPUs each on node n1; their devices by name."""
    sim.apply([FLAVOR, queue(gpus=16)])
    sim.apply([job("idle", gpus=4)])
    sim.apply([job("busy", gpus=4)])
    sim.run(5)
    devices = {}
    for name in ("idle", "busy"):
        (pod,) = sim.plane.get_job(name).pods
        assert pod.node == "n1", pod
        devices[name] = {d.index for d in pod.devices}
    # placement packs the first job onto the first devices: the idle ones in the file
    assert devices == {"idle": IDLE_DEVICES, "busy": {4, 5, 6, 7}}, devices
    return devices


def test_exporter_text_is_read_and_an_unmatched_node_claims_nothing(
    sim: SimPlane, exporter: str
) -> None:
    """Scraped directly, every device is keyed by UUID and by ``<Hostname>/<gpu>``. The
    exporter's Hostname (gpu-node-1) is no node of this plane and the sim devices have no
    UUIDs, so nothing matches: the doctor must not call either job idle from it."""
    _plane_with_two_jobs(sim)
    usage = read_dcgm_exporter(exporter)
    by_uuid = {k: u.utilisation_pct for k, u in usage.items() if k.startswith("GPU-")}
    by_node = {k: u.utilisation_pct for k, u in usage.items() if not k.startswith("GPU-")}
    assert len(by_uuid) == 8 and sorted(by_uuid.values()) == [0, 0, 0, 0, 88, 91, 93, 97]
    assert by_node == {f"gpu-node-1/{i}": v for i, v in enumerate([0, 0, 0, 0, 93, 88, 97, 91])}
    obs = observe(sim.plane, usage=UsageSources(exporter_url=exporter, use_nvml=False))
    assert len(obs.gpu_usage) == 16
    assert not [f for f in diagnose(obs) if f.code is FindingCode.IDLE_GPUS]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def prometheus(exporter: str, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus scraping the exporter file every second, the target labelled
    ``node: n1`` as a Kubernetes relabelling would; its base URL once it has a sample."""
    target = exporter.removeprefix("http://").split("/", 1)[0]
    scrape = {
        "job_name": "dcgm",
        "metrics_path": "/dcgm-exporter.prom",
        "static_configs": [{"targets": [target], "labels": {"node": "n1"}}],
    }
    with running_prometheus(tmp_path, [scrape]) as prometheus:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(read_dcgm_prometheus(prometheus.url)) < 16:
            time.sleep(0.5)
        yield prometheus.url


def test_prometheus_query_names_the_idle_job_and_spares_the_busy_one(
    sim: SimPlane, prometheus: str
) -> None:
    _plane_with_two_jobs(sim)
    usage = read_dcgm_prometheus(prometheus)
    assert {k: u.utilisation_pct for k, u in usage.items() if k.startswith("n1/")} == {
        "n1/0": 0.0,
        "n1/1": 0.0,
        "n1/2": 0.0,
        "n1/3": 0.0,
        "n1/4": 93.0,
        "n1/5": 88.0,
        "n1/6": 97.0,
        "n1/7": 91.0,
    }
    obs = observe(sim.plane, usage=UsageSources(prometheus_url=prometheus, use_nvml=False))
    idle = [f for f in diagnose(obs) if f.code is FindingCode.IDLE_GPUS]
    assert [(f.object, f.facts["source"]) for f in idle] == [("job/idle", ["dcgm-prometheus"])]
    assert idle[0].facts["utilisation_pct"] == {f"n1/{i}": 0.0 for i in sorted(IDLE_DEVICES)}


def test_unreachable_sources_give_nothing_and_say_why(caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()  # nothing listens there
    assert read_dcgm_prometheus(f"http://127.0.0.1:{port}", timeout_s=1) == {}
    assert read_dcgm_exporter(f"http://127.0.0.1:{port}/metrics", timeout_s=1) == {}
    assert f"127.0.0.1:{port}" in caplog.text


def test_nvml_reads_this_machines_gpus_or_nothing() -> None:
    """Without a GPU (or its driver) NVML gives nothing and no error; with one, every
    device's utilisation, by UUID."""
    usage = read_nvml()
    has_gpu = shutil.which("nvidia-smi") is not None and bool(
        subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, check=False
        ).stdout.strip()
    )
    if not has_gpu:
        assert usage == {}
        assert read_usage(UsageSources()) == {}
        return
    listed = subprocess.run(
        ["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(usage) == sorted(listed)
    assert all(0 <= u.utilisation_pct <= 100 and u.source == "nvml" for u in usage.values())
