"""Global options (--data-dir, --server, --token) before or after the command, and --help."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest
import typer
from typer.testing import CliRunner, Result

from phalanx.cli.main import GLOBAL_OPTIONS, app


class RunningServer(Protocol):
    """What the ``server`` fixture gives."""

    data_dir: Path
    url: str

    def wait_phase(self, job: str, *phases: str, timeout_s: float = 20) -> None: ...


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr}{result.exception!r}"
    return result.stdout


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["get", "nodes"], id="get"),
        pytest.param(["get", "nodes", "node-1", "-o", "json"], id="get-json"),
        pytest.param(["describe", "node", "node-0"], id="describe"),
        pytest.param(["node", "release", "node-0"], id="node-release"),
        pytest.param(["get", "flavors"], id="get-flavors"),
    ],
)
def test_data_dir_after_the_command_means_the_same(args: list[str], server: RunningServer) -> None:
    data_dir = str(server.data_dir)
    before = ok(run("--data-dir", data_dir, *args))
    assert ok(run(*args, "--data-dir", data_dir)) == before
    assert ok(run(*args[:1], "--data-dir", data_dir, *args[1:])) == before


def test_apply_and_logs_take_it_after_the_command(
    server: RunningServer, setup_file: Path, job_file: Callable[..., Path]
) -> None:
    data_dir = str(server.data_dir)
    assert ok(run("apply", "-f", str(setup_file), "--data-dir", data_dir)).splitlines() == [
        "resourceflavor.phalanx.dev/default created",
        "queue.phalanx.dev/team-a created",
    ]
    hello = job_file("x", "print('hi')").read_text()
    assert ok(run("apply", "--data-dir", data_dir, "-f", "-", input=hello)) == (
        "job.phalanx.dev/x created\n"
    )
    server.wait_phase("x", "Succeeded")
    assert ok(run("logs", "x", "--data-dir", data_dir)) == "hi\n"


def test_the_option_nearest_the_command_wins(server: RunningServer, tmp_path: Path) -> None:
    nowhere = str(tmp_path / "nowhere")
    ok(run("--data-dir", nowhere, "get", "nodes", "--data-dir", str(server.data_dir)))


def test_the_environment_still_works_and_the_command_line_beats_it(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHALANX_DATA_DIR", str(server.data_dir))
    ok(run("get", "nodes"))
    monkeypatch.setenv("PHALANX_DATA_DIR", str(tmp_path / "nowhere"))
    ok(run("--data-dir", str(server.data_dir), "get", "nodes"))  # not undone by the env
    ok(run("get", "nodes", "--data-dir", str(server.data_dir)))


def test_token_and_server_after_the_command(
    server: RunningServer, unused_port: int, tmp_path: Path
) -> None:
    line = one_line_error(
        run("get", "jobs", "--token", "wrong", "--data-dir", str(server.data_dir))
    )
    assert line.startswith(f"error: the phalanx server at {server.url} refused the token given")
    url = f"http://127.0.0.1:{unused_port}"
    line = one_line_error(run("describe", "job", "x", "--server", url, "--data-dir", str(tmp_path)))
    assert line == f"error: cannot reach the phalanx server at {url}; start it with `phalanx up`"


def test_down_takes_it_after_the_command(clean_env: None, tmp_path: Path) -> None:
    result = run("down", "--data-dir", str(tmp_path), "--timeout", "1")
    assert ok(result) == f"phalanx is not running (data dir {tmp_path})\n"


def squeezed(text: str) -> str:
    """The help text without the whitespace and box lines rich wraps it in."""
    return "".join(text.replace("│", " ").split())


def test_every_command_lists_the_global_options() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    for name in group.commands:
        text = squeezed(ok(run(name, "--help")))
        for option in ("--server", "--data-dir", "--token"):
            assert option in text, f"phalanx {name} --help lacks {option}"
    assert GLOBAL_OPTIONS == ("server", "data_dir", "token")


@pytest.mark.parametrize("args", [["--help"], ["get", "--help"], ["up", "--help"]])
def test_help_shows_the_data_dir_default(
    args: list[str], home_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # rich would cut the long test path short
    text = squeezed(ok(run(*args)))
    assert f"[default:{home_data_dir}]" in text
    assert "[envvar:PHALANX_DATA_DIR]" in text
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert f"[default:{tmp_path / 'xdg' / 'phalanx'}]" in squeezed(ok(run(*args)))
