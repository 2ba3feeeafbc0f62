"""Identity and authorization: users, roles, hashed tokens, queue rights, object ownership
and the audit log.

Layering: api → auth → (controllers | store) → model. The route table (``policy``) and the
roles are pure; ``identity``, ``admission`` and ``audit`` read and write the store.
"""

from phalanx.auth.admission import (
    admit_apply,
    check_owner,
    check_queue_access,
    kind_name,
    stored_jobs,
)
from phalanx.auth.audit import AuditLog
from phalanx.auth.errors import AccessDeniedError, UnauthenticatedError
from phalanx.auth.identity import Identity
from phalanx.auth.policy import ROUTES, USER_KINDS, Rule, rule_for
from phalanx.auth.roles import BOOTSTRAP_USER, ROLES, Principal, Role

__all__ = [
    "BOOTSTRAP_USER",
    "ROLES",
    "ROUTES",
    "USER_KINDS",
    "AccessDeniedError",
    "AuditLog",
    "Identity",
    "Principal",
    "Role",
    "Rule",
    "UnauthenticatedError",
    "admit_apply",
    "check_owner",
    "check_queue_access",
    "kind_name",
    "rule_for",
    "stored_jobs",
]
