"""Kinds through the registry, labels and selectors, pages, describe of every kind, and
``get -w`` printing a row per change (in a real subprocess, stopped with Ctrl-C)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from phalanx.cli.main import app

Invoke = Callable[..., Result]


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}{result.exception!r}"
    return result.stdout


def one_line_error(result: Result, code: int = 1) -> str:
    """Assert the command failed with exactly one ``error:`` line and no traceback."""
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def table(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines()]


OBJECTS_YAML = """\
apiVersion: phalanx.dev/v1alpha1
kind: ResourceFlavor
metadata: {name: default, labels: {tier: standard}}
---
apiVersion: phalanx.dev/v1alpha1
kind: Queue
metadata:
  name: team-a
  labels: {team: a}
  annotations: {example.com/owner: alice}
spec:
  cohort: research
  flavors:
  - name: default
    resources:
      nvidia.com/gpu: {nominal: 4, borrowingLimit: 2}
      cpu: 8
---
apiVersion: phalanx.dev/v1alpha1
kind: Queue
metadata: {name: team-b, labels: {team: b}}
spec:
  flavors:
  - name: default
    resources: {nvidia.com/gpu: 2}
"""


WATCH_ARGS = ["get", "jobs", "-w", "--output-watch-events"]


def parked_job(name: str, **labels: str) -> str:
    """A Job in a queue that does not exist: accepted, never started (no process runs)."""
    label_text = ", ".join(f"{k}: {v}" for k, v in labels.items())
    return f"""\
apiVersion: phalanx.dev/v1alpha1
kind: Job
metadata: {{name: {name}, labels: {{{label_text}}}}}
spec:
  queue: nowhere
  podSets:
  - name: main
    replicas: 1
    resources: {{cpu: 100m, memory: 64Mi}}
    command: ["true"]
"""


def names(output: str) -> list[str]:
    return [row[0] for row in table(output)[1:]]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param(["get", "widgets"], "unknown kind 'widgets'; known kinds: ", id="get"),
        pytest.param(["describe", "widget", "x"], "unknown kind 'widget'", id="describe"),
        pytest.param(["delete", "widgets", "x"], "unknown kind 'widgets'", id="delete"),
        pytest.param(
            ["delete", "node", "node-0"],
            "nodes are observed from the backend and cannot be deleted",
            id="delete-node",
        ),
        pytest.param(["get", "nodes", "-w"], "cannot be watched", id="watch-nodes"),
        pytest.param(
            ["get", "jobs", "-l", "team=a=b"],
            "--selector: label selector term 'team=a=b' is not valid; use key=value",
            id="selector",
        ),
    ],
)
def test_kind_and_selector_mistakes_are_one_line(
    args: list[str], fragment: str, tmp_path: Path
) -> None:
    # No server runs: these are caught before any request.
    line = one_line_error(CliRunner().invoke(app, ["--data-dir", str(tmp_path), *args]))
    assert fragment in line
    if "unknown kind" in fragment:
        for listed in ("Job (j, job, jobs)", "Queue (q, queue, queues)", "Node (no, node, nodes)"):
            assert listed in line


def test_selectors_limits_and_chunks(cli: Invoke, tmp_path: Path) -> None:
    objects = tmp_path / "objects.yaml"
    objects.write_text(OBJECTS_YAML)
    ok(cli("apply", "-f", str(objects)))
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        "---\n".join(
            parked_job(f"j{i}", team="ab"[i % 2], **({"gpu": "h100"} if i < 3 else {}))
            for i in range(7)
        )
    )
    ok(cli("apply", "-f", str(jobs)))

    assert names(ok(cli("get", "jobs", "-l", "team=a"))) == ["j0", "j2", "j4", "j6"]
    assert names(ok(cli("get", "jobs", "--selector", "team=a,gpu"))) == ["j0", "j2"]
    assert names(ok(cli("get", "jobs", "-l", "team=a", "--chunk-size", "1"))) == [
        "j0",
        "j2",
        "j4",
        "j6",
    ]
    assert names(ok(cli("get", "jobs", "--limit", "3"))) == ["j0", "j1", "j2"]
    nothing = cli("get", "jobs", "-l", "team=c")
    assert (nothing.exit_code, nothing.stdout) == (0, "")
    assert nothing.stderr == "No jobs matching team=c.\n"
    assert names(ok(cli("get", "queues", "-l", "team!=a"))) == ["team-b"]
    assert names(ok(cli("get", "rf", "-l", "tier=standard"))) == ["default"]
    assert names(ok(cli("get", "nodes", "-l", "kubernetes.io/hostname=node-1"))) == ["node-1"]


def test_describe_queue_and_flavor(cli: Invoke, tmp_path: Path) -> None:
    objects = tmp_path / "objects.yaml"
    objects.write_text(OBJECTS_YAML)
    ok(cli("apply", "-f", str(objects)))

    text = ok(cli("describe", "queue", "team-a"))
    lines = text.splitlines()
    assert lines[0].split() == ["Name:", "team-a"]
    assert "Labels:       team=a" in lines
    assert "Annotations:  example.com/owner: alice" in lines
    assert "Cohort:       research" in lines
    assert any(line.startswith("Revision:") and "(generation 1)" in line for line in lines)
    quota = table(text.split("Quota:\n")[1])
    assert quota[0] == ["FLAVOR", "RESOURCE", "USED", "NOMINAL", "BORROWING-LIMIT", "LENDING-LIMIT"]
    assert ["default", "nvidia.com/gpu", "0", "4", "2", "<none>"] in quota

    flavor = ok(cli("describe", "flavor", "default")).splitlines()
    assert flavor[0].split() == ["Name:", "default"]
    assert "Labels:       tier=standard" in flavor
    assert "Node Labels:  <none>" in flavor
    assert one_line_error(cli("describe", "q", "nope")) == 'error: queue "nope" not found'


def test_delete_dispatches_through_the_registry(cli: Invoke, tmp_path: Path) -> None:
    objects = tmp_path / "objects.yaml"
    objects.write_text(OBJECTS_YAML + "---\n" + parked_job("parked", team="a"))
    ok(cli("apply", "-f", str(objects)))
    assert ok(cli("delete", "jobs", "parked")) == "job.phalanx.dev/parked deleted\n"
    assert ok(cli("delete", "q", "team-b")) == "queue.phalanx.dev/team-b deleted\n"
    assert ok(cli("delete", "rf", "default")) == "resourceflavor.phalanx.dev/default deleted\n"
    assert names(ok(cli("get", "queues"))) == ["team-a"]


#: Runs the CLI with Ctrl-C raising KeyboardInterrupt, as from a terminal, whatever this test
#: process does with SIGINT (a signal it ignores would be ignored by its children too).
INTERRUPTIBLE_CLI = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'phalanx'; runpy.run_module('phalanx.cli', run_name='__main__')"
)


def test_get_watch_prints_a_row_per_change_until_ctrl_c(
    cli: Invoke, server: object, tmp_path: Path
) -> None:
    data_dir = str(server.data_dir)  # type: ignore[attr-defined]
    before = tmp_path / "before.yaml"
    before.write_text(parked_job("before", team="a"))
    ok(cli("apply", "-f", str(before)))
    rows: queue.Queue[list[str]] = queue.Queue()
    seen: list[list[str]] = []

    def rows_until(wanted: list[str], timeout_s: float = 20) -> list[list[str]]:
        """Rows printed until one starting with ``wanted`` (the loop's own writes, such as
        a job's reason, are changes too and print rows of their own)."""
        out: list[list[str]] = []
        while not out or out[-1][: len(wanted)] != wanted:
            out.append(rows.get(timeout=timeout_s))
        seen.extend(out)
        return out

    with subprocess.Popen(
        [sys.executable, "-c", INTERRUPTIBLE_CLI, "--data-dir", data_dir, *WATCH_ARGS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as watcher:
        assert watcher.stdout is not None and watcher.stderr is not None
        stdout = watcher.stdout
        reader = threading.Thread(target=lambda: [rows.put(line.split()) for line in stdout])
        reader.start()
        try:
            (header,) = rows_until(["EVENT"])
            (first,) = rows_until(["ADDED"])
            assert header[:5] == ["EVENT", "NAME", "QUEUE", "PRIORITY", "PHASE"]
            assert first[:5] == ["ADDED", "before", "nowhere", "0", "Pending"]
            after = tmp_path / "after.yaml"
            after.write_text(parked_job("after", team="b"))
            ok(cli("apply", "-f", str(after)))
            assert rows_until(["ADDED", "after"])[0][:2] == ["ADDED", "after"]
            ok(cli("cancel", "before"))
            rows_until(["MODIFIED", "before", "nowhere", "0", "Cancelled"])
            ok(cli("delete", "job", "after"))
            rows_until(["DELETED", "after"])
        finally:
            watcher.send_signal(signal.SIGINT)
            try:
                code = watcher.wait(timeout=20)
            except subprocess.TimeoutExpired:
                watcher.kill()
                watcher.wait()
                raise AssertionError(
                    "get -w did not end within 20 s of SIGINT; its stderr: " + watcher.stderr.read()
                ) from None
            reader.join(timeout=5)
            stderr = watcher.stderr.read()
    assert code == 130, stderr
    assert "Traceback" not in stderr
    events = [row[0] for row in seen[1:]]
    assert set(events) <= {"ADDED", "MODIFIED", "DELETED"}
    assert events.count("DELETED") == 1
    # Rows line up under the header (columns widen only for a longer cell).
    assert all(len(row) >= 6 for row in seen)
