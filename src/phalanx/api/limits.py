"""Limits on what a request may make the server do, so that no input answers 500 or makes it
build something huge: the size of a request body (413), how deeply JSON and YAML may nest, how
far YAML aliases may expand, and how large an error response may grow (truncated, with a
note saying so).

Every check here is iterative (no recursion a deep document could exhaust) and stops as soon
as a limit is passed, so checking costs at most the limit, not the input. Must not import
client or cli.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

__all__ = [
    "DEFAULT_LIMITS",
    "ApiLimits",
    "BodySizeLimit",
    "LimitExceededError",
    "bounded_plain",
    "check_document",
    "check_json_depth",
    "truncate_text",
]


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """What one request may ask of the server."""

    #: Largest request body, in bytes (a batch of a few thousand manifests fits easily).
    max_body_bytes: int = 16 * 1024 * 1024
    #: Deepest nesting of mappings and lists in a JSON or YAML document (a manifest needs 8).
    max_depth: int = 64
    #: Most values (mappings, lists and scalars) in the documents of one request once YAML
    #: aliases are expanded: what makes a small YAML with nested aliases enormous.
    max_nodes: int = 1_000_000
    #: Longest error message, in characters; longer ones are cut with a note.
    max_message_chars: int = 16 * 1024
    #: Most entries in an error's ``details``; the rest are counted in a note.
    max_details: int = 100
    #: Longest rendering of one offending value in an error's details, in characters.
    max_value_chars: int = 256


DEFAULT_LIMITS = ApiLimits()


class LimitExceededError(ValueError):
    """A request went past one of the ApiLimits; ``status`` is the HTTP status to answer
    (413 for the body size, 400 otherwise) and the message names the limit and the fix."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def too_large_message(size: int | None, limits: ApiLimits) -> str:
    """The message of a 413: the limit, the size when known, and what to do instead."""
    got = f" ({size} bytes)" if size is not None else ""
    return (
        f"the request body is larger than the {limits.max_body_bytes} bytes accepted{got}; "
        "apply fewer manifests per request"
    )


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: Opening brackets to 1 and closing ones to -1 (0xFF, read as signed bytes): the running sum
#: of the steps is the depth, summed in C rather than in a generator over every bracket.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def check_json_depth(body: bytes, limits: ApiLimits = DEFAULT_LIMITS, where: str = "") -> None:
    """Raise LimitExceededError when the JSON text ``body`` nests deeper than ``max_depth``.
    Reads the text, not the parsed value (JSON has no aliases to expand): strings are cut
    out and the brackets left are counted."""
    if body.count(b"[") + body.count(b"{") <= limits.max_depth:
        return  # too few opening brackets, in strings or not, to nest deeper
    # Without an escaped quote, quotes alternate and every other piece between them is
    # outside a string; with one, strings are found one by one.
    is_escaped = b'\\"' in body
    outside = _JSON_STRING.sub(b"", body) if is_escaped else b"".join(body.split(b'"')[0::2])
    steps = memoryview(outside.translate(_STEPS, _NOT_BRACKETS)).cast("b")
    deepest = max(accumulate(steps), default=0)
    if deepest > limits.max_depth:
        prefix = f"{where}: " if where else ""
        raise LimitExceededError(
            f"{prefix}the JSON nests deeper than {limits.max_depth} levels of objects and "
            "arrays; a manifest needs far fewer"
        )


def check_document(value: object, limits: ApiLimits = DEFAULT_LIMITS, where: str = "") -> None:
    """Raise LimitExceededError when ``value`` (parsed JSON or YAML) nests deeper than
    ``max_depth``, refers to itself (a recursive YAML alias), or holds more than
    ``max_nodes`` values counting a value shared through YAML aliases once per reference
    (as everything downstream walks it). Iterative; costs one visit per distinct value, not
    per expanded one, so an alias bomb is measured without being expanded."""
    prefix = f"{where}: " if where else ""
    sizes: dict[int, int] = {}  # id of a container -> values in it, expanded
    path: set[int] = set()  # containers being measured: the ancestors of what is on top
    stack: list[tuple[object, bool]] = [(value, False)]
    while stack:
        item, is_measured = stack.pop()
        key = id(item)
        children = _children(item)
        if is_measured:
            assert children is not None  # only containers are measured
            path.discard(key)
            size = 1 + sum(sizes.get(id(c), 1) for c in children)
            if size > limits.max_nodes:
                raise LimitExceededError(
                    f"{prefix}the request holds more than {limits.max_nodes} values once YAML "
                    "aliases are expanded; write smaller documents, without nested aliases"
                )
            sizes[key] = size
            continue
        if children is None or key in sizes:
            continue
        if key in path:
            raise LimitExceededError(f"{prefix}a YAML alias refers to itself; remove the loop")
        path.add(key)
        if len(path) > limits.max_depth:
            raise LimitExceededError(
                f"{prefix}the document nests deeper than {limits.max_depth} levels of "
                "mappings and lists; a manifest needs far fewer"
            )
        stack.append((item, True))
        for child in children:
            if id(child) in path:
                raise LimitExceededError(f"{prefix}a YAML alias refers to itself; remove the loop")
            if id(child) not in sizes and _children(child) is not None:
                stack.append((child, False))


def _children(item: object) -> Sequence[object] | None:
    """The values directly inside a container (a mapping's keys and values), or None."""
    if isinstance(item, Mapping):
        return [*item.keys(), *item.values()]
    if isinstance(item, list | tuple):
        return item
    return None


def truncate_text(text: str, max_chars: int) -> str:
    """``text``, cut to about ``max_chars`` with a note saying how much was left out."""
    if len(text) <= max_chars:
        return text
    left_out = len(text) - max_chars
    return f"{text[:max_chars]}… [truncated: {left_out} more characters]"


def bounded_plain(value: object, limits: ApiLimits = DEFAULT_LIMITS) -> object:
    """``value`` as JSON-safe data for an error's details, never large: scalars as they
    are (non-finite floats as text, long strings cut), containers rendered as short text."""
    if value is None or isinstance(value, bool | int):
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
            return truncate_text(_int_text(value), limits.max_value_chars)
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return truncate_text(value, limits.max_value_chars)
    return truncate_text(short_repr(value, limits.max_value_chars), limits.max_value_chars)


def _int_text(value: int) -> str:
    digits = value.bit_length() * 30103 // 100000  # about log10(2) per bit
    if digits > 4000:  # str() of a huge int is slow, and refused past 4300 digits
        return f"an integer of about {digits} digits"
    return str(value)


def short_repr(value: object, max_chars: int) -> str:
    """A repr of ``value`` of at most about ``max_chars`` characters, built without walking
    more of it than that (a structure expanded from YAML aliases may be enormous)."""
    out: list[str] = []
    size = 0
    stack: list[object] = [value]
    while stack and size <= max_chars:
        item = stack.pop()
        if isinstance(item, _Token):
            piece = item.text
        elif isinstance(item, Mapping):
            piece = "{"
            entries: list[object] = [_Token("}")]
            for i, (k, v) in enumerate(reversed(list(_first(item.items(), 32)))):
                entries.extend([v, _Token(": "), k] + ([_Token(", ")] if i else []))
            stack.extend(entries)
        elif isinstance(item, list | tuple):
            piece = "["
            entries = [_Token("]")]
            for i, v in enumerate(reversed(list(_first(item, 32)))):
                entries.extend([v] + ([_Token(", ")] if i else []))
            stack.extend(entries)
        elif isinstance(item, int) and not isinstance(item, bool):
            piece = _int_text(item)
        else:
            piece = repr(item)[: max_chars + 1]
        out.append(piece)
        size += len(piece)
    text = "".join(out)
    return text if not stack else text + "…"


@dataclass(frozen=True, slots=True)
class _Token:
    text: str


def _first(items: Any, count: int) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if len(out) >= count:
            break
        out.append(item)
    return out


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodySizeLimit:
    """ASGI middleware: answer 413 to a request whose body is larger than
    ``limits.max_body_bytes``, by its Content-Length at once, or, without one, as soon as
    the bytes read pass the limit (reading the body then raises LimitExceededError with status
    413, which the API's error handlers answer)."""

    def __init__(self, app: ASGIApp, limits: ApiLimits = DEFAULT_LIMITS) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limits.max_body_bytes:
            await _send_413(send, too_large_message(declared, self.limits))
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limits.max_body_bytes:
                    raise LimitExceededError(too_large_message(None, self.limits), status=413)
            return message

        await self.app(scope, limited, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, message: str) -> None:
    body = json.dumps(
        {"error": {"code": "PayloadTooLarge", "message": message, "details": [], "source": ""}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
