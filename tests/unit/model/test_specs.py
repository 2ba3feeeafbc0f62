"""Manifests: valid ones round-trip; bad ones are rejected whole with path, value and fix."""

from __future__ import annotations

import pytest
import yaml

from phalanx.model.objects import JobSpec, Queue, TopologyMode
from phalanx.model.resources import QuantityError, cpu_milli, gpu_milli, memory_bytes
from phalanx.model.specs import SpecError, job_to_manifest, parse_manifest, queue_to_manifest

JOB = """
apiVersion: phalanx.dev/v1alpha1
kind: Job
metadata: {name: train}
spec:
  queue: team-a
  priority: 10
  minAvailable: 2
  topology: {key: phalanx.dev/rack, mode: Preferred}
  maxRuntime: 2h
  restartPolicy: {policy: OnFailure, maxRestarts: 2, backoff: 5s}
  podSets:
  - name: worker
    replicas: 2
    command: [python, train.py]
    env: [{name: A, value: "1"}]
    resources: {cpu: 500m, memory: 2Gi, nvidia.com/gpu: 0.5}
"""


def test_job_parses_and_round_trips() -> None:
    job = parse_manifest(yaml.safe_load(JOB))
    assert isinstance(job, JobSpec)
    assert (job.queue, job.priority, job.gang_minimum, job.max_runtime_s) == (
        "team-a",
        10,
        2,
        7200.0,
    )
    assert job.topology is not None and job.topology.mode is TopologyMode.PREFERRED
    ps = job.pod_sets[0]
    assert (ps.resources.cpu_milli, ps.resources.memory_bytes, ps.resources.gpu_milli) == (
        500,
        2 * 2**30,
        500,
    )
    assert ps.env == {"A": "1"}
    assert parse_manifest(job_to_manifest(job)) == job


def test_queue_round_trips() -> None:
    manifest = {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Queue",
        "metadata": {"name": "a"},
        "spec": {
            "cohort": "c",
            "flavors": [
                {
                    "name": "default",
                    "resources": {"nvidia.com/gpu": {"nominal": 8, "borrowingLimit": 4}, "cpu": 32},
                }
            ],
        },
    }
    queue = parse_manifest(manifest)
    assert isinstance(queue, Queue)
    assert parse_manifest(queue_to_manifest(queue)) == queue


def _errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_manifest(yaml.safe_load(text))
    return [str(e) for e in info.value.errors]


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (
            "nvidia.com/gpu: 1.5",
            "spec.podSets[0].resources.nvidia.com/gpu: 1.5 mixes whole and fractional GPUs; request a whole number of GPUs (e.g. 2) or a fraction of one GPU below 1 (e.g. 0.5) (got 1.5)",
        ),
        (
            "cpu: lots",
            "spec.podSets[0].resources.cpu: 'lots' is not a quantity; use a number with an optional suffix (m, k, M, G, T, Ki, Mi, Gi, Ti), e.g. 500m, 4, 16Gi (got 'lots')",
        ),
        (
            "memory: -1",
            "spec.podSets[0].resources.memory: -1 is negative; quantities must be >= 0 (got -1)",
        ),
        (
            "gpus: 2",
            "spec.podSets[0].resources.gpus: is not a known resource; use one of cpu, memory, nvidia.com/gpu (got 2)",
        ),
    ],
)
def test_bad_resources_name_the_field(patch: str, expected: str) -> None:
    text = f"""
apiVersion: phalanx.dev/v1alpha1
kind: Job
metadata: {{name: j}}
spec:
  queue: q
  podSets: [{{name: w, command: [x], resources: {{{patch}}}}}]
"""
    assert _errors(text) == [expected]


def test_every_problem_is_reported_at_once() -> None:
    errors = _errors("""
apiVersion: phalanx.dev/v1
kind: Job
metadata: {name: Bad_Name}
spec:
  priority: high
  minAvailable: 5
  podSets: [{name: w, replicas: 0, resources: {cpu: 1}}]
  colour: blue
""")
    assert [e.split(":")[0] for e in errors] == [
        "apiVersion",
        "metadata.name",
        "spec.colour",
        "spec.queue",
        "spec.priority",
        "spec.podSets[0].replicas",
        "spec.podSets[0].command",
        "spec.minAvailable",
    ]


def test_unknown_kind() -> None:
    assert _errors("apiVersion: phalanx.dev/v1alpha1\nkind: Pod\nmetadata: {name: x}") == [
        "kind: must be one of Job, Queue, ResourceFlavor (got 'Pod')"
    ]


@pytest.mark.parametrize(
    ("fn", "value", "expected"),
    [
        (cpu_milli, "500m", 500),
        (cpu_milli, 2, 2000),
        (memory_bytes, "16Gi", 16 * 2**30),
        (memory_bytes, "1k", 1000),
        (gpu_milli, "0.25", 250),
        (gpu_milli, 8, 8000),
        (gpu_milli, "250m", 250),
    ],
)
def test_quantities(fn, value, expected) -> None:  # type: ignore[no-untyped-def]
    assert fn(value) == expected


def test_gpu_finer_than_a_milli_is_rejected() -> None:
    with pytest.raises(QuantityError, match="finer than 1/1000"):
        gpu_milli("0.0005")
