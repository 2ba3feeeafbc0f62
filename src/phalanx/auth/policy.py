"""Who may call which route: a table keyed by method and route template, default-deny.

Every request passes ``rule_for(method, template)``. Routes listed in ``ROUTES`` get their
rule; any other route gets a safe default, so a route added without thinking is guarded:

- reads (GET, HEAD, OPTIONS) need ``viewer``, except paths with a private segment (logs,
  env, secrets, exec, audit, users, tokens), which need the object's owner or ``operator``;
- anything else (a mutation) needs ``operator``;
- under ``/api/v1/<plural>/{name}`` of a kind users own (Job, Service, Pipeline,
  PipelineRun, Secret), private reads and mutations need the object's owner or
  ``operator``.

Pure: no I/O. ``phalanx.api.authz`` applies the rules; ``phalanx.auth.admission`` checks
what an apply body may create.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from phalanx.auth.roles import Role

API = "/api/v1"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Path segments whose reads disclose more than status.
PRIVATE_SEGMENTS = frozenset(
    {"logs", "env", "secrets", "secret", "exec", "attach", "audit", "users", "tokens"}
)
#: Kinds a ``user`` may create; each object records its owner (``metadata.owner``).
USER_KINDS = frozenset({"Job", "Service", "Pipeline", "PipelineRun", "Secret"})


@dataclass(frozen=True, slots=True)
class Rule:
    """What a route needs. ``role``: the least role. ``is_open``: no token at all.
    ``kind``/``kind_param`` and ``name_param``: the route acts on one object (the kind fixed,
    or named by a path parameter) that only its owner, operators and admins may touch;
    objects of kinds users do not own need ``operator``."""

    role: Role = Role.VIEWER
    is_open: bool = False
    kind: str = ""
    kind_param: str = ""
    name_param: str = ""

    @property
    def is_owned(self) -> bool:
        return bool(self.name_param)


VIEWER = Rule(Role.VIEWER)
USER = Rule(Role.USER)
OPERATOR = Rule(Role.OPERATOR)
ADMIN = Rule(Role.ADMIN)
OPEN = Rule(Role.VIEWER, is_open=True)


def owned(kind: str = "", *, kind_param: str = "", name_param: str = "name") -> Rule:
    """The rule of a route acting on one object its owner may touch."""
    return Rule(Role.USER, kind=kind, kind_param=kind_param, name_param=name_param)


ROUTES: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/docs/oauth2-redirect"): OPEN,
    ("GET", "/openapi.json"): OPEN,
    # The web dashboard (phalanx.api.ui): its pages read through the API in-process with the
    # signed-in token, so the API's rules decide what they show; open here so that a
    # browser without a valid token is sent to the sign-in page rather than answered 401.
    ("GET", "/"): OPEN,
    ("GET", "/ui/login"): OPEN,
    ("POST", "/ui/login"): OPEN,
    ("POST", "/ui/logout"): OPEN,
    ("GET", "/ui/static/{name}"): OPEN,
    ("GET", "/ui/queues"): OPEN,
    ("GET", "/ui/jobs"): OPEN,
    ("GET", "/ui/jobs/{name}"): OPEN,
    ("GET", "/ui/nodes"): OPEN,
    ("GET", "/ui/reports"): OPEN,
    ("GET", "/ui/services"): OPEN,
    ("GET", "/ui/pipelineruns"): OPEN,
    ("GET", "/ui/pipelineruns/{name}"): OPEN,
    ("GET", "/ui/watch"): OPEN,
    ("GET", "/metrics"): VIEWER,
    ("POST", f"{API}/apply"): USER,  # what the body may create: phalanx.auth.admission
    ("POST", f"{API}/jobs/{{name}}/cancel"): owned("Job"),
    ("DELETE", f"{API}/jobs/{{name}}"): owned("Job"),
    ("GET", f"{API}/jobs/{{name}}/logs"): owned("Job"),
    ("DELETE", f"{API}/{{kind}}/{{name}}"): owned(kind_param="kind"),
    ("DELETE", f"{API}/queues/{{name}}"): OPERATOR,
    ("DELETE", f"{API}/flavors/{{name}}"): OPERATOR,
    ("POST", f"{API}/nodes/{{name}}/release"): OPERATOR,
    ("GET", f"{API}/audit"): OPERATOR,
    ("GET", f"{API}/whoami"): VIEWER,
    ("GET", f"{API}/users"): ADMIN,
    ("POST", f"{API}/users"): ADMIN,
    ("DELETE", f"{API}/users/{{name}}"): ADMIN,
    ("GET", f"{API}/tokens"): ADMIN,
    ("POST", f"{API}/tokens"): ADMIN,
    ("POST", f"{API}/tokens/{{token_id}}/revoke"): ADMIN,
}


def rule_for(
    method: str, template: str, kind_of_plural: Callable[[str], str | None] = lambda _: None
) -> Rule:
    """The rule for ``method`` on the route ``template`` (``/api/v1/jobs/{name}``): the
    table's, else the default described in the module docstring. ``kind_of_plural`` names the
    kind a path segment such as ``services`` stands for (None: no kind)."""
    method = method.upper()
    rule = ROUTES.get((method, template))
    if rule is not None:
        return rule
    if method == "HEAD":
        rule = ROUTES.get(("GET", template))
        if rule is not None:
            return rule
    segments = [s for s in template.split("/") if s]
    is_private = any(s in PRIVATE_SEGMENTS for s in segments)
    is_read = method in READ_METHODS
    api = [s for s in API.split("/") if s]
    if segments[: len(api)] == api and len(segments) > len(api) + 1:
        plural, name = segments[len(api)], segments[len(api) + 1]
        kind = kind_of_plural(plural)
        if kind in USER_KINDS and name.startswith("{") and name.endswith("}"):
            if is_read and not is_private:
                return VIEWER
            return owned(kind, name_param=name[1:-1])
    if is_read:
        return OPERATOR if is_private else VIEWER
    return OPERATOR
