"""No input answers 500 or a huge response: body size (413), nesting depth of JSON and YAML,
YAML alias expansion, hostile values in manifests, and the size of error responses."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from phalanx.api.limits import (
    DEFAULT_LIMITS,
    ApiLimits,
    BodySizeLimit,
    LimitExceededError,
    Message,
    Receive,
    Scope,
    Send,
    bounded_plain,
    check_document,
    check_json_depth,
    short_repr,
)

YAML = {"Content-Type": "application/yaml"}
APPLY = "/api/v1/apply"

#: 400 bytes of YAML whose aliases expand to 10**9 strings, in a manifest's fields.
ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
kind: Job
spec: {x: *i}
"""


def error_of(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text[:500]
    assert len(response.content) < 64 * 1024, len(response.content)
    error = response.json()["error"]
    assert isinstance(error, dict)
    return error


def test_a_body_over_the_limit_answers_413(http: httpx.Client) -> None:
    body = b"x" * (DEFAULT_LIMITS.max_body_bytes + 1)
    error = error_of(http.post(APPLY, content=body, headers=YAML), 413)
    assert error["code"] == "PayloadTooLarge"
    assert str(DEFAULT_LIMITS.max_body_bytes) in str(error["message"])


def test_a_streamed_body_over_the_limit_stops_being_read() -> None:
    """Without a Content-Length the middleware counts the bytes as they come and stops the
    read at the limit (the apply route answers that 413, as above)."""
    limits = ApiLimits(max_body_bytes=10)
    read: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            read.append(message["body"])
            if not message.get("more_body"):
                return

    async def receive() -> Message:
        return {"type": "http.request", "body": b"12345678", "more_body": True}

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent by the middleware itself")

    scope: Scope = {"type": "http", "headers": []}
    with pytest.raises(LimitExceededError) as caught:
        asyncio.run(BodySizeLimit(app, limits)(scope, receive, send))
    assert caught.value.status == 413
    assert len(read) == 1  # the second chunk passed the limit and was refused


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deep_json_answers_400(http: httpx.Client, depth: int) -> None:
    body = '{"manifests": [' + "[" * depth + "]" * depth + "]}"
    error = error_of(
        http.post(APPLY, content=body, headers={"Content-Type": "application/json"}), 400
    )
    assert "nests" in str(error["message"])


@pytest.mark.parametrize("depth", [1_000, 20_000])
def test_deep_yaml_answers_400(http: httpx.Client, depth: int) -> None:
    body = "a: " + "[" * depth + "]" * depth
    error = error_of(http.post(APPLY, content=body, headers=YAML), 400)
    assert "nests" in str(error["message"])


def test_a_yaml_alias_bomb_answers_a_small_400(http: httpx.Client) -> None:
    assert len(ALIAS_BOMB) < 420
    error = error_of(http.post(APPLY, content=ALIAS_BOMB, headers=YAML), 400)
    assert "aliases are expanded" in str(error["message"])


def test_a_recursive_alias_answers_400(http: httpx.Client) -> None:
    error = error_of(http.post(APPLY, content="a: &a [1, *a]\n", headers=YAML), 400)
    assert "refers to itself" in str(error["message"])


def test_shared_values_are_counted_once_per_reference_without_expanding_them() -> None:
    shared: list[object] = ["lol"] * 9
    for _ in range(5):
        shared = [shared] * 9
    check_document(shared, ApiLimits(max_nodes=9**6 + 9**5 * 2))
    with pytest.raises(LimitExceededError, match="aliases are expanded"):
        check_document(shared, ApiLimits(max_nodes=9**6))


def test_json_depth_ignores_brackets_in_strings() -> None:
    check_json_depth(b'{"a": "[[[[[[[[[[\\" [[[["}', ApiLimits(max_depth=2))
    with pytest.raises(LimitExceededError, match="deeper than 2"):
        check_json_depth(b'{"a": "]]]]\\"", "b": [[1]]}', ApiLimits(max_depth=2))


@pytest.mark.parametrize(
    ("yaml_value", "path"),
    [
        ("cpu: .inf", "spec.podSets[0].resources.cpu"),
        ("cpu: .nan", "spec.podSets[0].resources.cpu"),
        ("cpu: 1e400", "spec.podSets[0].resources.cpu"),
    ],
)
def test_hostile_quantities_answer_400_not_500(
    http: httpx.Client, yaml_value: str, path: str
) -> None:
    text = f"""
apiVersion: phalanx.dev/v1alpha1
kind: Job
metadata: {{name: j}}
spec:
  queue: q
  priority: 0
  podSets: [{{name: main, command: ["true"], resources: {{{yaml_value}}}}}]
"""
    error = error_of(http.post(APPLY, content=text, headers=YAML), 400)
    assert error["code"] == "SpecInvalid"
    assert [d["path"] for d in error["details"]] == [path]  # type: ignore[index,union-attr]


def test_a_huge_priority_answers_400(http: httpx.Client) -> None:
    text = """
apiVersion: phalanx.dev/v1alpha1
kind: Job
metadata: {name: j}
spec: {queue: q, priority: 1000000000000000000000, podSets: [{command: ["true"]}]}
"""
    error = error_of(http.post(APPLY, content=text, headers=YAML), 400)
    assert "at most 2147483647" in str(error["message"])


def test_nan_in_json_answers_400(http: httpx.Client) -> None:
    body = (
        '{"manifests": [{"apiVersion": "phalanx.dev/v1alpha1", "kind": "Job", "metadata": '
        '{"name": "j"}, "spec": {"queue": "q", "maxRuntime": NaN, "podSets": '
        '[{"command": ["true"], "resources": {"cpu": Infinity}}]}}]}'
    )
    error = error_of(
        http.post(APPLY, content=body, headers={"Content-Type": "application/json"}), 400
    )
    paths = {d["path"] for d in error["details"]}  # type: ignore[union-attr]
    assert paths == {"spec.maxRuntime", "spec.podSets[0].resources.cpu"}


def test_error_responses_are_truncated_with_a_note(http: httpx.Client) -> None:
    bad = {"apiVersion": "phalanx.dev/v1alpha1", "kind": "Job", "metadata": {"name": "BAD"}}
    body = json.dumps({"manifests": [bad] * 2_000})
    error = error_of(
        http.post(APPLY, content=body, headers={"Content-Type": "application/json"}), 400
    )
    details = error["details"]
    assert isinstance(details, list)
    assert len(details) == DEFAULT_LIMITS.max_details + 1
    assert "more problems" in details[-1]["message"]
    assert "truncated" in str(error["message"])


def test_bounded_values_stay_small() -> None:
    shared: list[object] = ["lol"] * 9
    for _ in range(9):
        shared = [shared] * 9
    assert len(str(bounded_plain(shared))) <= DEFAULT_LIMITS.max_value_chars + 40
    assert len(short_repr({"a": "x" * 10_000}, 100)) < 300
    assert bounded_plain(float("inf")) == "inf"
    assert "digits" in str(bounded_plain(10**5000))
