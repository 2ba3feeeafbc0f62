"""The apply path's SQLite writes through the DBAPI cursor, without SQLAlchemy's statement
machinery.

Submitting one job through SQLAlchemy Core cost about 2 ms of CPU, most of it compiling,
binding and wrapping results around four statements; the same rows written with
``executemany`` on the driver's cursor cost a fraction of that. Ids are allocated here, not by
``RETURNING`` (which ``executemany`` cannot return): the caller holds SQLite's write lock
(``BEGIN IMMEDIATE``), so no other writer can take ``max(id) + 1`` in between, and that is the
id SQLite itself would give (the tables have no ``AUTOINCREMENT``; see Store.compact).

Only for SQLite; PostgreSQL keeps the Core statements. Must not import controllers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

__all__ = ["insert_audit", "insert_jobs", "manifests_named"]

_encode = json.JSONEncoder(separators=(",", ":")).encode


def _json(value: Any) -> str:
    """``value`` as compact JSON; most of a new job's JSON columns are empty."""
    if not value:
        if type(value) is dict:
            return "{}"
        if type(value) is list:
            return "[]"
    return _encode(value)


#: Columns of a new job, in the order of the INSERT's parameters.
_JOB_COLUMNS = (
    "id",
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
    "reason_facts",
    "labels",
    "annotations",
    "owner_refs",
    "resource_version",
    "generation",
    "conditions",
)
_JSON_COLUMNS = frozenset(
    ("manifest", "reason_facts", "labels", "annotations", "owner_refs", "conditions")
)
_INSERT_JOB = (
    f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({', '.join('?' for _ in _JOB_COLUMNS)})"
)
_INSERT_CHANGE = "INSERT INTO changes (id, kind, name, type, at) VALUES (?, 'Job', ?, 'ADDED', ?)"
_INSERT_EVENT = (
    "INSERT INTO events (job_id, at, type, reason, message, kind, name, facts) "
    "VALUES (?, ?, 'Normal', 'Created', ?, 'Job', ?, ?)"
)
_INSERT_AUDIT = (
    "INSERT INTO audit (at, user, action, kind, name, status, detail) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
#: Names per ``IN`` (SQLite's default limit of bound parameters is far above it).
_CHUNK = 500


def manifests_named(cursor: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    """The manifests of the stored jobs among ``names``, by name."""
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(names), _CHUNK):
        chunk = names[i : i + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        cursor.execute(f"SELECT name, manifest FROM jobs WHERE name IN ({marks})", chunk)
        out.update((name, json.loads(manifest)) for name, manifest in cursor.fetchall())
    return out


def insert_jobs(cursor: Any, new_rows: Iterable[dict[str, Any]]) -> None:
    """Insert new jobs (rows of ``sql._new_jobs``) with their ADDED revisions and Created
    events; sets each row's ``id`` and ``resource_version``. The caller holds the write
    lock."""
    rows = list(new_rows)
    if not rows:
        return
    cursor.execute("SELECT coalesce(max(id), 0) FROM changes")
    (revision,) = cursor.fetchone()
    cursor.execute("SELECT coalesce(max(id), 0) FROM jobs")
    (job_id,) = cursor.fetchone()
    for row in rows:
        revision += 1
        job_id += 1
        row["resource_version"], row["id"] = revision, job_id
    cursor.executemany(
        _INSERT_CHANGE, [(row["resource_version"], row["name"], row["created_at"]) for row in rows]
    )
    cursor.executemany(_INSERT_JOB, [_job_values(row) for row in rows])
    # The Created event's message and facts depend only on the queue: built once per queue.
    messages: dict[str, str] = {}
    facts: dict[str, str] = {}
    for queue in {row["queue"] for row in rows}:
        messages[queue] = f"submitted to queue {queue}"
        facts[queue] = _encode({"queue": queue})
    cursor.executemany(
        _INSERT_EVENT,
        [
            (row["id"], row["created_at"], messages[row["queue"]], row["name"], facts[row["queue"]])
            for row in rows
        ],
    )


def _job_values(row: dict[str, Any]) -> tuple[Any, ...]:
    """The INSERT's parameters of one new job, in ``_JOB_COLUMNS`` order (JSON columns
    encoded); spelt out rather than looped over the columns: it runs once per job."""
    return (
        row["id"],
        row["name"],
        row["uid"],
        _json(row["manifest"]),
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
        _json(row["reason_facts"]),
        _json(row["labels"]),
        _json(row["annotations"]),
        _json(row["owner_refs"]),
        row["resource_version"],
        row["generation"],
        _json(row["conditions"]),
    )


def insert_audit(cursor: Any, values: Iterable[tuple[float, str, str, str, str, int, str]]) -> None:
    """Insert audit rows (at, user, action, kind, name, status, detail), already cut to the
    columns' lengths. The caller holds the write lock and commits."""
    cursor.executemany(_INSERT_AUDIT, list(values))
