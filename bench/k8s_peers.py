"""Benchmark: phalanx vs Kueue (with and without waitForPodsReady) on one KWOK cluster.

One command starts the test cluster (KWOK nodes, 8 GPUs each), then runs every system in turn
on the same cluster, each in its own namespace after the previous system's pods are gone, with
the same seeded workload: single-pod jobs and gangs (some wider than any node), several queues
in one cohort with nominal quotas and borrowing, arriving at a fixed rate. Every pod "runs" for
``--runtime`` seconds (KWOK stage annotation ``phalanx.dev/kwok-runtime-seconds``).

Measured from one pod watch on the API server, the same for every system: wall time to finish
the workload, admission latency (submission -> every pod of the job Running) p50/p90/p99 by job
size, pods bound per second, stranded GPU-seconds (held by bound pods of a job while a sibling
had no node and no bind on its way: the partial-admission waste, from the API server's audit
log of binds and the watch, see ``stranded_gpu_s``), bind-skew GPU-seconds (each pod's bind to
its gang's last bind), GPU allocation over time, and the CPU seconds and peak memory of
each system's own processes (and of the API server + etcd during its run), the API requests
served during each run, KWOK's backlog (pods bound, not yet Running) and, from KWOK's log, how
fast it played each system's pod stages. Prints one table and writes the raw figures as JSON.

Needs `scripts/testcluster/testcluster build` and `scripts/peers/peers build` (this script runs
the latter itself; cached after the first time). Not a test: figures vary with the machine.

    python bench/k8s_peers.py [--nodes 100] [--duration 60] [--runtime 20] [--load 0.9]
                              [--systems phalanx,kueue,kueue-wfpr] [--json out.json]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import json
import os
import random
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TESTCLUSTER = ROOT / "scripts" / "testcluster" / "testcluster"
PEERS = ROOT / "scripts" / "peers" / "peers"
#: Where ``phalanx up`` is imported from ("": the installed package); see --phalanx-src.
PHALANX_SRC = {"path": ""}
#: Where the ``phalanx-base`` system imports phalanx from (--baseline-src; e.g. the previous
#: commit), to compare two versions of phalanx in one run.
BASELINE_SRC = {"path": ""}
#: A py-spy binary to sample `phalanx up` with (--py-spy; "": none).
PY_SPY = {"path": ""}

JOB_ANNOTATION = "peers.bench.phalanx.dev/job"
RUNTIME_ANNOTATION = "phalanx.dev/kwok-runtime-seconds"
GPU = "nvidia.com/gpu"
QUEUES = (("team-a", 0.4, 0.5), ("team-b", 0.3, 0.3), ("team-c", 0.3, 0.2))  # name, quota, load
# Job shapes: (pods, GPUs per pod, share of jobs). 8 x 8 GPUs spans eight whole nodes.
SHAPES = ((1, 1, 0.6), (4, 2, 0.25), (8, 8, 0.15))
ALL_SYSTEMS = ("phalanx", "kueue", "kueue-wfpr")
NODE_BATCH = 100  # KWOK nodes created (and waited for) at a time
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION")
READ_VERBS = ("GET", "LIST", "WATCH")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Workload
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobReq:
    name: str
    queue: str
    pods: int
    gpus: int  # per pod
    at: float  # seconds after the start of the run


def workload(
    nodes: int, duration_s: float, runtime_s: float, load: float, seed: int
) -> list[JobReq]:
    """Jobs arriving at a fixed rate, sized so that the offered load (GPU-seconds asked per
    second over GPUs in the cluster) is ``load``."""
    mean_gpus = sum(p * g * share for p, g, share in SHAPES)
    rate = load * nodes * 8 / (mean_gpus * runtime_s)  # jobs per second
    count = max(1, round(rate * duration_s))
    rng = random.Random(seed)
    jobs = []
    for i in range(count):
        pods, gpus, _ = rng.choices(SHAPES, weights=[s[2] for s in SHAPES])[0]
        queue = rng.choices([q[0] for q in QUEUES], weights=[q[2] for q in QUEUES])[0]
        jobs.append(JobReq(f"j{i:05d}-{pods}x{gpus}", queue, pods, gpus, i / rate))
    return jobs


def size_class(job: JobReq) -> str:
    return "single" if job.pods == 1 else f"gang-{job.pods}x{job.gpus}"


# ---------------------------------------------------------------------------------------------
# The cluster and a minimal API client (raw JSON: the measurement must stay cheap)
# ---------------------------------------------------------------------------------------------


class Api:
    def __init__(self, cluster_dir: Path) -> None:
        env: dict[str, str] = {}
        for line in (cluster_dir / "env").read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                env[key] = value.strip("'")
        self.env = env
        self.server = env["PHALANX_TESTCLUSTER_SERVER"]
        self.token = env["PHALANX_TESTCLUSTER_TOKEN"]
        self.kubeconfig = env["KUBECONFIG"]
        self.kubectl_bin = env["PHALANX_TESTCLUSTER_KUBECTL"]
        self.ctx = ssl.create_default_context(cafile=env["PHALANX_TESTCLUSTER_CA_FILE"])

    def open(self, method: str, path: str, body: Any = None, timeout: float = 120) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            kind = "merge-patch+json" if method == "PATCH" else "json"
            request.add_header("Content-Type", f"application/{kind}")
        return urllib.request.urlopen(request, context=self.ctx, timeout=timeout)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        with self.open(method, path, body) as response:
            return json.loads(response.read() or b"null")

    def writes(self, verbs: tuple[str, ...] = WRITE_VERBS) -> dict[str, float]:
        """The API server's count of requests so far with one of ``verbs`` (writes unless
        told), by ``VERB resource[/sub] code`` (``apiserver_request_total``); the difference
        over a run is what the run wrote (or read)."""
        with self.open("GET", "/metrics") as response:
            text = response.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels_text, _, value = line.rpartition("} ")
            labels = dict(
                (k, v.strip('"'))
                for k, _, v in (
                    item.partition("=") for item in labels_text.split("{", 1)[1].split('",')
                )
            )
            if labels.get("verb") not in verbs:
                continue
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            key = f"{labels['verb']} {resource} {labels.get('code', '')}"
            out[key] = out.get(key, 0.0) + float(value)
        return out

    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        out = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args],
            capture_output=True,
            text=True,
            input=input_text,
            check=False,
        )
        if out.returncode:
            raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def apply(self, objects: list[dict[str, Any]]) -> None:
        self.kubectl(
            "apply",
            "--server-side",
            "-f",
            "-",
            input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )


@dataclass(slots=True)
class PodRecord:
    namespace: str
    job: str
    gpus: int
    seen_at: float
    bound_at: float | None = None
    #: KWOK's first stage: the pod got an IP (Pending, ContainerCreating); Running is its second.
    started_at: float | None = None
    running_at: float | None = None
    ended_at: float | None = None
    #: Whether it ended Succeeded (a pod deleted or failed before that frees its place).
    succeeded: bool = False
    #: First seen marked for deletion (``metadata.deletionTimestamp``).
    terminating_at: float | None = None
    #: First seen with condition PodScheduled=False, reason Unschedulable (a scheduler found
    #: no node for it).
    unschedulable_at: float | None = None
    #: From the API server's audit log (same clock as the rest, see ``bind_requests``): when
    #: it received this pod's successful ``pods/binding`` request, and when it answered it.
    bind_received_at: float | None = None
    bind_answered_at: float | None = None
    name: str = ""


class PodWatch:
    """Every pod's first-seen, bound, Running and end times, from one watch of all pods."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.pods: dict[tuple[str, str], PodRecord] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _on(self, kind: str, pod: dict[str, Any], now: float) -> None:
        meta = pod.get("metadata") or {}
        job = (meta.get("annotations") or {}).get(JOB_ANNOTATION)
        if not job:
            return
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self.lock:
            record = self.pods.get(key)
            if record is None:
                gpus = 0
                for c in (pod.get("spec") or {}).get("containers") or []:
                    res = c.get("resources") or {}
                    gpus += int(
                        ({**(res.get("limits") or {}), **(res.get("requests") or {})}).get(GPU, 0)
                    )
                record = self.pods[key] = PodRecord(key[0], job, gpus, now, name=key[1])
            if (pod.get("spec") or {}).get("nodeName") and record.bound_at is None:
                record.bound_at = now
            phase = (pod.get("status") or {}).get("phase")
            if (pod.get("status") or {}).get("podIP") and record.started_at is None:
                record.started_at = now
            if phase == "Running" and record.running_at is None:
                record.running_at = now
            if meta.get("deletionTimestamp") and record.terminating_at is None:
                record.terminating_at = now
            if record.unschedulable_at is None and record.bound_at is None:
                for c in (pod.get("status") or {}).get("conditions") or []:
                    if (
                        c.get("type") == "PodScheduled"
                        and c.get("status") == "False"
                        and c.get("reason") == "Unschedulable"
                    ):
                        record.unschedulable_at = now
            if (kind == "DELETED" or phase in ("Succeeded", "Failed")) and record.ended_at is None:
                record.ended_at = now
                record.succeeded = phase == "Succeeded"
                if record.running_at is None and phase == "Succeeded":
                    record.running_at = now

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    listing = self.api.call("GET", "/api/v1/pods")
                    now = time.monotonic()
                    for pod in listing.get("items") or []:
                        self._on("ADDED", pod, now)
                    version = listing["metadata"]["resourceVersion"]
                path = f"/api/v1/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=120&resourceVersion={version}"
                with self.api.open("GET", path, timeout=150) as stream:
                    for line in stream:
                        if self._stop.is_set():
                            return
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            version = ""
                            break
                        version = (obj.get("metadata") or {}).get("resourceVersion", version)
                        if event.get("type") != "BOOKMARK":
                            self._on(event["type"], obj, time.monotonic())
            except Exception as exc:  # network blips: relist and go on
                log(f"pod watch restarts: {exc}")
                version = ""
                self._stop.wait(0.5)

    def snapshot(self, namespace: str) -> list[PodRecord]:
        with self.lock:
            return [PodRecord(**asdict(r)) for r in self.pods.values() if r.namespace == namespace]

    def live(self) -> int:
        with self.lock:
            return sum(1 for r in self.pods.values() if r.ended_at is None)


# ---------------------------------------------------------------------------------------------
# Processes: started and stopped by us; CPU and peak memory read from /proc
# ---------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Procs:
    """The processes of one system: started in their own session, logs in ``logs``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.cpu0: dict[str, float] = {}
        self.peak: dict[str, float] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        out = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.cpu0[name] = 0.0

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{tail}")

    def sample(self) -> None:
        for name, proc in self.procs.items():
            self.peak[name] = max(self.peak.get(name, 0.0), rss_mb(proc.pid))

    def mark(self) -> None:
        for name, proc in self.procs.items():
            self.cpu0[name] = cpu_seconds(proc.pid)

    def usage(self) -> dict[str, dict[str, float]]:
        self.sample()
        return {
            name: {
                "cpu_s": round(cpu_seconds(proc.pid) - self.cpu0[name], 2),
                "peak_rss_mb": round(max(self.peak.get(name, 0.0), rss_mb(proc.pid, "VmHWM")), 1),
            }
            for name, proc in self.procs.items()
        }

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(
    what: str, check: Callable[[], bool], timeout_s: float, procs: Procs | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if procs is not None:
            procs.check()
        try:
            if check():
                return
        except (urllib.error.URLError, OSError, RuntimeError, KeyError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peers_paths() -> dict[str, str]:
    out = subprocess.run([str(PEERS), "paths"], capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


# ---------------------------------------------------------------------------------------------
# Systems. Each: setup(namespace) -> submit(job) per job -> teardown.
# ---------------------------------------------------------------------------------------------


def pod_annotations(job: JobReq, runtime_s: float) -> dict[str, str]:
    return {JOB_ANNOTATION: job.name, RUNTIME_ANNOTATION: f"{runtime_s:g}"}


class System:
    name = ""

    def __init__(self, api: Api, run_dir: Path, nodes: int, runtime_s: float) -> None:
        self.api = api
        self.dir = run_dir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs = Procs(self.dir)
        self.nodes = nodes
        self.runtime_s = runtime_s
        self.namespace = f"bench-{self.name}"

    def quotas(self) -> list[tuple[str, int]]:
        gpus = self.nodes * 8
        return [(name, int(gpus * share)) for name, share, _ in QUEUES]

    def setup(self) -> None:
        raise NotImplementedError

    def submit(self, job: JobReq) -> None:
        raise NotImplementedError

    def profile(self) -> dict[str, Any]:
        return {}

    def teardown(self) -> None:
        self.procs.stop()


class Phalanx(System):
    name = "phalanx"
    spy: subprocess.Popen[bytes] | None = None
    source = PHALANX_SRC

    def setup(self) -> None:
        from phalanx.client import Client

        self.api.call("POST", "/api/v1/namespaces", {"metadata": {"name": self.namespace}})
        data = self.dir / "data"
        src = self.source["path"]
        self.procs.start(
            "phalanx",
            [
                sys.executable,
                "-m",
                "phalanx.cli",
                "up",
                "--backend",
                "kubernetes",
                "--kubeconfig",
                self.api.kubeconfig,
                "--port",
                "0",
                "--data-dir",
                str(data),
                "--log-level",
                "warning",
            ],
            env={"PYTHONPATH": src} if src else None,
        )
        if PY_SPY["path"]:
            # Collapsed stacks of every thread, 100 samples/s, idle frames left out.
            self.spy = subprocess.Popen(
                [
                    PY_SPY["path"],
                    "record",
                    "--pid",
                    str(self.procs.procs["phalanx"].pid),
                    "--rate",
                    "100",
                    "--format",
                    "raw",
                    "--threads",
                    "--output",
                    str(self.dir / "phalanx.pyspy.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        wait_for("phalanx server.json", (data / "server.json").exists, 180, self.procs)
        self.client = Client(data_dir=data, timeout_s=60)
        wait_for("phalanx health", lambda: bool(self.client.health()), 180, self.procs)
        manifests: list[dict[str, Any]] = [
            {
                "apiVersion": "phalanx.dev/v1alpha1",
                "kind": "ResourceFlavor",
                "metadata": {"name": "h100"},
                "spec": {},
            }
        ]
        for queue, gpus in self.quotas():
            manifests.append(
                {
                    "apiVersion": "phalanx.dev/v1alpha1",
                    "kind": "Queue",
                    "metadata": {"name": queue},
                    "spec": {
                        "cohort": "bench",
                        "flavors": [
                            {
                                "name": "h100",
                                "resources": {
                                    "cpu": {"nominal": gpus * 4},
                                    "memory": {"nominal": f"{gpus * 16}Gi"},
                                    GPU: {"nominal": gpus},
                                },
                            }
                        ],
                    },
                }
            )
        self.client.apply(manifests)

    def submit(self, job: JobReq) -> None:
        self.client.apply(
            [
                {
                    "apiVersion": "phalanx.dev/v1alpha1",
                    "kind": "Job",
                    "metadata": {
                        "name": job.name,
                        "namespace": self.namespace,
                        "annotations": pod_annotations(job, self.runtime_s),
                    },
                    "spec": {
                        "queue": job.queue,
                        "podSets": [
                            {
                                "name": "w",
                                "replicas": job.pods,
                                "image": "busybox:1.36",
                                "command": ["sleep", "3600"],
                                "resources": {"cpu": 1, "memory": "1Gi", GPU: job.gpus},
                            }
                        ],
                    },
                }
            ]
        )

    def profile(self) -> dict[str, Any]:
        """Where phalanx's control loop spent its time: seconds and passes per reconciler and
        scheduling cycles, from its /metrics."""
        import httpx

        data = self.dir / "data"
        token = (data / "token").read_text().strip() if (data / "token").exists() else ""
        text = httpx.get(
            self.client.url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ).text
        out: dict[str, Any] = {}
        for line in text.splitlines():
            if line.startswith(
                ("phalanx_reconciler_seconds", "phalanx_reconciler_runs", "phalanx_scheduling_")
            ):
                key, _, value = line.rpartition(" ")
                out[key] = round(float(value), 3)
        # phalanx's own view of each job (wall clock): stored, admitted, all pods running.
        out["job_times"] = {
            j["name"]: [j["created_at"], j["admitted_at"], j["started_at"]]
            for j in self.client.jobs()
        }
        return out

    def teardown(self) -> None:
        self.client.close()
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)
            self.spy.wait(60)
        super().teardown()


class Kueue(System):
    """Kueue's manager (batch/job integration, no webhooks: Jobs are created suspended with
    the queue-name label), kube-controller-manager (Job controller) and kube-scheduler."""

    name = "kueue"
    wait_for_pods_ready = False

    def setup(self) -> None:
        paths = peers_paths()
        bin_dir = Path(paths["bin_dir"])
        crds = sorted(Path(paths["kueue_crd_dir"]).glob("*.yaml"))
        self.api.kubectl("apply", "--server-side", "--force-conflicts", *[f"-f={c}" for c in crds])
        self.api.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *[f"crd/{c.name.split('_', 1)[1][:-5]}.kueue.x-k8s.io" for c in crds],
        )
        for ns in ("kueue-system", self.namespace):
            try:
                self.api.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
            except urllib.error.HTTPError as exc:
                if exc.code != 409:
                    raise
        try:
            self.api.call(
                "POST",
                "/api/v1/namespaces/kueue-system/secrets",
                {"metadata": {"name": "kueue-webhook-server-cert"}},
            )
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise
        tc = Path(self.api.env["PHALANX_TESTCLUSTER_DIR"])
        qps = ["--kube-api-qps=300", "--kube-api-burst=500"]
        kcm_port, sched_port = free_port(), free_port()
        self.procs.start(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={tc / 'controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={tc / 'controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={tc / 'controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                "--leader-elect=false",
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={tc / 'pki' / 'sa.key'}",
                f"--root-ca-file={tc / 'pki' / 'ca.crt'}",
                "--controllers=job-controller,garbage-collector-controller,namespace-controller",
                "--concurrent-job-syncs=20",
                *qps,
                "--v=1",
            ],
        )
        self.procs.start(
            "kube-scheduler",
            [
                str(bin_dir / "kube-scheduler"),
                f"--kubeconfig={tc / 'scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={tc / 'scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={tc / 'scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={sched_port}",
                "--leader-elect=false",
                *qps,
                "--v=1",
            ],
        )
        config = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "namespace": "kueue-system",
            "health": {"healthProbeBindAddress": f"127.0.0.1:{free_port()}"},
            "metrics": {"bindAddress": f"127.0.0.1:{free_port()}"},
            "webhook": {
                "host": "127.0.0.1",
                "port": free_port(),
                "certDir": str(self.dir / "certs"),
            },
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "controller": {
                "groupKindConcurrency": {
                    "Job.batch": 5,
                    "Workload.kueue.x-k8s.io": 10,
                    "LocalQueue.kueue.x-k8s.io": 5,
                    "ClusterQueue.kueue.x-k8s.io": 5,
                    "ResourceFlavor.kueue.x-k8s.io": 1,
                }
            },
            "clientConnection": {"qps": 300, "burst": 500},
            "integrations": {"frameworks": ["batch/job"]},
        }
        # Self-signed serving certificate for the (never called) webhook server and the
        # metrics server; without internal cert management Kueue reads the metrics one from
        # the fixed path /etc/kueue/metrics/certs (written there only when absent).
        certs = self.dir / "certs"
        certs.mkdir(exist_ok=True)
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                str(certs / "tls.key"),
                "-out",
                str(certs / "tls.crt"),
            ],
            check=True,
            capture_output=True,
        )
        metrics_certs = Path("/etc/kueue/metrics/certs")
        if not (metrics_certs / "tls.crt").exists():
            metrics_certs.mkdir(parents=True, exist_ok=True)
            for name in ("tls.crt", "tls.key"):
                (metrics_certs / name).write_bytes((certs / name).read_bytes())
        if self.wait_for_pods_ready:
            config["waitForPodsReady"] = {"timeout": "5m", "blockAdmission": True}
        (self.dir / "config.json").write_text(json.dumps(config))
        self.procs.start(
            "kueue",
            [
                str(bin_dir / "kueue"),
                f"--config={self.dir / 'config.json'}",
                "--feature-gates=VisibilityOnDemand=false",
                "--zap-log-level=error",
            ],
            env={"KUBECONFIG": self.api.kubeconfig},
        )
        objects: list[dict[str, Any]] = [
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "ResourceFlavor",
                "metadata": {"name": "h100"},
                "spec": {},
            }
        ]
        for queue, gpus in self.quotas():
            objects.append(
                {
                    "apiVersion": "kueue.x-k8s.io/v1beta2",
                    "kind": "ClusterQueue",
                    "metadata": {"name": f"{self.name}-{queue}"},
                    "spec": {
                        "cohortName": f"{self.name}-bench",
                        "namespaceSelector": {},
                        "resourceGroups": [
                            {
                                "coveredResources": ["cpu", "memory", GPU],
                                "flavors": [
                                    {
                                        "name": "h100",
                                        "resources": [
                                            {"name": "cpu", "nominalQuota": gpus * 4},
                                            {"name": "memory", "nominalQuota": f"{gpus * 16}Gi"},
                                            {"name": GPU, "nominalQuota": gpus},
                                        ],
                                    }
                                ],
                            }
                        ],
                    },
                }
            )
            objects.append(
                {
                    "apiVersion": "kueue.x-k8s.io/v1beta2",
                    "kind": "LocalQueue",
                    "metadata": {"name": queue, "namespace": self.namespace},
                    "spec": {"clusterQueue": f"{self.name}-{queue}"},
                }
            )
        wait_for(
            "Kueue's webhook-free start (CRDs served)",
            lambda: self._apply(objects),
            120,
            self.procs,
        )

        def active() -> bool:
            self.procs.check()
            for queue, _ in self.quotas():
                cq = self.api.call(
                    "GET", f"/apis/kueue.x-k8s.io/v1beta2/clusterqueues/{self.name}-{queue}"
                )
                conds = {
                    c["type"]: c["status"] for c in (cq.get("status") or {}).get("conditions") or []
                }
                if conds.get("Active") != "True":
                    return False
            return True

        wait_for("Kueue ClusterQueues Active", active, 120, self.procs)

    def _apply(self, objects: list[dict[str, Any]]) -> bool:
        self.api.apply(objects)
        return True

    def submit(self, job: JobReq) -> None:
        self.api.call(
            "POST",
            f"/apis/batch/v1/namespaces/{self.namespace}/jobs",
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": job.name,
                    "labels": {"kueue.x-k8s.io/queue-name": job.queue},
                },
                "spec": {
                    "suspend": True,
                    "parallelism": job.pods,
                    "completions": job.pods,
                    "completionMode": "Indexed",
                    "backoffLimit": 0,
                    "template": {
                        "metadata": {"annotations": pod_annotations(job, self.runtime_s)},
                        "spec": {
                            "restartPolicy": "Never",
                            "terminationGracePeriodSeconds": 0,
                            "containers": [
                                {
                                    "name": "main",
                                    "image": "busybox:1.36",
                                    "command": ["sleep", "3600"],
                                    "resources": {
                                        "requests": {
                                            "cpu": "1",
                                            "memory": "1Gi",
                                            GPU: str(job.gpus),
                                        },
                                        "limits": {GPU: str(job.gpus)},
                                    },
                                }
                            ],
                        },
                    },
                },
            },
        )


class KueueWaitForPodsReady(Kueue):
    name = "kueue-wfpr"
    wait_for_pods_ready = True


class PhalanxBaseline(Phalanx):
    """phalanx imported from --baseline-src (say, a checkout of the previous commit)."""

    name = "phalanx-base"
    source = BASELINE_SRC


SYSTEMS: dict[str, type[System]] = {
    "phalanx": Phalanx,
    "kueue": Kueue,
    "kueue-wfpr": KueueWaitForPodsReady,
    "phalanx-base": PhalanxBaseline,
}


# ---------------------------------------------------------------------------------------------
# One run and its figures
# ---------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 2)


#: The API server's audit policy for the benchmark: successful or not, every ``pods/binding``
#: request, at the Metadata level (no bodies), one line each when answered. Its two
#: timestamps (received, answered) say when each bind was asked for, whoever asked.
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
    verbs: [create]
    resources:
      - group: ""
        resources: [pods/binding]
  - level: None
"""


def bind_requests(audit_log: Path, namespace: str) -> dict[str, tuple[float, float]]:
    """Per pod of ``namespace``: (received, answered) wall-clock times of the first
    successful ``pods/binding`` request the API server's audit log records for it."""
    out: dict[str, tuple[float, float]] = {}
    try:
        lines = audit_log.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            event = json.loads(line)
            ref = event["objectRef"]
            if ref.get("namespace") != namespace or ref.get("subresource") != "binding":
                continue
            if not 200 <= int((event.get("responseStatus") or {}).get("code", 0)) < 300:
                continue
            received = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
            answered = datetime.fromisoformat(event["stageTimestamp"]).timestamp()
        except (ValueError, KeyError, TypeError):
            continue
        if ref["name"] not in out or received < out[ref["name"]][0]:
            out[ref["name"]] = (received, answered)
    return out


def stranded_gpu_s(size: int, pods: list[PodRecord], now: float) -> tuple[float, float]:
    """GPU-seconds that bound pods of one job of ``size`` pods held while a sibling had no
    node and no bind on its way: from the API server's view only, the same for every system.

    At each instant a pod *holds* its GPUs from the earliest sign it is bound (the watch shows
    its node, or the API server answered its bind) until it ends or is marked for deletion
    (a gang being torn down waits for no sibling). The job has a *hole* while
    - one of its pods exists, is not marked for deletion, and the API server has not yet
      received a bind for it: unschedulable, waiting in a scheduler's queue, or waiting for
      its system to bind it; or
    - fewer of its pods exist than it needs: the job has ``k·size + r`` pods so far, r > 0
      (pods are made in generations of ``size``: a job whose pods were all evicted gets a
      new generation), so ``size − r`` are missing.
    A pod whose bind the API server has received is not a hole: that bind is in flight.
    A pod exists from the first sign of it: the watch showing it, or the API server receiving
    or answering its bind (a bind needs its pod; the watch can show a creation after the
    audit log shows the pod's bind).
    Stranded GPU·s integrates the GPUs held over the time the job has a hole. Returns (that,
    the part while a hole carried PodScheduled=False, reason Unschedulable)."""
    held: list[tuple[float, float, int]] = []  # (from, until, gpus)
    waiting: list[tuple[float, float, bool]] = []  # (from, until, unschedulable?): a hole
    created = sorted(
        min(t for t in (p.seen_at, p.bind_received_at, p.bind_answered_at) if t is not None)
        for p in pods
    )
    edges = {now, *created}
    for p in pods:
        signs = [t for t in (p.bound_at, p.bind_answered_at) if t is not None]
        bound = min(signs) if signs else None
        gone = min(t for t in (p.ended_at, p.terminating_at, now) if t is not None)
        if bound is not None and bound < gone:
            held.append((bound, gone, p.gpus))
        asked = p.bind_received_at if p.bind_received_at is not None else bound
        until = min(gone, asked) if asked is not None else gone
        if p.seen_at < until:
            waiting.append((p.seen_at, until, False))
            if p.unschedulable_at is not None and p.unschedulable_at < until:
                waiting.append((p.unschedulable_at, until, True))
    if not held:
        return 0.0, 0.0
    edges |= {t for a, b, _ in held for t in (a, b)} | {t for a, b, _ in waiting for t in (a, b)}
    total = by_unschedulable = 0.0
    for a, b in itertools.pairwise(sorted(edges)):
        gpus = sum(g for lo, hi, g in held if lo <= a < hi)
        if not gpus:
            continue
        made = sum(1 for t in created if t <= a)
        missing = (size - made % size) % size
        holes = [unsched for lo, hi, unsched in waiting if lo <= a < hi]
        if missing or holes:
            total += gpus * (b - a)
            if any(holes):
                by_unschedulable += gpus * (b - a)
    return total, by_unschedulable


def figures(
    jobs: list[JobReq],
    submitted: dict[str, float],
    pods: list[PodRecord],
    started: float,
    nodes: int,
    samples: list[tuple[float, int]],
) -> dict[str, Any]:
    by_job: dict[str, list[PodRecord]] = {}
    for p in pods:
        by_job.setdefault(p.job, []).append(p)
    latencies: dict[str, list[float]] = {}
    unfinished = 0
    partial_gpu_s = 0.0
    # The same until the gang's last pod is Running (the node's side: KWOK plays each pod's
    # start separately), for comparison; not what partial admission wastes.
    partial_running_gpu_s = 0.0
    partial_gangs = 0
    spreads: list[float] = []  # per gang: first pod bound -> last pod bound
    stranded = stranded_unschedulable = 0.0
    stranded_gangs = 0
    # Per gang whose every pod's bind is in the audit log: first -> last bind request received
    # by the API server, and first bind answered -> last received (> 0: a bind committed
    # before a sibling's had arrived).
    received_spreads: list[float] = []
    answered_before_received: list[float] = []
    now = time.monotonic()
    stages: dict[str, list[float]] = {
        "to_created": [],
        "created_to_bound": [],
        "bound_to_running": [],
    }
    ends: list[float] = []
    binds: list[float] = []
    for job in jobs:
        mine = by_job.get(job.name, [])
        running = [p.running_at for p in mine if p.running_at is not None]
        bound = [p.bound_at for p in mine if p.bound_at is not None]
        binds.extend(bound)
        if job.name in submitted and len(running) >= job.pods:
            latencies.setdefault(size_class(job), []).append(max(running) - submitted[job.name])
            # Where the time goes: submitted -> last pod created -> last pod bound -> all Running.
            created = max(p.seen_at for p in mine)
            stages["to_created"].append(created - submitted[job.name])
            if len(bound) >= job.pods:
                stages["created_to_bound"].append(max(0.0, max(bound) - created))
                stages["bound_to_running"].append(max(0.0, max(running) - max(bound)))
        done = [p.ended_at for p in mine if p.ended_at is not None]
        if len(done) >= job.pods:
            ends.append(max(done))
        else:
            unfinished += 1
        if job.pods > 1:
            gang_stranded, gang_unschedulable = stranded_gpu_s(job.pods, mine, now)
            stranded += gang_stranded
            stranded_unschedulable += gang_unschedulable
            stranded_gangs += gang_stranded > 0
            # Per generation of pods (a preempted or evicted gang's pods are made again).
            made = sorted(mine, key=lambda p: p.seen_at)
            for start in range(0, len(made) - job.pods + 1, job.pods):
                generation = made[start : start + job.pods]
                asked = [p.bind_received_at for p in generation if p.bind_received_at]
                answered = [p.bind_answered_at for p in generation if p.bind_answered_at]
                if len(asked) == len(answered) == job.pods:
                    received_spreads.append(max(asked) - min(asked))
                    answered_before_received.append(max(asked) - min(answered))
        if job.pods > 1 and bound:
            # GPUs held by bound pods while the gang is not completely bound (the last pod's
            # bind, or the pod's end when the gang never completed).
            complete_at = max(bound) if len(bound) >= job.pods else None
            waste = 0.0
            for p in mine:
                if p.bound_at is None:
                    continue
                until = complete_at if complete_at is not None else (p.ended_at or time.monotonic())
                waste += p.gpus * max(0.0, until - p.bound_at)
            partial_gpu_s += waste
            running_at = [p.running_at for p in mine if p.running_at is not None]
            all_running = max(running_at) if len(running_at) >= job.pods else None
            for p in mine:
                if p.bound_at is not None:
                    until = all_running or p.ended_at or time.monotonic()
                    partial_running_gpu_s += p.gpus * max(0.0, until - p.bound_at)
            spread = (complete_at if complete_at is not None else time.monotonic()) - min(bound)
            spreads.append(spread)
            if spread > 1.0:
                partial_gangs += 1
    all_lat = [v for vs in latencies.values() for v in vs]
    # Per pod, KWOK's two stages: bound -> IP assigned (Pending) -> Running. Each is a status
    # PATCH from KWOK's queue of stage jobs, served by a few workers in arrival order.
    pod_stages: dict[str, list[float]] = {"bound_to_ip": [], "ip_to_running": []}
    for p in pods:
        if p.bound_at is not None and p.started_at is not None:
            pod_stages["bound_to_ip"].append(max(0.0, p.started_at - p.bound_at))
            if p.running_at is not None:
                pod_stages["ip_to_running"].append(max(0.0, p.running_at - p.started_at))
    # KWOK's backlog: pods bound and not Running yet, at each bind/Running instant.
    marks = sorted(
        [(p.bound_at, 1) for p in pods if p.bound_at is not None]
        + [
            (p.running_at or p.ended_at, -1)
            for p in pods
            if p.bound_at is not None and (p.running_at or p.ended_at) is not None
        ]
    )
    backlog = peak_backlog = 0
    for _, step in marks:
        backlog += step
        peak_backlog = max(peak_backlog, backlog)
    ordered_binds = sorted(binds)
    peak_binds = 0  # most pods bound in any 5-second window
    lo = 0
    for hi, t in enumerate(ordered_binds):
        while t - ordered_binds[lo] > 5.0:
            lo += 1
        peak_binds = max(peak_binds, hi - lo + 1)
    total_pods = sum(j.pods for j in jobs)
    gpus = nodes * 8
    alloc = [(round(t - started, 1), n) for t, n in samples]
    window = [n for t, n in alloc if ends and t <= max(ends) - started]
    return {
        "jobs": len(jobs),
        "pods": total_pods,
        "unfinished_jobs": unfinished,
        "wall_s": round(max(ends) - started, 1) if ends and not unfinished else None,
        "last_end_s": round(max(ends) - started, 1) if ends else None,
        "admission_latency_s": {
            cls: {
                "n": len(v),
                "p50": percentile(v, 0.5),
                "p90": percentile(v, 0.9),
                "p99": percentile(v, 0.99),
            }
            for cls, v in sorted(latencies.items())
        }
        | {
            "all": {
                "n": len(all_lat),
                "p50": percentile(all_lat, 0.5),
                "p90": percentile(all_lat, 0.9),
                "p99": percentile(all_lat, 0.99),
            }
        },
        "pods_bound_per_s": round(len(binds) / (max(binds) - started), 1) if binds else None,
        "peak_pods_bound_per_s_5s": round(peak_binds / 5.0, 1),
        "stranded_gpu_s": round(stranded, 2),
        "stranded_while_unschedulable_gpu_s": round(stranded_unschedulable, 2),
        "gangs_stranded": stranded_gangs,
        "gang_bind_requests_received_spread_s": {
            "n": len(received_spreads),
            "p50": percentile(received_spreads, 0.5),
            "max": percentile(received_spreads, 1.0),
        },
        # > 0 for a gang: one of its binds was answered before a sibling's was received.
        "gang_first_answered_to_last_received_s": {
            "p50": percentile(answered_before_received, 0.5),
            "max": percentile(answered_before_received, 1.0),
            "gangs_over_0": sum(1 for v in answered_before_received if v > 0),
        },
        "partial_gang_gpu_s": round(partial_gpu_s, 1),
        "gang_bound_until_all_running_gpu_s": round(partial_running_gpu_s, 1),
        "gangs_partially_bound_over_1s": partial_gangs,
        "latency_stages_s": {
            k: {"p50": percentile(v, 0.5), "p90": percentile(v, 0.9)} for k, v in stages.items()
        },
        "gang_bind_spread_s": {"p50": percentile(spreads, 0.5), "max": percentile(spreads, 1.0)},
        "pod_kwok_stages_s": {
            k: {"p50": percentile(v, 0.5), "p90": percentile(v, 0.9), "max": percentile(v, 1.0)}
            for k, v in pod_stages.items()
        },
        "peak_pods_bound_not_running": peak_backlog,
        "mean_gpu_allocation": round(statistics.fmean(window) / gpus, 3) if window else None,
        "gpu_allocation_over_time": alloc,
    }


def phalanx_stages(
    jobs: list[JobReq],
    submitted: dict[str, float],
    pods: list[PodRecord],
    times: dict[str, list[float | None]],
    wall_offset: float,
) -> dict[str, dict[str, float | None]]:
    """Where a phalanx job's admission latency goes, with phalanx's own timestamps: the API
    stores it (submitted -> created_at), the loop admits it (-> admitted_at), the backend's
    API workers create its pods (-> last pod seen by the watch), KWOK starts them."""
    by_job: dict[str, list[PodRecord]] = {}
    for p in pods:
        by_job.setdefault(p.job, []).append(p)
    stages: dict[str, list[float]] = {
        "api_store": [],
        "queue_and_admit": [],
        "admit_to_pods_created": [],
    }
    for job in jobs:
        t = times.get(job.name)
        mine = by_job.get(job.name, [])
        if not t or job.name not in submitted or t[0] is None or t[1] is None:
            continue
        created, admitted = t[0] - wall_offset, t[1] - wall_offset
        stages["api_store"].append(created - submitted[job.name])
        stages["queue_and_admit"].append(admitted - created)
        if len(mine) >= job.pods:
            stages["admit_to_pods_created"].append(max(p.seen_at for p in mine) - admitted)
    return {
        k: {"p50": percentile(v, 0.5), "p90": percentile(v, 0.9), "max": percentile(v, 1.0)}
        for k, v in stages.items()
    }


def run_system(
    system: System,
    api: Api,
    watch: PodWatch,
    jobs: list[JobReq],
    nodes: int,
    runtime_s: float,
    timeout_s: float,
    cluster_pids: dict[str, int],
    audit_log: Path,
) -> dict[str, Any]:
    log(f"{system.name}: starting")
    load_start = Path("/proc/loadavg").read_text().split()[:3]
    system.setup()
    system.procs.mark()
    writes0 = request_counts(api, WRITE_VERBS)
    reads0 = request_counts(api, READ_VERBS)
    base0 = {name: cpu_seconds(pid) for name, pid in cluster_pids.items()}
    base_peak = {name: 0.0 for name in cluster_pids}
    submitted: dict[str, float] = {}
    errors: list[str] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
    started = time.monotonic()
    wall_offset = time.time() - started  # wall clock = monotonic + wall_offset

    def submit(job: JobReq) -> None:
        delay = started + job.at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = time.monotonic()
        try:
            system.submit(job)
            submitted[job.name] = t
        except Exception as exc:  # reported, the run goes on
            errors.append(f"{job.name}: {exc}")

    futures = [pool.submit(submit, job) for job in jobs]
    samples: list[tuple[float, int]] = []
    total = sum(j.pods for j in jobs)
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1.0)
        system.procs.check()
        system.procs.sample()
        for name, pid in cluster_pids.items():
            base_peak[name] = max(base_peak[name], rss_mb(pid))
        pods = watch.snapshot(system.namespace)
        held = sum(p.gpus for p in pods if p.bound_at is not None and p.ended_at is None)
        samples.append((time.monotonic(), held))
        # Succeeded only: a preempted or evicted gang's pods end too, and are made again.
        ended = sum(1 for p in pods if p.ended_at is not None and p.succeeded)
        if int(time.monotonic() - started) % 10 == 0:
            log(
                f"{system.name}: t={time.monotonic() - started:.0f}s submitted={len(submitted)}/{len(jobs)} pods ended={ended}/{total} GPUs held={held}"
            )
        if all(f.done() for f in futures) and ended >= total:
            break
    pool.shutdown(wait=False, cancel_futures=True)
    writes1 = request_counts(api, WRITE_VERBS)
    reads1 = request_counts(api, READ_VERBS)
    usage = system.procs.usage()
    base = {
        name: {
            "cpu_s": round(cpu_seconds(pid) - base0[name], 2),
            "peak_rss_mb": round(base_peak[name], 1),
        }
        for name, pid in cluster_pids.items()
    }
    pods = watch.snapshot(system.namespace)
    binds = bind_requests(audit_log, system.namespace)
    # The audit log's wall-clock times on the watch's monotonic clock.
    for p in pods:
        if p.name in binds:
            received, answered = binds[p.name]
            p.bind_received_at = received - wall_offset
            p.bind_answered_at = answered - wall_offset
    result = figures(jobs, submitted, pods, started, nodes, samples)
    result["bind_requests_audited"] = len(binds)
    # Every pod's times (seconds after the run's start), to recompute any measure later.
    result["pod_records"] = [
        {
            k: (round(v - started, 4) if isinstance(v, float) else v)
            for k, v in asdict(p).items()
            if k != "namespace"
        }
        for p in pods
    ]
    result |= {
        "system": system.name,
        "loadavg_start_end": [load_start, Path("/proc/loadavg").read_text().split()[:3]],
        "submit_errors": errors[:20],
        "submit_error_count": len(errors),
        "processes": usage,
        "control_plane_cpu_s": round(sum(u["cpu_s"] for u in usage.values()), 1),
        "control_plane_peak_rss_mb": round(sum(u["peak_rss_mb"] for u in usage.values()), 1),
        "apiserver_etcd": base,
        # Every write the API server served during the run (all clients: the system, KWOK's
        # status updates, the benchmark's submissions), by verb, resource and status code.
        "api_writes": {
            k: int(v - writes0.get(k, 0.0))
            for k, v in sorted(writes1.items())
            if v - writes0.get(k, 0.0) > 0
        }
        if writes0 and writes1
        else None,
        # Reads likewise (GET, LIST, WATCH: a watch counts once, when it is opened).
        "api_reads": {
            k: int(v - reads0.get(k, 0.0))
            for k, v in sorted(reads1.items())
            if v - reads0.get(k, 0.0) > 0
        }
        if reads0 and reads1
        else None,
    }
    try:
        result["profile"] = system.profile()
    except Exception as exc:  # the profile is extra; its absence must not lose the run
        result["profile"] = {"error": str(exc)}
    times = result["profile"].pop("job_times", None)
    if times:
        result["phalanx_stages_s"] = phalanx_stages(
            jobs, submitted, watch.snapshot(system.namespace), times, wall_offset
        )
    system.teardown()
    # The figures are taken: a starved API server refusing the cleanup (504 on a DELETE of
    # hundreds of pods) is retried, and never loses them.
    for attempt in range(3):
        try:
            cleanup(api, watch, system.namespace)
            break
        except (OSError, RuntimeError) as exc:
            log(f"{system.name}: cleanup failed ({exc}); try {attempt + 2} of 3")
            result["cleanup_error"] = str(exc)
    log(f"{system.name}: done")
    return result


def request_counts(api: Api, verbs: tuple[str, ...]) -> dict[str, float]:
    """``api.writes(verbs)``, or {} when the API server does not answer in time: a starved
    API server (500 nodes on two busy cores) must not lose the run's other figures."""
    for _ in range(3):
        try:
            return api.writes(verbs)
        except (OSError, TimeoutError) as exc:  # urllib's URLError and timeouts are OSErrors
            log(f"reading the API server's request counts failed: {exc}")
    return {}


def kwok_patches(log_path: Path, namespace: str) -> dict[str, Any]:
    """KWOK's own view of one system's pods, from its log (one line per status PATCH it
    sends): how many PATCHes, over how long, how many per second, and per pod the wait
    between its first PATCH (IP assigned) and its second (Running), a stage with no delay,
    so all of it is KWOK's queue."""
    times: dict[str, list[float]] = {}
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    prefix = namespace + "/"
    for line in lines:
        if '"Patch pod"' not in line or prefix not in line:
            continue
        try:
            entry = json.loads(line)
            when = datetime.fromisoformat(entry["time"][:26]).timestamp()
        except (ValueError, KeyError):
            continue
        if str(entry.get("pod", "")).startswith(prefix):
            times.setdefault(entry["pod"], []).append(when)
    every = sorted(t for ts in times.values() for t in ts)
    if len(every) < 2:
        return {}
    span = every[-1] - every[0]
    queued = [ts[1] - ts[0] for ts in times.values() if len(ts) >= 2]
    return {
        "pod_status_patches": len(every),
        "span_s": round(span, 1),
        "patches_per_s": round(len(every) / span, 1) if span else None,
        "ip_to_running_patch_s": {
            "p50": percentile(queued, 0.5),
            "p90": percentile(queued, 0.9),
            "max": percentile(queued, 1.0),
        },
    }


def cleanup(api: Api, watch: PodWatch, namespace: str) -> None:
    """Delete what the system left in its namespace and wait until no benchmark pod lives."""
    for path in (
        f"/apis/batch/v1/namespaces/{namespace}/jobs?propagationPolicy=Background",
        f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{namespace}/workloads",
        f"/api/v1/namespaces/{namespace}/pods?gracePeriodSeconds=0",
    ):
        try:
            api.call("DELETE", path)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
    # The pods of batch Jobs keep the Job controller's finalizer when kube-controller-manager
    # was stopped before they ended (a run that timed out): remove it, or they never go.
    for pod in api.call("GET", f"/api/v1/namespaces/{namespace}/pods").get("items") or []:
        meta = pod.get("metadata") or {}
        if meta.get("finalizers"):
            try:
                api.call(
                    "PATCH",
                    f"/api/v1/namespaces/{namespace}/pods/{meta['name']}",
                    {"metadata": {"finalizers": None}},
                )
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
    wait_for("benchmark pods gone", lambda: watch.live() == 0, 300)


# ---------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------


def table(results: list[dict[str, Any]]) -> str:
    classes = sorted({c for r in results for c in r["admission_latency_s"] if c != "all"})
    head = ["system", "wall s", "unfinished", "p50/p90/p99 all s"]
    head += [f"p50/p90/p99 {c} s" for c in classes]
    head += [
        "pods bound/s (peak 5 s)",
        "stranded GPU·s (sibling Unschedulable)",
        "bind-skew GPU·s",
        "bound → gang all Running GPU·s",
        "gang bind spread p50/max s (requests received)",
        "bound → Running p50/p90 s",
        "peak bound, not Running",
        "mean GPU alloc",
        "CP CPU s",
        "CP peak MB",
        "apiserver+etcd+kwok CPU s",
    ]
    rows = []
    for r in results:
        lat = r["admission_latency_s"]

        def trio(cls: str, lat: dict[str, Any] = lat) -> str:
            v = lat.get(cls)
            return "-" if not v or v["p50"] is None else f"{v['p50']}/{v['p90']}/{v['p99']}"

        rows.append(
            [
                r["system"],
                str(r["wall_s"] if r["wall_s"] is not None else f">{r['last_end_s']}"),
                str(r["unfinished_jobs"]),
                trio("all"),
                *[trio(c) for c in classes],
                f"{r['pods_bound_per_s']} ({r['peak_pods_bound_per_s_5s']})",
                f"{r['stranded_gpu_s']} ({r['stranded_while_unschedulable_gpu_s']})",
                str(r["partial_gang_gpu_s"]),
                str(r["gang_bound_until_all_running_gpu_s"]),
                "{}/{} ({}/{})".format(
                    r["gang_bind_spread_s"]["p50"],
                    r["gang_bind_spread_s"]["max"],
                    r["gang_bind_requests_received_spread_s"]["p50"],
                    r["gang_bind_requests_received_spread_s"]["max"],
                ),
                "{p50}/{p90}".format(**r["latency_stages_s"]["bound_to_running"]),
                str(r.get("peak_pods_bound_not_running", "-")),
                str(r["mean_gpu_allocation"]),
                str(r["control_plane_cpu_s"]),
                str(r["control_plane_peak_rss_mb"]),
                str(round(sum(v["cpu_s"] for v in r["apiserver_etcd"].values()), 1)),
            ]
        )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--duration", type=float, default=60, help="seconds of arrivals")
    parser.add_argument("--runtime", type=float, default=20, help="seconds every pod runs")
    parser.add_argument("--load", type=float, default=0.9, help="offered GPU load (1 = all GPUs)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS))
    parser.add_argument(
        "--timeout",
        type=float,
        default=0,
        help="per system (default: duration + 10 x runtime + 60)",
    )
    parser.add_argument(
        "--kwok-workers",
        type=int,
        default=0,
        help="pod stages KWOK plays at once (0: KWOK's default, 4); KWOK stands in for every "
        "node's kubelet, so a few workers make one queue for the whole cluster",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the raw figures here")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    parser.add_argument(
        "--phalanx-src",
        default="",
        help="run `phalanx up` from this source directory (the one holding phalanx/), e.g. a "
        "clean checkout, instead of the installed package",
    )
    parser.add_argument(
        "--py-spy",
        default="",
        help="sample `phalanx up` with this py-spy binary (collapsed stacks in the run "
        "directory; use with --keep)",
    )
    parser.add_argument(
        "--baseline-src",
        default="",
        help="the source directory (holding phalanx/) the `phalanx-base` system runs, to "
        "compare two versions of phalanx in one run (add phalanx-base to --systems)",
    )
    args = parser.parse_args()
    PHALANX_SRC["path"] = args.phalanx_src
    BASELINE_SRC["path"] = args.baseline_src
    if "phalanx-base" in args.systems.split(",") and not args.baseline_src:
        sys.exit(
            "--systems phalanx-base needs --baseline-src DIR (a source directory holding phalanx/)"
        )
    PY_SPY["path"] = args.py_spy
    names = [s for s in args.systems.split(",") if s]
    unknown = [s for s in names if s not in SYSTEMS]
    if unknown:
        sys.exit(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    if any(s.startswith("kueue") for s in names):
        log("building the peers (cached after the first time): scripts/peers/peers build")
        subprocess.run([str(PEERS), "build"], check=True)
    jobs = workload(args.nodes, args.duration, args.runtime, args.load, args.seed)
    timeout = args.timeout or args.duration + 10 * args.runtime + 60
    run_dir = Path(tempfile.mkdtemp(prefix="phalanx-k8s-peers-"))
    cluster_dir = run_dir / "cluster"
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    log(f"cluster: {args.nodes} KWOK nodes x 8 GPUs in {cluster_dir}")
    t0 = time.monotonic()
    # Nodes come in batches: testcluster gives each batch 120 s to become Ready, which a loaded
    # machine cannot do for 500 nodes at once.
    first = min(args.nodes, NODE_BATCH)
    cluster_env = dict(os.environ)
    run_dir.joinpath("audit-policy.yaml").write_text(AUDIT_POLICY)
    cluster_env["TESTCLUSTER_AUDIT_POLICY"] = str(run_dir / "audit-policy.yaml")
    if args.kwok_workers:
        cluster_env["TESTCLUSTER_KWOK_POD_WORKERS"] = str(args.kwok_workers)
    out = subprocess.run(
        [str(TESTCLUSTER), "up", "--nodes", str(first), "--dir", str(cluster_dir), "--daemon"],
        capture_output=True,
        text=True,
        check=False,
        env=cluster_env,
    )
    if out.returncode:
        sys.exit(f"testcluster up failed: {out.stderr[-2000:]}")
    for start in range(first, args.nodes, NODE_BATCH):
        count = min(NODE_BATCH, args.nodes - start)
        out = subprocess.run(
            [
                str(TESTCLUSTER),
                "nodes",
                "--dir",
                str(cluster_dir),
                "--nodes",
                str(count),
                "--start-index",
                str(start),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode:
            subprocess.run(
                [str(TESTCLUSTER), "down", "--dir", str(cluster_dir)],
                capture_output=True,
                check=False,
            )
            sys.exit(f"testcluster nodes (from {start}) failed: {out.stderr[-2000:]}")
    cluster_up_s = round(time.monotonic() - t0, 1)
    results: list[dict[str, Any]] = []
    watch: PodWatch | None = None
    try:
        api = Api(cluster_dir)
        cluster_pids = {
            name: int((cluster_dir / "pids" / f"{name}.pid").read_text())
            for name in ("kube-apiserver", "etcd", "kwok")
        }
        watch = PodWatch(api)
        for name in names:
            system = SYSTEMS[name](api, run_dir, args.nodes, args.runtime)
            try:
                results.append(
                    run_system(
                        system,
                        api,
                        watch,
                        jobs,
                        args.nodes,
                        args.runtime,
                        timeout,
                        cluster_pids,
                        cluster_dir / "logs" / "audit.log",
                    )
                )
            except KeyboardInterrupt:
                system.procs.stop()
                raise
            except Exception as exc:  # one system failing must not hide the others
                log(f"{name} failed: {exc}")
                system.procs.stop()
                results.append({"system": name, "error": str(exc)[-3000:]})
                cleanup(api, watch, system.namespace)
    finally:
        if watch is not None:
            watch.stop()
        for result in results:
            if "error" not in result:
                result["kwok"] = kwok_patches(
                    cluster_dir / "logs" / "kwok.log", f"bench-{result['system']}"
                )
        if args.keep:  # `testcluster down` deletes the cluster's directory, logs included
            subprocess.run(
                ["cp", "-r", str(cluster_dir / "logs"), str(run_dir / "cluster-logs")], check=False
            )
        subprocess.run(
            [str(TESTCLUSTER), "down", "--dir", str(cluster_dir)], capture_output=True, check=False
        )
    load_avg = Path("/proc/loadavg").read_text().split()[:3]
    report = {
        "nodes": args.nodes,
        "gpus": args.nodes * 8,
        "duration_s": args.duration,
        "runtime_s": args.runtime,
        "offered_load": args.load,
        "seed": args.seed,
        "jobs": len(jobs),
        "pods": sum(j.pods for j in jobs),
        "shapes": [{"pods": p, "gpus_per_pod": g, "share": s} for p, g, s in SHAPES],
        "queues": [{"name": n, "quota_share": q, "load_share": w} for n, q, w in QUEUES],
        "cluster_up_s": cluster_up_s,
        "kwok_pod_workers": args.kwok_workers or 4,
        "loadavg_before": load_before,
        "loadavg_after": load_avg,
        "results": results,
    }
    ok = [r for r in results if "error" not in r]
    print(
        f"{args.nodes} nodes x 8 GPUs; {len(jobs)} jobs / {report['pods']} pods over {args.duration:g}s, pods run {args.runtime:g}s, offered load {args.load:g}; loadavg {' '.join(load_avg)}"
    )
    print(table(ok))
    for r in results:
        if "error" in r:
            print(f"{r['system']}: FAILED: {r['error'][-500:]}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"raw figures: {args.json}")
    if args.keep:
        print(f"run directory kept: {run_dir}")
    else:
        subprocess.run(["rm", "-rf", str(run_dir)], check=False)


if __name__ == "__main__":
    main()
