"""Who is calling: tokens to principals, and the admin's operations on users and tokens.

``Identity.principal(token)`` answers from a cache of verified digests (a dict look-up and
one SHA-256 on the hot path) and reads the store only on a miss; ``revoke_token`` and
``delete_user`` drop the cache so a revoked token is refused at once by this server (other
servers sharing the store see it within ``cache_ttl_s``). An expired token is refused from
the cache as well. The bootstrap token in ``<data_dir>/token`` is the admin ``admin``.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from phalanx.auth.errors import AccessDeniedError, UnauthenticatedError
from phalanx.auth.roles import ANONYMOUS_USER, BOOTSTRAP_USER, Principal, Role
from phalanx.auth.tokens import new_token, token_digest
from phalanx.store import IdentityStore, TokenRecord, UserRecord

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9_.@]{0,61}[a-z0-9])?$")


def check_name(what: str, name: str) -> str:
    """``name`` when it is a valid user, group or token name; ValueError naming the rule."""
    if not _NAME.match(name):
        raise ValueError(
            f"{what} {name!r} is not a valid name: 1-63 lowercase letters, digits, '-', '_', "
            "'.' or '@', starting and ending with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    expires_at: float | None
    checked_at: float


class Identity:
    """Users and tokens in ``store`` (None: no users, only the bootstrap token), and the
    bootstrap admin ``token`` (None: authentication is off and every caller is an admin)."""

    def __init__(
        self,
        store: IdentityStore | None,
        token: str | None,
        *,
        clock: Callable[[], float] = time.time,
        cache_ttl_s: float = 5.0,
    ) -> None:
        self.store = store
        self._bootstrap = token.encode() if token is not None else None
        self._clock = clock
        self._ttl_s = cache_ttl_s
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    @property
    def is_enabled(self) -> bool:
        """Whether requests need a token."""
        return self._bootstrap is not None

    def anonymous(self) -> Principal:
        """The caller when authentication is off."""
        return Principal(ANONYMOUS_USER, Role.ADMIN)

    def cached_principal(self, token: str) -> Principal | None:
        """The principal of ``token`` if it is the bootstrap token or a recently verified one
        that has not expired; None when the store must be asked (``principal``)."""
        if self._bootstrap is not None and hmac.compare_digest(token.encode(), self._bootstrap):
            return Principal(BOOTSTRAP_USER, Role.ADMIN)
        hit = self._cache.get(token_digest(token))
        if hit is None:
            return None
        now = self._clock()
        if now - hit.checked_at > self._ttl_s or (
            hit.expires_at is not None and now >= hit.expires_at
        ):
            return None
        return hit.principal

    def principal(self, token: str) -> Principal:
        """The principal of ``token``. Raises UnauthenticatedError for an unknown, expired or
        revoked token (the message says which and what to do). Reads the store on a miss."""
        cached = self.cached_principal(token)
        if cached is not None:
            return cached
        digest = token_digest(token)
        found = self.store.token_by_digest(digest) if self.store is not None else None
        if found is None:
            self._cache.pop(digest, None)
            raise UnauthenticatedError(
                "invalid bearer token: use a token from `phalanx token create` or the server's "
                "<data_dir>/token"
            )
        record, user = found
        now = self._clock()
        if record.revoked_at is not None:
            raise UnauthenticatedError(
                f"token {record.id} ({record.name}) of user {record.user} was revoked; ask an "
                "admin for a new one (`phalanx token create`)"
            )
        if record.expires_at is not None and now >= record.expires_at:
            raise UnauthenticatedError(
                f"token {record.id} ({record.name}) of user {record.user} expired at "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(record.expires_at))}; ask "
                "an admin for a new one (`phalanx token create`)"
            )
        principal = Principal(user.name, Role.parse(user.role), frozenset(user.groups), record.id)
        with self._lock:
            self._cache[digest] = _Cached(principal, record.expires_at, now)
        return principal

    def forget(self) -> None:
        """Drop every cached token (after a revocation or a user's deletion)."""
        with self._lock:
            self._cache.clear()

    # ---- the admin's operations ----

    def _rows(self) -> IdentityStore:
        if self.store is None:
            raise AccessDeniedError("this server keeps no users: it runs without a store of them")
        return self.store

    def create_user(self, name: str, role: str, groups: tuple[str, ...] = ()) -> UserRecord:
        """Create a user. ValueError for a bad name or role, or a user that exists."""
        check_name("user", name)
        if name in (BOOTSTRAP_USER, ANONYMOUS_USER):
            raise ValueError(f"user name {name!r} is reserved; choose another")
        for group in groups:
            check_name("group", group)
        user = UserRecord(name, Role.parse(role).label, tuple(sorted(set(groups))), self._clock())
        self._rows().create_user(user)
        return user

    def delete_user(self, name: str) -> bool:
        """Delete the user and revoke every token of theirs; return whether it existed."""
        existed = self._rows().delete_user(name)
        self.forget()
        return existed

    def create_token(
        self, user: str, name: str, expires_in_s: float | None
    ) -> tuple[TokenRecord, str]:
        """A new token of ``user`` (valid for ``expires_in_s`` seconds, None: until revoked)
        and the token itself, which is not kept. ValueError for an unknown user."""
        check_name("token", name)
        token_id, token = new_token()
        now = self._clock()
        record = TokenRecord(
            token_id,
            user,
            name,
            token_digest(token),
            now,
            None if expires_in_s is None else now + expires_in_s,
            None,
        )
        self._rows().add_token(record)
        return record, token

    def revoke_token(self, token_id: str) -> TokenRecord | None:
        """Revoke the token; return it (None when there is no such token)."""
        record = self._rows().revoke_token(token_id, self._clock())
        self.forget()
        return record
