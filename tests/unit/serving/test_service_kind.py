"""Kind Service: defaults, every problem named with its field path and a fix, round trip,
revisions named by content."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from phalanx import kinds
from phalanx.model.service import LATEST, ScaleMetric, ServiceSpec, revision_of
from phalanx.model.specs import SpecError

BASE: dict[str, Any] = {
    "apiVersion": "phalanx.dev/v1alpha1",
    "kind": "Service",
    "metadata": {"name": "iris"},
    "spec": {"queue": "q", "template": {"command": ["python", "server.py"]}},
}


def manifest(**spec: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out["spec"].update(spec)
    return out


def test_defaults_are_filled_and_written_out() -> None:
    parsed = kinds.parse(BASE)
    assert parsed.kind is kinds.SERVICE
    spec = parsed.obj
    assert isinstance(spec, ServiceSpec)
    assert (spec.min_replicas, spec.max_replicas, spec.port) == (1, 1, 8080)
    assert spec.autoscaling.metric is ScaleMetric.CONCURRENCY
    assert spec.rollout.max_surge == 1 and spec.rollout.max_unavailable == 0
    assert spec.route_prefix == "/iris"
    written = parsed.manifest["spec"]
    assert isinstance(written, dict)
    assert written["scaleToZeroAfter"] == "5m" and written["template"]["pods"] == 1
    assert kinds.parse(parsed.manifest).obj == spec


def test_every_name_finds_the_kind() -> None:
    for name in ("Service", "services", "svc", "service"):
        assert kinds.lookup(name) is kinds.SERVICE


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"queue": ""}, "spec.queue", "is required"),
        ({"template": {}}, "spec.template", "command"),
        ({"template": {"command": []}}, "spec.template.command", "is required"),
        (
            {"template": {"command": ["a"], "env": {"PORT": "1"}}},
            "spec.template.env.PORT",
            "set by phalanx",
        ),
        ({"template": {"command": ["a"], "pods": 0}}, "spec.template.pods", ">= 1"),
        (
            {"template": {"command": ["a"], "resources": {"gpu": 1}}},
            "spec.template.resources.gpu",
            "not a known resource",
        ),
        ({"minReplicas": 3, "maxReplicas": 2}, "spec.maxReplicas", "at least spec.minReplicas"),
        ({"minReplicas": -1}, "spec.minReplicas", ">= 0"),
        ({"port": 70000}, "spec.port", "at most 65535"),
        ({"readinessProbe": {"path": "ready"}}, "spec.readinessProbe.path", "starting with /"),
        ({"autoscaling": {"metric": "gpu"}}, "spec.autoscaling.metric", "concurrency"),
        ({"autoscaling": {"target": 0}}, "spec.autoscaling.target", "between"),
        (
            {"autoscaling": {"stableWindow": "10s", "panicWindow": "20s"}},
            "spec.autoscaling.panicWindow",
            "at most stableWindow",
        ),
        ({"scaleToZeroAfter": "soon"}, "spec.scaleToZeroAfter", "duration"),
        ({"rollout": {"maxSurge": 0, "maxUnavailable": 0}}, "spec.rollout", "both be 0"),
        (
            {"traffic": [{"revision": "latest", "percent": 90}]},
            "spec.traffic",
            "add up to 100",
        ),
        (
            {"traffic": [{"revision": "v1", "percent": 100}]},
            "spec.traffic[0].revision",
            "10 hex digits",
        ),
        (
            {
                "traffic": [
                    {"revision": "latest", "percent": 50},
                    {"revision": "latest", "percent": 50},
                ]
            },
            "spec.traffic[1].revision",
            "listed twice",
        ),
        ({"route": {"pathPrefix": "/a/"}}, "spec.route.pathPrefix", "not ending with /"),
        ({"route": {"hosts": ["bad host"]}}, "spec.route.hosts[0]", "host name"),
        ({"replicas": 3}, "spec.replicas", "not a known field"),
    ],
)
def test_a_bad_field_is_named_with_a_fix(spec: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        kinds.parse(manifest(**spec))
    matching = [e for e in info.value.errors if e.path == path]
    assert matching, [str(e) for e in info.value.errors]
    assert fragment in matching[0].message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as info:
        kinds.parse(manifest(queue="", port=0, minReplicas="two"))
    assert {e.path for e in info.value.errors} == {"spec.queue", "spec.port", "spec.minReplicas"}


def test_a_full_manifest_round_trips() -> None:
    full = manifest(
        priority=5,
        port=9000,
        template={
            "command": ["python", "-m", "server"],
            "args": ["--fast"],
            "env": {"MODEL": "iris"},
            "resources": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "0.5"},
            "pods": 2,
        },
        readinessProbe={"path": "/v2/health/ready", "period": "500ms", "timeout": "2s"},
        minReplicas=0,
        maxReplicas=4,
        autoscaling={"metric": "rps", "target": 50, "stableWindow": "30s", "panicWindow": "3s"},
        scaleToZeroAfter="90s",
        minAvailable=1,
        rollout={"maxSurge": 2, "maxUnavailable": 1},
        traffic=[{"revision": "0123456789", "percent": 80}, {"revision": LATEST, "percent": 20}],
        maxConcurrency=8,
        queueLimit=50,
        coldStartTimeout="20s",
        route={"pathPrefix": "/models/iris", "hosts": ["Iris.example.com"]},
    )
    parsed = kinds.parse(full)
    spec = parsed.obj
    assert spec.template.pods == 2 and spec.template.resources.gpu_milli == 500
    assert spec.hosts == ("iris.example.com",)
    again = kinds.parse(parsed.manifest)
    assert again.obj == spec and again.manifest == parsed.manifest


def test_a_revision_is_named_by_the_template_and_port_only() -> None:
    a = kinds.parse(BASE).obj
    scaled = kinds.parse(manifest(minReplicas=3, maxReplicas=5)).obj
    changed = kinds.parse(manifest(template={"command": ["python", "server2.py"]})).obj
    moved = kinds.parse(manifest(port=9090)).obj
    assert a.revision == scaled.revision  # scaling is not a new revision
    assert len({a.revision, changed.revision, moved.revision}) == 3
    assert a.revision == revision_of(a.template, a.port)
    assert len(a.revision) == 10 and int(a.revision, 16) >= 0


def test_env_from_a_secret_round_trips_and_changes_the_revision() -> None:
    ref = {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    env = [{"name": "MODE", "value": "fast"}, ref]
    parsed = kinds.parse(manifest(template={"command": ["python", "s.py"], "env": env}))
    spec = parsed.obj
    assert isinstance(spec, ServiceSpec)
    assert dict(spec.template.env) == {"MODE": "fast"}
    assert {k: (r.secret, r.key) for k, r in spec.template.secret_env.items()} == {
        "TOKEN": ("hf", "token")
    }
    written = parsed.manifest["spec"]
    assert isinstance(written, dict)
    assert written["template"]["env"] == env
    assert kinds.parse(parsed.manifest).obj == spec
    other = copy.deepcopy(env)
    other[1]["valueFrom"]["secretKeyRef"]["key"] = "other"  # type: ignore[index]
    moved = kinds.parse(manifest(template={"command": ["python", "s.py"], "env": other})).obj
    assert isinstance(moved, ServiceSpec) and moved.revision != spec.revision
    plain = kinds.parse(manifest(template={"command": ["python", "s.py"]})).obj
    assert isinstance(plain, ServiceSpec)
    # a template without Secrets keeps the revision it had before Secrets were allowed
    assert plain.revision == revision_of(plain.template, plain.port)


@pytest.mark.parametrize(
    ("entry", "path", "fragment"),
    [
        pytest.param(
            {"name": "PORT", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            "spec.template.env.PORT",
            "is set by phalanx",
            id="port-from-a-secret",
        ),
        pytest.param(
            {"name": "T", "valueFrom": {"secretKeyRef": {"name": "s"}}},
            "spec.template.env[0].valueFrom.secretKeyRef.key",
            "",
            id="no-key",
        ),
    ],
)
def test_a_bad_secret_reference_is_named(entry: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as raised:
        kinds.parse(manifest(template={"command": ["python", "s.py"], "env": [entry]}))
    text = str(raised.value)
    assert path in text and fragment in text
