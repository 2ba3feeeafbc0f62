"""Secrets masked out of text handed to agents (log tails): values of variables whose names
say secret, bearer tokens, well-known key formats, and any literal values the caller knows
to be secret (a job's env values under secret-looking names). Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MASK = "****"

_SECRET_NAME = re.compile(
    r"(?i)(?:token|secret|passw(?:or)?d|api[_-]?key|access[_-]?key|private[_-]?key|credential)"
)
_ASSIGNMENT = re.compile(
    r"(?i)\b([A-Z0-9_.-]*(?:token|secret|passw(?:or)?d|api[_-]?key|access[_-]?key|"
    r"private[_-]?key|credentials?)[A-Z0-9_.-]*)(\s*[=:]\s*)([\"']?)([^\s\"',;]+)"
)
_PATTERNS = (
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{20,}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
)


def is_secret_name(name: str) -> bool:
    """Whether a variable named ``name`` probably holds a secret."""
    return bool(_SECRET_NAME.search(name))


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The values of ``env`` under secret-looking names (4 characters or more)."""
    return [v for k, v in env.items() if is_secret_name(k) and len(v) >= 4]


def mask_secrets(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with secrets replaced by ``****``; see the module docstring."""
    for value in sorted(set(known), key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}{MASK}", text)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)} {MASK}" if m.groups() else MASK, text)
    return text
