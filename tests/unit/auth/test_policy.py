"""The route table: listed routes get their rule, and any other route a safe default."""

from __future__ import annotations

import pytest

from phalanx.auth import ROUTES, Principal, Role, rule_for
from phalanx.auth.policy import OPERATOR, VIEWER

KINDS = {"jobs": "Job", "services": "Service", "queues": "Queue", "secrets": "Secret"}


def kind_of(plural: str) -> str | None:
    return KINDS.get(plural)


@pytest.mark.parametrize(
    ("method", "template", "role", "is_owned"),
    [
        pytest.param("GET", "/api/v1/jobs", Role.VIEWER, False, id="list-jobs"),
        pytest.param("GET", "/api/v1/jobs/{name}/logs", Role.USER, True, id="logs-owner"),
        pytest.param("POST", "/api/v1/jobs/{name}/cancel", Role.USER, True, id="cancel-owner"),
        pytest.param("DELETE", "/api/v1/{kind}/{name}", Role.USER, True, id="delete-any"),
        pytest.param("POST", "/api/v1/apply", Role.USER, False, id="apply"),
        pytest.param("DELETE", "/api/v1/queues/{name}", Role.OPERATOR, False, id="queue"),
        pytest.param("POST", "/api/v1/nodes/{name}/release", Role.OPERATOR, False, id="node"),
        pytest.param("POST", "/api/v1/users", Role.ADMIN, False, id="users"),
        pytest.param("GET", "/api/v1/audit", Role.OPERATOR, False, id="audit"),
        # Not in the table: the defaults.
        pytest.param("GET", "/api/v1/routes", Role.VIEWER, False, id="new-read"),
        pytest.param("POST", "/api/v1/routes", Role.OPERATOR, False, id="new-write"),
        pytest.param("PUT", "/ui/anything", Role.OPERATOR, False, id="ui-write"),
        pytest.param("GET", "/ui/jobs/{name}/logs", Role.OPERATOR, False, id="ui-logs"),
        pytest.param("GET", "/api/v1/services/{name}", Role.VIEWER, False, id="service-read"),
        pytest.param("POST", "/api/v1/services/{name}/scale", Role.USER, True, id="service-owner"),
        pytest.param("GET", "/api/v1/secrets/{name}", Role.USER, True, id="secret-read"),
        pytest.param("GET", "/api/v1/queues/{name}/env", Role.OPERATOR, False, id="queue-env"),
        pytest.param("PATCH", "/api/v1/queues/{name}", Role.OPERATOR, False, id="queue-patch"),
    ],
)
def test_rules(method: str, template: str, role: Role, is_owned: bool) -> None:
    rule = rule_for(method, template, kind_of)
    assert (rule.role, rule.is_owned, rule.is_open) == (role, is_owned, False)


def test_only_docs_and_health_are_open() -> None:
    # The web UI's pages are open too: they call the API in-process with the browser's
    # token, so the API's rules decide what they show (phalanx.api.ui).
    open_routes = {
        t for (_, t), rule in ROUTES.items() if rule.is_open and not t.startswith("/ui/")
    }
    assert open_routes == {"/", "/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json"}
    assert not rule_for("GET", "/anything-else").is_open
    assert rule_for("HEAD", "/healthz").is_open


def test_unknown_mutations_need_operator() -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert rule_for(method, "/never/seen/{x}") == OPERATOR
    assert rule_for("GET", "/never/seen/{x}") == VIEWER


@pytest.mark.parametrize(
    ("role", "owner", "expected"),
    [
        (Role.USER, "alice", True),
        (Role.USER, "bob", False),
        (Role.USER, "", False),
        (Role.VIEWER, "alice", True),  # owns; routes still need USER for private reads
        (Role.OPERATOR, "bob", True),
        (Role.ADMIN, "", True),
    ],
)
def test_ownership(role: Role, owner: str, expected: bool) -> None:
    assert Principal("alice", role).owns(owner) is expected


def test_roles_parse_and_order() -> None:
    assert Role.parse("Operator") is Role.OPERATOR
    assert Role.ADMIN > Role.OPERATOR > Role.USER > Role.VIEWER
    with pytest.raises(ValueError, match="admin, operator, user, viewer"):
        Role.parse("root")
