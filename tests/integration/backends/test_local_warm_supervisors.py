"""Pod supervisors started ahead of their pods (backends/local/warm.py): a launch is handed to
one that was waiting, the pod runs exactly as with a supervisor started for it, and every
process the pool starts ends and is reaped — when the backend closes, when the process that
owns the backend is SIGKILLed, and when a waiting one was killed before its turn."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_local_backend import is_running, make_pod, supervisor_pid, wait_for_event, wait_until

from phalanx.backends.base import PodEventKind
from phalanx.backends.local import LocalBackend
from phalanx.backends.local.supervisor import decode_launch, encode_launch, read_start_ticks

pytestmark = pytest.mark.integration

#: Prints its environment variable X, its working directory and its process group.
REPORT = "import os; print('x=' + os.environ['X'], os.getcwd(), os.getpgrp() == os.getppid())"


@pytest.fixture
def warm(tmp_path: Path) -> Iterator[LocalBackend]:
    backend = LocalBackend(tmp_path, nodes=[], warm_supervisors=2)
    backend.prestart_supervisors()
    wait_until(lambda: len(backend.waiting_supervisors()) == 2, "two supervisors to wait")
    yield backend
    backend.close()


def is_gone(pid: int) -> bool:
    """Whether ``pid`` has ended and been reaped (no zombie left either)."""
    return not Path(f"/proc/{pid}").exists()


def test_a_launch_goes_to_a_waiting_supervisor_and_runs_as_any_pod(
    warm: LocalBackend, tmp_path: Path
) -> None:
    waiting = warm.waiting_supervisors()
    pod = make_pod("p", REPORT, env={"X": "from-the-pod"})
    warm.launch(pod)
    pid = supervisor_pid(tmp_path, "p")
    assert pid == waiting[0]  # the one that waited longest
    ticks = json.loads((tmp_path / "pods" / "p" / "pid.json").read_text())["start_ticks"]
    assert ticks == read_start_ticks(pid) or is_gone(pid)
    event = wait_for_event(warm, "p", PodEventKind.SUCCEEDED)
    assert event.exit_code == 0
    out = warm.read_logs("p").decode().split()
    # Its env, its working directory, and the workload in the supervisor's own group.
    assert out == ["x=from-the-pod", str(tmp_path / "work" / "p"), "True"]
    wait_until(lambda: len(warm.waiting_supervisors()) == 2, "the pool to be refilled")
    assert pid not in warm.waiting_supervisors()


def test_close_ends_and_reaps_every_waiting_supervisor(warm: LocalBackend) -> None:
    waiting = warm.waiting_supervisors()
    warm.close()
    assert all(is_gone(pid) for pid in waiting), [p for p in waiting if not is_gone(p)]
    assert warm.waiting_supervisors() == []


def run_a_pod_and_drop_the_backend(data_dir: Path) -> list[int]:
    """Run a pod on a backend of two waiting supervisors, never closed; return their pids."""
    backend = LocalBackend(data_dir, nodes=[], warm_supervisors=2)
    backend.launch(make_pod("p", "pass"))  # the first launch starts the pool
    wait_until(lambda: len(backend.waiting_supervisors()) == 2, "two supervisors to wait")
    wait_for_event(backend, "p", PodEventKind.SUCCEEDED)
    return backend.waiting_supervisors()


def test_a_backend_dropped_without_close_ends_its_waiting_supervisors(tmp_path: Path) -> None:
    waiting = run_a_pod_and_drop_the_backend(tmp_path)
    gc.collect()
    assert all(is_gone(pid) for pid in waiting), [p for p in waiting if not is_gone(p)]


def test_a_waiting_supervisor_killed_before_its_turn_is_reaped_and_skipped(
    warm: LocalBackend, tmp_path: Path
) -> None:
    first, second = warm.waiting_supervisors()
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not is_running(first), "the first supervisor to die")
    warm.launch(make_pod("p", REPORT, env={"X": "1"}))
    assert supervisor_pid(tmp_path, "p") == second
    assert is_gone(first)
    assert wait_for_event(warm, "p", PodEventKind.SUCCEEDED).exit_code == 0


def test_without_a_waiting_supervisor_the_pod_gets_its_own(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path, nodes=[], warm_supervisors=0)
    try:
        backend.launch(make_pod("p", REPORT, env={"X": "1"}))
        assert wait_for_event(backend, "p", PodEventKind.SUCCEEDED).exit_code == 0
        assert backend.waiting_supervisors() == []
    finally:
        backend.close()


#: Owns a backend with two waiting supervisors, prints their pids, then sleeps until killed.
OWNER = """
import json, sys, time
from pathlib import Path
from phalanx.backends.local import LocalBackend
backend = LocalBackend(Path(sys.argv[1]), nodes=[], warm_supervisors=2)
backend.prestart_supervisors()
while len(backend.waiting_supervisors()) < 2:
    time.sleep(0.01)
print(json.dumps(backend.waiting_supervisors()), flush=True)
time.sleep(120)
"""


def test_waiting_supervisors_exit_when_their_owner_is_killed(tmp_path: Path) -> None:
    command = [sys.executable, "-c", textwrap.dedent(OWNER), str(tmp_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as owner:
        try:
            assert owner.stdout is not None
            waiting = json.loads(owner.stdout.readline())
            assert len(waiting) == 2 and all(is_running(pid) for pid in waiting)
        finally:
            owner.kill()
    # Orphans now: the pipe's end of file tells them; init (or a subreaper) reaps them.
    wait_until(lambda: not any(is_running(pid) for pid in waiting), "the orphans to exit", 10)
    assert not list((tmp_path / "pods").iterdir())  # nothing was started or written


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["/pods/p", "--cwd", "", "--", "python", "-c", "print('a=b')"], {"A": "1=2", "B": ""}),
        (["/pods/p", "--"], {}),
        (["/pods/é", "--", "x\udcff"], {"K\udcfe": "v\udcfd"}),
    ],
    ids=["options-and-values-with-equals", "nothing-to-run", "undecodable-bytes"],
)
def test_a_launch_reads_back_as_written(argv: list[str], env: dict[str, str]) -> None:
    assert decode_launch(encode_launch(argv, env)) == (argv, env)


def test_a_launch_cut_short_or_with_bytes_the_os_refuses_is_no_launch() -> None:
    data = encode_launch(["/pods/p", "--", "true"], {"A": "1"})
    for cut in (0, 1, len(data) // 2, len(data) - 1):
        with pytest.raises(ValueError):
            decode_launch(data[:cut])
    for argv, env in ((["/p", "--", "a\0b"], {}), (["/p", "--"], {"A=B": "1"})):
        with pytest.raises(ValueError):
            encode_launch(argv, env)


def test_a_pod_with_an_environment_the_os_refuses_is_still_reported(warm: LocalBackend) -> None:
    """Not handed over (its launch cannot be encoded): the supervisor started for it fails
    it with the OS's own message, as without waiting supervisors."""
    waiting = warm.waiting_supervisors()
    warm.launch(make_pod("p", "pass", env={"BAD=NAME": "1"}))
    event = wait_for_event(warm, "p", PodEventKind.FAILED)
    assert event.reason == "LaunchError"
    assert warm.waiting_supervisors() == waiting
    started = time.monotonic()
    while time.monotonic() - started < 0.2:  # nothing of the pool was spent on it
        assert warm.waiting_supervisors() == waiting
        time.sleep(0.02)
