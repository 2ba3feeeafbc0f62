"""Alembic environment: runs the revisions on the connection that ``phalanx.store.schema``
hands over (there is no alembic.ini and no URL here)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    # SQLite cannot alter columns in place: batch operations copy the table.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
