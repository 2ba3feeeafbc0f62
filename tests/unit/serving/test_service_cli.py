"""`phalanx serve --dry-run` builds the Service a user would get; `get services` and `describe
service` render the API's JSON (no server needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from phalanx import kinds
from phalanx.cli.main import app
from phalanx.cli.service import describe_service, services_table, with_port


def test_serve_a_command_with_port_in_its_arguments(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["serve", "--dry-run", "--name", "web", "--queue", "team-a", "--min-replicas", "0",
         "--max-replicas", "3", "--gpus", "0.5", "--concurrency", "4", "--env", "A=1",
         "--", "python", "app.py", "--port=$PORT"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(result.stdout)
    spec = kinds.parse(manifest).obj  # what it prints is a valid Service
    assert spec.name == "web" and spec.queue == "team-a"
    assert (spec.min_replicas, spec.max_replicas) == (0, 3)
    assert spec.template.command == ("sh", "-c", 'exec python app.py --port="$PORT"')
    assert spec.template.resources.gpu_milli == 500 and spec.template.env == {"A": "1"}
    assert spec.autoscaling.target == 4


def test_serve_a_model_file_uses_the_model_server(tmp_path: Path) -> None:
    model = tmp_path / "iris_v2.joblib"
    model.write_bytes(b"not read by --dry-run")
    result = CliRunner().invoke(app, ["serve", "--dry-run", str(model)])
    assert result.exit_code == 0, result.output
    spec = kinds.parse(yaml.safe_load(result.stdout)).obj
    assert spec.name == "iris-v2"
    assert spec.template.command == (sys.executable, "-m", "phalanx.cli", "serve-model", str(model))
    assert spec.readiness.path == "/v2/health/ready"


def test_serve_a_missing_model_file_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--dry-run", str(tmp_path / "none.onnx")])
    assert result.exit_code == 1 and "no such model file" in result.output


def test_with_port_leaves_a_command_without_port_alone() -> None:
    assert with_port(["python", "a b.py"]) == ["python", "a b.py"]
    assert with_port(["srv", "${PORT}", "x y"]) == ["sh", "-c", "exec srv \"$PORT\" 'x y'"]


SERVICE = {
    "name": "web",
    "manifest": {"spec": {"template": {"command": ["python", "app.py"], "pods": 1}}},
    "created_at": 1000.0,
    "queue": "q",
    "revision": "bbbbbbbbbb",
    "url": "http://127.0.0.1:8471/web",
    "route": {"pathPrefix": "/web", "hosts": []},
    "min_replicas": 1,
    "max_replicas": 3,
    "desired": 3,
    "ready": 2,
    "replicas": [
        {"name": "web-a-1", "revision": "aaaaaaaaaa", "phase": "Ready", "url": "http://x:1",
         "created_at": 1000.0, "reason": None, "draining": False},
        {"name": "web-b-1", "revision": "bbbbbbbbbb", "phase": "Ready", "url": "http://x:2",
         "created_at": 1000.0, "reason": None, "draining": False},
        {"name": "web-b-2", "revision": "bbbbbbbbbb", "phase": "Pending", "url": "",
         "created_at": 1000.0, "draining": False,
         "reason": {"code": "QuotaExceeded", "message": "queue q uses 1/1 cpu", "facts": {}}},
    ],
    "revisions": [
        {"name": "aaaaaaaaaa", "created_at": 900.0, "template": {}, "desired": 1,
         "replicas": 1, "ready": 1, "percent": 90.0, "latest": False},
        {"name": "bbbbbbbbbb", "created_at": 950.0, "template": {}, "desired": 2,
         "replicas": 2, "ready": 1, "percent": 10.0, "latest": True},
    ],
    "decisions": [{"at": 1090.0, "replicas": 3, "code": "Stable", "reason": "stable window"}],
    "rollout_waiting": "",
    "error": "",
}  # fmt: skip


def test_the_table_shows_readiness_and_traffic() -> None:
    lines = services_table([SERVICE], now=1100.0).splitlines()
    assert lines[0].split() == ["NAME", "READY", "DESIRED", "REVISION", "TRAFFIC", "URL", "AGE"]
    assert lines[1].split() == [
        "web", "2/3", "3", "bbbbbbbbbb", "aaaaaaaaaa=90%,bbbbbbbbbb=10%",
        "http://127.0.0.1:8471/web", "1m",
    ]  # fmt: skip


def test_describe_shows_revisions_replicas_reasons_and_decisions() -> None:
    text = describe_service(SERVICE, now=1100.0)
    assert "QuotaExceeded: queue q uses 1/1 cpu" in text
    assert "10s ago: 3 replica(s), Stable: stable window" in text
    assert "bbbbbbbbbb" in text and "(latest)" in text and "90%" in text


def test_describe_shows_the_services_events() -> None:
    assert "Events (newest last):\n  (none)" in describe_service(SERVICE, now=1100.0)
    event = {
        "at": 1080.0,
        "type": "Normal",
        "reason": "ScaledUp",
        "message": "Service web scaled from 1 to 3 replica(s): panic window: ...",
        "facts": {"from_replicas": 1, "to_replicas": 3},
    }
    text = describe_service({**SERVICE, "events": [event]}, now=1100.0)
    assert text.splitlines()[-1] == (
        "  20s ago  Normal   ScaledUp: Service web scaled from 1 to 3 replica(s): panic window: ..."
    )
