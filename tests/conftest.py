"""Shared test settings: hypothesis profiles (CI runs more examples), a real PostgreSQL."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, text

from pg import PostgresUnavailableError, postgres_server
from phalanx.store import default_url

settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# Servers started by tests (as root in CI) run pods as the server's user, as the tests'
# workloads expect (they write files under tmp_path, which is 0700); the pod-user
# isolation is tested on its own, in tests/integration/backends/test_isolation.py.
os.environ.setdefault("PHALANX_POD_USER", "none")
# Each server's start-up warm-up (phalanx.api.ui.warm_up) costs about 0.7 s of CPU; the
# suite starts hundreds of servers. The warm-up has its own tests, which call it directly.
os.environ.setdefault("PHALANX_UI_WARM_UP", "0")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailableError as exc:
        if os.environ.get("PHALANX_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: SQLite under ``tmp_path``, or one on the test PostgreSQL server."""
    if request.param == "sqlite":
        yield default_url(tmp_path)
        return
    url = request.getfixturevalue("postgres_url")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"t_{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**8}"
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield url.rsplit("/", 1)[0] + f"/{name}"
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()
