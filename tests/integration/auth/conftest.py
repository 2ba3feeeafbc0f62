"""Fixtures of the auth tests (helpers live in authharness.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from authharness import ADMIN_TOKEN, SETUP, Clock, Site

from asgi_client import app_client
from phalanx.api import create_app
from phalanx.auth import AuditLog, Identity
from phalanx.backends.local.backend import LocalBackend
from phalanx.backends.local.nodes import parse_nodes_option
from phalanx.controllers.errors import NotFoundError
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.store import IdentityStore, open_store


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    store = open_store(None, tmp_path)
    backend = LocalBackend(tmp_path, parse_nodes_option("2x2"))
    plane = ControlPlane(
        store, backend, ControlPlaneConfig(data_dir=tmp_path, tick_s=0.05, grace_period_s=2)
    )
    plane.start()
    clock = Clock()
    rows = IdentityStore(store)
    identity = Identity(rows, ADMIN_TOKEN, clock=clock)
    audit = AuditLog(rows)
    app = create_app(plane, ADMIN_TOKEN, identity=identity, audit=audit)
    with app_client(app, ADMIN_TOKEN) as admin:
        response = admin.post("/api/v1/apply", json={"manifests": SETUP})
        assert response.status_code == 200, response.text
    try:
        yield Site(app, plane, identity, audit, clock)
    finally:
        for j in plane.list_jobs():
            if not j.phase.is_terminal:
                with contextlib.suppress(NotFoundError):  # deleted meanwhile (by its owner)
                    plane.cancel_job(j.name)
        plane.stop()
        audit.close()
        backend.close()
        store.close()
