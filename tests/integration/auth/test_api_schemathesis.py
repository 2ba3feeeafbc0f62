"""schemathesis against the running API: every operation of its OpenAPI document, with the
admin token and without one, positive and negative cases. No answer may be a server error
(5xx) or contradict the document (status code, content type, body schema).

A real server (``ApiServer`` on port 0, local backend with virtual nodes) in a thread; a few
examples per operation and mode (``PHALANX_SCHEMATHESIS_EXAMPLES``, default 6) keep the wall
time modest. The counts are printed (``pytest -s``) and written to
``$PHALANX_SCHEMATHESIS_REPORT`` when set.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis  # the dev extra: a test that must run, never skip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from phalanx.api.server import ApiServer, ServerSettings

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("PHALANX_SCHEMATHESIS_EXAMPLES", "6"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    data_dir: Path = tmp_path_factory.mktemp("schemathesis")
    api = ApiServer(
        ServerSettings(
            data_dir=data_dir, nodes="2x2", port=0, log_level="warning", router_port=None
        )
    )
    thread = threading.Thread(target=api.run, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        api.request_stop()
        thread.join(timeout=30)


@dataclass
class Tally:
    """Calls per operation, answers per status, and the first failure per operation."""

    calls: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)


def exercise(
    operation: Any, mode: GenerationMode, server: ApiServer, headers: dict[str, str], tally: Tally
) -> None:
    """Call ``operation`` with up to EXAMPLES generated cases of ``mode``; check each answer."""
    label = f"{operation.method.upper()} {operation.path}"
    strategy = operation.as_strategy(generation_mode=mode)
    # A watch's body is an event stream: its items are checked by the watch tests;
    # schemathesis reads the heartbeat comments as items.
    is_stream = operation.path.endswith("/watch")

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(strategy)
        if is_stream:  # a watch streams until it times out; end it at once
            case.query = {**(case.query or {}), "timeoutSeconds": 0.2}
        try:
            response = case.call(base_url=server.url, headers=headers, timeout=30)
            tally.calls[label] += 1
            tally.statuses[response.status_code] += 1
            case.validate_response(response, checks=CHECKS[:3] if is_stream else CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # keep the first per operation
            tally.failures.setdefault(f"{label} [{mode.value}]", str(exc)[:1500])

    run()


@pytest.mark.parametrize("is_authenticated", [True, False], ids=["admin-token", "no-token"])
def test_no_server_errors_and_no_schema_violations(
    server: ApiServer, is_authenticated: bool
) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {server.token}"} if is_authenticated else {}
    tally = Tally()
    calls, statuses, failures = tally.calls, tally.statuses, tally.failures
    unsatisfiable: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        label = f"{operation.method.upper()} {operation.path}"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                exercise(operation, mode, server, headers, tally)
            except Unsatisfiable:  # no negative case exists (an operation without inputs)
                unsatisfiable.append(f"{label} [{mode.value}]")
    report = {
        "authenticated": is_authenticated,
        "operations": operations,
        "calls": sum(calls.values()),
        "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(n for s, n in statuses.items() if s >= 500),
        "failing_operations": {k: " ".join(v.split())[:300] for k, v in sorted(failures.items())},
        "without_cases": len(unsatisfiable),
    }
    print(json.dumps(report, indent=2))
    if path := os.environ.get("PHALANX_SCHEMATHESIS_REPORT"):
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(report) + "\n")
    assert operations >= 20
    assert report["server_errors"] == 0, failures
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    if not is_authenticated:
        # Without a token only the open routes answer anything but 401.
        assert set(statuses) <= {200, 401, 404, 405}, statuses
