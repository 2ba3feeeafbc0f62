"""Errors the control plane raises to its callers (the API maps them to HTTP statuses)."""

from __future__ import annotations


class NotFoundError(LookupError):
    """No object of that kind and name: 404."""

    def __init__(self, kind: str, name: str, message: str = "") -> None:
        self.kind = kind
        self.name = name
        super().__init__(message or f'{kind} "{name}" not found')


class ConflictError(ValueError):
    """The request contradicts the object's state (e.g. changing a submitted job): 409."""
