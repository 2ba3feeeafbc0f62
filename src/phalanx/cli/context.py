"""What sub-command modules share: the client the root command's global options build."""

from __future__ import annotations

from typing import Protocol

import typer

from phalanx.client import Client


class _Globals(Protocol):
    def client(self) -> Client: ...


def client_of(ctx: typer.Context) -> Client:
    """The client for ``--server``/``--data-dir`` given to the root command (a default one
    when the command runs without it, as in tests that call a sub-app directly)."""
    obj = ctx.find_root().obj
    if obj is None or not hasattr(obj, "client"):
        return Client()
    globals_: _Globals = obj
    return globals_.client()
