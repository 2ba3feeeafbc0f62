"""A Service's spec.llm: defaults, round trip, every problem named with its field and a fix,
and what the controller hands the gateway and the autoscaler."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from phalanx import kinds
from phalanx.model.service import ServiceSpec, revision_of
from phalanx.model.specs import SpecError
from phalanx.serving.controller import autoscaler_spec

BASE: dict[str, Any] = {
    "apiVersion": "phalanx.dev/v1alpha1",
    "kind": "Service",
    "metadata": {"name": "chat"},
    "spec": {
        "queue": "q",
        "template": {"command": ["llm-d-inference-sim", "--model", "m"]},
        "llm": {"engine": "vllm", "models": ["m"]},
    },
}


def manifest(**llm: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out["spec"]["llm"].update(llm)
    return out


def parse(m: dict[str, Any]) -> ServiceSpec:
    spec = kinds.parse(m).obj
    assert isinstance(spec, ServiceSpec)
    return spec


def test_defaults_and_round_trip() -> None:
    parsed = kinds.parse(BASE)
    spec = parsed.obj
    assert isinstance(spec, ServiceSpec) and spec.llm is not None
    assert spec.llm.engine == "vllm" and spec.llm.models == ("m",)
    assert spec.llm.routing.policy == "prefix" and spec.llm.metrics_path == "/metrics"
    again = kinds.parse(dict(parsed.manifest))
    assert again.obj == spec
    written = parsed.manifest["spec"]
    assert isinstance(written, dict)
    assert written["llm"]["routing"]["policy"] == "prefix"


def test_a_service_without_llm_has_none() -> None:
    m = copy.deepcopy(BASE)
    del m["spec"]["llm"]
    assert parse(m).llm is None


def test_routing_settings_do_not_make_a_new_revision() -> None:
    a = parse(BASE)
    b = parse(manifest(routing={"policy": "chwbl", "loadFactor": 1.5}))
    assert b.llm is not None and b.llm.routing.policy == "chwbl"
    c = parse(manifest(routing={"prefillWeight": 0.5}))
    assert c.llm is not None and c.llm.routing.prefill_weight == 0.5
    assert a.revision == b.revision == revision_of(a.template, a.port)


@pytest.mark.parametrize(
    ("llm", "path", "fix"),
    [
        ({"engine": "tgi"}, "spec.llm.engine", "must be one of vllm, sglang, llamacpp"),
        ({"models": []}, "spec.llm.models", "is required: the model names clients send"),
        ({"models": ["a b"]}, "spec.llm.models[0]", "model name as clients send it"),
        ({"models": ["m", "m"]}, "spec.llm.models[1]", "listed twice"),
        ({"routing": {"policy": "random"}}, "spec.llm.routing.policy", "must be one of prefix"),
        ({"routing": {"loadFactor": 0.5}}, "spec.llm.routing.loadFactor", "1 + epsilon"),
        ({"routing": {"blockChars": 2}}, "spec.llm.routing.blockChars", ">= 8"),
        ({"routing": {"prefillWeight": -1}}, "spec.llm.routing.prefillWeight", "in flight"),
        ({"routing": {"fast": True}}, "spec.llm.routing.fast", ""),
        ({"autoscaling": {"kvCacheTarget": 2}}, "spec.llm.autoscaling.kvCacheTarget", "0.8"),
        ({"metricsPath": "metrics"}, "spec.llm.metricsPath", "/metrics"),
        ({"metricsPath": "/" + "m" * 300}, "spec.llm.metricsPath", "at most 256 characters"),
        ({"models": [f"m{i}" for i in range(257)]}, "spec.llm.models", "at most 256 models"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_each_problem_names_its_field_and_a_fix(llm: dict[str, Any], path: str, fix: str) -> None:
    with pytest.raises(SpecError) as err:
        kinds.parse(manifest(**llm))
    found = [e for e in err.value.errors if e.path == path]
    assert found, [str(e) for e in err.value.errors]
    assert fix in found[0].message


def test_llm_must_be_a_mapping_with_models() -> None:
    m = copy.deepcopy(BASE)
    m["spec"]["llm"] = {}
    with pytest.raises(SpecError, match=r"spec\.llm: must give engine and models"):
        kinds.parse(m)


def test_the_autoscaler_gets_the_llm_targets() -> None:
    spec = parse(manifest(autoscaling={"waitingTarget": 3, "kvCacheTarget": 0.7}))
    settings = autoscaler_spec(spec)
    assert (settings.waiting_target, settings.kv_cache_target) == (3.0, 0.7)
    plain = copy.deepcopy(BASE)
    del plain["spec"]["llm"]
    assert autoscaler_spec(parse(plain)).waiting_target is None
