"""Prometheus metrics, read from the control plane at each scrape.

``PlaneCollector`` is a ``prometheus_client`` collector: every scrape reads the read side
(queues, jobs, nodes) and the loop's counters, so there is no second copy of state to keep in
step. ``render(plane)`` returns the text exposition format for ``GET /metrics``.

Units are Prometheus base units: GPUs as devices (fractions count as fractions), cpu in cores,
memory in bytes, times in seconds. Resource labels use the Kubernetes names (``cpu``,
``memory``, ``nvidia.com/gpu``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from phalanx.controllers.plane import ControlPlane
from phalanx.model.objects import JobPhase
from phalanx.model.resources import (
    CPU,
    GPU,
    GPU_MILLI_PER_DEVICE,
    MEMORY,
    RESOURCE_NAMES,
    UNLIMITED,
)
from phalanx.ops.losses import lost_gpu_seconds
from phalanx.ops.workloads import read_runs, read_services


@dataclass(frozen=True, slots=True)
class _JobFacts:
    """The figures of one stored job that the metrics read."""

    name: str
    queue: str
    phase: JobPhase
    reason_code: str
    created_at: float
    admitted_at: float | None
    restarts: int
    attempt: int
    #: GPUs (thousandths) its pods ask for together; known for active jobs.
    gpu_milli: int


#: The media type of the text exposition format.
PROMETHEUS_CONTENT_TYPE: str = CONTENT_TYPE_LATEST

#: Upper bounds (seconds) of the admission latency histogram: 1 s to 1 day.
ADMISSION_BUCKETS_S: tuple[float, ...] = (
    1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400,
)  # fmt: skip


def base_units(resource: str, amount: int) -> float:
    """An amount in phalanx's units (millicores, bytes, thousandths of a GPU) in Prometheus
    base units (cores, bytes, GPUs)."""
    if resource == MEMORY:
        return float(amount)
    return amount / (GPU_MILLI_PER_DEVICE if resource == GPU else 1000)


def admission_histogram(
    latencies_s: Sequence[float], bounds: Sequence[float] = ADMISSION_BUCKETS_S
) -> list[tuple[str, float]]:
    """Cumulative buckets (``le`` label, count) of ``latencies_s``, with ``+Inf``."""
    out = [(_le(b), float(sum(1 for v in latencies_s if v <= b))) for b in bounds]
    out.append(("+Inf", float(len(latencies_s))))
    return out


def _le(bound: float) -> str:
    return str(float(bound))


class PlaneCollector(Collector):
    """Collects the control plane's figures at each scrape; see the module docstring."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    def collect(self) -> Iterator[Metric]:
        jobs = self._job_facts()
        yield from self._queues()
        yield from self._jobs(jobs)
        yield from self._nodes()
        yield from self._workloads()
        yield from self._loop()

    def _job_facts(self) -> list[_JobFacts]:
        """What the job metrics need of every stored job, from one read of the job rows
        without their manifests (views of ten thousand jobs, with pods and progress, would
        cost a scrape seconds); GPUs requested come from the loop's World, which holds the
        spec of every active job."""
        world = self.plane.world.read()
        gpus = {
            job_id: sum(ps.resources.gpu_milli * ps.replicas for ps in spec.pod_sets)
            for job_id, spec in world.specs.items()
        }
        return [
            _JobFacts(
                r.name,
                r.queue,
                JobPhase(r.phase),
                r.reason_code,
                r.created_at,
                r.admitted_at,
                r.restarts,
                r.attempt,
                gpus.get(r.id, 0),
            )
            for r in self.plane.store.list_jobs(manifests=False)
        ]

    # ---- queues ----

    def _queues(self) -> Iterator[Metric]:
        usage = GaugeMetricFamily(
            "phalanx_queue_usage",
            "Resources admitted jobs of a queue hold, per flavor (GPUs, cores, bytes)",
            labels=["queue", "flavor", "resource"],
        )
        nominal = GaugeMetricFamily(
            "phalanx_queue_nominal",
            "A queue's nominal quota per flavor and resource",
            labels=["queue", "flavor", "resource"],
        )
        borrowed = GaugeMetricFamily(
            "phalanx_queue_borrowed",
            "What a queue uses above its nominal quota (borrowed from its cohort)",
            labels=["queue", "flavor", "resource"],
        )
        waiting = GaugeMetricFamily(
            "phalanx_queue_pending_jobs", "Jobs waiting in a queue", labels=["queue"]
        )
        running = GaugeMetricFamily(
            "phalanx_queue_admitted_jobs", "Jobs of a queue holding capacity", labels=["queue"]
        )
        for q in self.plane.queries.list_queues():
            for fu in q.usage:
                for r in RESOURCE_NAMES:
                    labels = [q.name, fu.flavor, r]
                    used, nom = fu.used.get(r), fu.nominal.get(r)
                    usage.add_metric(labels, base_units(r, used))
                    if nom < UNLIMITED:
                        nominal.add_metric(labels, base_units(r, nom))
                    borrowed.add_metric(labels, base_units(r, max(0, used - nom)))
            waiting.add_metric([q.name], q.pending)
            running.add_metric([q.name], q.admitted)
        yield from (usage, nominal, borrowed, waiting, running)

    # ---- jobs ----

    def _jobs(self, jobs: list[_JobFacts]) -> Iterator[Metric]:
        phases = Counter(j.phase.value for j in jobs)
        by_phase = GaugeMetricFamily("phalanx_jobs", "Jobs stored, by phase", labels=["phase"])
        for phase in JobPhase:
            by_phase.add_metric([phase.value], phases.get(phase.value, 0))
        pending = Counter(
            (j.queue, j.reason_code or "Unknown") for j in jobs if j.phase is JobPhase.PENDING
        )
        reasons = GaugeMetricFamily(
            "phalanx_pending_jobs",
            "Pending jobs by queue and reason code (docs/reasons.md)",
            labels=["queue", "reason"],
        )
        for (queue, code), n in sorted(pending.items()):
            reasons.add_metric([queue, code], n)
        ended = Counter(
            (j.phase.value, j.reason_code or j.phase.value) for j in jobs if j.phase.is_terminal
        )
        outcomes = GaugeMetricFamily(
            "phalanx_finished_jobs",
            "Jobs that ended (still stored), by phase and cause (reason code)",
            labels=["phase", "reason"],
        )
        for (ended_phase, code), n in sorted(ended.items()):
            outcomes.add_metric([ended_phase, code], n)
        latencies = [j.admitted_at - j.created_at for j in jobs if j.admitted_at is not None]
        admission = HistogramMetricFamily(
            "phalanx_admission_latency_seconds",
            "From submission to the latest admission, of every stored job admitted at least once",
        )
        admission.add_metric([], admission_histogram(latencies), sum_value=sum(latencies))
        restarts = Counter[str]()
        for j in jobs:
            restarts[j.queue] += j.restarts
        restart_family = GaugeMetricFamily(
            "phalanx_job_restarts", "Restarts of stored jobs, summed per queue", labels=["queue"]
        )
        for queue, n in sorted(restarts.items()):
            restart_family.add_metric([queue], n)
        lost = GaugeMetricFamily(
            "phalanx_lost_gpu_hours",
            "GPU-hours of work lost by jobs still stored, by cause: preemption (since the last "
            "checkpoint) and failures (OOM, Application, Node, Hang, Startup: since the attempt "
            "started or its last checkpoint)",
            labels=["cause"],
        )
        for cause, seconds in sorted(self._lost_gpu_s(jobs).items()):
            lost.add_metric([cause], seconds / 3600)
        holding = GaugeMetricFamily(
            "phalanx_job_gpus", "GPUs held by running jobs, per queue", labels=["queue"]
        )
        held = Counter[str]()
        for j in jobs:
            if j.phase.holds_resources:
                held[j.queue] += j.gpu_milli
        for queue, milli in sorted(held.items()):
            holding.add_metric([queue], milli / GPU_MILLI_PER_DEVICE)
        yield from (by_phase, reasons, outcomes, admission, restart_family, lost, holding)

    def _lost_gpu_s(self, jobs: list[_JobFacts]) -> dict[str, float]:
        """GPU-seconds lost per cause (phalanx.ops.losses), read from the events of the jobs
        that can have lost any: more than one attempt, or failed. ``Preempted`` is always
        there (0 when nothing was lost), so the series exists from the first scrape."""
        total: dict[str, float] = {"Preempted": 0.0}
        for j in jobs:
            if j.attempt < 2 and j.phase not in (JobPhase.PREEMPTED, JobPhase.FAILED):
                continue
            try:
                view = self.plane.queries.get_job(j.name)
            except LookupError:
                continue  # deleted meanwhile
            for cause, seconds in lost_gpu_seconds(view).items():
                total[cause] = total.get(cause, 0.0) + seconds
        return total

    # ---- nodes ----

    def _nodes(self) -> Iterator[Metric]:
        gpus = GaugeMetricFamily("phalanx_node_gpus", "GPUs of a node", labels=["node"])
        allocated = GaugeMetricFamily(
            "phalanx_node_gpus_allocated", "GPUs of a node allocated to pods", labels=["node"]
        )
        device = GaugeMetricFamily(
            "phalanx_gpu_allocated",
            "Share of one GPU allocated to pods (0 to 1)",
            labels=["node", "device", "model"],
        )
        ready = GaugeMetricFamily("phalanx_node_ready", "1 if the node is ready", labels=["node"])
        quarantined = GaugeMetricFamily(
            "phalanx_node_quarantined", "1 if the node is quarantined", labels=["node"]
        )
        failures = GaugeMetricFamily(
            "phalanx_node_failures",
            "Node-side pod failures held as evidence against the node",
            labels=["node"],
        )
        allocatable = GaugeMetricFamily(
            "phalanx_node_allocatable",
            "Allocatable resources of a node (cores, bytes, GPUs)",
            labels=["node", "resource"],
        )
        for view in self.plane.queries.list_nodes():
            n = view.node
            gpus.add_metric([n.name], len(n.gpus))
            allocated.add_metric([n.name], view.used.gpu_milli / GPU_MILLI_PER_DEVICE)
            for d in n.gpus:
                share = view.device_used_milli.get(d.index, 0) / GPU_MILLI_PER_DEVICE
                device.add_metric([n.name, str(d.index), d.model], share)
            ready.add_metric([n.name], 1.0 if n.is_ready else 0.0)
            quarantined.add_metric([n.name], 1.0 if n.is_quarantined else 0.0)
            failures.add_metric([n.name], len(view.failures))
            for r in (CPU, MEMORY, GPU):
                allocatable.add_metric([n.name, r], base_units(r, n.allocatable.get(r)))
        yield from (gpus, allocated, device, ready, quarantined, failures, allocatable)

    # ---- services and pipeline runs ----

    def _workloads(self) -> Iterator[Metric]:
        replicas = GaugeMetricFamily(
            "phalanx_service_replicas",
            "Replicas of a Service by phase (Ready, Starting, Pending, Failed, Running: "
            "readiness unknown)",
            labels=["service", "phase"],
        )
        desired = GaugeMetricFamily(
            "phalanx_service_desired_replicas",
            "Replicas a Service wants (the autoscaler's last decision, else minReplicas)",
            labels=["service"],
        )
        cold = GaugeMetricFamily(
            "phalanx_service_cold_starts",
            "Wake-ups from zero replicas among the autoscaler's last decisions",
            labels=["service"],
        )
        responses = CounterMetricFamily(
            "phalanx_service_responses",
            "Answers of a Service's replicas through the routers, by status class (2xx, 3xx, "
            "4xx, 5xx), since this server began to lead; the routers' own 429/503 are not "
            "counted here",
            labels=["service", "replica", "code_class"],
        )
        for s in read_services(self.plane, with_history=False):
            for replica, code_class, n in s.responses:
                responses.add_metric([s.name, replica, code_class], n)
            phases = Counter(r.phase for r in s.replicas)
            for phase in sorted({"Ready", "Pending", *phases}):
                replicas.add_metric([s.name, phase], phases.get(phase, 0))
            desired.add_metric([s.name], max(s.desired, s.min_replicas))
            cold.add_metric([s.name], len(s.cold_starts))
        runs = GaugeMetricFamily(
            "phalanx_pipeline_runs", "Pipeline runs stored, by phase", labels=["phase"]
        )
        steps = GaugeMetricFamily(
            "phalanx_pipeline_steps",
            "Steps of stored pipeline runs, by state (Succeeded, Cached, Failed, ...)",
            labels=["state"],
        )
        all_runs = read_runs(self.plane)
        for phase, n in sorted(Counter(r.phase or "Pending" for r in all_runs).items()):
            runs.add_metric([phase], n)
        states = Counter(step.state for r in all_runs for step in r.steps)
        for state, n in sorted(states.items()):
            steps.add_metric([state], n)
        yield from (replicas, desired, cold, responses, runs, steps)

    # ---- the loop ----

    def _loop(self) -> Iterator[Metric]:
        cycles = CounterMetricFamily(
            "phalanx_scheduling_cycles", "Scheduling cycles run since the server started"
        )
        cycles.add_metric([], self.plane.cycles)
        last = GaugeMetricFamily(
            "phalanx_scheduling_cycle_seconds", "Seconds the last schedule() call took"
        )
        last.add_metric([], self.plane.last_cycle_s)
        seconds = CounterMetricFamily(
            "phalanx_reconciler_seconds", "Time spent in each reconciler", labels=["reconciler"]
        )
        runs = CounterMetricFamily(
            "phalanx_reconciler_runs", "Passes of each reconciler", labels=["reconciler"]
        )
        errors = CounterMetricFamily(
            "phalanx_reconciler_errors",
            "Failed passes and per-object failures of each reconciler",
            labels=["reconciler", "scope"],
        )
        for name, st in sorted(self.plane.stats.items()):
            seconds.add_metric([name], st.seconds_total)
            runs.add_metric([name], st.runs)
            errors.add_metric([name, "pass"], st.errors)
            errors.add_metric([name, "object"], st.object_errors)
        yield from (cycles, last, seconds, runs, errors)


def registry_for(plane: ControlPlane) -> CollectorRegistry:
    """A registry holding only the plane's collector (no process metrics of the test runner
    or of other planes in the same process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlaneCollector(plane))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in the Prometheus text format."""
    return generate_latest(registry)
