"""Tokens expire and are revoked at once; every mutating call is in the audit log;
``/healthz`` tells strangers only the status."""

from __future__ import annotations

import time

from authharness import ADMIN_TOKEN, Site, job


def test_token_expires(site: Site) -> None:
    with site.client(ADMIN_TOKEN) as admin:
        admin.post("/api/v1/users", json={"name": "tim", "role": "user"})
        made = admin.post(
            "/api/v1/tokens", json={"user": "tim", "name": "short", "expires_in_s": 60}
        )
        assert made.status_code == 201
        token = made.json()["token"]
        for bad in (0, -1, 1e12):
            refused = admin.post(
                "/api/v1/tokens", json={"user": "tim", "name": "x", "expires_in_s": bad}
            )
            assert refused.status_code == 400, bad
    with site.client(token) as tim:
        assert tim.get("/api/v1/whoami").status_code == 200  # now cached
        site.clock.now += 61
        expired = tim.get("/api/v1/whoami")
        assert expired.status_code == 401
        assert "expired at" in expired.json()["error"]["message"]
        assert expired.headers["www-authenticate"] == "Bearer"


def test_revoked_token_is_refused_at_once(site: Site) -> None:
    with site.client(ADMIN_TOKEN) as admin:
        admin.post("/api/v1/users", json={"name": "rob", "role": "user"})
        made = admin.post("/api/v1/tokens", json={"user": "rob", "name": "laptop"}).json()
        with site.client(made["token"]) as rob:
            assert rob.get("/api/v1/jobs").status_code == 200  # verified and cached
            revoked = admin.post(f"/api/v1/tokens/{made['info']['id']}/revoke")
            assert revoked.status_code == 200 and revoked.json()["is_active"] is False
            refused = rob.get("/api/v1/jobs")
            assert refused.status_code == 401
            assert "was revoked" in refused.json()["error"]["message"]
        assert admin.post("/api/v1/tokens/nope/revoke").status_code == 404
    with site.client("phx_0000_not-a-token") as stranger:
        assert stranger.get("/api/v1/jobs").status_code == 401


def test_store_keeps_only_the_digest(site: Site) -> None:
    with site.client(ADMIN_TOKEN) as admin:
        admin.post("/api/v1/users", json={"name": "dee", "role": "viewer"})
        token = admin.post("/api/v1/tokens", json={"user": "dee", "name": "t"}).json()["token"]
    engine = site.plane.store.engine
    with engine.connect() as conn:
        rows = [tuple(map(str, r)) for r in conn.exec_driver_sql("SELECT * FROM tokens")]
    assert rows and all(token not in value for row in rows for value in row)


def test_mutating_calls_are_audited(site: Site) -> None:
    alice = site.user("alice", "user")
    bob = site.user("bob", "user")
    start = time.time() - 1
    assert (
        alice.post("/api/v1/apply", json={"manifests": [job("aud", "team-a")]}).status_code == 200
    )
    assert bob.post("/api/v1/jobs/aud/cancel").status_code == 403
    assert bob.post("/api/v1/apply", json={"manifests": [job("bb", "team-a")]}).status_code == 403
    alice.get("/api/v1/jobs")  # reads are not audited
    assert alice.post("/api/v1/jobs/aud/cancel").status_code == 200
    with site.client(ADMIN_TOKEN) as admin:
        records = admin.get("/api/v1/audit", params={"since": start}).json()
        mine = [
            (r["user"], r["action"], r["kind"], r["name"], r["status"])
            for r in records
            if r["user"] in ("alice", "bob")
        ]
        assert mine == [
            ("alice", "POST /api/v1/apply", "Job", "aud", 200),
            ("bob", "POST /api/v1/jobs/{name}/cancel", "Job", "aud", 403),
            ("bob", "POST /api/v1/apply", "Job", "bb", 403),
            ("alice", "POST /api/v1/jobs/{name}/cancel", "Job", "aud", 200),
        ]
        assert all(r["at"] >= start for r in records)
        only_bob = admin.get("/api/v1/audit", params={"user": "bob"}).json()
        assert {r["user"] for r in only_bob} == {"bob"} and len(only_bob) == 2
        by_object = admin.get("/api/v1/audit", params={"kind": "Job", "name": "bb"}).json()
        assert [r["user"] for r in by_object] == ["bob"]
        # The admin's own calls are there too (made before ``start``).
        everything = admin.get("/api/v1/audit").json()
        assert ("admin", "POST /api/v1/users", "User", "alice", 201) in [
            (r["user"], r["action"], r["kind"], r["name"], r["status"]) for r in everything
        ]
        future = admin.get("/api/v1/audit", params={"since": time.time() + 3600}).json()
        assert future == []


def test_healthz_tells_strangers_only_the_status(site: Site) -> None:
    with site.client(None) as stranger:
        assert stranger.get("/healthz").json() == {"status": "ok"}
    with site.client("wrong") as wrong:
        assert wrong.get("/healthz").json() == {"status": "ok"}
    with site.client(ADMIN_TOKEN) as admin:
        full = admin.get("/healthz").json()
        assert full["status"] == "ok" and "pid" in full and "version" in full
