"""Schema upgrades from a database written by the release before migrations existed
(tests/fixtures/store-v0, made by tests/fixtures/make_store_v0.py), on SQLite and on
PostgreSQL: nothing is lost, every object gets its metadata, and every job still works."""

from __future__ import annotations

import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from phalanx.backends.local.backend import LocalBackend
from phalanx.backends.local.nodes import parse_nodes_option
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.store import Store, default_url, schema

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parents[2] / "fixtures" / "store-v0"
#: The tables of revision 0001, parents first.
TABLES = ("config_objects", "jobs", "pods", "events")
KEYS = {"config_objects": ("kind", "name"), "jobs": ("id",), "pods": ("pod_id",), "events": ("id",)}


def fixture_rows() -> dict[str, list[dict[str, Any]]]:
    """Every row of the fixture, as the old release wrote it (JSON columns decoded)."""
    engine = create_engine(f"sqlite:///{FIXTURE / 'phalanx.db'}")
    rows: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for table in TABLES:
            columns = inspect(conn).get_columns(table)
            result = conn.execute(text(f'SELECT * FROM "{table}"'))
            rows[table] = [_decoded(dict(r._mapping), columns) for r in result]
    engine.dispose()
    return rows


def _decoded(row: dict[str, Any], columns: list[Any]) -> dict[str, Any]:
    import json

    for column in columns:
        if str(column["type"]) == "JSON" and isinstance(row[column["name"]], str):
            row[column["name"]] = json.loads(row[column["name"]])
        if str(column["type"]) == "BOOLEAN":
            row[column["name"]] = bool(row[column["name"]])
    return row


def load_fixture(url: str, data_dir: Path) -> None:
    """Put the fixture at ``url``: the file itself for SQLite; for PostgreSQL the schema of
    revision 0001 (made by that revision) filled with the fixture's rows."""
    shutil.copytree(FIXTURE / "checkpoints", data_dir / "checkpoints")
    if url.startswith("sqlite"):
        shutil.copy(FIXTURE / "phalanx.db", data_dir / "phalanx.db")
        return
    engine = create_engine(url)
    schema.upgrade(engine, schema.BASELINE)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))  # as the old release left it
        from sqlalchemy import MetaData

        meta = MetaData()
        meta.reflect(conn)
        for table, rows in fixture_rows().items():
            if rows:
                conn.execute(meta.tables[table].insert(), rows)
        for table in ("jobs", "events"):
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                )
            )
    engine.dispose()


@pytest.fixture
def upgraded(store_url: str, tmp_path: Path) -> Iterator[tuple[Store, Path]]:
    if store_url.startswith("sqlite"):
        store_url = default_url(tmp_path)
    load_fixture(store_url, tmp_path)
    engine = create_engine(store_url)
    assert schema.current(engine) == schema.BASELINE
    engine.dispose()
    store = Store(store_url)
    yield store, tmp_path
    store.close()


def test_upgrade_keeps_every_row_and_adds_metadata(upgraded: tuple[Store, Path]) -> None:
    store, _ = upgraded
    assert schema.current(store.engine) == schema.head()
    before = fixture_rows()
    with store.engine.connect() as conn:
        for table, old_rows in before.items():
            columns = inspect(conn).get_columns(table)
            now = {
                tuple(r._mapping[k] for k in KEYS[table]): _decoded(dict(r._mapping), columns)
                for r in conn.execute(text(f'SELECT * FROM "{table}"'))
            }
            assert len(now) == len(old_rows), table
            for old in old_rows:
                new = now[tuple(old[k] for k in KEYS[table])]
                assert {k: new[k] for k in old} == old, (table, old)
    jobs = store.list_jobs()
    assert {j.phase for j in jobs} == {
        "Pending",
        "Admitted",
        "Running",
        "Succeeded",
        "Failed",
        "Preempted",
        "Cancelled",
    }
    versions = [j.resource_version for j in jobs]
    assert all(v > 0 for v in versions) and len(set(versions)) == len(versions)
    for kind in ("Queue", "ResourceFlavor", "NodeHealth"):
        for obj in store.list_objects(kind):
            assert len(obj.uid) == 32 and obj.resource_version > 0 and obj.generation == 1
    assert {e.name for j in jobs for e in store.events(j.id)} == {j.name for j in jobs}
    assert store.revision() == max(
        versions + [o.resource_version for o in store.list_objects("Queue")]
    )
    # Opening again is a no-op.
    assert schema.upgrade(store.engine) == (schema.head(), schema.head())


def test_every_job_still_works_after_the_upgrade(upgraded: tuple[Store, Path]) -> None:
    store, data_dir = upgraded
    backend = LocalBackend(data_dir, parse_nodes_option("3x4"))
    plane = ControlPlane(store, backend, ControlPlaneConfig(data_dir, grace_period_s=1.0))
    try:
        check_jobs(plane, store)
    finally:
        for pod in store.pods(live_only=True):
            backend.stop(pod.pod_id, 0)
        backend.close()


def check_jobs(plane: ControlPlane, store: Store) -> None:
    plane.reconcile()

    def run_until(predicate: Any, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            plane.tick()
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError([(j.name, j.phase.value, j.message) for j in plane.list_jobs()])

    # Finished jobs read back whole, with their checkpoint.
    done = plane.get_job("done")
    assert done.phase.value == "Succeeded" and done.progress is not None
    assert done.progress.checkpoint_step == 3
    assert done.events[0].reason == "Created"
    assert plane.get_job("broken").phase.value == "Failed"
    # Node health survived: node-2 quarantined, node-1 with evidence.
    nodes = {n.node.name: n for n in plane.list_nodes()}
    assert nodes["node-2"].quarantine is not None
    assert nodes["node-1"].failures
    # The pods that ran when the fixture was written are gone (as after a crash): reconcile
    # relaunched the admitted ones, the preempted job went back to the queue, and the job
    # that preempted it runs.
    run_until(
        lambda: (
            {n: plane.get_job(n).phase.value for n in ("gang", "fresh", "low", "high")}
            == {"gang": "Running", "fresh": "Running", "low": "Pending", "high": "Running"}
        )
    )
    # A new job runs to the end on the upgraded store.
    plane.apply(
        [
            {
                "apiVersion": "phalanx.dev/v1alpha1",
                "kind": "Job",
                "metadata": {"name": "after-upgrade", "labels": {"team": "a"}},
                "spec": {
                    "queue": "q",
                    "priority": 100,
                    "podSets": [
                        {
                            "name": "worker",
                            "command": [sys.executable, "-c", "print('ok')"],
                            "resources": {"cpu": "100m", "memory": "64Mi"},
                        }
                    ],
                },
            }
        ]
    )
    run_until(lambda: plane.get_job("after-upgrade").phase.value == "Succeeded")
    assert store.get_job("after-upgrade").labels == {"team": "a"}  # type: ignore[union-attr]
    # Every unfinished job of the fixture can still be cancelled, and stops.
    for job in plane.list_jobs():
        plane.cancel_job(job.name)
    run_until(lambda: not store.pods(live_only=True))
    phases = {j.name: j.phase.value for j in plane.list_jobs()}
    assert phases["done"] == "Succeeded" and phases["broken"] == "Failed"
    assert all(
        p == "Cancelled" for n, p in phases.items() if n not in ("done", "broken", "after-upgrade")
    )


def test_fixture_is_the_pre_migration_schema() -> None:
    """The fixture must stay as the old release wrote it (no alembic_version table)."""
    con = sqlite3.connect(FIXTURE / "phalanx.db")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert tables == set(TABLES)


def test_upgrade_from_0002_adds_users_tokens_and_audit(store_url: str, tmp_path: Path) -> None:
    """A store written at revision 0002 (the fixture brought to 0002, then written to by a
    store of that schema) upgrades to 0003: the identity tables appear, empty; every job and
    object is kept as it was; jobs from before have no owner, so only operators and admins
    may act on them."""
    from phalanx import kinds
    from phalanx.auth import AccessDeniedError, Principal, Role, check_owner
    from phalanx.store import IdentityStore, TokenRecord, UserRecord

    if store_url.startswith("sqlite"):
        store_url = default_url(tmp_path)
    load_fixture(store_url, tmp_path)
    engine = create_engine(store_url)
    schema.upgrade(engine, "0002")
    assert schema.current(engine) == "0002"
    job = kinds.parse(
        {
            "apiVersion": "phalanx.dev/v1alpha1",
            "kind": "Job",
            "metadata": {"name": "before-users"},
            "spec": {
                "queue": "team-a",
                "podSets": [
                    {"name": "w", "replicas": 1, "resources": {"cpu": 1}, "command": ["true"]}
                ],
            },
        }
    )
    old = Store(store_url, migrate=False)
    old.apply([], [("before-users", "u-before", job.manifest, "team-a", 0)], time.time())
    old.close()
    with engine.connect() as conn:
        assert not inspect(conn).has_table("users")
        before = {
            table: sorted(map(tuple, conn.execute(text(f'SELECT * FROM "{table}"')).all()))
            for table in ("jobs", "config_objects", "pods", "events", "changes")
        }
    engine.dispose()

    store = Store(store_url)  # upgrades at open
    try:
        assert schema.current(store.engine) == "0003" == schema.head()
        with store.engine.connect() as conn:
            for table, rows in before.items():
                after = sorted(map(tuple, conn.execute(text(f'SELECT * FROM "{table}"')).all()))
                assert after == rows, table
            for table in ("users", "tokens", "audit"):
                assert conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar() == 0
        rows = IdentityStore(store)
        rows.create_user(UserRecord("alice", "user", ("ml",), 1.0))
        rows.add_token(TokenRecord("t1", "alice", "ci", "d" * 64, 1.0, None, None))
        found = rows.token_by_digest("d" * 64)
        assert found is not None and found[1].groups == ("ml",)
        with pytest.raises(AccessDeniedError, match="no user \\(created before users existed\\)"):
            check_owner(store, Principal("alice", Role.USER), "Job", "before-users", "cancel")
        check_owner(store, Principal("olga", Role.OPERATOR), "Job", "before-users", "cancel")
    finally:
        store.close()
