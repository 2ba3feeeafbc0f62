"""Running a pipeline in this process (``my_pipeline.run(local=True)``): steps one after
another in DAG order, with the same cache keys, artifact store and step states as on a server.
"""

from __future__ import annotations

import secrets
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from phalanx.pipelines import dag
from phalanx.pipelines.artifacts import ArtifactRef, ArtifactStore
from phalanx.pipelines.dag import RunPhase, StepState
from phalanx.pipelines.execution import call_step, input_refs, step_key
from phalanx.pipelines.sdk import Built, TaskFuture


@dataclass(slots=True)
class LocalRun:
    """The outcome of an in-process run: the run's phase, each step's status (the same
    shape as a PipelineRun's ``status.steps``) and the pipeline's outputs."""

    name: str
    phase: RunPhase
    steps: dict[str, dict[str, Any]]
    store: ArtifactStore
    outputs: object = None
    refs: dict[str, ArtifactRef] = field(default_factory=dict)

    def state(self, step: str) -> StepState:
        return StepState(self.steps[step]["state"])

    def value(self, step: str) -> object:
        """The output of ``step``. Raises KeyError if it has none."""
        return self.store.get(self.refs[step])

    def result(self) -> object:
        """The pipeline function's return value with every future replaced by its value."""
        return _resolve(self.outputs, self)

    @property
    def cached(self) -> list[str]:
        return [n for n, s in self.steps.items() if s["state"] == StepState.CACHED]

    @property
    def executed(self) -> list[str]:
        return [n for n, s in self.steps.items() if s["state"] == StepState.SUCCEEDED]


def _resolve(value: object, run: LocalRun) -> object:
    if isinstance(value, TaskFuture):
        return run.value(value.step) if value.step in run.refs else None
    if isinstance(value, dict):
        return {k: _resolve(v, run) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_resolve(v, run) for v in value)
    return value


def new_run_name(pipeline: str) -> str:
    return f"{pipeline[:40]}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def run_local(
    built: Built, *, artifacts: str | None = None, no_cache: bool = False, run_name: str = ""
) -> LocalRun:
    """Run every step of ``built`` here, in DAG order; return the LocalRun. A failing step
    fails its dependents (UpstreamFailed); steps independent of it still run."""
    store = ArtifactStore(artifacts)
    name = run_name or new_run_name(built.spec.name)
    run = LocalRun(name, RunPhase.RUNNING, {}, store, built.outputs)
    states: dict[str, StepState] = {s.name: StepState.PENDING for s in built.spec.steps}
    for step in built.spec.steps:
        states.update(dag.blocked(built.spec.steps, states))
        status: dict[str, Any] = {"state": states[step.name].value, "attempts": 0}
        run.steps[step.name] = status
        if states[step.name] is not StepState.PENDING:
            continue
        if step.when_step and not dag.is_condition_met(
            run.value(step.when_step), step.when_negated
        ):
            states[step.name] = StepState.SKIPPED
            status["state"] = StepState.SKIPPED.value
            continue
        started = time.time()
        refs = input_refs(step, run.refs)
        key = step_key(step, refs, built.spec.image)
        status.update(cacheKey=key, inputs={k: r.hash for k, r in refs.items()}, startedAt=started)
        entry = None if (no_cache or not step.cache) else store.cache_entry(key)
        if entry is not None:
            ref = ArtifactRef.from_json(entry["output"])
            states[step.name] = StepState.CACHED
            status.update(
                state=StepState.CACHED.value,
                output=ref.to_json(),
                cachedFrom={"run": entry["run"], "step": entry["step"]},
                finishedAt=time.time(),
            )
            run.refs[step.name] = ref
            continue
        task = built.tasks[step.name]
        error = ""
        for attempt in range(step.retries + 1):
            status["attempts"] = attempt + 1
            try:
                value = call_step(task, step.name, refs, store)
            except Exception:  # a task's failure is the step's state, with its traceback
                error = traceback.format_exc(limit=-3)
                continue
            ref = store.put(value)
            store.record_cache(key, ref, name, step.name)
            run.refs[step.name] = ref
            states[step.name] = StepState.SUCCEEDED
            status.update(state=StepState.SUCCEEDED.value, output=ref.to_json())
            break
        else:
            states[step.name] = StepState.FAILED
            status.update(state=StepState.FAILED.value, message=error.strip())
        status["finishedAt"] = time.time()
    run.phase = dag.run_phase(states)
    return run


def describe_states(steps: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per step: name, state, and where a cached output came from."""
    lines = []
    for name, status in steps.items():
        line = f"{name}: {status['state']}"
        if "cachedFrom" in status:
            line += f" (cached from run {status['cachedFrom']['run']}, step {status['cachedFrom']['step']})"
        lines.append(line)
    return "\n".join(lines)
