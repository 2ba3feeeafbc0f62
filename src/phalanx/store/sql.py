"""The store: SQLAlchemy 2 on SQLite (WAL, under the data directory) or PostgreSQL by URL.

Every public write method is one transaction, so one state transition is never half-written.
Must not import controllers, backends, api, client or cli.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from phalanx.store.records import EventRecord, JobRecord, PodRecord, Transition
from phalanx.store.tables import Base, ConfigRow, EventRow, JobRow, PodRow

FINISHED_POD_PHASES = ("Succeeded", "Failed", "Stopped", "Lost")


class StoreError(RuntimeError):
    """The store could not be opened or written (bad URL, unreachable server)."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


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
    """Jobs, pods, events and configuration objects in one SQL database."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            if url.startswith("sqlite"):
                self.engine: Engine = create_engine(
                    url, connect_args={"timeout": 30, "check_same_thread": False}
                )
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
            Base.metadata.create_all(self.engine)
        except Exception as exc:  # SQLAlchemy raises many kinds; the user needs one message
            raise StoreError(
                f"cannot open store {self.redacted_url}: {exc.__class__.__name__}: {exc}"
            ) from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

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
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # ---- configuration objects (queues, flavors) ----

    def list_config(self, kind: str) -> list[tuple[str, dict[str, Any], float]]:
        with self._sessions() as s:
            rows = s.scalars(
                select(ConfigRow).where(ConfigRow.kind == kind).order_by(ConfigRow.name)
            )
            return [(r.name, dict(r.manifest), r.created_at) for r in rows]

    def delete_config(self, kind: str, name: str) -> bool:
        with self._txn() as s:
            result = s.execute(
                delete(ConfigRow).where(ConfigRow.kind == kind, ConfigRow.name == name)
            )
            return bool(getattr(result, "rowcount", 0))

    # ---- apply: configuration and new jobs in one transaction ----

    def apply(
        self,
        configs: Sequence[tuple[str, str, dict[str, Any]]],
        jobs: Sequence[tuple[str, str, dict[str, Any], str, int]],
        now: float,
    ) -> list[str]:
        """Create or update configuration objects (kind, name, manifest) and create jobs
        (name, uid, manifest, queue, priority), all in one transaction. Returns an action per
        object in order: created, configured or unchanged (a job that exists with the same
        manifest is unchanged). Raises ValueError for a job that exists with another manifest."""
        actions: list[str] = []
        with self._txn() as s:
            for kind, name, manifest in configs:
                row = s.get(ConfigRow, (kind, name))
                if row is None:
                    s.add(
                        ConfigRow(
                            kind=kind, name=name, manifest=manifest, created_at=now, updated_at=now
                        )
                    )
                    actions.append("created")
                elif row.manifest == manifest:
                    actions.append("unchanged")
                else:
                    row.manifest = manifest
                    row.updated_at = now
                    actions.append("configured")
            for name, uid, manifest, queue, priority in jobs:
                existing = s.scalars(select(JobRow).where(JobRow.name == name)).first()
                if existing is not None:
                    if existing.manifest == manifest:
                        actions.append("unchanged")
                        continue
                    raise ValueError(
                        f'job "{name}" already exists with a different spec; jobs cannot be changed '
                        f"once submitted: delete it (phalanx delete job {name}) or use a new name"
                    )
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
                )
                s.add(job_row)
                s.flush()
                s.add(
                    EventRow(
                        job_id=job_row.id,
                        at=now,
                        type="Normal",
                        reason="Created",
                        message=f"submitted to queue {queue}",
                    )
                )
                actions.append("created")
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
        self, phases: Iterable[str] | None = None, *, deleting_only: bool = False
    ) -> list[JobRecord]:
        with self._sessions() as s:
            query = select(JobRow).order_by(JobRow.id)
            if phases is not None:
                query = query.where(JobRow.phase.in_(list(phases)))
            if deleting_only:
                query = query.where(JobRow.is_deleting.is_(True))
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
        with self._sessions() as s:
            rows = s.scalars(
                select(EventRow).where(EventRow.job_id == job_id).order_by(EventRow.id)
            )
            return [EventRecord(r.at, r.type, r.reason, r.message, r.job_id) for r in rows]

    # ---- transitions ----

    def transition(self, change: Transition) -> None:
        """Write one state transition atomically (see Transition)."""
        with self._txn() as s:
            if change.job:
                row = s.get(JobRow, change.job_id)
                if row is None:
                    return
                for key, value in change.job.items():
                    setattr(row, key, value)
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
                    )
                )

    def delete_job(self, job_id: int) -> None:
        """Remove a job with its pods and events."""
        with self._txn() as s:
            s.execute(delete(EventRow).where(EventRow.job_id == job_id))
            s.execute(delete(PodRow).where(PodRow.job_id == job_id))
            s.execute(delete(JobRow).where(JobRow.id == job_id))


def default_url(data_dir: Path) -> str:
    """The embedded default: SQLite in WAL mode at ``<data_dir>/phalanx.db``."""
    return f"sqlite:///{data_dir / 'phalanx.db'}"


def open_store(url: str | None, data_dir: Path) -> Store:
    """Open (creating tables if needed) the store at ``url``, or SQLite under ``data_dir``.

    Raises StoreError with the redacted URL and the cause.
    """
    if url is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        url = default_url(data_dir)
    if not url.startswith(("sqlite", "postgresql")):
        raise StoreError(
            f"unsupported store URL {url.split('@')[-1]!r}; use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB"
        )
    return Store(url)
