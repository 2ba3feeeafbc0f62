"""``phalanx get secrets`` and ``phalanx describe secret``: keys and sizes, never values (the
API masks them; nothing here could show one)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import typer

from phalanx.api.schemas import SecretInfo
from phalanx.cli.tables import format_age, render_table
from phalanx.client import Client


def _keys(secret: SecretInfo) -> Mapping[str, Any]:
    data = secret["spec"].get("data")
    return data if isinstance(data, Mapping) else {}


def _created(secret: SecretInfo) -> float | None:
    created = secret["metadata"].get("creationTimestamp")
    if isinstance(created, (int, float)):
        return float(created)
    return None


def secrets_table(items: list[SecretInfo], now: float) -> str:
    """NAME, TYPE, KEYS, AGE (kubectl's columns for secrets)."""
    rows = []
    for secret in items:
        created = _created(secret)
        rows.append(
            [
                secret["name"],
                str(secret["spec"].get("type", "Opaque")),
                str(len(_keys(secret))),
                format_age(now - created) if created is not None else "-",
            ]
        )
    return render_table(["NAME", "TYPE", "KEYS", "AGE"], rows)


def describe_secret(secret: SecretInfo) -> str:
    """A Secret in full, as kubectl describes one: metadata, type, and each key's size."""
    metadata = secret["metadata"]
    labels = metadata.get("labels")
    shown_labels = (
        ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        if isinstance(labels, Mapping)
        else ""
    )
    lines = [
        f"Name:         {secret['name']}",
        f"Labels:       {shown_labels or '<none>'}",
        f"Owner:        {metadata.get('owner') or '<none>'}",
        f"Type:         {secret['spec'].get('type', 'Opaque')}",
        "",
        "Data",
        "====",
    ]
    keys = _keys(secret)
    lines += [f"{key}:  {shown}" for key, shown in sorted(keys.items())] or ["<no keys>"]
    return "\n".join(lines)


def print_secrets(
    client: Client, name: str | None, emit: Callable[[object], None] | None = None
) -> None:
    """``phalanx get secrets [NAME]``: a table, or (``emit``) the API's masked JSON/YAML."""
    items = [client.secret(name)] if name else client.secrets()
    if emit is not None:
        emit(items[0] if name else items)
        return
    if not items:
        typer.echo("No secrets.", err=True)
        return
    typer.echo(secrets_table(items, time.time()))
