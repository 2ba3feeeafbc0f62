"""The code hash's own ``dedent`` gives textwrap.dedent's text for every input: a step's
process hashes its task's code without importing textwrap, and the cache keys must not move."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx.pipelines.codehash import dedent

# Lines built from the characters that matter to dedent: spaces, tabs, line ends, text.
_LINE = st.text(alphabet=" \t\rx#", max_size=8)
_TEXT = st.lists(_LINE, max_size=8).map("\n".join)


@given(_TEXT)
def test_dedent_gives_textwraps_text_for_any_text(text: str) -> None:
    assert dedent(text) == textwrap.dedent(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("    def f():\n        return 1\n", id="function"),
        pytest.param("  a\n\tb\n", id="mixed-indents"),
        pytest.param("    a\n  \n      b\n", id="whitespace-only-line"),
        pytest.param("\ta\n\t\tb\n   \n", id="tabs"),
        pytest.param("no indent\n  x\n", id="no-margin"),
        pytest.param("", id="empty"),
    ],
)
def test_dedent_examples(text: str) -> None:
    assert dedent(text) == textwrap.dedent(text)
