"""``phalanx ask`` without a network: which objects a question names, and the MCP server's
tools as a model sees them and as its calls run (the real FastMCP server over an in-memory
``Tools``)."""

from __future__ import annotations

import json

import pytest

from phalanx.ops.ask import (
    call_tool,
    doctor_targets,
    named_objects,
    tool_definitions,
)
from phalanx.ops.mcp_server import build_server

KNOWN = {
    "train-7": "job",
    "node-3": "node",
    "team-a": "queue",
    "web": "service",
    "etl": "pipelinerun",
}


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("why is train-7 pending?", [("job", "train-7")]),
        (
            "is node-3 broken, and what about queue team-a.",
            [("node", "node-3"), ("queue", "team-a")],
        ),
        ("why does service/web answer 503?", [("service", "web")]),
        ("what failed in run/etl", [("pipelinerun", "etl")]),
        ("job/unknown-1 and train-7", [("job", "unknown-1"), ("job", "train-7")]),
        ("what is wrong?", []),
        ("is training slow", []),  # a known name inside a word is no mention
        ("web, web and web", [("service", "web")]),
        ("pod/x is odd", []),  # not a kind the doctor knows
        ("what about queue/train-7", [("queue", "train-7")]),  # the reference decides the kind
    ],
    ids=[
        "bare-job",
        "node-and-queue",
        "kind-ref",
        "run-alias",
        "unknown-ref",
        "nothing",
        "substring",
        "once-each",
        "unknown-kind",
        "reference-wins",
    ],
)
def test_named_objects(question: str, expected: list[tuple[str, str]]) -> None:
    assert named_objects(question, KNOWN) == expected


class MemoryTools:
    """The MCP tools' reads over a fixed cluster; ``cancelled`` records writes."""

    def __init__(self) -> None:
        self.cancelled: list[str] = []
        self.doctored: list[tuple[str, str]] = []

    def jobs(self, queue: str, phase: str) -> list[dict[str, object]]:
        return [{"name": "train-7", "phase": "Pending"}]

    def job(self, name: str) -> dict[str, object]:
        if name != "train-7":
            raise LookupError(f"job {name!r} not found")
        return {"name": name, "phase": "Pending", "events": [{"reason": "Pending"}]}

    def queues(self) -> list[dict[str, object]]:
        return [{"name": "team-a"}]

    def queue(self, name: str) -> dict[str, object]:
        return {"name": name}

    def nodes(self) -> list[dict[str, object]]:
        return [{"name": "node-3"}]

    def node(self, name: str) -> dict[str, object]:
        return {"name": name}

    def doctor(self, kind: str, name: str) -> dict[str, object]:
        self.doctored.append((kind, name))
        return {"target": f"{kind}/{name}" if kind else "", "findings": []}

    def estimates(self) -> list[dict[str, object]]:
        return []

    def what_if(self, queue_gpus: dict[str, float], drain: list[str]) -> list[dict[str, object]]:
        return []

    def log_bytes(self, job: str, pod: str, max_bytes: int) -> tuple[str, list[str]]:
        return "PASSWORD=hunter2 ok\n", ["hunter2"]

    def cancel(self, name: str) -> dict[str, object]:
        self.cancelled.append(name)
        return {"name": name, "phase": "Cancelled"}

    def services(self) -> list[dict[str, object]]:
        return [{"name": "web"}]

    def service(self, name: str) -> dict[str, object]:
        return {"name": name}

    def runs(self) -> list[dict[str, object]]:
        return [{"metadata": {"name": "etl"}}]

    def run(self, name: str) -> dict[str, object]:
        return {"metadata": {"name": name}}


def test_doctor_targets_know_every_kind_and_fall_back_to_everything() -> None:
    tools = MemoryTools()
    assert doctor_targets("why are train-7, web and etl stuck on node-3?", tools) == [
        ("job", "train-7"),
        ("service", "web"),
        ("pipelinerun", "etl"),
        ("node", "node-3"),
    ]
    assert doctor_targets("anything wrong?", tools) == [("", "")]


def _schemas_are_plain(schema: object) -> bool:
    """No construct strict OpenAI-compatible servers refuse (anyOf, object-valued
    additionalProperties), at any depth."""
    if isinstance(schema, dict):
        if "anyOf" in schema or isinstance(schema.get("additionalProperties"), dict):
            return False
        return all(_schemas_are_plain(v) for v in schema.values())
    if isinstance(schema, list):
        return all(_schemas_are_plain(v) for v in schema)
    return True


def test_tools_offered_are_read_only_unless_writes_are_allowed() -> None:
    read = tool_definitions(build_server(MemoryTools()))
    names = {t["function"]["name"] for t in read}
    assert "cancel_job" not in names
    assert {"doctor", "why_pending", "describe_service", "describe_pipeline_run"} <= names
    # even a server built with write tools offers only read-only ones unless asked
    writable = build_server(MemoryTools(), allow_write=True)
    assert "cancel_job" not in {t["function"]["name"] for t in tool_definitions(writable)}
    offered = tool_definitions(writable, allow_write=True)
    assert "cancel_job" in {t["function"]["name"] for t in offered}
    for t in offered:
        assert t["type"] == "function" and t["function"]["description"]
        params = t["function"]["parameters"]
        assert params["type"] == "object" and isinstance(params["properties"], dict)
        assert _schemas_are_plain(params), params
    what_if = next(t for t in offered if t["function"]["name"] == "what_if")
    assert what_if["function"]["parameters"]["properties"]["queue_gpus"]["type"] == "object"
    assert what_if["function"]["parameters"]["properties"]["drain_nodes"]["type"] == "array"


def test_tool_calls_run_the_mcp_tools_and_failures_are_answers() -> None:
    tools = MemoryTools()
    server = build_server(tools)
    text, is_error = call_tool(server, "doctor", {"kind": "job", "name": "train-7"})
    assert not is_error and json.loads(text) == {"target": "job/train-7", "findings": []}
    assert tools.doctored == [("job", "train-7")]
    text, is_error = call_tool(server, "describe_job", {"name": "nope"})
    assert is_error and "not found" in json.loads(text)["error"]
    text, is_error = call_tool(server, "cancel_job", {"name": "train-7"})
    assert is_error and tools.cancelled == []  # not offered, and not callable either
    text, is_error = call_tool(server, "log_tail", {"job": "train-7"})
    assert not is_error and "hunter2" not in text and "PASSWORD=" in text
    text, _ = call_tool(server, "list_jobs", {})
    assert json.loads(text) == [{"name": "train-7", "phase": "Pending"}]
