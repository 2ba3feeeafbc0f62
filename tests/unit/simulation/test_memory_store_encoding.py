"""The simulator's in-memory store encodes and decodes its JSON columns as ``json`` does
(the same texts, values and errors), and an event that says its job's reason keeps its own
facts when they only compare equal to the job's (``1`` and ``True``)."""

from __future__ import annotations

import json

import pytest

from phalanx.store import EventRecord, MemoryStore, Transition
from phalanx.store.memory import ConstraintError, _decode, _encode

VALUES = {
    "empty-dict": {},
    "empty-list": [],
    "text": "plain",
    "number": 3,
    "none": None,
    "facts": {"attempt": 1, "pods": [{"pod": "w-0", "devices": [[0, 1000]]}], "ok": True},
    "tuples": {"devices": ((0, 500), (1, 1000))},
    "floats": {"a": 1.5, "nan": float("nan"), "inf": float("-inf"), "zero": -0.0, "big": 1e300},
    "keys": {1: "int", 2.5: "float", False: "bool", None: "none"},
    "unicode": {"message": 'naïve "quoted"\n\u2028'},
}


@pytest.mark.parametrize("value", list(VALUES.values()), ids=list(VALUES))
def test_encodes_and_decodes_as_json_does(value: object) -> None:
    text = _encode(value)
    assert text == json.dumps(value, separators=(",", ":"))
    assert repr(_decode(text)) == repr(json.loads(text))


def test_errors_are_those_of_json_and_leave_the_encoder_working() -> None:
    circular: list[object] = []
    circular.append(circular)
    for bad, error in [
        ({"a": object()}, TypeError),
        ({(1, 2): 1}, TypeError),
        (circular, ValueError),
    ]:
        with pytest.raises(error):
            _encode(bad)
        assert _encode({"after": [1]}) == '{"after":[1]}'  # no marks left from the failure
    for text in ["", "{", "{} x"]:
        with pytest.raises(json.JSONDecodeError):
            _decode(text)
    assert _decode(" [1] ") == [1]


@pytest.mark.parametrize(
    ("event_facts", "stored"),
    [
        (None, '{"attempt":1,"flag":true}'),  # None: the very values of the job's reason
        ({"attempt": True, "flag": True}, '{"attempt":true,"flag":true}'),  # equal, not same
        ({"flag": True, "attempt": 1}, '{"flag":true,"attempt":1}'),  # another order
    ],
    ids=["same", "equal-values", "other-order"],
)
def test_an_event_keeps_its_own_facts_beside_its_jobs_reason(
    event_facts: dict[str, object] | None, stored: str
) -> None:
    store = MemoryStore()
    store.apply([], [("j", "uid-j", {"kind": "Job"}, "q", 0)], 1.0)
    job = store.get_job("j")
    assert job is not None
    reason_facts = {"attempt": 1, "flag": True}
    facts = dict(reason_facts) if event_facts is None else event_facts
    event = EventRecord(2.0, "Normal", "Started", "started", facts=facts)
    assert store.transition(Transition(job.id, job={"reason_facts": reason_facts}, events=(event,)))
    [_, written] = store.events(job.id)
    assert json.dumps(written.facts, separators=(",", ":")) == stored
    assert store.list_jobs(names=["j"])[0].reason_facts == {"attempt": 1, "flag": True}


def test_a_value_json_refuses_is_a_constraint_error_and_writes_nothing() -> None:
    store = MemoryStore()
    store.apply([], [("j", "uid-j", {"kind": "Job"}, "q", 0)], 1.0)
    job = store.get_job("j")
    assert job is not None
    with pytest.raises(ConstraintError):
        store.transition(Transition(job.id, job={"reason_facts": {"x": object()}}))
    assert store.events(job.id)[-1].reason == "Created"
