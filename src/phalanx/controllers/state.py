"""What the controllers know at the start of a tick: jobs, live pods, queues, flavors, nodes,
read from the store and the backend and turned into the scheduler's Snapshot.

Reads only; writes happen in lifecycle.py and plane.py.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
        #: By uid: a job's manifest never changes, and a re-created job has a new uid.
        self._jobs: dict[str, JobSpec] = {}
        self._queues: dict[str, tuple[Mapping[str, object], Queue]] = {}
        self._flavors: dict[str, tuple[Mapping[str, object], ResourceFlavor]] = {}
        #: Stored queues and flavors that no longer parse, by (kind, name): the error. They
        #: are left out of every snapshot (jobs in such a queue wait with QueueNotFound).
        self.invalid: dict[tuple[str, str], str] = {}
        self._recent: tuple[float, list[Queue], list[ResourceFlavor]] | None = None
        #: The last list of each kind, with the configuration revision it was read at.
        self._lists: dict[str, tuple[int, list[object]]] = {}

    def job(self, record: JobRecord) -> JobSpec:
        key = record.uid or f"id:{record.id}"
        spec = self._jobs.get(key)
        if spec is None:
            spec = self._jobs[key] = parse_job(record.manifest)
        return spec

    def has(self, record: JobRecord) -> bool:
        """Whether the spec of ``record`` is parsed already (its manifest is not needed)."""
        return (record.uid or f"id:{record.id}") in self._jobs

    def submitted(self, uid: str, spec: JobSpec) -> None:
        """Keep the spec ``apply`` parsed for the job it created with ``uid``: the loop then
        does not parse the stored manifest again (it would give this very spec, since every
        manifest validation accepts round-trips)."""
        self._jobs[uid] = spec

    #: How far behind another process's writes of queues and flavors ``recent`` may be.
    RECENT_S = 1.0

    def recent(self, store: Store) -> tuple[list[Queue], list[ResourceFlavor]]:
        """Queues and flavors as read at most ``RECENT_S`` ago, or now: for advice that may
        lag a moment behind another process's writes (apply's warnings), not for decisions.
        The writer in this process calls ``forget_recent``, so its own writes show at once.
        Saves two queries on every submission."""
        recent, now = self._recent, time.monotonic()
        if recent is None or now - recent[0] > self.RECENT_S:
            recent = self._recent = (now, self.queues(store), self.flavors(store))
        return recent[1], recent[2]

    def forget_recent(self) -> None:
        """This process wrote queues or flavors: ``recent`` and the lists read them again."""
        self._recent = None
        self._lists = {}

    def queues(self, store: Store, at: int | None = None) -> list[Queue]:
        """The stored queues that parse. ``at``: the revision of the newest configuration
        write the caller has seen in the revision log (``WorldCache.config_revision``); the
        last list is reused while it has not moved and this process wrote none since.
        Without it, the store is read."""
        return self._parsed(store, "Queue", self._queues, parse_queue, at)

    def flavors(self, store: Store, at: int | None = None) -> list[ResourceFlavor]:
        """The stored flavors that parse; ``at`` as for ``queues``."""
        return self._parsed(store, "ResourceFlavor", self._flavors, parse_flavor, at)

    def _parsed(
        self,
        store: Store,
        kind: str,
        cache: dict[str, tuple[Mapping[str, object], T]],
        parse: Callable[[Mapping[str, object]], T],
        at: int | None = None,
    ) -> list[T]:
        listed = self._lists.get(kind)
        if at is not None and listed is not None and listed[0] == at:
            return list(listed[1])  # type: ignore[arg-type]  # the list of this kind's T
        out = self._read(store, kind, cache, parse)
        if at is not None:
            self._lists[kind] = (at, list(out))
        return out

    def _read(
        self,
        store: Store,
        kind: str,
        cache: dict[str, tuple[Mapping[str, object], T]],
        parse: Callable[[Mapping[str, object]], T],
    ) -> list[T]:
        out = []
        stored = store.list_config(kind)
        names = {name for name, _, _ in stored}
        for gone in [key for key in self.invalid if key[0] == kind and key[1] not in names]:
            del self.invalid[gone]  # deleted: no longer failing
        for name, manifest, _ in stored:
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


def without_manifest(record: JobRecord) -> JobRecord:
    """``record`` without its manifest (an empty one), once its spec is parsed: a World keeps
    every active job, and with thousands waiting their manifests were most of the control
    plane's memory. Its spec is in ``World.specs`` (and the SpecCache, by uid)."""
    return record if not record.manifest else replace(record, manifest={})


@dataclass(slots=True)
class World:
    """One consistent read of jobs and live pods for a tick: the active jobs (pending or
    holding capacity) and every job that still has live pods. Their records carry no
    manifest (see ``without_manifest``); jobs whose spec does not parse keep theirs. A
    WorldCache hands one World to every read while nothing changed: callers only read it."""

    jobs: dict[int, JobRecord]
    specs: dict[int, JobSpec]
    live_pods: dict[int, list[PodRecord]] = field(default_factory=dict)
    #: Jobs whose stored spec no longer parses, with the error: left out of ``jobs`` (the
    #: loop goes on without them), their live pods' devices still reserved.
    broken: dict[int, tuple[JobRecord, Exception]] = field(default_factory=dict)
    #: The store's revision this read includes every write up to (it may include later ones).
    revision: int = 0
    #: The jobs of ``jobs`` holding capacity (Admitted, Running, Preempted), in FIFO order:
    #: what deadlines, hangs and progress look at, without a pass over every waiting job.
    holding: dict[int, JobRecord] = field(default_factory=dict)
    #: The WorldCache's count of reads that changed something, as of this World (0 for a
    #: World read afresh): ``WorldCache.changed_since(epoch)`` names what changed after it.
    epoch: int = 0

    @classmethod
    def read(cls, store: Store, cache: SpecCache) -> World:
        """Read everything afresh (WorldCache.read reads only what changed)."""
        revision = store.revision()
        jobs = {j.id: j for j in store.list_jobs(ACTIVE)}
        live: dict[int, list[PodRecord]] = {}
        for pod in store.pods(live_only=True):
            live.setdefault(pod.job_id, []).append(pod)
        missing = [job_id for job_id in live if job_id not in jobs]
        for chunk in _chunks(missing):
            jobs.update((j.id, j) for j in store.list_jobs(ids=chunk))
        if missing:
            jobs = dict(sorted(jobs.items()))  # FIFO (id) order throughout
        specs: dict[int, JobSpec] = {}
        broken: dict[int, tuple[JobRecord, Exception]] = {}
        for job_id, record in jobs.items():
            try:
                specs[job_id] = cache.job(record)
            except Exception as exc:  # contained: one bad object must not stop the loop
                broken[job_id] = (record, exc)
            else:
                jobs[job_id] = without_manifest(record)
        for job_id in broken:
            del jobs[job_id]
        holding = {job_id: r for job_id, r in jobs.items() if r.phase in HOLDING}
        return cls(jobs, specs, live, broken, revision, holding)

    def snapshot(
        self,
        now: float,
        nodes: Sequence[Node],
        queues: Sequence[Queue],
        flavors: Sequence[ResourceFlavor],
        config: SchedulerConfig,
        checkpoints: Mapping[int, float] | None = None,
        held: Sequence[HeldCapacity] = (),
        memo: dict[tuple[int, int, float | None], AdmittedWorkload] | None = None,
    ) -> tuple[Snapshot, dict[str, str]]:
        """Return the scheduler's snapshot, and reasons for pending jobs it must not see yet
        (their previous attempt's pods are still stopping). ``checkpoints``: when each job
        (by id) last reported a completed checkpoint. ``held``: capacity the backend reports
        in use by workloads phalanx did not place. ``memo``: admitted workloads of earlier
        snapshots by (job id, resourceVersion, checkpoint), reused while a job has not been
        written (its pods are written with it) and replaced by this snapshot's."""
        checkpoints = checkpoints or {}
        kept: dict[tuple[int, int, float | None], AdmittedWorkload] = {}
        admitted: list[AdmittedWorkload] = []
        reservations: list[Reservation] = []
        pending: list[PendingWorkload] = []
        held_back: dict[str, str] = {}
        for job_id, job in self.jobs.items():
            if job.phase in HOLDING:
                key = (job_id, job.resource_version, checkpoints.get(job_id))
                cached = memo.get(key) if memo is not None else None
                if cached is not None:
                    admitted.append(cached)
                    kept[key] = cached
                    continue
                spec = self.specs[job_id]
                pods = self.live_pods.get(job_id, [])
                placed = tuple(
                    PlacedPod(
                        PodPlacement(p.pod_set, p.index, p.node, devices_of(p)),
                        pod_resources(spec, p.pod_set),
                    )
                    for p in pods
                )
                workload = AdmittedWorkload(
                    job.name,
                    job.queue,
                    job.flavor,
                    job.priority,
                    placed,
                    job.admitted_at or 0.0,
                    job.phase == JobPhase.PREEMPTED.value,
                    checkpoints.get(job_id),
                )
                admitted.append(workload)
                kept[key] = workload
                continue
            spec = self.specs[job_id]
            pods = self.live_pods.get(job_id, [])
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
        if memo is not None:
            memo.clear()
            memo.update(kept)
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


#: Rows asked for by one SQL ``IN`` (SQLite allows a few thousand bound parameters at most).
_CHUNK = 500
#: More changes than this since the last read: read everything again instead.
_MAX_CHANGES = 20_000
#: Reads whose changed job ids a WorldCache keeps for ``changed_since``.
_EPOCHS_KEPT = 1024
#: Kinds whose writes change nothing read as configuration through ``config_revision``
#: (queues, flavors, node health): a pipeline run's status is written at every step, and
#: would otherwise have them all read again on the next pass.
_NOT_CONFIGURATION = frozenset({"PipelineRun", "Pipeline"})


def _chunks(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


class WorldCache:
    """``World.read`` kept current from the store's revision log: the first read (and one
    after the log was compacted past the last read, or after very many writes) reads every
    active job; later reads fetch only the jobs the log names since, with their live pods.
    A tick with 10,000 jobs waiting then costs what changed, not what is stored.

    This relies on the store writing a job's pods only together with the job (a transition,
    a delete), so that every change to the World's pods is in the log under the job's name.
    Thread-safe: the loop and the read side share one cache.
    """

    def __init__(self, store: Store, specs: SpecCache) -> None:
        self.store = store
        self.specs = specs
        self._lock = threading.Lock()
        self._revision: int | None = None
        self._jobs: dict[int, JobRecord] = {}
        self._specs: dict[int, JobSpec] = {}
        self._live: dict[int, list[PodRecord]] = {}
        self._broken: dict[int, tuple[JobRecord, Exception]] = {}
        self._ids: dict[str, int] = {}
        #: Ids of the cached jobs holding capacity (World.holding).
        self._holding: set[int] = set()
        #: Full reads so far (the first, and each fallback), for tests and stats.
        self.full_reads = 0
        #: The revision of the newest write of anything but a job (a queue, a flavor, node
        #: health) that reads have seen (at a full read, that read's revision: anything may
        #: have changed before it); None before the first read. Caches of configuration
        #: (SpecCache, HealthTracker) are current while it stays where it was.
        self.config_revision: int | None = None
        #: Reads (and notes) that changed a cached job count as epochs: (epoch, the ids of
        #: the jobs they changed, added or removed), the last ``_EPOCHS_KEPT`` of them; a full
        #: read changes everything (``_full_epoch``).
        self._epoch = 0
        self._full_epoch = 0
        self._epochs: deque[tuple[int, frozenset[int]]] = deque()
        self._forgotten_epoch = 0
        #: The last World handed out, with the (revision, epoch) it was made at.
        self._last_world: tuple[tuple[int, int], World] | None = None

    def changed_since(self, epoch: int) -> frozenset[int] | None:
        """The ids of the jobs whose cached record or live pods changed (or that came or
        went) in the reads after ``epoch`` (a ``World.epoch``); None when that is not known
        (a full read happened since, or those reads are no longer kept): anything may have
        changed. It may name more jobs than changed, never fewer."""
        with self._lock:
            if epoch < self._full_epoch or epoch < self._forgotten_epoch:
                return None
            out: set[int] = set()
            for at, ids in reversed(self._epochs):
                if at <= epoch:
                    break
                out |= ids
            return frozenset(out)

    def _changed(self, ids: Sequence[int] | set[int]) -> None:
        if not ids:
            return
        self._epoch += 1
        self._epochs.append((self._epoch, frozenset(ids)))
        if len(self._epochs) > _EPOCHS_KEPT:
            self._forgotten_epoch = self._epochs.popleft()[0]

    def read(self) -> World:
        """Return the World as of now."""
        with self._lock:
            after = self._revision
            if after is None:
                return self._read_all()
            changes, oldest = self.store.changes(after, limit=_MAX_CHANGES)
            if (after > 0 and oldest > after + 1) or len(changes) >= _MAX_CHANGES:
                return self._read_all()  # compacted past our last read, or a flood
            if changes:
                self._revision = changes[-1].revision
                for change in changes:
                    if change.kind != "Job" and change.kind not in _NOT_CONFIGURATION:
                        self.config_revision = change.revision
                latest = {c.name: c.revision for c in changes if c.kind == "Job"}
                names = sorted(n for n, revision in latest.items() if not self._has(n, revision))
                if names:
                    self._changed(self._refresh(names))
            return self._world()

    def note(self, records: Sequence[JobRecord]) -> None:
        """Take in what the caller has just written itself (records as the store now holds
        them), so that the next read need not fetch them again."""
        with self._lock:
            noted = []
            for record in records:
                cached = self._jobs.get(record.id)
                if cached is not None and cached.resource_version < record.resource_version:
                    self._jobs[record.id] = without_manifest(record)
                    self._note_phase(record)
                    noted.append(record.id)
            self._changed(noted)

    def _has(self, name: str, revision: int) -> bool:
        """Whether the cache holds job ``name`` as of ``revision`` or later (it noted that
        write itself)."""
        job_id = self._ids.get(name)
        record = self._jobs.get(job_id) if job_id is not None else None
        return record is not None and record.resource_version >= revision

    def _read_all(self) -> World:
        world = World.read(self.store, self.specs)
        self.full_reads += 1
        self._epoch += 1
        self._full_epoch = self._epoch
        self._epochs.clear()
        self._revision = self.config_revision = world.revision
        self._jobs, self._specs, self._live = world.jobs, world.specs, world.live_pods
        self._broken = world.broken
        self._holding = set(world.holding)
        self._ids = {r.name: i for i, r in (*self._jobs.items(), *self._broken_records())}
        return self._world()

    def _broken_records(self) -> list[tuple[int, JobRecord]]:
        return [(job_id, record) for job_id, (record, _) in self._broken.items()]

    def _refresh(self, names: Sequence[str]) -> set[int]:
        """Read the jobs named ``names`` again (a job may be gone, new or re-created).
        Returns the ids of the jobs it removed or read."""
        touched: set[int] = set()
        # Jobs read again keep their place in ``_jobs`` (FIFO, by id, as World.read): those
        # not read back are dropped at the end, new ones come after the others.
        stale: dict[int, None] = {}
        for name in names:
            job_id = self._ids.pop(name, None)
            if job_id is not None:
                touched.add(job_id)
                for table in (self._specs, self._live, self._broken):
                    table.pop(job_id, None)
                self._holding.discard(job_id)
                stale[job_id] = None
        last_id = next(reversed(self._jobs), 0)
        is_ordered = True
        for chunk in _chunks(names):
            # Manifests only of jobs whose spec is not parsed yet (jobs applied through this
            # process are parsed already): decoding them is most of the cost of a read.
            records = self.store.list_jobs(names=chunk, manifests=False)
            unparsed = [r.id for r in records if not self.specs.has(r)]
            if unparsed:
                full = {r.id: r for r in self.store.list_jobs(ids=unparsed)}
                records = [full.get(r.id, r) for r in records]
            live: dict[int, list[PodRecord]] = {}
            for pod in self.store.pods([r.id for r in records], live_only=True):
                live.setdefault(pod.job_id, []).append(pod)
            for record in records:
                pods = live.get(record.id)
                if record.phase not in ACTIVE and not pods:
                    continue
                touched.add(record.id)
                self._ids[record.name] = record.id
                if pods:
                    self._live[record.id] = pods
                try:
                    self._specs[record.id] = self.specs.job(record)
                except Exception as exc:  # contained, as in World.read
                    self._broken[record.id] = (record, exc)
                    continue
                if record.id not in self._jobs:
                    is_ordered = is_ordered and record.id > last_id
                    last_id = max(last_id, record.id)
                self._jobs[record.id] = without_manifest(record)
                stale.pop(record.id, None)
                self._note_phase(record)
        for job_id in stale:
            self._jobs.pop(job_id, None)
        if not is_ordered:
            self._jobs = dict(sorted(self._jobs.items()))
        return touched

    def _note_phase(self, record: JobRecord) -> None:
        if record.phase in HOLDING:
            self._holding.add(record.id)
        else:
            self._holding.discard(record.id)

    def _world(self) -> World:
        # Copies: the caller may keep its World while later reads change the cache. While
        # neither the revision nor the cached jobs moved (every change of them is an
        # epoch), the last copy is handed out again: callers only read a World.
        key = (self._revision or 0, self._epoch)
        last = self._last_world
        if last is not None and last[0] == key:
            return last[1]
        jobs = self._jobs
        world = World(
            dict(jobs),
            dict(self._specs),
            dict(self._live),
            dict(self._broken),
            self._revision or 0,
            {job_id: jobs[job_id] for job_id in sorted(self._holding) if job_id in jobs},
            self._epoch,
        )
        self._last_world = (key, world)
        return world


@dataclass(frozen=True, slots=True)
class CycleInputs:
    """What a scheduling cycle reads besides the clock and the scheduler's settings: two
    cycles with equal inputs decide the same, but for pending jobs whose backoff ended in
    between (``next_backoff_end``) and the order of preemption victims (by work lost so far).
    ``revision``: the store's, which every write of a job, queue or flavor moves on."""

    revision: int
    nodes: tuple[Node, ...]
    queues: tuple[Queue, ...]
    flavors: tuple[ResourceFlavor, ...]
    held: tuple[HeldCapacity, ...]
    #: (job id, when it last checkpointed) of jobs holding capacity.
    checkpoints: tuple[tuple[int, float], ...]


def next_backoff_end(snapshot: Snapshot) -> float:
    """When the first pending job of ``snapshot`` still in backoff may be admitted
    (infinity when none is)."""
    return min(
        (w.not_before for w in snapshot.pending if w.not_before > snapshot.now), default=math.inf
    )


def _foreign_reservations(
    held: Sequence[HeldCapacity], nodes: Sequence[Node], live: Mapping[int, list[PodRecord]]
) -> list[Reservation]:
    """Turn capacity held by others into reservations. Whole GPUs they hold are pinned to the
    highest-indexed devices phalanx does not use on that node: which physical devices the
    device plugin gave them is unknown, only how many, and any choice keeps the count right."""
    if not held:
        return []
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
