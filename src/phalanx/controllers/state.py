"""What the controllers know at the start of a tick: jobs, live pods, queues, flavors, nodes,
read from the store and the backend and turned into the scheduler's Snapshot.

Reads only; writes happen in lifecycle.py and plane.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from phalanx.backends.base import HeldCapacity
from phalanx.model.objects import (
    DeviceShare,
    JobPhase,
    JobSpec,
    Node,
    PodPlacement,
    Queue,
    ResourceFlavor,
)
from phalanx.model.resources import Resources
from phalanx.model.specs import parse_flavor, parse_job, parse_queue
from phalanx.scheduling.snapshot import (
    AdmittedWorkload,
    PendingWorkload,
    PlacedPod,
    Reservation,
    SchedulerConfig,
    Snapshot,
)
from phalanx.store import JobRecord, PodRecord, Store

HOLDING = (JobPhase.ADMITTED.value, JobPhase.RUNNING.value, JobPhase.PREEMPTED.value)
ACTIVE = (JobPhase.PENDING.value, *HOLDING)


def devices_of(pod: PodRecord) -> tuple[DeviceShare, ...]:
    """The stored device list ``[[index, milli], ...]`` as DeviceShares."""
    return tuple(DeviceShare(int(i), int(m)) for i, m in pod.devices)


def pod_resources(spec: JobSpec, pod_set: str) -> Resources:
    """Per-pod resources of ``pod_set`` in ``spec`` (zero if the pod set is unknown)."""
    for ps in spec.pod_sets:
        if ps.name == pod_set:
            return ps.resources
    return Resources()


class SpecCache:
    """Parsed specs keyed by their manifests' identity in the store (manifests never change
    for a job id; queues and flavors are re-parsed when their manifest changes)."""

    def __init__(self) -> None:
        self._jobs: dict[tuple[int, str], JobSpec] = {}
        self._queues: dict[str, tuple[Mapping[str, object], Queue]] = {}
        self._flavors: dict[str, tuple[Mapping[str, object], ResourceFlavor]] = {}

    def job(self, record: JobRecord) -> JobSpec:
        key = (record.id, record.uid)
        spec = self._jobs.get(key)
        if spec is None:
            spec = self._jobs[key] = parse_job(record.manifest)
        return spec

    def queues(self, store: Store) -> list[Queue]:
        out = []
        for name, manifest, _ in store.list_config("Queue"):
            cached = self._queues.get(name)
            if cached is None or cached[0] != manifest:
                cached = self._queues[name] = (manifest, parse_queue(manifest))
            out.append(cached[1])
        return out

    def flavors(self, store: Store) -> list[ResourceFlavor]:
        out = []
        for name, manifest, _ in store.list_config("ResourceFlavor"):
            cached = self._flavors.get(name)
            if cached is None or cached[0] != manifest:
                cached = self._flavors[name] = (manifest, parse_flavor(manifest))
            out.append(cached[1])
        return out


@dataclass(slots=True)
class World:
    """One consistent read of jobs and live pods for a tick."""

    jobs: dict[int, JobRecord]
    specs: dict[int, JobSpec]
    live_pods: dict[int, list[PodRecord]] = field(default_factory=dict)

    @classmethod
    def read(cls, store: Store, cache: SpecCache) -> World:
        jobs = {j.id: j for j in store.list_jobs(ACTIVE)}
        live: dict[int, list[PodRecord]] = {}
        for pod in store.pods(live_only=True):
            live.setdefault(pod.job_id, []).append(pod)
        for job_id in live:
            if job_id not in jobs:
                record = store.get_job_by_id(job_id)
                if record is not None:
                    jobs[job_id] = record
        return cls(jobs, {i: cache.job(j) for i, j in jobs.items()}, live)

    def snapshot(
        self,
        now: float,
        nodes: list[Node],
        queues: list[Queue],
        flavors: list[ResourceFlavor],
        config: SchedulerConfig,
        checkpoints: Mapping[int, float] | None = None,
        held: Sequence[HeldCapacity] = (),
    ) -> tuple[Snapshot, dict[str, str]]:
        """Return the scheduler's snapshot, and reasons for pending jobs it must not see yet
        (their previous attempt's pods are still stopping). ``checkpoints``: when each job
        (by id) last reported a completed checkpoint. ``held``: capacity the backend reports
        in use by workloads phalanx did not place."""
        checkpoints = checkpoints or {}
        admitted: list[AdmittedWorkload] = []
        reservations: list[Reservation] = []
        pending: list[PendingWorkload] = []
        held_back: dict[str, str] = {}
        for job_id, job in self.jobs.items():
            spec = self.specs[job_id]
            pods = self.live_pods.get(job_id, [])
            if job.phase in HOLDING:
                placed = tuple(
                    PlacedPod(
                        PodPlacement(p.pod_set, p.index, p.node, devices_of(p)),
                        pod_resources(spec, p.pod_set),
                    )
                    for p in pods
                )
                admitted.append(
                    AdmittedWorkload(
                        job.name,
                        job.queue,
                        job.flavor,
                        job.priority,
                        placed,
                        job.admitted_at or 0.0,
                        job.phase == JobPhase.PREEMPTED.value,
                        checkpoints.get(job_id),
                    )
                )
                continue
            reservations.extend(
                Reservation(p.node, pod_resources(spec, p.pod_set), devices_of(p)) for p in pods
            )
            if job.phase == JobPhase.PENDING.value and not job.is_deleting:
                if pods:
                    held_back[job.name] = (
                        f"waiting for {len(pods)} pods of attempt {job.attempt} to stop"
                    )
                else:
                    pending.append(PendingWorkload(spec, job.id, job.not_before))
        reservations.extend(_foreign_reservations(held, nodes, self.live_pods))
        snapshot = Snapshot(
            now=now,
            nodes=tuple(nodes),
            flavors=tuple(flavors),
            queues=tuple(queues),
            pending=tuple(pending),
            admitted=tuple(admitted),
            reservations=tuple(reservations),
            config=config,
        )
        return snapshot, held_back


def _foreign_reservations(
    held: Sequence[HeldCapacity], nodes: Sequence[Node], live: Mapping[int, list[PodRecord]]
) -> list[Reservation]:
    """Turn capacity held by others into reservations. Whole GPUs they hold are pinned to the
    highest-indexed devices phalanx does not use on that node: which physical devices the
    device plugin gave them is unknown, only how many, and any choice keeps the count right."""
    gpus = {n.name: len(n.gpus) for n in nodes}
    used: dict[str, set[int]] = {}
    for pods in live.values():
        for pod in pods:
            used.setdefault(pod.node, set()).update(d.index for d in devices_of(pod))
    out = []
    for item in held:
        taken = used.setdefault(item.node, set())
        free = [i for i in range(gpus.get(item.node, 0) - 1, -1, -1) if i not in taken]
        pinned = tuple(DeviceShare(i, 1000) for i in free[: item.resources.gpu_milli // 1000])
        taken.update(d.index for d in pinned)
        out.append(Reservation(item.node, item.resources, pinned))
    return out
