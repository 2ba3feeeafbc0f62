"""job_manifests: each trace job's manifest as job_manifest builds it, also where a copy of
an alike job's manifest is reused."""

from dataclasses import replace

from simjobs import job

from phalanx.simulation.full import job_manifest, job_manifests


def test_alike_jobs_get_their_own_name_user_and_manifest() -> None:
    a = job("a", 1000)
    jobs = [
        a,
        replace(a, name="b", user="alice"),  # alike, with a user: labels
        replace(a, name="c"),  # alike, no user: no labels
        replace(a, name="d", user="bob"),
        job("e", 500, priority=3),
        job("f", 1000, queue="other"),
        job("g", 1000, replicas=2),
        replace(a, name="h", user="alice"),
    ]
    manifests = job_manifests(jobs)
    assert manifests == [job_manifest(j) for j in jobs]
    assert [m["metadata"] for m in manifests][:4] == [
        {"name": "a"},
        {"name": "b", "labels": {"sim.phalanx.dev/user": "alice"}},
        {"name": "c"},
        {"name": "d", "labels": {"sim.phalanx.dev/user": "bob"}},
    ]
    # Copies: changing one leaves the others as they were.
    spec = manifests[2]["spec"]
    assert isinstance(spec, dict)
    spec["priority"] = 99
    assert manifests[0] == job_manifest(jobs[0])
