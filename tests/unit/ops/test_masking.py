"""Secrets masked out of log tails handed to agents."""

from __future__ import annotations

import pytest

from phalanx.ops.masking import mask_secrets, secret_values
from phalanx.ops.mcp_server import tail_lines


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("API_TOKEN=abc123def", "API_TOKEN=****"),
        ("db_password: 'hunter2'", "db_password: '****'"),
        ("export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI", "export AWS_SECRET_ACCESS_KEY=****"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9", "Authorization: Bearer ****"),
        ("key AKIAIOSFODNN7EXAMPLE used", "key **** used"),
        ("openai sk-proj-abcdefghijklmnopqrstuvwx", "openai ****"),
        ("step 100 loss 0.25 tokens/s 5000", "step 100 loss 0.25 tokens/s 5000"),
    ],
    ids=["env", "yaml", "aws-secret", "bearer", "aws-key-id", "openai", "harmless"],
)
def test_mask_secrets(text: str, masked: str) -> None:
    assert mask_secrets(text) == masked


def test_known_values_are_masked_wherever_they_appear() -> None:
    env = {"DB_PASSWORD": "correct-horse", "BATCH": "32", "HF_TOKEN": "x"}
    assert secret_values(env) == ["correct-horse"]  # too short to mask: "x"
    assert (
        mask_secrets("connecting with correct-horse", secret_values(env)) == "connecting with ****"
    )


def test_tail_lines_is_bounded() -> None:
    text = "\n".join(str(i) for i in range(1000))
    assert tail_lines(text, 3) == "997\n998\n999"
    assert len(tail_lines(text, 10_000).splitlines()) == 500
