"""Object metadata on every object, a revision log, events on any kind with facts, leases.

- jobs: reason_facts, labels, annotations, owner_refs, resource_version, generation,
  conditions (labels and annotations copied from each stored manifest);
- config_objects: uid (new for every existing row), labels, annotations, owner_refs,
  resource_version, generation;
- events: job_id may be null; kind and name (filled from the job) and facts;
- changes: the revision log (one ADDED row per existing object, in id order, whose id
  becomes that object's resource_version);
- leases: renewable leases for leader election.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_EMPTY_MAP = sa.text("'{}'")
_EMPTY_LIST = sa.text("'[]'")


def _metadata_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("labels", sa.JSON, nullable=False, server_default=_EMPTY_MAP),
        sa.Column("annotations", sa.JSON, nullable=False, server_default=_EMPTY_MAP),
        sa.Column("owner_refs", sa.JSON, nullable=False, server_default=_EMPTY_LIST),
        sa.Column("resource_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("generation", sa.Integer, nullable=False, server_default="1"),
    ]


def _meta(manifest: Any, key: str) -> dict[str, str]:
    metadata = manifest.get("metadata") if isinstance(manifest, dict) else None
    value = metadata.get(key) if isinstance(metadata, dict) else None
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("reason_facts", sa.JSON, nullable=False, server_default=_EMPTY_MAP)
        )
        for column in _metadata_columns():
            batch.add_column(column)
        batch.add_column(
            sa.Column("conditions", sa.JSON, nullable=False, server_default=_EMPTY_LIST)
        )
    with op.batch_alter_table("config_objects") as batch:
        batch.add_column(sa.Column("uid", sa.String(36), nullable=False, server_default=""))
        for column in _metadata_columns():
            batch.add_column(column)
    with op.batch_alter_table("events") as batch:
        batch.alter_column("job_id", existing_type=sa.Integer, nullable=True)
        batch.add_column(sa.Column("kind", sa.String(32), nullable=False, server_default="Job"))
        batch.add_column(sa.Column("name", sa.String(253), nullable=False, server_default=""))
        batch.add_column(sa.Column("facts", sa.JSON, nullable=False, server_default=_EMPTY_MAP))
    op.create_index("ix_events_kind_name", "events", ["kind", "name"])
    changes = op.create_table(
        "changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("holder", sa.String(253), nullable=False),
        sa.Column("term", sa.Integer, nullable=False),
        sa.Column("acquired_at", sa.Float, nullable=False),
        sa.Column("renewed_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    _backfill(changes)


def _backfill(changes: sa.Table) -> None:
    """Give every existing object its metadata and a first revision."""
    bind = op.get_bind()
    now = time.time()
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("manifest", sa.JSON),
        sa.column("labels", sa.JSON),
        sa.column("annotations", sa.JSON),
        sa.column("resource_version", sa.Integer),
    )
    configs = sa.table(
        "config_objects",
        sa.column("kind", sa.String),
        sa.column("name", sa.String),
        sa.column("manifest", sa.JSON),
        sa.column("uid", sa.String),
        sa.column("labels", sa.JSON),
        sa.column("annotations", sa.JSON),
        sa.column("resource_version", sa.Integer),
    )
    events = sa.table("events", sa.column("job_id", sa.Integer), sa.column("name", sa.String))

    def revision(kind: str, name: str) -> int:
        result = bind.execute(changes.insert().values(kind=kind, name=name, type="ADDED", at=now))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    for kind, name, manifest in bind.execute(
        sa.select(configs.c.kind, configs.c.name, configs.c.manifest).order_by(
            configs.c.kind, configs.c.name
        )
    ).all():
        bind.execute(
            configs.update()
            .where(configs.c.kind == kind, configs.c.name == name)
            .values(
                uid=uuid.uuid4().hex,
                labels=_meta(manifest, "labels"),
                annotations=_meta(manifest, "annotations"),
                resource_version=revision(kind, name),
            )
        )
    for job_id, name, manifest in bind.execute(
        sa.select(jobs.c.id, jobs.c.name, jobs.c.manifest).order_by(jobs.c.id)
    ).all():
        bind.execute(
            jobs.update()
            .where(jobs.c.id == job_id)
            .values(
                labels=_meta(manifest, "labels"),
                annotations=_meta(manifest, "annotations"),
                resource_version=revision("Job", name),
            )
        )
        bind.execute(events.update().where(events.c.job_id == job_id).values(name=name))


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("changes")
    op.drop_index("ix_events_kind_name", table_name="events")
    with op.batch_alter_table("events") as batch:
        for column in ("facts", "name", "kind"):
            batch.drop_column(column)
    with op.batch_alter_table("config_objects") as batch:
        for column in (
            "generation",
            "resource_version",
            "owner_refs",
            "annotations",
            "labels",
            "uid",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("jobs") as batch:
        for column in (
            "conditions",
            "generation",
            "resource_version",
            "owner_refs",
            "annotations",
            "labels",
            "reason_facts",
        ):
            batch.drop_column(column)
