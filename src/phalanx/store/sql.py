"""The store: SQLAlchemy 2 on SQLite (WAL, under the data directory) or PostgreSQL by URL.

Every public write method is one transaction, so one state transition is never half-written.
Must not import controllers, backends, api, client or cli.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard, cast

from sqlalchemy import (
    JSON,
    ColumnElement,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal_column,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from phalanx.model.transitions import is_allowed
from phalanx.store import dbapi, schema
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


_JOBS = cast(Table, JobRow.__table__)
_PODS = cast(Table, PodRow.__table__)
_EVENTS = cast(Table, EventRow.__table__)
_CHANGES = cast(Table, ChangeRow.__table__)
_CONFIGS = cast(Table, ConfigRow.__table__)


#: Statements built once (building one costs more than running it on SQLite).
_MANIFESTS_NAMED = select(_JOBS.c.name, _JOBS.c.manifest).where(
    _JOBS.c.name.in_(bindparam("names", expanding=True))
)
_ADD_CHANGES = insert(_CHANGES).returning(_CHANGES.c.id, sort_by_parameter_order=True)
_ADD_JOBS = insert(_JOBS).returning(_JOBS.c.id, sort_by_parameter_order=True)
_ADD_EVENTS = insert(_EVENTS)


def _as_text(column: Any) -> ColumnElement[Any]:
    """A JSON column read as its text (decoded by ``_json_dict``), any other as it is."""
    return type_coerce(column, Text).label(column.name) if isinstance(column.type, JSON) else column


#: Every column of a job, JSON ones as text: SQLAlchemy's JSON type decodes each value with
#: a call of its own, and most of a job's JSON columns are empty (``{}``, ``[]``).
_JOB_COLUMNS = tuple(_as_text(c) for c in _JOBS.c)
#: Every column of a job but its manifest, which reads as "" (see list_jobs).
_JOB_COLUMNS_BUT_MANIFEST = (
    *(_as_text(c) for c in _JOBS.c if c.name != "manifest"),
    literal_column("''").label("manifest"),
)
#: Jobs by name and by id, in id order, with or without manifests: what the API's admission
#: and the loop's caches ask most (building the select each time cost more than running it).
_JOBS_BY: dict[tuple[str, bool], Any] = {
    (key, manifests): select(*(_JOB_COLUMNS if manifests else _JOB_COLUMNS_BUT_MANIFEST))
    .where(column.in_(bindparam(key, expanding=True)))
    .order_by(_JOBS.c.id)
    for key, column in (("names", _JOBS.c.name), ("ids", _JOBS.c.id))
    for manifests in (True, False)
}
_GUARDS = select(
    _JOBS.c.id, _JOBS.c.name, _JOBS.c.phase, _JOBS.c.resource_version, _JOBS.c.created_at
).where(_JOBS.c.id.in_(bindparam("ids", expanding=True)))
#: SET takes the columns each row of parameters names (besides ``job_id_``).
_UPDATE_JOB = update(_JOBS).where(_JOBS.c.id == bindparam("job_id_"))


#: One request of ``Store.apply_many``: ``Store.apply``'s arguments (configs as (kind, name,
#: manifest), jobs as (name, uid, manifest, queue, priority), now).
ApplyRequest = tuple[
    Sequence[tuple[str, str, dict[str, Any]]],
    Sequence[tuple[str, str, dict[str, Any], str, int]],
    float,
]


class StoreError(RuntimeError):
    """The store could not be opened or written (bad URL, unreachable server)."""


#: SQLite's page cache per connection, in KiB.
SQLITE_CACHE_KIB = 512


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Each pooled connection keeps a page cache of its own (2 MiB by default, up to 48
    # connections); the file's pages stay in the OS's cache either way (docs/control-plane.md,
    # Performance).
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


def metadata_of(manifest: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str], list[Any]]:
    """(labels, annotations, ownerReferences) of a manifest's metadata."""
    metadata = manifest.get("metadata")
    if not _is_mapping(metadata):
        return {}, {}, []
    labels, annotations = metadata.get("labels"), metadata.get("annotations")
    owners = metadata.get("ownerReferences")
    return (
        {str(k): str(v) for k, v in labels.items()} if _is_mapping(labels) else {},
        {str(k): str(v) for k, v in annotations.items()} if _is_mapping(annotations) else {},
        [dict(o) for o in owners if _is_mapping(o)] if isinstance(owners, list) else [],
    )


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, a plain dict found first: an ABC's isinstance costs
    more, and this runs for every new job."""
    return type(value) is dict or isinstance(value, Mapping)


#: A row read with a Core select of a table (``select(_JOBS)``): its columns by the same
#: names as the mapped class's attributes, without building ORM objects (several times
#: cheaper when reading thousands of rows).
_Row = Any


def _object(row: _Row) -> ObjectRecord:
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


def _json_dict(value: Any) -> dict[str, Any]:
    """A JSON column's object as a dict of its own: ``value`` decoded already (SQLAlchemy's
    JSON type, or a driver that decodes JSON itself), or its text (``_JOB_COLUMNS``)."""
    if not isinstance(value, str):
        return dict(value)
    return {} if value == "{}" else dict(json.loads(value))


def _json_list(value: Any) -> list[Any]:
    """As ``_json_dict``, for a JSON array."""
    if not isinstance(value, str):
        return list(value)
    return [] if value == "[]" else list(json.loads(value))


def _job(row: _Row) -> JobRecord:
    """The record of a row read with ``select(_JOBS)`` or ``_JOB_COLUMNS`` (a manifest read
    as "" is an empty one)."""
    manifest = row.manifest
    return JobRecord(
        row.id,
        row.name,
        row.uid,
        {} if manifest == "" else _json_dict(manifest),
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
        _json_dict(row.reason_facts),
        _json_dict(row.labels),
        _json_dict(row.annotations),
        _json_list(row.owner_refs),
        row.resource_version,
        row.generation,
        _json_list(row.conditions),
    )


def _event(row: _Row) -> EventRecord:
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


def _pod(row: _Row) -> PodRecord:
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
                # A file database: keep a connection for each of the API's concurrent
                # requests and the loop (past the pool's size every checkout opens one, sets
                # its pragmas and closes it again). An in-memory one has a pool of its own.
                is_file = make_url(url).database not in (None, "", ":memory:")
                pool = {"pool_size": 16, "max_overflow": 32} if is_file else {}
                self.engine: Engine = create_engine(
                    url, connect_args={"timeout": 30, "check_same_thread": False}, **pool
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
        self._write_lock = None if self._is_postgres else threading.Lock()
        #: Whether apply writes new jobs through the DBAPI cursor (store/dbapi.py): on
        #: SQLite unless PHALANX_STORE_APPLY=core asks for the SQLAlchemy Core statements
        #: (kept to compare the two: bench/api_bench.py --store-apply core).
        self._writes_through_dbapi = (
            not self._is_postgres and os.environ.get("PHALANX_STORE_APPLY", "") != "core"
        )
        self._apply_gate = threading.Lock()
        self._apply_queue_lock = threading.Lock()
        self._apply_queue: list[_Apply] = []
        #: (lease name, holder, term) while this process leads: transitions are then applied
        #: only while that lease is still held at that term, so a leader that lost its lease
        #: without noticing (paused, partitioned) cannot write over its successor.
        self.fence: tuple[str, str, int] | None = None

    @property
    def has_quick_reads(self) -> bool:
        """Whether a small read (the revision) is answered in this process's file or memory
        without a network round trip: SQLite (a read in WAL mode waits for no writer), not
        PostgreSQL."""
        return not self._is_postgres

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
        # SQLite has one writer at a time; threads of this process queue on a lock rather
        # than on SQLite's busy handler, which polls with sleeps of up to 100 ms and, with
        # the API's threads and the loop all writing, spent most of their time asleep.
        with (
            self._write_lock or contextlib.nullcontext(),
            self._sessions() as session,
            session.begin(),
        ):
            if self._is_postgres:
                session.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_LOCK_KEY}
                )
            else:
                # pysqlite opens a transaction only at the first write, so the reads a write
                # is checked against (a transition's guard) would run outside it and two
                # writers could both pass: take SQLite's write lock before reading.
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
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
            rows = s.execute(
                select(_CONFIGS).where(ConfigRow.kind == kind).order_by(ConfigRow.name)
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
        is unchanged). Raises ValueError for a job that exists with another manifest.

        Calls made at the same time from several threads are written together in one
        transaction (group commit: a transaction costs about the same for one job as for
        fifty), each still all or nothing: one that is refused writes nothing and does not
        stop the others."""
        (outcome,) = self.apply_many([(configs, jobs, now)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def apply_many(
        self,
        requests: Sequence[ApplyRequest],
    ) -> list[list[str] | Exception]:
        """``apply`` for several requests (configs, jobs, now) at once, written together
        (with any other thread's) in one transaction, each still all or nothing: for each,
        its actions, or the error that refused it (ValueError for a job that exists with
        another manifest; the store's error when the transaction failed). Returns only once
        every request is committed or refused."""
        pending = [_Apply(configs, jobs, now) for configs, jobs, now in requests]
        with self._apply_queue_lock:
            self._apply_queue += pending
        with self._apply_gate:  # whoever holds it writes every request queued so far
            if not all(request.is_done for request in pending):
                with self._apply_queue_lock:
                    batch, self._apply_queue = self._apply_queue, []
                self._apply_all(batch)
        return [r.actions if r.error is None else r.error for r in pending]

    def _apply_all(self, batch: list[_Apply]) -> None:
        try:
            if self._writes_through_dbapi and not any(r.configs for r in batch):
                self._apply_jobs_through_dbapi(batch)
                return
            with self._txn() as s:
                conn = s.connection()
                names = [job[0] for request in batch for job in request.jobs]
                existing: dict[str, dict[str, Any]] = {}
                for i in range(0, len(names), 500):
                    found = conn.execute(_MANIFESTS_NAMED, {"names": names[i : i + 500]})
                    existing.update((name, manifest) for name, manifest in found)
                new_rows: list[dict[str, Any]] = []
                for request in batch:
                    try:
                        job_actions, rows = _new_jobs(request, existing)
                    except ValueError as exc:
                        request.error = exc
                        continue
                    request.actions = self._apply_configs(s, request.configs, request.now)
                    request.actions += job_actions
                    existing.update((row["name"], row["manifest"]) for row in rows)
                    new_rows += rows
                if self._writes_through_dbapi:
                    dbapi.insert_jobs(conn.connection.cursor(), new_rows)
                else:
                    _insert_jobs(conn, new_rows)
        except Exception as exc:  # the transaction failed: every request in it failed
            for request in batch:
                request.error = request.error or exc
        finally:
            for request in batch:
                request.is_done = True

    @contextmanager
    def _driver_write(self) -> Iterator[Any]:
        """A cursor of a pooled driver connection in one write transaction (SQLite only,
        under the write lock), committed when the block ends and rolled back if it raises:
        for writes of many rows without a Session (whose set-up and commit cost more than
        the writes of one job), see store/dbapi.py."""
        assert self._write_lock is not None  # SQLite only
        with self._write_lock:
            connection = self.engine.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield cursor
                except BaseException:
                    connection.rollback()
                    raise
                connection.commit()
            finally:
                connection.close()

    def _apply_jobs_through_dbapi(self, batch: list[_Apply]) -> None:
        """``_apply_all`` for requests of jobs only, on SQLite: one transaction through the
        driver (``_driver_write``)."""
        with self._driver_write() as cursor:
            names = [job[0] for request in batch for job in request.jobs]
            existing = dbapi.manifests_named(cursor, names)
            new_rows: list[dict[str, Any]] = []
            for request in batch:
                try:
                    request.actions, rows = _new_jobs(request, existing)
                except ValueError as exc:
                    request.error = exc
                    continue
                existing.update((row["name"], row["manifest"]) for row in rows)
                new_rows += rows
            dbapi.insert_jobs(cursor, new_rows)

    def _apply_configs(
        self, s: Session, configs: Sequence[tuple[str, str, dict[str, Any]]], now: float
    ) -> list[str]:
        actions: list[str] = []
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
        s.flush()  # a later request of the same transaction may apply the same object
        return actions

    # ---- reads ----

    def get_job(self, name: str) -> JobRecord | None:
        with self._sessions() as s:
            row = s.execute(select(_JOBS).where(JobRow.name == name)).first()
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
        names: Iterable[str] | None = None,
        ids: Iterable[int] | None = None,
        manifests: bool = True,
    ) -> list[JobRecord]:
        """Jobs in FIFO (id) order; ``after_id`` and ``limit`` page through them; ``names``
        and ``ids`` pick those of these names or ids (each a list of at most a few hundred:
        it becomes one SQL ``IN``). With ``manifests`` False the records carry an empty
        manifest, which is then neither read nor decoded (the largest column by far)."""
        filters = (phases, deleting_only, queue, after_id, limit)
        if filters == (None, False, None, 0, None) and (names is None) != (ids is None):
            # By names or by ids alone: a statement built once, on a plain connection.
            key = "names" if ids is None else "ids"
            wanted = list(names if names is not None else ids or ())
            if not wanted:
                return []
            with self.engine.connect() as conn:
                rows = conn.execute(_JOBS_BY[key, manifests], {key: wanted})
                return [_job(r) for r in rows]
        with self._sessions() as s:
            columns = _JOB_COLUMNS if manifests else _JOB_COLUMNS_BUT_MANIFEST
            query = select(*columns).order_by(JobRow.id)
            if phases is not None:
                query = query.where(JobRow.phase.in_(list(phases)))
            if names is not None:
                query = query.where(JobRow.name.in_(list(names)))
            if ids is not None:
                query = query.where(JobRow.id.in_(list(ids)))
            if deleting_only:
                query = query.where(JobRow.is_deleting.is_(True))
            if queue is not None:
                query = query.where(JobRow.queue == queue)
            if after_id:
                query = query.where(JobRow.id > after_id)
            if limit is not None:
                query = query.limit(limit)
            return [_job(r) for r in s.execute(query)]

    def job_manifests(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored manifests of the jobs among ``names``, by name (absent: no such job).
        For apply's checks before it writes: on SQLite through the driver's cursor, a
        fraction of what ``list_jobs(names=...)`` costs (no session, no statement compiled,
        no record built per job)."""
        wanted = list(names)
        if not wanted:
            return {}
        if not self._is_postgres:
            with self._driver_cursor() as cursor:
                return dbapi.manifests_named(cursor, wanted)
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(wanted), 500):
            out.update((j.name, j.manifest) for j in self.list_jobs(names=wanted[i : i + 500]))
        return out

    def list_job_versions(
        self, *, queue: str | None = None, after_id: int = 0, limit: int | None = None
    ) -> list[tuple[int, int, dict[str, str]]]:
        """(id, resource_version, labels) of jobs in FIFO (id) order, paged as ``list_jobs``:
        enough to pick a page and tell which cached views of it are still current, without
        reading (and decoding) whole rows."""
        with self._sessions() as s:
            query = select(JobRow.id, JobRow.resource_version, JobRow.labels).order_by(JobRow.id)
            if queue is not None:
                query = query.where(JobRow.queue == queue)
            if after_id:
                query = query.where(JobRow.id > after_id)
            if limit is not None:
                query = query.limit(limit)
            return [(i, rv, labels) for i, rv, labels in s.execute(query)]

    def pods(
        self,
        job_ids: Iterable[int] | None = None,
        *,
        live_only: bool = False,
        pod_ids: Iterable[str] | None = None,
    ) -> list[PodRecord]:
        """Pods by job, attempt, pod set and index; of the jobs ``job_ids`` and with the ids
        ``pod_ids`` if given (each a list of at most a few hundred, as for ``list_jobs``)."""
        with self._sessions() as s:
            query = select(_PODS).order_by(
                PodRow.job_id, PodRow.attempt, PodRow.pod_set, PodRow.index
            )
            if job_ids is not None:
                query = query.where(PodRow.job_id.in_(list(job_ids)))
            if pod_ids is not None:
                query = query.where(PodRow.pod_id.in_(list(pod_ids)))
            if live_only:
                query = query.where(PodRow.phase.not_in(FINISHED_POD_PHASES))
            return [_pod(r) for r in s.execute(query)]

    def pod(self, pod_id: str) -> PodRecord | None:
        with self._sessions() as s:
            row = s.get(PodRow, pod_id)
            return _pod(row) if row else None

    def events(self, job_id: int) -> list[EventRecord]:
        """A job's events, oldest first."""
        with self._sessions() as s:
            rows = s.execute(select(_EVENTS).where(EventRow.job_id == job_id).order_by(EventRow.id))
            return [_event(r) for r in rows]

    def object_events(self, kind: str, name: str) -> list[EventRecord]:
        """Events of an object of another kind than Job, oldest first."""
        with self._sessions() as s:
            rows = s.execute(
                select(_EVENTS)
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

    @contextmanager
    def _driver_cursor(self) -> Iterator[Any]:
        """A cursor of a pooled connection's DBAPI driver: for the small reads every request
        and every tick makes (the revision, the log since it), where a session's setup and a
        statement's compilation cost twenty times the query (about 80 µs against 1.7 ms for
        the revision, measured on SQLite). SQLite's paramstyle (``?``); the connection goes
        back to the pool (and its reset) as any."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        finally:
            connection.close()

    def revision(self) -> int:
        """The newest revision (0 for an empty log)."""
        if not self._is_postgres:
            with self._driver_cursor() as cursor:
                cursor.execute("SELECT max(id) FROM changes")
                return int(cursor.fetchone()[0] or 0)
        with self._sessions() as s:
            return int(s.scalar(select(func.max(ChangeRow.id))) or 0)

    def changes(self, after: int, limit: int = 1000) -> tuple[list[Change], int]:
        """Writes after revision ``after`` in order, at most ``limit``, and the oldest revision
        the log still holds (a reader whose ``after`` is older than that has missed writes
        that were compacted away and must list again). When nothing can have been missed —
        no writes after ``after``, or the first is ``after + 1`` — the second value is just
        ``after + 1`` at most, which saves a query on every read of a reader keeping up."""
        if not self._is_postgres:
            with self._driver_cursor() as cursor:
                cursor.execute(
                    "SELECT id, kind, name, type, at FROM changes WHERE id > ? ORDER BY id LIMIT ?",
                    (after, limit),
                )
                changes = [Change(*row) for row in cursor.fetchall()]
                if not changes or changes[0].revision == after + 1:
                    return changes, min(after + 1, changes[0].revision) if changes else after
                cursor.execute("SELECT min(id) FROM changes")
                return changes, int(cursor.fetchone()[0] or 0)
        with self._sessions() as s:
            rows = s.execute(
                select(ChangeRow.id, ChangeRow.kind, ChangeRow.name, ChangeRow.type, ChangeRow.at)
                .where(ChangeRow.id > after)
                .order_by(ChangeRow.id)
                .limit(limit)
            )
            changes = [Change(*row) for row in rows]
            if not changes or changes[0].revision == after + 1:
                # Nothing after ``after``, or the very next revision: nothing was compacted
                # away in between (the newest row always stays), so the oldest revision
                # held is at most ``after + 1`` and need not be asked for.
                return changes, min(after + 1, changes[0].revision) if changes else after
            oldest = int(s.scalar(select(func.min(ChangeRow.id))) or 0)
            return changes, oldest

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
        return self.transitions([change])[0] > 0

    def transitions(self, changes: Sequence[Transition]) -> list[int]:
        """Write several transitions, of different jobs, in one transaction: each is guarded
        as ``transition`` says, and a refused one writes nothing. Far cheaper per job than a
        transaction each (the loop records thousands of pending reasons at once): the guards
        read only the columns they compare and the writes are bulk statements. Returns, for
        each, the job's new resourceVersion, or 0 when refused. Raises ValueError when two
        name the same job."""
        ids = [c.job_id for c in changes]
        if len(set(ids)) != len(ids):
            raise ValueError("Store.transitions takes at most one transition per job")
        if not changes:
            return []
        with self._txn() as s:
            conn = s.connection()
            guards = {r.id: r for r in conn.execute(_GUARDS, {"ids": ids})}
            fence = self._fence_refusal(s) if guards else ""
            accepted: list[tuple[str, float, Transition]] = []
            for change in changes:
                guard = guards.get(change.job_id)
                if guard is None:
                    log.info("transition of job id %d refused: the job is gone", change.job_id)
                    continue
                refusal = _refusal(guard.phase, guard.resource_version, change) or fence
                if refusal:
                    log.warning("transition of job %s refused: %s", guard.name, refusal)
                    continue
                accepted.append((guard.name, guard.created_at, change))
            if not accepted:
                return [0] * len(changes)
            revisions = conn.execute(
                _ADD_CHANGES,
                [
                    {
                        "kind": "Job",
                        "name": name,
                        "type": "MODIFIED",
                        "at": max((e.at for e in change.events), default=created_at),
                    }
                    for name, created_at, change in accepted
                ],
            ).scalars()
            applied = {c.job_id: r for (_, _, c), r in zip(accepted, revisions, strict=True)}
            # One UPDATE per set of columns written (an executemany each).
            updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for _, _, change in accepted:
                values = {**change.job, "resource_version": applied[change.job_id]}
                updates.setdefault(tuple(sorted(values)), []).append(
                    {**values, "job_id_": change.job_id}
                )
            for params in updates.values():
                conn.execute(_UPDATE_JOB, params)
            for _, _, change in accepted:
                self._write_pods(s, change)
            events = [
                {
                    "job_id": change.job_id,
                    "at": ev.at,
                    "type": ev.type,
                    "reason": ev.reason,
                    "message": ev.message,
                    "kind": "Job",
                    "name": name,
                    "facts": dict(ev.facts),
                }
                for name, _, change in accepted
                for ev in change.events
            ]
            if events:
                conn.execute(_ADD_EVENTS, events)
            return [applied.get(job_id, 0) for job_id in ids]

    @staticmethod
    def _write_pods(s: Session, change: Transition) -> None:
        """The pod writes of an accepted transition: changed fields, new pods."""
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


@dataclass(slots=True)
class _Apply:
    """One caller's Store.apply, waiting to be written with those of other threads."""

    configs: Sequence[tuple[str, str, dict[str, Any]]]
    jobs: Sequence[tuple[str, str, dict[str, Any], str, int]]
    now: float
    actions: list[str] = field(default_factory=list)
    error: Exception | None = None
    is_done: bool = False


def _new_jobs(
    request: _Apply, existing: Mapping[str, dict[str, Any]]
) -> tuple[list[str], list[dict[str, Any]]]:
    """The action for each job of ``request`` and the rows of those to create, given the
    manifests of the jobs that exist (``existing``, by name). Raises ValueError for a job
    that exists with another manifest."""
    actions: list[str] = []
    rows: list[dict[str, Any]] = []
    staged: dict[str, dict[str, Any]] = {}
    for name, uid, manifest, queue, priority in request.jobs:
        found = staged.get(name, existing.get(name))
        if found is not None:
            if found == manifest:
                actions.append("unchanged")
                continue
            raise ValueError(
                f'job "{name}" already exists with a different spec; jobs cannot be changed '
                f"once submitted: delete it (phalanx delete job {name}) or use a new name"
            )
        labels, annotations, owners = metadata_of(manifest)
        rows.append(
            {
                "name": name,
                "uid": uid,
                "manifest": manifest,
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
                "created_at": request.now,
                "reason_facts": {},
                "labels": labels,
                "annotations": annotations,
                "owner_refs": owners,
                "generation": 1,
                "conditions": [],
            }
        )
        staged[name] = manifest
        actions.append("created")
    return actions, rows


def _insert_jobs(conn: Connection, new_rows: list[dict[str, Any]]) -> None:
    """Insert new jobs (rows of ``_new_jobs``) with their revisions and Created events, in
    bulk: one statement per table, not one flush per row."""
    if not new_rows:
        return
    revisions = conn.execute(
        _ADD_CHANGES,
        [
            {"kind": "Job", "name": n["name"], "type": "ADDED", "at": n["created_at"]}
            for n in new_rows
        ],
    ).scalars()
    for new, revision in zip(new_rows, revisions, strict=True):
        new["resource_version"] = revision
    ids = conn.execute(_ADD_JOBS, new_rows).scalars()
    conn.execute(
        _ADD_EVENTS,
        [
            {
                "job_id": job_id,
                "at": new["created_at"],
                "type": "Normal",
                "reason": "Created",
                "message": f"submitted to queue {new['queue']}",
                "kind": "Job",
                "name": new["name"],
                "facts": {"queue": new["queue"]},
            }
            for new, job_id in zip(new_rows, ids, strict=True)
        ],
    )


def _lease(row: LeaseRow) -> Lease:
    return Lease(row.name, row.holder, row.term, row.acquired_at, row.renewed_at, row.expires_at)


def _refusal(phase: str, version: int, change: Transition) -> str:
    """Why ``change`` may not be applied to a job in ``phase`` at resourceVersion
    ``version`` ("" when it may)."""
    if change.expect_phase is not None and phase != change.expect_phase:
        return f"expected phase {change.expect_phase}, found {phase}"
    if change.expect_version is not None and version != change.expect_version:
        return f"expected resourceVersion {change.expect_version}, found {version}"
    target = change.job.get("phase")
    if isinstance(target, str) and target != phase and not is_allowed(phase, target):
        return f"{phase} → {target} is not an allowed transition"
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
