"""``phalanx db``: the store's schema revision, and upgrading it without starting a server
(``phalanx up`` upgrades at start too)."""

from __future__ import annotations

from pathlib import Path

import typer

from phalanx.store import StoreError, open_store, schema


def run_db(action: str, store_url: str | None, directory: Path) -> None:
    """Show the store's schema revision (``current``) or upgrade it to this release's
    (``upgrade``); exit 1 with the cause when that fails."""
    if action not in ("current", "upgrade"):
        typer.echo(
            f"error: unknown db action {action!r}; use: phalanx db current|upgrade", err=True
        )
        raise typer.Exit(1)
    if store_url is None and not (directory / "phalanx.db").exists():
        typer.echo(
            f"error: no store in {directory} (no phalanx.db); pass --data-dir or --store-url",
            err=True,
        )
        raise typer.Exit(1)
    try:
        store = open_store(store_url, directory, migrate=False)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    try:
        if action == "current":
            revision = schema.current(store.engine)
            newest = schema.head()
            state = "up to date" if revision == newest else f"this release upgrades it to {newest}"
            typer.echo(f"{store.redacted_url}: revision {revision or '(empty)'} ({state})")
            return
        before, after = schema.upgrade(store.engine)
        if before == after:
            typer.echo(f"{store.redacted_url}: already at revision {after}")
        else:
            typer.echo(f"{store.redacted_url}: upgraded from {before or '(empty)'} to {after}")
    except Exception as exc:  # a failed revision rolls back; the user needs the cause
        typer.echo(f"error: upgrading {store.redacted_url} failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        store.close()
