"""The REST API against a real ControlPlane: auth, apply (JSON and YAML), errors, the views."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from phalanx.api import create_app
from phalanx.api.app import complete_utf8_prefix
from phalanx.controllers.plane import ControlPlane

Manifest = dict[str, object]
MakeJob = Callable[..., Manifest]

YAML = {"Content-Type": "application/yaml"}


def apply_yaml(http: httpx.Client, text: str, source: str = "setup.yaml") -> httpx.Response:
    return http.post("/api/v1/apply", params={"source": source}, content=text, headers=YAML)


def wait_phase(
    http: httpx.Client, name: str, phases: tuple[str, ...], timeout_s: float = 20
) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = http.get(f"/api/v1/jobs/{name}").json()
        if job["phase"] in phases:
            return job
        assert time.monotonic() < deadline, f"{name} stayed {job['phase']}: {job['message']}"
        time.sleep(0.05)


def wait_for(
    http: httpx.Client, name: str, done: Callable[[dict[str, object]], bool], timeout_s: float = 20
) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, object] = http.get(f"/api/v1/jobs/{name}").json()
        if done(job):
            return job
        assert time.monotonic() < deadline, f"{name}: {job}"
        time.sleep(0.05)


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]


# -- auth ---------------------------------------------------------------------------------


def test_healthz_needs_no_token(anonymous: httpx.Client, http: httpx.Client) -> None:
    response = anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}  # no pid, paths or store URL for strangers
    body = http.get("/healthz").json()
    assert body["status"] == "ok"
    assert isinstance(body["pid"], int)
    assert body["backend"] == "local"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/train"),
        ("POST", "/api/v1/jobs/train/cancel"),
        ("DELETE", "/api/v1/jobs/train"),
        ("GET", "/api/v1/jobs/train/logs"),
        ("POST", "/api/v1/apply"),
        ("GET", "/api/v1/queues"),
        ("DELETE", "/api/v1/queues/team-a"),
        ("GET", "/api/v1/flavors"),
        ("DELETE", "/api/v1/flavors/default"),
        ("GET", "/api/v1/nodes"),
        ("GET", "/api/v1/nodes/node-0"),
        ("GET", "/api/v1/version"),
        ("GET", "/api/v1/kinds"),
        ("GET", "/api/v1/flavors/default"),
        ("DELETE", "/api/v1/rf/default"),
        ("GET", "/api/v1/watch"),
    ],
)
def test_every_api_route_needs_the_token(anonymous: httpx.Client, method: str, path: str) -> None:
    missing = anonymous.request(method, path)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert error_of(missing)["code"] == "Unauthorized"
    assert "missing bearer token" in str(error_of(missing)["message"])

    wrong = anonymous.request(method, path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "invalid bearer token" in str(error_of(wrong)["message"])


def test_without_a_token_the_api_is_open(
    plane: ControlPlane, app_transport: Callable[[FastAPI], httpx.BaseTransport]
) -> None:
    with httpx.Client(
        transport=app_transport(create_app(plane, None)), base_url="http://phalanx.test"
    ) as anonymous:
        assert anonymous.get("/api/v1/jobs").json() == []


def test_docs_and_openapi_are_served(anonymous: httpx.Client) -> None:
    assert anonymous.get("/docs").status_code == 200
    schema = anonymous.get("/openapi.json").json()
    assert "/api/v1/jobs/{name}/logs" in schema["paths"]
    apply_body = schema["paths"]["/api/v1/apply"]["post"]["requestBody"]["content"]
    assert set(apply_body) == {"application/json", "application/yaml"}


def test_version(http: httpx.Client) -> None:
    body = http.get("/api/v1/version").json()
    assert body == {"version": body["version"], "api_version": "phalanx.dev/v1alpha1"}


def test_unknown_route_is_a_json_404(http: httpx.Client) -> None:
    response = http.get("/api/v1/widgets")
    assert response.status_code == 404
    assert error_of(response)["code"] == "NotFound"


# -- apply --------------------------------------------------------------------------------


def test_apply_yaml_creates_then_leaves_unchanged(http: httpx.Client, setup_yaml: str) -> None:
    first = apply_yaml(http, setup_yaml)
    assert first.status_code == 200
    assert first.json() == [
        {"kind": "ResourceFlavor", "name": "default", "action": "created", "warnings": []},
        {"kind": "Queue", "name": "team-a", "action": "created", "warnings": []},
    ]
    assert [r["action"] for r in apply_yaml(http, setup_yaml).json()] == ["unchanged", "unchanged"]


def test_apply_json_body(http: httpx.Client, setup_yaml: str, make_job: MakeJob) -> None:
    apply_yaml(http, setup_yaml)
    response = http.post(
        "/api/v1/apply", json={"manifests": [make_job("train", "pass")], "source": "train.json"}
    )
    assert response.status_code == 200
    assert response.json() == [
        {"kind": "Job", "name": "train", "action": "created", "warnings": []}
    ]


def test_apply_warns_about_a_job_that_can_never_run_and_accepts_it(
    http: httpx.Client, setup_yaml: str, make_job: MakeJob
) -> None:
    apply_yaml(http, setup_yaml)
    huge = make_job("huge", "pass", gpus=1000)  # 2-GPU nodes, 4 GPUs of quota
    response = http.post("/api/v1/apply", json={"manifests": [huge]})
    assert response.status_code == 200
    [outcome] = response.json()
    assert (outcome["action"], [w["code"] for w in outcome["warnings"]]) == (
        "created",
        ["NeverFits"],
    )
    facts = outcome["warnings"][0]["facts"]
    assert (facts["needed_gpu_milli"], facts["max_node_gpus"]) == (1_000_000, 2)
    job = wait_for(http, "huge", lambda j: j["reason"] is not None)
    reason = job["reason"]
    assert isinstance(reason, dict)
    assert reason["code"] == job["reason_code"] == "NeverFits"
    assert (reason["facts"], reason["message"]) == (facts, job["message"])


def test_bad_yaml_is_a_400_with_line_and_column(http: httpx.Client) -> None:
    response = apply_yaml(http, "kind: Job\nmetadata: {name: x\n", source="train.yaml")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "BadRequest"
    assert str(error["message"]).startswith("train.yaml:3:1: invalid YAML: ")


def test_spec_errors_list_every_field_and_create_nothing(
    http: httpx.Client, setup_yaml: str, make_job: MakeJob
) -> None:
    apply_yaml(http, setup_yaml)
    good = make_job("good", "pass")
    bad = make_job("bad", "pass")
    bad["spec"]["podSets"][0]["replicas"] = 0  # type: ignore[index]
    bad["spec"]["podSets"][0]["resources"]["cpu"] = "lots"  # type: ignore[index]
    response = http.post("/api/v1/apply", json={"manifests": [good, bad], "source": "jobs.yaml"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "SpecInvalid"
    assert error["source"] == "jobs.yaml"
    details = {d["path"]: d for d in error["details"]}  # type: ignore[union-attr]
    assert set(details) == {
        "documents[1].spec.podSets[0].replicas",
        "documents[1].spec.podSets[0].resources.cpu",
    }
    assert details["documents[1].spec.podSets[0].replicas"]["value"] == 0
    assert details["documents[1].spec.podSets[0].resources.cpu"]["value"] == "lots"
    assert http.get("/api/v1/jobs").json() == []


def test_a_yaml_document_that_is_not_a_mapping_is_a_spec_error(
    http: httpx.Client, setup_yaml: str
) -> None:
    response = apply_yaml(http, setup_yaml + "---\n- just\n- a list\n")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "SpecInvalid"
    assert [d["path"] for d in error["details"]] == ["documents[2]"]  # type: ignore[union-attr]
    assert http.get("/api/v1/queues").json() == []


@pytest.mark.parametrize(
    ("content", "headers", "status", "fragment"),
    [
        pytest.param(b"", YAML, 400, "no manifests found", id="empty-yaml"),
        pytest.param(b"---\n---\n", YAML, 400, "no manifests found", id="only-separators"),
        pytest.param(
            b"{not json", {"Content-Type": "application/json"}, 400, "not JSON", id="bad-json"
        ),
        pytest.param(
            b'{"manifests": []}',
            {"Content-Type": "application/json"},
            400,
            "invalid apply request",
            id="no-manifests",
        ),
        pytest.param(
            b"x", {"Content-Type": "text/plain"}, 415, "application/yaml", id="media-type"
        ),
    ],
)
def test_malformed_apply_requests(
    http: httpx.Client, content: bytes, headers: dict[str, str], status: int, fragment: str
) -> None:
    response = http.post("/api/v1/apply", content=content, headers=headers)
    assert response.status_code == status
    assert fragment in str(error_of(response)["message"])


# -- jobs ---------------------------------------------------------------------------------


def test_a_job_runs_and_its_view_and_logs_are_served(
    http: httpx.Client, setup_yaml: str, make_job: MakeJob
) -> None:
    apply_yaml(http, setup_yaml)
    job = make_job(
        "train", "import os; print('hello from', os.environ['PHALANX_INDEX'])", replicas=2
    )
    http.post("/api/v1/apply", json={"manifests": [job]})

    done = wait_phase(http, "train", ("Succeeded", "Failed"))
    assert done["phase"] == "Succeeded", done["message"]
    assert done["is_finished"] is True
    assert done["pod_count"] == 2
    assert done["request"] == {"cpu": "200m", "memory": "128Mi", "nvidia.com/gpu": "2"}
    assert str(done["created_at_iso"]).endswith("Z")
    assert done["finished_at"] is not None and done["finished_at_iso"] is not None
    pods = done["pods"]
    assert [p["name"] for p in pods] == ["worker-0", "worker-1"]  # type: ignore[union-attr]
    for pod in pods:  # type: ignore[union-attr]
        assert pod["phase"] == "Succeeded"
        assert pod["exit_code"] == 0
        assert pod["devices"] and set(pod["devices"][0]) == {"index", "milli"}
        assert pod["devices"][0]["milli"] == 1000
    assert done["events"][0]["reason"] == "Created"  # type: ignore[index]

    listed = http.get("/api/v1/jobs", params={"queue": "team-a"}).json()
    assert [j["name"] for j in listed] == ["train"]
    assert http.get("/api/v1/jobs", params={"queue": "other"}).json() == []

    logs = http.get("/api/v1/jobs/train/logs", params={"pod": "worker-1"}).json()
    assert logs["data"] == "hello from 1\n"
    assert logs["next_offset"] == len(b"hello from 1\n")
    tail = http.get(
        "/api/v1/jobs/train/logs", params={"pod": "worker-1", "offset": logs["next_offset"]}
    )
    assert tail.json() == {"data": "", "next_offset": logs["next_offset"], "finished": True}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/jobs/nope"),
        ("POST", "/api/v1/jobs/nope/cancel"),
        ("DELETE", "/api/v1/jobs/nope"),
        ("GET", "/api/v1/jobs/nope/logs"),
        ("GET", "/api/v1/queues/nope"),
        ("DELETE", "/api/v1/queues/nope"),
        ("DELETE", "/api/v1/flavors/nope"),
        ("GET", "/api/v1/nodes/nope"),
    ],
)
def test_unknown_objects_are_404(http: httpx.Client, method: str, path: str) -> None:
    response = http.request(method, path)
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "NotFound"
    assert "nope" in str(error["message"])


def test_bad_query_values_are_400(http: httpx.Client) -> None:
    response = http.get("/api/v1/jobs/x/logs", params={"offset": -1})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "BadRequest"
    assert error["details"][0]["path"] == "query.offset"  # type: ignore[index]


def test_cancel_then_delete_a_running_job(
    http: httpx.Client, setup_yaml: str, make_job: MakeJob
) -> None:
    apply_yaml(http, setup_yaml)
    http.post(
        "/api/v1/apply", json={"manifests": [make_job("sleeper", "import time; time.sleep(60)")]}
    )
    wait_phase(http, "sleeper", ("Running",))

    cancelled = http.post("/api/v1/jobs/sleeper/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["phase"] == "Cancelled"

    assert http.delete("/api/v1/jobs/sleeper").status_code == 204
    deadline = time.monotonic() + 15
    while http.get("/api/v1/jobs/sleeper").status_code != 404:
        assert time.monotonic() < deadline, "the deleted job is still listed"
        time.sleep(0.05)


# -- queues, flavors, nodes ------------------------------------------------------------------


def test_queue_view_renders_quantities(
    http: httpx.Client, setup_yaml: str, make_job: MakeJob
) -> None:
    apply_yaml(http, setup_yaml)
    http.post(
        "/api/v1/apply",
        json={"manifests": [make_job("sleeper", "import time; time.sleep(60)", gpus="0.5")]},
    )
    wait_phase(http, "sleeper", ("Running",))

    queue = http.get("/api/v1/queues/team-a").json()
    assert queue["cohort"] == ""
    assert queue["admitted"] == 1
    assert queue["nominal"] == {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "4"}
    assert queue["used"] == {"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": "0.5"}
    assert queue["usage"] == [
        {"flavor": "default", "used": queue["used"], "nominal": queue["nominal"]}
    ]
    assert queue["manifest"]["kind"] == "Queue"

    job = http.get("/api/v1/jobs/sleeper").json()
    (device,) = job["pods"][0]["devices"]
    assert device["milli"] == 500
    node = http.get(f"/api/v1/nodes/{job['pods'][0]['node']}").json()
    assert node["used"]["nvidia.com/gpu"] == "0.5"
    assert {g["index"]: g["used_milli"] for g in node["gpus"]}[device["index"]] == 500
    assert node["pods"] == ["sleeper/worker-0"]


def test_delete_queue_conflicts_while_jobs_use_it(
    http: httpx.Client, setup_yaml: str, make_job: MakeJob
) -> None:
    apply_yaml(http, setup_yaml)
    http.post(
        "/api/v1/apply", json={"manifests": [make_job("sleeper", "import time; time.sleep(60)")]}
    )

    response = http.delete("/api/v1/queues/team-a")
    assert response.status_code == 409
    assert error_of(response)["code"] == "Conflict"
    assert "sleeper" in str(error_of(response)["message"])

    http.post("/api/v1/jobs/sleeper/cancel")
    assert http.delete("/api/v1/queues/team-a").status_code == 204
    assert http.get("/api/v1/queues").json() == []


def test_flavors_list_and_delete(http: httpx.Client, setup_yaml: str) -> None:
    apply_yaml(http, setup_yaml)
    flavors = http.get("/api/v1/flavors").json()
    assert flavors[0].pop("metadata")["name"] == "default"
    assert flavors == [
        {
            "name": "default",
            "node_labels": {},
            "manifest": {
                "apiVersion": "phalanx.dev/v1alpha1",
                "kind": "ResourceFlavor",
                "metadata": {"name": "default"},
                "spec": {"nodeLabels": {}},
            },
        }
    ]
    assert http.delete("/api/v1/flavors/default").status_code == 204
    assert http.get("/api/v1/flavors").json() == []


def test_nodes_are_listed_with_devices(http: httpx.Client) -> None:
    nodes = http.get("/api/v1/nodes").json()
    assert [n["name"] for n in nodes] == ["node-0", "node-1"]
    node = nodes[0]
    assert node["is_ready"] is True and node["is_quarantined"] is False
    assert node["allocatable"]["nvidia.com/gpu"] == "2"
    assert node["used"] == {}
    assert [g["index"] for g in node["gpus"]] == [0, 1]
    assert node["labels"]["kubernetes.io/hostname"] == "node-0"


# -- pure helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"", 0, id="empty"),
        pytest.param(b"ascii", 5, id="ascii"),
        pytest.param("hé".encode(), 3, id="complete-2-byte"),
        pytest.param("hé".encode()[:-1], 1, id="cut-2-byte"),
        pytest.param("h€".encode()[:-1], 1, id="cut-3-byte-after-2"),
        pytest.param("h€".encode()[:-2], 1, id="cut-3-byte-after-1"),
        pytest.param("h😀".encode()[:-1], 1, id="cut-4-byte"),
        pytest.param("h😀".encode(), 5, id="complete-4-byte"),
        pytest.param(b"\x80\x80\x80\x80", 4, id="stray-continuations"),
    ],
)
def test_complete_utf8_prefix(data: bytes, expected: int) -> None:
    assert complete_utf8_prefix(data) == expected
