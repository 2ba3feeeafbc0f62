"""Users, their hashed tokens and the audit log, in the store's database (revision 0003).

A thin layer over ``Store``'s engine and write transaction: the auth package decides who may
do what; this module only reads and writes rows. Must not import controllers or auth.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select, update

from phalanx.store import dbapi
from phalanx.store.records import AuditRecord, TokenRecord, UserRecord
from phalanx.store.sql import Store
from phalanx.store.tables import AuditRow, TokenRow, UserRow


def _user(row: UserRow) -> UserRecord:
    return UserRecord(row.name, row.role, tuple(str(g) for g in row.groups), row.created_at)


def _token(row: TokenRow) -> TokenRecord:
    return TokenRecord(
        row.id, row.user, row.name, row.digest, row.created_at, row.expires_at, row.revoked_at
    )


def _audit(row: AuditRow) -> AuditRecord:
    return AuditRecord(
        row.at, row.user, row.action, row.kind, row.name, row.status, row.detail, row.id
    )


class IdentityStore:
    """Rows of users, tokens and audit records in ``store``'s database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- users ----

    def create_user(self, user: UserRecord) -> None:
        """Add ``user``; raise ValueError when a user of that name exists."""
        with self.store._txn() as s:
            if s.get(UserRow, user.name) is not None:
                raise ValueError(f"user {user.name!r} exists")
            s.add(
                UserRow(
                    name=user.name,
                    role=user.role,
                    groups=list(user.groups),
                    created_at=user.created_at,
                )
            )

    def get_user(self, name: str) -> UserRecord | None:
        with self.store._sessions() as s:
            row = s.get(UserRow, name)
            return _user(row) if row else None

    def list_users(self) -> list[UserRecord]:
        with self.store._sessions() as s:
            return [_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.name))]

    def delete_user(self, name: str) -> bool:
        """Delete the user and every token of theirs; return whether the user existed."""
        with self.store._txn() as s:
            s.execute(delete(TokenRow).where(TokenRow.user == name))
            row = s.get(UserRow, name)
            if row is None:
                return False
            s.delete(row)
            return True

    # ---- tokens ----

    def add_token(self, token: TokenRecord) -> None:
        """Add ``token``; raise ValueError when its user does not exist."""
        with self.store._txn() as s:
            if s.get(UserRow, token.user) is None:
                raise ValueError(f"user {token.user!r} does not exist")
            s.add(
                TokenRow(
                    id=token.id,
                    user=token.user,
                    name=token.name,
                    digest=token.digest,
                    created_at=token.created_at,
                    expires_at=token.expires_at,
                    revoked_at=token.revoked_at,
                )
            )

    def list_tokens(self, user: str | None = None) -> list[TokenRecord]:
        with self.store._sessions() as s:
            query = select(TokenRow).order_by(TokenRow.user, TokenRow.created_at)
            if user is not None:
                query = query.where(TokenRow.user == user)
            return [_token(r) for r in s.scalars(query)]

    def token_by_digest(self, digest: str) -> tuple[TokenRecord, UserRecord] | None:
        """The token whose digest is ``digest`` and its user, or None."""
        with self.store._sessions() as s:
            row = s.execute(
                select(TokenRow, UserRow)
                .join(UserRow, UserRow.name == TokenRow.user)
                .where(TokenRow.digest == digest)
            ).first()
            return (_token(row[0]), _user(row[1])) if row else None

    def revoke_token(self, token_id: str, now: float) -> TokenRecord | None:
        """Mark the token revoked (once); return it, or None when there is no such token."""
        with self.store._txn() as s:
            s.execute(
                update(TokenRow)
                .where(TokenRow.id == token_id, TokenRow.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            row = s.get(TokenRow, token_id)
            return _token(row) if row else None

    # ---- audit ----

    def record_audit(self, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        if self.store._writes_through_dbapi:
            self._record_audit_through_dbapi(records)
            return
        # One INSERT for the batch (executemany), not an ORM object and flush per record: a
        # batch of 500 applied jobs writes 500 records.
        with self.store._txn() as s:
            s.execute(
                insert(AuditRow),
                [
                    {
                        "at": r.at,
                        "user": r.user,
                        "action": r.action[:300],
                        "kind": r.kind[:32],
                        "name": r.name[:253],
                        "status": r.status,
                        "detail": r.detail[:2000],
                    }
                    for r in records
                ],
            )

    def _record_audit_through_dbapi(self, records: Sequence[AuditRecord]) -> None:
        """``record_audit`` on SQLite, as the store writes new jobs (store/dbapi.py): one
        executemany on a pooled driver connection, without SQLAlchemy's parameter handling
        (about 25 µs a record through Core, a few through the cursor)."""
        values = [
            (r.at, r.user, r.action[:300], r.kind[:32], r.name[:253], r.status, r.detail[:2000])
            for r in records
        ]
        with self.store._driver_write() as cursor:
            dbapi.insert_audit(cursor, values)

    def audit(
        self,
        *,
        user: str | None = None,
        kind: str | None = None,
        name: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        """Audit records matching every filter given, oldest first, at most ``limit`` (the
        newest ones when there are more)."""
        query = select(AuditRow)
        if user is not None:
            query = query.where(AuditRow.user == user)
        if kind is not None:
            query = query.where(AuditRow.kind == kind)
        if name is not None:
            query = query.where(AuditRow.name == name)
        if since is not None:
            query = query.where(AuditRow.at >= since)
        if until is not None:
            query = query.where(AuditRow.at <= until)
        with self.store._sessions() as s:
            rows = list(s.scalars(query.order_by(AuditRow.id.desc()).limit(limit)))
        return [_audit(r) for r in reversed(rows)]
