"""The CLI against a real server: output formats, one-line errors and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from phalanx.cli.main import app

Invoke = Callable[..., Result]
JobFile = Callable[..., Path]


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}{result.exception!r}"
    return result.stdout


def one_line_error(result: Result, code: int = 1) -> str:
    """Assert the command failed with exactly one ``error:`` line and no traceback."""
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def table(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines()]


# -- apply ----------------------------------------------------------------------------------


def test_apply_prints_kubectl_style_lines(cli: Invoke, setup_file: Path) -> None:
    assert ok(cli("apply", "-f", str(setup_file))).splitlines() == [
        "resourceflavor.phalanx.dev/default created",
        "queue.phalanx.dev/team-a created",
    ]
    assert ok(cli("apply", "-f", str(setup_file))).splitlines() == [
        "resourceflavor.phalanx.dev/default unchanged",
        "queue.phalanx.dev/team-a unchanged",
    ]


def test_apply_from_stdin(cli: Invoke, setup_file: Path) -> None:
    output = ok(cli("apply", "-f", "-", input=setup_file.read_text()))
    assert output.splitlines()[-1] == "queue.phalanx.dev/team-a created"


def test_apply_a_directory(cli: Invoke, setup_file: Path, job_file: JobFile) -> None:
    job_file("hello", "print(1)")
    output = ok(cli("apply", "-f", str(setup_file.parent)))
    assert "job.phalanx.dev/hello created" in output.splitlines()


def test_bad_yaml_is_one_line_with_the_position(cli: Invoke, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Job\nmetadata: {name: x\n")
    line = one_line_error(cli("apply", "-f", str(bad)))
    assert line.startswith(f"error: {bad}:3:1: invalid YAML: ")


def test_spec_errors_print_one_line_per_field(
    cli: Invoke, setup_file: Path, tmp_path: Path
) -> None:
    ok(cli("apply", "-f", str(setup_file)))
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: phalanx.dev/v1alpha1\nkind: Job\nmetadata: {name: x}\n"
        "spec: {queue: team-a, podSets: [{name: w, replicas: 0, resources: {cpu: lots}, command: [x]}]}\n"
    )
    result = cli("apply", "-f", str(bad))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {bad}: spec.podSets[0].replicas: must be >= 1 (got 0)",
        f"error: {bad}: spec.podSets[0].resources.cpu: 'lots' is not a quantity; use a number "
        "with an optional suffix (m, k, M, G, T, Ki, Mi, Gi, Ti), e.g. 500m, 4, 16Gi (got 'lots')",
    ]
    assert "Traceback" not in result.output


def test_missing_file(cli: Invoke, tmp_path: Path) -> None:
    line = one_line_error(cli("apply", "-f", str(tmp_path / "nope.yaml")))
    assert line == f"error: {tmp_path / 'nope.yaml'}: No such file or directory"


# -- get ----------------------------------------------------------------------------------


def test_get_jobs_table_and_formats(
    cli: Invoke, setup_file: Path, job_file: JobFile, server: object
) -> None:
    ok(cli("apply", "-f", str(setup_file)))
    ok(cli("apply", "-f", str(job_file("sleeper", "import time; time.sleep(60)", replicas=2))))
    ok(cli("apply", "-f", str(job_file("huge", "pass", gpus="4"))))
    server.wait_phase("sleeper", "Running")  # type: ignore[attr-defined]

    rows = table(ok(cli("get", "jobs")))
    assert rows[0] == ["NAME", "QUEUE", "PRIORITY", "PHASE", "PODS", "AGE", "REASON"]
    assert rows[1][:5] == ["sleeper", "team-a", "0", "Running", "2/2"]
    assert rows[2][:5] == ["huge", "team-a", "0", "Pending", "0/1"]
    huge_line = ok(cli("get", "jobs")).splitlines()[2]
    assert len(huge_line) < 140  # the reason is truncated…
    wide = ok(cli("get", "jobs", "-o", "wide"))
    assert table(wide)[0] == [
        "NAME",
        "QUEUE",
        "PRIORITY",
        "PHASE",
        "PODS",
        "AGE",
        "FLAVOR",
        "RESTARTS",
        "NODES",
        "REASON",
        "START",
    ]
    assert len(wide.splitlines()[2]) > len(huge_line)  # …and whole with -o wide

    as_json = json.loads(ok(cli("get", "jobs", "-o", "json")))
    assert [j["name"] for j in as_json] == ["sleeper", "huge"]
    one = json.loads(ok(cli("get", "job", "sleeper", "-o", "json")))
    assert one["name"] == "sleeper" and one["running_pods"] == 2
    as_yaml = yaml.safe_load(ok(cli("get", "jobs", "huge", "-o", "yaml")))
    assert as_yaml["phase"] == "Pending"
    assert table(ok(cli("get", "jobs", "--queue", "other"))) == []


def test_get_queues_nodes_flavors(
    cli: Invoke, setup_file: Path, job_file: JobFile, server: object
) -> None:
    ok(cli("apply", "-f", str(setup_file)))
    ok(cli("apply", "-f", str(job_file("half", "import time; time.sleep(60)", gpus="0.5"))))
    server.wait_phase("half", "Running")  # type: ignore[attr-defined]

    assert table(ok(cli("get", "queues"))) == [
        ["NAME", "COHORT", "PENDING", "ADMITTED", "GPU", "CPU", "MEMORY"],
        ["team-a", "<none>", "0", "1", "0.5/4", "100m/2", "64Mi/4Gi"],
    ]
    nodes = table(ok(cli("get", "nodes")))
    assert nodes[0] == ["NAME", "READY", "GPUS", "CPU", "MEMORY", "MODEL"]
    assert sorted(row[2] for row in nodes[1:]) == ["0.5/2", "0/2"]
    assert {row[5] for row in nodes[1:]} == {"Virtual-GPU"}
    assert table(ok(cli("get", "no", "node-1")))[1][0] == "node-1"
    assert table(ok(cli("get", "flavors"))) == [["NAME", "NODE-LABELS"], ["default", "<none>"]]
    assert json.loads(ok(cli("get", "flavor", "default", "-o", "json")))["name"] == "default"


def test_get_unknown_objects(cli: Invoke) -> None:
    assert one_line_error(cli("get", "job", "nope")) == 'error: job "nope" not found'
    assert one_line_error(cli("get", "queue", "nope")) == 'error: queue "nope" not found'
    assert one_line_error(cli("get", "flavor", "nope")) == 'error: resourceflavor "nope" not found'


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["get", "jobs", "-o", "xml"], id="unknown-output"),
        pytest.param(["get"], id="missing-kind"),
        pytest.param(["get", "jobs", "--chunk-size", "0"], id="chunk-size"),
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


# -- describe, logs, cancel, delete -----------------------------------------------------------


def test_describe_a_pending_job_shows_the_full_reason(
    cli: Invoke, setup_file: Path, job_file: JobFile
) -> None:
    ok(cli("apply", "-f", str(setup_file)))
    ok(cli("apply", "-f", str(job_file("huge", "pass", gpus="4"))))
    with_reason = ""
    for _ in range(100):
        with_reason = ok(cli("describe", "job", "huge"))
        if "Reason:" in with_reason:
            break
    lines = with_reason.splitlines()
    assert lines[0].split() == ["Name:", "huge"]
    for section in ("Pod Sets:", "Status:", "Timings:", "Pods:", "Events:"):
        assert section in lines
    reason = next(line for line in lines if line.strip().startswith("Message:"))
    assert "…" not in reason and "node-0" in reason
    assert any(line.split()[:2] == ["Normal", "Created"] for line in lines)


def test_describe_a_finished_job_and_its_node(
    cli: Invoke, setup_file: Path, job_file: JobFile, server: object
) -> None:
    ok(cli("apply", "-f", str(setup_file)))
    ok(cli("apply", "-f", str(job_file("hello", "print('hello')"))))
    server.wait_phase("hello", "Succeeded")  # type: ignore[attr-defined]

    text = ok(cli("describe", "job", "hello"))
    pods = text.split("Pods:\n")[1].split("Events:")[0]
    header, row = table(pods)
    assert header == ["NAME", "ATTEMPT", "NODE", "DEVICES", "PHASE", "EXIT", "REASON"]
    assert row[0] == "worker-0" and row[4:6] == ["Succeeded", "0"]
    assert "Ran For:" in text
    node_text = ok(cli("describe", "node", row[2]))
    assert node_text.splitlines()[0].split() == ["Name:", row[2]]
    assert "GPUs:" in node_text
    assert one_line_error(cli("describe", "node", "nope")) == 'error: node "nope" not found'


def test_logs(cli: Invoke, setup_file: Path, job_file: JobFile, server: object) -> None:
    ok(cli("apply", "-f", str(setup_file)))
    ok(
        cli(
            "apply",
            "-f",
            str(
                job_file(
                    "hello", "import os; print('hello', os.environ['PHALANX_INDEX'])", replicas=2
                )
            ),
        )
    )
    assert ok(cli("logs", "hello", "-f", "--pod", "worker-1")) == "hello 1\n"
    server.wait_phase("hello", "Succeeded")  # type: ignore[attr-defined]
    assert ok(cli("logs", "hello")) == "hello 0\n"
    assert ok(cli("logs", "hello", "--attempt", "1", "--pod", "worker-0")) == "hello 0\n"
    assert "worker-9" in one_line_error(cli("logs", "hello", "--pod", "worker-9"))
    assert one_line_error(cli("logs", "nope")) == 'error: job "nope" not found'


def test_cancel_and_delete(
    cli: Invoke, setup_file: Path, job_file: JobFile, server: object
) -> None:
    ok(cli("apply", "-f", str(setup_file)))
    ok(cli("apply", "-f", str(job_file("sleeper", "import time; time.sleep(60)"))))
    server.wait_phase("sleeper", "Running")  # type: ignore[attr-defined]

    assert one_line_error(cli("delete", "queue", "team-a")).startswith(
        "error: queue team-a still has 1 unfinished jobs"
    )
    assert ok(cli("cancel", "sleeper")) == "job.phalanx.dev/sleeper cancelled\n"
    assert ok(cli("cancel", "sleeper")) == "job.phalanx.dev/sleeper unchanged (already Cancelled)\n"
    assert ok(cli("delete", "job", "sleeper")) == "job.phalanx.dev/sleeper deleted\n"
    assert ok(cli("delete", "queue", "team-a")) == "queue.phalanx.dev/team-a deleted\n"
    assert ok(cli("delete", "flavor", "default")) == "resourceflavor.phalanx.dev/default deleted\n"
    assert one_line_error(cli("cancel", "nope")) == 'error: job "nope" not found'
    assert (
        one_line_error(cli("delete", "flavor", "default"))
        == 'error: resourceflavor "default" not found'
    )


# -- connection problems ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["get", "jobs"], id="get"),
        pytest.param(["describe", "job", "x"], id="describe"),
        pytest.param(["logs", "x"], id="logs"),
        pytest.param(["cancel", "x"], id="cancel"),
        pytest.param(["delete", "job", "x"], id="delete"),
        pytest.param(["apply", "-f", "-"], id="apply"),
    ],
)
def test_server_down_is_one_line(
    args: list[str], unused_port: int, tmp_path: Path, clean_env: None
) -> None:
    url = f"http://127.0.0.1:{unused_port}"
    result = CliRunner().invoke(
        app, ["--data-dir", str(tmp_path), "--server", url, *args], input="kind: Job\n"
    )
    line = one_line_error(result)
    assert line == f"error: cannot reach the phalanx server at {url}; start it with `phalanx up`"


def test_server_from_the_environment(
    unused_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{unused_port}"
    monkeypatch.setenv("PHALANX_SERVER", url)
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "get", "nodes"])
    assert url in one_line_error(result)


def test_a_wrong_token_is_one_line(cli: Invoke, server: object) -> None:
    line = one_line_error(cli("--token", "wrong", "get", "jobs"))
    url = server.url  # type: ignore[attr-defined]
    assert line == (
        f"error: the phalanx server at {url} refused the token given with --token or "
        "PHALANX_TOKEN; give its token (the file `token` in its data dir) with --token or "
        "PHALANX_TOKEN, or leave both unset and pass its data dir with --data-dir or "
        "PHALANX_DATA_DIR"
    )


def test_down_without_a_server(tmp_path: Path, clean_env: None) -> None:
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "down"])
    assert ok(result) == f"phalanx is not running (data dir {tmp_path})\n"


def test_up_rejects_bad_nodes(tmp_path: Path, clean_env: None) -> None:
    result = CliRunner().invoke(
        app, ["up", "--data-dir", str(tmp_path), "--nodes", "9q", "--port", "0"]
    )
    assert one_line_error(result).startswith(
        "error: --nodes: is neither an existing YAML file nor NxG shorthand"
    )


def test_up_refuses_a_second_server(server: object, clean_env: None) -> None:
    data_dir = server.data_dir  # type: ignore[attr-defined]
    result = CliRunner().invoke(
        app, ["up", "--data-dir", str(data_dir), "--nodes", "1x1", "--port", "0"]
    )
    assert one_line_error(result).startswith(
        f"error: a phalanx server is already running for {data_dir}"
    )


def test_version_flag() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert ok(result).startswith("phalanx ")
