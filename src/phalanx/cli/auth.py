"""Commands for users, tokens and the audit log: ``phalanx user create|list|delete``,
``phalanx token create|list|revoke`` and ``phalanx audit``. They work through the API
(admins; ``audit`` operators too), so they run wherever the client reaches the server.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer

from phalanx.cli.context import client_of
from phalanx.client import ApiError, ClientError

user_app = typer.Typer(
    name="user", help="Users and their roles (admin only).", no_args_is_help=True
)
token_app = typer.Typer(
    name="token", help="API tokens of users (admin only).", no_args_is_help=True
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@contextmanager
def _reported() -> Iterator[None]:
    try:
        yield
    except ApiError as exc:
        _fail(exc.message)
    except ClientError as exc:
        _fail(str(exc))


def _when(epoch: float | None, never: str = "never") -> str:
    if epoch is None:
        return never
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        typer.echo("   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user's name, e.g. alice.")],
    role: Annotated[str, typer.Option("--role", help="admin, operator, user or viewer.")] = "user",
    group: Annotated[
        list[str] | None,
        typer.Option("--group", help="A group (queue access may name it); repeatable."),
    ] = None,
) -> None:
    """Create a user; then give them a token with `phalanx token create USER`."""
    with _reported(), client_of(ctx) as client:
        user = client.create_user(name, role, group or ())
    groups = f" (groups {', '.join(user['groups'])})" if user["groups"] else ""
    typer.echo(f"user {user['name']} created, role {user['role']}{groups}")


@user_app.command("list")
def user_list(ctx: typer.Context) -> None:
    """List users with role and groups."""
    with _reported(), client_of(ctx) as client:
        users = client.users()
    _table(
        ["NAME", "ROLE", "GROUPS", "CREATED"],
        [
            [u["name"], u["role"], ",".join(u["groups"]) or "-", _when(u["created_at"])]
            for u in users
        ],
    )


@user_app.command("delete")
def user_delete(ctx: typer.Context, name: str) -> None:
    """Delete a user; every token of theirs stops working at once."""
    with _reported(), client_of(ctx) as client:
        client.delete_user(name)
    typer.echo(f"user {name} deleted")


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="Whose token.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for.")] = "default",
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="Lifetime, e.g. 30d, 12h; default: until revoked."),
    ] = None,
) -> None:
    """Create a token and print it: it is shown this once (the server keeps only a hash)."""
    from phalanx.auth.tokens import parse_duration_text

    expires_in_s = None
    if expires is not None:
        try:
            expires_in_s = parse_duration_text(expires)
        except ValueError as exc:
            _fail(f"--expires: {exc}")
    with _reported(), client_of(ctx) as client:
        created = client.create_token(user, name, expires_in_s)
    info = created["info"]
    typer.echo(created["token"])
    typer.echo(
        f"token {info['id']} ({info['name']}) of {info['user']}, expires "
        f"{_when(info['expires_at'])}: shown once; pass it with --token or PHALANX_TOKEN",
        err=True,
    )


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's.")] = None,
) -> None:
    """List tokens (never the tokens themselves)."""
    with _reported(), client_of(ctx) as client:
        tokens = client.tokens(user)
    rows = []
    for t in tokens:
        state = "active" if t["is_active"] else ("revoked" if t["revoked_at"] else "expired")
        rows.append(
            [t["id"], t["user"], t["name"], state, _when(t["created_at"]), _when(t["expires_at"])]
        )
    _table(["ID", "USER", "NAME", "STATE", "CREATED", "EXPIRES"], rows)


@token_app.command("revoke")
def token_revoke(
    ctx: typer.Context, token_id: Annotated[str, typer.Argument(metavar="ID")]
) -> None:
    """Revoke a token (its ID from `phalanx token list`); it is refused at once."""
    with _reported(), client_of(ctx) as client:
        info = client.revoke_token(token_id)
    typer.echo(f"token {info['id']} ({info['name']}) of {info['user']} revoked")


def parse_time(text: str) -> float:
    """Epoch seconds of ``2026-11-30``, ``2026-11-30T12:00:00`` (UTC) or a duration back
    from now (``2h``, ``30m``, ``7d``); ValueError naming the forms otherwise."""
    from phalanx.auth.tokens import parse_duration_text

    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return float(calendar.timegm(time.strptime(text, fmt)))
        except ValueError:
            continue
    try:
        return time.time() - parse_duration_text(text)
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a time; use 2026-11-30, 2026-11-30T12:00:00 (UTC) or "
            "a time back from now such as 2h or 7d"
        ) from None


def audit(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's calls.")] = None,
    object_: Annotated[
        str | None,
        typer.Option("--object", help="Only calls on this object: KIND/NAME or NAME."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From: 2026-11-30T12:00:00 (UTC) or 2h ago.")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Up to, as --since.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 100,
) -> None:
    """Show who changed what: every mutating API call, oldest first (operators, admins)."""
    kind = name = None
    if object_:
        kind_text, _, name = object_.rpartition("/")
        if kind_text:
            from phalanx.kinds import UnknownKindError, lookup

            try:
                kind = lookup(kind_text).name
            except UnknownKindError as exc:
                _fail(f"--object: {exc}")
    try:
        start = parse_time(since) if since else None
        end = parse_time(until) if until else None
    except ValueError as exc:
        _fail(str(exc))
    with _reported(), client_of(ctx) as client:
        records = client.audit(
            user=user, kind=kind, name=name or None, since=start, until=end, limit=limit
        )
    _table(
        ["TIME", "USER", "ACTION", "OBJECT", "STATUS"],
        [
            [
                r["at_iso"],
                r["user"],
                r["action"],
                f"{r['kind']}/{r['name']}" if r["kind"] else r["name"] or "-",
                str(r["status"]),
            ]
            for r in records
        ],
    )
