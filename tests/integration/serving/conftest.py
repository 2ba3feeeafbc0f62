"""The fixture of the Service tests (the harness lives in service_harness.py): a serving
harness on ``tmp_path``, closed after the test. A test module that sets up more (queues, say)
defines its own ``serving``, which takes the place of this one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_harness import ServingHarness


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[ServingHarness]:
    harness = ServingHarness(tmp_path)
    try:
        yield harness
    finally:
        harness.close()
