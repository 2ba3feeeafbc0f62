"""Runs one fault scenario: a production control plane over the sim backend in virtual time,
or over the local backend with real processes in real time, the fault injected, then the
doctor over everything; scores the named causes.

A scenario is a folder: ``setup.yaml`` (the manifests applied first: flavors, queues, jobs),
``scenario.yaml`` with ``nodes`` (the cluster), ``workloads`` (what each job's pods
do: ``runtime_s``, ``fail_attempts``, ``oom``; a key ending in ``*`` is a prefix, for jobs
named by the control plane such as a Service's replicas), ``fault`` (steps run in order) and
``expect`` (the root causes: ``code`` and ``object``). A setup with a Service runs the
Service controller (readiness probed over HTTP: a simulated replica never answers, so it is
never ready); one with a PipelineRun runs the PipelineRun reconciler.

Steps: ``run_s: N`` (move virtual time N seconds on, ticking every ``tick_s``, default 1),
``apply: FILE`` (more manifests), ``fail_node: NAME`` (its pods lost, not ready until
``repair_s``), ``report: {job, step_s_ago, checkpoint_s_ago}`` (write the job's status file
as phalanx.train does), ``cancel: JOB``, ``serve: {service, answers: [STATUS, ...]}`` (the
Service's replicas, in name order, each get a real HTTP server on their port: 200 on the
readiness path, the i-th status on any other; waits until the controller sees them ready) and
``requests: {service, count}`` (``count`` requests through a real router in front of the
controller's routes; the router's counts reach the controller as a router's load reports do).

On the local backend (``substrate="local"``) every pod is a real process, ``workload.py``,
acting out its job's ``workloads`` entry (an OOM is a real one: the pod's supervisor kills it
over its memory limit; a pipeline step is the real step runner calling a task that does the
same; a replica's server is the pod itself). ``run_s`` is that many real seconds, or a step's
``local_s`` when the scenario gives one (a window the simulation can afford and real time
need not: a crash loop is over in seconds); ``fail_node`` is the local backend's injected
node fault. A scenario with ``local: {skip: WHY}`` runs on the sim backend only, and says
why.

Score (issue 13): 0 when an expected root-cause object is missing from the findings, else the
precision of the findings ((code, object) pairs expected / pairs named).
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import ThreadingHTTPServer
from pathlib import Path

import yaml
from workload import replica_server

from phalanx.backends.base import OOM_KILLED, PodEvent, PodEventKind
from phalanx.backends.local.backend import LocalBackend, clear_node_fault, inject_node_fault
from phalanx.backends.sim import SimBackend, SimWorkload
from phalanx.backends.sim.backend import VirtualClock
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.controllers.progress import checkpoint_dir
from phalanx.model.objects import Node, Taint
from phalanx.ops.doctor import diagnose
from phalanx.ops.findings import Finding
from phalanx.ops.gpu_usage import UsageSources
from phalanx.ops.observation import observe
from phalanx.pipelines.artifacts import ENV_ARTIFACTS
from phalanx.pipelines.reconciler import PipelineRunReconciler
from phalanx.serving.controller import ServiceController
from phalanx.serving.router import RouterThread
from phalanx.store import Store
from phalanx.testing import make_node
from phalanx.train.status import VERSION, status_path, write_status

START_S = 1_700_000_000.0
ROOT = Path(__file__).parent
WORKLOAD = ROOT / "workload.py"
SUBSTRATES = ("sim", "local")


class ScenarioBackend(SimBackend):
    """The sim backend, with OOM-kills: failures of the jobs in ``oom`` report ``OOMKilled``
    with exit code 137, as Kubernetes and the local backend do."""

    def __init__(self, nodes: list[Node], clock: VirtualClock) -> None:
        super().__init__(nodes, clock)
        self.oom: set[str] = set()
        self.pod_jobs: dict[str, str] = {}
        self.told: set[str] = set()
        #: Workloads of jobs named by the control plane, by name prefix.
        self.prefixed: dict[str, SimWorkload] = {}

    def set_workload(self, job: str, workload: SimWorkload) -> None:
        self.told.add(job)
        super().set_workload(job, workload)

    def apply(self, plane: ControlPlane, manifests: list[dict[str, object]]) -> None:
        """Apply ``manifests``; jobs the scenario says nothing about run until it ends."""
        for m in manifests:
            name = str(m["metadata"]["name"])  # type: ignore[index]
            if m.get("kind") == "Job" and name not in self.told:
                self.set_workload(name, SimWorkload(1e7))
        plane.apply(manifests, source="scenario")

    def launch(self, pod):  # type: ignore[no-untyped-def]
        self.pod_jobs[pod.pod_id] = pod.job
        if pod.job not in self.told:
            for prefix, workload in self.prefixed.items():
                if pod.job.startswith(prefix):
                    self.set_workload(pod.job, workload)
                    if prefix in self.oom:
                        self.oom.add(pod.job)
        super().launch(pod)

    def poll_events(self) -> list[PodEvent]:
        out = []
        for event in super().poll_events():
            is_oom = self.pod_jobs.get(event.pod_id) in self.oom
            if event.kind is PodEventKind.FAILED and is_oom:
                out.append(replace(event, exit_code=137, reason=OOM_KILLED, message="OOMKilled"))
            else:
                out.append(event)
        return out


def _node(spec: Mapping[str, object]) -> Node:
    b = make_node(str(spec["name"])).gpus(int(spec.get("gpus", 8)), str(spec.get("model", "H100")))  # type: ignore[call-overload]
    for key, value in dict(spec.get("labels") or {}).items():  # type: ignore[call-overload]
        b = b.label(str(key), str(value))
    node = b.obj()
    taints = tuple(
        Taint(str(t["key"]), str(t.get("value", "")), str(t.get("effect", "NoSchedule")))
        for t in spec.get("taints") or ()  # type: ignore[attr-defined]
    )
    return replace(
        node, taints=taints, unhealthy_reason=str(spec.get("unhealthy", "")), is_ready=True
    )


@dataclass
class Outcome:
    name: str
    findings: list[Finding]
    expected: set[tuple[str, str]]

    @property
    def named(self) -> set[tuple[str, str]]:
        return {(f.code.value, f.object) for f in self.findings}

    @property
    def score(self) -> float:
        if not self.expected:  # a healthy cluster: any finding is a false alarm
            return 0.0 if self.named else 1.0
        objects = {o for _, o in self.named}
        if any(obj not in objects for _, obj in self.expected):
            return 0.0
        return len(self.expected & self.named) / len(self.named) if self.named else 0.0


def _manifests(path: Path) -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@dataclass
class ScenarioRun:
    """A scenario's control plane while its steps run, on one substrate."""

    folder: Path
    plane: ControlPlane
    #: The scenario's temporary directory (the local backend's workload files are here).
    root: Path
    #: The sim backend's clock (None on the local backend: real time).
    clock: VirtualClock | None
    services: ServiceController | None = None
    #: Replica servers started by the sim's ``serve`` steps (closed when the scenario ends).
    servers: list[ThreadingHTTPServer] = field(default_factory=list)
    #: Injected local node faults to clear: (monotonic time, node).
    repairs: list[tuple[float, str]] = field(default_factory=list)

    def run(self, seconds: float, tick_s: float) -> None:
        """``seconds`` of the scenario's time with the control loop ticking."""
        if self.clock is not None:
            clock, end = self.clock, self.clock.now + seconds
            while clock.now < end:
                clock.advance_to(min(end, clock.now + tick_s))
                self.plane.tick()
            return
        end = time.monotonic() + seconds
        while (now := time.monotonic()) < end:
            for repair in [r for r in self.repairs if r[0] <= now]:
                clear_node_fault(self.data_dir, repair[1])
                self.repairs.remove(repair)
            self.plane.tick()
            time.sleep(min(LOCAL_TICK_S, max(0.0, end - time.monotonic())))
        self.plane.tick()

    def now(self) -> float:
        return self.clock.now if self.clock is not None else time.time()

    @property
    def data_dir(self) -> Path:
        return self.plane.config.data_dir


#: How often the control loop ticks on the local backend (real seconds).
LOCAL_TICK_S = 0.05


def _local_manifests(
    manifests: list[dict[str, object]], scenario_file: Path, code_dir: Path
) -> list[dict[str, object]]:
    """``manifests`` with every pod's command the workload program (a pipeline's steps: tasks
    from a generated ``flows`` module that call it)."""
    command = [sys.executable, str(WORKLOAD), str(scenario_file)]
    out = []
    for given in manifests:
        m = json.loads(json.dumps(given))
        spec = m.get("spec") or {}
        if m.get("kind") == "Job":
            for pod_set in spec["podSets"]:
                pod_set["command"] = command
        elif m.get("kind") == "Service":
            spec["template"]["command"] = command
        elif m.get("kind") == "PipelineRun":
            spec["code"] = {"pythonPath": [str(code_dir), str(ROOT)]}
        out.append(m)
    return out


def _flows(code_dir: Path, scenario_file: Path, manifests: list[dict[str, object]]) -> None:
    """Write ``flows.py`` with a task for every pipeline step's ``flows:NAME``: it acts out
    the step's job (workload.py) and returns 1."""
    names = sorted(
        str(step["task"]).partition(":")[2]
        for m in manifests
        if m.get("kind") == "PipelineRun"
        for step in m["spec"]["steps"]  # type: ignore[index]
    )
    lines = ["import workload", ""]
    for name in names:
        lines += [
            f"def {name}(**inputs):",
            f"    workload.act({str(scenario_file)!r})",
            "    return 1",
        ]
    code_dir.mkdir(parents=True, exist_ok=True)
    (code_dir / "flows.py").write_text("\n".join(lines) + "\n")


@contextmanager
def scenario_plane(folder: Path, substrate: str = "sim") -> Iterator[ScenarioRun]:
    """The scenario's control plane after its setup and fault, on ``substrate``."""
    assert substrate in SUBSTRATES, substrate
    spec = yaml.safe_load((folder / "scenario.yaml").read_text())
    assert substrate == "sim" or not local_skip(folder), f"{folder.name}: {local_skip(folder)}"
    nodes = [_node(n) for n in spec["nodes"]]
    workloads = dict(spec.get("workloads") or {})
    setup = _manifests(folder / "setup.yaml")
    kinds = {m.get("kind") for m in setup}
    with tempfile.TemporaryDirectory(prefix="phalanx-scenario-") as tmp:
        data_dir = Path(tmp)
        clock: VirtualClock | None = None
        backend: ScenarioBackend | LocalBackend
        if substrate == "sim":
            clock = VirtualClock(START_S)
            backend = ScenarioBackend(nodes, clock)
            for job, w in workloads.items():
                workload = SimWorkload(
                    float(w.get("runtime_s", 1e7)),
                    failing_attempts=tuple(w.get("fail_attempts", ())),
                )
                if job.endswith("*"):
                    backend.prefixed[job.removesuffix("*")] = workload
                else:
                    backend.set_workload(job, workload)
                if w.get("oom"):
                    backend.oom.add(job.removesuffix("*"))
            sim_clock = clock
            config = ControlPlaneConfig(data_dir, grace_period_s=0.0)
            plane_clock = lambda: sim_clock.now  # noqa: E731
        else:
            scenario_file = data_dir / "scenario.json"
            scenario_file.write_text(json.dumps({"workloads": workloads}))
            _flows(data_dir / "code", scenario_file, setup)
            backend = LocalBackend(data_dir / "plane", nodes)
            config = ControlPlaneConfig(data_dir / "plane", tick_s=LOCAL_TICK_S, grace_period_s=0.0)
            plane_clock = time.time
        store = Store(f"sqlite:///{tmp}/phalanx.db")
        plane = ControlPlane(store, backend, config, clock=plane_clock)
        run = ScenarioRun(folder, plane, data_dir, clock)
        run.services = ServiceController.attach(plane) if "Service" in kinds else None
        if "PipelineRun" in kinds:
            plane.reconcilers.append(PipelineRunReconciler(plane))
        artifacts = os.environ.get(ENV_ARTIFACTS)
        os.environ[ENV_ARTIFACTS] = f"{tmp}/artifacts"
        try:
            _apply(run, setup)
            for step in spec.get("fault") or ():
                _step(run, step)
            plane.tick()
            yield run
        finally:
            for server in run.servers:
                server.shutdown()
                server.server_close()
            if run.services is not None:
                run.services.close()
            if isinstance(backend, LocalBackend):
                _stop_pods(plane, backend)
            if artifacts is None:
                os.environ.pop(ENV_ARTIFACTS, None)
            else:
                os.environ[ENV_ARTIFACTS] = artifacts
            store.close()


def _stop_pods(plane: ControlPlane, backend: LocalBackend) -> None:
    """Cancel what still runs and wait for its processes to end."""
    for job in plane.list_jobs():
        if not job.phase.is_terminal:
            plane.cancel_job(job.name)
    deadline = time.monotonic() + 20.0
    while any(not j.phase.is_terminal for j in plane.list_jobs()):
        assert time.monotonic() < deadline, "the scenario's pods did not stop"
        plane.tick()
        time.sleep(LOCAL_TICK_S)
    backend.close()


def _apply(run: ScenarioRun, manifests: list[dict[str, object]]) -> None:
    backend = run.plane.backend
    if isinstance(backend, ScenarioBackend):
        backend.apply(run.plane, manifests)
    else:
        local = _local_manifests(manifests, run.root / "scenario.json", run.root / "code")
        run.plane.apply(local, source="scenario")
    run.plane.tick()


def _step(run: ScenarioRun, step: Mapping[str, object]) -> None:
    plane, folder = run.plane, run.folder
    if "run_s" in step:
        seconds = step.get("local_s", step["run_s"]) if run.clock is None else step["run_s"]
        run.run(float(seconds), float(step.get("tick_s", 1.0)))  # type: ignore[arg-type]
    elif "apply" in step:
        _apply(run, _manifests(folder / str(step["apply"])))
    elif "fail_node" in step:
        node, repair_s = str(step["fail_node"]), float(step.get("repair_s", 1e7))  # type: ignore[arg-type]
        if isinstance(plane.backend, ScenarioBackend):
            plane.backend.fail_node(node, repair_s)
        else:
            inject_node_fault(run.data_dir, node, f"scenario {folder.name}: node {node} lost")
            run.repairs.append((time.monotonic() + repair_s, node))
        plane.tick()
    elif "serve" in step:
        _serve(run, dict(step["serve"]))  # type: ignore[call-overload]
    elif "requests" in step:
        _requests(run, dict(step["requests"]))  # type: ignore[call-overload]
    elif "cancel" in step:
        plane.cancel_job(str(step["cancel"]))
        plane.tick()
    elif "report" in step:
        r = dict(step["report"])  # type: ignore[call-overload]
        record = plane.store.get_job(str(r["job"]))
        assert record is not None, r
        data: dict[str, object] = {"version": VERSION, "job": record.name, "pod": "worker-0"}
        data["rank"], data["attempt"] = 0, record.attempt
        if "step_s_ago" in r:
            data["progress"] = {
                "step": int(r.get("step", 100)),
                "at": run.now() - float(r["step_s_ago"]),
            }
        if "checkpoint_s_ago" in r:
            at = run.now() - float(r["checkpoint_s_ago"])
            data["checkpoint"] = {"step": int(r.get("checkpoint_step", 10)), "at": at, "path": "c"}
        write_status(status_path(checkpoint_dir(plane.config.data_dir, record), "worker-0"), data)
        plane.tick()
    else:
        raise ValueError(f"unknown scenario step {step!r} in {folder.name}")


def _serve(run: ScenarioRun, step: Mapping[str, object]) -> None:
    services, plane = run.services, run.plane
    assert services is not None, "serve: the setup has no Service"
    name = str(step["service"])
    answers = [int(a) for a in step["answers"]]  # type: ignore[attr-defined]
    view = services.view(name)
    replicas = sorted(r.name for r in view.replicas)
    assert len(replicas) == len(answers), f"serve: {name} has replicas {replicas}"
    path = view.spec.readiness.path if view.spec is not None else "/"
    if run.clock is None:  # the replicas' own processes serve, once told what to answer
        statuses = dict(zip(replicas, answers, strict=True))
        told = {"ready_path": path, "statuses": statuses}
        (run.root / "answers.json").write_text(json.dumps(told))
    else:
        for replica, status in zip(replicas, answers, strict=True):
            record = plane.store.get_job(replica)
            assert record is not None
            port = int(record.annotations["phalanx.dev/port"])
            server = replica_server(status, path, port)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            run.servers.append(server)
    deadline = time.monotonic() + 20.0
    while services.view(name).ready < len(replicas):
        assert time.monotonic() < deadline, f"serve: {name}'s replicas never became ready"
        time.sleep(0.05)
        plane.tick()


def _requests(run: ScenarioRun, step: Mapping[str, object]) -> None:
    services, plane = run.services, run.plane
    assert services is not None, "requests: the setup has no Service"
    view = services.view(str(step["service"]))
    assert view.spec is not None
    router = RouterThread(services, services, report_interval_s=0.05)
    port = router.start()
    try:
        # A router's first report is the baseline its later counts add to: let it make one.
        time.sleep(0.3)
        plane.tick()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(int(step.get("count", 20))):  # type: ignore[call-overload]
            conn.request("GET", view.spec.route_prefix + "/predict")
            conn.getresponse().read()
        conn.close()
    finally:
        router.stop()  # reports a last sample
    plane.tick()


def run_scenario(folder: Path, substrate: str = "sim") -> Outcome:
    """Run the scenario in ``folder`` on ``substrate`` and return what the doctor found."""
    spec = yaml.safe_load((folder / "scenario.yaml").read_text())
    expected = {(str(e["code"]), str(e["object"])) for e in spec["expect"]}
    with scenario_plane(folder, substrate) as run:
        findings = diagnose(observe(run.plane, usage=UsageSources(use_nvml=False)))
    return Outcome(folder.name, findings, expected)


def scenario_folders() -> list[Path]:
    return sorted(p for p in ROOT.iterdir() if (p / "scenario.yaml").is_file())


def local_skip(folder: Path) -> str:
    """Why the scenario cannot run on the local backend ("": it can)."""
    spec = yaml.safe_load((folder / "scenario.yaml").read_text())
    return str((spec.get("local") or {}).get("skip") or "")
