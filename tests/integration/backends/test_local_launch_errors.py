"""Launch errors in the local backend: a pod that cannot start fails as the workload's fault
(reason LaunchError), never as the node's and never by raising; a pod stopped before it
started is reported STOPPED; a launch interrupted by a crash is started again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_local_backend import data_dir, make_pod, wait_for_event  # noqa: F401  (fixture)

from phalanx.backends.base import PodEventKind
from phalanx.backends.local import LocalBackend
from phalanx.backends.local.supervisor import LAUNCH_ERROR

pytestmark = pytest.mark.integration


@pytest.fixture
def backend(data_dir: Path) -> Iterator[LocalBackend]:  # noqa: F811
    local = LocalBackend(data_dir, nodes=[])
    yield local
    local.close()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({"env": {"A": "x\x00y"}}, "NUL", id="nul-in-env-value"),
        pytest.param({"env": {"A=B": "x"}}, "'='", id="equals-in-env-name"),
        pytest.param({"working_dir": "/nonexistent/dir"}, "working directory", id="no-working-dir"),
        pytest.param({"command": ("/nonexistent/tool",)}, "not found", id="exec-failure"),
    ],
)
def test_a_launch_error_fails_the_pod_as_the_workloads_fault(
    backend: LocalBackend, overrides: dict[str, object], expected: str
) -> None:
    backend.launch(make_pod("bad", "print('unreachable')", **overrides))  # does not raise

    event = wait_for_event(backend, "bad", PodEventKind.FAILED)
    assert (event.reason, event.exit_code) == (LAUNCH_ERROR, 127)
    assert expected in event.message
    # After a restart the files tell the same: FAILED by LaunchError, not LOST.
    fresh = LocalBackend(backend._pods_dir.parent, nodes=[])
    (adopted,) = fresh.adopt(["bad"])
    assert (adopted.kind, adopted.reason) == (PodEventKind.FAILED, LAUNCH_ERROR)


def test_a_launch_interrupted_by_a_crash_starts_on_the_next_launch(
    data_dir: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crashed = LocalBackend(data_dir, nodes=[])
    # The control plane dies after writing launch.json, before the supervisor starts.
    monkeypatch.setattr(LocalBackend, "_spawn", lambda *args: None)
    crashed.launch(make_pod("p-a1", "print('ran')"))
    monkeypatch.undo()
    assert (data_dir / "pods" / "p-a1" / "launch.json").exists()
    assert not crashed.poll_events()

    restarted = LocalBackend(data_dir, nodes=[])
    restarted.launch(make_pod("p-a1", "print('ran')"))  # reconcile relaunches admitted pods
    assert restarted.adopt(["p-a1"]) == []  # it runs now: nothing lost
    event = wait_for_event(restarted, "p-a1", PodEventKind.SUCCEEDED)
    assert event.exit_code == 0
    assert b"ran" in restarted.read_logs("p-a1")
    restarted.close()


@pytest.mark.parametrize("is_recorded", [True, False], ids=["launch-recorded", "never-launched"])
def test_stopping_a_pod_that_never_started_reports_it_stopped(
    data_dir: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    is_recorded: bool,
) -> None:
    local = LocalBackend(data_dir, nodes=[])
    if is_recorded:
        monkeypatch.setattr(LocalBackend, "_spawn", lambda *args: None)
        local.launch(make_pod("p", "print('ran')"))
        monkeypatch.undo()

    local.stop("p", grace_period_s=5)

    (event,) = local.poll_events()
    assert (event.pod_id, event.kind) == ("p", PodEventKind.STOPPED)
    local.stop("p", grace_period_s=5)  # reported once
    assert local.poll_events() == []
    # A launch that comes after the stop does not start it.
    local.launch(make_pod("p", "print('ran')"))
    assert [e.kind for e in local.poll_events()] == [PodEventKind.STOPPED]
    assert not (data_dir / "pods" / "p" / "pid.json").exists()
    (adopted,) = LocalBackend(data_dir, nodes=[]).adopt(["p"])
    assert adopted.kind is PodEventKind.STOPPED


def test_reading_logs_from_a_huge_offset_returns_nothing(backend: LocalBackend) -> None:
    backend.launch(make_pod("logs", "print('x')"))
    wait_for_event(backend, "logs", PodEventKind.SUCCEEDED)
    assert backend.read_logs("logs", offset=10**30) == b""
