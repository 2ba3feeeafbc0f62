"""Fixtures for control-plane tests (helpers live in harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Harness


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path, "2x2")
    yield h
    for job in h.plane.list_jobs():
        h.plane.cancel_job(job.name)
    h.run_until(lambda: not h.plane.store.pods(live_only=True), timeout_s=15)
    h.plane.store.close()
