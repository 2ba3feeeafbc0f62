"""An in-memory store with the SQL store's semantics, for the simulator's full mode.

``MemoryStore`` answers every public method of ``Store`` (it subclasses it, so everything
typed ``Store`` takes it) from dicts in this process, with the same rules: every write bumps
the object's ``resource_version`` to a new revision of one revision log; transitions are
guarded (expected phase and resourceVersion, the job lifecycle's table, the lease fence) and
all or nothing — a refused one writes nothing, and one that breaks a constraint (a duplicate
pod id, a pod or event of a job that does not exist, an unknown column) raises and writes
nothing of its batch; applies are all or nothing per call. JSON columns are kept encoded, so
what is written round-trips exactly as it does through SQL; each row's JSON is decoded once per
version (``_Decoded``; a pod's devices and env, once per write of them: a pod's phase changes
more often than they do) rather than on every read: every read returns a record object of its
own, and its JSON values (manifest, facts, labels, devices, env...) are shared with the other
reads of that version, so callers treat them as read-only (the controllers build new dicts
for what they write; nothing in the store's own state is reachable from a record).

The same contract tests run against it and the SQL store (tests/integration/store). One lock
serialises every call (the control loop and the API's threads may share it). Nothing is
persistent: it is for virtual-time runs, never for a server (``IdentityStore`` and the
migrations need SQL). Must not import controllers, backends, api, client or cli.
"""

from __future__ import annotations

import bisect
import json
import json.encoder
import json.scanner
import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from phalanx.store.records import (
    Change,
    EventRecord,
    JobRecord,
    Lease,
    ObjectRecord,
    PodRecord,
    Transition,
)
from phalanx.store.sql import (
    FINISHED_POD_PHASES,
    ApplyRequest,
    Store,
    StoreError,
    _refusal,
    metadata_of,
)

__all__ = ["MEMORY_URL", "ConstraintError", "MemoryStore"]

log = logging.getLogger(__name__)

#: The URL a MemoryStore reports (``Store.url``); the simulator's driver opens one for it.
MEMORY_URL = "memory://"

#: Columns of a job a transition may write, and which of them hold JSON.
_JOB_COLUMNS = frozenset(
    (
        "name",
        "uid",
        "manifest",
        "queue",
        "priority",
        "phase",
        "reason_code",
        "message",
        "flavor",
        "attempt",
        "restarts",
        "not_before",
        "is_deleting",
        "created_at",
        "admitted_at",
        "started_at",
        "finished_at",
        "reason_facts",
        "labels",
        "annotations",
        "owner_refs",
        "resource_version",
        "generation",
        "conditions",
    )
)
_JOB_JSON = frozenset(
    ("manifest", "reason_facts", "labels", "annotations", "owner_refs", "conditions")
)
_POD_COLUMNS = frozenset(
    (
        "job_id",
        "pod_set",
        "index",
        "attempt",
        "node",
        "devices",
        "env",
        "phase",
        "exit_code",
        "reason",
        "message",
        "created_at",
        "started_at",
        "finished_at",
    )
)
_POD_JSON = frozenset(("devices", "env"))
_FINISHED = frozenset(FINISHED_POD_PHASES)

_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=True)


class _Codec(threading.local):
    """``_ENCODER.encode`` and ``json.loads`` for the store's own texts, without the work
    both redo on every call (building the C encoder; checks for text a person wrote): the
    store encodes and decodes several times per write, and a replay writes a hundred
    thousand times. The same texts and values; one per thread, as the encoder keeps state
    while it works."""

    def __init__(self) -> None:
        # The scanner json.loads uses: make_scanner takes the decoder as its context.
        self._scan: Any = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
        self._start()

    def _start(self) -> None:
        # The arguments JSONEncoder.iterencode gives the C encoder for _ENCODER.
        make = json.encoder.c_make_encoder  # type: ignore[attr-defined]
        self._markers: dict[int, Any] | None = None
        self._encoder: Any = None
        if make is not None:
            self._markers = {}
            self._encoder = make(
                self._markers,
                _ENCODER.default,
                json.encoder.encode_basestring_ascii,
                None,
                _ENCODER.key_separator,
                _ENCODER.item_separator,
                _ENCODER.sort_keys,
                _ENCODER.skipkeys,
                _ENCODER.allow_nan,
            )

    def encode(self, value: Any) -> str:
        """``_ENCODER.encode(value)``; raises what it raises."""
        encoder = self._encoder
        if encoder is None or isinstance(value, str):
            return _ENCODER.encode(value)
        try:
            return "".join(encoder(value, 0))
        except BaseException:
            self._start()  # the failed pass may have left its marks of values being encoded
            raise

    def decode(self, text: str) -> Any:
        """``json.loads(text)`` of a text the store encoded; raises what it raises."""
        try:
            value, end = self._scan(text, 0)
        except StopIteration:
            return json.loads(text)  # not JSON: raises the error json.loads does
        if end != len(text):
            return json.loads(text)
        return value


_codec = _Codec()


def _encode(value: Any) -> str:
    return _codec.encode(value)


def _decode(text: str) -> Any:
    return _codec.decode(text)


class _Decoded:
    """The decoded JSON columns of rows, by row key, for the rows' current versions: a write
    of a row's columns kept here drops its entry (``drop``), the next read decodes it again
    (writes of its other columns leave it). Decoding JSON on
    every read was most of the simulator's cost of reading jobs and pods. Equal texts of
    small values (``{}``, a pod set's env, a reason's facts) decode to one shared value: up
    to ``SHARED`` of them are kept, then the memo starts again."""

    __slots__ = ("_columns", "_shared", "_values")

    #: Distinct small texts whose decoded value is shared.
    SHARED = 4096
    #: Texts longer than this (manifests) are decoded per row, not looked up.
    SHARED_CHARS = 512

    def __init__(self, columns: tuple[str, ...]) -> None:
        self._columns = columns
        self._values: dict[Any, tuple[Any, ...]] = {}
        self._shared: dict[str, Any] = {}

    def of(self, key: Any, row: dict[str, Any]) -> tuple[Any, ...]:
        found = self._values.get(key)
        if found is None:
            found = self._values[key] = tuple([self._value(row[c]) for c in self._columns])
        return found

    def _value(self, text: str) -> Any:
        shared = self._shared
        value = shared.get(text)
        if value is None:
            value = _decode(text)
            if len(text) <= self.SHARED_CHARS:
                if len(shared) >= self.SHARED:
                    shared.clear()
                shared[text] = value
        return value

    def drop(self, key: Any) -> None:
        self._values.pop(key, None)


class ConstraintError(StoreError, ValueError):
    """A write broke one of the store's constraints (what a database's IntegrityError is to
    the SQL store): nothing of its transaction was written."""


@dataclass(slots=True)
class _Event:
    id: int
    job_id: int | None
    at: float
    type: str
    reason: str
    message: str
    kind: str
    name: str
    facts: str
    #: ``facts`` decoded, at the first read (an event never changes).
    decoded: dict[str, Any] | None = None

    def record(self) -> EventRecord:
        facts = self.decoded
        if facts is None:
            facts = self.decoded = _decode(self.facts)
        return EventRecord(
            self.at,
            self.type,
            self.reason,
            self.message,
            self.job_id or 0,
            facts,
            self.kind,
            self.name,
        )


@dataclass(slots=True)
class _Object:
    kind: str
    name: str
    uid: str
    manifest: str
    labels: str
    annotations: str
    owner_refs: str
    resource_version: int
    generation: int
    created_at: float
    updated_at: float

    def record(self) -> ObjectRecord:
        return ObjectRecord(
            self.kind,
            self.name,
            self.uid,
            _decode(self.manifest),
            _decode(self.labels),
            _decode(self.annotations),
            _decode(self.owner_refs),
            self.resource_version,
            self.generation,
            self.created_at,
            self.updated_at,
        )


#: The JSON columns of a job decoded together (the manifest, the largest, is decoded apart).
_JOB_JSON_READ = ("reason_facts", "labels", "annotations", "owner_refs", "conditions")


def _job_record(
    row: dict[str, Any], decoded: tuple[Any, ...], manifest: dict[str, Any]
) -> JobRecord:
    reason_facts, labels, annotations, owner_refs, conditions = decoded
    return JobRecord(
        row["id"],
        row["name"],
        row["uid"],
        manifest,
        row["queue"],
        row["priority"],
        row["phase"],
        row["reason_code"],
        row["message"],
        row["flavor"],
        row["attempt"],
        row["restarts"],
        row["not_before"],
        row["is_deleting"],
        row["created_at"],
        row["admitted_at"],
        row["started_at"],
        row["finished_at"],
        reason_facts,
        labels,
        annotations,
        owner_refs,
        row["resource_version"],
        row["generation"],
        conditions,
    )


def _pod_record(row: dict[str, Any], decoded: tuple[Any, ...]) -> PodRecord:
    devices, env = decoded
    return PodRecord(
        row["pod_id"],
        row["job_id"],
        row["pod_set"],
        row["index"],
        row["attempt"],
        row["node"],
        devices,
        env,
        row["phase"],
        row["created_at"],
        row["exit_code"],
        row["reason"],
        row["message"],
        row["started_at"],
        row["finished_at"],
    )


def _pod_key(row: dict[str, Any]) -> tuple[int, int, str, int]:
    return row["job_id"], row["attempt"], row["pod_set"], row["index"]


def _event_facts(event: EventRecord, change: Transition, values: dict[str, Any]) -> str:
    """The facts of ``event``, a transition's, encoded. An event most often says the reason
    its job's ``reason_facts`` hold, as another dict of the very same values: their text is
    then the one just encoded for the job, not encoded again."""
    facts, written = event.facts, change.job.get("reason_facts")
    if type(written) is dict and _same_items(facts, written):
        text: str = values["reason_facts"]
        return text
    return _encoded(dict(facts), f"event {event.reason}'s facts")


def _same_items(a: Any, b: dict[str, Any]) -> bool:
    """Whether mapping ``a`` holds the very objects of ``b`` under the same text keys in the
    same order, so that both encode to the same text (equal values alone may not: ``1`` and
    ``True`` are equal)."""
    if a is b:
        return True
    if len(a) != len(b):
        return False
    for (key_a, value_a), (key_b, value_b) in zip(a.items(), b.items(), strict=True):
        if value_a is not value_b or type(key_a) is not str or key_a != key_b:
            return False
    return True


def _encoded(value: Any, what: str) -> str:
    try:
        return _encode(value)
    except (TypeError, ValueError) as exc:
        raise ConstraintError(f"{what} cannot be stored as JSON: {exc}") from exc


class MemoryStore(Store):
    """The store in this process's memory (module docstring)."""

    @property
    def has_quick_reads(self) -> bool:
        return True

    def __init__(self) -> None:  # no engine: every method of Store is answered here
        self.url = MEMORY_URL
        self.fence: tuple[str, str, int] | None = None
        self._lock = threading.RLock()
        self._objects: dict[str, dict[str, _Object]] = {}
        #: Jobs by id (ids grow: insertion order is FIFO order), with ids by name and phase.
        self._jobs: dict[int, dict[str, Any]] = {}
        self._job_ids: list[int] = []
        self._ids_by_name: dict[str, int] = {}
        self._ids_by_phase: dict[str, set[int]] = {}
        self._deleting: set[int] = set()
        self._next_job_id = 1
        self._pods: dict[str, dict[str, Any]] = {}
        self._pods_by_job: dict[int, set[str]] = {}
        self._live_pods: set[str] = set()
        self._job_events: dict[int, list[_Event]] = {}
        self._object_events: dict[tuple[str, str], list[_Event]] = {}
        self._next_event_id = 1
        #: The revision log, oldest first (revisions grow by one per write).
        self._changes: list[Change] = []
        self._revisions: list[int] = []
        self._next_revision = 1
        self._leases: dict[str, Lease] = {}
        #: Decoded JSON of jobs (by id) and pods (by pod id) at their current versions.
        self._job_json = _Decoded(_JOB_JSON_READ)
        self._manifests = _Decoded(("manifest",))
        self._pod_json = _Decoded(("devices", "env"))

    def _job(self, row: dict[str, Any], manifests: bool = True) -> JobRecord:
        job_id = row["id"]
        manifest = self._manifests.of(job_id, row)[0] if manifests else {}
        return _job_record(row, self._job_json.of(job_id, row), manifest)

    def _pod(self, row: dict[str, Any]) -> PodRecord:
        return _pod_record(row, self._pod_json.of(row["pod_id"], row))

    def close(self) -> None:
        """Nothing to release."""

    def _log_change(self, kind: str, name: str, change: str, now: float) -> int:
        revision = self._next_revision
        self._next_revision += 1
        self._changes.append(Change(revision, kind, name, change, now))
        self._revisions.append(revision)
        return revision

    # ---- objects of every kind but Job ----

    def list_objects(self, kind: str) -> list[ObjectRecord]:
        with self._lock:
            objects = self._objects.get(kind, {})
            return [objects[name].record() for name in sorted(objects)]

    def get_object(self, kind: str, name: str) -> ObjectRecord | None:
        with self._lock:
            found = self._objects.get(kind, {}).get(name)
            return found.record() if found else None

    def delete_config(self, kind: str, name: str) -> bool:
        with self._lock:
            found = self._objects.get(kind, {}).pop(name, None)
            if found is None:
                return False
            self._log_change(kind, name, "DELETED", found.updated_at)
            return True

    # ---- apply ----

    def apply_many(
        self,
        requests: Sequence[ApplyRequest],
    ) -> list[list[str] | Exception]:
        """As Store.apply_many: each request all or nothing, its actions or its error."""
        out: list[list[str] | Exception] = []
        for configs, jobs, now in requests:
            try:
                out.append(self.apply(configs, jobs, now))
            except Exception as exc:  # this request's refusal; the others go on
                out.append(exc)
        return out

    def apply(
        self,
        configs: Sequence[tuple[str, str, dict[str, Any]]],
        jobs: Sequence[tuple[str, str, dict[str, Any], str, int]],
        now: float,
    ) -> list[str]:
        """As Store.apply: all or nothing, configuration first, then the new jobs."""
        with self._lock:
            # 1. Check and encode everything before writing anything.
            job_actions: list[str] = []
            new_jobs: list[dict[str, Any]] = []
            staged: dict[str, str] = {}
            for name, uid, manifest, queue, priority in jobs:
                encoded = _encoded(manifest, f"job {name}'s manifest")
                found = staged.get(name)
                if found is None and name in self._ids_by_name:
                    found = self._jobs[self._ids_by_name[name]]["manifest"]
                if found is not None:
                    if _decode(found) == manifest:
                        job_actions.append("unchanged")
                        continue
                    raise ValueError(
                        f'job "{name}" already exists with a different spec; jobs cannot be '
                        f"changed once submitted: delete it (phalanx delete job {name}) or use "
                        "a new name"
                    )
                labels, annotations, owners = metadata_of(manifest)
                new_jobs.append(
                    {
                        "name": name,
                        "uid": uid,
                        "manifest": encoded,
                        "queue": queue,
                        "priority": priority,
                        "phase": "Pending",
                        "reason_code": "",
                        "message": "",
                        "flavor": "",
                        "attempt": 0,
                        "restarts": 0,
                        "not_before": 0.0,
                        "is_deleting": False,
                        "created_at": now,
                        "admitted_at": None,
                        "started_at": None,
                        "finished_at": None,
                        "reason_facts": "{}",
                        "labels": _encode(labels),
                        "annotations": _encode(annotations),
                        "owner_refs": _encode(owners),
                        "generation": 1,
                        "conditions": "[]",
                    }
                )
                staged[name] = encoded
                job_actions.append("created")
            encoded_configs = [
                (kind, name, manifest, _encoded(manifest, f"{kind} {name}'s manifest"))
                for kind, name, manifest in configs
            ]
            # 2. Write: configuration, then the jobs with their revisions and events.
            actions = [self._apply_config(*config, now) for config in encoded_configs]
            for row in new_jobs:
                row["resource_version"] = self._log_change("Job", row["name"], "ADDED", now)
            for row in new_jobs:
                job_id = row["id"] = self._next_job_id
                self._next_job_id += 1
                self._jobs[job_id] = row
                self._job_ids.append(job_id)
                self._ids_by_name[row["name"]] = job_id
                self._ids_by_phase.setdefault("Pending", set()).add(job_id)
                self._add_event(
                    job_id,
                    now,
                    "Normal",
                    "Created",
                    f"submitted to queue {row['queue']}",
                    "Job",
                    row["name"],
                    _encode({"queue": row["queue"]}),
                )
            return actions + job_actions

    def _apply_config(
        self, kind: str, name: str, manifest: dict[str, Any], encoded: str, now: float
    ) -> str:
        objects = self._objects.setdefault(kind, {})
        row = objects.get(name)
        labels, annotations, owners = metadata_of(manifest)
        if row is None:
            objects[name] = _Object(
                kind,
                name,
                uuid.uuid4().hex,
                encoded,
                _encode(labels),
                _encode(annotations),
                _encode(owners),
                self._log_change(kind, name, "ADDED", now),
                1,
                now,
                now,
            )
            return "created"
        old = _decode(row.manifest)
        if old == manifest:
            return "unchanged"
        if old.get("spec") != manifest.get("spec"):
            row.generation += 1
        row.manifest = encoded
        row.labels, row.annotations = _encode(labels), _encode(annotations)
        row.owner_refs = _encode(owners)
        row.updated_at = now
        row.resource_version = self._log_change(kind, name, "MODIFIED", now)
        return "configured"

    def _add_event(
        self,
        job_id: int | None,
        at: float,
        type_: str,
        reason: str,
        message: str,
        kind: str,
        name: str,
        facts: str,
    ) -> None:
        event = _Event(self._next_event_id, job_id, at, type_, reason, message, kind, name, facts)
        self._next_event_id += 1
        if job_id is None:
            self._object_events.setdefault((kind, name), []).append(event)
        else:
            self._job_events.setdefault(job_id, []).append(event)

    # ---- reads ----

    def get_job(self, name: str) -> JobRecord | None:
        with self._lock:
            job_id = self._ids_by_name.get(name)
            return None if job_id is None else self._job(self._jobs[job_id])

    def get_job_by_id(self, job_id: int) -> JobRecord | None:
        with self._lock:
            row = self._jobs.get(job_id)
            return None if row is None else self._job(row)

    def _page(self, after_id: int) -> list[int]:
        return self._job_ids[bisect.bisect_right(self._job_ids, after_id) :]

    def job_manifests(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """As Store.job_manifests."""
        return {job.name: job.manifest for job in self.list_jobs(names=list(names))}

    def list_jobs(
        self,
        phases: Iterable[str] | None = None,
        *,
        deleting_only: bool = False,
        queue: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        names: Iterable[str] | None = None,
        ids: Iterable[int] | None = None,
        manifests: bool = True,
    ) -> list[JobRecord]:
        """As Store.list_jobs."""
        with self._lock:
            picked: set[int] | None = None
            if phases is not None:
                picked = set()
                for phase in set(phases):
                    picked |= self._ids_by_phase.get(phase, set())
            if names is not None:
                named = {self._ids_by_name[n] for n in names if n in self._ids_by_name}
                picked = named if picked is None else picked & named
            if ids is not None:
                given = {i for i in ids if i in self._jobs}
                picked = given if picked is None else picked & given
            if deleting_only:
                picked = set(self._deleting) if picked is None else picked & self._deleting
            candidates = self._page(after_id) if picked is None else sorted(picked)
            out: list[JobRecord] = []
            for job_id in candidates:
                if limit is not None and len(out) >= limit:
                    break
                row = self._jobs[job_id]
                if job_id <= after_id or (queue is not None and row["queue"] != queue):
                    continue
                if deleting_only and not row["is_deleting"]:
                    continue
                out.append(self._job(row, manifests))
            return out

    def list_job_versions(
        self, *, queue: str | None = None, after_id: int = 0, limit: int | None = None
    ) -> list[tuple[int, int, dict[str, str]]]:
        with self._lock:
            out: list[tuple[int, int, dict[str, str]]] = []
            for job_id in self._page(after_id):
                if limit is not None and len(out) >= limit:
                    break
                row = self._jobs[job_id]
                if queue is None or row["queue"] == queue:
                    out.append((job_id, row["resource_version"], self._job_json.of(job_id, row)[1]))
            return out

    def pods(
        self,
        job_ids: Iterable[int] | None = None,
        *,
        live_only: bool = False,
        pod_ids: Iterable[str] | None = None,
    ) -> list[PodRecord]:
        with self._lock:
            picked: set[str] | None = None
            if job_ids is not None:
                picked = set()
                for job_id in set(job_ids):
                    picked |= self._pods_by_job.get(job_id, set())
            if pod_ids is not None:
                given = {p for p in pod_ids if p in self._pods}
                picked = given if picked is None else picked & given
            if live_only:
                picked = set(self._live_pods) if picked is None else picked & self._live_pods
            rows = [self._pods[p] for p in (self._pods if picked is None else picked)]
            rows.sort(key=_pod_key)
            return [self._pod(row) for row in rows]

    def pod(self, pod_id: str) -> PodRecord | None:
        with self._lock:
            row = self._pods.get(pod_id)
            return None if row is None else self._pod(row)

    def events(self, job_id: int) -> list[EventRecord]:
        with self._lock:
            return [e.record() for e in self._job_events.get(job_id, ())]

    def object_events(self, kind: str, name: str) -> list[EventRecord]:
        with self._lock:
            return [e.record() for e in self._object_events.get((kind, name), ())]

    def record_event(self, record: EventRecord) -> None:
        facts = _encoded(dict(record.facts), f"event {record.reason}'s facts")
        with self._lock:
            job_id = record.job_id or None
            if job_id is not None and job_id not in self._jobs:
                raise ConstraintError(f"event {record.reason} names job id {job_id}, not stored")
            self._add_event(
                job_id,
                record.at,
                record.type,
                record.reason,
                record.message,
                record.kind,
                record.name,
                facts,
            )

    # ---- the revision log ----

    def revision(self) -> int:
        with self._lock:
            return self._revisions[-1] if self._revisions else 0

    def changes(self, after: int, limit: int = 1000) -> tuple[list[Change], int]:
        """As Store.changes."""
        with self._lock:
            start = bisect.bisect_right(self._revisions, after)
            changes = self._changes[start : start + limit]
            if not changes or changes[0].revision == after + 1:
                return changes, min(after + 1, changes[0].revision) if changes else after
            return changes, self._revisions[0]

    def compact(self, keep: int) -> int:
        with self._lock:
            drop = max(0, len(self._changes) - max(1, keep))
            del self._changes[:drop]
            del self._revisions[:drop]
            return drop

    # ---- leases ----

    def acquire_lease(self, name: str, holder: str, ttl_s: float, now: float) -> Lease | None:
        with self._lock:
            lease = self._leases.get(name)
            if lease is None:
                lease = Lease(name, holder, 1, now, now, now + ttl_s)
            elif lease.holder == holder and lease.expires_at > now:
                lease = Lease(name, holder, lease.term, lease.acquired_at, now, now + ttl_s)
            elif lease.expires_at <= now:
                lease = Lease(name, holder, lease.term + 1, now, now, now + ttl_s)
            else:
                return None
            self._leases[name] = lease
            return lease

    def release_lease(self, name: str, holder: str) -> None:
        with self._lock:
            lease = self._leases.get(name)
            if lease is not None and lease.holder == holder:
                self._leases[name] = Lease(
                    name, holder, lease.term, lease.acquired_at, lease.renewed_at, 0.0
                )

    def get_lease(self, name: str) -> Lease | None:
        with self._lock:
            return self._leases.get(name)

    # ---- transitions ----

    def transitions(self, changes: Sequence[Transition]) -> list[int]:
        """As Store.transitions: each guarded, a refused one writes nothing; a batch that
        breaks a constraint raises ConstraintError and writes nothing at all."""
        ids = [c.job_id for c in changes]
        if len(set(ids)) != len(ids):
            raise ValueError("Store.transitions takes at most one transition per job")
        if not changes:
            return []
        with self._lock:
            fence = self._fence_refusal_now()
            # 1. The guards, then every write checked and encoded, before writing any.
            accepted: list[tuple[dict[str, Any], Transition]] = []
            for change in changes:
                row = self._jobs.get(change.job_id)
                if row is None:
                    log.info("transition of job id %d refused: the job is gone", change.job_id)
                    continue
                refusal = _refusal(row["phase"], row["resource_version"], change) or fence
                if refusal:
                    log.warning("transition of job %s refused: %s", row["name"], refusal)
                    continue
                accepted.append((row, change))
            if not accepted:
                return [0] * len(changes)
            job_writes = [self._job_write(change) for _, change in accepted]
            pod_writes, new_pods = self._pod_writes([change for _, change in accepted])
            events = [
                (row, ev, _event_facts(ev, change, values))
                for (row, change), values in zip(accepted, job_writes, strict=True)
                for ev in change.events
            ]
            # 2. Write: revisions, jobs, pods, events.
            applied: dict[int, int] = {}
            for (row, change), values in zip(accepted, job_writes, strict=True):
                at = max((e.at for e in change.events), default=row["created_at"])
                revision = self._log_change("Job", row["name"], "MODIFIED", at)
                applied[change.job_id] = revision
                phase = values.get("phase", row["phase"])
                if phase != row["phase"]:
                    self._ids_by_phase[row["phase"]].discard(row["id"])
                    self._ids_by_phase.setdefault(phase, set()).add(row["id"])
                row.update(values)
                self._job_json.drop(row["id"])
                if "manifest" in values:
                    self._manifests.drop(row["id"])
                row["resource_version"] = revision
                if row["is_deleting"]:
                    self._deleting.add(row["id"])
                else:
                    self._deleting.discard(row["id"])
            for pod, values in pod_writes:
                pod.update(values)
                if not _POD_JSON.isdisjoint(values):  # else its decoded JSON still holds
                    self._pod_json.drop(pod["pod_id"])
                self._track_live(pod)
            for pod in new_pods:
                self._pods[pod["pod_id"]] = pod
                self._pods_by_job.setdefault(pod["job_id"], set()).add(pod["pod_id"])
                self._track_live(pod)
            for row, ev, facts in events:
                self._add_event(
                    row["id"], ev.at, ev.type, ev.reason, ev.message, "Job", row["name"], facts
                )
            return [applied.get(job_id, 0) for job_id in ids]

    def _job_write(self, change: Transition) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for column, value in change.job.items():
            if column not in _JOB_COLUMNS or column in ("name", "resource_version"):
                raise ConstraintError(f"a transition cannot write column {column!r} of a job")
            is_json = column in _JOB_JSON
            values[column] = _encoded(value, f"job column {column}") if is_json else value
        return values

    def _pod_writes(
        self, changes: Sequence[Transition]
    ) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[dict[str, Any]]]:
        """(pod row, values) of every change to a stored pod, and the rows of new pods."""
        writes: list[tuple[dict[str, Any], dict[str, Any]]] = []
        new: dict[str, dict[str, Any]] = {}
        for change in changes:
            for pod_id, fields in change.pods.items():
                row = self._pods.get(pod_id) or new.get(pod_id)
                values: dict[str, Any] = {}
                for column, value in fields.items():
                    if column not in _POD_COLUMNS:
                        raise ConstraintError(
                            f"a transition cannot write column {column!r} of a pod"
                        )
                    is_json = column in _POD_JSON
                    values[column] = _encoded(value, f"pod column {column}") if is_json else value
                if row is not None:
                    writes.append((row, values))
            for rec in change.new_pods:
                if rec.pod_id in self._pods or rec.pod_id in new:
                    raise ConstraintError(f"pod {rec.pod_id} already exists")
                if rec.job_id not in self._jobs:
                    raise ConstraintError(f"pod {rec.pod_id} names job id {rec.job_id}, not stored")
                new[rec.pod_id] = {
                    "pod_id": rec.pod_id,
                    "job_id": rec.job_id,
                    "pod_set": rec.pod_set,
                    "index": rec.index,
                    "attempt": rec.attempt,
                    "node": rec.node,
                    "devices": _encoded(rec.devices, f"pod {rec.pod_id}'s devices"),
                    "env": _encoded(rec.env, f"pod {rec.pod_id}'s env"),
                    "phase": rec.phase,
                    "exit_code": rec.exit_code,
                    "reason": rec.reason,
                    "message": rec.message,
                    "created_at": rec.created_at,
                    "started_at": rec.started_at,
                    "finished_at": rec.finished_at,
                }
        return writes, list(new.values())

    def _track_live(self, pod: dict[str, Any]) -> None:
        if pod["phase"] in _FINISHED:
            self._live_pods.discard(pod["pod_id"])
        else:
            self._live_pods.add(pod["pod_id"])

    def _fence_refusal_now(self) -> str:
        if self.fence is None:
            return ""
        name, holder, term = self.fence
        lease = self._leases.get(name)
        if lease is None or (lease.holder, lease.term) != (holder, term):
            return f"lease {name} is no longer held by {holder} at term {term}"
        return ""

    def delete_job(self, job_id: int) -> None:
        with self._lock:
            row = self._jobs.pop(job_id, None)
            if row is None:
                return
            self._job_json.drop(job_id)
            self._manifests.drop(job_id)
            self._job_ids.remove(job_id)
            del self._ids_by_name[row["name"]]
            self._ids_by_phase[row["phase"]].discard(job_id)
            self._deleting.discard(job_id)
            for pod_id in self._pods_by_job.pop(job_id, set()):
                del self._pods[pod_id]
                self._pod_json.drop(pod_id)
                self._live_pods.discard(pod_id)
            self._job_events.pop(job_id, None)
            self._log_change("Job", row["name"], "DELETED", row["finished_at"] or row["created_at"])
