"""Bounds where infinity or overflow could enter a spec: each hostile value is rejected with
its field path, the value and a fix (issue 9, "no object can wedge the control plane")."""

from __future__ import annotations

import pytest

from phalanx import kinds
from phalanx.model.resources import QuantityError, cpu_milli, gpu_quota_milli, memory_bytes
from phalanx.model.specs import (
    API_VERSION,
    DEFAULT_MAX_REPLICAS,
    SpecError,
    SpecLimits,
    parse_duration_s,
    parse_job,
)


def job(pod_set: dict[str, object] | None = None, **spec: object) -> dict[str, object]:
    ps: dict[str, object] = {"name": "main", "resources": {"cpu": "1"}, "command": ["true"]}
    ps.update(pod_set or {})
    return {
        "apiVersion": API_VERSION,
        "kind": "Job",
        "metadata": {"name": "j"},
        "spec": {"queue": "q", "podSets": [ps], **spec},
    }


def queue(resources: dict[str, object], **spec: object) -> dict[str, object]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Queue",
        "metadata": {"name": "q"},
        "spec": {"flavors": [{"name": "f", "resources": resources}], **spec},
    }


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("manifest", "path", "words"),
    [
        (job(maxRuntime=NAN), "spec.maxRuntime", "duration"),
        (job(maxRuntime=INF), "spec.maxRuntime", "one year"),
        (job(maxRuntime="400d"), "spec.maxRuntime", "one year"),
        (job(maxRuntime=10**400), "spec.maxRuntime", "one year"),
        (job(restartPolicy={"backoff": -1}), "spec.restartPolicy.backoff", ">= 0"),
        (
            job(failurePolicy={"hangTimeout": "9999999999h"}),
            "spec.failurePolicy.hangTimeout",
            "year",
        ),
        (job({"resources": {"cpu": INF}}), "spec.podSets[0].resources.cpu", "finite"),
        (job({"resources": {"cpu": "1e400"}}), "spec.podSets[0].resources.cpu", "too large"),
        (job({"resources": {"memory": "2Ei"}}), "spec.podSets[0].resources.memory", "largest"),
        (
            job({"resources": {"nvidia.com/gpu": 10**7}}),
            "spec.podSets[0].resources.nvidia.com/gpu",
            "largest",
        ),
        (job(priority=10**21), "spec.priority", "at most 2147483647"),
        (job(priority=-(2**31) - 1), "spec.priority", ">= -2147483648"),
        (job({"replicas": DEFAULT_MAX_REPLICAS + 1}), "spec.podSets[0].replicas", "at most 10000"),
        (job({"env": {"A": "x\x00y"}}), "spec.podSets[0].env.A", "NUL"),
        (job({"env": {"A=B": "x"}}), "spec.podSets[0].env.A=B", "'='"),
        (job({"env": [{"name": "A\x00", "value": "1"}]}), "spec.podSets[0].env[0].name", "'='"),
        (
            job({"env": [{"name": "A", "value": {"x": 1}}]}),
            "spec.podSets[0].env[0].value",
            "string",
        ),
        (job({"env": [{"name": "A"}, {"name": "A"}]}), "spec.podSets[0].env[1].name", "twice"),
        (job({"args": ["a\x00b"]}), "spec.podSets[0].args[0]", "NUL"),
        (job({"command": ["x", INF]}), "spec.podSets[0].command[1]", "finite"),
        (job({"workingDir": "/tmp\x00"}), "spec.podSets[0].workingDir", "NUL"),
        (queue({"nvidia.com/gpu": 1e300}), "spec.flavors[0].resources.nvidia.com/gpu", "too large"),
        (
            queue({"cpu": {"nominal": 1, "borrowingLimit": INF}}),
            "spec.flavors[0].resources.cpu.borrowingLimit",
            "finite",
        ),
        (queue({"cpu": 1}, weight=2**31), "spec.weight", "at most"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_hostile_values_are_rejected_with_path_value_and_fix(
    manifest: dict[str, object], path: str, words: str
) -> None:
    with pytest.raises(SpecError) as caught:
        kinds.parse(manifest)
    errors = {e.path: e for e in caught.value.errors}
    assert path in errors, caught.value
    assert words in errors[path].message
    assert str(errors[path])  # renders path, message and the value


def test_pods_of_all_pod_sets_count_towards_the_replica_limit() -> None:
    manifest = job()
    spec = manifest["spec"]
    assert isinstance(spec, dict)
    spec["podSets"] = [{"name": f"s{i}", "replicas": 6, "command": ["true"]} for i in range(2)]
    with pytest.raises(SpecError, match="at most 10 pods"):
        parse_job(manifest, limits=SpecLimits(max_replicas=10))
    assert parse_job(manifest, limits=SpecLimits(max_replicas=12)).pod_sets[1].replicas == 6


@pytest.mark.parametrize("value", [INF, NAN, "1e9999999999", "9" * 100, 10**400])
def test_quantities_reject_overflow(value: object) -> None:
    for convert in (cpu_milli, memory_bytes, gpu_quota_milli):
        with pytest.raises(QuantityError):
            convert(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "seconds"), [("365d", 365 * 86400.0), ("1.5ms", 0.0015)])
def test_durations_up_to_a_year(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)
