"""Every transition of a job writes a Reason: its events and the job's own reason compared by
code and facts (never prose), through the real control plane on the sim backend and a real
SQLite store, in virtual time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from phalanx.backends.base import OOM_KILLED, PodEvent, PodEventKind
from phalanx.backends.sim import SimBackend, VirtualClock
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.model.objects import JobSpec
from phalanx.model.reasons import Fact, Reason, ReasonCode
from phalanx.model.specs import job_to_manifest
from phalanx.store import open_store
from phalanx.testing import make_job, make_node, queue_manifests

T0 = 1000.0
MI64 = 64 * 2**20


@dataclass
class World:
    plane: ControlPlane
    backend: SimBackend
    clock: VirtualClock

    def submit(self, job: JobSpec, runtime_s: float = 100.0) -> None:
        self.backend.set_runtime(job.name, runtime_s)
        self.plane.apply([job_to_manifest(job)])

    def tick(self, at: float | None = None) -> None:
        if at is not None:
            self.clock.advance_to(at)
        self.plane.tick()

    def pod_event(self, job: str, kind: PodEventKind, **fields: object) -> None:
        view = self.plane.get_job(job)
        pod = next(p for p in view.pods if p.attempt == view.attempt)
        event = PodEvent(pod.pod_id, kind, self.clock.now, **fields)  # type: ignore[arg-type]
        self.plane.lifecycle.on_pod_event(event)

    def events(self, job: str) -> list[Reason]:
        """The job's events after ``Created``, as Reasons."""
        events = self.plane.get_job(job).events[1:]
        return [Reason.from_dict({"code": e.reason, "facts": e.facts}) for e in events]

    def reason(self, job: str) -> Reason:
        view = self.plane.get_job(job)
        return Reason.from_dict({"code": view.reason_code, "facts": view.reason_facts})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = VirtualClock(T0)
    backend = SimBackend([make_node("n0").gpus(2).obj()], clock)
    store = open_store(None, tmp_path)
    plane = ControlPlane(store, backend, ControlPlaneConfig(tmp_path), clock=lambda: clock.now)
    plane.apply(queue_manifests(gpu=2))
    yield World(plane, backend, clock)
    store.close()


def admitted(attempt: int = 1, devices: tuple[int, ...] = (0,)) -> Reason:
    pod: dict[str, Fact] = {
        "pod": "main-0",
        "node": "n0",
        "devices": tuple((d, 1000) for d in devices),
    }
    return Reason(ReasonCode.ADMITTED, {"attempt": attempt, "flavor": "default", "pods": (pod,)})


STARTED = Reason(ReasonCode.STARTED, {"attempt": 1, "pods": 1})


def failure(**facts: Fact) -> dict[str, Fact]:
    base: dict[str, Fact] = {
        "pod": "main-0",
        "node": "n0",
        "attempt": 1,
        "is_lost": False,
        "exit_code": 3,
        "pod_reason": "Error",
        "pod_message": "",
        "cause": "Application",
        "restarts": 0,
        "max_restarts": 2,
        "restart_policy": "OnFailure",
    }
    return {**base, **facts}


def run_to_success(w: World) -> None:
    w.submit(make_job("j").queue("q").gpus(1).obj(), runtime_s=10)
    w.tick()  # admitted, launched
    w.tick()  # running
    w.tick(T0 + 10)  # succeeded


def fail_with_exit_code(w: World) -> None:
    w.submit(make_job("j").queue("q").gpus(1).restarts(2, backoff_s=5).obj())
    w.tick()
    w.tick()
    w.pod_event("j", PodEventKind.FAILED, exit_code=3, reason="Error")


def oom_kill(w: World) -> None:
    w.submit(make_job("j").queue("q").gpus(1).memory("64Mi").restarts(2, backoff_s=5).obj())
    w.tick()
    w.tick()
    w.pod_event("j", PodEventKind.FAILED, exit_code=137, reason=OOM_KILLED, message="oom")


def lose_the_node(w: World) -> None:
    w.submit(make_job("j").queue("q").gpus(1).restarts(2, backoff_s=5).obj())
    w.tick()
    w.tick()
    w.pod_event("j", PodEventKind.LOST, reason="NodeLost", message="node n0 vanished")


def cancel(w: World) -> None:
    w.submit(make_job("j").queue("q").gpus(1).obj())
    w.tick()
    w.plane.cancel_job("j")


def overrun(w: World) -> None:
    w.submit(make_job("j").queue("q").gpus(1).max_runtime(5).obj())
    w.tick()
    w.tick()
    w.tick(T0 + 6)


def never_fit(w: World) -> None:
    w.submit(make_job("j").queue("q").gpus(1000).obj())
    w.tick()


@dataclass
class Case:
    id: str
    scenario: Callable[[World], None]
    events: list[Reason]
    reason: Reason


CASES = [
    Case(
        "admitted-started-succeeded",
        run_to_success,
        [
            admitted(),
            STARTED,
            Reason(ReasonCode.SUCCEEDED, {"pods": 1, "duration_s": 10.0}),
        ],
        Reason(ReasonCode.SUCCEEDED, {"pods": 1, "duration_s": 10.0}),
    ),
    Case(
        "an-exit-code-restarts-the-gang-after-a-backoff",
        fail_with_exit_code,
        [
            admitted(),
            STARTED,
            Reason(
                ReasonCode.RESTARTING,
                failure(restarts=1, outcome="Restart", backoff_s=5.0, not_before=T0 + 5),
            ),
        ],
        Reason(
            ReasonCode.BACKOFF,
            failure(restarts=1, outcome="Restart", backoff_s=5.0, not_before=T0 + 5),
        ),
    ),
    Case(
        "an-oom-kill-fails-by-policy",
        oom_kill,
        [
            admitted(),
            STARTED,
            Reason(
                ReasonCode.FAILED,
                failure(
                    exit_code=137,
                    pod_reason=OOM_KILLED,
                    pod_message="oom",
                    cause="OOM",
                    memory_limit_bytes=MI64,
                    outcome="FailByPolicy",
                ),
            ),
        ],
        Reason(
            ReasonCode.OOM_KILLED,
            failure(
                exit_code=137,
                pod_reason=OOM_KILLED,
                pod_message="oom",
                cause="OOM",
                memory_limit_bytes=MI64,
                outcome="FailByPolicy",
            ),
        ),
    ),
    Case(
        "a-lost-node-restarts-without-counting",
        lose_the_node,
        [
            admitted(),
            STARTED,
            Reason(
                ReasonCode.RESTARTING,
                failure(
                    is_lost=True,
                    exit_code=None,
                    pod_reason="NodeLost",
                    pod_message="node n0 vanished",
                    cause="Node",
                    outcome="RestartFree",
                    backoff_s=5.0,
                    not_before=T0 + 5,
                ),
            ),
        ],
        Reason(
            ReasonCode.BACKOFF,
            failure(
                is_lost=True,
                exit_code=None,
                pod_reason="NodeLost",
                pod_message="node n0 vanished",
                cause="Node",
                outcome="RestartFree",
                backoff_s=5.0,
                not_before=T0 + 5,
            ),
        ),
    ),
    Case(
        "cancelled-by-the-user",
        cancel,
        [admitted(), Reason(ReasonCode.CANCELLED, {"by": "user", "is_delete": False})],
        Reason(ReasonCode.CANCELLED, {"by": "user", "is_delete": False}),
    ),
    Case(
        "past-max-runtime",
        overrun,
        [
            admitted(),
            STARTED,
            Reason(ReasonCode.DEADLINE_EXCEEDED, {"max_runtime_s": 5.0, "ran_s": 6.0}),
        ],
        Reason(ReasonCode.DEADLINE_EXCEEDED, {"max_runtime_s": 5.0, "ran_s": 6.0}),
    ),
    Case(
        "a-job-that-can-never-fit-waits-with-its-own-reason",
        never_fit,
        [
            Reason(
                ReasonCode.NEVER_FITS,
                {
                    "flavor": "default",
                    "nodes_total": 1,
                    "check": "Node",
                    "pod_set": "main",
                    "needed_gpu_milli": 1_000_000,
                    "needed_cpu_milli": 1000,
                    "needed_memory_bytes": 0,
                    "max_node_gpus": 2,
                    "max_node_cpu_milli": 32000,
                    "max_node_memory_bytes": 256 * 2**30,
                    "largest_node": "n0",
                },
            )
        ],
        Reason(
            ReasonCode.NEVER_FITS,
            {
                "flavor": "default",
                "nodes_total": 1,
                "check": "Node",
                "pod_set": "main",
                "needed_gpu_milli": 1_000_000,
                "needed_cpu_milli": 1000,
                "needed_memory_bytes": 0,
                "max_node_gpus": 2,
                "max_node_cpu_milli": 32000,
                "max_node_memory_bytes": 256 * 2**30,
                "largest_node": "n0",
            },
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_transitions_write_reasons(world: World, case: Case) -> None:
    case.scenario(world)
    assert world.events("j") == case.events
    assert world.reason("j") == case.reason


def test_event_types_follow_the_code(world: World) -> None:
    oom_kill(world)
    view = world.plane.get_job("j")
    assert [(e.type, e.reason) for e in view.events] == [
        ("Normal", "Created"),
        ("Normal", "Admitted"),
        ("Normal", "Started"),
        ("Warning", "Failed"),
    ]
    assert view.message == world.reason("j").message  # stored message = rendered from facts


def test_a_preempted_job_gets_the_schedulers_reason_then_is_requeued(world: World) -> None:
    world.submit(make_job("low").queue("q").gpus(2).obj())
    world.tick()
    world.tick()
    world.clock.advance_to(T0 + 30)
    world.submit(make_job("high").queue("q").gpus(2).priority(5).obj())
    world.tick()  # preempts low (its pod reports STOPPED at once)
    world.tick()  # low is requeued
    preempted = Reason(
        ReasonCode.PREEMPTED,
        {
            "victim": "low",
            "victim_queue": "q",
            "victim_priority": 0,
            "preemptor": "high",
            "preemptor_queue": "q",
            "preemptor_priority": 5,
            "cohort": "",
            "flavor": "default",
            "needed_gpu_milli": 2000,
            "lost_gpu_s": 60.0,
            "victim_gpus": 2.0,
            "last_checkpoint_age_s": None,
            "admitted_age_s": 30.0,
        },
    )
    events = world.events("low")
    assert events[:4] == [
        admitted(devices=(0, 1)),
        Reason(ReasonCode.STARTED, {"attempt": 1, "pods": 1}),
        preempted,
        Reason(ReasonCode.REQUEUED, {"had_pods": True}),
    ]
    assert world.events("high")[0] == Reason(
        ReasonCode.PREEMPTING, {"flavor": "default", "victims": ("low",)}
    )
