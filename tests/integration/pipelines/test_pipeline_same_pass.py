"""A pipeline's next step is admitted and launched in the same loop pass as its upstream's end
is recorded (ControlPlane.jobs_added: the jobs reconciler runs again at the end of the tick in
which the PipelineRun reconciler stored new jobs), on a real control plane with the local
backend and real step processes; and a crash between storing a step's job and admitting it
is repaired after the restart."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx.backends.local.backend import LocalBackend
from phalanx.backends.local.nodes import parse_nodes_option
from phalanx.cli.pipeline import run_manifest
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.pipelines.reconciler import KIND, PipelineRunReconciler, job_name
from phalanx.store import open_store
from phalanx.testing import queue_manifests
from project_modules import importable_module

STEPS = 4
FLOWS = """
from phalanx.pipelines import pipeline, task

@task
def inc(x: int) -> int:
    return x + 1

@pipeline
def chain(n: int = 4) -> object:
    x = 0
    for _ in range(n):
        x = inc(x)
    return x
"""
#: Phases of a job that has been admitted (or got further).
ADMITTED = {"Admitted", "Running", "Succeeded"}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A project directory with the module ``samepass_flows``, importable here."""
    with importable_module(tmp_path / "project", "samepass_flows", FLOWS) as root:
        yield root


def make_plane(data: Path) -> ControlPlane:
    store = open_store(None, data)
    backend = LocalBackend(data, parse_nodes_option("1x0"))
    plane = ControlPlane(store, backend, ControlPlaneConfig(data, tick_s=0.05))
    plane.reconcilers.append(PipelineRunReconciler(plane))
    plane.reconcile()
    return plane


def start_run(plane: ControlPlane, project: Path, name: str) -> None:
    flows = importlib.import_module("samepass_flows")
    manifest = run_manifest(
        flows.chain.build(n=STEPS),
        name=name,
        queue="q",
        artifacts=str(project / "artifacts"),
        no_cache=True,
    )
    manifest["spec"]["code"] = {  # type: ignore[index]
        "workingDir": str(project),
        "pythonPath": [str(project), *sys.path[1:]],
        "python": sys.executable,
    }
    plane.apply([*queue_manifests(gpu=0, cpu=64), manifest])


def phases(plane: ControlPlane, run: str) -> list[str | None]:
    """The phase of each step's job (None: not created yet)."""
    out: list[str | None] = []
    for i in range(STEPS):
        job = plane.store.get_job(job_name(run, i))
        out.append(None if job is None else job.phase)
    return out


def run_phase(plane: ControlPlane, run: str) -> str:
    obj = plane.store.get_object(KIND, run)
    assert obj is not None
    return str((obj.manifest.get("status") or {}).get("phase", ""))


def tick_until_done(
    plane: ControlPlane, run: str, timeout_s: float = 60.0
) -> list[list[str | None]]:
    """Tick until the run ends; return the steps' job phases after every tick."""
    seen: list[list[str | None]] = []
    deadline = time.monotonic() + timeout_s
    while run_phase(plane, run) not in ("Succeeded", "Failed"):
        assert time.monotonic() < deadline, f"run {run} still going: {seen[-1:]}"
        plane.tick()
        seen.append(phases(plane, run))
        time.sleep(0.01)
    return seen


def test_the_next_step_is_admitted_in_the_pass_that_recorded_the_previous_ones_end(
    tmp_path: Path, project: Path
) -> None:
    plane = make_plane(tmp_path / "data")
    start_run(plane, project, "same")
    seen = tick_until_done(plane, "same")
    assert run_phase(plane, "same") == "Succeeded"
    # 1. the first step is admitted in the pass that stored its job
    assert seen[0][0] in ADMITTED, seen[0]
    # 2. each later step: admitted at the end of the very pass after which its upstream is
    #    first seen Succeeded (no pass in between)
    for i in range(1, STEPS):
        ended = next(t for t, p in enumerate(seen) if p[i - 1] == "Succeeded")
        admitted = next(t for t, p in enumerate(seen) if p[i] in ADMITTED)
        assert admitted == ended, (
            f"step {i}: upstream ended at pass {ended}, admitted at {admitted}"
        )
    assert plane.stats["jobs"].errors == 0


def test_a_crash_between_storing_a_steps_job_and_admitting_it_is_repaired(
    tmp_path: Path, project: Path
) -> None:
    data = tmp_path / "data"
    plane = make_plane(data)
    # This plane "crashes" right after the PipelineRun reconciler stores a job: the jobs
    # reconciler's second pass never comes, and the loop is dropped after that tick.
    plane.jobs_added = lambda: None  # type: ignore[method-assign]
    start_run(plane, project, "crash")
    plane.tick()
    assert phases(plane, "crash")[0] == "Pending"

    restarted = make_plane(data)
    tick_until_done(restarted, "crash")
    assert run_phase(restarted, "crash") == "Succeeded"
    assert phases(restarted, "crash") == ["Succeeded"] * STEPS
