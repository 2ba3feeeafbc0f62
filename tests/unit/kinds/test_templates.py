"""Parsing through remembered templates (``Kind.template_cache``) gives what a whole parse
gives: the same object and manifest, or the same errors, for any name and any manifest."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx import kinds
from phalanx.kinds import registry
from phalanx.model.specs import SpecError, parse_job


def manifest(name: object, **metadata: object) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name, **metadata},
        "spec": {
            "queue": "q",
            "podSets": [{"name": "main", "command": ["true"], "resources": {"cpu": "500m"}}],
        },
    }


def outcome(value: dict[str, object]) -> object:
    """What kinds.parse makes of ``value``: the Parsed, or the errors."""
    try:
        return kinds.parse(value)
    except SpecError as exc:
        return [(e.path, e.value, e.message) for e in exc.errors]


def whole(value: dict[str, object]) -> object:
    """As ``outcome``, with nothing remembered."""
    registry._TEMPLATES["Job"]._entries.clear()
    return outcome(value)


names = st.one_of(
    st.text(alphabet="abz09-_.A", max_size=70),
    st.integers(),
    st.none(),
    st.sampled_from(["a" * 63, "a" * 64, "-a", "a-", "a--b", "é"]),
)


@settings(max_examples=300, deadline=None)
@given(
    name=names,
    labels=st.dictionaries(st.sampled_from(["t", "u", 1]), st.sampled_from(["x", "", 2])),
)
def test_a_remembered_template_parses_as_a_whole_parse(
    name: object, labels: dict[object, object]
) -> None:
    template = manifest("template", labels=labels)
    outcome(template)  # remembered, when valid
    assert outcome(manifest(name, labels=labels)) == whole(manifest(name, labels=labels))


def test_the_name_rule_is_the_parsers() -> None:
    for name in ["a", "a-b", "a" * 63, "a" * 64, "A", "a_b", "-a", "a-", "", "0", "a.b"]:
        try:
            parse_job(manifest(name))
            accepted = True
        except SpecError:
            accepted = False
        assert (registry._Templates.key(manifest(name)) is not None) == accepted, name


def test_values_of_other_types_are_not_taken_for_the_template() -> None:
    outcome(manifest("a", labels={"1": "x"}))
    # marshal tells the integer key from the string key: not the template above.
    assert isinstance(outcome(manifest("b", labels={1: "x"})), list)
    outcome(manifest("c", labels={"n": 1}))
    assert outcome(manifest("d", labels={"n": True})) == whole(manifest("d", labels={"n": True}))


def test_templates_are_reused_and_what_is_returned_is_never_what_is_kept() -> None:
    registry._TEMPLATES["Job"]._entries.clear()
    first = kinds.parse(manifest("one"))
    second = kinds.parse(manifest("two"))
    assert len(registry._TEMPLATES["Job"]._entries) == 1
    assert second.obj.name == "two" and second.manifest["metadata"] == {"name": "two"}
    assert second.obj.pod_sets is first.obj.pod_sets  # the template's (immutable) parts
    spec = second.manifest["spec"]
    assert isinstance(spec, dict)
    expected = copy.deepcopy(spec)
    spec["queue"] = "changed"
    first.manifest["spec"]["podSets"].clear()  # type: ignore[index, union-attr]
    assert kinds.parse(manifest("three")).manifest["spec"] == expected


def test_the_cache_is_bounded() -> None:
    registry._TEMPLATES["Job"]._entries.clear()
    size = registry._TEMPLATES["Job"].size
    for i in range(size + 10):
        kinds.parse(manifest("x", labels={"i": str(i)}))
    assert len(registry._TEMPLATES["Job"]._entries) == size


@pytest.mark.parametrize("kind", ["Queue", "ResourceFlavor", "Service", "Secret"])
def test_only_kinds_that_ask_remember(kind: str) -> None:
    assert kind not in registry._TEMPLATES


@pytest.mark.parametrize(
    "metadata",
    [
        {"namespace": "team-a", "owner": "ann"},
        {"labels": {"t": "x"}, "annotations": {"note": "a b"}},
        {"ownerReferences": [{"kind": "Queue", "name": "q", "uid": "u1"}], "owner": "bob"},
    ],
    ids=["namespace-owner", "labels-annotations", "owner-references"],
)
def test_a_remembered_template_gives_each_job_its_own_normalised_manifest(
    metadata: dict[str, object],
) -> None:
    registry._TEMPLATES["Job"]._entries.clear()
    first = kinds.parse(manifest("first", **copy.deepcopy(metadata)))
    second = kinds.parse(manifest("second", **copy.deepcopy(metadata)))
    assert second == whole(manifest("second", **copy.deepcopy(metadata)))
    assert second.obj.name == "second" and type(second.obj) is type(first.obj)
    # What one job's manifest is given is its own: changing it changes no other job's.
    for parsed in (first, second):
        spec, meta = parsed.manifest["spec"], parsed.manifest["metadata"]
        assert isinstance(spec, dict) and isinstance(meta, dict)
        spec["queue"] = "changed"
        meta["labels"] = {"changed": "yes"}
    third = kinds.parse(manifest("third", **copy.deepcopy(metadata)))
    assert third == whole(manifest("third", **copy.deepcopy(metadata)))
