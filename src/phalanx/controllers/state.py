"""What the controllers know at the start of a tick: jobs, live pods, queues, flavors, nodes,
read from the store and the backend and turned into the scheduler's Snapshot.

Reads only; writes happen in lifecycle.py and plane.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

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
T = TypeVar("T")


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
        #: Stored queues and flavors that no longer parse, by (kind, name): the error. They
        #: are left out of every snapshot (jobs in such a queue wait with QueueNotFound).
        self.invalid: dict[tuple[str, str], str] = {}

    def job(self, record: JobRecord) -> JobSpec:
        key = (record.id, record.uid)
        spec = self._jobs.get(key)
        if spec is None:
            spec = self._jobs[key] = parse_job(record.manifest)
        return spec

    def queues(self, store: Store) -> list[Queue]:
        return self._parsed(store, "Queue", self._queues, parse_queue)

    def flavors(self, store: Store) -> list[ResourceFlavor]:
        return self._parsed(store, "ResourceFlavor", self._flavors, parse_flavor)

    def _parsed(
        self,
        store: Store,
        kind: str,
        cache: dict[str, tuple[Mapping[str, object], T]],
        parse: Callable[[Mapping[str, object]], T],
    ) -> list[T]:
        out = []
        for name, manifest, _ in store.list_config(kind):
            cached = cache.get(name)
            if cached is None or cached[0] != manifest:
                try:
                    cached = cache[name] = (manifest, parse(manifest))
                except Exception as exc:  # contained: one bad object must not stop the loop
                    self.invalid[(kind, name)] = f"{exc.__class__.__name__}: {exc}"
                    continue
            self.invalid.pop((kind, name), None)
            out.append(cached[1])
        return out


@dataclass(slots=True)
class World:
    """One consistent read of jobs and live pods for a tick."""

    jobs: dict[int, JobRecord]
    specs: dict[int, JobSpec]
    live_pods: dict[int, list[PodRecord]] = field(default_factory=dict)
    #: Jobs whose stored spec no longer parses, with the error: left out of ``jobs`` (the
    #: loop goes on without them), their live pods' devices still reserved.
    broken: dict[int, tuple[JobRecord, Exception]] = field(default_factory=dict)

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
        specs: dict[int, JobSpec] = {}
        broken: dict[int, tuple[JobRecord, Exception]] = {}
        for job_id, record in jobs.items():
            try:
                specs[job_id] = cache.job(record)
            except Exception as exc:  # contained: one bad object must not stop the loop
                broken[job_id] = (record, exc)
        for job_id in broken:
            del jobs[job_id]
        return cls(jobs, specs, live, broken)

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
        for job_id in self.broken:  # their resources are unknown; their devices are not
            reservations.extend(
                Reservation(p.node, Resources(), devices_of(p))
                for p in self.live_pods.get(job_id, ())
            )
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
