"""Fixtures for the ops tests (helpers live in opsharness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opsharness import TOKEN, AppTransport, SimPlane

from phalanx.api import create_app


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimPlane]:
    s = SimPlane(tmp_path)
    yield s
    s.store.close()


@pytest.fixture
def http(sim: SimPlane) -> Iterator[httpx.Client]:
    with httpx.Client(
        transport=AppTransport(create_app(sim.plane, TOKEN)),
        base_url="http://phalanx.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as client:
        yield client
