"""Alembic revisions of the store's schema, applied by ``phalanx.store.schema.upgrade``.

Revisions are written and reviewed by hand; each has an upgrade test from a fixture database
written by the release before it (tests/integration/store/test_migrations.py).
"""
