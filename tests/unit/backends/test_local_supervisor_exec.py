"""The pod supervisor's child looks nothing up between switching to the pod user and exec: a
pod user may be unable to read the server's Python (installed under /root, say), so an import
there would fail every command. Each case runs the supervisor's ``_start`` in a Python like
the supervisor's own (``-I -S``), whose forked child refuses every import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import phalanx.backends.local.supervisor as supervisor

# Loads supervisor.py without the import system's helpers (they would import warnings), then
# refuses every import in any process but this one: the forked child, as a pod user would.
_RUN = """
import os, sys
path, pod_dir, command, search_path = sys.argv[1], sys.argv[2], sys.argv[3:-1], sys.argv[-1]
ns = {"__name__": "supervisor_under_test", "__file__": path}
exec(compile(open(path).read(), path, "exec"), ns)
assert "warnings" not in sys.modules, "the case needs warnings not yet imported"
PARENT = os.getpid()

class RefuseInChild:
    def find_spec(self, name, path=None, target=None):
        if os.getpid() != PARENT:
            raise ImportError(f"import of {name} refused")
        return None

sys.meta_path.insert(0, RefuseInChild())
launch = ns["_Launch"]([pod_dir, "--", *command])
pid, message = ns["_start"](launch, [], {"PATH": search_path})
status = os.waitpid(pid, 0)[1] if pid else None
print(repr((pid is not None, message, status and os.waitstatus_to_exitcode(status))))
"""


def start(tmp_path: Path, command: list[str], search_path: str) -> tuple[bool, str, int]:
    """(started, message, exit code) of ``command`` started by the supervisor with PATH
    ``search_path``."""
    python = [sys.executable, "-I", "-S", "-c", _RUN]
    done = subprocess.run(
        [*python, supervisor.__file__, str(tmp_path), *command, search_path],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    started, message, code = ast.literal_eval(done.stdout)
    return started, message, code or 0


def script(path: Path, body: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(mode)
    return path


def test_a_command_found_on_path_starts_though_the_child_can_import_nothing(
    tmp_path: Path,
) -> None:
    script(tmp_path / "bin" / "hello", "exit 7")
    assert start(tmp_path, ["hello"], f"/nonexistent:{tmp_path / 'bin'}") == (True, "", 7)


def test_a_path_is_run_as_given(tmp_path: Path) -> None:
    hello = script(tmp_path / "bin" / "hello", "exit 3")
    assert start(tmp_path, [str(hello)], "/nonexistent") == (True, "", 3)


def test_a_missing_command_is_not_found_in_path(tmp_path: Path) -> None:
    started, message, _ = start(tmp_path, ["no-such-command"], f"{tmp_path}:/nonexistent")
    assert not started
    assert message == f"command 'no-such-command' not found in PATH='{tmp_path}:/nonexistent'"


def test_the_search_goes_past_a_file_that_cannot_run_and_reports_it_if_none_can(
    tmp_path: Path,
) -> None:
    script(tmp_path / "a" / "tool", "exit 1", mode=0o644)  # found first, not executable
    script(tmp_path / "b" / "tool", "exit 5")
    assert start(tmp_path, ["tool"], f"{tmp_path / 'a'}:{tmp_path / 'b'}") == (True, "", 5)
    started, message, _ = start(tmp_path, ["tool"], f"{tmp_path / 'a'}:/nonexistent")
    assert not started and message == "command 'tool' is not executable (permission denied)"
