"""The sim backend on its own: pods end when their work is done, fail on the attempts they are
told to, are lost with their node, resume from their checkpoints, and report them in status
files the controllers read."""

from __future__ import annotations

from pathlib import Path

import pytest

from phalanx.backends.base import NODE_FAULT, PodEvent, PodEventKind, PodLaunch
from phalanx.backends.sim import SimBackend, SimWorkload, VirtualClock
from phalanx.model.resources import Resources
from phalanx.testing import make_node
from phalanx.train.status import read_statuses

NODES = [make_node("n0").gpus(2).obj(), make_node("n1").gpus(2).obj()]


def _pod(job: str, attempt: int, node: str = "n0", index: int = 0, ckpt: str = "") -> PodLaunch:
    env = {"RANK": str(index)}
    if ckpt:
        env["PHALANX_CHECKPOINT_DIR"] = ckpt
    return PodLaunch(
        f"{job}-{index}-a{attempt}", job, "default", "w", index, attempt, node, (),
        Resources(), ("sim",), env=env,
    )  # fmt: skip


def _kinds(events: list[PodEvent]) -> list[tuple[str, PodEventKind, float]]:
    return [(e.pod_id, e.kind, e.at) for e in events]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(100.0)


def test_a_gang_ends_together_and_a_failing_attempt_exits_1(clock: VirtualClock) -> None:
    backend = SimBackend(NODES, clock)
    backend.set_workload("j", SimWorkload(10.0, failing_attempts=(1,)))
    backend.launch(_pod("j", 1, index=0))
    backend.launch(_pod("j", 1, index=1))
    backend.launch(_pod("j", 1, index=1))  # idempotent
    assert backend.next_event_at() == 110.0
    assert backend.next_event_at(include_successes=False) == 110.0  # it will fail
    clock.advance_to(120.0)
    events = backend.poll_events()
    assert _kinds(events) == [
        ("j-0-a1", PodEventKind.RUNNING, 100.0),
        ("j-1-a1", PodEventKind.RUNNING, 100.0),
        ("j-0-a1", PodEventKind.FAILED, 110.0),
        ("j-1-a1", PodEventKind.FAILED, 110.0),
    ]
    assert events[-1].exit_code == 1
    backend.launch(_pod("j", 2))
    assert backend.next_event_at() == 130.0
    assert backend.next_event_at(include_successes=False) is None  # attempt 2 succeeds
    assert backend.idle_at() == 130.0
    clock.advance_to(130.0)
    assert _kinds(backend.poll_events())[-1] == ("j-0-a2", PodEventKind.SUCCEEDED, 130.0)
    assert backend.idle_at() is None and backend.next_event_at() is None


def test_a_failed_node_loses_its_pods_and_is_not_ready_until_repaired(
    clock: VirtualClock,
) -> None:
    backend = SimBackend(NODES, clock)
    backend.set_runtime("a", 50.0)
    backend.set_runtime("b", 5.0)
    backend.launch(_pod("a", 1, "n0"))
    backend.launch(_pod("b", 1, "n0", index=1))
    backend.launch(_pod("c", 1, "n1"))
    clock.advance_to(106.0)  # b ended at 105, before the failure
    assert backend.fail_node("n0", repair_s=30.0) == ["a-0-a1"]
    assert backend.next_event_at() == 106.0  # the loss waits to be polled
    events = backend.poll_events()
    assert [(e.pod_id, e.kind) for e in events if e.kind is not PodEventKind.RUNNING] == [
        ("c-0-a1", PodEventKind.SUCCEEDED),  # no runtime given: it ended at once (100)
        ("b-1-a1", PodEventKind.SUCCEEDED),  # at 105
        ("a-0-a1", PodEventKind.LOST),
    ]
    lost = events[-1]
    assert (lost.reason, lost.at) == (NODE_FAULT, 106.0)
    assert [n.is_ready for n in backend.nodes()] == [False, True]
    assert backend.is_down("n0") and backend.next_event_at() == 136.0
    clock.advance_to(136.0)
    assert [n.is_ready for n in backend.nodes()] == [True, True]
    with pytest.raises(KeyError, match="nope"):
        backend.fail_node("nope", 1.0)


def test_checkpoints_are_resumed_and_reported(clock: VirtualClock, tmp_path: Path) -> None:
    backend = SimBackend(NODES, clock)
    ckpt = str(tmp_path / "ckpt")
    backend.set_workload("j", SimWorkload(100.0, checkpoint_s=30.0, reports_checkpoints=True))
    backend.launch(_pod("j", 1, ckpt=ckpt))
    clock.advance_to(165.0)  # 65 s of work: checkpoints at 30 (t=130) and 60 (t=160)
    backend.poll_events()
    [status] = read_statuses(ckpt)
    assert status.checkpoint is not None
    assert (status.checkpoint.step, status.checkpoint.at, status.attempt) == (60, 160.0, 1)
    backend.fail_node("n0", repair_s=0.0)
    backend.poll_events()
    backend.launch(_pod("j", 2, "n1", ckpt=ckpt))  # resumes from 60 s: 40 s left
    assert backend.next_event_at() == 205.0


def test_without_reporting_checkpoints_nothing_is_written(
    clock: VirtualClock, tmp_path: Path
) -> None:
    backend = SimBackend(NODES, clock)
    ckpt = str(tmp_path / "ckpt")
    backend.set_workload("j", SimWorkload(100.0, checkpoint_s=30.0))
    backend.launch(_pod("j", 1, ckpt=ckpt))
    clock.advance_to(170.0)
    backend.stop("j-0-a1", 10.0)
    assert _kinds(backend.poll_events())[-1] == ("j-0-a1", PodEventKind.STOPPED, 170.0)
    assert read_statuses(ckpt) == []
    backend.launch(_pod("j", 2, ckpt=ckpt))  # still resumes from its own checkpoint (60 s)
    assert backend.next_event_at() == 210.0


def test_workload_checks() -> None:
    assert SimWorkload(10.0, checkpoint_s=3.0).saved(10.0) == 9.0
    assert SimWorkload(10.0).saved(10.0) == 0.0
    with pytest.raises(ValueError, match="negative"):
        SimWorkload(-1.0)
