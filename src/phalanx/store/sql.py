"""The store: SQLAlchemy 2 on SQLite (WAL, under the data directory) or PostgreSQL by URL.

Every public write method is one transaction, so one state transition is never half-written.
Must not import controllers, backends, api, client or cli.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from phalanx.model.transitions import is_allowed
from phalanx.store import schema
from phalanx.store.records import (
    Change,
    EventRecord,
    JobRecord,
    Lease,
    ObjectRecord,
    PodRecord,
    Transition,
)
from phalanx.store.tables import ChangeRow, ConfigRow, EventRow, JobRow, LeaseRow, PodRow

log = logging.getLogger(__name__)

FINISHED_POD_PHASES = ("Succeeded", "Failed", "Stopped", "Lost")
#: pg_advisory_xact_lock key taken by every write transaction on PostgreSQL, so that
#: revisions (ids of the changes log) commit in the order they were allocated and a watch
#: reading the log never skips a write that commits late.
_WRITE_LOCK_KEY = 0x70686C7872697465


class StoreError(RuntimeError):
    """The store could not be opened or written (bad URL, unreachable server)."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def metadata_of(manifest: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str], list[Any]]:
    """(labels, annotations, ownerReferences) of a manifest's metadata."""
    metadata = manifest.get("metadata")
    if not isinstance(metadata, Mapping):
        return {}, {}, []
    labels, annotations = metadata.get("labels"), metadata.get("annotations")
    owners = metadata.get("ownerReferences")
    return (
        {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {},
        {str(k): str(v) for k, v in annotations.items()}
        if isinstance(annotations, Mapping)
        else {},
        [dict(o) for o in owners if isinstance(o, Mapping)] if isinstance(owners, list) else [],
    )


def _object(row: ConfigRow) -> ObjectRecord:
    return ObjectRecord(
        row.kind,
        row.name,
        row.uid,
        dict(row.manifest),
        dict(row.labels),
        dict(row.annotations),
        list(row.owner_refs),
        row.resource_version,
        row.generation,
        row.created_at,
        row.updated_at,
    )


def _job(row: JobRow) -> JobRecord:
    return JobRecord(
        row.id,
        row.name,
        row.uid,
        dict(row.manifest),
        row.queue,
        row.priority,
        row.phase,
        row.reason_code,
        row.message,
        row.flavor,
        row.attempt,
        row.restarts,
        row.not_before,
        row.is_deleting,
        row.created_at,
        row.admitted_at,
        row.started_at,
        row.finished_at,
        dict(row.reason_facts),
        dict(row.labels),
        dict(row.annotations),
        list(row.owner_refs),
        row.resource_version,
        row.generation,
        list(row.conditions),
    )


def _event(row: EventRow) -> EventRecord:
    return EventRecord(
        row.at,
        row.type,
        row.reason,
        row.message,
        row.job_id or 0,
        dict(row.facts),
        row.kind,
        row.name,
    )


def _pod(row: PodRow) -> PodRecord:
    return PodRecord(
        row.pod_id,
        row.job_id,
        row.pod_set,
        row.index,
        row.attempt,
        row.node,
        list(row.devices),
        dict(row.env),
        row.phase,
        row.created_at,
        row.exit_code,
        row.reason,
        row.message,
        row.started_at,
        row.finished_at,
    )


class Store:
    """Every kind of object, pods, events and the revision log in one SQL database.

    Every write bumps the written object's ``resource_version`` to a new revision of the
    store (the id of its row in the ``changes`` log), in the same transaction.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        try:
            if url.startswith("sqlite"):
                self.engine: Engine = create_engine(
                    url, connect_args={"timeout": 30, "check_same_thread": False}
                )
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
            if migrate:
                schema.upgrade(self.engine)
        except Exception as exc:  # SQLAlchemy raises many kinds; the user needs one message
            raise StoreError(
                f"cannot open store {self.redacted_url}: {exc.__class__.__name__}: {exc}"
            ) from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._is_postgres = self.engine.dialect.name == "postgresql"
        #: (lease name, holder, term) while this process leads: transitions are then applied
        #: only while that lease is still held at that term, so a leader that lost its lease
        #: without noticing (paused, partitioned) cannot write over its successor.
        self.fence: tuple[str, str, int] | None = None

    @property
    def redacted_url(self) -> str:
        """The URL with any password hidden, for messages."""
        return (
            self.engine.url.render_as_string(hide_password=True)
            if hasattr(self, "engine")
            else self.url.split("@")[-1]
        )

    @contextmanager
    def _txn(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            if self._is_postgres:
                session.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_LOCK_KEY}
                )
            yield session

    def close(self) -> None:
        self.engine.dispose()

    @staticmethod
    def _revision(s: Session, kind: str, name: str, change: str, now: float) -> int:
        """Append to the revision log; return the new revision."""
        row = ChangeRow(kind=kind, name=name, type=change, at=now)
        s.add(row)
        s.flush()
        return row.id

    # ---- objects of every kind but Job (queues, flavors, node health, …) ----

    def list_config(self, kind: str) -> list[tuple[str, dict[str, Any], float]]:
        """(name, manifest, created_at) of every object of ``kind``, by name."""
        return [(o.name, o.manifest, o.created_at) for o in self.list_objects(kind)]

    def list_objects(self, kind: str) -> list[ObjectRecord]:
        with self._sessions() as s:
            rows = s.scalars(
                select(ConfigRow).where(ConfigRow.kind == kind).order_by(ConfigRow.name)
            )
            return [_object(r) for r in rows]

    def get_object(self, kind: str, name: str) -> ObjectRecord | None:
        with self._sessions() as s:
            row = s.get(ConfigRow, (kind, name))
            return _object(row) if row else None

    def delete_config(self, kind: str, name: str) -> bool:
        with self._txn() as s:
            row = s.get(ConfigRow, (kind, name))
            if row is None:
                return False
            s.delete(row)
            self._revision(s, kind, name, "DELETED", row.updated_at)
            return True

    # ---- apply: configuration and new jobs in one transaction ----

    def apply(
        self,
        configs: Sequence[tuple[str, str, dict[str, Any]]],
        jobs: Sequence[tuple[str, str, dict[str, Any], str, int]],
        now: float,
    ) -> list[str]:
        """Create or update configuration objects (kind, name, manifest) and create jobs
        (name, uid, manifest, queue, priority), all in one transaction. Labels, annotations
        and ownerReferences come from each manifest's metadata. Returns an action per object
        in order: created, configured or unchanged (a job that exists with the same manifest
        is unchanged). Raises ValueError for a job that exists with another manifest."""
        actions: list[str] = []
        with self._txn() as s:
            for kind, name, manifest in configs:
                labels, annotations, owners = metadata_of(manifest)
                row = s.get(ConfigRow, (kind, name))
                if row is None:
                    s.add(
                        ConfigRow(
                            kind=kind,
                            name=name,
                            manifest=manifest,
                            created_at=now,
                            updated_at=now,
                            uid=uuid.uuid4().hex,
                            labels=labels,
                            annotations=annotations,
                            owner_refs=owners,
                            resource_version=self._revision(s, kind, name, "ADDED", now),
                            generation=1,
                        )
                    )
                    actions.append("created")
                elif row.manifest == manifest:
                    actions.append("unchanged")
                else:
                    if row.manifest.get("spec") != manifest.get("spec"):
                        row.generation += 1
                    row.manifest = manifest
                    row.labels, row.annotations, row.owner_refs = labels, annotations, owners
                    row.updated_at = now
                    row.resource_version = self._revision(s, kind, name, "MODIFIED", now)
                    actions.append("configured")
            existing = {
                r.name: r
                for r in s.scalars(select(JobRow).where(JobRow.name.in_([j[0] for j in jobs])))
            }
            new_rows: list[JobRow] = []
            for name, uid, manifest, queue, priority in jobs:
                found = existing.get(name)
                if found is not None:
                    if found.manifest == manifest:
                        actions.append("unchanged")
                        continue
                    raise ValueError(
                        f'job "{name}" already exists with a different spec; jobs cannot be changed '
                        f"once submitted: delete it (phalanx delete job {name}) or use a new name"
                    )
                labels, annotations, owners = metadata_of(manifest)
                job_row = JobRow(
                    name=name,
                    uid=uid,
                    manifest=manifest,
                    queue=queue,
                    priority=priority,
                    phase="Pending",
                    reason_code="",
                    message="",
                    flavor="",
                    attempt=0,
                    restarts=0,
                    not_before=0.0,
                    is_deleting=False,
                    created_at=now,
                    reason_facts={},
                    labels=labels,
                    annotations=annotations,
                    owner_refs=owners,
                    resource_version=self._revision(s, "Job", name, "ADDED", now),
                    generation=1,
                    conditions=[],
                )
                existing[name] = job_row
                new_rows.append(job_row)
                actions.append("created")
            s.add_all(new_rows)
            s.flush()
            s.add_all(
                EventRow(
                    job_id=row.id,
                    at=now,
                    type="Normal",
                    reason="Created",
                    message=f"submitted to queue {row.queue}",
                    kind="Job",
                    name=row.name,
                    facts={"queue": row.queue},
                )
                for row in new_rows
            )
        return actions

    # ---- reads ----

    def get_job(self, name: str) -> JobRecord | None:
        with self._sessions() as s:
            row = s.scalars(select(JobRow).where(JobRow.name == name)).first()
            return _job(row) if row else None

    def get_job_by_id(self, job_id: int) -> JobRecord | None:
        with self._sessions() as s:
            row = s.get(JobRow, job_id)
            return _job(row) if row else None

    def list_jobs(
        self,
        phases: Iterable[str] | None = None,
        *,
        deleting_only: bool = False,
        queue: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
    ) -> list[JobRecord]:
        """Jobs in FIFO (id) order; ``after_id`` and ``limit`` page through them."""
        with self._sessions() as s:
            query = select(JobRow).order_by(JobRow.id)
            if phases is not None:
                query = query.where(JobRow.phase.in_(list(phases)))
            if deleting_only:
                query = query.where(JobRow.is_deleting.is_(True))
            if queue is not None:
                query = query.where(JobRow.queue == queue)
            if after_id:
                query = query.where(JobRow.id > after_id)
            if limit is not None:
                query = query.limit(limit)
            return [_job(r) for r in s.scalars(query)]

    def pods(
        self, job_ids: Iterable[int] | None = None, *, live_only: bool = False
    ) -> list[PodRecord]:
        with self._sessions() as s:
            query = select(PodRow).order_by(
                PodRow.job_id, PodRow.attempt, PodRow.pod_set, PodRow.index
            )
            if job_ids is not None:
                query = query.where(PodRow.job_id.in_(list(job_ids)))
            if live_only:
                query = query.where(PodRow.phase.not_in(FINISHED_POD_PHASES))
            return [_pod(r) for r in s.scalars(query)]

    def pod(self, pod_id: str) -> PodRecord | None:
        with self._sessions() as s:
            row = s.get(PodRow, pod_id)
            return _pod(row) if row else None

    def events(self, job_id: int) -> list[EventRecord]:
        """A job's events, oldest first."""
        with self._sessions() as s:
            rows = s.scalars(
                select(EventRow).where(EventRow.job_id == job_id).order_by(EventRow.id)
            )
            return [_event(r) for r in rows]

    def object_events(self, kind: str, name: str) -> list[EventRecord]:
        """Events of an object of another kind than Job, oldest first."""
        with self._sessions() as s:
            rows = s.scalars(
                select(EventRow)
                .where(EventRow.kind == kind, EventRow.name == name, EventRow.job_id.is_(None))
                .order_by(EventRow.id)
            )
            return [_event(r) for r in rows]

    def record_event(self, record: EventRecord) -> None:
        """Add one event on (``record.kind``, ``record.name``), outside any transition."""
        with self._txn() as s:
            s.add(
                EventRow(
                    job_id=record.job_id or None,
                    at=record.at,
                    type=record.type,
                    reason=record.reason,
                    message=record.message,
                    kind=record.kind,
                    name=record.name,
                    facts=dict(record.facts),
                )
            )

    # ---- the revision log ----

    def revision(self) -> int:
        """The newest revision (0 for an empty log)."""
        with self._sessions() as s:
            return int(s.scalar(select(func.max(ChangeRow.id))) or 0)

    def changes(self, after: int, limit: int = 1000) -> tuple[list[Change], int]:
        """Writes after revision ``after`` in order, at most ``limit``, and the oldest revision
        the log still holds (a reader whose ``after`` is older than that has missed writes
        that were compacted away and must list again)."""
        with self._sessions() as s:
            oldest = int(s.scalar(select(func.min(ChangeRow.id))) or 0)
            rows = s.scalars(
                select(ChangeRow).where(ChangeRow.id > after).order_by(ChangeRow.id).limit(limit)
            )
            return [Change(r.id, r.kind, r.name, r.type, r.at) for r in rows], oldest

    def compact(self, keep: int) -> int:
        """Drop all but the newest ``keep`` rows of the revision log; return how many went.
        The newest row always stays: revisions are row ids, and SQLite would hand out the
        id of a deleted last row again."""
        keep = max(1, keep)
        with self._txn() as s:
            newest = int(s.scalar(select(func.max(ChangeRow.id))) or 0)
            result = s.execute(delete(ChangeRow).where(ChangeRow.id <= newest - keep))
            return int(getattr(result, "rowcount", 0) or 0)

    # ---- leases (leader election) ----

    def acquire_lease(self, name: str, holder: str, ttl_s: float, now: float) -> Lease | None:
        """Take the lease ``name`` for ``holder`` until ``now + ttl_s``, or renew it if
        ``holder`` has it. Returns the lease, or None while another holder's lease has not
        expired. Every write transaction is serialised, so two candidates never both win."""
        with self._txn() as s:
            row = s.get(LeaseRow, name, with_for_update=True)
            if row is None:
                row = LeaseRow(
                    name=name,
                    holder=holder,
                    term=1,
                    acquired_at=now,
                    renewed_at=now,
                    expires_at=now + ttl_s,
                )
                s.add(row)
            elif row.holder == holder and row.expires_at > now:
                row.renewed_at, row.expires_at = now, now + ttl_s
            elif row.expires_at <= now:
                row.holder, row.term = holder, row.term + 1
                row.acquired_at = row.renewed_at = now
                row.expires_at = now + ttl_s
            else:
                return None
            s.flush()
            return _lease(row)

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up at once (on a clean shutdown) if ``holder`` has it."""
        with self._txn() as s:
            row = s.get(LeaseRow, name, with_for_update=True)
            if row is not None and row.holder == holder:
                row.expires_at = 0.0

    def get_lease(self, name: str) -> Lease | None:
        with self._sessions() as s:
            row = s.get(LeaseRow, name)
            return _lease(row) if row else None

    # ---- transitions ----

    def transition(self, change: Transition) -> bool:
        """Write one state transition atomically (see Transition). Returns False, writing
        nothing, when the guard fails: the job is gone, is no longer in
        ``change.expect_phase`` or at ``change.expect_version``, or the phase change is not
        in the job lifecycle's table of allowed transitions."""
        with self._txn() as s:
            row = s.get(JobRow, change.job_id)
            if row is None:
                log.info("transition of job id %d refused: the job is gone", change.job_id)
                return False
            refusal = _refusal(row, change) or self._fence_refusal(s)
            if refusal:
                log.warning("transition of job %s refused: %s", row.name, refusal)
                return False
            now = max((e.at for e in change.events), default=row.created_at)
            for key, value in change.job.items():
                setattr(row, key, value)
            row.resource_version = self._revision(s, "Job", row.name, "MODIFIED", now)
            for pod_id, fields in change.pods.items():
                pod = s.get(PodRow, pod_id)
                if pod is not None:
                    for key, value in fields.items():
                        setattr(pod, key, value)
            for rec in change.new_pods:
                s.add(
                    PodRow(
                        pod_id=rec.pod_id,
                        job_id=rec.job_id,
                        pod_set=rec.pod_set,
                        index=rec.index,
                        attempt=rec.attempt,
                        node=rec.node,
                        devices=rec.devices,
                        env=rec.env,
                        phase=rec.phase,
                        exit_code=rec.exit_code,
                        reason=rec.reason,
                        message=rec.message,
                        created_at=rec.created_at,
                        started_at=rec.started_at,
                        finished_at=rec.finished_at,
                    )
                )
            for ev in change.events:
                s.add(
                    EventRow(
                        job_id=change.job_id,
                        at=ev.at,
                        type=ev.type,
                        reason=ev.reason,
                        message=ev.message,
                        kind="Job",
                        name=row.name,
                        facts=dict(ev.facts),
                    )
                )
            return True

    def _fence_refusal(self, s: Session) -> str:
        if self.fence is None:
            return ""
        name, holder, term = self.fence
        lease = s.get(LeaseRow, name)
        if lease is None or (lease.holder, lease.term) != (holder, term):
            return f"lease {name} is no longer held by {holder} at term {term}"
        return ""

    def delete_job(self, job_id: int) -> None:
        """Remove a job with its pods and events."""
        with self._txn() as s:
            row = s.get(JobRow, job_id)
            if row is None:
                return
            s.execute(delete(EventRow).where(EventRow.job_id == job_id))
            s.execute(delete(PodRow).where(PodRow.job_id == job_id))
            s.execute(delete(JobRow).where(JobRow.id == job_id))
            self._revision(s, "Job", row.name, "DELETED", row.finished_at or row.created_at)


def _lease(row: LeaseRow) -> Lease:
    return Lease(row.name, row.holder, row.term, row.acquired_at, row.renewed_at, row.expires_at)


def _refusal(row: JobRow, change: Transition) -> str:
    """Why ``change`` may not be applied to ``row`` ("" when it may)."""
    if change.expect_phase is not None and row.phase != change.expect_phase:
        return f"expected phase {change.expect_phase}, found {row.phase}"
    if change.expect_version is not None and row.resource_version != change.expect_version:
        return f"expected resourceVersion {change.expect_version}, found {row.resource_version}"
    target = change.job.get("phase")
    if isinstance(target, str) and target != row.phase and not is_allowed(row.phase, target):
        return f"{row.phase} → {target} is not an allowed transition"
    return ""


def default_url(data_dir: Path) -> str:
    """The embedded default: SQLite in WAL mode at ``<data_dir>/phalanx.db``."""
    return f"sqlite:///{data_dir / 'phalanx.db'}"


def open_store(url: str | None, data_dir: Path, *, migrate: bool = True) -> Store:
    """Open the store at ``url``, or SQLite under ``data_dir``, upgrading its schema to this
    release's (unless ``migrate`` is False).

    Raises StoreError with the redacted URL and the cause.
    """
    if url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        url = default_url(data_dir)
    if not url.startswith(("sqlite", "postgresql")):
        raise StoreError(
            f"unsupported store URL {url.split('@')[-1]!r}; use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB"
        )
    return Store(url, migrate=migrate)
