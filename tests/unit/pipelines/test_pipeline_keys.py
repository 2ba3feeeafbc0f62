"""Cache keys, canonical hashing, the DAG's decisions and lineage: pure functions."""

from __future__ import annotations

import pytest

from phalanx.kinds.pipeline import StepInput, StepSpec
from phalanx.pipelines import dag, lineage
from phalanx.pipelines.artifacts import encode
from phalanx.pipelines.dag import RunPhase, StepState
from phalanx.pipelines.keys import KeyInputs, cache_key, canonical_json

BASE = KeyInputs(task="m:f", code_hash="sha256:c", input_hashes={"a": "sha256:1", "b": "sha256:2"})


def test_canonical_json_ignores_dict_order() -> None:
    assert canonical_json({"b": 1, "a": [1, {"y": 2, "x": 1}]}) == canonical_json(
        {"a": [1, {"x": 1, "y": 2}], "b": 1}
    )
    assert encode({"b": 1, "a": 2}).hash == encode({"a": 2, "b": 1}).hash


@pytest.mark.parametrize(
    "changed",
    [
        KeyInputs("m:g", "sha256:c", BASE.input_hashes),
        KeyInputs("m:f", "sha256:d", BASE.input_hashes),
        KeyInputs("m:f", "sha256:c", {"a": "sha256:1", "b": "sha256:3"}),
        KeyInputs("m:f", "sha256:c", BASE.input_hashes, cache_version="2"),
        KeyInputs("m:f", "sha256:c", BASE.input_hashes, image="python:3.12"),
        KeyInputs("m:f", "sha256:c", BASE.input_hashes, replicas=2),
    ],
    ids=["task", "code", "input", "cache-version", "image", "replicas"],
)
def test_every_part_of_the_key_changes_it(changed: KeyInputs) -> None:
    assert cache_key(changed) != cache_key(BASE)


def test_the_key_ignores_input_order() -> None:
    swapped = KeyInputs("m:f", "sha256:c", {"b": "sha256:2", "a": "sha256:1"})
    assert cache_key(swapped) == cache_key(BASE)


def test_equal_values_of_different_encodings_hash_apart() -> None:
    assert encode("1").hash != encode(1).hash


def _step(name: str, *ups: str, when: str = "") -> StepSpec:
    return StepSpec(name, "m:f", inputs={u: StepInput(step=u) for u in ups}, when_step=when)


STEPS = [_step("a"), _step("b", "a"), _step("c", "b"), _step("d"), _step("e", "d", when="a")]


def test_ready_steps_wait_for_all_upstream() -> None:
    states = {s.name: StepState.PENDING for s in STEPS}
    assert dag.ready(STEPS, states) == ["a", "d"]
    states.update(a=StepState.CACHED, d=StepState.RUNNING)
    assert dag.ready(STEPS, states) == ["b"]
    states.update(d=StepState.SUCCEEDED)
    assert dag.ready(STEPS, states) == ["b", "e"]


def test_a_failure_fails_its_dependents_transitively_and_only_them() -> None:
    states = {s.name: StepState.PENDING for s in STEPS}
    states.update(a=StepState.FAILED, d=StepState.SUCCEEDED)
    assert dag.blocked(STEPS, states) == {
        "b": StepState.UPSTREAM_FAILED,
        "c": StepState.UPSTREAM_FAILED,
        "e": StepState.UPSTREAM_FAILED,
    }
    assert dag.downstream(STEPS, "a") == ["b", "c", "e"]


def test_a_skipped_step_skips_its_dependents() -> None:
    states = {s.name: StepState.PENDING for s in STEPS}
    states.update(a=StepState.SUCCEEDED, b=StepState.SKIPPED)
    assert dag.blocked(STEPS, states) == {"c": StepState.SKIPPED}


def test_run_phase() -> None:
    assert dag.run_phase({"a": StepState.CACHED, "b": StepState.RUNNING}) is RunPhase.RUNNING
    assert dag.run_phase({"a": StepState.CACHED, "b": StepState.SKIPPED}) is RunPhase.SUCCEEDED
    assert dag.run_phase({"a": StepState.FAILED, "b": StepState.UPSTREAM_FAILED}) is RunPhase.FAILED


def test_lineage_walks_both_ways() -> None:
    runs = [
        (
            "r1",
            {
                "steps": {
                    "load": {"state": "Succeeded", "output": {"hash": "sha256:aa"}, "inputs": {}},
                    "clean": {
                        "state": "Succeeded",
                        "output": {"hash": "sha256:bb"},
                        "inputs": {"raw": "sha256:aa", "k": "sha256:11"},
                    },
                    "train": {
                        "state": "Succeeded",
                        "output": {"hash": "sha256:cc"},
                        "inputs": {"data": "sha256:bb"},
                    },
                }
            },
        ),
        (
            "r2",
            {
                "steps": {
                    "clean": {"state": "Cached", "output": {"hash": "sha256:bb"}, "inputs": {}}
                }
            },
        ),
    ]
    found = lineage.productions(runs)
    assert lineage.resolve("b", found) == ["sha256:bb"]
    up = lineage.upstream("sha256:cc", found)
    assert [(p.run, p.step) for p in up.made_by] == [("r1", "train")]
    assert [(n.via, n.artifact) for n in up.next] == [("data", "sha256:bb")]
    assert [(n.via, n.artifact) for n in up.next[0].next] == [
        ("k", "sha256:11"),
        ("raw", "sha256:aa"),
    ]
    down = lineage.downstream("sha256:aa", found)
    assert [n.artifact for n in down.next] == ["sha256:bb"]
    assert [n.artifact for n in down.next[0].next] == ["sha256:cc"]
    assert {(p.run, p.is_cached) for p in down.next[0].made_by} == {("r1", False), ("r2", True)}
