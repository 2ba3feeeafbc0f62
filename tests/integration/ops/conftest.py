"""Fixtures for the ops tests (helpers live in opsharness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opsharness import TOKEN, SimPlane

from asgi_client import app_client
from phalanx.api import create_app


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimPlane]:
    s = SimPlane(tmp_path)
    yield s
    s.store.close()


@pytest.fixture
def http(sim: SimPlane) -> Iterator[httpx.Client]:
    with app_client(create_app(sim.plane, TOKEN), TOKEN) as client:
        yield client
