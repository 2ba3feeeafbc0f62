"""``phalanx ask``: a question in plain language, answered with the MCP server's tools.

With a model (any OpenAI-compatible chat completions endpoint: a local vLLM, Ollama or
llama.cpp server, or a hosted API), ``ask_model`` offers it the tools of the MCP server
(mcp_server.build_server: the same functions, read-only unless write access was given) and
runs the calls it makes, round by round, until it answers; the last round allows no more
calls. The API key is read from an environment variable and is never logged or shown: an
error that quotes it is masked.

Without a model, ``doctor_targets`` finds the objects the question names (``job/x`` or a bare name
of a job, node, queue, Service or pipeline run) and runs the doctor on each, or on everything
when it names none.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from phalanx.ops.masking import mask_secrets

if TYPE_CHECKING:  # heavy: imported where used, so that the CLI starts fast
    from mcp.server.fastmcp import FastMCP
    from openai import OpenAI

    from phalanx.ops.mcp_server import Tools

log = logging.getLogger(__name__)

#: The environment variables ``phalanx ask`` reads.
ENV_URL = "PHALANX_ASK_URL"
ENV_MODEL = "PHALANX_ASK_MODEL"
ENV_KEY = "PHALANX_ASK_KEY"
#: The most characters of one tool answer sent back to the model.
MAX_TOOL_CHARS = 16_000

SYSTEM_PROMPT = (
    "You answer questions about a phalanx cluster: GPU jobs in queues, nodes, Services and "
    "pipeline runs. Use the tools to look; never guess. For why something waits, fails or is "
    "slow, call doctor or why_pending first: findings name the root cause (code, object), the "
    "evidence and the fix. Answer briefly, name the objects, quote the numbers, and give the "
    "fix as a command or a spec change."
)

#: Kinds the doctor looks at, by the words a question may use for them.
_KIND_WORDS = {
    "job": "job",
    "node": "node",
    "queue": "queue",
    "service": "service",
    "svc": "service",
    "pipelinerun": "pipelinerun",
    "run": "pipelinerun",
}
_REF = re.compile(r"\b([a-z]+)/([a-z0-9][a-z0-9.\-]*)", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9]|[A-Za-z0-9]")


# ---- without a model ------------------------------------------------------------------------


def known_objects(tools: Tools) -> dict[str, str]:
    """Every object the doctor can look at, name → kind (a job's name wins over a node's of
    the same name; the question can say ``node/x`` to pick the node)."""
    known: dict[str, str] = {}
    for kind, items in (
        ("pipelinerun", _names(tools.runs())),
        ("service", _names(tools.services())),
        ("queue", [str(q.get("name", "")) for q in tools.queues()]),
        ("node", [str(n.get("name", "")) for n in tools.nodes()]),
        ("job", [str(j.get("name", "")) for j in tools.jobs("", "")]),
    ):
        known.update({name: kind for name in items if name})
    return known


def _names(items: Sequence[Mapping[str, object]]) -> list[str]:
    out = []
    for item in items:
        meta = item.get("metadata")
        name = meta.get("name") if isinstance(meta, Mapping) else item.get("name")
        if name:
            out.append(str(name))
    return out


def named_objects(question: str, known: Mapping[str, str]) -> list[tuple[str, str]]:
    """(kind, name) of each object the question names, in order, once each: ``kind/name``
    references, then bare words that are the name of a known object (a trailing ``?``, ``.``
    or ``,`` is not part of a name)."""
    found: list[tuple[str, str]] = []
    for word, name in _REF.findall(question):
        kind = _KIND_WORDS.get(word.lower())
        if kind is not None:
            found.append((kind, name.rstrip(".-")))
    referenced = {name for _, name in found}
    for word in _WORD.findall(question):
        if word in known and word not in referenced:
            found.append((known[word], word))
    return list(dict.fromkeys(found))


def doctor_targets(question: str, tools: Tools) -> list[tuple[str, str]]:
    """What the doctor should look at for ``question``: the (kind, name) of each object it
    names (see named_objects), or ``[("", "")]`` (everything) when it names none."""
    return named_objects(question, known_objects(tools)) or [("", "")]


# ---- with a model ---------------------------------------------------------------------------


class AskError(RuntimeError):
    """The model server could not be asked (unreachable, refused, a bad model name)."""


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One tool call the model made: its name, arguments, and whether it failed."""

    name: str
    arguments: Mapping[str, Any]
    is_error: bool = False


@dataclass(slots=True)
class AskResult:
    """The model's answer, the tool calls it made, and the rounds it took."""

    answer: str
    calls: list[ToolCallRecord] = field(default_factory=list)
    rounds: int = 0


def tool_definitions(server: FastMCP, *, allow_write: bool = False) -> list[dict[str, Any]]:
    """The server's tools as OpenAI function definitions. Without ``allow_write`` only tools
    marked read-only are offered. Schemas are simplified to what strict OpenAI-compatible
    servers accept: ``anyOf [X, null]`` becomes X, and keys they refuse are dropped."""
    out = []
    for tool in asyncio.run(server.list_tools()):
        hints = tool.annotations
        is_read_only = bool(hints and hints.readOnlyHint)
        if not (is_read_only or allow_write):
            continue
        out.append(
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": (tool.description or tool.name).strip(),
                    "parameters": _simple_schema(dict(tool.inputSchema)),
                },
            }
        )
    return out


_SCHEMA_KEYS = frozenset(
    {"type", "description", "enum", "properties", "items", "required", "default", "title"}
)


def _simple_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if isinstance(options, list):
        chosen = next((o for o in options if o.get("type") != "null"), {"type": "string"})
        merged = {**{k: v for k, v in schema.items() if k != "anyOf"}, **chosen}
        if merged.get("default", 0) is None:
            merged.pop("default")
        return _simple_schema(merged)
    out: dict[str, Any] = {k: v for k, v in schema.items() if k in _SCHEMA_KEYS}
    out.setdefault("type", "string")
    if isinstance(out.get("properties"), Mapping):
        out["properties"] = {k: _simple_schema(v) for k, v in out["properties"].items()}
    elif out["type"] == "object":
        out["properties"] = {}
    if isinstance(out.get("items"), Mapping):
        out["items"] = _simple_schema(out["items"])
    return out


def call_tool(server: FastMCP, name: str, arguments: Mapping[str, Any]) -> tuple[str, bool]:
    """Run tool ``name``; its answer as text (JSON) and whether it failed. A failure (an
    unknown tool, bad arguments, an object that does not exist, a refusal by the server) is
    an answer too: the model reads it and goes on."""
    from mcp.server.fastmcp.exceptions import ToolError
    from mcp.types import TextContent

    try:
        result = asyncio.run(server.call_tool(name, dict(arguments)))
    except ToolError as exc:
        return json.dumps({"error": str(exc)}), True
    answer: object = result
    if isinstance(result, tuple):  # (content blocks, structured result)
        answer = result[1] if isinstance(result[1], Mapping) else result[0]
    if isinstance(answer, Mapping):
        data: object = answer.get("result", answer) if len(answer) == 1 else answer
        text = json.dumps(data, default=str)
    else:
        blocks = answer if isinstance(answer, list | tuple) else []
        text = "\n".join(b.text for b in blocks if isinstance(b, TextContent))
    if len(text) > MAX_TOOL_CHARS:
        text = text[:MAX_TOOL_CHARS] + f"… (cut at {MAX_TOOL_CHARS} characters)"
    return text, False


def ask_model(
    question: str,
    server: FastMCP,
    client: OpenAI,
    model: str,
    *,
    allow_write: bool = False,
    max_rounds: int = 6,
    require_tool: bool = False,
    secrets: Sequence[str] = (),
) -> AskResult:
    """Ask ``model`` through ``client`` with the server's tools; see the module docstring.
    ``require_tool``: the first round must call a tool (``tool_choice: required``).
    ``secrets``: values masked in the answer and in errors (the API key). Raises AskError
    (its message masked, the original not chained) when the model server fails."""
    import openai

    tools = tool_definitions(server, allow_write=allow_write)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": question},
    ]
    result = AskResult("")
    for round_index in range(max(1, max_rounds)):
        is_last = round_index == max_rounds - 1
        choice = (
            "none" if is_last else ("required" if require_tool and round_index == 0 else "auto")
        )
        try:
            response = client.chat.completions.create(
                model=model,
                messages=cast("Any", messages),
                tools=cast("Any", tools),
                tool_choice=cast("Any", choice),
            )
        except openai.OpenAIError as exc:
            raise AskError(
                f"the model server failed: {mask_secrets(str(exc), list(secrets))}"
            ) from None
        result.rounds = round_index + 1
        message = response.choices[0].message
        calls = message.tool_calls or []
        if not calls:
            result.answer = mask_secrets(message.content or "", list(secrets))
            return result
        messages.append(
            {
                "role": "assistant",
                "content": message.content or "",
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments},
                    }
                    for c in calls
                    if c.type == "function"
                ],
            }
        )
        for c in calls:
            if c.type != "function":
                continue
            try:
                arguments = json.loads(c.function.arguments or "{}")
                if not isinstance(arguments, dict):
                    raise ValueError("arguments must be a JSON object")
            except ValueError as exc:
                text, is_error, arguments = json.dumps({"error": f"bad arguments: {exc}"}), True, {}
            else:
                text, is_error = call_tool(server, c.function.name, arguments)
            log.info(
                "ask: tool %s(%s)%s", c.function.name, arguments, " failed" if is_error else ""
            )
            result.calls.append(ToolCallRecord(c.function.name, arguments, is_error))
            messages.append({"role": "tool", "tool_call_id": c.id, "content": text})
    result.answer = "(the model made tool calls until the round limit and gave no answer)"
    return result
