"""spec.failurePolicy: parsed, validated with field paths, and round-tripped."""

from __future__ import annotations

import pytest

from phalanx.model.objects import FailurePolicy, OnFailure
from phalanx.model.specs import SpecError, job_to_manifest, parse_job


def manifest(**failure: object) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": "t"},
        "spec": {
            "queue": "q",
            "failurePolicy": failure,
            "podSets": [{"name": "w", "replicas": 1, "command": ["x"], "resources": {"cpu": 1}}],
        },
    }


def test_defaults_fail_fast_on_oom_and_restart_uncounted_on_node_failure() -> None:
    assert parse_job(manifest()).failure_policy == FailurePolicy()
    assert FailurePolicy().on_oom is OnFailure.FAIL
    assert FailurePolicy().on_node_failure is OnFailure.RESTART_FREE


def test_round_trip() -> None:
    spec = parse_job(
        manifest(
            onOOM="Restart",
            onNodeFailure="Fail",
            hangTimeout="10m",
            terminationGracePeriod="30s",
            enforceMemory=True,
        )
    )
    fp = spec.failure_policy
    assert (fp.on_oom, fp.on_node_failure) == (OnFailure.RESTART_COUNTED, OnFailure.FAIL)
    assert (fp.hang_timeout_s, fp.termination_grace_s, fp.enforce_memory) == (600.0, 30.0, True)
    assert parse_job(job_to_manifest(spec)) == spec


@pytest.mark.parametrize(
    ("failure", "path"),
    [
        ({"onOOM": "Retry"}, "spec.failurePolicy.onOOM"),
        ({"hangTimeout": "soon"}, "spec.failurePolicy.hangTimeout"),
        ({"hangTimeout": 0}, "spec.failurePolicy.hangTimeout"),
        ({"enforceMemory": "yes"}, "spec.failurePolicy.enforceMemory"),
        ({"onOom": "Fail"}, "spec.failurePolicy.onOom"),
    ],
    ids=["bad-action", "bad-duration", "zero-hang", "not-bool", "unknown-field"],
)
def test_bad_values_name_the_field(failure: dict[str, object], path: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_job(manifest(**failure))
    assert [e.path for e in info.value.errors] == [path]
