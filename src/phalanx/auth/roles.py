"""Roles and principals: who is calling, and what each role may do at most. Pure: imports
nothing effectful."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Role(IntEnum):
    """The roles, ordered: each may do what the ones below it may.

    - ``viewer``: reads status (jobs, queues, nodes, …), never logs, env or secrets;
    - ``user``: submits to the queues it may use; full access to its own jobs, services and
      pipeline runs; status only of others';
    - ``operator``: nodes, queues, flavors and every user's objects;
    - ``admin``: everything, including users, tokens and the audit log.
    """

    VIEWER = 1
    USER = 2
    OPERATOR = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named ``text``; ValueError naming the roles when there is none."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(
                f"unknown role {text!r}; use one of {', '.join(r.label for r in ROLES)}"
            ) from None


ROLES = (Role.ADMIN, Role.OPERATOR, Role.USER, Role.VIEWER)

#: The principal of the bootstrap token in ``<data_dir>/token`` (an admin).
BOOTSTRAP_USER = "admin"
#: The principal of a server running without a token (tests, embedded use): an admin.
ANONYMOUS_USER = "anonymous"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request: a user's name, role and groups, and the token used."""

    name: str
    role: Role
    groups: frozenset[str] = frozenset()
    token_id: str = ""

    def is_at_least(self, role: Role) -> bool:
        return self.role >= role

    @property
    def is_privileged(self) -> bool:
        """Operators and admins act on every user's objects."""
        return self.role >= Role.OPERATOR

    def owns(self, owner: str | None) -> bool:
        """Whether this principal may act on an object owned by ``owner`` as its owner:
        operators and admins on anything; others on what names them."""
        return self.is_privileged or (bool(owner) and owner == self.name)
