"""The read side: views of jobs, queues, flavors, nodes and logs for the API, apart from the
loop. Reads the store and the backend; writes nothing and takes no lock of the loop's.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

from phalanx.backends.base import Backend
from phalanx.controllers.errors import NotFoundError
from phalanx.controllers.health import HealthTracker, apply_quarantine
from phalanx.controllers.lifecycle import pod_name
from phalanx.controllers.progress import JobProgress, read_progress
from phalanx.controllers.state import (
    HOLDING,
    SpecCache,
    World,
    WorldCache,
    devices_of,
    pod_resources,
)
from phalanx.controllers.views import (
    EventView,
    FlavorUsage,
    FlavorView,
    JobView,
    MetadataView,
    NodeFailureView,
    NodeView,
    Page,
    PodView,
    ProgressView,
    QuarantineView,
    QueueView,
)
from phalanx.model.metadata import LabelSelector
from phalanx.model.objects import JobPhase, Node, PodPhase
from phalanx.model.resources import RESOURCE_NAMES, Resources
from phalanx.model.specs import SpecError, parse_job
from phalanx.store import Change, JobRecord, ObjectRecord, PodRecord, Store


class Queries:
    """Views for the API; see the module docstring."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        specs: SpecCache,
        node_health: HealthTracker,
        data_dir: Path,
        *,
        world: WorldCache | None = None,
    ) -> None:
        self.store = store
        self.backend = backend
        self.specs = specs
        self.node_health = node_health
        self.data_dir = data_dir
        #: Active jobs and live pods (shared with the loop when it passes its own).
        self.world = world if world is not None else WorldCache(store, specs)
        self._views: OrderedDict[tuple[int, int], JobView] = OrderedDict()
        self._views_lock = threading.Lock()
        self._pages: OrderedDict[
            tuple[int, str | None, LabelSelector | None, int, int], Page[tuple[int, int]]
        ] = OrderedDict()

    def _job(self, name: str) -> JobRecord:
        job = self.store.get_job(name)
        if job is None:
            raise NotFoundError("job", name)
        return job

    def get_job(self, name: str, *, with_events: bool = True) -> JobView:
        """Return a job with the pods of every attempt and its events; with ``with_events``
        False, as lists show it (the current attempt's pods, no events). Raises
        NotFoundError."""
        job = self._job(name)
        return self._view(job, self.store.pods([job.id]), with_events=with_events)

    def list_jobs(self, queue: str | None = None) -> list[JobView]:
        """Return all jobs (optionally of one queue), oldest first, with their latest pods."""
        keys = [
            (job_id, version) for job_id, version, _ in self.store.list_job_versions(queue=queue)
        ]
        views = self.job_views(keys)
        return [views[job_id] for job_id, _ in keys if job_id in views]

    def page_jobs(
        self,
        queue: str | None = None,
        selector: LabelSelector | None = None,
        limit: int = 100,
        continue_token: str = "",
    ) -> Page[JobView]:
        """One page of jobs in FIFO order, of one queue and matching ``selector`` if given.
        ``continue_token`` is the previous page's. Raises ValueError for a token this server
        did not hand out."""
        keys = self.page_job_keys(queue, selector, limit, continue_token)
        views = self.job_views(keys.items)
        return Page(
            tuple(views[job_id] for job_id, _ in keys.items if job_id in views),
            keys.continue_token,
            keys.resource_version,
        )

    def page_job_keys(
        self,
        queue: str | None = None,
        selector: LabelSelector | None = None,
        limit: int = 100,
        continue_token: str = "",
    ) -> Page[tuple[int, int]]:
        """As page_jobs, but the page's jobs as (job id, resourceVersion) only: for a reader
        that keeps its own renderings of jobs by version (the API's JSON) and asks
        ``job_views`` for the others. A page asked for again at the same store revision is
        the one picked before (every write moves the revision on, and writes are serialised,
        so nothing it depends on changed). Raises ValueError for a token this server did not
        hand out."""
        revision = self.store.revision()
        try:
            after = int(continue_token) if continue_token else 0
        except ValueError:
            raise ValueError(
                f"continue token {continue_token!r} is not one this server gave; "
                "start again without it"
            ) from None
        memo = (revision, queue, selector, limit, after)
        with self._views_lock:
            page = self._pages.get(memo)
            if page is not None:
                self._pages.move_to_end(memo)
                return page
        picked: list[tuple[int, int]] = []  # (job id, resourceVersion)
        has_more = False
        while len(picked) <= limit:
            batch = self.store.list_job_versions(queue=queue, after_id=after, limit=limit + 1)
            if not batch:
                break
            after = batch[-1][0]
            picked += [
                (job_id, version)
                for job_id, version, labels in batch
                if selector is None or selector.matches(labels)
            ]
            if len(batch) <= limit:
                break
        if len(picked) > limit:
            picked, has_more = picked[:limit], True
        page = Page(tuple(picked), str(picked[-1][0]) if has_more else "", revision)
        with self._views_lock:
            self._pages[memo] = page
            if len(self._pages) > self.PAGE_CACHE_SIZE:
                self._pages.popitem(last=False)
        return page

    #: Pages picked (job ids and versions), kept by (revision, queue, selector, limit,
    #: position): the pages clients poll between writes.
    PAGE_CACHE_SIZE = 16

    #: List views kept, least recently used first out: the first pages, which clients poll
    #: (about 5 KiB each, most of it the manifest).
    VIEW_CACHE_SIZE = 1024

    def job_views(self, keys: Sequence[tuple[int, int]]) -> dict[int, JobView]:
        """The list views (current attempt's pods, no events) of the jobs ``keys`` name by
        (id, resourceVersion), by job id. A view is built once per resourceVersion: every
        write of a job or its pods moves it on, so a cached view is current. Views of jobs
        holding capacity are built afresh each time (their progress comes from files their
        pods write, which move no version). A job deleted meanwhile is left out."""
        views: dict[int, JobView] = {}
        with self._views_lock:
            for key in keys:
                view = self._views.get(key)
                if view is not None:
                    self._views.move_to_end(key)
                    views[key[0]] = view
        missing = [job_id for job_id, _ in keys if job_id not in views]
        for chunk in (missing[i : i + 500] for i in range(0, len(missing), 500)):
            records = self.store.list_jobs(ids=chunk)
            pods: dict[int, list[PodRecord]] = {}
            for pod in self.store.pods(chunk):
                pods.setdefault(pod.job_id, []).append(pod)
            for record in records:
                view = self._view(record, pods.get(record.id, []), with_events=False)
                views[record.id] = view
                if record.phase not in HOLDING:
                    with self._views_lock:
                        self._views[(record.id, record.resource_version)] = view
                        if len(self._views) > self.VIEW_CACHE_SIZE:
                            self._views.popitem(last=False)
        return views

    def _view(self, job: JobRecord, pods: list[PodRecord], *, with_events: bool) -> JobView:
        current = [p for p in pods if p.attempt == job.attempt] if job.attempt else []
        shown = pods if with_events else current
        pod_count, request = job_size(job.manifest)
        return JobView(
            name=job.name,
            manifest=job.manifest,
            queue=job.queue,
            priority=job.priority,
            phase=JobPhase(job.phase),
            message=job.message,
            reason_code=job.reason_code,
            reason_facts=dict(job.reason_facts),
            created_at=job.created_at,
            admitted_at=job.admitted_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            flavor=job.flavor,
            attempt=job.attempt,
            restarts=job.restarts,
            metadata=metadata_view(job),
            pod_count=pod_count,
            request=request,
            progress=_progress_view(read_progress(self.data_dir, job)) if job.attempt else None,
            pods=tuple(
                PodView(
                    p.pod_id,
                    p.pod_set,
                    p.index,
                    p.attempt,
                    p.node,
                    devices_of(p),
                    PodPhase(p.phase),
                    p.exit_code,
                    p.reason,
                    p.started_at,
                    p.finished_at,
                )
                for p in shown
            ),
            events=tuple(
                EventView(e.at, e.type, e.reason, e.message, dict(e.facts))
                for e in self.store.events(job.id)
            )
            if with_events
            else (),
        )

    def _usage(
        self, world: World
    ) -> tuple[
        dict[tuple[str, str], Resources],
        dict[str, Resources],
        dict[str, dict[int, int]],
        dict[str, list[str]],
    ]:
        """Live usage per (queue, flavor) and per node, with devices and pod names."""
        per_queue: dict[tuple[str, str], Resources] = {}
        per_node: dict[str, Resources] = {}
        devices: dict[str, dict[int, int]] = {}
        names: dict[str, list[str]] = {}
        for job_id, pods in world.live_pods.items():
            if job_id not in world.jobs:  # its spec no longer parses (see World.broken)
                continue
            job, spec = world.jobs[job_id], world.specs[job_id]
            for pod in pods:
                r = pod_resources(spec, pod.pod_set)
                if job.phase in HOLDING:
                    key = (job.queue, job.flavor)
                    per_queue[key] = per_queue.get(key, Resources()) + r
                per_node[pod.node] = per_node.get(pod.node, Resources()) + r
                for share in devices_of(pod):
                    node_devices = devices.setdefault(pod.node, {})
                    node_devices[share.index] = node_devices.get(share.index, 0) + share.milli
                names.setdefault(pod.node, []).append(f"{job.name}/{pod_name(pod)}")
        return per_queue, per_node, devices, names

    def list_queues(self, selector: LabelSelector | None = None) -> list[QueueView]:
        """Return queues (those whose labels match ``selector`` if given) with their quota
        use and job counts."""
        world = self.world.read()
        per_queue, _, _, _ = self._usage(world)
        records = {o.name: o for o in self.store.list_objects("Queue")}
        # Pending and holding jobs are the World's (kept current from the revision log), not
        # a read of every waiting job's row on each request.
        jobs = [
            j
            for j in (*world.jobs.values(), *(record for record, _ in world.broken.values()))
            if j.phase == JobPhase.PENDING.value or j.phase in HOLDING
        ]
        out = []
        for queue in self.specs.queues(self.store):
            record = records.get(queue.name)
            if record is None or (selector is not None and not selector.matches(record.labels)):
                continue
            usage = tuple(
                FlavorUsage(
                    fq.flavor,
                    per_queue.get((queue.name, fq.flavor), Resources()),
                    Resources(*(fq.quota(r).nominal for r in RESOURCE_NAMES)),
                )
                for fq in queue.flavors
            )
            pending = sum(
                1 for j in jobs if j.queue == queue.name and j.phase == JobPhase.PENDING.value
            )
            admitted = sum(1 for j in jobs if j.queue == queue.name and j.phase in HOLDING)
            out.append(
                QueueView(
                    queue.name,
                    record.manifest,
                    queue.cohort,
                    usage,
                    pending,
                    admitted,
                    metadata_view(record),
                )
            )
        return out

    def get_queue(self, name: str) -> QueueView:
        """Return one queue. Raises NotFoundError."""
        for view in self.list_queues():
            if view.name == name:
                return view
        raise NotFoundError("queue", name)

    def list_flavors(self) -> list[Mapping[str, object]]:
        """Return the resource flavors' manifests."""
        return [m for _, m, _ in self.store.list_config("ResourceFlavor")]

    def flavors(self, selector: LabelSelector | None = None) -> list[FlavorView]:
        """Return the resource flavors (those whose labels match ``selector`` if given), by
        name, with their metadata."""
        return [
            FlavorView(o.manifest, metadata_view(o))
            for o in self.store.list_objects("ResourceFlavor")
            if selector is None or selector.matches(o.labels)
        ]

    def get_flavor(self, name: str) -> FlavorView:
        """Return one resource flavor. Raises NotFoundError."""
        record = self.store.get_object("ResourceFlavor", name)
        if record is None:
            raise NotFoundError("resourceflavor", name)
        return FlavorView(record.manifest, metadata_view(record))

    # ---- the revision log, for watches ----

    def revision(self) -> int:
        """The store's newest revision: a list read after it, watched from it, misses
        nothing."""
        return self.store.revision()

    def changes(self, after: int, limit: int = 1000) -> tuple[list[Change], int]:
        """Writes after revision ``after`` in order (at most ``limit``) and the oldest
        revision the log still holds; see Store.changes."""
        return self.store.changes(after, limit)

    def list_nodes(self) -> list[NodeView]:
        """Return the backend's nodes with what is in use on each."""
        _, per_node, devices, names = self._usage(self.world.read())
        health = self.node_health.all()
        nodes: list[Node] = sorted(
            apply_quarantine(self.backend.nodes(), health), key=lambda n: n.name
        )
        out = []
        for n in nodes:
            h = health.get(n.name)
            out.append(
                NodeView(
                    n,
                    per_node.get(n.name, Resources()),
                    devices.get(n.name, {}),
                    tuple(names.get(n.name, ())),
                    quarantine=None
                    if h is None or not h.is_quarantined
                    else QuarantineView(
                        h.quarantined_at or 0.0,
                        h.quarantine_until,
                        h.quarantine_reason,
                        "" if h.quarantine is None else h.quarantine.code.value,
                        {} if h.quarantine is None else h.quarantine.plain_facts(),
                    ),
                    failures=()
                    if h is None
                    else tuple(
                        NodeFailureView(f.at, f.job, f.attempt, f.pod, f.reason) for f in h.failures
                    ),
                )
            )
        return out

    def get_node(self, name: str) -> NodeView:
        """Return one node. Raises NotFoundError."""
        for view in self.list_nodes():
            if view.node.name == name:
                return view
        raise NotFoundError("node", name)

    def read_logs(
        self, job: str, pod: str | None = None, attempt: int | None = None, offset: int = 0
    ) -> tuple[bytes, int, bool]:
        """Return (bytes from ``offset``, next offset, whether the pod has finished) of one pod's
        output: ``pod`` is ``<pod set>-<index>`` (default: the first), ``attempt`` the latest
        unless given. Raises NotFoundError for an unknown job, pod or attempt."""
        record = self._job(job)
        pods = self.store.pods([record.id])
        if not pods:
            raise NotFoundError(
                "pod",
                job,
                f'job "{job}" has no pods yet ({record.phase}); see `phalanx describe job {job}`',
            )
        wanted_attempt = attempt if attempt is not None else max(p.attempt for p in pods)
        matches = [
            p for p in pods if p.attempt == wanted_attempt and (pod is None or pod_name(p) == pod)
        ]
        if not matches:
            names = sorted({pod_name(p) for p in pods})
            raise NotFoundError(
                "pod",
                pod or "",
                f'job "{job}" has no pod {pod or "(any)"} in attempt {wanted_attempt}; its pods: {", ".join(names)}',
            )
        target = matches[0]
        data = self.backend.read_logs(target.pod_id, offset)
        finished = PodPhase(target.phase).is_finished
        return data, offset + len(data), finished and not data


def job_size(manifest: Mapping[str, object]) -> tuple[int, Resources]:
    """(pod count, request of all pods together) of a job's stored manifest; (0, nothing)
    when it no longer parses."""
    try:
        spec = parse_job(manifest)
    except SpecError:
        return 0, Resources()
    return spec.pod_count, spec.total_request


def metadata_view(record: JobRecord | ObjectRecord) -> MetadataView:
    """Return the metadata of a stored job or object."""
    return MetadataView(
        name=record.name,
        uid=record.uid,
        labels=dict(record.labels),
        annotations=dict(record.annotations),
        owner_references=tuple(dict(o) for o in record.owner_refs),
        resource_version=record.resource_version,
        generation=record.generation,
        created_at=record.created_at,
    )


def _progress_view(progress: JobProgress) -> ProgressView | None:
    if progress.checkpoint is None and progress.step is None:
        return None
    c = progress.checkpoint
    return ProgressView(
        step=progress.step,
        reported_at=progress.progress_at,
        checkpoint_step=None if c is None else c.step,
        checkpoint_at=None if c is None else c.at,
        checkpoint_path="" if c is None else c.path,
        total_steps=progress.total_steps,
        expected_end_at=progress.expected_end_at(),
    )
