"""Job-mode steps that write their artifacts to S3 get the credentials of the run's
``artifactsSecret``: a real SeaweedFS S3 gateway that refuses every request not signed with
one key pair, a server whose own environment has no AWS_* variables, and pods that get the
Secret's keys as variables. The values never show in what the CLI and API print.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from conftest import S3_BUCKET, PipelineServer, s3_server
from phalanx.pipelines import ArtifactStore
from phalanx.pipelines.reconciler import S3_SECRET_KEYS

KEY = "PHALANXTESTKEY4821"
SECRET = "s3cret-value-7f3a9c-never-printed"

FLOW = """
import numpy as np
from phalanx.pipelines import pipeline, task

@task
def make(n: int) -> np.ndarray:
    return np.arange(n * n, dtype=np.int64).reshape(n, n)

@task
def total(a: np.ndarray) -> int:
    return int(a.sum())

@pipeline
def flow(n: int = 40) -> object:
    return total(make(n))
"""


@pytest.fixture(scope="module")
def s3_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with s3_server(tmp_path_factory.mktemp("weed-auth"), (KEY, SECRET)) as endpoint:
        yield endpoint


@pytest.fixture
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the server nor the pods may find credentials anywhere but in the Secret."""
    for name in (*S3_SECRET_KEYS, "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


def _secret(endpoint: str) -> dict[str, Any]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Secret",
        "metadata": {"name": "s3-creds"},
        "spec": {
            "stringData": {
                "AWS_ACCESS_KEY_ID": KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET,
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        },
    }


def test_the_s3_server_refuses_requests_without_the_key_pair(s3_auth: str) -> None:
    import s3fs

    wrong = s3fs.S3FileSystem(key=KEY, secret="wrong", client_kwargs={"endpoint_url": s3_auth})
    with pytest.raises(PermissionError):
        wrong.pipe(f"{S3_BUCKET}/probe", b"x")
    right = s3fs.S3FileSystem(key=KEY, secret=SECRET, client_kwargs={"endpoint_url": s3_auth})
    right.pipe(f"{S3_BUCKET}/probe", b"x")
    assert right.cat(f"{S3_BUCKET}/probe") == b"x"


def test_job_mode_steps_write_s3_artifacts_with_the_runs_secret(
    server: PipelineServer, s3_auth: str, no_ambient_credentials: None
) -> None:
    with server.client() as client:
        client.apply([_secret(s3_auth)])
    server.write("s3jobs", FLOW)
    url = f"s3://{S3_BUCKET}/jobs"
    args = ("-q", "team", "--artifacts", url, "--artifacts-secret", "s3-creds", "-p", "n=40")
    first = server.cli("pipeline", "run", "s3jobs:flow", "--name", "s3-1", *args)
    assert first.exit_code == 0, first.output
    steps = server.get_run("s3-1")["status"]["steps"]
    assert {s["state"] for s in steps.values()} == {"Succeeded"}
    # The array is a blob (npy) that the step's pod wrote to S3; read it back signed.
    made = steps["make"]["output"]
    assert made["format"] == "npy" and "inline" not in made
    store = ArtifactStore(url, key=KEY, secret=SECRET, client_kwargs={"endpoint_url": s3_auth})
    from phalanx.pipelines.artifacts import ArtifactRef

    np.testing.assert_array_equal(
        store.get(ArtifactRef.from_json(made)), np.arange(1600).reshape(40, 40)
    )
    assert store.get(ArtifactRef.from_json(steps["total"]["output"])) == sum(range(1600))
    # The server read the cache index in S3 with the same Secret: a rerun is all hits.
    second = server.cli("pipeline", "run", "s3jobs:flow", "--name", "s3-2", *args)
    assert second.exit_code == 0, second.output
    assert server.states("s3-2") == {"make": "Cached", "total": "Cached"}
    # The step's job refers to the Secret; no value is in it, nor in anything shown.
    with server.client() as client:
        job = client.job(steps["make"]["job"])  # with its pods and events
    env = job["manifest"]["spec"]["podSets"][0]["env"]  # type: ignore[index]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs["AWS_SECRET_ACCESS_KEY"] == {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}
    assert refs["AWS_ENDPOINT_URL"]["optional"] is True
    shown = [
        str(job),
        server.cli("describe", "pipelinerun", "s3-1").output,
        server.cli("get", "pipelineruns", "s3-1", "-o", "yaml").output,
        server.cli("get", "job", steps["make"]["job"], "-o", "json").output,
        server.cli("describe", "job", steps["make"]["job"]).output,
        server.cli("pipeline", "logs", "s3-1", "--step", "make").output,
    ]
    for text in shown:
        assert SECRET not in text and KEY not in text


def test_a_run_whose_secret_is_missing_fails_naming_it(
    server: PipelineServer, s3_auth: str
) -> None:
    server.write("s3jobs", FLOW)
    result = server.cli(
        "pipeline",
        "run",
        "s3jobs:flow",
        "--name",
        "s3-missing",
        "-q",
        "team",
        "--artifacts",
        f"s3://{S3_BUCKET}/jobs",
        "--artifacts-secret",
        "no-such-secret",
    )
    assert result.exit_code == 1
    status = server.get_run("s3-missing")["status"]
    assert status["phase"] == "Failed"
    assert "secret no-such-secret not found" in status["message"]
    assert "AWS_ACCESS_KEY_ID" in status["message"]
