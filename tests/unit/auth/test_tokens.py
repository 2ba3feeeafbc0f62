"""Tokens: random, distinct, kept as a digest; durations read as the CLI writes them."""

from __future__ import annotations

import pytest

from phalanx.auth.tokens import new_token, parse_duration_text, token_digest


def test_tokens_are_distinct_and_name_their_id() -> None:
    made = [new_token() for _ in range(50)]
    assert len({t for _, t in made}) == 50
    for token_id, token in made:
        assert token.startswith(f"phx_{token_id}_")
        assert len(token) > 40
        digest = token_digest(token)
        assert len(digest) == 64 and token not in digest


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45", 45)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_text(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1d", "0", "nan", "inf", "99999w"])
def test_bad_durations_name_the_syntax(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_text(text)
