"""Whatever validation accepts round-trips: a manifest of every applied kind, generated with
hostile values mixed in (NaN, infinities, 1e300, 10**21, NUL bytes, '=' in env names), is
either rejected with a SpecError naming the field, or its normalised manifest survives JSON
(as the store writes it, with no NaN/Infinity) and parses back to the same object."""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx import kinds
from phalanx.model.specs import API_VERSION, SpecError

_SUFFIXES = ("", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "x")
_UNITS = ("", "ms", "s", "m", "h", "d", "w")

hostile_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2**31 - 1, 2**31, -(2**31), 10**21, 1e300, 999999.5, 0.001]),
)
numbers_text = st.one_of(
    st.integers(min_value=0, max_value=10**30).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=0, max_value=10**9).map(
        str
    ),
    st.sampled_from(["1e300", "1e400", ".5", "1e-400", "nan", "inf", "1e9999999999"]),
)


def mostly(
    valid: st.SearchStrategy[object], hostile: st.SearchStrategy[object]
) -> st.SearchStrategy[object]:
    """``valid`` nine times in ten: so that many whole manifests are accepted and checked."""
    return st.integers(min_value=0, max_value=9).flatmap(lambda i: hostile if i == 9 else valid)


quantities_any = st.one_of(
    hostile_numbers,
    st.builds(lambda n, s: f"{n}{s}", numbers_text, st.sampled_from(_SUFFIXES)),
    st.text(max_size=6),
    st.booleans(),
    st.none(),
)
quantities = mostly(
    st.one_of(
        st.integers(min_value=0, max_value=64),
        st.floats(min_value=0, max_value=1e6),
        st.builds(
            lambda n, s: f"{n}{s}",
            st.integers(min_value=0, max_value=4096),
            st.sampled_from(_SUFFIXES[:-1]),
        ),
    ),
    quantities_any,
)
durations = mostly(
    st.one_of(
        st.floats(min_value=0, max_value=365 * 86400),
        st.builds(
            lambda n, u: f"{n}{u}",
            st.decimals(min_value=0, max_value=1000, places=3),
            st.sampled_from(_UNITS[:-1]),
        ),
    ),
    st.one_of(
        hostile_numbers,
        st.builds(lambda n, u: f"{n}{u}", numbers_text, st.sampled_from(_UNITS)),
        st.text(max_size=6),
    ),
)
integers = mostly(
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.one_of(hostile_numbers, st.booleans(), st.text(max_size=3)),
)
names = mostly(
    st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z"),
    st.one_of(st.text(max_size=70), st.sampled_from(["a" * 63, "a" * 64, "A", "-a"])),
)
short_text = mostly(
    st.text(alphabet=string.ascii_letters + string.digits + " -_./é", max_size=8),
    st.text(alphabet=string.printable + "\x00=", max_size=8),
)
label_maps = st.dictionaries(
    st.one_of(st.from_regex(r"\A[a-z]{1,5}(/[a-z]{1,5})?\Z"), short_text),
    st.one_of(st.from_regex(r"\A[a-z0-9]{0,5}\Z"), short_text, hostile_numbers),
    max_size=3,
)
envs = st.one_of(
    st.dictionaries(
        st.one_of(st.from_regex(r"\A[A-Z_]{1,6}\Z"), short_text),
        st.one_of(short_text, hostile_numbers),
        max_size=3,
    ),
    st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"name": st.one_of(st.from_regex(r"\A[A-Z_]{1,6}\Z"), short_text)},
                optional={"value": st.one_of(short_text, hostile_numbers)},
            ),
            st.fixed_dictionaries(  # a value from a Secret (kinds/secret.py)
                {
                    "name": st.from_regex(r"\A[A-Z_]{1,6}\Z"),
                    "valueFrom": st.fixed_dictionaries(
                        {
                            "secretKeyRef": st.fixed_dictionaries(
                                {"name": names, "key": st.one_of(short_text, st.just("k.1"))},
                                optional={"optional": st.one_of(st.booleans(), short_text)},
                            )
                        }
                    ),
                }
            ),
        ),
        max_size=3,
    ),
)


def _drop_missing(data: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in data.items() if v is not _MISSING}


_MISSING = object()


def maybe(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(st.just(_MISSING), strategy)


def _manifest(kind: str, name: object, labels: object, spec: Mapping[str, object]) -> dict:
    metadata = _drop_missing({"name": name, "labels": labels})
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


pod_sets = st.builds(
    lambda *values: _drop_missing(
        dict(
            zip(
                ("name", "replicas", "resources", "command", "args", "env", "workingDir"),
                values,
                strict=True,
            )
        )
    ),
    maybe(names),
    maybe(mostly(st.integers(min_value=1, max_value=8), st.one_of(integers, st.integers()))),
    st.dictionaries(st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]), quantities, max_size=2),
    st.lists(short_text, min_size=1, max_size=2),
    maybe(st.lists(st.one_of(short_text, hostile_numbers), max_size=2)),
    maybe(envs),
    maybe(short_text),
)
jobs = st.builds(
    lambda name, labels, queue, priority, runtime, startup, restart, failure, sets: _manifest(
        "Job",
        name,
        labels,
        _drop_missing(
            {
                "queue": queue,
                "priority": priority,
                "maxRuntime": runtime,
                "startupTimeout": startup,
                "restartPolicy": restart,
                "failurePolicy": failure,
                "podSets": sets,
            }
        ),
    ),
    names,
    maybe(label_maps),
    st.sampled_from(["q", "team-a"]),
    maybe(integers),
    maybe(durations),
    maybe(durations),
    maybe(
        st.fixed_dictionaries(
            {},
            optional={
                "policy": st.sampled_from(["Never", "OnFailure"]),
                "maxRestarts": integers,
                "backoff": durations,
                "maxBackoff": durations,
            },
        )
    ),
    maybe(st.fixed_dictionaries({}, optional={"hangTimeout": durations})),
    st.lists(pod_sets, min_size=1, max_size=2),
)
quota = st.one_of(
    quantities,
    st.fixed_dictionaries(
        {"nominal": quantities}, optional={"borrowingLimit": quantities, "lendingLimit": quantities}
    ),
)
queues = st.builds(
    lambda name, labels, weight, cohort, resources: _manifest(
        "Queue",
        name,
        labels,
        _drop_missing(
            {
                "weight": weight,
                "cohort": cohort,
                "flavors": [{"name": "default", "resources": resources}],
            }
        ),
    ),
    names,
    maybe(label_maps),
    maybe(integers),
    maybe(names),
    st.dictionaries(st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]), quota, max_size=3),
)
secret_data = st.dictionaries(
    st.one_of(st.from_regex(r"\A[-._a-zA-Z0-9]{1,8}\Z"), short_text),
    st.one_of(st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode()), short_text),
    max_size=3,
)
secrets = st.builds(
    lambda name, labels, spec: _manifest("Secret", name, labels, spec),
    names,
    maybe(label_maps),
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.one_of(st.just("Opaque"), short_text),
            "data": secret_data,
            "stringData": st.dictionaries(
                st.from_regex(r"\A[a-z]{1,4}\Z"), st.one_of(short_text, hostile_numbers), max_size=2
            ),
        },
    ),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), hostile_numbers, short_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=4,
)


def _named_steps(steps: list[dict]) -> list[dict]:
    """Steps named s0, s1, …: so that most references to s0 (from later steps) are valid."""
    return [{**step, "name": step.get("name") or f"s{i}"} for i, step in enumerate(steps)]


pipeline_steps = st.lists(
    st.fixed_dictionaries(
        {
            "name": mostly(st.just(""), names),
            "task": mostly(st.sampled_from(["m:f", "pkg.mod:Cls.run"]), short_text),
        },
        optional={
            "inputs": st.dictionaries(
                st.from_regex(r"\A[a-z]{1,3}\Z"),
                st.one_of(
                    st.fixed_dictionaries({"value": json_values}),
                    st.fixed_dictionaries({"step": mostly(st.just("s0"), names)}),
                ),
                max_size=2,
            ),
            "resources": st.dictionaries(
                mostly(st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]), short_text),
                quantities,
                max_size=2,
            ),
            "replicas": mostly(st.integers(min_value=1, max_value=8), integers),
            "retries": mostly(st.integers(min_value=0, max_value=3), integers),
            "cache": mostly(st.booleans(), short_text),
            "cacheVersion": short_text,
            "when": st.fixed_dictionaries(
                {"step": mostly(st.just("s0"), names)}, optional={"negate": st.booleans()}
            ),
        },
    ),
    min_size=1,
    max_size=3,
).map(_named_steps)
pipelines = st.builds(
    lambda kind, name, labels, spec: _manifest(
        kind,
        name,
        labels,
        {k: v for k, v in spec.items() if kind == "Pipeline" or k != "schedule"},
    ),
    st.sampled_from(["Pipeline", "PipelineRun"]),
    names,
    maybe(label_maps),
    st.fixed_dictionaries(
        {"steps": pipeline_steps},
        optional={
            "params": st.dictionaries(st.from_regex(r"\A[a-z]{1,3}\Z"), json_values, max_size=2),
            "queue": short_text,
            "schedule": st.fixed_dictionaries(
                {"cron": mostly(st.sampled_from(["*/5 * * * *", "0 3 * * 1"]), short_text)},
                optional={
                    "concurrencyPolicy": mostly(st.sampled_from(["Allow", "Forbid"]), short_text)
                },
            ),
        },
    ),
)
services = st.builds(  # kinds/service.py
    lambda name, labels, template, spec: _manifest(
        "Service", name, labels, _drop_missing({"queue": "q", "template": template, **spec})
    ),
    names,
    maybe(label_maps),
    st.builds(
        lambda command, args, env, resources, pods: _drop_missing(
            {"command": command, "args": args, "env": env, "resources": resources, "pods": pods}
        ),
        st.lists(short_text, min_size=1, max_size=2),
        maybe(st.lists(st.one_of(short_text, hostile_numbers), max_size=2)),
        maybe(envs),
        st.dictionaries(
            st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]), quantities, max_size=2
        ),
        maybe(mostly(st.integers(min_value=1, max_value=8), integers)),
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "minReplicas": mostly(st.integers(min_value=0, max_value=3), integers),
            "maxReplicas": mostly(st.integers(min_value=1, max_value=6), integers),
            "port": mostly(st.integers(min_value=1, max_value=65535), integers),
            "scaleToZeroAfter": durations,
            "coldStartTimeout": durations,
            "readinessProbe": st.fixed_dictionaries(
                {}, optional={"path": st.sampled_from(["/", "/ready", "x"]), "period": durations}
            ),
            "autoscaling": st.fixed_dictionaries(
                {},
                optional={
                    "metric": st.sampled_from(["concurrency", "rps", "gpu"]),
                    "target": st.one_of(hostile_numbers, st.floats(0.5, 100)),
                    "stableWindow": durations,
                    "panicWindow": durations,
                },
            ),
            "rollout": st.fixed_dictionaries(
                {}, optional={"maxSurge": integers, "maxUnavailable": integers}
            ),
            "traffic": st.lists(
                st.fixed_dictionaries(
                    {
                        "revision": st.sampled_from(["latest", "0123456789", "x"]),
                        "percent": mostly(st.integers(min_value=0, max_value=100), integers),
                    }
                ),
                max_size=2,
            ),
            "route": st.fixed_dictionaries(
                {}, optional={"pathPrefix": short_text, "hosts": st.lists(short_text, max_size=2)}
            ),
        },
    ),
)
flavors = st.builds(
    lambda name, labels, node_labels: _manifest(
        "ResourceFlavor", name, labels, {"nodeLabels": node_labels}
    ),
    names,
    maybe(label_maps),
    label_maps,
)


def _check_round_trip(manifest: dict) -> None:
    try:
        parsed = kinds.parse(manifest)
    except SpecError as exc:  # rejected whole, every problem with its path
        assert exc.errors and all(e.message for e in exc.errors)
        return
    stored = json.loads(json.dumps(parsed.manifest, allow_nan=False))
    again = kinds.parse(stored)
    assert again.obj == parsed.obj
    assert again.manifest == parsed.manifest


@pytest.mark.parametrize(
    "strategy",
    [jobs, queues, flavors, secrets, pipelines, services],
    ids=["Job", "Queue", "Flavor", "Secret", "Pipeline", "Service"],
)
def test_accepted_manifests_round_trip(strategy: st.SearchStrategy[dict]) -> None:
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(strategy)
    def check(manifest: dict) -> None:
        _check_round_trip(manifest)

    check()


@pytest.mark.parametrize(
    "manifest",
    [
        _manifest(
            "Job",
            "j",
            {},
            {
                "queue": "q",
                "restartPolicy": {"policy": "OnFailure", "backoff": 999999.5},
                "podSets": [{"command": ["true"]}],
            },
        ),
        _manifest(
            "Job", "j", {}, {"queue": "q", "maxRuntime": 0.1, "podSets": [{"command": ["a"]}]}
        ),
        _manifest(
            "Job",
            "j",
            {},
            {"queue": "q", "maxRuntime": "1.5ms", "podSets": [{"command": ["a"]}]},
        ),
        _manifest(
            "Queue",
            "q",
            {},
            {"flavors": [{"name": "f", "resources": {"memory": "1Ei", "cpu": "1000000"}}]},
        ),
    ],
    ids=["backoff-999999.5", "runtime-0.1", "runtime-1.5ms", "quota-at-maxima"],
)
def test_known_cases_round_trip(manifest: dict) -> None:
    parsed = kinds.parse(manifest)  # accepted
    _check_round_trip(parsed.manifest)
    assert kinds.parse(parsed.manifest).obj == parsed.obj


def test_an_unlimited_quota_is_written_and_read_as_unlimited() -> None:
    from phalanx.model.resources import UNLIMITED
    from phalanx.model.specs import parse_queue, queue_to_manifest

    manifest = {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Queue",
        "metadata": {"name": "q"},
        "spec": {
            "flavors": [
                {
                    "name": "default",
                    "resources": {
                        "nvidia.com/gpu": "unlimited",
                        "cpu": {"nominal": 4, "lendingLimit": 2, "borrowingLimit": "unlimited"},
                    },
                }
            ]
        },
    }
    queue = parse_queue(manifest)
    assert queue.flavors[0].resources["nvidia.com/gpu"].nominal == UNLIMITED
    written = queue_to_manifest(queue)
    assert written["spec"]["flavors"][0]["resources"]["nvidia.com/gpu"] == {  # type: ignore[index]
        "nominal": "unlimited"
    }
    assert parse_queue(written) == queue
