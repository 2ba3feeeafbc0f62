"""What each role can and cannot do, through the real API: viewer, user, operator, admin;
queue access; owner-only cancel, delete and logs; env hidden from others."""

from __future__ import annotations

import time

import httpx
from authharness import ADMIN_TOKEN, SETUP, Site, job, wait_phase

QUEUE = SETUP[1]


def error(response: httpx.Response) -> str:
    body = response.json()
    return str(body["error"]["message"])


def env_values(body: dict[str, object]) -> list[str]:
    manifest = body["manifest"]
    assert isinstance(manifest, dict)
    # The stored form of env is a mapping of name to value.
    return [v for ps in manifest["spec"]["podSets"] for v in ps.get("env", {}).values()]


def test_viewer_reads_status_only(site: Site) -> None:
    with site.client(ADMIN_TOKEN) as admin:
        assert (
            admin.post("/api/v1/apply", json={"manifests": [job("a1", "shared")]}).status_code
            == 200
        )
    viewer = site.user("vera", "viewer")
    for path in ("/api/v1/jobs", "/api/v1/jobs/a1", "/api/v1/queues", "/api/v1/nodes", "/metrics"):
        assert viewer.get(path).status_code == 200, path
    assert env_values(viewer.get("/api/v1/jobs/a1").json()) == ["(hidden)"]
    assert env_values(viewer.get("/api/v1/jobs").json()[0]) == ["(hidden)"]
    refused = {
        "logs": viewer.get("/api/v1/jobs/a1/logs"),
        "apply": viewer.post("/api/v1/apply", json={"manifests": [job("v1", "shared")]}),
        "cancel": viewer.post("/api/v1/jobs/a1/cancel"),
        "delete": viewer.delete("/api/v1/jobs/a1"),
        "users": viewer.get("/api/v1/users"),
        "audit": viewer.get("/api/v1/audit"),
    }
    assert {k: r.status_code for k, r in refused.items()} == dict.fromkeys(refused, 403)
    assert "needs the user role or above; vera is a viewer" in error(refused["apply"])
    assert viewer.get("/api/v1/whoami").json()["role"] == "viewer"


def test_user_submits_to_allowed_queues_and_owns_its_jobs(site: Site) -> None:
    alice = site.user("alice", "user")
    bob = site.user("bob", "user")
    carol = site.user("carol", "user", ("ml",))
    ok = alice.post(
        "/api/v1/apply", json={"manifests": [job("al", "team-a", "print('alice out')")]}
    )
    assert ok.status_code == 200, ok.text
    assert carol.post("/api/v1/apply", json={"manifests": [job("ca", "team-a")]}).status_code == 200
    # Bob is neither listed nor in group ml: refused, told the queue and who may submit.
    refused = bob.post("/api/v1/apply", json={"manifests": [job("bo", "team-a")]})
    assert refused.status_code == 403
    assert error(refused).startswith(
        "queue team-a accepts jobs from users alice and groups ml; bob may not submit to it"
    )
    assert bob.get("/api/v1/jobs/bo").status_code == 404  # nothing was created
    assert bob.post("/api/v1/apply", json={"manifests": [job("bo", "shared")]}).status_code == 200

    record = wait_phase(alice, "al", ("Succeeded",))
    assert record["manifest"]["metadata"]["owner"] == "alice"  # type: ignore[index]
    assert env_values(record) == ["s3cret-value"]
    own_logs = alice.get("/api/v1/jobs/al/logs")
    assert own_logs.status_code == 200, own_logs.text
    assert "alice out" in own_logs.json()["data"]

    # Bob sees alice's job's status, not its env or logs, and cannot act on it.
    seen = bob.get("/api/v1/jobs/al")
    assert seen.status_code == 200 and seen.json()["phase"] == "Succeeded"
    assert env_values(seen.json()) == ["(hidden)"]
    listed = {j["name"]: env_values(j) for j in bob.get("/api/v1/jobs").json()}
    assert listed["al"] == ["(hidden)"] and listed["bo"] == ["s3cret-value"]
    logs = bob.get("/api/v1/jobs/al/logs")
    assert logs.status_code == 403
    assert error(logs) == (
        "Job al belongs to alice; only its owner, operators and admins may read it, not bob"
    )
    assert bob.post("/api/v1/jobs/al/cancel").status_code == 403
    assert bob.delete("/api/v1/jobs/al").status_code == 403
    assert bob.delete("/api/v1/job/al").status_code == 403  # the generic delete too
    # Nor take its name over by applying a job of that name.
    taken = bob.post("/api/v1/apply", json={"manifests": [job("al", "shared")]})
    assert taken.status_code == 403 and "belongs to alice" in error(taken)
    # A user does not run the cluster: queues, flavors and nodes are the operator's.
    queue = alice.post("/api/v1/apply", json={"manifests": [QUEUE]})
    assert queue.status_code == 403 and "needs the operator role" in error(queue)
    assert alice.delete("/api/v1/queues/shared").status_code == 403
    assert alice.post("/api/v1/nodes/node-0/release").status_code == 403
    # The owner may delete its own job.
    assert alice.delete("/api/v1/jobs/al").status_code == 204


def test_user_cannot_forge_the_owner(site: Site) -> None:
    bob = site.user("bob", "user")
    forged = job("fake", "shared")
    forged["metadata"] = {"name": "fake", "owner": "alice"}
    assert bob.post("/api/v1/apply", json={"manifests": [forged]}).status_code == 200
    assert bob.get("/api/v1/jobs/fake").json()["manifest"]["metadata"]["owner"] == "bob"


def test_operator_acts_on_every_job_but_not_on_users(site: Site) -> None:
    alice = site.user("alice", "user")
    olga = site.user("olga", "operator")
    code = "import time; print('started', flush=True); time.sleep(60)"
    assert (
        alice.post("/api/v1/apply", json={"manifests": [job("long", "team-a", code)]}).status_code
        == 200
    )
    # Operators submit anywhere, whatever the queue's access list says.
    assert olga.post("/api/v1/apply", json={"manifests": [job("op", "team-a")]}).status_code == 200
    wait_phase(olga, "long", ("Running",))
    assert env_values(olga.get("/api/v1/jobs/long").json()) == ["s3cret-value"]
    assert olga.get("/api/v1/jobs/long/logs").status_code == 200
    cancelled = olga.post("/api/v1/jobs/long/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert olga.post("/api/v1/apply", json={"manifests": [QUEUE]}).status_code == 200
    assert olga.get("/api/v1/audit").status_code == 200
    for response in (
        olga.get("/api/v1/users"),
        olga.post("/api/v1/users", json={"name": "eve", "role": "admin"}),
        olga.post("/api/v1/tokens", json={"user": "olga", "name": "more"}),
    ):
        assert response.status_code == 403
        assert "needs the admin role" in error(response)


def test_admin_manages_users_and_tokens(site: Site) -> None:
    with site.client(ADMIN_TOKEN) as admin:
        assert admin.get("/api/v1/whoami").json() == {
            "name": "admin",
            "role": "admin",
            "groups": [],
            "token_id": "",
        }
        created = admin.post(
            "/api/v1/users", json={"name": "dana", "role": "operator", "groups": ["ml"]}
        )
        assert created.json()["role"] == "operator"
        again = admin.post("/api/v1/users", json={"name": "dana", "role": "user"})
        assert again.status_code == 409
        bad = admin.post("/api/v1/users", json={"name": "x", "role": "root"})
        assert bad.status_code == 400 and "use one of admin, operator, user, viewer" in error(bad)
        made = admin.post("/api/v1/tokens", json={"user": "dana", "name": "ci"}).json()
        token = made["token"]
        listed = admin.get("/api/v1/tokens", params={"user": "dana"}).json()
        assert [t["id"] for t in listed] == [made["info"]["id"]]
        assert token not in str(listed)  # only ever shown at creation
        assert admin.get("/api/v1/users").json()[0]["name"] == "dana"
        with site.client(token) as dana:
            assert dana.get("/api/v1/whoami").json()["name"] == "dana"
            assert admin.delete("/api/v1/users/dana").status_code == 204
            assert dana.get("/api/v1/whoami").status_code == 401
        assert admin.delete("/api/v1/users/dana").status_code == 404


def test_a_route_added_later_is_guarded_by_default(site: Site) -> None:
    calls: list[str] = []

    def poke() -> dict[str, str]:
        calls.append("poked")
        return {"ok": "yes"}

    site.app.add_api_route("/api/v1/widgets/poke", poke, methods=["POST"])
    site.app.add_api_route("/api/v1/widgets", poke, methods=["GET"])
    alice = site.user("alice", "user")
    olga = site.user("olga", "operator")
    assert alice.post("/api/v1/widgets/poke").status_code == 403
    assert calls == []
    assert alice.get("/api/v1/widgets").status_code == 200
    assert olga.post("/api/v1/widgets/poke").status_code == 200
    with site.client(None) as anonymous:
        assert anonymous.get("/api/v1/widgets").status_code == 401
        assert anonymous.post("/api/v1/widgets/poke").status_code == 401
    assert calls == ["poked", "poked"]


def test_a_services_replicas_belong_to_the_services_owner(site: Site) -> None:
    alice = site.user("alice", "user")
    bob = site.user("bob", "user")
    service = {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "queue": "shared",
            "minReplicas": 1,
            "maxReplicas": 1,
            "template": {
                "command": ["python", "-c", "import time; print('replica up'); time.sleep(60)"],
                "resources": {"cpu": "100m", "memory": "64Mi"},
            },
        },
    }
    applied = alice.post("/api/v1/apply", json={"manifests": [service]})
    assert applied.status_code == 200, applied.text
    deadline = time.monotonic() + 30
    replicas: list[dict[str, object]] = []
    while not replicas:
        assert time.monotonic() < deadline, "no replica was created"
        replicas = alice.get(
            "/api/v1/jobs", params={"labelSelector": "phalanx.dev/service=web"}
        ).json()
        time.sleep(0.2)
    replica = str(replicas[0]["name"])
    assert replicas[0]["manifest"]["metadata"]["owner"] == "alice"  # type: ignore[index]
    assert alice.get(f"/api/v1/jobs/{replica}/logs").status_code == 200
    assert bob.get(f"/api/v1/jobs/{replica}/logs").status_code == 403
    with site.client(ADMIN_TOKEN) as admin:
        assert admin.delete("/api/v1/services/web").status_code in (200, 204)
