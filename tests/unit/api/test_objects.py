"""Objects through the registry: metadata on every object, the kinds list, generic delete,
label selectors, pages of jobs, and many manifests in one apply."""

from __future__ import annotations

import copy
from collections.abc import Callable

import httpx
import pytest

from phalanx.client import Client

Manifest = dict[str, object]
MakeJob = Callable[..., Manifest]
YAML = {"Content-Type": "application/yaml"}


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    return body["error"]  # type: ignore[no-any-return]


def labelled(manifest: Manifest, **labels: str) -> Manifest:
    out = copy.deepcopy(manifest)
    out["metadata"] = {**out["metadata"], "labels": labels}  # type: ignore[dict-item]
    return out


def queue(name: str, gpus: int = 4, **labels: str) -> Manifest:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Queue",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "flavors": [
                {
                    "name": "default",
                    "resources": {"cpu": 2, "memory": "4Gi", "nvidia.com/gpu": gpus},
                }
            ]
        },
    }


def flavor(name: str, **labels: str) -> Manifest:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "ResourceFlavor",
        "metadata": {"name": name, "labels": labels},
    }


def apply(http: httpx.Client, *manifests: Manifest) -> list[dict[str, object]]:
    response = http.post("/api/v1/apply", json={"manifests": list(manifests)})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def parked(make_job: MakeJob, name: str, **labels: str) -> Manifest:
    """A job in a queue that does not exist: accepted, never started (no process)."""
    return labelled(make_job(name, "pass", queue="nowhere"), **labels)


# -- metadata -----------------------------------------------------------------------------


def test_metadata_round_trips_on_jobs(http: httpx.Client, make_job: MakeJob) -> None:
    job = parked(make_job, "train", team="a")
    job["metadata"]["annotations"] = {"example.com/note": "first run"}  # type: ignore[index]
    job["metadata"]["ownerReferences"] = [{"kind": "Queue", "name": "team-a"}]  # type: ignore[index]
    apply(http, job)

    got = http.get("/api/v1/jobs/train").json()
    metadata = got["metadata"]
    assert metadata["name"] == "train"
    assert metadata["labels"] == {"team": "a"}
    assert metadata["annotations"] == {"example.com/note": "first run"}
    assert metadata["ownerReferences"] == [{"kind": "Queue", "name": "team-a", "uid": ""}]
    assert len(metadata["uid"]) >= 32
    assert metadata["generation"] == 1
    assert metadata["creationTimestamp"].endswith("Z")
    assert metadata["creationTimestamp"] == got["created_at_iso"]
    listed = http.get("/api/v1/jobs").json()[0]["metadata"]
    # The loop may have written the job (its pending reason) in between: only the version moves.
    assert listed["resourceVersion"] >= metadata["resourceVersion"]
    assert {**listed, "resourceVersion": 0} == {**metadata, "resourceVersion": 0}

    cancelled = http.post("/api/v1/jobs/train/cancel").json()
    assert cancelled["metadata"]["resourceVersion"] > metadata["resourceVersion"]
    assert cancelled["metadata"]["uid"] == metadata["uid"]
    assert cancelled["metadata"]["generation"] == 1  # a job's spec never changes


def test_a_queue_spec_change_bumps_its_generation(http: httpx.Client) -> None:
    apply(http, flavor("default"), queue("team-a", team="a"))
    first = http.get("/api/v1/queues/team-a").json()["metadata"]
    assert (first["generation"], first["labels"]) == (1, {"team": "a"})

    assert apply(http, queue("team-a", team="a"))[0]["action"] == "unchanged"
    assert http.get("/api/v1/queues/team-a").json()["metadata"] == first

    apply(http, queue("team-a", team="b"))  # metadata only: same generation
    relabelled = http.get("/api/v1/queues/team-a").json()["metadata"]
    assert relabelled["labels"] == {"team": "b"}
    assert relabelled["resourceVersion"] > first["resourceVersion"]
    assert relabelled["generation"] == 1

    apply(http, queue("team-a", gpus=8, team="b"))  # the spec: a new generation
    resized = http.get("/api/v1/queues/team-a").json()
    assert resized["nominal"]["nvidia.com/gpu"] == "8"
    assert resized["metadata"]["generation"] == 2
    assert resized["metadata"]["resourceVersion"] > relabelled["resourceVersion"]
    assert resized["metadata"]["uid"] == first["uid"]


def test_flavors_carry_metadata_and_are_served_one_by_one(http: httpx.Client) -> None:
    apply(http, flavor("h100", gpu="h100"))
    one = http.get("/api/v1/flavors/h100").json()
    assert one["metadata"]["labels"] == {"gpu": "h100"}
    assert http.get("/api/v1/flavors").json() == [one]
    missing = http.get("/api/v1/flavors/nope")
    assert missing.status_code == 404
    assert error_of(missing)["message"] == 'resourceflavor "nope" not found'


# -- the registry -------------------------------------------------------------------------


def test_kinds_lists_every_name_each_kind_answers_to(http: httpx.Client) -> None:
    found = {k["name"]: k for k in http.get("/api/v1/kinds").json()}
    # the built-in kinds, and those later layers add (Service, Secret, Pipeline, ...)
    assert {"Job", "Queue", "ResourceFlavor", "Node", "Service"} <= set(found)
    assert found["ResourceFlavor"]["plural"] == "resourceflavors"
    assert "rf" in found["ResourceFlavor"]["short_names"]
    assert found["Node"]["is_applied"] is False
    assert found["Job"]["is_applied"] is True


def test_generic_delete_accepts_any_name_of_a_kind(http: httpx.Client, make_job: MakeJob) -> None:
    apply(http, flavor("default"), queue("team-a"), parked(make_job, "parked"))
    assert http.delete("/api/v1/job/parked").status_code == 204
    assert http.delete("/api/v1/q/team-a").status_code == 204
    assert http.delete("/api/v1/rf/default").status_code == 204
    assert http.get("/api/v1/flavors").json() == []
    assert http.get("/api/v1/queues").json() == []

    missing = http.delete("/api/v1/resourceflavors/default")
    assert (missing.status_code, error_of(missing)["code"]) == (404, "NotFound")
    node = http.delete("/api/v1/nodes/node-0")
    assert node.status_code == 409
    assert "observed from the backend" in str(error_of(node)["message"])


def test_an_unknown_kind_lists_the_known_ones(http: httpx.Client) -> None:
    response = http.delete("/api/v1/widgets/x")
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "NotFound"
    message = str(error["message"])
    assert message.startswith("unknown kind 'widgets'; known kinds: ")
    for listed in ("Job (j, job, jobs)", "Queue (q, queue, queues)", "Node (no, node, nodes)"):
        assert listed in message


# -- selectors and pages ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        pytest.param("team=a", ["a1", "a2", "a3"], id="equals"),
        pytest.param("team!=a", ["b1", "plain"], id="not-equals"),
        pytest.param("team=a,tier=gpu", ["a2"], id="and"),
        pytest.param("!team", ["plain"], id="absent"),
        pytest.param("tier", ["a2", "b1"], id="present"),
        pytest.param("team=c", [], id="no-match"),
    ],
)
def test_label_selectors_on_jobs(
    http: httpx.Client, make_job: MakeJob, selector: str, expected: list[str]
) -> None:
    apply(
        http,
        parked(make_job, "a1", team="a"),
        parked(make_job, "a2", team="a", tier="gpu"),
        parked(make_job, "b1", team="b", tier="cpu"),
        parked(make_job, "a3", team="a"),
        parked(make_job, "plain"),
    )
    got = http.get("/api/v1/jobs", params={"labelSelector": selector})
    assert got.status_code == 200
    assert [j["name"] for j in got.json()] == expected


def test_label_selectors_on_queues_and_flavors(http: httpx.Client) -> None:
    apply(
        http,
        flavor("default", gpu="none"),
        flavor("h100", gpu="h100"),
        queue("team-a", team="a"),
        queue("team-b", team="b"),
    )
    assert [q["name"] for q in http.get("/api/v1/queues?labelSelector=team=b").json()] == ["team-b"]
    assert [f["name"] for f in http.get("/api/v1/flavors?labelSelector=gpu!=none").json()] == [
        "h100"
    ]
    listed = http.get("/api/v1/queues")
    assert int(listed.headers["X-Resource-Version"]) >= 4


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/queues", "/api/v1/flavors"])
def test_a_bad_selector_is_a_400_that_shows_the_syntax(http: httpx.Client, path: str) -> None:
    response = http.get(path, params={"labelSelector": "team=a=b"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "BadRequest"
    message = str(error["message"])
    assert message.startswith("labelSelector: label selector term 'team=a=b' is not valid")
    assert "use key=value, key!=value, key or !key" in message


def test_pages_of_jobs_with_a_selector(
    http: httpx.Client, client: Client, make_job: MakeJob
) -> None:
    apply(http, *(parked(make_job, f"j{i}", team="ab"[i % 2]) for i in range(9)))
    wanted = [f"j{i}" for i in range(0, 9, 2)]  # team a: j0 j2 j4 j6 j8

    names, token, pages = [], "", 0
    while True:
        params = {"labelSelector": "team=a", "limit": 2}
        if token:
            params["continue"] = token
        response = http.get("/api/v1/jobs", params=params)
        assert response.status_code == 200
        page = response.json()
        assert len(page) <= 2
        names += [j["name"] for j in page]
        pages += 1
        assert int(response.headers["X-Resource-Version"]) >= 9
        token = response.headers.get("X-Continue", "")
        if not token:
            break
    assert (names, pages) == (wanted, 3)

    assert [j["name"] for j in client.jobs(selector="team=a", chunk_size=2)] == wanted
    assert [j["name"] for j in client.jobs(chunk_size=4)] == [f"j{i}" for i in range(9)]
    assert [j["name"] for j in client.jobs(limit=3)] == ["j0", "j1", "j2"]
    assert len(http.get("/api/v1/jobs").json()) == 9  # default limit 500


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        pytest.param({"limit": 0}, "query.limit", id="limit-zero"),
        pytest.param({"limit": 5001}, "query.limit", id="limit-too-big"),
        pytest.param({"continue": "x"}, "continue token 'x'", id="bad-token"),
    ],
)
def test_bad_page_parameters_are_400(
    http: httpx.Client, params: dict[str, object], fragment: str
) -> None:
    response = http.get("/api/v1/jobs", params=params)
    assert response.status_code == 400
    assert fragment in str(error_of(response)["message"])


# -- many manifests at once ---------------------------------------------------------------


def test_apply_takes_500_manifests_in_one_request(http: httpx.Client, make_job: MakeJob) -> None:
    manifests = [parked(make_job, f"batch-{i:03d}", batch="1") for i in range(500)]
    outcomes = apply(http, *manifests)
    assert [o["name"] for o in outcomes] == [f"batch-{i:03d}" for i in range(500)]
    assert {o["action"] for o in outcomes} == {"created"}
    listed = http.get("/api/v1/jobs", params={"labelSelector": "batch=1", "limit": 5000})
    assert len(listed.json()) == 500


def test_errors_in_several_documents_name_each_and_create_nothing(
    http: httpx.Client, make_job: MakeJob
) -> None:
    manifests = [parked(make_job, f"doc-{i:03d}") for i in range(500)]
    manifests[3]["metadata"]["name"] = "Not A Name"  # type: ignore[index]
    manifests[499]["spec"]["podSets"][0]["replicas"] = 0  # type: ignore[index]
    response = http.post("/api/v1/apply", json={"manifests": manifests, "source": "batch.json"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "SpecInvalid"
    paths = [d["path"] for d in error["details"]]  # type: ignore[union-attr]
    assert paths == ["documents[3].metadata.name", "documents[499].spec.podSets[0].replicas"]
    assert http.get("/api/v1/jobs").json() == []
