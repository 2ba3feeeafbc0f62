"""Quarantine through the CLI and the API: `get nodes`, `describe node` with the evidence, and
`phalanx node release`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from typer.testing import Result

from phalanx.controllers.health import HealthTracker, NodeFailure
from phalanx.store import open_store

Invoke = Callable[..., Result]


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}{result.exception!r}"
    return result.stdout


def test_quarantine_is_shown_with_evidence_and_released_by_hand(
    cli: Invoke, server: object
) -> None:
    data_dir: Path = server.data_dir  # type: ignore[attr-defined]
    store = open_store(None, data_dir)
    try:
        tracker = HealthTracker(store, time.time)  # cool-down: an hour from now
        tracker.record_failure(
            "node-0", NodeFailure(time.time(), "train", 1, "worker-0", "NodeFault")
        )
        tracker.quarantine_now("node-0", "XID 79: GPU has fallen off the bus")
    finally:
        store.close()
    rows = [line.split() for line in ok(cli("get", "nodes")).splitlines()]
    assert rows[1][:2] == ["node-0", "True,Quarantined"]
    assert rows[2][:2] == ["node-1", "True"]
    text = ok(cli("describe", "node", "node-0"))
    assert "Quarantined:" in text and "XID 79: GPU has fallen off the bus" in text
    assert "phalanx node release node-0" in text
    failures = text.split("Node-side failures:\n")[1].splitlines()
    assert failures[0].split() == ["AT", "JOB", "ATTEMPT", "POD", "REASON"]
    assert failures[1].split()[1:] == ["train", "1", "worker-0", "NodeFault"]
    client = server.client()  # type: ignore[attr-defined]
    with client:
        assert client.node("node-0")["quarantine"]["reason"].startswith("XID 79")  # type: ignore[index]
    assert ok(cli("node", "release", "node-0")) == "node/node-0 released\n"
    rows = [line.split() for line in ok(cli("get", "nodes")).splitlines()]
    assert rows[1][:2] == ["node-0", "True"]
    assert "Node-side failures" not in ok(cli("describe", "node", "node-0"))
    bad = cli("node", "release", "nope")
    assert bad.exit_code == 1 and 'node "nope" not found' in bad.stderr
    bad = cli("node", "drain", "node-0")
    assert bad.exit_code == 1 and "unknown node action" in bad.stderr
