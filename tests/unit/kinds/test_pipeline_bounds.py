"""A Pipeline manifest is bounded where it turns into jobs: steps and replicas per step."""

from __future__ import annotations

import pytest

from phalanx import kinds
from phalanx.kinds.pipeline import MAX_STEPS
from phalanx.model.specs import DEFAULT_MAX_REPLICAS, SpecError


def pipeline(steps: list[dict[str, object]]) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "p"},
        "spec": {"entrypoint": "flows:p", "steps": steps},
    }


def step(i: int, **extra: object) -> dict[str, object]:
    return {"name": f"s{i}", "task": "flows:t", **extra}


def test_a_step_asks_for_at_most_the_job_replica_maximum() -> None:
    assert kinds.parse(pipeline([step(0, replicas=DEFAULT_MAX_REPLICAS)])).name == "p"
    with pytest.raises(SpecError, match=r"spec\.steps\[0\]\.replicas"):
        kinds.parse(pipeline([step(0, replicas=DEFAULT_MAX_REPLICAS + 1)]))


def test_a_pipeline_lists_at_most_max_steps() -> None:
    with pytest.raises(SpecError, match=f"at most {MAX_STEPS} steps"):
        kinds.parse(pipeline([step(i) for i in range(MAX_STEPS + 1)]))
