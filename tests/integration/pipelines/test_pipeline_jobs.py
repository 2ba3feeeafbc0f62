"""Pipelines on a real server, each step a job of real processes: a 2-pod GPU gang step on
two virtual nodes, a rerun of cache hits (with the same keys in-process), an edited task,
a failed step and its resume, type errors from a pod, a Pipeline applied from YAML, lineage.
"""

from __future__ import annotations

import json

import yaml

from conftest import PipelineServer

GANG = """
import os
from phalanx.pipelines import pipeline, task

@task
def prepare(n: int) -> list[int]:
    return list(range(n))

@task(replicas=2, resources={"nvidia.com/gpu": 4, "cpu": "500m", "memory": "256Mi"})
def train(data: list[int]) -> dict:
    return {
        "world": os.environ["WORLD_SIZE"],
        "rank": os.environ["RANK"],
        "devices": os.environ["CUDA_VISIBLE_DEVICES"],
        "node": os.environ["PHALANX_NODE"],
        "sum": sum(data),
    }

@task
def evaluate(model: dict) -> str:
    return f"{model['world']} workers on {len(model['devices'].split(','))} GPUs: {model['sum']}"

@pipeline
def flow(n: int = 4) -> object:
    return evaluate(train(prepare(n)))
"""


def test_a_gpu_gang_step_then_all_cache_hits_with_the_same_keys_in_process(
    server: PipelineServer,
) -> None:
    server.write("gangflow", GANG)
    first = server.run("gangflow:flow", "-p", "n=5", "--name", "gang-1")
    assert first.exit_code == 0, first.output
    assert "pipelinerun/gang-1 created" in first.output
    run = server.get_run("gang-1")
    assert run["status"]["phase"] == "Succeeded"
    train = run["status"]["steps"]["train"]
    with server.client() as client:
        job = client.job(train["job"])
        pods = [p for p in job["pods"] if p["attempt"] == 1]
    assert len(pods) == 2
    # The run's owner (who submitted it) owns its step jobs: their logs and env are theirs.
    owner = run["metadata"].get("owner") or run["manifest"]["metadata"].get("owner")
    assert owner and job["manifest"]["metadata"]["owner"] == owner  # type: ignore[index]
    assert len({p["node"] for p in pods}) == 2  # 4 GPUs each: one per virtual node
    assert all(len(p["devices"]) == 4 for p in pods)
    with server.client() as client:
        text = client._get("/pipelineruns/gang-1")
    output = json.loads(text["status"]["steps"]["evaluate"]["output"]["inline"])  # type: ignore[index]
    assert output == "2 workers on 4 GPUs: 10"

    second = server.run("gangflow:flow", "-p", "n=5", "--name", "gang-2")
    assert second.exit_code == 0, second.output
    steps = server.get_run("gang-2")["status"]["steps"]
    assert {s["state"] for s in steps.values()} == {"Cached"}
    assert steps["train"]["cachedFrom"] == {"run": "gang-1", "step": "train"}
    assert "cached from run gang-1, step train" in second.output
    assert "job" not in steps["train"]  # no job ran

    # The same steps in this process compute the same keys: every one a hit on gang-1's.
    import gangflow  # type: ignore[import-not-found]

    local = gangflow.flow.run(artifacts=str(server.artifacts), n=5)
    assert local.cached == ["prepare", "train", "evaluate"]
    for name, status in local.steps.items():
        assert status["cacheKey"] == run["status"]["steps"][name]["cacheKey"]
    assert local.result() == output


CHAIN = """
from phalanx.pipelines import pipeline, task

@task
def first() -> int:
    return 1

@task
def second(x: int) -> int:
    return x + 10

@task
def third(x: int) -> int:
    return x * 2

@task
def apart() -> str:
    return "independent"

@pipeline
def flow() -> object:
    return third(second(first())), apart()
"""


def test_an_edited_task_reruns_only_itself_and_its_dependents(server: PipelineServer) -> None:
    server.write("chainflow", CHAIN)
    assert server.run("chainflow:flow", "--name", "chain-1").exit_code == 0
    server.write("chainflow", CHAIN.replace("x + 10", "x + 20"))
    edited = server.run("chainflow:flow", "--name", "chain-2")
    assert edited.exit_code == 0, edited.output
    assert server.states("chain-2") == {
        "first": "Cached",
        "second": "Succeeded",
        "third": "Succeeded",
        "apart": "Cached",
    }
    third = server.get_run("chain-2")["status"]["steps"]["third"]["output"]
    assert json.loads(third["inline"]) == 42
    no_cache = server.run("chainflow:flow", "--name", "chain-3", "--no-cache")
    assert no_cache.exit_code == 0, no_cache.output
    assert set(server.states("chain-3").values()) == {"Succeeded"}


FLAKY = """
from pathlib import Path
from phalanx.pipelines import pipeline, task

@task
def flaky(marker: str) -> int:
    if Path(marker).exists():
        raise RuntimeError("the marker file is still there")
    return 7

@task
def after(x: int) -> int:
    return x + 1

@task
def other() -> int:
    return 5

@pipeline
def flow(marker: str) -> object:
    return after(flaky(marker)), other()
"""


def test_a_failed_step_fails_its_dependents_then_resume_reruns_from_it(
    server: PipelineServer,
) -> None:
    marker = server.project / "marker"
    marker.touch()
    server.write("flakyflow", FLAKY)
    failed = server.run("flakyflow:flow", "-p", f"marker={marker}", "--name", "flaky-1")
    assert failed.exit_code == 1, failed.output
    assert server.get_run("flaky-1")["status"]["phase"] == "Failed"
    assert server.states("flaky-1") == {
        "flaky": "Failed",
        "after": "UpstreamFailed",
        "other": "Succeeded",
    }
    logs = server.cli("pipeline", "logs", "flaky-1", "--step", "flaky")
    assert logs.exit_code == 0, logs.output
    assert "RuntimeError: the marker file is still there" in logs.output
    described = server.cli("describe", "pipelinerun", "flaky-1")
    assert described.exit_code == 0, described.output
    assert "flaky  Failed" in described.output and "after  UpstreamFailed" in described.output

    marker.unlink()
    resumed = server.cli("pipeline", "resume", "flaky-1", "--name", "flaky-2")
    assert resumed.exit_code == 0, resumed.output
    run = server.get_run("flaky-2")
    assert run["spec"]["resumedFrom"] == "flaky-1"
    assert server.states("flaky-2") == {
        "flaky": "Succeeded",
        "after": "Succeeded",
        "other": "Cached",
    }
    assert run["status"]["steps"]["other"]["cachedFrom"] == {"run": "flaky-1", "step": "other"}


def test_a_type_error_in_a_pod_names_the_step_and_field(server: PipelineServer) -> None:
    server.write(
        "typedflow",
        """
        from phalanx.pipelines import pipeline, task

        @task
        def lies() -> int:
            return "seven"

        @task
        def uses(x: int) -> int:
            return x

        @pipeline
        def flow() -> object:
            return uses(lies())
        """,
    )
    result = server.run("typedflow:flow", "--name", "typed-1")
    assert result.exit_code == 1
    assert server.states("typed-1") == {"lies": "Failed", "uses": "UpstreamFailed"}
    logs = server.cli("pipeline", "logs", "typed-1", "--step", "lies")
    assert "step 'lies' output: expected int, got str ('seven')" in logs.output
    build = server.run("typedflow:flow", "-p", "x=1")
    assert build.exit_code == 1
    assert "unexpected keyword argument 'x'" in build.output


def test_a_pipeline_yaml_applied_from_a_file_runs_and_shows_its_lineage(
    server: PipelineServer,
) -> None:
    server.write("yamlflow", CHAIN.replace("x * 2", "x * 3"))
    pipeline_file = server.project / "pipeline.yaml"
    compiled = server.cli("pipeline", "compile", "yamlflow:flow", "-f", str(pipeline_file))
    assert compiled.exit_code == 0, compiled.output
    applied = server.cli("apply", "-f", str(pipeline_file))
    assert applied.exit_code == 0, applied.output
    assert "pipeline.phalanx.dev/flow created" in applied.output
    run_file = server.project / "run.yaml"
    run_file.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "phalanx.dev/v1alpha1",
                "kind": "PipelineRun",
                "metadata": {"name": "from-yaml"},
                "spec": {
                    "pipeline": "flow",
                    "queue": "team",
                    "artifacts": str(server.artifacts),
                    "code": {
                        "workingDir": str(server.project),
                        "pythonPath": [str(server.project)],
                    },
                },
            }
        )
    )
    assert server.cli("apply", "-f", str(run_file)).exit_code == 0
    with server.client() as client:
        from phalanx.cli.pipeline import wait_for_run

        run = wait_for_run(client, "from-yaml", timeout_s=60)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert json.loads(run["status"]["steps"]["third"]["output"]["inline"]) == 33

    listed = server.cli("get", "pipelines")
    assert listed.exit_code == 0, listed.output
    assert listed.output.split("\n")[1].split()[:2] == ["flow", "4"]
    runs = server.cli("get", "pipelineruns", "from-yaml")
    assert runs.output.split("\n")[1].split()[:3] == ["from-yaml", "Succeeded", "4/4"]
    as_json = server.cli("get", "pipelineruns", "from-yaml", "-o", "json")
    assert json.loads(as_json.output)["status"]["phase"] == "Succeeded"
    tree = server.cli("describe", "pipelinerun", "from-yaml")
    assert tree.exit_code == 0, tree.output
    assert "└─ second" in tree.output or "├─ second" in tree.output

    artifact = run["status"]["steps"]["third"]["output"]["hash"]
    up = server.cli("pipeline", "lineage", artifact[:20], "--direction", "up")
    assert up.exit_code == 0, up.output
    assert "from-yaml/third" in up.output and "from-yaml/second" in up.output
    assert "from-yaml/first" in up.output
    first = run["status"]["steps"]["first"]["output"]["hash"]
    down = server.cli("pipeline", "lineage", first, "-o", "json")
    walked = json.loads(down.output)["downstream"]
    assert walked["next"][0]["via"].endswith("/second")
