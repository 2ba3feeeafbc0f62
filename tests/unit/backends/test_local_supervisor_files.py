"""The pod supervisor writes its JSON by hand (it imports no json, see its docstring) and takes
its launch from its command line: what it writes must read back as json.loads reads it, and
the command line must round-trip whatever the backend puts in it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx.backends.local.supervisor import _json_value, _Launch

# Any code point but lone surrogates' encoded forms too: messages may hold undecodable names.
_ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


@given(_ANY_TEXT)
def test_a_string_reads_back_as_itself(text: str) -> None:
    assert json.loads(_json_value(text)) == text


@pytest.mark.parametrize(
    "value",
    [
        None,
        0,
        -1,
        127,
        1.5,
        1796078191.814348,
        "",
        'say "hi"\\n',
        "tab\there",
        "\x00\x1f\x7f",
        "é😀",
    ],
)
def test_values_read_back(value: object) -> None:
    assert json.loads(_json_value(value)) == value  # type: ignore[arg-type]


def test_the_launch_comes_from_the_command_line() -> None:
    launch = _Launch(
        ["pod", "--cwd", "--", "--memory-limit", "1024", "--user", "5:6", "--", "cmd", "--", "x"]
    )

    assert launch.working_dir == "--"  # an option's value may be "--"
    assert (launch.memory_limit, launch.user) == (1024, (5, 6))
    assert launch.command == ["cmd", "--", "x"]
    assert _Launch(["pod", "--"]).command == []


@pytest.mark.parametrize(
    "argv",
    [[], ["pod"], ["pod", "--cwd"], ["pod", "--colour", "red", "--", "x"]],
    ids=["nothing", "no-separator", "option-without-value", "unknown-option"],
)
def test_a_malformed_command_line_is_refused(argv: list[str]) -> None:
    with pytest.raises(ValueError, match="usage"):
        _Launch(argv)
