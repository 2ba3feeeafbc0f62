"""The errors of the auth package; the API turns them into 401 and 403 answers."""

from __future__ import annotations


class UnauthenticatedError(PermissionError):
    """No token, or one that is unknown, expired or revoked (HTTP 401)."""


class AccessDeniedError(PermissionError):
    """The caller is known but may not do this (HTTP 403). The message says who may."""
