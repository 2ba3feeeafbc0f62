"""API tokens: made from the system's randomness, shown once, kept only as a SHA-256.

A token reads ``phx_<id>_<secret>``: ``id`` names the token (to list and revoke it) and is
not secret; ``secret`` is 32 random bytes. A token is high-entropy, so one SHA-256 is as hard
to reverse as the token is to guess (a slow password hash would buy nothing and cost every
request). Pure apart from ``secrets``."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "phx_"


def token_digest(token: str) -> str:
    """The hex SHA-256 of ``token``: what the store keeps."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> tuple[str, str]:
    """(id, token) of a new token."""
    token_id = secrets.token_hex(6)
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def parse_duration_text(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``90m``, ``45s`` or a bare number of seconds; ValueError
    naming the syntax otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in units else "s"
    number = raw[:-1] if raw[-1:] in units else raw
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a duration; use e.g. 30d, 12h, 90m or 3600"
        ) from None
    if not value > 0 or value > 10 * 365 * 86400:
        raise ValueError(f"duration {text!r} must be more than 0 and at most 10 years")
    return value
