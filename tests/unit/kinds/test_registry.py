"""The kinds registry: lookup by any name, parse with metadata, unknown kinds named."""

from __future__ import annotations

import pytest

from phalanx import kinds
from phalanx.model.metadata import LabelSelector, Requirement, parse_selector
from phalanx.model.specs import SpecError

QUEUE = {
    "apiVersion": "phalanx.dev/v1alpha1",
    "kind": "Queue",
    "metadata": {
        "name": "team-a",
        "labels": {"team": "a", "phalanx.dev/tier": "gold"},
        "annotations": {"owner": "ml-platform@example.com"},
        "ownerReferences": [{"kind": "Queue", "name": "parent", "uid": "u1"}],
        "resourceVersion": "17",
    },
    "spec": {"flavors": [{"name": "default", "resources": {"nvidia.com/gpu": {"nominal": 8}}}]},
}


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("jobs", "Job"),
        ("Job", "Job"),
        ("q", "Queue"),
        ("QUEUES", "Queue"),
        ("rf", "ResourceFlavor"),
        ("flavor", "ResourceFlavor"),
        ("no", "Node"),
    ],
)
def test_lookup_accepts_every_name(text: str, kind: str) -> None:
    assert kinds.lookup(text).name == kind


def test_an_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(kinds.UnknownKindError) as info:
        kinds.lookup("pods")
    message = str(info.value)
    assert "unknown kind 'pods'" in message
    for name in ("Job", "Queue", "ResourceFlavor", "Node"):
        assert name in message


def test_parse_normalises_spec_and_keeps_user_metadata() -> None:
    parsed = kinds.parse(QUEUE)
    assert parsed.kind is kinds.QUEUE and parsed.name == "team-a"
    assert parsed.manifest["metadata"] == {
        "name": "team-a",
        "labels": {"team": "a", "phalanx.dev/tier": "gold"},
        "annotations": {"owner": "ml-platform@example.com"},
        "ownerReferences": [{"kind": "Queue", "name": "parent", "uid": "u1"}],
    }
    spec = parsed.manifest["spec"]
    assert isinstance(spec, dict) and spec["weight"] == 1  # defaults filled
    # What is stored parses back to the same thing.
    again = kinds.parse(parsed.manifest)
    assert again.manifest == parsed.manifest


@pytest.mark.parametrize(
    ("metadata", "path"),
    [
        ({"name": "a", "labels": {"bad key": "x"}}, "metadata.labels.bad key"),
        ({"name": "a", "labels": {"team": "has space"}}, "metadata.labels.team"),
        ({"name": "a", "labels": {"k": "x" * 64}}, "metadata.labels.k"),
        ({"name": "a", "ownerReferences": [{"kind": "Queue"}]}, "metadata.ownerReferences[0].name"),
        ({"name": "a", "ownerReferences": "q"}, "metadata.ownerReferences"),
        ({"name": "a", "annotations": {"big": "x" * 300_000}}, "metadata.annotations"),
        ({"name": "a", "finalizers": []}, "metadata.finalizers"),
    ],
)
def test_bad_metadata_names_the_field(metadata: dict[str, object], path: str) -> None:
    with pytest.raises(SpecError) as info:
        kinds.parse({**QUEUE, "metadata": metadata})
    assert path in [e.path for e in info.value.errors]


def test_node_is_observed_not_applied() -> None:
    with pytest.raises(SpecError) as info:
        kinds.parse({**QUEUE, "kind": "Node"})
    assert info.value.errors[0].path == "kind"
    assert "Job" in info.value.errors[0].message and "Node" not in info.value.errors[0].message


@pytest.mark.parametrize(
    ("text", "labels", "matches"),
    [
        ("team=a", {"team": "a"}, True),
        ("team==a", {"team": "a"}, True),
        ("team=a", {"team": "b"}, False),
        ("team!=a", {}, True),
        ("team", {"team": ""}, True),
        ("!team", {"team": "a"}, False),
        ("team=a,tier=gold", {"team": "a", "tier": "silver"}, False),
        ("", {"x": "y"}, True),
    ],
)
def test_label_selectors(text: str, labels: dict[str, str], matches: bool) -> None:
    assert parse_selector(text).matches(labels) is matches


def test_selector_round_trips_and_rejects_bad_terms() -> None:
    selector = parse_selector("a=1, b!=2,c,!d")
    assert selector == LabelSelector(
        (
            Requirement("a", "=", "1"),
            Requirement("b", "!=", "2"),
            Requirement("c", "exists"),
            Requirement("d", "!exists"),
        )
    )
    assert str(selector) == "a=1,b!=2,c,!d"
    with pytest.raises(ValueError, match="use key=value"):
        parse_selector("a b=c")
